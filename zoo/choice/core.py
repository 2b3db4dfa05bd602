r"""Shared ranking and voting utilities of the ``zoo.choice`` family (pure, vectorised JAX).

Used by :mod:`zoo.choice.system_ranking` (benchmark aggregation, Colombo et al. 2022) and available to
every other paper of the family (e.g. committee rules on rankings). Everything here is a pure function
of arrays; the exact Kemeny solvers are host-side numpy (marked [numpy]) and never run inside ``jit``.

Conventions (one for the whole family; keep them distinct):

* **scores** ``x: f[N]``: larger = better (flip the sign of error-type metrics first).
* **rank vector** ``r: f[N]``: ``r_n`` = position score of item ``n``, **N = best, 1 = worst** (as
  ``scipy.stats.rankdata`` on the scores); ties get fractional (average) ranks by default.
* **order** ``o: i[N]``: ``o[0]`` = index of the best item (a permutation).
* **positions** ``pos: i[N]``: ``pos[n]`` = 0-based place of item ``n`` from the top, i.e. the inverse
  permutation of the order (``invert_permutation`` maps one to the other).

Functions (definitions):

* `rank_data` — ``1 + #{j: x_j < x_i} + tie term`` along the last axis, O(N^2) pairwise counts;
  ``ties`` in {"average", "min", "max", "dense", "ordinal"} exactly as ``scipy.stats.rankdata``;
  masked entries are excluded and returned as NaN.
* `scores_to_order` (stable argsort of ``-x``: ties keep the lower index first), `order_to_ranks`
  (``r[o[k]] = N - k``), `invert_permutation` (order <-> positions).
* `borda_count` — ``B_n = sum_t r^{(t)}_n`` with ``r^{(t)} = rank_data(S[:, t])``.
* `pairwise_preferences` — ``W_ij = #{t: S_it > S_jt} + 1/2 #{t: S_it = S_jt}`` (diagonal 0).
* `condorcet_winner` — the item beating every other in ``W`` by a strict majority, else -1.
* `kendall_distance` — ``d_tau(r, r') = sum_{n<m} 1[(r_n - r_m)(r'_n - r'_m) < 0]`` (discordant pairs);
  ``normalized=True`` divides by ``N(N-1)/2``.
* `kendall_tau_b` — ``(P - Q) / sqrt((P + Q + X_0)(P + Q + Y_0))`` (``scipy.stats.kendalltau``'s
  default variant, ties corrected; NaN when either side is constant).
* `topk_overlap` — ``|top_k(a) ∩ top_k(b)|`` (ties broken by lower index).
* `kemeny_cost` — ``sum_{a before b in o} W_{b a}`` (pairwise disagreements of an order with ``W``);
  the Kemeny median of a profile is the order minimising it (``W`` = `pairwise_preferences`).
* `kemeny_exact` [numpy] — exact minimiser by dynamic programming over subsets (N <= 16):
  ``g(U) = min_{j in U} [sum_{i in U} W_ij + g(U \ {j})]``, ``g(∅) = 0`` (``g(U)`` = best cost of ordering
  the still-unplaced set ``U``; placing ``j`` first among it costs the votes preferring some ``i in U`` to
  ``j``); ties between optimal orders -> the lexicographically smallest order.
* `kemeny_brute_force` [numpy] — all N! orders (N <= 8), the reference of `kemeny_exact`.
* `kemeny_local_search` — adjacent-swap descent (swap neighbours ``a, b`` when ``W_ba > W_ab``), jittable;
  started from the Borda order it is the practical Kemeny heuristic for large N (Borda itself is the
  approximation the system-ranking paper computes; it is a 5-approximation of Kemeny).
* `sample_plackett_luce` — Plackett–Luce orders by the Gumbel-max trick: ``argsort(-(log w + G))``.

Choices that are ours: `borda_count` with a mask gives a missing entry the mid rank ``(n_t + 1)/2`` of
its column's ``n_t`` observed entries (neutral: it neither helps nor hurts the system in expectation);
a fully masked column gives nobody points (no vote). Float ties are exact equality (compare scores
in float64 or round them first where summation order matters).
"""

from __future__ import annotations

import functools
import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_float_dtype, check_range, is_traced

__all__ = [
    "TIES",
    "borda_count",
    "condorcet_winner",
    "invert_permutation",
    "kemeny_brute_force",
    "kemeny_cost",
    "kemeny_exact",
    "kemeny_local_search",
    "kendall_distance",
    "kendall_tau_b",
    "order_to_ranks",
    "pairwise_preferences",
    "rank_data",
    "sample_plackett_luce",
    "scores_to_order",
    "topk_overlap",
]

