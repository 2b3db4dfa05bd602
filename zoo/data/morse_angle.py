"""MorseAngle: a synthetic energy/force task with a three-body term (the offline substitute for rMD17).

    E(X) = sum_{i<j} D [(1 - exp(-alpha (r_ij - r0)))^2 - 1] f_c(r_ij)
         + kappa sum_i sum_{j<k; j,k != i} f_c(r_ij) f_c(r_ik) (cos theta_jik - c0)^2       -> `energy`
    f_c(r) = (cos(pi r / r_c) + 1) / 2 for r < r_c, else 0                                   -> `cutoff`
    D = 1, alpha = 2, r0 = 1, r_c = 2.5, kappa = 0.5, c0 = -1/3                              -> `MorseAngleParams`

The angular term makes distance-only models (PNITA) insufficient. Configurations: atoms on a cubic lattice with
spacing 1.0 (2x2x2 for 8 atoms, 3x2x2 for 12), centred, plus N(0, 0.15^2) jitter per coordinate, then a uniform random
rotation and an N(0, I) translation; labels E and F = -grad E in float64  -> `make_morse_angle` (spec §5b).
Choices that are ours: numpy ``default_rng(seed)`` draws all configurations of all splits in order train/val/test.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range

__all__ = ["LATTICES", "MorseAngleParams", "cutoff", "energy", "energy_and_forces", "make_morse_angle"]

LATTICES = {8: (2, 2, 2), 12: (3, 2, 2)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class MorseAngleParams:
    D: float = 1.0
    alpha: float = 2.0
    r0: float = 1.0
    r_c: float = 2.5
    kappa: float = 0.5
    c0: float = -1.0 / 3.0

    def __post_init__(self):
        check_range("D", self.D, low=0.0)
        check_range("alpha", self.alpha, low=0.0, low_inclusive=False)
        check_range("r_c", self.r_c, low=0.0, low_inclusive=False)
        check_range("kappa", self.kappa, low=0.0)
        check_range("c0", self.c0, low=-1.0, high=1.0)


def cutoff(r: jax.Array, r_c: float) -> jax.Array:
    """f_c(r) = (cos(pi r / r_c) + 1) / 2 for r < r_c, else 0."""
    return jnp.where(r < r_c, 0.5 * (jnp.cos(jnp.pi * jnp.minimum(r, r_c) / r_c) + 1), 0.0)


def energy(pos: jax.Array, params: MorseAngleParams = MorseAngleParams()) -> jax.Array:
    """E(X) for one configuration ``pos: f[n, 3]`` -> f[] (see the module docstring)."""
    n = pos.shape[0]
    rv = pos[None, :, :] - pos[:, None, :]  # [i, j] = x_j - x_i
    off = ~jnp.eye(n, dtype=bool)
    r2 = jnp.sum(rv**2, -1)
    r = jnp.where(off, jnp.sqrt(jnp.where(off, r2, 1.0)), 0.0)
    fc = jnp.where(off, cutoff(r, params.r_c), 0.0)
    morse = params.D * ((1 - jnp.exp(-params.alpha * (r - params.r0))) ** 2 - 1) * fc
    e_pair = 0.5 * jnp.sum(jnp.where(off, morse, 0.0))
    unit = rv / jnp.where(off, r, 1.0)[..., None]
    cos = jnp.einsum("ijd,ikd->ijk", unit, unit)  # angle at i between j and k
    w = fc[:, :, None] * fc[:, None, :] * off[None, :, :]  # j != k; j, k != i through fc
    e_ang = 0.5 * params.kappa * jnp.sum(w * (cos - params.c0) ** 2)
    return e_pair + e_ang


def energy_and_forces(pos: jax.Array, params: MorseAngleParams = MorseAngleParams()):
    """(E f[...], F = -dE/dx f[..., n, 3]) for ``pos f[..., n, 3]`` (batched with vmap)."""
    fn = jax.value_and_grad(lambda x: energy(x, params))
    for _ in range(pos.ndim - 2):
        fn = jax.vmap(fn)
    e, g = fn(pos)
    return e, -g


def _rotations(rng: np.random.Generator, count: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((count, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[:, :, 0] *= np.linalg.det(q)[:, None]
    return q


def make_morse_angle(seed: int = 0, n_atoms: int = 8, n_train: int = 500, n_val: int = 100, n_test: int = 500, *,
                     jitter: float = 0.15, params: MorseAngleParams = MorseAngleParams()) -> dict:  # fmt: skip
    """Splits ``train`` / ``val`` / ``test``, each ``{pos f64[S, n, 3], energy f64[S], forces f64[S, n, 3],
    species f32[S, n, 1]}`` (one atom type)."""
    if n_atoms not in LATTICES:
        raise ValueError(f"n_atoms: expected one of {sorted(LATTICES)}, got {n_atoms!r}")
    for name, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        check_range(name, v, low=1, high=1_000_000)
    check_range("jitter", jitter, low=0.0)
    rng = np.random.default_rng(seed)
    shape = LATTICES[n_atoms]
    grid = np.stack(np.meshgrid(*(np.arange(k, dtype=np.float64) for k in shape), indexing="ij"), -1).reshape(-1, 3)
    grid -= grid.mean(0)
    total = n_train + n_val + n_test
    pos = grid[None] + jitter * rng.standard_normal((total, n_atoms, 3))
    pos = np.einsum("sij,snj->sni", _rotations(rng, total), pos) + rng.standard_normal((total, 1, 3))
    check_array("pos", pos)
    with jax.enable_x64(True):
        e, f = jax.jit(energy_and_forces, static_argnums=1)(jnp.asarray(pos, jnp.float64), params)
        e, f = np.asarray(e), np.asarray(f)
    out, start = {}, 0
    for name, k in (("train", n_train), ("val", n_val), ("test", n_test)):
        sl = slice(start, start + k)
        out[name] = {"pos": pos[sl], "energy": e[sl], "forces": f[sl],
                     "species": np.ones((k, n_atoms, 1), np.float32)}  # fmt: skip
        start += k
    return out
