"""Skillmix: typed modular arithmetic for RLCCF (spec ``papers/rlccf.md`` §3, "Toy task").

A question is (type τ ∈ {0,1,2,3}, x, y ∈ {0..9}): 400 distinct questions, answers in {0..9} (C = 10).

    gold          f_τ: (x + y), (x·y), (x − y), (2x + y)   mod 10     -> `gold_answer`
    misconception g_τ: (x + y + 1), (x + y), (y − x), (x + 2y) mod 10 -> `misconception`

Base model n is *strong* on type n: its SFT target puts p = 0.50 on the gold answer and spreads the
rest uniformly over the other 9; elsewhere it is *weak*: gold 0.10, the shared misconception 0.25,
the remaining 8 answers uniform (when g = f for a question the two masses merge onto gold)
-> `target_distribution`.

Tokens (the tiny LM reads ``[TYPE, X, Y, EQ]`` and emits ``[ANSWER, EOS]``): PAD 0, EOS 1, EQ 2,
type τ -> 3 + τ, digit v -> 7 + v; vocabulary 17 -> `prompt_tokens`, `VOCAB`. The answer of a
completion is the digit of its first token, −1 (∅, a format failure) when that token is not a digit
-> `extract_answers`. Reward against gold (metrics only; RLCCF never sees gold) -> `exact_match`.

- `all_questions()` -> the 400 questions with gold and misconception (numpy).
- `generate(seed, n, cfg)` -> ``n`` questions (a permutation of the 400 when n <= 400, else drawn
  with replacement) as numpy arrays; `make_dataset` wraps them in a cached ``datasets.Dataset``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range

PAD, EOS, EQ = 0, 1, 2
TYPE0 = 3
DIGIT0 = 7
N_TYPES = 4
N_ANSWERS = 10
VOCAB = DIGIT0 + N_ANSWERS  # 17
PROMPT_LEN = 4
COMPLETION_LEN = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class SkillmixConfig:
    """Probabilities of the base models' SFT target distributions."""

    strong_gold: float = 0.50  # P(gold) on the model's own type
    weak_gold: float = 0.10  # P(gold) elsewhere
    weak_misconception: float = 0.25  # P(shared misconception) elsewhere

    def __post_init__(self):
        check_range("strong_gold", self.strong_gold, low=0.0, high=1.0)
        check_range("weak_gold", self.weak_gold, low=0.0, high=1.0)
        check_range("weak_misconception", self.weak_misconception, low=0.0, high=1.0)
        if self.weak_gold + self.weak_misconception > 1.0:
            raise ValueError(
                f"weak_misconception: expected weak_gold + weak_misconception <= 1, got "
                f"{self.weak_gold} + {self.weak_misconception}"
            )


def _check_cfg(cfg):
    if not isinstance(cfg, SkillmixConfig):
        raise ValueError(f"cfg: expected a SkillmixConfig, got {type(cfg).__name__}")