TIES = ("average", "min", "max", "dense", "ordinal")
KEMENY_EXACT_MAX_N = 16
KEMENY_BRUTE_MAX_N = 8


# ----------------------------------------------------------------------------- helpers


def _materialize(x):
    """Pin ``x`` to one computed value before pairwise comparisons: inside a fusion XLA may recompute an
    input per use with different rounding, so ``x_i - x_i`` need not be 0 (seen on CPU for means)."""
    return jax.lax.optimization_barrier(x)


def _full_mask(x, mask):
    return jnp.ones(x.shape, bool) if mask is None else mask


def _off_diagonal(n, dtype):
    return 1 - jnp.eye(n, dtype=dtype)


def _fdtype(x):
    """The floating dtype to compute in: ``x``'s if floating, else JAX's default float."""
    dt = jnp.result_type(x)
    return dt if jnp.issubdtype(dt, jnp.floating) else jax.dtypes.canonicalize_dtype(float)


def _as_array(name, x):
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}")
    if not hasattr(x, "shape"):
        try:
            x = np.asarray(x)
        except Exception as e:
            raise TypeError(f"{name}: expected an array, got {type(x).__name__}") from e
    if x.dtype.kind not in "biuf" and not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name}: expected a real numeric array, got dtype {x.dtype}")
    return x


def _check_mask(name, mask, shape):
    mask = _as_array(name, mask)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} (as the scores), got {tuple(mask.shape)}")
    return mask.astype(bool) if is_traced(mask) else np.asarray(mask, bool)


def _check_finite_where(name, x, mask):
    """NaN/inf allowed only where ``mask`` is False (eager only)."""
    if is_traced(x) or (mask is not None and is_traced(mask)):
        return
    v = np.asarray(x)
    if v.dtype.kind not in "fc" and not jnp.issubdtype(v.dtype, jnp.floating):
        return
    bad = ~np.isfinite(v.astype(np.float64))
    if mask is not None:
        bad &= np.asarray(mask, bool)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: contains {int(bad.sum())} non-finite value(s) (NaN or inf) at unmasked "
                         f"entries, first at index {idx}")


def _check_int(name, v, low=None, high=None):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    check_range(name, int(v), low=low, high=high)
    return int(v)


def _check_order(name, order, n=None):
    order = _as_array(name, order)
    check_array(name, order, ndim=1, kind="iu")
    if n is not None and order.shape[0] != n:
        raise ValueError(f"{name}: expected a permutation of length {n}, got length {order.shape[0]}")
    if not is_traced(order):
        o = np.asarray(order)
        if not np.array_equal(np.sort(o), np.arange(o.shape[0])):
            raise ValueError(f"{name}: expected a permutation of 0..{o.shape[0] - 1}, got {o.tolist()}")
    return order


def _check_W(name, W, max_n=None):
    W = _as_array(name, W)
    check_array(name, W, ndim=2)
    if W.shape[0] != W.shape[1] or W.shape[0] < 2:
        raise ValueError(f"{name}: expected a square (N, N) matrix with N >= 2, got shape {tuple(W.shape)}")
    if max_n is not None and W.shape[0] > max_n:
        raise ValueError(f"{name}: exact Kemeny needs N <= {max_n} items, got N = {W.shape[0]} "
                         "(use kemeny_local_search for larger N)")
    return W


# ----------------------------------------------------------------------------- ranks and orders


@functools.partial(jax.jit, static_argnames=("ties",))
def _rank_impl(x, mask, ties):
    dt = _fdtype(x)
    mask = _full_mask(x, mask)
    x = _materialize(x)
    n = x.shape[-1]
    xi, xj = x[..., :, None], x[..., None, :]
    vj = mask[..., None, :]
    self_ = jnp.eye(n, dtype=bool)
    less = (xj < xi) & vj & ~self_
    eq = ((xj == xi) & ~self_ | self_) & vj
    n_less = less.sum(-1).astype(dt)
    n_eq = eq.sum(-1).astype(dt)  # includes the item itself when it is valid
    if ties == "average":
        r = 1 + n_less + 0.5 * (n_eq - 1)
    elif ties == "min":
        r = 1 + n_less
    elif ties == "max":
        r = n_less + n_eq
    elif ties == "ordinal":
        before = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]
        r = 1 + n_less + (eq & before).sum(-1).astype(dt)
    else:  # dense: 1 + number of distinct valid values below x_i
        cnt_j = jnp.where(mask, n_eq, 1)[..., None, :]
        r = 1 + (less.astype(dt) / cnt_j).sum(-1)
    return jnp.where(mask & ~jnp.isnan(x), r, jnp.nan).astype(dt)


