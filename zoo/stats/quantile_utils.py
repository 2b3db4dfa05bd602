"""Quantile-regression utilities: check losses, interval scores, monotonizers and CQR.

Shared by the quantile papers of the zoo (first user: Fakoor et al., "Flexible Model Aggregation
for Quantile Regression", arXiv 2103.00083, JMLR 24, 2023; see ``zoo.stats.quantile_aggregation``).

Shapes: ``n`` rows, ``m`` levels; ``q: f[n, m]`` predicted quantiles, ``y: f[n]`` targets,
``taus: f[m]`` strictly increasing levels in (0, 1), passed as an array (never static).

Equations -> functions (e = y - q):
  rho_tau(e) = max(tau e, (tau - 1) e)                                    -> `pinball`, `pinball_per_row`
  Huberized check loss: w_tau(e) h_delta(e), h = e^2/(2 delta) if |e| < delta else |e| - delta/2,
    w = tau (e >= 0), 1 - tau (e < 0); delta = 0 is the pinball loss    -> `huber_pinball`
  IS_alpha(l, u; y) = (u - l) + 2/alpha (l - y)_+ + 2/alpha (y - u)_+     -> `interval_score`
  WIS = 1/(K + 1/2) [ |y - med|/2 + sum_k alpha_k/2 IS_alpha_k ] = 2 mean_t rho  -> `wis`, `wis_from_pinball`
  empirical level coverage P(y <= q_t), central-interval coverage, MACE  -> `coverage`, `interval_coverage`, `mace`
  rearrangement sort(q)                                                   -> `sort_quantiles`
  isotonic (L2, PAV) iso(q)_i = max_{a<=i} min_{b>=i} mean(q_a..q_b)      -> `isotonic`
  official 'mono' fix: cummin below the median index, cummax above it    -> `fix_crossing_median`
  L2 soft sort (Blondel et al. 2020): s(q) = r/eps - iso(r/eps - sort(q)), r = (1..m)  -> `soft_sort`
  crossing penalty mean_{i, s<t} relu(q_s - q_t + delta_st)              -> `crossing_penalty`
    (margins: `margin_vec` delta_st = 0.01 (tau_t - tau_s); `margin_adapt` scale (e_t - e_s))
  CQR (Romano et al. 2019) per symmetric pair (tau, 1 - tau), alpha = 2 tau:
    E_i = max(l_i - y_i, y_i - u_i); Qhat = ceil((1 - alpha)(n + 1))-th smallest E (inf if > n)
                                                                          -> `cqr_scores`, `cqr_calibrate`
    [l - Qhat, u + Qhat], median unchanged, then re-sort                 -> `cqr_apply`

Theorem used by the tests (paper, new result): for ascending taus and any y,
sum_t rho_{tau_t}(y - sort(q)_t) <= sum_t rho_{tau_t}(y - q_t), and likewise for iso(q).

Our choices: `isotonic` uses the O(m^2) min-max formula (jit/vmap/grad friendly; its gradient is
the block-averaging matrix with the blocks held fixed, like the official PAV backward); segment
sums are running sums from each start, so a sorted row is returned exactly. `coverage` is the
per-level calibration curve; `interval_coverage` the coverage of each central interval.
Validation: shapes are checked on every call (also under ``jit``), values (NaN/inf, ranges) on
concrete inputs; the monotonizers reject NaN/inf, and means over rows need at least one row.
Dtypes follow the inputs (float64 end to end when x64 is enabled).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range, is_traced

# ----------------------------------------------------------------------------- validation


def _float_dtype(*xs: Any) -> Any:
    """The dtype to compute in: that of the floating inputs (at least float32), JAX's default float
    for integer inputs; float64 only when x64 is enabled."""
    return jnp.promote_types(jnp.result_type(*xs, float), jnp.float32)

_SYM_TOL = 1e-6  # |tau_t + tau_{m-1-t} - 1| allowed for a "symmetric" level set


def check_taus(taus: Any, *, name: str = "taus") -> None:
    """Raise ``ValueError`` unless ``taus`` is a 1-D, strictly increasing array in (0, 1).

    Value checks are skipped for tracers (inside ``jit``); the shape check always runs.
    """
    check_array(name, taus, ndim=1, min_size=1)
    if is_traced(taus):
        return
    t = np.asarray(taus, np.float64)
    for i, v in enumerate(t):
        check_range(f"{name}[{i}]", float(v), low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    bad = np.flatnonzero(np.diff(t) <= 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name}: expected strictly increasing levels, got {name}[{i}] = {t[i]:g} >= {name}[{i + 1}] = {t[i + 1]:g}"
        )


def _check_q(q: Any, taus: Any, *, name: str = "q") -> tuple[jax.Array, jax.Array]:
    """Validate and return ``(q, taus)`` as arrays; the level axis must match ``len(taus)``."""
    q, taus = jnp.asarray(q), jnp.asarray(taus)
    check_taus(taus)
    check_array(name, q, ndim=2)
    if q.shape[-1] != taus.shape[0]:
        raise ValueError(
            f"{name}: expected {taus.shape[0]} levels on the last axis (len(taus)), got shape {tuple(q.shape)}"
        )
    return q, taus


def _check_qy(q: Any, y: Any, taus: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """As `_check_q`, plus ``y: f[n]``; at least one row (a mean over no rows is NaN)."""
    q, taus = _check_q(q, taus)
    if q.shape[0] < 1:
        raise ValueError(f"q: expected at least 1 row, got shape {tuple(q.shape)}")
    y = jnp.asarray(y)
    check_array("y", y, shape=(q.shape[0],))
    return q, y, taus


def _check_levels(name: str, x: Any) -> jax.Array:
    """``x: f[..., m]`` with m >= 1 and finite values (skipped when traced), as an array."""
    x = jnp.asarray(x)
    check_array(name, x, ndim=range(1, 33))
    if x.shape[-1] < 1:
        raise ValueError(f"{name}: expected at least 1 level on the last axis, got shape {tuple(x.shape)}")
    return x


def _check_scalar(name: str, v: Any, **bounds) -> None:
    """A finite real scalar in the given range (skipped when traced)."""
    if is_traced(v):
        return
    a = np.asarray(v)
    if a.ndim != 0 or a.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected a real scalar, got {v!r}")
    if not np.isfinite(float(a)):
        raise ValueError(f"{name}: expected a finite value, got {float(a)!r}")
    check_range(name, float(a), **bounds)


def symmetric_pairs(taus: Any, *, require_median: bool = False) -> int:
    """Number ``K = m // 2`` of symmetric pairs (tau_k, tau_{m-1-k}) with tau_k < 0.5.

    Raises ``ValueError`` unless ``taus[k] + taus[m-1-k] == 1`` for every k (and, with
    ``require_median``, m is odd with ``taus[m // 2] == 0.5``). Inside ``jit`` (traced taus)
    only the shapes are checked.
    """
    check_taus(taus)
    if is_traced(taus):
        m = taus.shape[0]
        if m // 2 < 1 or (require_median and m % 2 == 0):
            raise ValueError(f"taus: expected {'an odd number of' if require_median else 'at least 2'} levels, got {m}")
        return m // 2
    t = np.asarray(taus, np.float64)
    m = t.size
    gap = np.abs(t + t[::-1] - 1.0)
    if gap.max() > _SYM_TOL:
        k = int(np.argmax(gap))
        raise ValueError(
            f"taus: expected a level set symmetric around 0.5 (taus[k] + taus[m-1-k] = 1), "
            f"got taus[{k}] + taus[{m - 1 - k}] = {t[k] + t[m - 1 - k]:g}"
        )
    if require_median and (m % 2 == 0 or abs(t[m // 2] - 0.5) > _SYM_TOL):
        raise ValueError(f"taus: expected an odd number of levels with the median 0.5 in the middle, got {t.tolist()}")
    if m // 2 < 1:
        raise ValueError(f"taus: expected at least one pair (tau, 1 - tau) with tau < 0.5, got {t.tolist()}")
    return m // 2


# ----------------------------------------------------------------------------- check losses


def _check_e(e: Any, taus: Any) -> tuple[jax.Array, jax.Array]:
    e, taus = jnp.asarray(e), jnp.asarray(taus)
    check_taus(taus)
    check_array("e", e, ndim=range(1, 33))
    if e.shape[-1] != taus.shape[0]:
        raise ValueError(f"e: expected {taus.shape[0]} levels on the last axis (len(taus)), got shape {tuple(e.shape)}")
    return e, taus


def check_loss(e: jax.Array, taus: jax.Array) -> jax.Array:
    """Elementwise pinball ``rho_tau(e) = max(tau e, (tau - 1) e)``; ``e: f[..., m]`` -> ``f[..., m]``."""
    e, taus = _check_e(e, taus)
    return _rho(e, taus)


def _rho(e, taus):
    return jnp.maximum(taus * e, (taus - 1.0) * e)


def huber_check_loss(e: jax.Array, taus: jax.Array, delta: Any) -> jax.Array:
    """Elementwise Huberized check loss (see module docstring); ``delta = 0`` gives `check_loss`."""
    e, taus = _check_e(e, taus)
    _check_scalar("delta", delta, low=0.0)
    return _huber_rho(e, taus, delta)


def _huber_rho(e, taus, delta):
    a = jnp.abs(e)
    h = jnp.where(a < delta, e * e / (2.0 * jnp.maximum(delta, 1e-30)), a - 0.5 * delta)
    return jnp.where(e >= 0, taus, 1.0 - taus) * h


def pinball(q: jax.Array, y: jax.Array, taus: jax.Array) -> jax.Array:
    """Per-level mean pinball loss.

    Args: ``q: f[n, m]``, ``y: f[n]``, ``taus: f[m]``.
    Returns: ``f[m]``, ``mean_i rho_{tau_t}(y_i - q_{i,t})``.
    """
    q, y, taus = _check_qy(q, y, taus)
    return jnp.mean(_rho(y[:, None] - q, taus), axis=0)


def pinball_per_row(q: jax.Array, y: jax.Array, taus: jax.Array) -> jax.Array:
    """Per-row pinball sum ``sum_t rho_{tau_t}(y_i - q_{i,t})``: ``f[n]`` (the quantity sorting never raises)."""
    q, y, taus = _check_qy(q, y, taus)
    return jnp.sum(_rho(y[:, None] - q, taus), axis=1)


def huber_pinball(q: jax.Array, y: jax.Array, taus: jax.Array, delta: float) -> jax.Array:
    """Mean Huberized pinball over rows and levels: ``f[]`` (``delta = 0``: mean pinball)."""
    q, y, taus = _check_qy(q, y, taus)
    _check_scalar("delta", delta, low=0.0)
    return jnp.mean(_huber_rho(y[:, None] - q, taus, delta))


def interval_score(l: jax.Array, u: jax.Array, y: jax.Array, alpha: Any) -> jax.Array:
    """Interval score of the central (1 - alpha) interval ``[l, u]``: ``f[n]``.

    ``IS = (u - l) + 2/alpha (l - y)_+ + 2/alpha (y - u)_+``; ``l, u, y: f[n]``, ``alpha`` in (0, 1).
    """
    l, u, y = jnp.asarray(l), jnp.asarray(u), jnp.asarray(y)
    check_array("l", l, ndim=1)
    check_array("u", u, shape=(l.shape[0],))
    check_array("y", y, shape=(l.shape[0],))
    _check_scalar("alpha", alpha, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    return (u - l) + (2.0 / alpha) * (jnp.maximum(l - y, 0.0) + jnp.maximum(y - u, 0.0))


def wis(q: jax.Array, y: jax.Array, taus: jax.Array) -> jax.Array:
    """Weighted interval score (interval form), mean over rows: ``f[]``.

    Needs a symmetric level set with the median (m = 2K + 1, pair k = (tau_k, tau_{m-1-k}),
    alpha_k = 2 tau_k). ``WIS = 1/(K + 1/2) [|y - q_med|/2 + sum_k alpha_k/2 IS_alpha_k]``, which
    equals ``2 * mean_t pinball`` (`wis_from_pinball`, valid for any level set).
    """
    q, y, taus = _check_qy(q, y, taus)
    k = symmetric_pairs(taus, require_median=True)
    m = q.shape[1]
    lo, hi = q[:, :k], q[:, ::-1][:, :k]  # pair k: (k, m-1-k)
    alpha = 2.0 * taus[:k]
    is_ = (hi - lo) + (2.0 / alpha) * (jnp.maximum(lo - y[:, None], 0.0) + jnp.maximum(y[:, None] - hi, 0.0))
    total = 0.5 * jnp.abs(y - q[:, m // 2]) + jnp.sum(0.5 * alpha * is_, axis=1)
    return jnp.mean(total / (k + 0.5))


def wis_from_pinball(q: jax.Array, y: jax.Array, taus: jax.Array) -> jax.Array:
    """``2 * mean_{i,t} rho_{tau_t}(y_i - q_{i,t})``: ``f[]`` (= `wis` on symmetric sets with the median)."""
    return 2.0 * jnp.mean(pinball(q, y, taus))


def coverage(q: jax.Array, y: jax.Array, taus: jax.Array) -> jax.Array:
    """Empirical level coverage ``mean_i [y_i <= q_{i,t}]``: ``f[m]`` (ideal: ``taus``)."""
    q, y, taus = _check_qy(q, y, taus)
    return jnp.mean((y[:, None] <= q).astype(q.dtype), axis=0)


def interval_coverage(q: jax.Array, y: jax.Array, taus: jax.Array) -> jax.Array:
    """Coverage of each central interval ``[q_k, q_{m-1-k}]``: ``f[K]`` (ideal: ``1 - 2 taus[:K]``).

    Needs a symmetric level set (see `symmetric_pairs`).
    """
    q, y, taus = _check_qy(q, y, taus)
    k = symmetric_pairs(taus)
    lo, hi = q[:, :k], q[:, ::-1][:, :k]
    inside = (lo <= y[:, None]) & (y[:, None] <= hi)
    return jnp.mean(inside.astype(q.dtype), axis=0)


def mace(q: jax.Array, y: jax.Array, taus: jax.Array) -> jax.Array:
    """Mean absolute calibration error ``mean_t |coverage_t - tau_t|``: ``f[]``."""
    return jnp.mean(jnp.abs(coverage(q, y, taus) - taus))


def crossing_rate(q: jax.Array) -> jax.Array:
    """Fraction of rows with any crossing ``q_t > q_{t+1}``: ``f[]``; ``q: f[n, m]``."""
    q = jnp.asarray(q)
    check_array("q", q, ndim=2, min_size=1)
    return jnp.mean(jnp.any(q[:, 1:] < q[:, :-1], axis=1).astype(jnp.result_type(q.dtype, float)))


# ----------------------------------------------------------------------------- monotonizers


def sort_quantiles(q: jax.Array) -> jax.Array:
    """Rearrangement: sort each row ascending. ``q: f[..., m]`` -> ``f[..., m]``.

    Differentiable almost everywhere (the gradient is the sorting permutation).
    """
    q = _check_levels("q", q)
    return jnp.sort(q, axis=-1)


def isotonic(q: jax.Array) -> jax.Array:
    """Unweighted L2 isotonic regression (PAV solution) of each row. ``q: f[..., m]`` -> ``f[..., m]``.

    ``iso(q)_i = max_{a <= i} min_{b >= i} mean(q_a, ..., q_b)``: O(m^2) memory and time per row.
    """
    q = _check_levels("q", q)
    m = q.shape[-1]
    a = jnp.arange(m)[:, None]
    b = jnp.arange(m)[None, :]
    upper = b >= a  # [a, b]: segment a..b exists
    seg = jnp.cumsum(jnp.where(upper, q[..., None, :], 0.0), axis=-1)  # sum q[a..b]
    means = jnp.where(upper, seg / jnp.maximum(b - a + 1, 1).astype(q.dtype), jnp.inf)
    inner = jax.lax.cummin(means, axis=means.ndim - 1, reverse=True)  # [a, i] = min_{b >= i} mean(a..b)
    return jnp.max(jnp.where(upper, inner, -jnp.inf), axis=-2)  # max over a <= i


def fix_crossing_median(q: jax.Array) -> jax.Array:
    """The official 'mono' fix (``fix_crossing`` type 0), for ablations only: NOT pinball-safe.

    With c = m // 2: levels <= c get a running minimum from c downwards, levels >= c a running
    maximum from c upwards. ``q: f[..., m]`` -> ``f[..., m]``.
    """
    q = _check_levels("q", q)
    c = q.shape[-1] // 2
    ax = q.ndim - 1
    below = jax.lax.cummin(q[..., : c + 1], axis=ax, reverse=True)
    above = jax.lax.cummax(q[..., c:], axis=ax)
    return jnp.concatenate([below[..., :c], above], axis=-1)


def soft_sort(q: jax.Array, strength: Any = 0.1) -> jax.Array:
    """L2-regularized soft sort, ascending (Blondel et al. 2020): ``f[..., m]`` -> ``f[..., m]``.

    ``s(q) = r/eps - iso(r/eps - sort(q))`` with ``r = (1, ..., m)``, ``eps = strength``: the
    projection of ``r/eps`` onto the permutahedron of ``q``. ``eps -> 0`` gives ``sort(q)``;
    large ``eps`` shrinks every entry toward ``mean(q)`` (so use hard sort at prediction).
    """
    q = _check_levels("q", q)
    _check_scalar("strength", strength, low=0.0, low_inclusive=False)
    sq = jnp.sort(q, axis=-1)
    u = jnp.arange(1, q.shape[-1] + 1, dtype=q.dtype) / strength - sq
    return sq - (isotonic(u) - u)  # = r/eps - iso(u), without cancelling r/eps


MONOTONIZERS = ("sort", "iso", "mono", "soft_sort")


def monotonize(q: jax.Array, how: str | None, *, strength: float = 0.1) -> jax.Array:
    """Apply a named map: None (identity), 'sort', 'iso', 'mono' (official fix) or 'soft_sort'."""
    if how is None:
        return q
    if how == "sort":
        return sort_quantiles(q)
    if how == "iso":
        return isotonic(q)
    if how == "mono":
        return fix_crossing_median(q)
    if how == "soft_sort":
        return soft_sort(q, strength)
    raise ValueError(f"how: expected one of None, {', '.join(map(repr, MONOTONIZERS))}; got {how!r}")


# ----------------------------------------------------------------------------- crossing penalty


def crossing_penalty(q: jax.Array, delta: Any = 0.0) -> jax.Array:
    """Margin (crossing) penalty ``sum_{i, s<t} relu(q_s - q_t + delta_st) / (n m (m-1)/2)``: ``f[]``.

    ``q: f[n, m]``; ``delta``: a scalar or ``f[m, m]`` indexed ``[s, t]`` (only s < t is used).
    """
    q = jnp.asarray(q)
    check_array("q", q, ndim=2, min_size=1)
    m = q.shape[1]
    delta = jnp.asarray(delta, q.dtype)
    if delta.ndim not in (0, 2) or (delta.ndim == 2 and delta.shape != (m, m)):
        raise ValueError(f"delta: expected a scalar or shape ({m}, {m}), got {tuple(delta.shape)}")
    check_array("delta", delta)
    if m < 2:
        return jnp.zeros((), q.dtype)
    pair = q[:, :, None] - q[:, None, :] + delta  # [i, s, t]
    upper = jnp.triu(jnp.ones((m, m), bool), k=1)
    total = jnp.sum(jnp.where(upper, jax.nn.relu(pair), 0.0))
    return total / (q.shape[0] * m * (m - 1) / 2)


def margin_vec(taus: jax.Array, scale: float = 0.01) -> jax.Array:
    """'vec' margins ``delta_st = scale (tau_t - tau_s)``: ``f[m, m]``."""
    taus = jnp.asarray(taus)
    check_taus(taus)
    _check_scalar("scale", scale)
    return scale * (taus[None, :] - taus[:, None])


def margin_adapt(residuals: jax.Array, taus: jax.Array, scale: float) -> jax.Array:
    """'adapt' margins ``delta_st = scale (e_t - e_s)``, e_t the empirical tau_t-quantile of ``residuals: f[n]``."""
    taus, residuals = jnp.asarray(taus), jnp.asarray(residuals)
    check_taus(taus)
    check_array("residuals", residuals, ndim=1, min_size=1)
    _check_scalar("scale", scale)
    e = jnp.quantile(residuals, taus)
    return scale * (e[None, :] - e[:, None])


# ----------------------------------------------------------------------------- conformal (CQR)


def cqr_index(n: int, alpha: float) -> int:
    """The 1-based rank ``ceil((1 - alpha)(n + 1))`` of the CQR quantile (> n means Qhat = inf).

    Host arithmetic in float64 with a 1e-9 guard against representation error (0.8 * 101 = 80.8).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    check_range("n", n, low=1)
    _check_scalar("alpha", alpha)
    check_range("alpha", alpha, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    return int(math.ceil((1.0 - alpha) * (n + 1) - 1e-9))


def cqr_scores(q: jax.Array, y: jax.Array, taus: jax.Array) -> jax.Array:
    """Conformity scores ``E_{i,k} = max(l_{i,k} - y_i, y_i - u_{i,k})`` of each pair: ``f[n, K]``."""
    q, y, taus = _check_qy(q, y, taus)
    k = symmetric_pairs(taus)
    lo, hi = q[:, :k], q[:, ::-1][:, :k]
    return jnp.maximum(lo - y[:, None], y[:, None] - hi)


def cqr_calibrate(q_cal: jax.Array, y_cal: jax.Array, taus: jax.Array) -> jax.Array:
    """One conformal correction Qhat per symmetric pair: ``f[K]`` (``+inf`` where n_cal is too small).

    Pair k = (tau_k, 1 - tau_k), alpha_k = 2 tau_k; ``Qhat_k`` is the
    ``ceil((1 - alpha_k)(n + 1))``-th smallest score of `cqr_scores` (``+inf`` when that rank
    exceeds n, i.e. ``n < ceil(1/alpha_k) - 1``; a ``UserWarning`` says so).

    Args: ``q_cal: f[n, m]`` calibration-set quantiles (sorted or not), ``y_cal: f[n]``,
    ``taus: f[m]`` symmetric around 0.5. Host-side (numpy; the ranks are computed in float64).
    """
    scores = np.asarray(cqr_scores(q_cal, y_cal, taus))
    n, k = scores.shape
    t = np.asarray(taus, np.float64)
    ranks = np.array([cqr_index(n, t[j] + (1.0 - t[-1 - j])) for j in range(k)])
    if (ranks > n).any():
        bad = [float(t[j]) for j in np.flatnonzero(ranks > n)]
        warnings.warn(
            f"cqr_calibrate: n_cal = {n} is too small for the pairs with tau = {bad} "
            f"(needs n_cal >= ceil(1/alpha) - 1); their Qhat is +inf (infinite intervals)",
            UserWarning,
            stacklevel=2,
        )
    picked = np.sort(scores, axis=0)[np.clip(ranks - 1, 0, n - 1), np.arange(k)]
    return jnp.asarray(np.where(ranks <= n, picked, np.inf).astype(scores.dtype))


def cqr_apply(q: jax.Array, qhat: jax.Array, taus: jax.Array, resort: bool = True) -> jax.Array:
    """Widen each pair by its Qhat: ``l - Qhat_k``, ``u + Qhat_k``; the median is unchanged.

    Args: ``q: f[n, m]``, ``qhat: f[K]`` from `cqr_calibrate`, ``taus: f[m]`` symmetric.
    Returns: ``f[n, m]``, re-sorted per row when ``resort`` (shifts of different pairs can cross).
    """
    q, taus = _check_q(q, taus)
    k = symmetric_pairs(taus)
    qhat = jnp.asarray(qhat, q.dtype)
    check_array("qhat", qhat, shape=(k,), finite=False)
    if not is_traced(qhat) and np.isnan(np.asarray(qhat)).any():
        raise ValueError("qhat: contains NaN (expected finite corrections or +inf from cqr_calibrate)")
    m = q.shape[1]
    shift = jnp.zeros((m,), q.dtype)
    shift = shift.at[:k].set(-qhat).at[m - k :].set(qhat[::-1])
    out = q + shift
    return jnp.sort(out, axis=-1) if resort else out