def _check_n(n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n: expected an int, got {n!r}")
    check_range("n", n, low=1)


def _check_question(types, x, y):
    for name, v, hi in (("types", types, N_TYPES - 1), ("x", x, 9), ("y", y, 9)):
        a = np.asarray(v)
        if a.dtype.kind not in "iu":
            raise ValueError(f"{name}: expected integers, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() > hi):
            raise ValueError(f"{name}: expected values in [0, {hi}], got values in [{a.min()}, {a.max()}]")
    if not (np.shape(types) == np.shape(x) == np.shape(y)):
        raise ValueError(f"x, y: expected the shape of types {np.shape(types)}, got {np.shape(x)} and {np.shape(y)}")


def gold_answer(types, x, y) -> np.ndarray:
    """f_τ(x, y): ``i[...] -> i32[...]`` in [0, 10)."""
    _check_question(types, x, y)
    t, x, y = (np.asarray(a, np.int64) for a in (types, x, y))
    out = np.select([t == 0, t == 1, t == 2], [x + y, x * y, x - y], 2 * x + y)
    return np.mod(out, 10).astype(np.int32)


def misconception(types, x, y) -> np.ndarray:
    """g_τ(x, y), the misconception shared by every weak model: ``i[...] -> i32[...]``."""
    _check_question(types, x, y)
    t, x, y = (np.asarray(a, np.int64) for a in (types, x, y))
    out = np.select([t == 0, t == 1, t == 2], [x + y + 1, x + y, y - x], x + 2 * y)
    return np.mod(out, 10).astype(np.int32)


def all_questions() -> dict[str, np.ndarray]:
    """The 400 questions: ``types, x, y, gold, misconception: i32[400]``, ``prompt: i32[400, 4]``."""
    t, x, y = (a.ravel().astype(np.int32) for a in np.meshgrid(np.arange(4), np.arange(10), np.arange(10), indexing="ij"))
    return {"types": t, "x": x, "y": y, "gold": gold_answer(t, x, y), "misconception": misconception(t, x, y),
            "prompt": prompt_tokens(t, x, y)}  # fmt: skip


def prompt_tokens(types, x, y) -> np.ndarray:
    """``[TYPE, X, Y, EQ]`` token ids: ``i[Q] -> i32[Q, 4]``."""
    _check_question(types, x, y)
    t, x, y = (np.asarray(a, np.int32) for a in (types, x, y))
    return np.stack([TYPE0 + t, DIGIT0 + x, DIGIT0 + y, np.full_like(t, EQ)], -1).astype(np.int32)


def target_distribution(types, x, y, strong_type: int, cfg: SkillmixConfig = SkillmixConfig()) -> np.ndarray:
    """SFT target of base model ``strong_type`` over the 10 answers: ``f32[Q, 10]`` (rows sum to 1)."""
    if isinstance(strong_type, bool) or not isinstance(strong_type, (int, np.integer)):
        raise ValueError(f"strong_type: expected an int, got {strong_type!r}")
    check_range("strong_type", strong_type, low=0, high=N_TYPES - 1)
    _check_cfg(cfg)
    check_array("types", types, ndim=1, finite=False)
    f, g = gold_answer(types, x, y), misconception(types, x, y)
    q = f.shape[0]
    rows = np.arange(q)
    strong = np.full((q, N_ANSWERS), (1.0 - cfg.strong_gold) / (N_ANSWERS - 1))
    strong[rows, f] = cfg.strong_gold
    weak = np.zeros((q, N_ANSWERS))
    same = f == g
    rest = 1.0 - cfg.weak_gold - cfg.weak_misconception
    weak[:] = np.where(same, rest / (N_ANSWERS - 1), rest / (N_ANSWERS - 2))[:, None]
    weak[rows, g] = cfg.weak_misconception
    weak[rows, f] = np.where(same, cfg.weak_gold + cfg.weak_misconception, cfg.weak_gold)
    is_strong = (np.asarray(types) == strong_type)[:, None]
    return np.where(is_strong, strong, weak).astype(np.float32)


def generate(seed: int, n: int = 400, cfg: SkillmixConfig = SkillmixConfig()) -> dict[str, np.ndarray]:
    """``n`` questions (a permutation of all 400 when n <= 400): the `all_questions` columns plus
    ``targets: f32[n, 4, 10]`` (each base model's SFT target)."""
    _check_n(n)
    _check_cfg(cfg)
    qs = all_questions()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(400)[:n] if n <= 400 else rng.integers(0, 400, n)
    out = {k: v[idx] for k, v in qs.items()}
    out["targets"] = np.stack(
        [target_distribution(out["types"], out["x"], out["y"], s, cfg) for s in range(N_TYPES)], 1
    )
    return out


generate.version = 1


def _generate_kw(seed: int, *, n: int, **cfg_fields) -> dict[str, np.ndarray]:
    return generate(seed, n, SkillmixConfig(**cfg_fields))


_generate_kw.version = generate.version


def make_dataset(seed: int, n: int = 400, cfg: SkillmixConfig = SkillmixConfig(), *, cache: bool = True):
    """`generate` as a cached ``datasets.Dataset`` (numpy format); gold is stored for metrics only."""
    _check_n(n)
    _check_cfg(cfg)
    from zoo.data import cached_dataset

    return cached_dataset(_generate_kw, seed, cache=cache, n=n, **dataclasses.asdict(cfg))


def extract_answers(tokens, mask=None) -> jax.Array:
    """Answer ids of completions: the first token's digit, −1 (∅) if it is not a digit or is masked.

    ``tokens: i32[..., Lc]``, ``mask: bool[..., Lc]`` -> ``i32[...]``.
    """
    check_array("tokens", tokens, ndim=range(1, 16), finite=False, kind="iu")
    if tokens.shape[-1] < 1:
        raise ValueError(f"tokens: expected at least one completion token, got shape {tuple(tokens.shape)}")
    if mask is not None:
        check_array("mask", mask, shape=tuple(tokens.shape), finite=False)
    first = jnp.asarray(tokens)[..., 0]
    ok = (first >= DIGIT0) & (first < DIGIT0 + N_ANSWERS)
    if mask is not None:
        ok = ok & jnp.asarray(mask, bool)[..., 0]
    return jnp.where(ok, first - DIGIT0, -1).astype(jnp.int32)


def exact_match(answers, gold) -> jax.Array:
    """``1[a = gold]`` (∅ = −1 never matches): ``i32[..., K], i32[...] broadcastable -> f32``."""
    check_array("answers", answers, ndim=range(0, 16), finite=False, kind="iu")
    check_array("gold", gold, ndim=range(0, 16), finite=False, kind="iu")
    try:
        np.broadcast_shapes(np.shape(answers), np.shape(gold))
    except ValueError:
        raise ValueError(f"gold: expected a shape broadcastable with answers {tuple(np.shape(answers))}, "
                         f"got {tuple(np.shape(gold))}") from None  # fmt: skip
    a = jnp.asarray(answers)
    return ((a == jnp.asarray(gold)) & (a >= 0)).astype(jnp.result_type(float))