def rank_data(x, *, ties: str = "average", mask=None):
    """Ranks along the last axis, 1 = worst (smallest), N = best; ``scipy.stats.rankdata`` semantics.

    Args:
      x: scores f[..., N] (ints allowed; larger = better).
      ties: static, one of ``TIES`` ("average", "min", "max", "dense", "ordinal"; "ordinal" gives
        tied items increasing ranks in index order).
      mask: optional bool[..., N]; False entries are left out (ranks run 1..n_valid among the rest)
        and returned as NaN. NaN scores under ``jit`` also give NaN (eagerly they raise).

    Returns:
      f[..., N] in ``x``'s float dtype (JAX's default float for integer ``x``).
    """
    x = _as_array("x", x)
    check_array("x", x, ndim=range(1, 33), finite=False)
    if x.shape[-1] < 1:
        raise ValueError(f"x: expected at least 1 item on the last axis, got shape {tuple(x.shape)}")
    check_choice("ties", ties, TIES)
    m = None if mask is None else _check_mask("mask", mask, x.shape)
    _check_finite_where("x", x, m)
    return _rank_impl(x, m, ties)


def scores_to_order(scores):
    """Order of items by decreasing score (``o[0]`` = best); stable, so ties keep the lower index first.

    Args:
      scores: f[..., N] (larger = better; rank vectors are scores too). Returns i32[..., N].
    """
    scores = _as_array("scores", scores)
    check_array("scores", scores, ndim=range(1, 33), finite=False)
    _check_finite_where("scores", scores, None)
    return _order_impl(scores)


@jax.jit
def _order_impl(s):
    return jnp.argsort(-s, axis=-1, stable=True).astype(jnp.int32)


def invert_permutation(p):
    """Inverse permutation along the last axis: maps an order to positions (``pos[o[k]] = k``) and back.

    Args:
      p: i[..., N], each row a permutation of 0..N-1. Returns i32[..., N].
    """
    p = _as_array("p", p)
    check_array("p", p, ndim=range(1, 33), kind="iu")
    if not is_traced(p):
        q = np.asarray(p)
        if not (np.sort(q, -1) == np.arange(q.shape[-1])).all():
            raise ValueError("p: expected permutations of 0..N-1 along the last axis")
    return _invert_impl(p)


@jax.jit
def _invert_impl(p):
    return jnp.argsort(p, axis=-1).astype(jnp.int32)


def order_to_ranks(order, dtype=None):
    """Rank vector of an order: ``r[o[k]] = N - k`` (the best item gets N). Returns f[N]."""

    order = _check_order("order", order)
    dtype = check_float_dtype("dtype", dtype)
    return _o2r_impl(order, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnames=("dtype",))
def _o2r_impl(order, dtype):
    n = order.shape[0]
    return jnp.zeros(n, dtype).at[order].set(jnp.arange(n, 0, -1, dtype=dtype))


# ----------------------------------------------------------------------------- voting rules


@functools.partial(jax.jit, static_argnames=("ties",))
def _borda_impl(S, mask, ties):
    mask = _full_mask(S, mask)
    R = _rank_impl(S.T, mask.T, ties).T  # [N, T]
    n_t = mask.sum(0).astype(R.dtype)
    fill = jnp.where(n_t > 0, (n_t + 1) / 2, 0)
    return jnp.where(mask, R, fill[None, :]).sum(1)


def _check_table(name, S, mask, *, ndim=2, min_items=2):
    S = _as_array(name, S)
    check_array(name, S, ndim=ndim, finite=False)
    if S.shape[0] < min_items:
        raise ValueError(f"{name}: expected at least {min_items} systems (rows), got {S.shape[0]}")
    if any(d < 1 for d in S.shape[1:]):
        raise ValueError(f"{name}: expected at least one task/instance, got shape {tuple(S.shape)}")
    m = None if mask is None else _check_mask("mask", mask, S.shape)
    _check_finite_where(name, S, m)
    return S, m


