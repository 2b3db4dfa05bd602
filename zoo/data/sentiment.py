"""Multi-domain sentiment data: a generated stand-in corpus, and a loader for a real one from a local path.

`synth_multidomain_sentiment` (spec ``papers/capsule_dbd.md`` §5a) is a pure numpy function of a seed:
D domains, each text ``min_len + Poisson(mean_extra_len)`` tokens, each token independently
- a domain-topic word (prob. ``p_topic``; ``topic_words`` per domain, Zipf(``zipf``) ranks),
- a shared neutral word (``p_neutral``; ``neutral_words``, Zipf), or
- a sentiment word (the rest): with prob. ``p_fixed`` one of ``fixed_words`` fixed-polarity words
  (half positive, half negative), else one of ``ambiguous_words`` words whose polarity sign is redrawn
  per domain (the same word is positive in one domain and negative in another). A sentiment token
  expresses the text's label with prob. ``agree``, the opposite polarity otherwise.
Labels: positive w.p. ``pos_rates[d % len(pos_rates)]`` in domain d. Texts are padded with id 0
(trailing) to ``max_len`` and truncated there.

Vocabulary ids: 0 ``<pad>``, 1 ``<unk>``, then the topic words of domain 0, 1, ..., the neutral
words, the positive fixed words, the negative fixed words, the ambiguous words.

`load_vader_multidomain` reads the four ``*_GroundTruth.txt`` files of Hutto & Gilbert's VADER
evaluation corpus (ICWSM 2014; in the ``vaderSentiment`` **sdist**, ``additional_resources/
hutto_ICWSM_2014.tar.gz``) from a directory or archive the user already has; it never downloads.
`simple_tokenize`, `build_vocab` and `encode_texts` turn texts into padded id arrays.
"""

from __future__ import annotations

import html
import re
import tarfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "VADER_DOMAINS",
    "build_vocab",
    "encode_texts",
    "load_vader_multidomain",
    "simple_tokenize",
    "synth_multidomain_sentiment",
]

PAD, UNK = 0, 1
VADER_DOMAINS = ("amazon", "movies", "nyt", "tweets")
_VADER_FILES = {
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "movies": "movieReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
}


