"""A conditional DDPM/DDIM core for (spatiotemporal) forecasting: pure functions.

Denoising diffusion probabilistic models (Ho, Jain, Abbeel, 2020, arXiv 2006.11239) and DDIM
sampling (Song, Meng, Ermon, 2021, arXiv 2010.02502), as used by CogDPM (`zoo.generative.cogdpm`).

Equations -> functions:

- betas linear in [beta_start, beta_end], alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s
  -> `linear_schedule` (a `Schedule` pytree; index t - 1 holds step t, t = 1..T).
- sampling levels tau_1 < ... < tau_S (quadratic spacing tau_k = round((1 + (k-1)(sqrt T - 1)/(S-1))^2),
  de-duplicated, or linear) -> `level_times`.
- q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I) -> `q_sample`.
- x0 = (x_t - sqrt(1-abar_t) eps) / sqrt(abar_t) and its inverse -> `x0_from_eps`, `eps_from_x0`.
- eps-prediction loss E || eps - eps_theta(x_t, t) ||^2 -> `eps_loss` (any denoiser ``eps_fn(x_t, t)``).
- DDIM update: sigma = eta sqrt((1-abar_s)/(1-abar_t)) sqrt(1 - abar_t/abar_s),
  x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) eps + sigma z -> `ddim_step`
  (eta = 1 between adjacent steps is the DDPM ancestral step).
- the reverse chain over the levels (``lax.scan``) -> `ddim_sample`; an ensemble of M samples by
  ``vmap`` over M noise keys -> `ensemble`.

The denoiser interface is a pure function ``eps_fn(x_t: f[B, ...], t: i32[B]) -> f[B, ...]``
(close over params and the condition). Choices that are ours: when ``clip`` is set, x0 is clipped
to the data range and eps is recomputed from the clipped x0 before the DDIM update (the diffusers
convention; identical to the unclipped update whenever clipping is inactive); the last level always
goes to abar = 1, returning x0 itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_float_dtype, check_range, is_traced

__all__ = [
    "Schedule",
    "ddim_sample",
    "ddim_step",
    "ensemble",
    "eps_from_x0",
    "eps_loss",
    "level_times",
    "linear_schedule",
    "q_sample",
    "x0_from_eps",
]


class Schedule(NamedTuple):
    """The noise schedule; entry ``t - 1`` belongs to diffusion step t (t = 1..T)."""

    beta: jax.Array  # f[T]
    alpha: jax.Array  # f[T]
    abar: jax.Array  # f[T]


def linear_schedule(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, dtype: Any = None) -> Schedule:
    """Linear betas from ``beta_start`` to ``beta_end`` over ``T`` steps (DDPM's schedule).

    ``dtype``: None gives JAX's default float (float64 under x64). Cumulative products are taken in
    float64 on the host and then cast, so abar is exact to the dtype.
    """
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T: expected a positive int, got {T!r}")
    check_range("beta_start", beta_start, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    check_range("beta_end", beta_end, low=beta_start, high=1.0, high_inclusive=False)
    dtype = check_float_dtype("dtype", dtype)
    beta = np.linspace(beta_start, beta_end, int(T), dtype=np.float64)
    alpha = 1.0 - beta
    abar = np.cumprod(alpha)
    return Schedule(*(jnp.asarray(a, dtype) for a in (beta, alpha, abar)))


def level_times(T: int, S: int, spacing: str = "quadratic") -> np.ndarray:
    """Sampling levels tau_1 < ... < tau_S' in 1..T (numpy int, ascending; S' <= S after de-duplication).

    ``quadratic``: tau_k = round((1 + (k-1)(sqrt(T) - 1)/(S-1))^2), dense at small t where few-level
    DDIM otherwise under-disperses; ``linear``: round(linspace(1, T, S)). tau_1 = 1 and tau_S = T.
    """
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T: expected a positive int, got {T!r}")
    if isinstance(S, bool) or not isinstance(S, (int, np.integer)) or not 1 <= S <= T:
        raise ValueError(f"S: expected an int in [1, T={T}] (sampling levels), got {S!r}")
    check_choice("spacing", spacing, ("quadratic", "linear"))
    if S == 1:
        return np.array([T])
    k = np.arange(S, dtype=np.float64)
    if spacing == "quadratic":
        tau = np.round((1.0 + k * (np.sqrt(T) - 1.0) / (S - 1)) ** 2)
    else:
        tau = np.round(np.linspace(1, T, S))
    return np.unique(np.clip(tau, 1, T).astype(np.int64))


def _bcast(a: jax.Array, x: jax.Array) -> jax.Array:
    """Append trailing unit axes to ``a`` (scalar or f[B]) so it broadcasts against ``x``."""
    a = jnp.asarray(a, x.dtype)
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def x0_from_eps(x_t: jax.Array, eps: jax.Array, abar_t: Any) -> jax.Array:
    """x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); ``abar_t`` scalar or f[B] (leading axis of x_t)."""
    check_array("x_t", x_t)
    x_t = jnp.asarray(x_t)
    a = _bcast(abar_t, x_t)
    return (x_t - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a)


def eps_from_x0(x_t: jax.Array, x0: jax.Array, abar_t: Any) -> jax.Array:
    """eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) (inverse of `x0_from_eps`)."""
    check_array("x_t", x_t)
    x_t = jnp.asarray(x_t)
    a = _bcast(abar_t, x_t)
    return (x_t - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)


def q_sample(x0: jax.Array, eps: jax.Array, abar_t: Any) -> jax.Array:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
    check_array("x0", x0)
    x0 = jnp.asarray(x0)
    a = _bcast(abar_t, x0)
    return jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * eps


def eps_loss(eps_fn: Callable, schedule: Schedule, key: jax.Array, x0: jax.Array) -> tuple[jax.Array, dict]:
    """The DDPM loss: t ~ U{1..T}, eps ~ N(0, I), mean (eps - eps_fn(x_t, t))^2 over all entries.

    Args:
      eps_fn: ``(x_t f[B, ...], t i32[B]) -> f[B, ...]``.
      schedule: `Schedule`; key: PRNG key; x0: f[B, ...] clean data.
    Returns:
      ``(loss, {"loss": loss})``.
    """
    if not callable(eps_fn):
        raise TypeError(f"eps_fn: expected a callable (x_t, t) -> eps, got {type(eps_fn).__name__}")
    check_array("x0", x0, ndim=range(1, 10), min_size=1)
    x0 = jnp.asarray(x0)
    k_t, k_e = jax.random.split(key)
    T = schedule.abar.shape[0]
    t = jax.random.randint(k_t, (x0.shape[0],), 1, T + 1)
    eps = jax.random.normal(k_e, x0.shape, x0.dtype)
    x_t = q_sample(x0, eps, schedule.abar[t - 1].astype(x0.dtype))
    loss = jnp.mean((eps - eps_fn(x_t, t)) ** 2)
    return loss, {"loss": loss}


def ddim_step(x_t: jax.Array, eps: jax.Array, abar_t: Any, abar_s: Any, eta: float = 0.0,
              key: jax.Array | None = None, clip: float | None = None) -> jax.Array:
    """One DDIM update from level t to the earlier level s (abar_s > abar_t; abar_s = 1 gives x0).

    sigma = eta sqrt((1-abar_s)/(1-abar_t)) sqrt(1 - abar_t/abar_s);
    x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) eps + sigma z.
    With ``clip``, x0 is clipped to [-clip, clip] and eps recomputed from it. ``key`` is needed when eta > 0.
    """
    if not is_traced(eta):
        check_range("eta", eta, low=0.0, high=1.0)
        if eta > 0 and key is None:
            raise ValueError("key: required when eta > 0 (stochastic DDIM)")
    x0 = x0_from_eps(x_t, eps, abar_t)
    if clip is not None:
        x0 = jnp.clip(x0, -clip, clip)
        eps = eps_from_x0(x_t, x0, abar_t)
    a_t, a_s = _bcast(abar_t, x_t), _bcast(abar_s, x_t)
    sigma = eta * jnp.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
    out = jnp.sqrt(a_s) * x0 + jnp.sqrt(jnp.maximum(1 - a_s - sigma**2, 0.0)) * eps
    if key is not None:
        out = out + sigma * jax.random.normal(key, x_t.shape, x_t.dtype)
    return out


def ddim_sample(eps_fn: Callable, schedule: Schedule, key: jax.Array, shape: tuple[int, ...], *,
                levels: Any, eta: float = 0.0, clip: float | None = 1.0, dtype: Any = None) -> jax.Array:
    """Run the reverse chain x_T ~ N(0, I) -> x0 over ``levels`` (ascending ints, e.g. `level_times`).

    Args:
      eps_fn: ``(x_t f[shape], t i32[B]) -> f[shape]`` with B = shape[0].
      key: PRNG key (x_T and the eta noise; same key, same draws).
      levels: the sampling levels tau_1 < ... < tau_S (static numpy ints).
    Returns:
      x0 samples, f[shape].
    """
    if not callable(eps_fn):
        raise TypeError(f"eps_fn: expected a callable (x_t, t) -> eps, got {type(eps_fn).__name__}")
    levels = np.asarray(levels)
    T = schedule.abar.shape[0]
    if levels.ndim != 1 or levels.size < 1 or np.any(np.diff(levels) <= 0) or levels[0] < 1 or levels[-1] > T:
        raise ValueError(f"levels: expected strictly increasing ints in [1, T={T}], got {levels!r}")
    dtype = check_float_dtype("dtype", dtype, default=schedule.abar.dtype)
    k0, k_steps = jax.random.split(key)
    x = jax.random.normal(k0, shape, dtype)
    t_now = levels[::-1]
    t_next = np.concatenate([levels[::-1][1:], [0]])
    abar = jnp.concatenate([jnp.ones((1,), schedule.abar.dtype), schedule.abar]).astype(dtype)
    keys = jax.random.split(k_steps, len(levels))

    def body(x, inp):
        t, s, k = inp
        eps = eps_fn(x, jnp.full((shape[0],), t, jnp.int32))
        return ddim_step(x, eps, abar[t], abar[s], eta, k if eta > 0 else None, clip), None

    x, _ = jax.lax.scan(body, x, (jnp.asarray(t_now, jnp.int32), jnp.asarray(t_next, jnp.int32), keys))
    return x


def ensemble(sample_fn: Callable[[jax.Array], Any], key: jax.Array, M: int) -> Any:
    """M ensemble members: ``vmap(sample_fn)`` over ``M`` keys split from ``key`` (leading axis M)."""
    if not callable(sample_fn):
        raise TypeError(f"sample_fn: expected a callable key -> sample, got {type(sample_fn).__name__}")
    if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or M < 1:
        raise ValueError(f"M: expected an ensemble size >= 1, got {M!r}")
    return jax.vmap(sample_fn)(jax.random.split(key, int(M)))