def _warn_empty_columns(mask, axis_name="task"):
    if mask is None or is_traced(mask):
        return
    cols = np.asarray(mask).reshape(mask.shape[0], -1).any(0)
    if not cols.any():
        raise ValueError("mask: every entry is masked out; nothing to aggregate")
    if not cols.all():
        warnings.warn(f"mask: {int((~cols).sum())} {axis_name}(s) have no observed score and are excluded "
                      "(no vote)", stacklevel=3)


def borda_count(S, *, mask=None, ties: str = "average"):
    """Borda count ``B_n = sum_t rank_data(S[:, t])_n`` of a score table (each column one voter).

    Args:
      S: f[N, T] scores, N >= 2 items (rows), T voters/tasks (columns); larger = better.
      mask: optional bool[N, T]; a missing entry counts as its column's mid rank ``(n_t + 1)/2``;
        a fully masked column is no vote (eager warning; all masked -> ValueError).
      ties: static, see `rank_data`.

    Returns:
      f[N]; larger = better (``scores_to_order`` gives the aggregated order).
    """
    S, m = _check_table("S", S, mask)
    check_choice("ties", ties, TIES)
    _warn_empty_columns(m)
    return _borda_impl(S, m, ties)


@jax.jit
def _pairwise_impl(S, mask):
    mask = _full_mask(S, mask)
    dt = _fdtype(S)
    S = _materialize(S)
    si, sj = S[:, None, :], S[None, :, :]
    both = mask[:, None, :] & mask[None, :, :]
    w = jnp.where(both, (si > sj).astype(dt) + 0.5 * (si == sj).astype(dt), 0).sum(-1)
    return w * (1 - jnp.eye(S.shape[0], dtype=dt))


def pairwise_preferences(S, *, mask=None):
    """Pairwise majority matrix ``W_ij = #{t: S_it > S_jt} + 1/2 #{t: S_it = S_jt}`` (diagonal 0).

    Args:
      S: f[N, T] scores (columns = voters); mask: optional bool[N, T], a pair counts in column ``t``
        only where both entries are observed.

    Returns:
      f[N, N] with ``W + W^T = (#columns where both observed)`` off the diagonal.
    """
    S, m = _check_table("S", S, mask)
    return _pairwise_impl(S, m)


def condorcet_winner(W):
    """Index of the item that beats every other (``W_ij > W_ji`` for all ``j != i``), or -1 if none.

    Args:
      W: f[N, N] pairwise preferences. Returns i32[].
    """
    W = _check_W("W", W)
    return _condorcet_impl(W)


@jax.jit
def _condorcet_impl(W):
    n = W.shape[0]
    wins = ((W > W.T).sum(1) == n - 1)
    return jnp.where(wins.any(), jnp.argmax(wins), -1).astype(jnp.int32)


# ----------------------------------------------------------------------------- agreement measures


def _check_pair(a_name, a, b_name, b, min_n=2):
    a, b = _as_array(a_name, a), _as_array(b_name, b)
    check_array(a_name, a, ndim=range(1, 33))
    check_array(b_name, b, ndim=range(1, 33))
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"{b_name}: expected {a.shape[-1]} items on the last axis (as {a_name}), "
                         f"got shape {tuple(b.shape)}")
    if a.shape[-1] < min_n:
        raise ValueError(f"{a_name}: expected at least {min_n} items, got {a.shape[-1]}")
    return a, b


@functools.partial(jax.jit, static_argnames=("normalized",))
def _kdist_impl(r, r2, normalized):
    n = r.shape[-1]
    r, r2 = _materialize(r), _materialize(r2)
    d = (r[..., :, None] - r[..., None, :]) * (r2[..., :, None] - r2[..., None, :])
    cnt = ((d < 0) & ~jnp.eye(n, dtype=bool)).sum((-1, -2)) // 2
    if normalized:
        return cnt.astype(_fdtype(jnp.result_type(r, r2))) / (n * (n - 1) / 2)
    return cnt.astype(jnp.int32)


def kendall_distance(r, r2, *, normalized: bool = False):
    """Kendall distance: the number of discordant pairs ``(r_n - r_m)(r'_n - r'_m) < 0`` (ties: none).

    Args:
      r, r2: f[..., N] rank vectors or scores (any monotone encoding; broadcasting batch axes).
      normalized: static; divide by ``N(N-1)/2`` (then a float in [0, 1]).

    Returns:
      i32[...] (or f[...] when normalized).
    """
    r, r2 = _check_pair("r", r, "r2", r2)
    return _kdist_impl(r, r2, bool(normalized))


