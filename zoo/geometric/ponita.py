"""PONITA: SE(n) equivariant networks by weight sharing in position-orientation space.

Bekkers, Vadgama, Hesselink, van der Linden, Romero, *Fast, Expressive SE(n) Equivariant Networks through
Weight-Sharing in Position-Orientation Space*, ICLR 2024, arXiv 2310.02970. Spec: ``papers/ponita.md``.

Every node carries the same grid of O orientations ``n_o`` (``make_grid``); features are functions on the grid,
``f_i(o) in R^C``. A convolution kernel that depends only on bi-invariant attributes of (x_i, n_o), (x_j, n_p) is
SE(n) equivariant (weight sharing). The separable kernel factorises into a spatial part at equal orientation and a
fiber part mixing orientations at the same node.

Equations -> functions (spec §2):
  §2.2 spatial A_ij(o) = (<n_o, r_ij>, ||r_ij - <n_o,r_ij> n_o||)  [2D: (<n_o,r>, <n_o^perp,r>)],
       fiber B(o,p) = <n_o, n_p>, dist ||r_ij||, r_ij = x_j - x_i                 -> `invariants`
       point-cloud form (<n_i,r>, ||r_perp||, <n_i,n_j>)                           -> `invariants_pointcloud`
       SE(3) form (R_i^T r_ij, R_i^T R_j)                                          -> `invariants_se3`
  §2.3 S^1 regular grid, S^2 Fibonacci / repulsion grid                            -> `make_grid`
  §2.4 P_d(a) = (a, a(x)a, ..., a^(x)d)                                            -> `polynomial_features`
       w(r) = 1 - (p+1)(p+2)/2 u^p + p(p+2) u^(p+1) - p(p+1)/2 u^(p+2)             -> `polynomial_cutoff`
       Phi_ij(o) = GELU(W2 GELU(W1 P_d(A) + b1) + b2) w(||r||), Psi(o,p) likewise  -> `kernel_bases`
  §2.5 g_i(o) = sum_j K_ij(o) f_j(o);  h_i(p) = (1/O) sum_o F(o,p) g_i(o) + bias   -> `separable_conv`
       f <- f + gamma (U GELU(D LN(h) + d) + u)   (ConvNeXt block)                 -> `apply` (`_block`)
       lift f^0_i(o) = [s_i; <v_i, n_o>], readouts averaged over layers,
       scalars (1/O) sum_o y(o), vectors (1/O) sum_o y(o) n_o                      -> `apply`
       data-dependent rescaling of A_l and G_l on the first batch                  -> `calibrate`
  §2.6 N-body head x(T) = x + u, MSE (rotation augmentation)                       -> `nbody_loss`, `nbody_predict`
       E = sum_i out_i, F = -dE/dx                                                 -> `energy_forces`
       test-time averaging over random global rotations                            -> `energy_forces_averaged`
       standardised energy/force loss                                              -> `md_loss`
  §2.7 Adam(W) with decay masked off biases / LayerNorm / layer scale, frozen consts -> `make_optimizer`
  §7   test-time averaging over random global rotations                            -> `rotation_averaged`

Choices that are ours, not the paper's:
  - Parameters are a plain dict pytree; layer parameters are stacked on a leading axis and run under ``lax.scan``
    (one compiled block, short compile times). The orientation grid lives in ``params['consts']['grid']`` (so
    checkpoints carry it); `make_optimizer` never updates ``consts``.
  - PNITA (``num_ori=0``) runs the same code with a singleton orientation axis and no fiber mix.
  - The default S^2 grid is Fibonacci (deterministic); ``grid='repulsion'`` is the official random one.
  - Initialisation follows PyTorch's ``nn.Linear`` default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)); conv biases 0.
  - Safe norms (double ``where``) make self-loops (r = 0) differentiable (zero gradient there).
  - ``separable=False`` gives the non-separable kernel on [E, O, O] attributes (costly; not used by experiments).
  - Low-level functions (`invariants*`, `spatial_conv`, `separable_conv`) check shapes always and index ranges
    on concrete (host) arrays, raising ``ValueError``; inside ``jit`` an out-of-range sender/receiver is not
    detected (JAX clamps the gather, drops the scatter): validate graphs on the host (`validate_graph`).
  - Dtypes follow the inputs (positions, params); defaults (``init``, ``make_grid``, ``random_rotation``)
    are JAX's default float: float32, or float64 under ``jax.enable_x64``.
  - ``use_kernel=True`` routes the conv through ``zoo.kernels.ponita_conv.fused_separable_conv`` (first
    derivatives only); `energy_forces` inside `md_loss` always uses the jnp path (it is differentiated twice).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.checks import check_array, check_choice, check_range, is_traced

from .graph import Graph, _check_edges, batch_complete, graph_sum, segment_sum, validate_graph

__all__ = [
    "Graph",
    "PonitaConfig",
    "apply",
    "calibrate",
    "energy_forces",
    "energy_forces_averaged",
    "fiber_mix",
    "init",
    "invariants",
    "invariants_pointcloud",
    "invariants_se3",
    "kernel_bases",
    "make_grid",
    "make_optimizer",
    "md_loss",
    "nbody_graph",
    "nbody_loss",
    "nbody_predict",
    "polynomial_cutoff",
    "polynomial_features",
    "random_rotation",
    "rotation_averaged",
    "separable_conv",
    "spatial_conv",
]

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PonitaConfig:
    """Static model configuration (hashable: pass it as a static argument). Defaults = official n-body ones."""

    dim: int = 3  # n: 2 or 3
    in_scalar: int = 1  # Cs
    in_vector: int = 0  # Cv (needs num_ori > 0)
    out_scalar: int = 0  # Ks
    out_vector: int = 0  # Kv (needs num_ori > 0)
    hidden_dim: int = 128  # C
    basis_dim: int = 256  # Bd
    num_layers: int = 5  # L
    num_ori: int = 16  # O; 0 = PNITA (distance only)
    degree: int = 3  # maximal monomial order of the polynomial embedding
    widening: int = 4  # ConvNeXt MLP width factor
    layer_scale: float | None = 1e-6  # initial gamma; None: no gamma
    radius: float | None = None  # window cut-off r_max; None: w = 1
    multiple_readouts: bool = True
    task_level: str = "node"  # 'node' | 'graph'
    grid: str = "fibonacci"  # 'fibonacci' | 'repulsion' (S^2 only; S^1 is always the regular grid)
    separable: bool = True
    use_kernel: bool = False  # fused Pallas conv (zoo.kernels.ponita_conv)

    def __post_init__(self):
        check_choice("dim", self.dim, (2, 3))
        for name in ("in_scalar", "in_vector", "out_scalar", "out_vector"):
            check_range(name, getattr(self, name), low=0, high=4096)
        if self.in_scalar + self.in_vector < 1:
            raise ValueError(f"in_scalar: expected in_scalar + in_vector >= 1, got {self.in_scalar} + {self.in_vector}")
        if self.out_scalar + self.out_vector < 1:
            raise ValueError(
                f"out_scalar: expected out_scalar + out_vector >= 1, got {self.out_scalar} + {self.out_vector}"
            )
        check_range("hidden_dim", self.hidden_dim, low=1, high=65536)
        check_range("basis_dim", self.basis_dim, low=1, high=65536)
        check_range("num_layers", self.num_layers, low=1, high=1000)
        check_range("num_ori", self.num_ori, low=0, high=4096)
        check_range("degree", self.degree, low=1, high=8)
        check_range("widening", self.widening, low=1, high=64)
        if self.layer_scale is not None:
            check_range("layer_scale", self.layer_scale, low=0.0, low_inclusive=False)
        if self.radius is not None:
            check_range("radius", self.radius, low=0.0, low_inclusive=False)
        check_choice("task_level", self.task_level, ("node", "graph"))
        check_choice("grid", self.grid, ("fibonacci", "repulsion"))
        if self.num_ori == 0 and self.out_vector > 0:
            raise ValueError(f"out_vector: PNITA (num_ori=0) cannot output vectors; got out_vector={self.out_vector}")
        if self.num_ori == 0 and self.in_vector > 0:
            raise ValueError(f"in_vector: PNITA (num_ori=0) cannot take vector inputs; got in_vector={self.in_vector}")
        if self.dim == 2 and self.num_ori > 0 and self.grid == "repulsion":
            raise ValueError("grid: 'repulsion' is an S^2 grid (dim=3); dim=2 always uses the regular S^1 grid")

    @property
    def orientations(self) -> int:
        """Size of the orientation axis of the features (1 for PNITA)."""
        return max(self.num_ori, 1)


# ------------------------------------------------------------------------------------------- geometry


def _safe_norm(v: jax.Array, axis: int = -1, keepdims: bool = False) -> jax.Array:
    """||v|| with a zero (not NaN) gradient at v = 0 (double ``where``)."""
    sq = jnp.sum(v * v, axis=axis, keepdims=True)
    pos = sq > 0
    out = jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)
    return out if keepdims else jnp.squeeze(out, axis)


def _perp2(n: jax.Array) -> jax.Array:
    """n^perp = (-n_y, n_x) for 2D vectors ``n: f[..., 2]``."""
    return jnp.stack([-n[..., 1], n[..., 0]], -1)


def _default_float(dtype=None):
    """``dtype`` if given (must be floating), else JAX's default float (float64 under ``jax.enable_x64``)."""
    if dtype is None:
        return jnp.result_type(float)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype: expected a floating dtype, got {dtype!r}")
    return jnp.dtype(dtype)


