"""The charged-particle N-body benchmark (Kipf et al. 2018; EGNN's "nbody_small"), reproducing the official stream.

Simulator (``ChargedParticlesSim`` of the EGNN / PONITA repositories, spec ``papers/ponita.md`` §5a):
  5 unit-mass particles, charges q in {-1, +1}; force on i
      F_i = sum_{j != i} q_i q_j (x_i - x_j) / ||x_i - x_j||^3,   each component clipped to [-100, 100];
  semi-implicit Euler with dt = 1e-3:  v <- v0 + dt F(x0); for i = 1, 2, ...: x <- x + dt v;
  save (x, v) when i % 100 == 0; v <- v + dt F(x).   -> `simulate_charged` (pure jnp, ``lax.scan``)
  Saved frame c is step 100 (c + 1); the saved v is the velocity that moved the particles into x.
Initial conditions (host numpy, legacy ``RandomState``, the official draw order per trajectory: ``choice`` of 5
charges, randn(3, 5) positions, randn(3, 5) velocities rescaled to norm 0.5, reflection into the box [-5, 5]
once, then two randn(49, 3, 5) observation-noise draws of variance 0 that still advance the stream)
  -> `draw_initial_conditions`.
Dataset: seed 43, trajectories generated train (10,000) / valid (2,000) / test (2,000) in that order; a sample is
(x, v, q) at frame 30 and the target x at frame 40 (1,000 steps ahead). The first 3,000 training trajectories are
used  -> `nbody_small_arrays` (numpy dict of splits), `make_nbody_small` (``datasets.DatasetDict``).
Reference statistics (test split) -> `baseline_mse`: zero motion 0.2715, constant velocity 0.1101, x + gamma v with
gamma fit on train (0.7246) 0.0847.

Choices that are ours: squared distances are computed as |a|^2 + |b|^2 - 2 a.b like the official code (so the
rounding matches it closely); integration is float64 in jnp for all trajectories at once. Chaotic close encounters
amplify rounding differences, so ~4% of trajectories drift from the official files; dataset statistics do not.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range

__all__ = [
    "baseline_mse",
    "charged_forces",
    "draw_initial_conditions",
    "make_nbody_small",
    "nbody_small_arrays",
    "simulate_charged",
]

OFFICIAL_SPLITS = (("train", 10_000), ("valid", 2_000), ("test", 2_000))


def charged_forces(q: jax.Array, x: jax.Array, max_force: float = 100.0) -> jax.Array:
    """Coulomb-like forces ``f[..., n, 3]`` (like charges repel), components clipped to ±max_force.

    q: f[..., n]; x: f[..., n, 3].
    """
    sq = jnp.sum(x * x, -1)
    dot = jnp.sum(x[..., :, None, :] * x[..., None, :, :], -1)
    d2 = sq[..., :, None] + sq[..., None, :] - 2 * dot  # official form
    n = x.shape[-2]
    eye = jnp.eye(n, dtype=bool)
    size = jnp.where(eye, 0.0, q[..., :, None] * q[..., None, :] / jnp.where(eye, 1.0, d2) ** 1.5)
    diff = x[..., :, None, :] - x[..., None, :, :]  # [i, j] = x_i - x_j
    f = jnp.sum(size[..., None] * diff, -2)
    return jnp.clip(f, -max_force, max_force)


def _forces_last(q, x, max_force):
    """`charged_forces` in a trajectory-last, pair-unrolled layout (fast on CPU): q f[n, S], x f[3, n, S].

    Same arithmetic as the official code per pair (|a|^2 + |b|^2 - 2 a.b, size q_i q_j / d^3, sum over j in order).
    """
    n = x.shape[1]
    sq = [x[0, i] * x[0, i] + x[1, i] * x[1, i] + x[2, i] * x[2, i] for i in range(n)]
    size = {}
    for i in range(n):
        for j in range(i + 1, n):
            d2 = sq[i] + sq[j] - 2 * (x[0, i] * x[0, j] + x[1, i] * x[1, j] + x[2, i] * x[2, j])
            size[i, j] = size[j, i] = q[i] * q[j] / (d2 * jnp.sqrt(d2))
    out = []
    for i in range(n):
        acc = [jnp.zeros_like(x[0, 0]) for _ in range(3)]
        for j in range(n):
            if j != i:
                acc = [acc[k] + size[i, j] * (x[k, i] - x[k, j]) for k in range(3)]
        out.append(jnp.stack(acc))
    return jnp.clip(jnp.stack(out, 1), -max_force, max_force)


@functools.partial(jax.jit, static_argnames=("n_steps", "save_steps"))
def _simulate(q, x0, v0, dt, max_force, *, n_steps, save_steps):
    n_save = n_steps // save_steps - 1
    q, x0, v0 = q.T, jnp.transpose(x0, (2, 1, 0)), jnp.transpose(v0, (2, 1, 0))  # trajectory axis last
    force = functools.partial(_forces_last, q, max_force=max_force)

    def step(carry, _):
        x, v = carry
        x = x + dt * v
        return (x, v + dt * force(x)), None

    def frame(carry, _):
        carry, _ = jax.lax.scan(step, carry, None, length=save_steps - 1)
        x, v = carry
        x = x + dt * v
        return (x, v + dt * force(x)), (x, v)

    v = v0 + dt * force(x0)
    _, (xs, vs) = jax.lax.scan(frame, (x0, v), None, length=n_save)  # [T, 3, n, S]
    return jnp.transpose(xs, (3, 0, 2, 1)), jnp.transpose(vs, (3, 0, 2, 1))


def simulate_charged(q, x0, v0, n_steps: int = 5000, save_steps: int = 100, dt: float = 1e-3,
                     max_force: float = 100.0) -> dict:  # fmt: skip
    """Integrate S systems at once. q: f[S, n]; x0, v0: f[S, n, 3] (after the initial reflection).

    Returns ``{"loc": f[S, T, n, 3], "vel": f[S, T, n, 3]}`` with T = n_steps // save_steps - 1 frames, frame c at
    step save_steps (c + 1). Computed in the inputs' dtype (pass float64 with x64 enabled for the official data).
    """
    check_array("q", q, ndim=2)
    s, n = q.shape
    check_array("x0", x0, shape=(s, n, 3))
    check_array("v0", v0, shape=(s, n, 3))
    check_range("save_steps", save_steps, low=1)
    check_range("n_steps", n_steps, low=2 * save_steps)
    check_range("dt", dt, low=0.0, low_inclusive=False)
    if n_steps % save_steps:
        raise ValueError(f"n_steps: expected a multiple of save_steps={save_steps}, got {n_steps}")
    loc, vel = _simulate(jnp.asarray(q), jnp.asarray(x0), jnp.asarray(v0), dt, max_force,
                         n_steps=int(n_steps), save_steps=int(save_steps))  # fmt: skip
    return {"loc": loc, "vel": vel}


def _clamp(loc, vel, box=5.0):
    """The official one-time reflection into [-box, box] (in place on copies): loc, vel f[3, n]."""
    loc, vel = loc.copy(), vel.copy()
    over = loc > box
    loc[over] = 2 * box - loc[over]
    vel[over] = -np.abs(vel[over])
    under = loc < -box
    loc[under] = -2 * box - loc[under]
    vel[under] = np.abs(vel[under])
    return loc, vel


def draw_initial_conditions(rs: np.random.RandomState, count: int, *, n_balls: int = 5, n_frames: int = 49,
                            loc_std: float = 1.0, vel_norm: float = 0.5) -> dict:  # fmt: skip
    """Draw ``count`` trajectories' initial conditions from ``rs`` in the official order (noise draws included).

    Returns ``{"charges": f64[count, n], "x0": f64[count, n, 3], "v0": f64[count, n, 3]}``.
    """
    q = np.empty((count, n_balls))
    x0 = np.empty((count, n_balls, 3))
    v0 = np.empty((count, n_balls, 3))
    types, prob = np.array([-1.0, 0.0, 1.0]), [0.5, 0.0, 0.5]
    std = loc_std * (n_balls / 5.0) ** (1 / 3)
    for t in range(count):
        q[t] = rs.choice(types, size=(n_balls, 1), p=prob)[:, 0]
        loc = rs.randn(3, n_balls) * std
        vel = rs.randn(3, n_balls)
        vel = vel * vel_norm / np.sqrt((vel**2).sum(axis=0)).reshape(1, -1)
        loc, vel = _clamp(loc, vel)
        x0[t], v0[t] = loc.T, vel.T
        rs.randn(n_frames, 3, n_balls)  # observation noise (variance 0) still consumes the stream
        rs.randn(n_frames, 3, n_balls)
    return {"charges": q, "x0": x0, "v0": v0}


def nbody_small_arrays(seed: int = 43, *, official_stream: bool = True, n_train: int = 3000, n_valid: int = 2000,
                       n_test: int = 2000, frame_in: int = 30, frame_out: int = 40) -> dict:  # fmt: skip
    """The nbody_small splits as numpy float64 arrays.

    Each split: ``pos``, ``vel``, ``target`` f64[S, 5, 3] and ``charges`` f64[S, 5, 1]. With ``official_stream``
    the draws follow the official generator (10,000 / 2,000 / 2,000 trajectories in order; the first n_* of each
    split are kept); otherwise each split draws its own n_* trajectories from ``RandomState(seed + k)``.
    """
    check_range("n_train", n_train, low=1, high=10_000)
    check_range("n_valid", n_valid, low=1, high=2_000)
    check_range("n_test", n_test, low=1, high=2_000)
    check_range("frame_in", frame_in, low=0, high=47)
    check_range("frame_out", frame_out, low=frame_in + 1, high=48)
    want = {"train": n_train, "valid": n_valid, "test": n_test}
    ics = {}
    if official_stream:
        rs = np.random.RandomState(seed)
        for name, total in OFFICIAL_SPLITS:
            ic = draw_initial_conditions(rs, want[name])
            draw_initial_conditions(rs, total - want[name])  # advance the stream past the unused trajectories
            ics[name] = ic
    else:
        for k, name in enumerate(want):
            ics[name] = draw_initial_conditions(np.random.RandomState(seed + k), want[name])
    names = list(want)
    q = np.concatenate([ics[k]["charges"] for k in names])
    x0 = np.concatenate([ics[k]["x0"] for k in names])
    v0 = np.concatenate([ics[k]["v0"] for k in names])
    n_steps = (frame_out + 2) * 100  # frames beyond frame_out are not needed
    with jax.enable_x64(True):
        out = simulate_charged(jnp.asarray(q), jnp.asarray(x0), jnp.asarray(v0), n_steps=n_steps)
        loc, vel = np.asarray(out["loc"]), np.asarray(out["vel"])
    res, start = {}, 0
    for name in names:
        sl = slice(start, start + want[name])
        res[name] = {"pos": loc[sl, frame_in], "vel": vel[sl, frame_in], "charges": q[sl, :, None],
                     "target": loc[sl, frame_out]}  # fmt: skip
        start += want[name]
    return res


def make_nbody_small(seed: int = 43, official_stream: bool = True, n_train: int = 3000, n_valid: int = 2000,
                     n_test: int = 2000):  # fmt: skip
    """`nbody_small_arrays` wrapped as a ``datasets.DatasetDict`` (numpy format; ``datasets`` imported lazily)."""
    from .hf import _require_datasets, to_dataset

    datasets = _require_datasets()
    arrays = nbody_small_arrays(seed, official_stream=official_stream, n_train=n_train, n_valid=n_valid,
                                n_test=n_test)  # fmt: skip
    return datasets.DatasetDict({k: to_dataset(v) for k, v in arrays.items()})


def baseline_mse(train: dict, test: dict) -> dict:
    """Test MSEs of the trivial predictors: ``zero`` (x(T) = x), ``const_vel`` (x + v, time 1.0 ahead) and
    ``linear`` (x + gamma v, gamma = least squares on train); also returns ``gamma``."""
    dx = train["target"] - train["pos"]
    gamma = float(np.sum(dx * train["vel"]) / np.sum(train["vel"] ** 2))
    err = lambda pred: float(np.mean((pred - test["target"]) ** 2))  # noqa: E731
    return {"zero": err(test["pos"]), "const_vel": err(test["pos"] + test["vel"]),
            "linear": err(test["pos"] + gamma * test["vel"]), "gamma": gamma}  # fmt: skip