@jax.jit
def _tau_impl(x, y, mask):
    dt = _fdtype(jnp.result_type(x, y))
    mask = jnp.ones(jnp.broadcast_shapes(x.shape, y.shape), bool) if mask is None else mask
    x, y = _materialize(x), _materialize(y)
    pair = (mask[..., :, None] & mask[..., None, :]).astype(dt) * _off_diagonal(x.shape[-1], dt)
    sx = jnp.sign(x[..., :, None] - x[..., None, :]).astype(dt) * pair
    sy = jnp.sign(y[..., :, None] - y[..., None, :]).astype(dt) * pair
    num = (sx * sy).sum((-1, -2))
    den = jnp.sqrt((sx * sx).sum((-1, -2)) * (sy * sy).sum((-1, -2)))
    return num / den


def kendall_tau_b(x, y, *, mask=None):
    """Kendall's tau-b (``scipy.stats.kendalltau``'s default), ties corrected, along the last axis.

    ``tau_b = (P - Q) / sqrt((P + Q + X_0)(P + Q + Y_0))``; NaN when ``x`` or ``y`` is constant.

    Args:
      x, y: f[..., N], N >= 2 (broadcasting batch axes).
      mask: optional bool[..., N] (broadcast with ``x``); only pairs of two unmasked items count
        (tau-b of the sub-vectors).

    Returns:
      f[...].
    """
    x, y = _check_pair("x", x, "y", y)
    shape = jnp.broadcast_shapes(x.shape, y.shape)
    m = None
    if mask is not None:
        m = _as_array("mask", mask)
        if m.shape[-1] != shape[-1]:
            raise ValueError(f"mask: expected {shape[-1]} items on the last axis (as x), got shape {tuple(m.shape)}")
        m = m.astype(bool)
    return _tau_impl(x, y, m)


def topk_overlap(a, b, k: int):
    """``|top_k(a) ∩ top_k(b)|`` of two score vectors (ties broken by lower index).

    Args:
      a, b: f[N] scores (larger = better); k: int in [1, N] (traced inside jit: one compile for all k).
      Returns i32[].
    """
    a, b = _check_pair("a", a, "b", b, min_n=1)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"a, b: expected 1-D score vectors, got shapes {tuple(a.shape)}, {tuple(b.shape)}")
    if not is_traced(k):
        k = _check_int("k", k, 1, a.shape[0])
    return _topk_impl(a, b, k)


@jax.jit
def _topk_impl(a, b, k):
    pa, pb = jnp.argsort(_order_impl(a)), jnp.argsort(_order_impl(b))  # 0-based positions
    return ((pa < k) & (pb < k)).sum().astype(jnp.int32)


# ----------------------------------------------------------------------------- Kemeny


def kemeny_cost(order, W):
    """Kemeny cost ``sum_{a before b in order} W[b, a]``: votes disagreeing with the order, summed over pairs.

    With ``W = pairwise_preferences(S)`` this equals ``sum_t d_tau(order, column t)`` plus half the ties.
    Linear in ``W`` (differentiable in ``W``).

    Args:
      order: i[N] permutation (``order[0]`` = best); W: f[N, N]. Returns f[].
    """
    W = _check_W("W", W)
    order = _check_order("order", order, W.shape[0])
    return _cost_impl(order, W)


@jax.jit
def _cost_impl(order, W):
    pos = jnp.argsort(order)
    before = (pos[:, None] < pos[None, :]).astype(_fdtype(W))  # before[i, j]: i placed above j
    return (before * W.T).sum()


