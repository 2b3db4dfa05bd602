"""Synthetic precipitation-like fields: moving, growing and decaying Gaussian blobs on a periodic grid.

The CogDPM spec's ``moving_blobs`` generator (``papers/cogdpm.md`` §5(a)), a pure numpy function of a
seed. Each sequence has K_max blob slots, 1..K_max of them active (uniform); blob k has centre
c ~ U[0, H) x U[0, W), velocity v ~ N(0, v_std^2 I) px/frame, width s ~ U[1.5, 4] px, amplitude
a ~ U[2, 12] mm/h, growth g ~ U[-0.15, 0.15] per frame and its own noise levels
sigma_acc ~ U[0, 0.3] px/frame^2, sigma_amp ~ U[0, 0.2]. Dynamics:
c(t+1) = c(t) + v(t) (mod grid), v(t+1) = v(t) + sigma_acc xi, log a(t+1) = log a(t) + g + sigma_amp zeta.
Rendering (`render_blobs`): R(i, j) = sum_k a_k exp(-d_k^2 / (2 s_k^2)) with periodic offsets
d = ((i - c + H/2) mod H) - H/2 per axis; R < 0.1 -> 0.
``oracle_spread``: re-simulate the future ``oracle_samples`` times from the true state at the last
context frame with fresh noise; the per-pixel standard deviation of R (the true predictability map).

Ours: the random stream layout (numpy ``default_rng(seed)``, one draw order), ``velocity_std`` and
``noise_scale`` knobs (defaults = the spec), float32 output.
"""

from __future__ import annotations

import numpy as np

__all__ = ["moving_blobs", "render_blobs", "rain_to_z", "z_to_rain"]

_LOG65 = float(np.log(65.0))


def rain_to_z(R):
    """z = 2 log(1 + R) / log(65) - 1 (R in mm/h >= 0; z in [-1, 1] for R <= 64). numpy or jnp input."""
    import jax.numpy as jnp

    xp = np if isinstance(R, np.ndarray) else jnp
    return 2.0 * xp.log1p(R) / _LOG65 - 1.0


def z_to_rain(z):
    """R = expm1((z + 1) / 2 log 65), clipped at 0 (inverse of `rain_to_z`)."""
    import jax.numpy as jnp

    xp = np if isinstance(z, np.ndarray) else jnp
    return xp.maximum(xp.expm1((z + 1.0) / 2.0 * _LOG65), 0.0)


def render_blobs(centres: np.ndarray, widths: np.ndarray, amps: np.ndarray, size: tuple[int, int],
                 floor: float = 0.1) -> np.ndarray:
    """Render blobs on a periodic H x W grid.

    Args:
      centres: f[..., K, 2] (row, col); widths: f[..., K]; amps: f[..., K] (0 for inactive slots).
      size: (H, W); floor: values below it become 0.
    Returns:
      f64[..., H, W].
    """
    centres, widths, amps = (np.asarray(a, np.float64) for a in (centres, widths, amps))
    if centres.shape[-1:] != (2,) or centres.shape[:-1] != widths.shape or widths.shape != amps.shape:
        raise ValueError(f"centres, widths, amps: expected shapes (..., K, 2), (..., K), (..., K); got "
                         f"{centres.shape}, {widths.shape}, {amps.shape}")
    if np.any(widths <= 0):
        raise ValueError("widths: expected positive blob widths")
    H, W = size
    i = np.arange(H, dtype=np.float64)
    j = np.arange(W, dtype=np.float64)
    dr = np.mod(i - centres[..., 0:1] + H / 2, H) - H / 2  # [..., K, H]
    dc = np.mod(j - centres[..., 1:2] + W / 2, W) - W / 2  # [..., K, W]
    d2 = dr[..., :, None] ** 2 + dc[..., None, :] ** 2
    R = np.sum(amps[..., None, None] * np.exp(-d2 / (2 * widths[..., None, None] ** 2)), axis=-3)
    return np.where(R < floor, 0.0, R)


