"""Ranking metrics: NDCG@k and Recall@k of a scored candidate list, with a rule for tied scores.

    DCG@k  = Σ_j G(g_j) · w_j,   G(g) = g ("linear") or 2^g − 1 ("exp"),   NDCG@k = DCG@k / IDCG@k
    w_j    = 1 / log2(rank_j + 2) for rank_j < k, else 0
    Recall@k = |top-k(scores) ∩ Rel| / |Rel|

Ties: ``"average"`` gives every item of a tie group the expectation over random tie-breaks (the
mean discount of the positions the group occupies, as scikit-learn's ``ndcg_score``); ``"stable"``
breaks ties by input order. Masked candidates get −inf scores and zero gains.

These are the reward of the retrieval task (`zoo.rl.grpo_envs.retrieval`) and the evaluation of
GroupRank (`zoo.rl.grouprank`, which re-exports them); they live here so both import down.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, is_traced

__all__ = ("ndcg_at_k", "recall_at_k")


def _check_finite_scores(name, x):
    """Scores may hold −inf for masked candidates, never NaN or +inf."""
    if not is_traced(x):
        a = np.asarray(x)
        if a.dtype.kind == "f" and (np.isnan(a).any() or np.isposinf(a).any()):
            raise ValueError(f"{name}: contains NaN or +inf (mask candidates with -inf scores instead)")


def _check_pair(sname, s, gname, g):
    check_array(sname, s, ndim=range(1, 16), finite=False)
    check_array(gname, g, ndim=range(1, 16), finite=False)
    if np.shape(s) != np.shape(g):
        raise ValueError(f"{gname}: expected the shape of {sname} {tuple(np.shape(s))}, got {tuple(np.shape(g))}")


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected a positive int, got {k!r}")


def _float(*xs):
    """The floating dtype to compute in: that of the floating inputs, else JAX's default float."""
    return jnp.result_type(*xs, float)


def _discounts(m: int, k: int, dtype) -> jax.Array:
    """``disc[r] = 1/log2(r + 2)`` for r < k, 0 beyond; f[m]."""
    r = jnp.arange(m)
    return jnp.where(r < k, 1.0 / jnp.log2(r + 2.0), 0.0).astype(dtype)


def _rank_stats(scores: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per item: #strictly greater, #equal (incl. itself), #equal with a smaller index; i32[..., m] each."""
    si, sj = scores[..., :, None], scores[..., None, :]
    m = scores.shape[-1]
    greater = jnp.sum(sj > si, -1)
    equal = jnp.sum(sj == si, -1)
    before = jnp.sum((sj == si) & (jnp.arange(m)[None, :] < jnp.arange(m)[:, None]), -1)
    return greater, equal, before


def _position_weights(scores: jax.Array, disc: jax.Array, tie: str) -> jax.Array:
    """Each item's discount under the tie rule: the mean of ``disc`` over its tied positions, or its stable rank's."""
    greater, equal, before = _rank_stats(scores)
    if tie == "stable":
        return disc[greater + before]
    cum = jnp.concatenate([jnp.zeros(1, disc.dtype), jnp.cumsum(disc)])
    return (cum[greater + equal] - cum[greater]) / equal


def ndcg_at_k(scores, gains, k: int, *, tie: str = "average", gain: str = "linear") -> jax.Array:
    """NDCG@k of a predicted ordering: ``scores: f32[..., m]``, ``gains: f32[..., m]`` (grades) -> ``f32[...]``.

        DCG@k = Σ_j G(g_j) · w_j,   G(g) = g ("linear") or 2^g − 1 ("exp"),
        w_j = mean of 1/log2(r + 2) over the positions r < k that item j may occupy (``tie="average"``:
              all positions of its tie group, = the expectation over random tie-breaks, as sklearn) or
              its rank with ties broken by input order (``tie="stable"``),
        NDCG@k = DCG@k / IDCG@k, and 0 when IDCG@k = 0 (no relevant item).

    Masked candidates: give them −inf scores and 0 gains.
    """
    _check_pair("scores", scores, "gains", gains)
    _check_k(k)
    check_choice("tie", tie, ("average", "stable"))
    check_choice("gain", gain, ("linear", "exp"))
    _check_finite_scores("scores", scores)
    check_array("gains", gains, ndim=range(1, 16))
    dt = _float(scores, gains)
    return _ndcg(jnp.asarray(scores, dt), jnp.asarray(gains, dt), k, tie, gain)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _ndcg(s, g, k, tie, gain):
    if gain == "exp":
        g = jnp.exp2(g) - 1.0
    disc = _discounts(s.shape[-1], k, s.dtype)
    dcg = jnp.sum(g * _position_weights(s, disc, tie), -1)
    ideal = jnp.sum(-jnp.sort(-g, axis=-1) * disc, -1)
    return jnp.where(ideal > 0, dcg / jnp.where(ideal > 0, ideal, 1.0), 0.0)


def recall_at_k(scores, relevant, k: int, *, tie: str = "average") -> jax.Array:
    """Recall@k = |top-k(scores) ∩ Rel| / |Rel| (0 when Rel is empty): ``f32[..., m], bool[..., m] -> f32[...]``.

    ``tie="average"`` counts an item of a tie group straddling position k with probability
    ``clip((k − #greater) / #tied, 0, 1)`` (the expectation under random tie-breaks); ``"stable"``
    breaks ties by input order.
    """
    _check_pair("scores", scores, "relevant", relevant)
    _check_k(k)
    check_choice("tie", tie, ("average", "stable"))
    _check_finite_scores("scores", scores)
    dt = _float(scores)
    return _recall(jnp.asarray(scores, dt), jnp.asarray(relevant).astype(dt), k, tie)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _recall(s, rel, k, tie):
    greater, equal, before = _rank_stats(s)
    if tie == "stable":
        inside = (greater + before < k).astype(s.dtype)
    else:
        inside = jnp.clip((k - greater) / equal, 0.0, 1.0).astype(s.dtype)
    n_rel = rel.sum(-1)
    return jnp.where(n_rel > 0, jnp.sum(inside * rel, -1) / jnp.maximum(n_rel, 1.0), 0.0)