def _int(name: str, v, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
    return int(v)


def _prob(name: str, v, *, open_low: bool = False) -> float:
    if not isinstance(v, (int, float, np.floating)) or not (0 < v <= 1 if open_low else 0 <= v <= 1):
        raise ValueError(f"{name}: expected a probability in {'(0' if open_low else '[0'}, 1], got {v!r}")
    return float(v)


def _zipf_probs(n: int, s: float) -> np.ndarray:
    p = np.arange(1, n + 1, dtype=np.float64) ** -s
    return p / p.sum()


def synth_multidomain_sentiment(
    seed: int,
    num_domains: int = 4,
    n_per_domain: int = 1500,
    *,
    max_len: int = 48,
    min_len: int = 8,
    mean_extra_len: float = 12.0,
    topic_words: int = 200,
    neutral_words: int = 500,
    fixed_words: int = 100,
    ambiguous_words: int = 50,
    p_topic: float = 0.2,
    p_neutral: float = 0.35,
    p_fixed: float = 0.25,
    agree: float = 0.85,
    pos_rates: Sequence[float] = (0.5, 0.7, 0.85, 0.6),
    zipf: float = 1.1,
) -> dict:
    """The generated multi-domain sentiment corpus (module docstring); texts are grouped by domain.

    Returns:
      dict of numpy arrays: ``tokens i32[N, max_len]`` (0-padded), ``mask bool[N, max_len]``,
      ``y i32[N]`` (1 = positive), ``domain i32[N]``, ``lengths i32[N]``; ``ambiguous_sign
      i8[D, ambiguous_words]`` (+1 positive), ``vocab`` (tuple of words, index = id),
      ``vocab_size``, ``num_domains`` (N = D · n_per_domain).
    """
    seed = _int("seed", seed, 0)
    D = _int("num_domains", num_domains, 1)
    n = _int("n_per_domain", n_per_domain, 1)
    L = _int("max_len", max_len, 1)
    min_len = _int("min_len", min_len, 1)
    T, Nn = _int("topic_words", topic_words, 1), _int("neutral_words", neutral_words, 1)
    Fw, A = _int("fixed_words", fixed_words, 2), _int("ambiguous_words", ambiguous_words, 2)
    if Fw % 2:
        raise ValueError(f"fixed_words: expected an even number (half positive, half negative), got {Fw}")
    if not isinstance(mean_extra_len, (int, float)) or not 0 <= mean_extra_len < 1e6:
        raise ValueError(f"mean_extra_len: expected a number in [0, 1e6), got {mean_extra_len!r}")
    p_topic, p_neutral = _prob("p_topic", p_topic), _prob("p_neutral", p_neutral)
    if p_topic + p_neutral > 1:
        raise ValueError(f"p_neutral: p_topic + p_neutral must be <= 1, got {p_topic} + {p_neutral}")
    p_fixed, agree = _prob("p_fixed", p_fixed), _prob("agree", agree)
    rates = np.asarray(pos_rates, np.float64)
    if rates.ndim != 1 or rates.size == 0 or not np.all((rates >= 0) & (rates <= 1)):
        raise ValueError(f"pos_rates: expected a non-empty sequence of probabilities in [0, 1], got {pos_rates!r}")
    if not isinstance(zipf, (int, float)) or not zipf > 0:
        raise ValueError(f"zipf: expected an exponent > 0, got {zipf!r}")

    rng = np.random.default_rng(seed)
    topic0 = 2
    neutral0 = topic0 + D * T
    pos0 = neutral0 + Nn
    neg0 = pos0 + Fw // 2
    amb0 = neg0 + Fw // 2
    V = amb0 + A
    sign = rng.choice(np.array([-1, 1], np.int8), size=(D, A))  # ambiguous word polarity per domain
    N = D * n
    domain = np.repeat(np.arange(D, dtype=np.int32), n)
    y = (rng.random(N) < rates[domain % rates.size]).astype(np.int32)
    lengths = np.minimum(min_len + rng.poisson(mean_extra_len, N), L).astype(np.int32)

    shape = (N, L)
    u = rng.random(shape)
    kind = np.where(u < p_topic, 0, np.where(u < p_topic + p_neutral, 1, 2))
    dom = np.broadcast_to(domain[:, None], shape)
    tok = np.zeros(shape, np.int64)
    tok = np.where(kind == 0, topic0 + dom * T + rng.choice(T, size=shape, p=_zipf_probs(T, zipf)), tok)
    tok = np.where(kind == 1, neutral0 + rng.choice(Nn, size=shape, p=_zipf_probs(Nn, zipf)), tok)
    polarity = np.where(rng.random(shape) < agree, y[:, None], 1 - y[:, None])  # 1 = positive token
    fixed = np.where(polarity == 1, pos0, neg0) + rng.integers(0, Fw // 2, shape)
    # ambiguous: a uniform word among those whose sign in this domain matches the polarity
    table = np.zeros((D, 2, A), np.int64)  # [domain, polarity] -> ambiguous ids with that sign, then padding
    count = np.zeros((D, 2), np.int64)
    for d in range(D):
        for p, sg in ((0, -1), (1, 1)):
            ids = np.flatnonzero(sign[d] == sg)
            table[d, p, : ids.size], count[d, p] = amb0 + ids, ids.size
    cnt = count[dom, polarity]
    pick = (rng.random(shape) * np.maximum(cnt, 1)).astype(np.int64)
    amb = np.where(cnt > 0, table[dom, polarity, pick], fixed)
    use_fixed = rng.random(shape) < p_fixed
    tok = np.where(kind == 2, np.where(use_fixed, fixed, amb), tok)
    mask = np.arange(L)[None, :] < lengths[:, None]
    tok = np.where(mask, tok, PAD).astype(np.int32)

    vocab = (["<pad>", "<unk>"] + [f"topic{d}_{k}" for d in range(D) for k in range(T)]
             + [f"neutral{k}" for k in range(Nn)] + [f"good{k}" for k in range(Fw // 2)]
             + [f"bad{k}" for k in range(Fw // 2)] + [f"amb{k}" for k in range(A)])
    return {"tokens": tok, "mask": mask, "y": y, "domain": domain, "lengths": lengths, "ambiguous_sign": sign,
            "vocab": tuple(vocab), "vocab_size": V, "num_domains": D}


# ----------------------------------------------------------------------------------- real text


_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")


def simple_tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (HTML entities unescaped; ``!`` and ``?`` kept as tokens)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    return _TOKEN.findall(html.unescape(text).lower())


def build_vocab(token_lists: Sequence[Sequence[str]], max_size: int = 20_000, min_count: int = 1) -> dict[str, int]:
    """``word -> id`` for the ``max_size - 2`` most frequent words (ties by first appearance); 0 pad, 1 unk."""
    max_size = _int("max_size", max_size, 3)
    min_count = _int("min_count", min_count, 1)
    if isinstance(token_lists, str) or not isinstance(token_lists, Sequence):
        raise TypeError(f"token_lists: expected a sequence of token lists, got {type(token_lists).__name__}")
    counts = Counter(w for toks in token_lists for w in toks)
    words = [w for w, c in counts.most_common() if c >= min_count][: max_size - 2]
    return {"<pad>": PAD, "<unk>": UNK, **{w: i + 2 for i, w in enumerate(words)}}


def encode_texts(token_lists: Sequence[Sequence[str]], vocab: dict[str, int],
                 max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens i32[N, max_len], mask bool[N, max_len])``: ids (unknown -> 1), truncated, 0-padded at the end."""
    max_len = _int("max_len", max_len, 1)
    if not isinstance(vocab, dict) or vocab.get("<pad>") != PAD:
        raise ValueError("vocab: expected a dict from build_vocab (with '<pad>' -> 0)")
    out = np.zeros((len(token_lists), max_len), np.int32)
    for i, toks in enumerate(token_lists):
        ids = [vocab.get(w, UNK) for w in toks[:max_len]]
        out[i, : len(ids)] = ids
    return out, out != PAD


def _read_ground_truth(lines: list[str], threshold: float):
    texts, ratings = [], []
    for line in lines:
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) < 3:
            continue
        try:
            r = float(parts[1])
        except ValueError:
            continue
        if abs(r) > threshold:
            texts.append("\t".join(parts[2:]))
            ratings.append(r)
    return texts, ratings


def load_vader_multidomain(path: str | Path, *, threshold: float = 0.5) -> dict:
    """The VADER 4-domain corpus (amazon, movies, nyt, tweets) from a local directory or ``.tar.gz``.

    ``path`` is a directory holding the ``*_GroundTruth.txt`` files (searched recursively), the
    ``hutto_ICWSM_2014.tar.gz`` archive, or the ``vaderSentiment-3.3.2.tar.gz`` sdist (obtain it once
    with ``pip download --no-deps --no-binary :all: vaderSentiment==3.3.2``). Nothing is downloaded.
    Labels: mean rating > ``threshold`` -> 1, < -threshold -> 0, others dropped.

    Returns:
      ``{"text": list[str], "y": i32[N], "rating": f64[N], "domain": i32[N], "domains": VADER_DOMAINS}``.
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path: expected a str or Path, got {type(path).__name__}")
    if not isinstance(threshold, (int, float)) or not 0 <= threshold < 4:
        raise ValueError(f"threshold: expected a number in [0, 4), got {threshold!r}")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"path: {path} does not exist; give a directory with the VADER *_GroundTruth.txt files or the "
            "vaderSentiment sdist (pip download --no-deps --no-binary :all: vaderSentiment==3.3.2)")
    found: dict[str, list[str]] = {}

    def from_tar(tf: tarfile.TarFile):
        for m in tf.getmembers():
            name = Path(m.name).name
            if name.endswith(".tar.gz") and "hutto" in name:
                with tarfile.open(fileobj=tf.extractfile(m), mode="r:gz") as inner:
                    from_tar(inner)
            for dom, fname in _VADER_FILES.items():
                if name == fname and m.isfile():
                    found[dom] = tf.extractfile(m).read().decode("utf-8", errors="replace").splitlines()

    if path.is_dir():
        for dom, fname in _VADER_FILES.items():
            hits = sorted(path.rglob(fname))
            if hits:
                found[dom] = hits[0].read_text(encoding="utf-8", errors="replace").splitlines()
        if not found:
            for arc in sorted(path.rglob("*.tar.gz")):
                with tarfile.open(arc, "r:gz") as tf:
                    from_tar(tf)
    else:
        try:
            with tarfile.open(path, "r:*") as tf:
                from_tar(tf)
        except tarfile.TarError as e:
            raise ValueError(f"path: {path} is neither a directory nor a readable tar archive ({e})") from None
    missing = [d for d in VADER_DOMAINS if d not in found]
    if missing:
        raise ValueError(f"path: {path} lacks the VADER ground-truth files of {missing} "
                         f"(expected {[_VADER_FILES[d] for d in missing]})")
    text, rating, domain = [], [], []
    for d, dom in enumerate(VADER_DOMAINS):
        t, r = _read_ground_truth(found[dom], threshold)
        text += t
        rating += r
        domain += [d] * len(t)
    rating = np.asarray(rating, np.float64)
    return {"text": text, "y": (rating > 0).astype(np.int32), "rating": rating,
            "domain": np.asarray(domain, np.int32), "domains": VADER_DOMAINS}