def _simulate(rng, c, v, loga, g, s_acc, s_amp, steps, H, W):
    """Advance the blob states ``steps`` frames; centres, velocities [steps, ..., K, 2], log amps [steps, ..., K]."""
    cs, vs, las = [], [], []
    for _ in range(steps):
        c = np.mod(c + v, np.array([H, W], np.float64))
        v = v + s_acc[..., None] * rng.standard_normal(v.shape)
        loga = loga + g + s_amp * rng.standard_normal(loga.shape)
        cs.append(c)
        vs.append(v)
        las.append(loga)
    return np.stack(cs), np.stack(vs), np.stack(las)


def moving_blobs(seed: int, n: int, *, frames_in: int = 4, frames_out: int = 4, size: int = 32,
                 max_blobs: int = 4, oracle_samples: int = 16, velocity_std: float = 1.0,
                 noise_scale: float = 1.0) -> dict[str, np.ndarray]:
    """``n`` sequences of moving, growing and decaying blobs (rain rate in mm/h).

    Args:
      seed: the generator's seed (same seed, same data); n: number of sequences.
      frames_in, frames_out: context and future frames; size: H = W.
      oracle_samples: re-simulations for ``oracle_spread`` (0: skip, returns zeros).
      velocity_std, noise_scale: initial velocity spread; factor on every noise level (0: deterministic future).
    Returns:
      ``{"context": f32[n, Ti, H, W], "target": f32[n, To, H, W], "oracle_spread": f32[n, To, H, W]}``.
    """
    for name, v, low in (("n", n, 1), ("frames_in", frames_in, 1), ("frames_out", frames_out, 1),
                         ("size", size, 4), ("max_blobs", max_blobs, 1), ("oracle_samples", oracle_samples, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
    for name, v in (("velocity_std", velocity_std), ("noise_scale", noise_scale)):
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
    rng = np.random.default_rng(seed)
    H = W = int(size)
    K = int(max_blobs)
    active = np.arange(K) < rng.integers(1, K + 1, size=(n, 1))
    c = rng.uniform(0, 1, (n, K, 2)) * np.array([H, W])
    v = velocity_std * rng.standard_normal((n, K, 2))
    s = rng.uniform(1.5, 4.0, (n, K))
    loga = np.log(rng.uniform(2.0, 12.0, (n, K)))
    g = rng.uniform(-0.15, 0.15, (n, K))
    s_acc = noise_scale * rng.uniform(0.0, 0.3, (n, K))
    s_amp = noise_scale * rng.uniform(0.0, 0.2, (n, K))
    T = frames_in + frames_out
    cs, vs, las = _simulate(rng, c, v, loga, g, s_acc, s_amp, T - 1, H, W)
    cs, vs = np.concatenate([c[None], cs]), np.concatenate([v[None], vs])  # [T, n, K, 2]
    las = np.concatenate([loga[None], las])
    amps = np.where(active, np.exp(las), 0.0)
    R = render_blobs(cs, np.broadcast_to(s, amps.shape), amps, (H, W))  # [T, n, H, W]
    R = np.moveaxis(R, 0, 1)
    spread = np.zeros((n, frames_out, H, W))
    if oracle_samples > 0:  # the true state (c, v, log a) at the last context frame, then fresh noise
        c_l, v_l, la_l = cs[frames_in - 1], vs[frames_in - 1], las[frames_in - 1]
        rep = int(oracle_samples)
        orng = np.random.default_rng([seed, 1])
        tile = lambda a: np.broadcast_to(a, (rep,) + a.shape).copy()  # noqa: E731
        oc, _, ola = _simulate(orng, tile(c_l), tile(v_l), tile(la_l), g, s_acc, s_amp, frames_out, H, W)
        oR = render_blobs(oc, np.broadcast_to(s, ola.shape), np.where(active, np.exp(ola), 0.0), (H, W))
        spread = oR.std(axis=1).transpose(1, 0, 2, 3)  # [To, rep, n, H, W] -> [n, To, H, W]
    return {"context": R[:, :frames_in].astype(np.float32), "target": R[:, frames_in:].astype(np.float32),
            "oracle_spread": spread.astype(np.float32)}