def _check_pos_grid(pos, grid, name="grid"):
    check_array("pos", pos, ndim=2)
    if pos.shape[1] not in (2, 3):
        raise ValueError(f"pos: expected positions of dim 2 or 3, got shape {tuple(pos.shape)}")
    check_array(name, grid, ndim=2, shape=(None, pos.shape[1]))


def make_grid(cfg: PonitaConfig, key: jax.Array | None = None, *, dtype=None, steps: int = 100) -> jax.Array:
    """The orientation grid ``f[O, dim]`` (unit rows; ``f[0, dim]`` for PNITA).

    S^1: n_k = (cos 2 pi k/O, sin 2 pi k/O). S^2 Fibonacci: phi_k = arccos(1 - 2(k + 1/2)/O),
    theta_k = pi k (1 + sqrt 5) mod 2 pi. S^2 repulsion (needs ``key``): uniform random start, then ``steps`` SGD
    steps (lr 0.1) on mean_{i != j} (d_ij / pi)^-2, d = geodesic distance, gradient noise 1e-3 (1 - t/steps).
    """
    if not isinstance(cfg, PonitaConfig):
        raise ValueError(f"cfg: expected a PonitaConfig, got {type(cfg).__name__}")
    dtype = _default_float(dtype)
    o = cfg.num_ori
    if o == 0:
        return jnp.zeros((0, cfg.dim), dtype)
    k = np.arange(o, dtype=np.float64)
    if cfg.dim == 2:
        a = 2 * np.pi * k / o
        return jnp.asarray(np.stack([np.cos(a), np.sin(a)], -1), dtype)
    if cfg.grid == "fibonacci":
        phi = np.arccos(1 - 2 * (k + 0.5) / o)
        th = np.mod(np.pi * k * (1 + np.sqrt(5.0)), 2 * np.pi)
        return jnp.asarray(np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], -1), dtype)
    if key is None:
        raise ValueError("key: grid='repulsion' is random; pass a PRNG key")
    return repulsion_grid(key, o, steps=steps).astype(dtype)


