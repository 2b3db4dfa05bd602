r"""Ranking NLP systems across tasks by rank aggregation (Borda / Kemeny) instead of the mean, in JAX.

Paper: Pierre Colombo, Nathan Noiry, Ekhine Irurozki, Stéphan Clémençon, "What are the best systems?
New perspectives on NLP Benchmarking", NeurIPS 2022, arXiv 2202.03799. Official code (read, not
vendored): ``PierreColombo/RankingNLPSystems`` (``utils.py``). The ranking primitives (ranks with ties,
Borda, pairwise preferences, Kendall distance / tau-b, exact and local-search Kemeny) live in
:mod:`zoo.choice.core`; this module is the paper's aggregation layer on top of them.

Objects: ``N`` systems, ``T`` tasks; task-level scores ``S: f[N, T]``, instance-level ``S: f[N, T, K]``
with an instance mask ``M: bool[T, K]`` (ragged tasks padded to ``K``); larger = better everywhere.
Outputs are aggregate *scores* ``f[N]`` (larger = better; ``core.scores_to_order`` gives the order).

* Mean baseline (§2.2): ``m_n = (1/T) sum_t S_nt`` -> `mean_aggregate`; instance level
  ``m_n = mean_t mean_k S_ntk`` -> `mean_aggregate_instances` (official ``mean_aggregation_*``).
* Task level (§2.3): Kemeny median ``argmin_sigma sum_t d_tau(sigma, r^(t))`` -> `kemeny_ranking`
  (exact DP for N <= 16, else adjacent-swap descent from the Borda order); its practical approximation,
  the one the official code computes, is the Borda count ``B_n = sum_t r^(t)_n`` -> ``core.borda_count``.
* Instance level (§2.4): one-level ``B_n = sum_{t,k} M_tk r^(t,k)_n`` -> `one_level_borda`; two-level
  ``B_n = sum_t rank(sum_k M_tk r^(t,k))_n`` (each task one vote) -> `two_level_borda`.
* Error against a known truth: `ranking_error` (normalised Kendall distance; tied aggregate pairs count 1/2).
* Agreement of two aggregates (§2.5 item 1): `agreement` (tau-b, top-k overlaps).
* Robustness (§2.5 items 2-3): `task_removal_curve` (tau-b of the aggregate on the first k tasks of a
  random column order vs the full-table aggregate, k = 1..T, vmapped over orders), `system_addition_curve`
  (tau-b on the first n systems of a random system order vs the full ranking restricted to them).
* Synthetic benchmarks with a known true ranking (§2.5 item 5): `plackett_luce_scores`
  (``S_nt = -phi n + G_nt``, G iid Gumbel: each column's ranking is exactly Plackett–Luce with weights
  ``exp(-phi n)``, truth = identity, system 0 best), `plackett_luce_instances` (same per instance),
  `corrupt` (replace columns by ``scale * (0, 1, ..., N-1)``: the reversed order at a huge scale),
  `drop_scores` (missing scores).

Choices that are ours (not the paper's), see also :mod:`zoo.choice.core`:

* Ties: average ranks by default (the official ``argsort(argsort(x))`` breaks ties by sort order;
  ``ties="ordinal"`` is the deterministic stand-in, ties broken by index).
* Missing scores (task level): the mean is over observed entries; Borda gives a missing entry its
  column's mid rank (neutral). A task with no score at all is no vote.
* `kemeny_ranking` is [host] (numpy DP) for N <= 16; the paper computes Borda only, calling it the
  approximation of Kemeny. Instance-level Kemeny is available by reshaping ``S`` to ``[N, T*K]``.
* The synthetic generator is the exact Gumbel-max construction of Plackett–Luce; the official notebook
  passes the PL *weight* ``exp(n - phi i)`` as the Gumbel location (reconstructed-from-spec choice).
* `ranking_error` counts a pair tied in the aggregate (but not in the truth) as 1/2 discordant (the
  expected error of a random tie-break), so ties do not flatter discrete aggregates like Borda.
* `drop_scores` keeps entry ``(n, n mod T)`` of every system so that no system loses all its scores.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_float_dtype, check_range, is_traced
from zoo.choice import core
from zoo.choice.core import TIES, _borda_impl, _check_int, _check_table, _fdtype, _rank_impl, _tau_impl

__all__ = [
    "AGGREGATES",
    "agreement",
    "corrupt",
    "drop_scores",
    "kemeny_ranking",
    "mean_aggregate",
    "mean_aggregate_instances",
    "one_level_borda",
    "plackett_luce_instances",
    "plackett_luce_scores",
    "ranking_error",
    "system_addition_curve",
    "task_removal_curve",
    "two_level_borda",
]

AGGREGATES = ("mean", "borda")


# ----------------------------------------------------------------------------- task level


@jax.jit
def _mean_impl(S, mask):
    # Columns are added one after another (a scan), so the sum of a row does not depend on the fusion XLA
    # picks: the mean of a subset of tasks that happens to be all of them equals the full mean bit for
    # bit, and exact ties stay ties (a vectorised reduction may round the same row differently per call).
    mask = core._full_mask(S, mask)
    dt = _fdtype(S)

    def add(acc, col):
        s, m = col
        return acc + jnp.where(m, s.astype(dt), 0), None

    total, _ = jax.lax.scan(add, jnp.zeros(S.shape[0], dt), (S.T, mask.T))
    return total / mask.astype(dt).sum(1)


def mean_aggregate(S, *, mask=None):
    """Mean aggregation ``m_n = mean_{t observed} S_nt`` (the baseline the paper argues against).

    Args:
      S: f[N, T] scores (N >= 2); mask: optional bool[N, T] of observed entries (every system needs one).

    Returns:
      f[N] (larger = better).
    """
    S, m = _check_table("S", S, mask)
    if m is not None and not is_traced(m) and not np.asarray(m).any(1).all():
        bad = int(np.flatnonzero(~np.asarray(m).any(1))[0])
        raise ValueError(f"mask: system {bad} has no observed score; the mean is undefined")
    return _mean_impl(S, m)


def kemeny_ranking(S, *, mask=None, method: str = "auto"):
    """[host] Kemeny consensus order of the per-task rankings of ``S`` (``o[0]`` = best system).

    ``method="exact"``: ``core.kemeny_exact`` on ``core.pairwise_preferences(S)`` (N <= 16);
    ``"local"``: adjacent-swap descent from the Borda order (any N, an upper bound on the optimum);
    ``"auto"``: exact when N <= 16. Returns i[N].
    """
    check_choice("method", method, ("auto", "exact", "local"))
    S, m = _check_table("S", S, mask)
    W = core.pairwise_preferences(S, mask=m)
    if method == "exact" or (method == "auto" and S.shape[0] <= core.KEMENY_EXACT_MAX_N):
        return core.kemeny_exact(W)
    return core.kemeny_local_search(W, core.scores_to_order(core.borda_count(S, mask=m)))


# ----------------------------------------------------------------------------- instance level


def _check_instances(S, mask):
    S = core._as_array("S", S)
    check_array("S", S, ndim=3, finite=False)
    if S.shape[0] < 2 or S.shape[1] < 1 or S.shape[2] < 1:
        raise ValueError(f"S: expected (N >= 2 systems, T >= 1 tasks, K >= 1 instances), got {tuple(S.shape)}")
    m = None if mask is None else core._check_mask("mask", mask, S.shape[1:])
    core._check_finite_where("S", S, None if mask is None or is_traced(m) else np.broadcast_to(m, S.shape))
    if m is not None and not is_traced(m):
        core._warn_empty_columns(np.asarray(m).any(1)[None, :], "task")
    return S, m


def _instance_ranks(S, mask, ties):
    R = _rank_impl(jnp.moveaxis(S, 0, -1), None, ties)  # [T, K, N]
    mask = jnp.ones(S.shape[1:], bool) if mask is None else mask
    return jnp.where(mask[..., None], R, 0)


@functools.partial(jax.jit, static_argnames=("ties",))
def _one_level_impl(S, mask, ties):
    return _instance_ranks(S, mask, ties).sum((0, 1))


@functools.partial(jax.jit, static_argnames=("ties",))
def _two_level_impl(S, mask, ties):
    b = _instance_ranks(S, mask, ties).sum(1)  # [T, N] per-task Borda counts
    rho = _rank_impl(b, None, "average")
    mask = jnp.ones(S.shape[1:], bool) if mask is None else mask
    return jnp.where(mask.any(1)[:, None], rho, 0).sum(0)


def one_level_borda(S, mask=None, *, ties: str = "average"):
    """One-level ("direct") instance Borda: ``B_n = sum_{t,k} M_tk rank(S[:, t, k])_n``.

    Args:
      S: f[N, T, K]; mask: optional bool[T, K] of real instances; ties: static, see ``core.rank_data``.

    Returns:
      f[N] (larger = better). Tasks with more instances weigh more.
    """
    check_choice("ties", ties, TIES)
    S, m = _check_instances(S, mask)
    return _one_level_impl(S, m, ties)


def two_level_borda(S, mask=None, *, ties: str = "average"):
    """Two-level instance Borda: per task ``b^(t) = sum_k M_tk rank(S[:, t, k])``, then
    ``B_n = sum_t rank(b^(t))_n`` (average ranks at the task level); each task is one vote.

    Args:
      S: f[N, T, K]; mask: optional bool[T, K]; ties: static, for the instance-level ranks.

    Returns:
      f[N] (larger = better).
    """
    check_choice("ties", ties, TIES)
    S, m = _check_instances(S, mask)
    return _two_level_impl(S, m, ties)


@jax.jit
def _mean_inst_impl(S, mask):
    mf = mask.astype(_fdtype(S))
    per_task = jnp.where(mask[None], S, 0).sum(2) / jnp.maximum(mf.sum(1), 1)[None]  # [N, T]
    has = mf.max(1)
    return (per_task * has[None]).sum(1) / has.sum()


def mean_aggregate_instances(S, mask=None):
    """Instance-level mean: ``m_n = mean_{t with instances} mean_{k: M_tk} S_ntk``.

    Args:
      S: f[N, T, K]; mask: optional bool[T, K]. Returns f[N].
    """
    S, m = _check_instances(S, mask)
    return _mean_inst_impl(S, m)


# ----------------------------------------------------------------------------- measures


@jax.jit
def _error_impl(x, y):
    n = x.shape[-1]
    x, y = core._materialize(x), core._materialize(y)
    dx = jnp.sign(x[..., :, None] - x[..., None, :])
    dy = jnp.sign(y[..., :, None] - y[..., None, :])
    bad = (dx * dy < 0).astype(_fdtype(x)) + 0.5 * ((dx == 0) & (dy != 0)).astype(_fdtype(x))
    # each unordered pair is counted twice
    return (bad * core._off_diagonal(n, bad.dtype)).sum((-1, -2)) / (n * (n - 1))


def ranking_error(scores, truth=None):
    """Normalised Kendall distance of the ranking of ``scores`` to ``truth`` (0 = same, 1 = reversed).

    ``(#{pairs discordant} + 1/2 #{pairs tied in scores only}) / (N(N-1)/2)``.

    Args:
      scores: f[..., N] aggregate scores (larger = better); truth: f[..., N] true scores
        (default ``-arange(N)``: system 0 best, the synthetic generators' truth).

    Returns:
      f[...].
    """
    scores = core._as_array("scores", scores)
    check_array("scores", scores, ndim=range(1, 33))
    n = scores.shape[-1]
    if n < 2:
        raise ValueError(f"scores: expected at least 2 systems, got {n}")
    if truth is None:
        truth = -jnp.arange(n, dtype=_fdtype(scores))
    truth = core._as_array("truth", truth)
    check_array("truth", truth, ndim=range(1, 33))
    if truth.shape[-1] != n:
        raise ValueError(f"truth: expected {n} systems on the last axis (as scores), got {tuple(truth.shape)}")
    return _error_impl(scores, truth)


def agreement(a, b, ks=(1, 3, 5, 10)):
    """Agreement of two aggregates (§2.5 item 1): ``{"tau_b", "top{k}"}``, top-k = shared systems among
    the k best (ks larger than N are skipped).

    Args:
      a, b: f[N] aggregate scores; ks: static tuple of ints >= 1. Returns a dict of scalars.
    """
    a, b = core._check_pair("a", a, "b", b)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"a, b: expected 1-D score vectors, got shapes {tuple(a.shape)}, {tuple(b.shape)}")
    if isinstance(ks, (int, np.integer)) or not all(isinstance(k, (int, np.integer)) and k >= 1 for k in ks):
        raise ValueError(f"ks: expected a tuple of ints >= 1, got {ks!r}")
    out = {"tau_b": core.kendall_tau_b(a, b)}
    for k in ks:
        if k <= a.shape[0]:
            out[f"top{k}"] = core.topk_overlap(a, b, int(k))
    return out


# ----------------------------------------------------------------------------- robustness curves


def _random_positions_from(u):
    return jnp.argsort(jnp.argsort(u, axis=-1), axis=-1)


def _random_positions(key, reps, n):
    """Positions of ``n`` items in ``reps`` uniform random orders: order = argsort(U), U iid uniform."""
    return _random_positions_from(jax.random.uniform(key, (reps, n)))


def _aggregate(S, mask, agg, ties):
    if agg == "mean":
        return _mean_impl(S, mask)
    return _borda_impl(S, mask, ties)


@functools.partial(jax.jit, static_argnames=("reps", "n"))
def _positions_jit(key, reps, n):
    return _random_positions(key, reps, n)


@functools.partial(jax.jit, static_argnames=("agg", "ties"))
def _task_removal_impl(pos, S, agg, ties):
    n, t = S.shape
    full = _aggregate(S, None, agg, ties)

    def one(p, k):
        cols = p < k
        sc = _aggregate(S, jnp.broadcast_to(cols[None], S.shape), agg, ties)
        return _tau_impl(sc, full, None)

    ks = jnp.arange(1, t + 1)
    return jax.vmap(lambda p: jax.vmap(lambda k: one(p, k))(ks))(pos)


def _check_curve_args(S, n, n_name, agg, ties):
    S, _ = _check_table("S", S, None)
    n = _check_int(n_name, n, 1)
    check_choice("agg", agg, AGGREGATES)
    check_choice("ties", ties, TIES)
    return S, n


def task_removal_curve(key, S, n_perms: int, agg: str = "borda", *, ties: str = "average"):
    """Robustness to task removal: for random column orders, tau-b between the aggregate of the first
    ``k`` tasks and the aggregate of all ``T`` tasks (each aggregate against its own full ranking).

    Args:
      key: PRNG key; S: f[N, T]; n_perms: static int >= 1; agg: static, "mean" or "borda"; ties: static.

    Returns:
      f[n_perms, T]; column ``k - 1`` is k kept tasks (the last column is 1).
    """
    S, n_perms = _check_curve_args(S, n_perms, "n_perms", agg, ties)
    return _task_removal_impl(_positions_jit(key, n_perms, S.shape[1]), S, agg, ties)


@functools.partial(jax.jit, static_argnames=("agg", "ties"))
def _system_addition_impl(pos, S, agg, ties):
    n = S.shape[0]
    full = _aggregate(S, None, agg, ties)

    def one(p, m):
        rows = p < m
        mask = jnp.broadcast_to(rows[:, None], S.shape)
        if agg == "mean":
            sc = _mean_impl(S, mask)
        else:  # ranks among the kept systems only
            sc = _rank_impl(S.T, mask.T, ties).T.sum(1)
        sc = jnp.where(rows, sc, 0)
        return _tau_impl(sc, full, rows)

    ms = jnp.arange(2, n + 1)
    return jax.vmap(lambda p: jax.vmap(lambda m: one(p, m))(ms))(pos)


def system_addition_curve(key, S, n_reps: int, agg: str = "borda", *, ties: str = "average"):
    """Robustness to system addition: for random system orders, tau-b between the aggregate computed on
    the first ``n`` systems only and the full-table aggregate restricted to them, n = 2..N.

    The mean of a system does not depend on the others (the curve is 1); Borda ranks do.

    Args:
      key: PRNG key; S: f[N, T]; n_reps: static int >= 1; agg: static, "mean" or "borda"; ties: static.

    Returns:
      f[n_reps, N - 1]; column ``n - 2`` is n systems.
    """
    S, n_reps = _check_curve_args(S, n_reps, "n_reps", agg, ties)
    return _system_addition_impl(_positions_jit(key, n_reps, S.shape[0]), S, agg, ties)


# ----------------------------------------------------------------------------- synthetic benchmarks


def _check_gen(n, n_tasks, phi, dtype):
    n = _check_int("n", n, 2)
    n_tasks = _check_int("n_tasks", n_tasks, 1)
    if isinstance(phi, (str, bytes)) or not np.isscalar(phi) and not hasattr(phi, "shape"):
        raise TypeError(f"phi: expected a real number, got {type(phi).__name__}")
    if not is_traced(phi):
        if not np.isfinite(float(phi)):
            raise ValueError(f"phi: expected a finite number, got {phi!r}")
    return n, n_tasks, check_float_dtype("dtype", dtype)


def plackett_luce_scores(key, n: int, n_tasks: int, phi, *, dtype=None):
    """Task-level scores ``S_nt = -phi n + G_nt`` (G iid standard Gumbel): every column ranks the systems
    by Plackett–Luce with weights ``exp(-phi n)``; the true ranking is the identity (system 0 best).

    Args:
      key: PRNG key; n: static systems (>= 2); n_tasks: static tasks (>= 1); phi: dispersion (traceable,
        larger = more agreement with the truth); dtype: float dtype (default JAX's float).

    Returns:
      f[n, n_tasks].
    """
    n, n_tasks, dtype = _check_gen(n, n_tasks, phi, dtype)
    return _pl_scores(key, (n, n_tasks), phi, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _pl_scores(key, shape, phi, dtype):
    loc = -jnp.asarray(phi, dtype) * jnp.arange(shape[0], dtype=dtype)
    return loc.reshape((-1,) + (1,) * (len(shape) - 1)) + jax.random.gumbel(key, shape, dtype)


def plackett_luce_instances(key, n: int, n_tasks: int, n_instances: int, phi, *, dtype=None):
    """Instance-level scores ``S_ntk = -phi n + G_ntk`` (see `plackett_luce_scores`). Returns f[n, T, K]."""
    n, n_tasks, dtype = _check_gen(n, n_tasks, phi, dtype)
    n_instances = _check_int("n_instances", n_instances, 1)
    return _pl_scores(key, (n, n_tasks, n_instances), phi, jnp.dtype(dtype))


def corrupt(S, key, n_corrupt: int, *, scale: float = 1000.0, mode: str = "reverse"):
    """Replace ``n_corrupt`` random columns of ``S`` by a manipulator at a huge scale.

    ``mode="reverse"``: ``scale * (0, 1, ..., N-1)`` (the true order reversed: system 0 worst);
    ``mode="random"``: ``scale * pi`` for a random permutation ``pi`` per column.

    Args:
      S: f[N, T]; key: PRNG key; n_corrupt: int in [0, T] (may be traced: one compile for every count);
      scale: > 0; mode: static.

    Returns:
      f[N, T].
    """
    S, _ = _check_table("S", S, None)
    if not is_traced(n_corrupt):
        n_corrupt = _check_int("n_corrupt", n_corrupt, 0, S.shape[1])
    check_choice("mode", mode, ("reverse", "random"))
    if not is_traced(scale):
        check_range("scale", float(scale), low=0.0, low_inclusive=False)
    return _corrupt_impl(S, key, n_corrupt, scale, mode == "random")


@jax.jit
def _corrupt_impl(S, key, n_corrupt, scale, random_mode):
    n, t = S.shape
    scale = jnp.asarray(scale, _fdtype(S))
    u = jax.random.uniform(key, (n + 1, t))
    cols = _random_positions_from(u[0]) < n_corrupt
    rev = jnp.broadcast_to(jnp.arange(n, dtype=scale.dtype)[:, None], S.shape)
    rnd = _random_positions_from(u[1:].T).T.astype(scale.dtype)  # column t: a random permutation of 0..n-1
    man = jnp.where(random_mode, rnd, rev)
    return jnp.where(cols[None, :], scale * man, S).astype(_fdtype(S))


def drop_scores(key, S, frac):
    """Missing scores: a mask with each entry of ``S`` observed with probability ``1 - frac`` (entry
    ``(n, n mod T)`` always kept so every system has a score).

    Args:
      key: PRNG key; S: f[N, T] (only its shape is used); frac: in [0, 1).

    Returns:
      bool[N, T].
    """
    S, _ = _check_table("S", S, None)
    if not is_traced(frac):
        check_range("frac", float(frac), low=0.0, high=1.0, high_inclusive=False)
    return _drop_impl(key, S, frac)


@jax.jit
def _drop_impl(key, S, frac):
    n, t = S.shape
    keep = jax.random.uniform(key, S.shape) >= frac
    return keep.at[jnp.arange(n), jnp.arange(n) % t].set(True)
