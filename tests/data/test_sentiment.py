"""`zoo.data.sentiment`: the generated multi-domain corpus, tokenising, and the local VADER loader."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.data import sentiment as sm


def test_synthetic_corpus_structure():
    d = sm.synth_multidomain_sentiment(0, num_domains=3, n_per_domain=400, max_len=20)
    again = sm.synth_multidomain_sentiment(0, num_domains=3, n_per_domain=400, max_len=20)
    np.testing.assert_array_equal(d["tokens"], again["tokens"])  # a pure function of the seed
    assert d["tokens"].shape == (1200, 20) and d["vocab_size"] == len(d["vocab"])
    assert np.all(d["tokens"][~d["mask"]] == 0) and np.all(d["tokens"][d["mask"]] >= 2)
    np.testing.assert_array_equal(d["mask"].sum(1), d["lengths"])
    assert d["lengths"].min() >= 8 and d["lengths"].max() <= 20
    rates = [d["y"][d["domain"] == k].mean() for k in range(3)]
    np.testing.assert_allclose(rates, [0.5, 0.7, 0.85], atol=0.06)
    vocab = np.array(d["vocab"])
    words = vocab[d["tokens"][d["mask"]]]
    doms = np.broadcast_to(d["domain"][:, None], d["tokens"].shape)[d["mask"]]
    for k in range(3):  # topic words belong to their domain only
        topic = np.char.startswith(words, "topic")
        assert np.all(np.char.startswith(words[topic & (doms == k)], f"topic{k}_"))
    # fixed words carry the label (agree = 0.85); ambiguous words follow the domain's sign
    yy = np.broadcast_to(d["y"][:, None], d["tokens"].shape)[d["mask"]]
    good = np.char.startswith(words, "good")
    assert abs(yy[good].mean() - (0.85 * np.mean(d["y"] == 1) / (0.85 * np.mean(d["y"] == 1) + 0.15 * np.mean(d["y"] == 0)))) < 0.05
    amb = np.char.startswith(words, "amb")
    ids = np.char.replace(words[amb], "amb", "").astype(int)
    sign = d["ambiguous_sign"][doms[amb], ids]
    assert np.mean((sign > 0) == (yy[amb] == 1)) == pytest.approx(0.85, abs=0.03)


def test_tokenize_vocab_encode():
    assert sm.simple_tokenize("Great &amp; CHEAP!! don't") == ["great", "cheap", "!", "!", "don't"]
    toks = [["a", "b", "a"], ["b", "c"], ["a"]]
    vocab = sm.build_vocab(toks, max_size=4)
    assert vocab == {"<pad>": 0, "<unk>": 1, "a": 2, "b": 3}
    ids, mask = sm.encode_texts(toks, vocab, 2)
    np.testing.assert_array_equal(ids, [[2, 3], [3, 1], [2, 0]])
    np.testing.assert_array_equal(mask, [[1, 1], [1, 1], [1, 0]])


def test_vader_loader_from_local_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="path"):
        sm.load_vader_multidomain(tmp_path / "missing")
    with pytest.raises(ValueError, match="lacks"):
        sm.load_vader_multidomain(tmp_path)
    for name in sm._VADER_FILES.values():
        (tmp_path / name).write_text("1\t2.5\tgood stuff\r\n2\t-1.0\tbad &amp; sad\r\n3\t0.2\tmeh\r\n", encoding="utf-8")
    d = sm.load_vader_multidomain(tmp_path)
    assert len(d["text"]) == 8 and d["domains"] == sm.VADER_DOMAINS
    np.testing.assert_array_equal(d["y"], [1, 0] * 4)
    np.testing.assert_array_equal(d["domain"], [0, 0, 1, 1, 2, 2, 3, 3])