def _sphere(angles: jax.Array) -> jax.Array:
    th, ph = angles[:, 0], angles[:, 1]  # polar, azimuth
    return jnp.stack([jnp.sin(th) * jnp.cos(ph), jnp.sin(th) * jnp.sin(ph), jnp.cos(th)], -1)


def repulsion_energy(n: jax.Array) -> jax.Array:
    """mean_{i != j} (d_ij / pi)^-2 with d_ij = arccos(clamp(<n_i, n_j>, -1 + 1e-7, 1 - 1e-7))."""
    o = n.shape[0]
    d = jnp.arccos(jnp.clip(n @ n.T, -1 + 1e-7, 1 - 1e-7))
    off = ~jnp.eye(o, dtype=bool)
    e = jnp.where(off, (jnp.where(off, d, 1.0) / jnp.pi) ** -2, 0.0)
    return e.sum() / (o * (o - 1))


def repulsion_grid(key: jax.Array, num: int, *, steps: int = 100, lr: float = 0.1, return_init: bool = False):
    """The official repulsion grid on S^2 (random; depends on ``key``). Returns f[num, 3] (and the init)."""
    check_range("num", num, low=2)
    k1, k2, k3 = jax.random.split(key, 3)
    z = jax.random.uniform(k1, (num,), minval=-1.0, maxval=1.0)
    az = jax.random.uniform(k2, (num,), minval=0.0, maxval=2 * jnp.pi)
    ang0 = jnp.stack([jnp.arccos(z), az], -1)
    grad = jax.grad(lambda a: repulsion_energy(_sphere(a)))

    def body(t, ang):
        noise = 1e-3 * (1 - t / steps) * jax.random.normal(jax.random.fold_in(k3, t), ang.shape)
        return ang - lr * (grad(ang) + noise)

    ang = jax.lax.fori_loop(0, steps, body, ang0)
    return (_sphere(ang), _sphere(ang0)) if return_init else _sphere(ang)


def invariants(pos: jax.Array, grid: jax.Array, senders: jax.Array, receivers: jax.Array):
    """Bi-invariant attributes of the fiber-bundle form (spec §2.2).

    Args: pos f[N, dim], grid f[O, dim] (unit rows), senders/receivers i32[E].
    Returns: spatial f[E, O, 2] = (<n_o, r>, ||r - <n_o, r> n_o||) in 3D or (<n_o, r>, <n_o^perp, r>) in 2D,
      fiber f[O, O, 1] = <n_o, n_p>, dist f[E, 1] = ||r||, with r = x_senders - x_receivers.
    Senders/receivers outside [0, N) raise on concrete arrays; under ``jit`` they are clamped (module docstring).
    """
    _check_pos_grid(pos, grid)
    _check_edges(senders, receivers, pos.shape[0])
    r = pos[senders] - pos[receivers]  # [E, d]
    dist = _safe_norm(r, keepdims=True)
    fiber = (grid @ grid.T)[..., None]
    par = r @ grid.T  # [E, O]
    if pos.shape[-1] == 2:
        second = r @ _perp2(grid).T
    else:
        second = _safe_norm(r[:, None, :] - par[..., None] * grid[None], axis=-1)
    return jnp.stack([par, second], -1), fiber, dist


def invariants_pointcloud(pos: jax.Array, ori: jax.Array, senders: jax.Array, receivers: jax.Array) -> jax.Array:
    """Point-cloud form: each node has its own unit orientation ``ori f[N, dim]``. Returns f[E, 3]:
    3D (<n_i, r>, ||r - <n_i, r> n_i||, <n_i, n_j>); 2D (<n_i, r>, <n_i^perp, r>, <n_i, n_j>) (i receiver)."""
    _check_pos_grid(pos, ori, "ori")
    if ori.shape[0] != pos.shape[0]:
        raise ValueError(f"ori: expected one orientation per node, shape {tuple(pos.shape)}, got {tuple(ori.shape)}")
    _check_edges(senders, receivers, pos.shape[0])
    r = pos[senders] - pos[receivers]
    ni, nj = ori[receivers], ori[senders]
    par = jnp.sum(r * ni, -1)
    if pos.shape[-1] == 2:
        second = jnp.sum(r * _perp2(ni), -1)
    else:
        second = _safe_norm(r - par[:, None] * ni)
    return jnp.stack([par, second, jnp.sum(ni * nj, -1)], -1)


def invariants_se3(pos: jax.Array, rot: jax.Array, senders: jax.Array, receivers: jax.Array) -> jax.Array:
    """SE(3) (trivial stabiliser): ``(R_i^T r_ij, R_i^T R_j)`` flattened, ``rot f[N, 3, 3]`` -> f[E, 12]."""
    check_array("pos", pos, ndim=2, shape=(None, 3))
    check_array("rot", rot, shape=(pos.shape[0], 3, 3))
    _check_edges(senders, receivers, pos.shape[0])
    r = pos[senders] - pos[receivers]
    ri, rj = rot[receivers], rot[senders]
    loc = jnp.einsum("eab,ea->eb", ri, r)
    rel = jnp.einsum("eab,eac->ebc", ri, rj)
    return jnp.concatenate([loc, rel.reshape(rel.shape[0], -1)], -1)


def polynomial_features(a: jax.Array, degree: int) -> jax.Array:
    """P_d(a) = (a, a(x)a, ..., a^(x)d), row-major flattened: ``f[..., k] -> f[..., k + k^2 + ... + k^d]``."""
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)):
        raise ValueError(f"degree: expected an int, got {degree!r}")
    check_range("degree", degree, low=1, high=8)
    check_array("a", a, ndim=range(1, 32), finite=False)
    out, cur = [a], a
    for _ in range(degree - 1):
        cur = (cur[..., :, None] * a[..., None, :]).reshape(*a.shape[:-1], cur.shape[-1] * a.shape[-1])
        out.append(cur)
    return jnp.concatenate(out, -1)