def kemeny_exact(W) -> np.ndarray:
    """[numpy] Exact Kemeny order of ``W`` by dynamic programming over subsets; N <= 16.

    ``g(U) = min_{j in U} sum_{i in U} W[i, j] + g(U \\ {j})`` over the unplaced set ``U``; O(2^N N^2)
    time, O(2^N N) memory. Among optimal orders the lexicographically smallest is returned.

    Args:
      W: f[N, N] pairwise preferences (diagonal ignored), 2 <= N <= 16. Not jittable.

    Returns:
      int64[N] order (``[0]`` = best).
    """
    W = _check_W("W", W, KEMENY_EXACT_MAX_N)
    if is_traced(W):
        raise TypeError("W: kemeny_exact is a host (numpy) solver and cannot run inside jit/vmap")
    W = np.array(W, np.float64)
    n = W.shape[0]
    np.fill_diagonal(W, 0.0)
    full = (1 << n) - 1
    masks = np.arange(full + 1)
    bits = (masks[:, None] >> np.arange(n)) & 1
    C = bits.astype(np.float64) @ W  # C[U, j] = sum_{i in U} W[i, j]
    pop = bits.sum(1)
    g = np.zeros(full + 1)
    shifts = 1 << np.arange(n)
    for k in range(1, n + 1):
        idx = masks[pop == k]
        prev = g[idx[:, None] ^ shifts[None, :]]
        cand = np.where(bits[idx] == 1, C[idx] + prev, np.inf)
        g[idx] = cand.min(1)
    tol = 1e-9 * max(1.0, float(np.abs(W).sum()))
    order, U = [], full
    while U:
        for j in range(n):
            if (U >> j) & 1 and C[U, j] + g[U ^ (1 << j)] <= g[U] + tol:
                order.append(j)
                U ^= 1 << j
                break
    return np.asarray(order, np.int64)


def kemeny_brute_force(W) -> np.ndarray:
    """[numpy] Kemeny order by enumerating all N! orders (N <= 8; the reference of `kemeny_exact`).

    Returns the lexicographically smallest optimal order, int64[N].
    """
    W = _check_W("W", W, KEMENY_BRUTE_MAX_N)
    if is_traced(W):
        raise TypeError("W: kemeny_brute_force is a host (numpy) solver and cannot run inside jit/vmap")
    W = np.array(W, np.float64)
    n = W.shape[0]
    np.fill_diagonal(W, 0.0)
    perms = np.array(list(itertools.permutations(range(n))))  # lexicographic
    M = W[perms[:, :, None], perms[:, None, :]]  # M[p, a, b] = W[o_a, o_b]
    cost = (M * np.tril(np.ones((n, n)), -1)).sum((1, 2))  # sum_{a < b} W[o_b, o_a]
    tol = 1e-9 * max(1.0, float(np.abs(W).sum()))
    return perms[np.flatnonzero(cost <= cost.min() + tol)[0]].astype(np.int64)


def kemeny_local_search(W, init_order, *, n_sweeps: int = 0):
    """Adjacent-swap descent on the Kemeny cost (jittable): sweep top to bottom, swapping neighbours
    ``a`` (above) and ``b`` whenever ``W[b, a] > W[a, b]``; each swap strictly lowers `kemeny_cost`.

    Args:
      W: f[N, N]; init_order: i[N] start (e.g. ``scores_to_order(borda_count(S))``).
      n_sweeps: static number of sweeps; 0 means N (bubble-sort bound: enough for the descent to
        stop at a local minimum, where no adjacent swap improves).

    Returns:
      i32[N] order whose cost is <= the start's.
    """
    W = _check_W("W", W)
    init_order = _check_order("init_order", init_order, W.shape[0])
    n_sweeps = _check_int("n_sweeps", n_sweeps, 0)
    return _local_impl(W, init_order, n_sweeps or W.shape[0])


@functools.partial(jax.jit, static_argnames=("n_sweeps",))
def _local_impl(W, order, n_sweeps):
    n = W.shape[0]

    order = order.astype(jnp.int32)

    def step(t, o):
        k = t % (n - 1)
        a, b = o[k], o[k + 1]
        swap = W[b, a] > W[a, b]
        return o.at[k].set(jnp.where(swap, b, a)).at[k + 1].set(jnp.where(swap, a, b))

    return jax.lax.fori_loop(0, n_sweeps * (n - 1), step, order)


# ----------------------------------------------------------------------------- sampling


def sample_plackett_luce(key, log_weights, num: int):
    """``num`` Plackett–Luce orders by Gumbel-max: ``argsort(-(log w + G))``, ``G`` iid standard Gumbel.

    Item ``i`` comes first with probability ``w_i / sum_j w_j``, then recursively on the rest.

    Args:
      key: PRNG key; log_weights: f[N] (larger = more likely on top); num: static int >= 1.

    Returns:
      i32[num, N] orders (``[:, 0]`` = top).
    """
    log_weights = _as_array("log_weights", log_weights)
    check_array("log_weights", log_weights, ndim=1, min_size=1)
    num = _check_int("num", num, 1)
    return _pl_impl(key, log_weights, num)


@functools.partial(jax.jit, static_argnames=("num",))
def _pl_impl(key, logw, num):
    g = jax.random.gumbel(key, (num, logw.shape[0]), _fdtype(logw))
    return _order_impl(logw[None, :] + g)
