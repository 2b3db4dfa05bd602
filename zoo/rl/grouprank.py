"""GroupRank: groupwise reranking trained with GRPO (Sun, Long et al., 2025, arXiv:2511.11653).

A groupwise reranker reads a query and a *group* of m candidates at once and emits an independent
score s_j ∈ {0..10} for every candidate; groups are cut from shuffled candidate lists, scored in
parallel and merged by averaging (official inference code, AQ-MedAI/Diver ``rerank_groupwise.py``).
Training is GRPO over G sampled score vectors per group prompt with a heterogeneous reward.

Equations -> functions (spec ``papers/grouprank.md``):

- grouping: ``docs[s : s + group_size]`` for s = 0, interval, 2·interval, … -> `split_groups`;
  a fresh shuffle per repeat -> `shuffle_candidates`
- DCG@k = Σ_{r<k} g_(r) / log2(r + 2) with g linear (g) or exponential (2^g − 1); NDCG = DCG / IDCG
  (0 when IDCG = 0); ties averaged over the tied positions (= mean over tie-break orders) or broken by
  input order -> `ndcg_at_k`
- R_rec = |top-k(ŝ) ∩ Rel| / |Rel| -> `recall_at_k` (both metrics are defined in `zoo.rl.ranking`, shared
  with the retrieval task, and re-exported here)
- R_dist = 1 − mean_j |ŝ_j − y_j| (or 1 − JS(softmax(ŝ/τ), softmax(y/τ)) / ln 2, or 1 − W1 between the
  sorted score vectors) -> `distribution_reward`
- R = R_fmt · (λ_n R_ndcg + λ_r R_rec + λ_d R_dist), ŝ = s/10, y = g/3 -> `grouprank_reward`
- scorers over 11 score bins: pointwise MLP on [q, d, q⊙d] -> `pointwise_logits`; groupwise MLP on
  group-projected features (ĉ = d̄/‖d̄‖, x⊥ = x − (x·ĉ)ĉ; [q⊙d_j, q⊥⊙d⊥_j, d_j − d̄, q·ĉ]) ->
  `groupwise_logits`; self-attention over [q; d_1..d_m] (paper size) -> `attention_logits`;
  all through `scorer_logits` / `init_scorer`
- each document's score is one "token": G samples per group -> `sample_scores`; GRPO loss with
  tokens = documents (ρ ≡ 1, one pass per batch) -> `grouprank_loss` (uses `zoo.rl.grpo_core`)
- inference: shuffle → split → score → average (+ optional 0.6/0.4 mix with the retriever) -> `rerank`
- LLM output parsing with the official code's repairs -> `parse_group_output`
- evaluation over full candidate lists (queries without relevant documents excluded) -> `full_list_ndcg`

Choices that are ours, not the paper's (its RL stage is unreleased): the reward's concrete form and
weights λ = (1, 0.5, 0.5), k_r = 3, the target scale y = grade/3, the toy scorers and their features,
expected-score (Σ_b p_b b/10) rather than greedy decoding in `rerank` by default, and the tie rule
``"average"`` for NDCG and recall (the expectation under random tie-breaking).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced
from zoo.nn import MLP
from zoo.rl.ranking import _check_finite_scores, _check_k, _check_pair, _float, ndcg_at_k, recall_at_k

N_BINS = 11  # integer scores 0..10
MAX_GRADE = 3

# ------------------------------------------------------------------------------------- checks


def _check_int(name, v, low):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name}: expected an int, got {v!r}")
    check_range(name, v, low=low)


def _check_mask(name, v, shape):
    """``v`` (optional) broadcasts to ``shape``."""
    if v is None:
        return
    shape = tuple(shape)
    try:
        ok = np.broadcast_shapes(np.shape(v), shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name}: expected a shape that broadcasts to {shape}, got {tuple(np.shape(v))}")


def _check_grades(name, g, high=MAX_GRADE):
    if not is_traced(g):
        a = np.asarray(g)
        if a.dtype.kind not in "iub" and not np.all(a == np.round(a)):
            raise ValueError(f"{name}: expected integers in [0, {high}], got non-integers")
        if a.size and (a.min() < 0 or a.max() > high):
            raise ValueError(f"{name}: expected integers in [0, {high}], got values in [{a.min()}, {a.max()}]")


# ------------------------------------------------------------------------------------- grouping


def split_groups(n_candidates: int, group_size: int, interval: int) -> np.ndarray:
    """Index table of the groups cut from a (shuffled) list of ``n_candidates``: ``i32[n_groups, group_size]``.

    Group g holds positions ``[g·interval, g·interval + group_size)`` for g·interval < n_candidates (the
    official loop ``range(0, N, interval)``); positions past the end are −1 (padding, ignored everywhere).
    With ``interval < group_size`` groups overlap: a position p ≥ group_size − interval lies in
    ``group_size / interval`` groups when that divides, earlier positions in fewer (shuffling per repeat
    spreads this evenly).
    """
    _check_int("n_candidates", n_candidates, 1)
    _check_int("group_size", group_size, 1)
    _check_int("interval", interval, 1)
    check_range("group_size", group_size, low=1, high=n_candidates)
    check_range("interval", interval, low=1, high=group_size)
    starts = np.arange(0, n_candidates, interval)
    idx = starts[:, None] + np.arange(group_size)[None]
    return np.where(idx < n_candidates, idx, -1).astype(np.int32)


def shuffle_candidates(key: jax.Array, idx: jax.Array) -> jax.Array:
    """An independent random permutation of every row: ``idx: i32[Q, N] -> i32[Q, N]``."""
    check_array("idx", idx, ndim=2, finite=False, kind="iu")
    keys = jax.random.split(key, idx.shape[0])
    return jax.vmap(lambda k, r: jax.random.permutation(k, r))(keys, jnp.asarray(idx))


# ------------------------------------------------------------------------------------- metrics
# NDCG@k and Recall@k live in zoo.rl.ranking (re-exported here).


def distribution_reward(scores01, target01, *, kind: str = "mae", tau: float = 0.1, valid=None) -> jax.Array:
    """Agreement of a group's scores with the absolute target scale, in [0, 1]: ``f32[..., m] -> f32[...]``.

        mae: 1 − (1/m) Σ_j |ŝ_j − y_j|
        js:  1 − JS(softmax(ŝ/τ) ‖ softmax(y/τ)) / ln 2          (symmetric)
        w1:  1 − (1/m) Σ_r |ŝ_(r) − y_(r)|   (sorted vectors: 1-Wasserstein of the empirical distributions)

    ``valid: bool[..., m]`` excludes padded slots (means over the valid ones; w1 needs equal valid counts,
    which holds since both vectors share the mask).
    """
    _check_pair("scores01", scores01, "target01", target01)
    check_choice("kind", kind, ("mae", "js", "w1"))
    check_array("scores01", scores01, ndim=range(1, 16))
    check_array("target01", target01, ndim=range(1, 16))
    if not is_traced(tau):
        if isinstance(tau, bool) or np.ndim(tau) != 0 or not np.isfinite(tau):
            raise ValueError(f"tau: expected a positive finite number, got {tau!r}")
        check_range("tau", float(tau), low=0.0, low_inclusive=False)
    _check_mask("valid", valid, np.shape(scores01))
    dt = _float(scores01, target01)
    s = jnp.asarray(scores01, dt)
    v = jnp.ones(s.shape, bool) if valid is None else jnp.broadcast_to(jnp.asarray(valid, bool), s.shape)
    return _dist(s, jnp.asarray(target01, dt), v, tau, kind)


@functools.partial(jax.jit, static_argnums=(4,))
def _dist(s, y, v, tau, kind):
    n = jnp.maximum(v.sum(-1), 1)
    if kind == "mae":
        return 1.0 - jnp.sum(jnp.where(v, jnp.abs(s - y), 0.0), -1) / n
    if kind == "w1":  # padded slots sort to the end with the same value in both vectors
        big = 1e9
        ss = jnp.sort(jnp.where(v, s, big), -1)
        ys = jnp.sort(jnp.where(v, y, big), -1)
        return 1.0 - jnp.sum(jnp.abs(ss - ys), -1) / n
    p = jax.nn.softmax(jnp.where(v, s / tau, -jnp.inf), -1)
    r = jax.nn.softmax(jnp.where(v, y / tau, -jnp.inf), -1)
    mid = 0.5 * (p + r)

    def kl(a, b):
        return jnp.sum(jnp.where(a > 0, a * (jnp.log(jnp.where(a > 0, a, 1.0)) - jnp.log(jnp.where(a > 0, b, 1.0))), 0.0), -1)

    js = 0.5 * kl(p, mid) + 0.5 * kl(r, mid)
    return 1.0 - js / jnp.log(jnp.asarray(2.0, s.dtype))


@dataclasses.dataclass(frozen=True, kw_only=True)
class RewardConfig:
    """The heterogeneous reward R = R_fmt (λ_n R_ndcg + λ_r R_rec + λ_d R_dist) (our instantiation)."""

    weights: tuple[float, float, float] = (1.0, 0.5, 0.5)  # (λ_n, λ_r, λ_d)
    k_recall: int = 3
    dist: str = "mae"  # "mae" | "js" | "w1"
    tau: float = 0.1
    tie: str = "average"

    def __post_init__(self):
        if len(self.weights) != 3:
            raise ValueError(f"weights: expected 3 values (ndcg, recall, dist), got {self.weights!r}")
        for name, w in zip(("weights[ndcg]", "weights[recall]", "weights[dist]"), self.weights):
            check_range(name, w, low=0.0)
        _check_k(self.k_recall)
        check_choice("dist", self.dist, ("mae", "js", "w1"))
        check_range("tau", self.tau, low=0.0, low_inclusive=False)
        check_choice("tie", self.tie, ("average", "stable"))


def grouprank_reward(score_bins, grades, *, cfg: RewardConfig = RewardConfig(), format_ok=None, valid=None, weights=None):
    """Reward of predicted integer scores for one group: ``i32[..., m], i32[..., m] -> (f32[...], parts)``.

        ŝ = s/10,  y = g/3,  R_ndcg = NDCG@m(ŝ; g),  R_rec = Recall@k_r(ŝ; g > 0),  R_dist (cfg.dist),
        R = R_fmt · (λ_n R_ndcg + λ_r R_rec + λ_d R_dist).

    ``weights`` (optional, may be traced: f32[3]) overrides ``cfg.weights``; ``format_ok: bool[...]``
    is R_fmt (1 when None); ``valid: bool[..., m]`` marks real (non-padded) candidates.
    ``parts`` holds each term (``ndcg``, ``recall``, ``dist``, ``format``).
    """
    _check_pair("score_bins", score_bins, "grades", grades)
    _check_grades("grades", grades)
    _check_grades("score_bins", score_bins, high=N_BINS - 1)
    _check_mask("valid", valid, np.shape(score_bins))
    _check_mask("format_ok", format_ok, np.shape(score_bins)[:-1])
    if weights is not None and not is_traced(weights):
        check_array("weights", weights, shape=(3,))
        if np.any(np.asarray(weights) < 0):
            raise ValueError(f"weights: expected non-negative values, got {np.asarray(weights).tolist()}")
    if not isinstance(cfg, RewardConfig):
        raise ValueError(f"cfg: expected a RewardConfig, got {type(cfg).__name__}")
    s = jnp.asarray(score_bins)
    g = jnp.asarray(grades)
    dt = _float(s, g)
    m = s.shape[-1]
    v = jnp.ones(s.shape, bool) if valid is None else jnp.broadcast_to(jnp.asarray(valid, bool), s.shape)
    s01 = s.astype(dt) / (N_BINS - 1)
    y01 = g.astype(dt) / MAX_GRADE
    gf = jnp.where(v, g.astype(dt), 0.0)
    masked = jnp.where(v, s01, -jnp.inf)
    ndcg = ndcg_at_k(masked, gf, m, tie=cfg.tie)
    rec = recall_at_k(masked, (g > 0) & v, cfg.k_recall, tie=cfg.tie)
    dist = distribution_reward(s01, y01, kind=cfg.dist, tau=cfg.tau, valid=v)
    fmt = jnp.ones(s.shape[:-1], dt) if format_ok is None else jnp.broadcast_to(jnp.asarray(format_ok).astype(dt), s.shape[:-1])
    lam = jnp.asarray(cfg.weights if weights is None else weights).astype(dt)
    r = fmt * (lam[0] * ndcg + lam[1] * rec + lam[2] * dist)
    return r, {"ndcg": ndcg, "recall": rec, "dist": dist, "format": fmt}


def full_list_ndcg(scores, grades, k: int = 10, *, tie: str = "average") -> jax.Array:
    """Mean NDCG@k over queries that have a relevant candidate: ``f32[Q, N], i32[Q, N] -> f32[]``."""
    check_array("scores", scores, ndim=2)
    check_array("grades", grades, ndim=2, finite=False)
    _check_pair("scores", scores, "grades", grades)
    _check_grades("grades", grades)
    per_q = ndcg_at_k(scores, grades, k, tie=tie)
    has = jnp.any(jnp.asarray(grades) > 0, -1)
    return jnp.sum(jnp.where(has, per_q, 0.0)) / jnp.maximum(has.sum(), 1)


# ------------------------------------------------------------------------------------- scorers

SCORERS = ("pointwise", "groupwise", "attention")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScorerConfig:
    """A scorer policy over 11 score bins (hashable: a static jit argument)."""

    kind: str = "groupwise"  # "pointwise" | "groupwise" | "attention"
    dim: int = 32  # D, the embedding width
    hidden: tuple[int, ...] = (64, 64)  # MLP widths (pointwise/groupwise); width = hidden[0] for attention
    n_layers: int = 2  # attention layers
    n_heads: int = 4

    def __post_init__(self):
        check_choice("kind", self.kind, SCORERS)
        check_range("dim", self.dim, low=1)
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected a non-empty tuple of positive ints, got {self.hidden!r}")
        check_range("n_layers", self.n_layers, low=1, high=64)
        check_range("n_heads", self.n_heads, low=1)
        if self.kind == "attention" and self.hidden[0] % self.n_heads:
            raise ValueError(f"n_heads: expected a divisor of hidden[0]={self.hidden[0]}, got {self.n_heads}")


def _check_q_docs(q, docs, valid=None, dim=None, docs_name="docs"):
    """Shapes always (also under jit); NaN/inf only on concrete arrays."""
    check_array("q", q, ndim=2)
    check_array(docs_name, docs, ndim=3)
    if docs.shape[0] != q.shape[0] or docs.shape[2] != q.shape[1]:
        raise ValueError(
            f"{docs_name}: expected shape ({q.shape[0]}, m, {q.shape[1]}) to match q, got {tuple(docs.shape)}"
        )
    if dim is not None and q.shape[1] != dim:
        raise ValueError(f"q: expected embedding width {dim} (cfg.dim), got {q.shape[1]}")
    if valid is not None:
        check_array("valid", valid, shape=docs.shape[:2], finite=False)


def _check_cfg(cfg):
    if not isinstance(cfg, ScorerConfig):
        raise ValueError(f"cfg: expected a ScorerConfig, got {type(cfg).__name__}")


def pointwise_features(q, docs):
    """``[q, d_j, q⊙d_j]`` per candidate: ``f32[Q, D], f32[Q, m, D] -> f32[Q, m, 3D]`` (no cross-candidate term)."""
    _check_q_docs(q, docs)
    qb = jnp.broadcast_to(q[:, None, :], docs.shape)
    return jnp.concatenate([qb, docs, qb * docs], -1)


def groupwise_features(q, docs, valid=None):
    """Group-projected features ``f32[Q, m, 3D + 1]`` (padded slots, ``valid = False``, are left out of d̄).

        d̄ = mean_j d_j,  ĉ = d̄/‖d̄‖,  x⊥ = x − (x·ĉ)ĉ,
        feature_j = [q⊙d_j, q⊥⊙d⊥_j, d_j − d̄, q·ĉ].
    """
    _check_q_docs(q, docs, valid)
    v = jnp.ones(docs.shape[:-1], bool) if valid is None else jnp.asarray(valid, bool)
    w = v.astype(docs.dtype)[..., None]
    dbar = jnp.sum(docs * w, 1) / jnp.maximum(jnp.sum(w, 1), 1.0)  # [Q, D]
    c = dbar / jnp.sqrt(jnp.sum(dbar * dbar, -1, keepdims=True) + 1e-12)
    q_perp = q - jnp.sum(q * c, -1, keepdims=True) * c
    d_perp = docs - jnp.sum(docs * c[:, None], -1, keepdims=True) * c[:, None]
    qc = jnp.broadcast_to(jnp.sum(q * c, -1)[:, None, None], docs.shape[:-1] + (1,))
    return jnp.concatenate([q[:, None] * docs, q_perp[:, None] * d_perp, docs - dbar[:, None], qc], -1)


class _AttentionScorer(nn.Module):
    """Pre-norm self-attention over the tokens [q; d_1..d_m] (no positions: equivariant over documents)."""

    width: int
    n_layers: int
    n_heads: int

    @nn.compact
    def __call__(self, q, docs, valid):
        tok = jnp.concatenate([q[:, None], docs], 1)
        kind = jnp.concatenate([jnp.zeros_like(tok[:, :1, :1]), jnp.ones_like(tok[:, 1:, :1])], 1)
        x = nn.Dense(self.width)(jnp.concatenate([tok, kind], -1))
        keep = jnp.concatenate([jnp.ones_like(valid[:, :1]), valid], 1)
        mask = keep[:, None, None, :]
        for _ in range(self.n_layers):
            x = x + nn.MultiHeadDotProductAttention(num_heads=self.n_heads)(nn.LayerNorm()(x), mask=mask)
            h = nn.Dense(2 * self.width)(nn.LayerNorm()(x))
            x = x + nn.Dense(self.width)(nn.gelu(h))
        return nn.Dense(N_BINS)(nn.LayerNorm()(x[:, 1:]))


def _module(cfg: ScorerConfig):
    if cfg.kind == "attention":
        return _AttentionScorer(width=cfg.hidden[0], n_layers=cfg.n_layers, n_heads=cfg.n_heads)
    return MLP(features=tuple(cfg.hidden) + (N_BINS,))


def init_scorer(key: jax.Array, cfg: ScorerConfig, group_size: int = 4) -> Any:
    """Parameters of a scorer (flax params dict)."""
    _check_cfg(cfg)
    _check_int("group_size", group_size, 1)
    return _init_scorer(key, cfg, group_size)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _init_scorer(key, cfg, group_size):
    q = jnp.zeros((1, cfg.dim), _float())
    docs = jnp.zeros((1, group_size, cfg.dim), _float())
    valid = jnp.ones((1, group_size), bool)
    if cfg.kind == "attention":
        return _module(cfg).init(key, q, docs, valid)
    feats = pointwise_features(q, docs) if cfg.kind == "pointwise" else groupwise_features(q, docs)
    return _module(cfg).init(key, feats)


def _check_scorer_inputs(q, docs, valid, dim, docs_name="docs"):
    _check_q_docs(q, docs, valid, dim, docs_name)


def pointwise_logits(params, q, docs, *, cfg: ScorerConfig):
    """Per-candidate MLP on ``[q, d, q⊙d]``: ``f32[Q, D], f32[Q, m, D] -> f32[Q, m, 11]``."""
    _check_cfg(cfg)
    _check_scorer_inputs(q, docs, None, cfg.dim)
    return _module(cfg).apply(params, pointwise_features(q, docs))


def groupwise_logits(params, q, docs, valid=None, *, cfg: ScorerConfig):
    """MLP on the group-projected features (`groupwise_features`): ``-> f32[Q, m, 11]``."""
    _check_cfg(cfg)
    _check_scorer_inputs(q, docs, valid, cfg.dim)
    return _module(cfg).apply(params, groupwise_features(q, docs, valid))


def attention_logits(params, q, docs, valid=None, *, cfg: ScorerConfig):
    """Self-attention scorer over [q; d_1..d_m] (paper size): ``-> f32[Q, m, 11]``."""
    _check_cfg(cfg)
    _check_scorer_inputs(q, docs, valid, cfg.dim)
    v = jnp.ones(docs.shape[:2], bool) if valid is None else jnp.asarray(valid, bool)
    return _module(cfg).apply(params, q, docs, v)


def scorer_logits(params, q, docs, valid=None, *, cfg: ScorerConfig):
    """Dispatch on ``cfg.kind``: ``q: f32[Q, D], docs: f32[Q, m, D], valid: bool[Q, m] -> f32[Q, m, 11]``."""
    _check_cfg(cfg)
    _check_scorer_inputs(q, docs, valid, cfg.dim)
    return _scorer_logits(params, jnp.asarray(q), jnp.asarray(docs), None if valid is None else jnp.asarray(valid), cfg)


@functools.partial(jax.jit, static_argnums=(4,))
def _scorer_logits(params, q, docs, valid, cfg):
    if cfg.kind == "pointwise":
        return pointwise_logits(params, q, docs, cfg=cfg)
    if cfg.kind == "groupwise":
        return groupwise_logits(params, q, docs, valid, cfg=cfg)
    return attention_logits(params, q, docs, valid, cfg=cfg)


# ------------------------------------------------------------------------------------- sampling and loss


def _check_logits(logits):
    """``f[Q, m, 11]``; −inf (a forbidden bin) is allowed, NaN and +inf are not."""
    check_array("logits", logits, ndim=3, shape=(None, None, N_BINS), finite=False, kind="f")
    _check_finite_scores("logits", logits)


def _check_bins(bins, logits):
    q, m, _ = logits.shape
    check_array("bins", bins, ndim=3, shape=(q, None, m), finite=False, kind="iu")
    _check_grades("bins", bins, high=N_BINS - 1)


def sample_scores(key: jax.Array, logits, group: int):
    """G sampled score vectors per group prompt: ``logits: f32[Q, m, 11] -> (bins i32[Q, G, m], logp f32[Q, G, m])``.

    Each document's score is one "token" drawn independently from its categorical.
    """
    _check_logits(logits)
    _check_int("group", group, 2)
    logp_all = jax.nn.log_softmax(logits, -1)
    bins = jax.random.categorical(key, logits[:, None], axis=-1, shape=(logits.shape[0], group, logits.shape[1]))
    logp = jnp.take_along_axis(jnp.broadcast_to(logp_all[:, None], bins.shape + (N_BINS,)), bins[..., None], -1)[..., 0]
    return bins.astype(jnp.int32), logp


def score_logprobs(logits, bins):
    """``log p(bins)`` per document: ``f32[Q, m, 11], i32[Q, G, m] -> f32[Q, G, m]``."""
    _check_logits(logits)
    _check_bins(bins, logits)
    logp_all = jax.nn.log_softmax(logits, -1)[:, None]  # [Q, 1, m, 11]
    return jnp.take_along_axis(jnp.broadcast_to(logp_all, bins.shape + (N_BINS,)), bins[..., None], -1)[..., 0]


def grouprank_loss(params, batch, *, scorer: ScorerConfig, loss_cfg=None):
    """GRPO loss with tokens = documents: ``(scalar, metrics)``.

    ``batch``: ``q f32[Q, D]``, ``docs f32[Q, m, D]``, ``valid bool[Q, m]``, ``bins i32[Q, G, m]``,
    ``adv f32[Q, G]`` (group-relative advantages, a constant), optional ``logp_old f32[Q, G, m]``
    (default: the current log-probs, stop-gradient, so ρ ≡ 1 and ∇L = −Σ A ∇log p / #tokens).
    Flattened to N = Q·G sequences of T = m tokens for `zoo.rl.grpo_core.grpo_objective`.
    """
    from zoo.rl import grpo_core

    if not isinstance(batch, dict) or any(k not in batch for k in ("q", "docs", "valid", "bins", "adv")):
        have = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"batch: expected a dict with keys q, docs, valid, bins, adv; got {have}")
    _check_cfg(scorer)
    bins = batch["bins"]
    check_array("adv", batch["adv"], shape=tuple(np.shape(bins))[:2])
    cfg = grpo_core.LossConfig(kl_coef=0.0) if loss_cfg is None else loss_cfg
    logits = scorer_logits(params, batch["q"], batch["docs"], batch["valid"], cfg=scorer)
    logp = score_logprobs(logits, batch["bins"])
    qn, g, m = logp.shape
    mask = jnp.broadcast_to(jnp.asarray(batch["valid"], bool)[:, None], logp.shape).reshape(qn * g, m)
    logp = logp.reshape(qn * g, m)
    old = batch.get("logp_old")
    old = jax.lax.stop_gradient(logp) if old is None else jnp.reshape(old, (qn * g, m))
    adv = grpo_core.broadcast_advantages(jax.lax.stop_gradient(batch["adv"]), mask.reshape(qn, g, m))
    return grpo_core.grpo_objective(logp, old, None, adv.reshape(qn * g, m), mask, cfg=cfg)


# ------------------------------------------------------------------------------------- inference


def _expected_or_greedy(logits, use):
    if use == "greedy":
        return jnp.argmax(logits, -1).astype(logits.dtype) / (N_BINS - 1)
    return jnp.sum(jax.nn.softmax(logits, -1) * jnp.arange(N_BINS, dtype=logits.dtype), -1) / (N_BINS - 1)


def rerank(params, key, q, cands, *, scorer: ScorerConfig, group_size: int, interval: int, repeats: int,
           retriever_scores=None, interp: float = 0.6, use: str = "expected", shuffle: bool = True):
    """Groupwise reranking of full candidate lists: ``q: f32[Q, D], cands: f32[Q, N, D] -> f32[Q, N]``.

    For each of ``repeats`` rounds: shuffle every query's candidates (unless ``shuffle=False``), cut groups
    (`split_groups`), score every group (expected score Σ_b p_b b/10, or the greedy bin /10), and add each
    score to its document. Document score = mean over all groups it appeared in; with
    ``retriever_scores`` the result is ``interp · score + (1 − interp) · retriever``.
    A pointwise scorer gives the same result for any grouping.
    """
    _check_cfg(scorer)
    _check_scorer_inputs(q, cands, None, scorer.dim, "cands")
    n = cands.shape[1]
    _check_int("repeats", repeats, 1)
    check_choice("use", use, ("expected", "greedy"))
    check_range("interp", interp, low=0.0, high=1.0)
    groups = jnp.asarray(split_groups(n, group_size, interval))  # [n_groups, m]
    if retriever_scores is not None:
        check_array("retriever_scores", retriever_scores, shape=cands.shape[:2])
    return _rerank(params, key, jnp.asarray(q), jnp.asarray(cands), groups, retriever_scores,
                   scorer=scorer, repeats=repeats, interp=interp, use=use, shuffle=shuffle)


@functools.partial(jax.jit, static_argnames=("scorer", "repeats", "use", "shuffle"))
def _rerank(params, key, q, cands, groups, retriever_scores, *, scorer, repeats, interp, use, shuffle):
    qn, n, _ = cands.shape
    ng, m = groups.shape
    base = jnp.broadcast_to(jnp.arange(n), (qn, n))
    dt = _float(q, cands)
    total = jnp.zeros((qn, n), dt)
    count = jnp.zeros((qn, n), dt)
    for key_r in jax.random.split(key, repeats):
        order = shuffle_candidates(key_r, base) if shuffle else base  # order[q, p] = doc at position p
        valid = groups >= 0  # [ng, m]
        doc = jnp.take_along_axis(order, jnp.where(valid, groups, 0).reshape(1, -1), 1).reshape(qn, ng, m)
        docs = jnp.take_along_axis(cands, doc.reshape(qn, ng * m)[..., None], 1).reshape(qn * ng, m, -1)
        vq = jnp.broadcast_to(valid, (qn, ng, m)).reshape(qn * ng, m)
        qq = jnp.repeat(q, ng, 0)
        logits = _scorer_logits(params, qq, docs, vq, scorer)
        s = _expected_or_greedy(logits, use).reshape(qn, ng * m).astype(dt)
        w = vq.reshape(qn, ng * m).astype(dt)
        rows = jnp.arange(qn)[:, None]
        total = total.at[rows, doc.reshape(qn, -1)].add(s * w)
        count = count.at[rows, doc.reshape(qn, -1)].add(w)
    score = total / jnp.maximum(count, 1.0)
    if retriever_scores is not None:
        score = interp * score + (1.0 - interp) * jnp.asarray(retriever_scores).astype(dt)
    return score


# ------------------------------------------------------------------------------------- LLM output parsing

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)  # the first closed block
_FENCE = re.compile(r"```json\s*([\s\S]+?)\s*```")  # closed ```json fences; the last one is used
_OBJECT = re.compile(r"\{[\s\S]*?\}")  # closed {...} (shortest); the last one is used


def _official_extract(text: str):
    """The official ``_extract_rerank_output`` (AQ-MedAI/Diver ``Reranker/rerank_groupwise.py``): the JSON
    object of an output as a dict, or None where the official code raises (the group then scores 0)."""
    m = _ANSWER.search(text)
    body = m.group(1).strip() if m else text
    fenced = _FENCE.findall(body)
    if fenced:
        cand = fenced[-1].strip()
    else:
        objs = _OBJECT.findall(body)
        if not objs:
            return None
        cand = objs[-1].strip()
    cand = re.sub(r"(\[\d+\])\]", r"\1", cand)
    if cand.count("{") > cand.count("}"):
        cand += "}"
    cand = re.sub(r"\s+", " ", cand).strip()
    try:
        obj = json.loads(cand)
        return dict(obj)
    except (json.JSONDecodeError, TypeError, ValueError):
        return None


def parse_group_output(text: str, m: int) -> dict[int, int] | None:
    """Parse an LLM's groupwise output into ``{document id (1-based): score}``, or None (→ all zeros).

    As the official code: the body of the *first* closed ``<answer>…</answer>`` (the whole text when there
    is none; an unclosed ``<answer>`` is not a block), then the last closed ```` ```json ```` fence, else the
    last closed ``{…}``; no closed object and no fence → None. Repairs: ``"[7]]"`` → ``"[7]"`` and, inside a
    fence only (a ``{…}`` match is closed by construction), one missing ``}`` is appended; whitespace
    runs collapse; ``json.loads``. Ours (R_fmt, stricter than the official code, which keeps whatever ids
    it can index): valid iff every id 1..m appears exactly once with an integer score in [0, 10].
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    _check_int("m", m, 1)
    obj = _official_extract(text)
    if obj is None:
        return None
    out = {}
    for k, v in obj.items():
        mk = re.fullmatch(r"\s*\[?(\d+)\]?\s*", str(k))
        if (mk is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v)
                or v != int(v) or not 0 <= v <= 10):  # fmt: skip
            return None
        i = int(mk.group(1))
        if i in out:
            return None
        out[i] = int(v)
    return out if sorted(out) == list(range(1, m + 1)) else None


def group_scores_from_text(text: str, m: int, *, dtype=np.float32) -> tuple[np.ndarray, bool]:
    """Scores ``f[m]`` in [0, 1] (score/10) from an LLM output, and whether parsing succeeded (else zeros)."""
    parsed = parse_group_output(text, m)
    if parsed is None:
        return np.zeros(m, dtype), False
    return np.array([parsed[i + 1] for i in range(m)], dtype) / 10.0, True


__all__: Sequence[str] = (
    "N_BINS",
    "RewardConfig",
    "SCORERS",
    "ScorerConfig",
    "attention_logits",
    "distribution_reward",
    "full_list_ndcg",
    "group_scores_from_text",
    "grouprank_loss",
    "grouprank_reward",
    "groupwise_features",
    "groupwise_logits",
    "init_scorer",
    "ndcg_at_k",
    "parse_group_output",
    "pointwise_features",
    "pointwise_logits",
    "recall_at_k",
    "rerank",
    "sample_scores",
    "score_logprobs",
    "scorer_logits",
    "shuffle_candidates",
    "split_groups",
)