def polynomial_cutoff(r: jax.Array, r_max: float | None, p: int = 6) -> jax.Array:
    """Smooth window (Klicpera et al., eq. 8), u = r / r_max: 1 - (p+1)(p+2)/2 u^p + p(p+2) u^(p+1)
    - p(p+1)/2 u^(p+2) for r < r_max, else 0; identically 1 when ``r_max`` is None. ``r_max`` > 0, p >= 1."""
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1:
        raise ValueError(f"p: expected an int >= 1, got {p!r}")
    if r_max is not None and not is_traced(r_max):
        if isinstance(r_max, bool) or np.ndim(r_max) != 0 or not np.isfinite(r_max) or not r_max > 0:
            raise ValueError(f"r_max: expected a positive finite number or None, got {r_max!r}")
    if r_max is None:
        return jnp.ones_like(r)
    u = r / r_max
    w = 1 - (p + 1) * (p + 2) / 2 * u**p + p * (p + 2) * u ** (p + 1) - p * (p + 1) / 2 * u ** (p + 2)
    return jnp.where(u < 1, w, 0.0)


def random_rotation(key: jax.Array, dim: int = 3, dtype=None) -> jax.Array:
    """A Haar-random rotation ``f[dim, dim]`` (det +1): 2D uniform angle; 3D from a uniform unit quaternion.

    ``dim`` is 2 or 3; ``dtype`` defaults to JAX's default float."""
    check_choice("dim", dim, (2, 3))
    dtype = _default_float(dtype)
    if dim == 2:
        a = jax.random.uniform(key, (), dtype, 0, 2 * jnp.pi)
        return jnp.array([[jnp.cos(a), -jnp.sin(a)], [jnp.sin(a), jnp.cos(a)]], dtype)
    q = jax.random.normal(key, (4,), dtype)
    w, x, y, z = q / jnp.sqrt(jnp.sum(q * q))
    return jnp.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ], dtype)  # fmt: skip


# ------------------------------------------------------------------------------------------- params


class _Uniform:
    """All random parameters from ONE uniform draw (a single threefry call: much faster to compile than one
    draw per tensor). Each request takes the next slice of U(-1, 1) and scales it by its bound."""

    def __init__(self, key, total, dtype):
        self.buf = jax.random.uniform(key, (total,), dtype, -1.0, 1.0)
        self.pos = 0

    def take(self, shape, bound):
        size = math.prod(shape)
        out = self.buf[self.pos : self.pos + size].reshape(shape) * bound
        self.pos += size
        return out


