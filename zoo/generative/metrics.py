"""Forecast verification metrics for precipitation-like fields (jnp, jit-able).

All fields are ``f[..., H, W]`` (rain rates in mm/h; leading axes are samples, frames...). Scores
aggregate over the whole input: sums first, one division last (the standard way to pool a test set).

- CSI at threshold tau and pooling s: max-pool both fields with kernel = stride = s, P = pred >= tau,
  O = obs >= tau, CSI = TP / (TP + FP + FN) (NaN when no event is forecast or observed)
  -> `csi_counts`, `csi`.
- CRPS of an ensemble x_1..x_M against y: (1/M) sum |x_m - y| - 1/(2 M^2) sum_{m,m'} |x_m - x_m'|,
  computed in the sorted O(M log M) form (1/M) sum |x_m - y| - (1/M^2) sum_i (2i - M - 1) x_(i);
  ``fair=True`` uses 1/(2 M (M-1)) for the spread term -> `crps_ensemble` (per entry).
- FSS at threshold tau and odd window n: fractions F = n x n moving average (zero padding, 'same')
  of the binary fields, FSS = 1 - sum (F_p - F_o)^2 / (sum F_p^2 + sum F_o^2) -> `fss_sums`, `fss`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from zoo.checks import check_array, is_traced

__all__ = ["crps_ensemble", "csi", "csi_counts", "fss", "fss_sums", "max_pool", "moving_average"]


def _fields(name: str, x: Any) -> jax.Array:
    check_array(name, x, ndim=range(2, 10))
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _pair(pred: Any, obs: Any) -> tuple[jax.Array, jax.Array]:
    pred, obs = _fields("pred", pred), _fields("obs", obs)
    if pred.shape != obs.shape:
        raise ValueError(f"pred, obs: expected the same shape, got {pred.shape} and {obs.shape}")
    return pred, obs


def _threshold(threshold: Any) -> None:
    if not is_traced(threshold) and not (jnp.ndim(threshold) == 0 and float(threshold) >= 0):
        raise ValueError(f"threshold: expected a finite number >= 0 (mm/h), got {threshold!r}")


def _int_arg(name: str, v: Any, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
    return v


def max_pool(x: Any, pool: int) -> jax.Array:
    """Max-pool the last two axes with kernel = stride = ``pool`` (which must divide H and W)."""
    x = _fields("x", x)
    pool = _int_arg("pool", pool)
    H, W = x.shape[-2:]
    if H % pool or W % pool:
        raise ValueError(f"pool: expected a divisor of H={H} and W={W}, got {pool}")
    return x.reshape(x.shape[:-2] + (H // pool, pool, W // pool, pool)).max(axis=(-3, -1))


def moving_average(x: Any, window: int) -> jax.Array:
    """n x n moving average of the last two axes, zero padding, output the input's size (n odd)."""
    x = _fields("x", x)
    window = _int_arg("window", window)
    if window % 2 == 0:
        raise ValueError(f"window: expected an odd int, got {window}")
    r = window // 2
    xp = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)])
    H, W = x.shape[-2:]
    c = jnp.cumsum(jnp.cumsum(xp, axis=-2), axis=-1)  # summed-area table
    c = jnp.pad(c, [(0, 0)] * (x.ndim - 2) + [(1, 0), (1, 0)])
    n = window
    s = c[..., n : n + H, n : n + W] - c[..., :H, n : n + W] - c[..., n : n + H, :W] + c[..., :H, :W]
    return s / (n * n)


def csi_counts(pred: Any, obs: Any, threshold: float, pool: int = 1) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(TP, FP, FN) over all entries of ``pred``, ``obs`` (f[..., H, W]) after ``pool`` x ``pool`` max-pooling."""
    pred, obs = _pair(pred, obs)
    _threshold(threshold)
    if _int_arg("pool", pool) > 1:
        pred, obs = max_pool(pred, pool), max_pool(obs, pool)
    p, o = pred >= threshold, obs >= threshold
    return jnp.sum(p & o), jnp.sum(p & ~o), jnp.sum(~p & o)


def csi(pred: Any, obs: Any, threshold: float, pool: int = 1) -> jax.Array:
    """Critical success index TP / (TP + FP + FN) aggregated over all entries; NaN with no event at all."""
    tp, fp, fn = csi_counts(pred, obs, threshold, pool)
    den = tp + fp + fn
    dt = jnp.result_type(float)
    return jnp.where(den > 0, tp / jnp.maximum(den, 1), jnp.nan).astype(dt)


def crps_ensemble(ens: Any, obs: Any, fair: bool = False) -> jax.Array:
    """Per-entry ensemble CRPS. ``ens``: f[M, ...] members; ``obs``: f[...]. Returns f[...]."""
    check_array("ens", ens, ndim=range(1, 10), min_size=1)
    check_array("obs", obs)
    ens, obs = jnp.asarray(ens), jnp.asarray(obs)
    if ens.shape[1:] != obs.shape:
        raise ValueError(f"ens, obs: expected ens of shape (M,) + obs.shape = (M,) + {obs.shape}, got {ens.shape}")
    M = ens.shape[0]
    if fair and M < 2:
        raise ValueError(f"ens: fair CRPS needs at least 2 members, got M = {M}")
    dt = jnp.result_type(ens.dtype, obs.dtype, float)
    ens, obs = ens.astype(dt), obs.astype(dt)
    skill = jnp.mean(jnp.abs(ens - obs), axis=0)
    xs = jnp.sort(ens, axis=0)
    i = jnp.arange(1, M + 1, dtype=dt).reshape((M,) + (1,) * obs.ndim)
    pair_sum = 2.0 * jnp.sum((2 * i - M - 1) * xs, axis=0)  # = sum_{m,m'} |x_m - x_m'|
    spread = pair_sum / (2 * M * (M - 1)) if fair else pair_sum / (2 * M * M)
    return skill - spread


def fss_sums(pred: Any, obs: Any, threshold: float, window: int) -> tuple[jax.Array, jax.Array]:
    """(sum (F_p - F_o)^2, sum F_p^2 + sum F_o^2) over all entries; aggregate, then 1 - num/den."""
    pred, obs = _pair(pred, obs)
    _threshold(threshold)
    dt = pred.dtype
    fp = moving_average((pred >= threshold).astype(dt), window)
    fo = moving_average((obs >= threshold).astype(dt), window)
    return jnp.sum((fp - fo) ** 2), jnp.sum(fp**2) + jnp.sum(fo**2)


def fss(pred: Any, obs: Any, threshold: float, window: int) -> jax.Array:
    """Fractions skill score 1 - num / den aggregated over all entries (NaN when both fields have no event)."""
    num, den = fss_sums(pred, obs, threshold, window)
    return jnp.where(den > 0, 1 - num / jnp.where(den > 0, den, 1), jnp.nan)