def _dense(rng, fan_in, fan_out, bias=True, lead=()):
    """PyTorch ``nn.Linear`` default init: weights and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    p = {"w": rng.take(lead + (fan_in, fan_out), bound)}
    if bias:
        p["b"] = rng.take(lead + (fan_out,), bound)
    return p


def _poly_dim(k: int, degree: int) -> int:
    return sum(k**i for i in range(1, degree + 1))


def _attr_dims(cfg: PonitaConfig) -> tuple[int, int]:
    """(spatial attribute count, fiber attribute count) entering the basis MLPs."""
    if cfg.num_ori == 0:
        return 1, 0
    return (2, 1) if cfg.separable else (3, 0)


def _basis_mlp_init(rng, k, cfg):
    l1 = _dense(rng, _poly_dim(k, cfg.degree), cfg.hidden_dim)
    l2 = _dense(rng, cfg.hidden_dim, cfg.basis_dim)
    return {"w1": l1["w"], "b1": l1["b"], "w2": l2["w"], "b2": l2["b"]}


def _param_count(cfg: PonitaConfig) -> int:
    c, bd, wc, ll = cfg.hidden_dim, cfg.basis_dim, cfg.widening * cfg.hidden_dim, cfg.num_layers
    ks, kf = _attr_dims(cfg)
    mlp = lambda k: (_poly_dim(k, cfg.degree) + 1) * c + (c + 1) * bd  # noqa: E731
    k_out = cfg.out_scalar + cfg.out_vector
    nr = ll if cfg.multiple_readouts else 1
    per_layer = bd * c * (2 if kf else 1) + (c + 1) * wc + (wc + 1) * c
    embed = (cfg.in_scalar + cfg.in_vector) * c
    return mlp(ks) + (mlp(kf) if kf else 0) + embed + ll * per_layer + nr * (c + 1) * k_out


def init(key: jax.Array, cfg: PonitaConfig, example: Graph | None = None, *, dtype=None,
         grid_key: jax.Array | None = None) -> Params:  # fmt: skip
    """Parameters (dict pytree). ``example`` is checked against ``cfg``; ``dtype`` defaults to its pos dtype.

    Layout: ``consts.grid f[O, dim]``; ``basis`` / ``fiber_basis`` (w1, b1, w2, b2); ``embed.w f[Cs+Cv, C]``;
    ``layers`` stacked over L: A, G f[L, Bd, C], bias, ln_scale, ln_bias, b2 f[L, C], w1 f[L, C, wC], b1, w2,
    gamma; ``readout`` w f[R, C, Ks+Kv], b f[R, Ks+Kv] with R = L (multiple readouts) or 1.
    """
    if not isinstance(cfg, PonitaConfig):
        raise ValueError(f"cfg: expected a PonitaConfig, got {type(cfg).__name__}")
    if example is not None:
        validate_graph(example, dim=cfg.dim, in_scalar=cfg.in_scalar, in_vector=cfg.in_vector)
        dtype = dtype or example.pos.dtype
    dtype = _default_float(dtype)
    c, bd, wc, ll = cfg.hidden_dim, cfg.basis_dim, cfg.widening * cfg.hidden_dim, cfg.num_layers
    ks, kf = _attr_dims(cfg)
    k_params, k_grid = jax.random.split(key)
    grid_key = k_grid if grid_key is None else grid_key
    rng = _Uniform(k_params, _param_count(cfg), dtype)
    params: Params = {"consts": {"grid": make_grid(cfg, grid_key, dtype=dtype)}}
    params["basis"] = _basis_mlp_init(rng, ks, cfg)
    if kf:
        params["fiber_basis"] = _basis_mlp_init(rng, kf, cfg)
    params["embed"] = {"w": _dense(rng, cfg.in_scalar + cfg.in_vector, c, bias=False)["w"]}
    lead = (ll,)
    d1, d2 = _dense(rng, c, wc, lead=lead), _dense(rng, wc, c, lead=lead)
    layers = {"A": _dense(rng, bd, c, bias=False, lead=lead)["w"], "bias": jnp.zeros((ll, c), dtype),
              "ln_scale": jnp.ones((ll, c), dtype), "ln_bias": jnp.zeros((ll, c), dtype),
              "w1": d1["w"], "b1": d1["b"], "w2": d2["w"], "b2": d2["b"]}  # fmt: skip
    if kf:
        layers["G"] = _dense(rng, bd, c, bias=False, lead=lead)["w"]
    if cfg.layer_scale is not None:
        layers["gamma"] = jnp.full((ll, c), cfg.layer_scale, dtype)
    params["layers"] = layers
    nr = ll if cfg.multiple_readouts else 1
    params["readout"] = _dense(rng, c, cfg.out_scalar + cfg.out_vector, lead=(nr,))
    assert rng.pos == rng.buf.shape[0], (rng.pos, rng.buf.shape)
    return params


# ------------------------------------------------------------------------------------------- layers


def _mlp2(p: Params, x: jax.Array) -> jax.Array:
    h = jax.nn.gelu(x @ p["w1"] + p["b1"], approximate=False)
    return jax.nn.gelu(h @ p["w2"] + p["b2"], approximate=False)


def kernel_bases(params: Params, cfg: PonitaConfig, g: Graph):
    """The kernel bases shared by all layers.

    Returns ``(basis f[E, O', Bd], fiber_basis f[O, O, Bd] | None)`` with O' = max(O, 1):
    Phi_ij(o) = MLP(P_d(A_ij(o))) w(||r_ij||); Psi(o, p) = MLP'(P_d(<n_o, n_p>)). Non-separable:
    basis f[E, O, O, Bd] from (A_ij(o), <n_o, n_p>) and no fiber basis. PNITA: Phi from P_d(||r_ij||).
    """
    _check(params, cfg, g)
    grid = params["consts"]["grid"]
    if cfg.num_ori == 0:
        r = g.pos[g.senders] - g.pos[g.receivers]
        dist = _safe_norm(r, keepdims=True)
        basis = _mlp2(params["basis"], polynomial_features(dist, cfg.degree))
        return (basis * polynomial_cutoff(dist, cfg.radius))[:, None, :], None
    spatial, fiber, dist = invariants(g.pos, grid, g.senders, g.receivers)
    win = polynomial_cutoff(dist, cfg.radius)  # [E, 1]
    if not cfg.separable:
        o = grid.shape[0]
        attr = jnp.concatenate(
            [jnp.broadcast_to(spatial[:, :, None, :], spatial.shape[:2] + (o, 2)),
             jnp.broadcast_to(fiber[None], (spatial.shape[0], o, o, 1))], -1)  # fmt: skip
        basis = _mlp2(params["basis"], polynomial_features(attr, cfg.degree))
        return basis * win[:, :, None, None], None
    basis = _mlp2(params["basis"], polynomial_features(spatial, cfg.degree)) * win[:, :, None]
    fbasis = _mlp2(params["fiber_basis"], polynomial_features(fiber, cfg.degree))
    return basis, fbasis


def spatial_conv(x, k_spatial, senders, receivers, edge_mask):
    """g_i(o) = sum_{e: receivers[e] = i, edge_mask[e]} k_spatial[e, o] * x[senders[e], o]  -> f[N, O, C].

    Senders/receivers outside [0, N) raise on concrete arrays; under ``jit`` they are clamped / dropped."""
    check_array("x", x, ndim=3)
    check_array("k_spatial", k_spatial, ndim=3)
    _check_edges(senders, receivers, x.shape[0], edge_mask)
    if k_spatial.shape[0] != senders.shape[0] or k_spatial.shape[2] != x.shape[2] or k_spatial.shape[1] not in (1, x.shape[1]):
        raise ValueError(f"k_spatial: expected shape ({senders.shape[0]}, {x.shape[1]}, {x.shape[2]}) (E, O, C), "
                         f"got {tuple(k_spatial.shape)}")  # fmt: skip
    msg = k_spatial * x[senders]
    return segment_sum(msg, receivers, x.shape[0], edge_mask)


def fiber_mix(g, k_fiber, bias=None):
    """h(p) = (1/O) sum_o k_fiber[o, p] * g(o) (+ bias): ``g f[N, O, C]``, ``k_fiber f[O, O, C]`` -> f[N, O, C]."""
    check_array("g", g, ndim=3)
    check_array("k_fiber", k_fiber, shape=(g.shape[1], g.shape[1], g.shape[2]))
    if bias is not None:
        check_array("bias", bias, shape=(g.shape[2],))
    h = jnp.einsum("noc,opc->npc", g, k_fiber) / k_fiber.shape[0]
    return h if bias is None else h + bias


def separable_conv(x, k_spatial, k_fiber, senders, receivers, edge_mask, bias=None):
    """Depthwise separable group convolution (the hot loop; pure-jnp reference).

    Args:
      x: f[N, O, C] node features on the grid.  k_spatial: f[E, O, C] per-edge spatial kernel K_ij(o).
      k_fiber: f[O, O, C] fiber kernel F(o, p), or None (PNITA: no fiber mix).
      senders, receivers: i32[E]; edge_mask: bool[E] (False edges contribute nothing).
      bias: optional f[C], added after the fiber mix (nodes without incoming edges get bias only).
    Returns: h f[N, O, C], h_i(p) = (1/O) sum_o F(o,p) sum_j K_ij(o) x_j(o) + bias.
    Senders/receivers outside [0, N) raise on concrete arrays; under ``jit`` they are clamped (the gather)
    and dropped (the scatter) silently, as JAX indexing does: validate graphs on the host first.
    """
    if bias is not None:
        check_array("bias", bias, shape=(np.shape(x)[-1],))
    g = spatial_conv(x, k_spatial, senders, receivers, edge_mask)
    if k_fiber is None:
        return g if bias is None else g + bias
    return fiber_mix(g, k_fiber, bias)


def _conv(lp: Params, cfg: PonitaConfig, f, basis, fbasis, g: Graph):
    """One layer's group convolution, dispatching to the fused kernel when ``cfg.use_kernel``."""
    if not cfg.separable and cfg.num_ori > 0:
        k = basis @ lp["A"]  # [E, O, O, C]
        msg = jnp.einsum("eopc,eoc->epc", k, f[g.senders]) / k.shape[1]
        return segment_sum(msg, g.receivers, f.shape[0], g.edge_mask) + lp["bias"]
    k_fiber = None if fbasis is None else fbasis @ lp["G"]
    if cfg.use_kernel:
        try:
            from zoo.kernels.ponita_conv import fused_separable_conv
        except ImportError as e:
            raise NotImplementedError(
                "use_kernel=True needs zoo.kernels.ponita_conv.fused_separable_conv, which is not available"
            ) from e
        return fused_separable_conv(f, basis, lp["A"], g.senders, g.receivers, g.edge_mask, k_fiber, lp["bias"])
    return separable_conv(f, basis @ lp["A"], k_fiber, g.senders, g.receivers, g.edge_mask, lp["bias"])


def _layer_norm(x, scale, bias, eps=1e-5):
    mu = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, -1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * scale + bias


def _convnext_tail(lp: Params, f, h):
    """f + gamma (U GELU(D LN(h) + d) + u)."""
    h = _layer_norm(h, lp["ln_scale"], lp["ln_bias"])
    h = jax.nn.gelu(h @ lp["w1"] + lp["b1"], approximate=False) @ lp["w2"] + lp["b2"]
    if "gamma" in lp:
        h = lp["gamma"] * h
    return f + h


def _lift(params: Params, cfg: PonitaConfig, g: Graph) -> jax.Array:
    """f^0_i(o) = E [s_i ; <v_i^c, n_o>]  -> f[N, O', C]."""
    o = cfg.orientations
    n = g.pos.shape[0]
    parts = [jnp.broadcast_to(g.scalars[:, None, :], (n, o, g.scalars.shape[-1]))]
    if cfg.in_vector:
        parts.append(jnp.einsum("ncd,od->noc", g.vectors, params["consts"]["grid"]))
    return jnp.concatenate(parts, -1) @ params["embed"]["w"]


def _check_cfg(cfg) -> None:
    if not isinstance(cfg, PonitaConfig):
        raise ValueError(f"cfg: expected a PonitaConfig, got {type(cfg).__name__}")


def _check(params: Params, cfg: PonitaConfig, g: Graph) -> None:
    _check_cfg(cfg)
    if not isinstance(params, dict) or "consts" not in params or "grid" not in params["consts"]:
        raise ValueError("params: expected a PONITA params dict (see init) with params['consts']['grid']")
    validate_graph(g, dim=cfg.dim, in_scalar=cfg.in_scalar, in_vector=cfg.in_vector)
    check_array("params['consts']['grid']", params["consts"]["grid"], shape=(cfg.num_ori, cfg.dim), finite=False)


def _readout(params, cfg, g, y):
    """Scalars (1/O) sum_o y_s(o); vectors (1/O) sum_o y_v(o) n_o; masked; summed per graph if graph level."""
    ks = cfg.out_scalar
    m = g.node_mask[:, None]
    scal = vec = None
    if ks:
        scal = jnp.where(m, jnp.mean(y[..., :ks], 1), 0.0)
    if cfg.out_vector:
        grid = params["consts"]["grid"]
        vec = jnp.einsum("nok,od->nkd", y[..., ks:], grid) / grid.shape[0]
        vec = jnp.where(m[..., None], vec, 0.0)
    if cfg.task_level == "graph":
        scal = None if scal is None else graph_sum(scal, g)
        vec = None if vec is None else graph_sum(vec, g)
    return scal, vec


def apply(params: Params, cfg: PonitaConfig, g: Graph):
    """Forward pass. Returns ``(scalars f[N or G, Ks] | None, vectors f[N or G, Kv, dim] | None)``.

    The grid is ``params['consts']['grid']`` (replace it by R n_o to co-rotate it). Padding nodes give zeros.
    """
    _check(params, cfg, g)
    basis, fbasis = kernel_bases(params, cfg, g)
    f = _lift(params, cfg, g)
    multi = cfg.multiple_readouts

    def body(carry, xs):
        f, ysum = carry
        lp, ro = xs
        f = _convnext_tail(lp, f, _conv(lp, cfg, f, basis, fbasis, g))
        if multi:
            ysum = ysum + f @ ro["w"] + ro["b"]
        return (f, ysum), None

    k = cfg.out_scalar + cfg.out_vector
    y0 = jnp.zeros(f.shape[:2] + (k,), f.dtype)
    ro_xs = params["readout"] if multi else jax.tree.map(lambda a: jnp.zeros((cfg.num_layers, 0), a.dtype),
                                                         params["readout"])  # fmt: skip
    (f, ysum), _ = jax.lax.scan(body, (f, y0), (params["layers"], ro_xs))
    if multi:
        y = ysum / cfg.num_layers
    else:
        y = f @ params["readout"]["w"][0] + params["readout"]["b"][0]
    return _readout(params, cfg, g, y)


def _masked_std(x, node_mask):
    m = jnp.broadcast_to(node_mask.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)
    cnt = jnp.maximum(m.sum(), 2)
    mu = jnp.sum(jnp.where(m, x, 0)) / cnt
    return jnp.sqrt(jnp.sum(jnp.where(m, (x - mu) ** 2, 0)) / (cnt - 1))


def _ratio(num, den):
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 1.0)


def calibrate(params: Params, cfg: PonitaConfig, g: Graph) -> Params:
    """One-shot data-dependent init (spec §2.5.6): layer by layer on batch ``g``, rescale A_l by
    std(f)/std(g_l) and G_l by std(g_l)/std(h_l) (std over all entries of real nodes). Pure: returns new params."""
    _check(params, cfg, g)
    basis, fbasis = kernel_bases(params, cfg, g)
    f = _lift(params, cfg, g)
    layers = params["layers"]
    new = []
    for l in range(cfg.num_layers):
        lp = jax.tree.map(lambda a: a[l], layers)
        if not cfg.separable and cfg.num_ori > 0:
            h = _conv(lp, cfg, f, basis, fbasis, g) - lp["bias"]
            s = _ratio(_masked_std(f, g.node_mask), _masked_std(h, g.node_mask))
            lp = {**lp, "A": lp["A"] * s}
        else:
            gl = spatial_conv(f, basis @ lp["A"], g.senders, g.receivers, g.edge_mask)
            sa = _ratio(_masked_std(f, g.node_mask), _masked_std(gl, g.node_mask))
            lp = {**lp, "A": lp["A"] * sa}
            gl = gl * sa
            if fbasis is not None:
                h = fiber_mix(gl, fbasis @ lp["G"])
                sg = _ratio(_masked_std(gl, g.node_mask), _masked_std(h, g.node_mask))
                lp = {**lp, "G": lp["G"] * sg}
        f = _convnext_tail(lp, f, _conv({**lp, "A": lp["A"]}, dataclasses.replace(cfg, use_kernel=False),
                                        f, basis, fbasis, g))  # fmt: skip
        new.append(lp)
    out = dict(params)
    out["layers"] = jax.tree.map(lambda *a: jnp.stack(a), *new)
    return out


def rotation_averaged(params: Params, cfg: PonitaConfig, g: Graph, key: jax.Array, repeats: int = 5):
    """Average `apply` over ``repeats`` random global rotations (done by co-rotating the grid, which equals rotating
    the input and rotating the vector outputs back). Reduces the discretisation error of a finite grid."""
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)):
        raise ValueError(f"repeats: expected an int, got {repeats!r}")
    check_range("repeats", repeats, low=1)
    _check(params, cfg, g)
    rots = jax.vmap(lambda k: random_rotation(k, cfg.dim, g.pos.dtype))(jax.random.split(key, repeats))

    def one(rot):
        p = {**params, "consts": {**params["consts"], "grid": params["consts"]["grid"] @ rot.T}}
        return apply(p, cfg, g)

    return jax.tree.map(lambda a: jnp.mean(a, 0), jax.vmap(one)(rots))


# ------------------------------------------------------------------------------------------- heads


def _check_batch(batch, keys, dim=None):
    """A dict holding ``keys``; ``pos`` f[B, n, d] and every other array sharing its leading (B, n)."""
    if not isinstance(batch, dict):
        raise ValueError(f"batch: expected a dict with keys {', '.join(keys)}, got {type(batch).__name__}")
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ValueError(f"batch: missing key(s) {', '.join(missing)} (expected {', '.join(keys)})")
    check_array("batch['pos']", batch["pos"], ndim=3, shape=(None, None, dim))
    b, n, d = batch["pos"].shape
    for k in keys:
        if k in ("pos", "energy"):
            continue
        want = (b, n, d) if k in ("vel", "target", "forces") else (b, n, None)
        check_array(f"batch[{k!r}]", batch[k], shape=want)
    if "energy" in keys:
        check_array("batch['energy']", batch["energy"], shape=(b,))


def nbody_graph(batch: dict) -> Graph:
    """Complete graphs with self-loops from an n-body batch ``{pos, vel f[B, n, 3], charges f[B, n, 1]}``."""
    _check_batch(batch, ("pos", "vel", "charges"))
    return batch_complete(batch["pos"], batch["charges"], batch["vel"][:, :, None, :])


def nbody_predict(params: Params, cfg: PonitaConfig, batch: dict) -> jax.Array:
    """x_hat(T) = x + u (u the vector output), ``f[B, n, 3]``."""
    _check_cfg(cfg)
    _check_batch(batch, ("pos", "vel", "charges"), cfg.dim)
    _, vec = apply(params, cfg, nbody_graph(batch))
    return batch["pos"] + vec[:, 0, :].reshape(batch["pos"].shape)


def _rotate_batch(batch: dict, rot: jax.Array, keys) -> dict:
    return {k: (v @ rot.T if k in keys else v) for k, v in batch.items()}


def nbody_loss(params: Params, cfg: PonitaConfig, batch: dict, key: jax.Array | None = None):
    """MSE of x_hat(T) over all nodes and coordinates; ``key`` (optional) draws one random rotation of
    pos, vel and target (training augmentation). Batch: pos, vel, target f[B, n, 3], charges f[B, n, 1]."""
    _check_cfg(cfg)
    _check_batch(batch, ("pos", "vel", "charges", "target"), cfg.dim)
    if key is not None:
        batch = _rotate_batch(batch, random_rotation(key, cfg.dim, batch["pos"].dtype), ("pos", "vel", "target"))
    mse = jnp.mean((nbody_predict(params, cfg, batch) - batch["target"]) ** 2)
    return mse, {"mse": mse}


def energy_forces(params: Params, cfg: PonitaConfig, g: Graph):
    """``(E f[G], F f[N, dim])``: E = sum of the per-graph scalar output (column 0), F = -dE/dx (autodiff;
    twice differentiable on the jnp path)."""
    _check_cfg(cfg)
    if cfg.out_scalar < 1 or cfg.task_level != "graph":
        raise ValueError(
            f"cfg: energy_forces needs out_scalar >= 1 and task_level='graph', got out_scalar={cfg.out_scalar}, "
            f"task_level={cfg.task_level!r}"
        )

    def energy(pos):
        e = apply(params, cfg, g._replace(pos=pos))[0][:, 0]
        return jnp.sum(e), e

    (_, e), grad = jax.value_and_grad(energy, has_aux=True)(g.pos)
    return e, -grad


def md_graph(batch: dict) -> Graph:
    """Complete graphs with self-loops from ``{pos f[B, n, 3], species f[B, n, T]}``."""
    return batch_complete(batch["pos"], batch["species"])


def energy_forces_averaged(params: Params, cfg: PonitaConfig, g: Graph, rotations: jax.Array):
    """`energy_forces` averaged over global rotations ``rotations f[R, dim, dim]`` (test-time averaging, spec §2.6):
    co-rotating the grid by R equals rotating the input by R^T and the outputs back."""
    _check_cfg(cfg)
    check_array("rotations", rotations, ndim=3, shape=(None, cfg.dim, cfg.dim))
    if rotations.shape[0] < 1:
        raise ValueError("rotations: expected at least one rotation, got 0")

    def one(rot):
        return energy_forces({**params, "consts": {**params["consts"], "grid": params["consts"]["grid"] @ rot.T}},
                             cfg, g)  # fmt: skip

    e, f = jax.lax.map(one, rotations)
    return e.mean(0), f.mean(0)


def md_loss(params: Params, cfg: PonitaConfig, batch: dict, key: jax.Array | None = None, *,
            lambda_f: float = 500.0, shift: float = 0.0, scale: float = 1.0,
            rotations: jax.Array | None = None):  # fmt: skip
    """Standardised energy/force loss (spec §2.6):

        L = mean_b (E_hat - (E - shift)/scale)^2 / lambda_f + mean_i ||F_hat_i - F_i/scale||^2 / 3,

    with a random rotation of pos and forces when ``key`` is given. Metrics in data units: ``energy_mae``,
    ``force_mae`` (per component). Batch: pos, forces f[B, n, 3], species f[B, n, T], energy f[B].
    ``rotations f[R, 3, 3]`` (evaluation): predictions averaged over these global rotations.
    """
    _check_cfg(cfg)
    _check_batch(batch, ("pos", "forces", "species", "energy"), cfg.dim)
    for name, v in (("lambda_f", lambda_f), ("scale", scale)):
        if not is_traced(v) and (np.ndim(v) != 0 or not np.isfinite(v) or not v > 0):
            raise ValueError(f"{name}: expected a positive finite number, got {v!r}")
    if not is_traced(shift) and (np.ndim(shift) != 0 or not np.isfinite(shift)):
        raise ValueError(f"shift: expected a finite number, got {shift!r}")
    cfg = dataclasses.replace(cfg, use_kernel=False)  # differentiated twice: the jnp path
    if key is not None:
        batch = _rotate_batch(batch, random_rotation(key, cfg.dim, batch["pos"].dtype), ("pos", "forces"))
    if rotations is None:
        e_hat, f_hat = energy_forces(params, cfg, md_graph(batch))
    else:
        e_hat, f_hat = energy_forces_averaged(params, cfg, md_graph(batch), rotations)
    f_hat = f_hat.reshape(batch["forces"].shape)
    le = jnp.mean((e_hat - (batch["energy"] - shift) / scale) ** 2)
    lf = jnp.mean(jnp.sum((f_hat - batch["forces"] / scale) ** 2, -1)) / 3
    metrics = {
        "energy_mae": jnp.mean(jnp.abs(e_hat * scale + shift - batch["energy"])),
        "force_mae": jnp.mean(jnp.abs(f_hat * scale - batch["forces"])),
    }
    return le / lambda_f + lf, metrics


# ------------------------------------------------------------------------------------------- optimiser


def decay_mask(params: Params) -> Params:
    """True on weights that get weight decay: matrices only (not biases, LayerNorm, layer scale, consts)."""

    def label(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        top = str(getattr(path[0], "key", path[0]))
        return top != "consts" and name in ("w", "w1", "w2", "A", "G")

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(learning_rate, *, weight_decay: float = 1e-10, clip_norm: float | None = 0.5):
    """Gradient clipping (global norm) + AdamW with decay masked by `decay_mask`; ``consts`` are frozen."""
    if not callable(learning_rate):
        if isinstance(learning_rate, bool) or np.ndim(learning_rate) != 0 or not np.isfinite(learning_rate) \
                or not learning_rate > 0:  # fmt: skip
            raise ValueError(f"learning_rate: expected a positive number or an optax schedule, got {learning_rate!r}")
    if np.ndim(weight_decay) != 0 or not np.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay: expected a finite number >= 0, got {weight_decay!r}")
    if clip_norm is not None and (np.ndim(clip_norm) != 0 or not np.isfinite(clip_norm) or not clip_norm > 0):
        raise ValueError(f"clip_norm: expected a positive number or None, got {clip_norm!r}")
    tx = optax.adamw(learning_rate, weight_decay=weight_decay, mask=decay_mask)
    if clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)

    def labels(params):
        return {k: jax.tree.map(lambda _: "frozen" if k == "consts" else "train", v) for k, v in params.items()}

    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
