"""CogDPM: diffusion forecasting with precision-weighted guidance, as specified by the zoo.

Kaiyuan Chen, Xingzhuo Guo, Yu Zhang, Jianmin Wang, Mingsheng Long, *CogDPM: Diffusion Probabilistic
Models via Cognitive Predictive Coding*, ICML 2024, arXiv 2405.02384. No official code was found.

The paper's method section was not retrievable offline; only its abstract is. What the abstract says
[P]: the DPM's denoising steps are read as a predictive-coding hierarchy, the model estimates the
precision (inverse uncertainty) of its states from its own hierarchical samples, and guidance is
weighted so that it acts most where precision is low. Everything else below is the zoo's
reconstruction [R] (spec ``papers/cogdpm.md`` §2), implemented exactly as specified:

- Conditional DPM with condition dropout (p_uncond = 0.1): the null context is all zeros plus an
  indicator channel 0 (1 when the context is present) -> `denoise`, `loss` (eps loss of `zoo.generative.diffusion`).
- Levels = DDIM reverse chain over `level_times` (quadratic spacing); level k gives the perceptual
  estimate x0_k from the *conditional* eps (clipped to [-1, 1]) -> inside `sample`.
- Prediction error between adjacent levels e_k = x0_k - x0_{k+1}; uncertainty U_k, estimator
  ``trajectory`` = the running sum of e^2 after a burn-in of b = ceil(burn_in S) increments, or
  ``ensemble`` = Var over the M members of x0_k; precision Pi = 1/(U + delta) -> `update_uncertainty`, `precision`.
- Weight map W = clip((U_s + delta) / (mean U_s + delta), 0, w_max) with U_s an s x s average pool
  (stride 1, zero padding), mean per sample; W = 1 before any estimate exists -> `weight_map`.
- Precision-weighted guidance eps~ = eps_c + w W (eps_c - eps_u); w = 0 is the plain conditional DPM,
  W == 1 is classifier-free guidance -> `guided_eps`.
- DDIM update with eps~ (x0 clipped) -> `zoo.generative.diffusion.ddim_step`; the whole sampler
  (members folded into the batch, cond + uncond as one call of size 2MB, ``lax.scan`` over levels,
  the same key giving the same x_T and noise in every mode) -> `sample`.
- Denoiser: a small 2-D U-Net on frames stacked as channels (GroupNorm, SiLU, sinusoidal time
  embedding added in every residual block, average-pool down / nearest up) -> `UNet`, `init`.

Ours beyond the spec: the ensemble estimator uses the same burn-in gate as the trajectory one; the
U-Net has no attention (the spec's ``paper`` U-Net has it at the lowest level), ``blocks`` residual
blocks per level (default 2), average-pool downsampling and nearest-neighbour upsampling; when x0 is
clipped, eps is recomputed from the clipped x0 (see `zoo.generative.diffusion`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced

from . import diffusion

__all__ = [
    "CogDPMConfig",
    "PrecisionState",
    "UNet",
    "denoise",
    "guided_eps",
    "init",
    "init_uncertainty",
    "levels",
    "loss",
    "precision",
    "sample",
    "sample_modes",
    "schedule",
    "update_uncertainty",
    "weight_map",
]

ESTIMATORS = ("trajectory", "ensemble")
MODES = ("pw", "cfg", "none")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CogDPMConfig:
    """Static configuration (hashable). Shapes: frames ``[B, frames, height, width, channels]`` in z-space."""

    frames_in: int = 4
    frames_out: int = 4
    height: int = 32
    width: int = 32
    channels: int = 1
    widths: tuple[int, ...] = (32, 64)
    blocks: int = 2
    groups: int = 8
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    p_uncond: float = 0.1
    sample_steps: int = 50
    spacing: str = "quadratic"
    eta: float = 0.0
    guidance_w: float = 1.0
    w_max: float = 4.0
    smooth: int = 3
    burn_in: float = 0.2
    delta: float = 1e-6
    estimator: str = "trajectory"
    ensemble_size: int = 8
    mode: str = "pw"

    def __post_init__(self):
        for f in ("frames_in", "frames_out", "height", "width", "channels", "blocks", "groups", "T", "smooth"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{f}: expected a positive int, got {v!r}")
        if not self.widths or any(not isinstance(w, int) or w < 1 or w % self.groups for w in self.widths):
            raise ValueError(f"widths: expected positive ints divisible by groups={self.groups}, got {self.widths!r}")
        down = 2 ** (len(self.widths) - 1)
        if self.height % down or self.width % down:
            raise ValueError(f"height, width: expected multiples of {down} for {len(self.widths)} U-Net levels, "
                             f"got {self.height} x {self.width}")
        check_range("beta_start", self.beta_start, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        check_range("beta_end", self.beta_end, low=self.beta_start, high=1.0, high_inclusive=False)
        check_range("p_uncond", self.p_uncond, low=0.0, high=1.0, high_inclusive=False)
        if isinstance(self.sample_steps, bool) or not isinstance(self.sample_steps, int) or not (
                1 <= self.sample_steps <= self.T):
            raise ValueError(f"sample_steps: expected an int in [1, T={self.T}], got {self.sample_steps!r}")
        check_choice("spacing", self.spacing, ("quadratic", "linear"))
        check_range("eta", self.eta, low=0.0, high=1.0)
        check_range("guidance_w", self.guidance_w, low=0.0)
        check_range("w_max", self.w_max, low=0.0, low_inclusive=False)
        if self.smooth % 2 == 0:
            raise ValueError(f"smooth: expected an odd pooling size, got {self.smooth}")
        check_range("burn_in", self.burn_in, low=0.0, high=1.0, high_inclusive=False)
        check_range("delta", self.delta, low=0.0, low_inclusive=False)
        check_choice("estimator", self.estimator, ESTIMATORS)
        if isinstance(self.ensemble_size, bool) or not isinstance(self.ensemble_size, int) or self.ensemble_size < 1:
            raise ValueError(f"ensemble_size: expected an int >= 1, got {self.ensemble_size!r}")
        if self.estimator == "ensemble" and self.ensemble_size < 2:
            raise ValueError(f"ensemble_size: the 'ensemble' estimator needs >= 2 members, got {self.ensemble_size}")
        check_choice("mode", self.mode, MODES)


def _cfg(cfg: Any) -> None:
    if not isinstance(cfg, CogDPMConfig):
        raise TypeError(f"cfg: expected a CogDPMConfig, got {type(cfg).__name__}")


def schedule(cfg: CogDPMConfig, dtype: Any = None) -> diffusion.Schedule:
    """The linear noise schedule of ``cfg`` (JAX's default float unless ``dtype``)."""
    _cfg(cfg)
    return diffusion.linear_schedule(cfg.T, cfg.beta_start, cfg.beta_end, dtype)


def levels(cfg: CogDPMConfig) -> np.ndarray:
    """The sampling levels tau_1 < ... < tau_S (`zoo.generative.diffusion.level_times`)."""
    _cfg(cfg)
    return diffusion.level_times(cfg.T, cfg.sample_steps, cfg.spacing)


# ------------------------------------------------------------------------------ the denoiser


def _time_embedding(t: jax.Array, dim: int) -> jax.Array:
    half = dim // 2
    freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(half) / max(half - 1, 1))
    ang = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(ang), jnp.cos(ang)], axis=-1)


class _ResBlock(nn.Module):
    features: int
    groups: int

    @nn.compact
    def __call__(self, x, temb):
        h = nn.Conv(self.features, (3, 3))(nn.silu(nn.GroupNorm(num_groups=min(self.groups, x.shape[-1]))(x)))
        h = h + nn.Dense(self.features)(temb)[:, None, None, :]
        h = nn.Conv(self.features, (3, 3))(nn.silu(nn.GroupNorm(num_groups=self.groups)(h)))
        if x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1))(x)
        return x + h


class UNet(nn.Module):
    """A small 2-D U-Net: ``(x f[B, H, W, C_in], t i32[B]) -> f[B, H, W, out]``."""

    widths: tuple[int, ...]
    out: int
    blocks: int = 2
    groups: int = 8

    @nn.compact
    def __call__(self, x, t):
        temb = _time_embedding(t, self.widths[0])
        temb = nn.Dense(4 * self.widths[0])(nn.silu(nn.Dense(4 * self.widths[0])(temb)))
        h = nn.Conv(self.widths[0], (3, 3))(x)
        skips = []
        for i, w in enumerate(self.widths):
            for _ in range(self.blocks):
                h = _ResBlock(w, self.groups)(h, temb)
            if i < len(self.widths) - 1:
                skips.append(h)
                h = nn.avg_pool(h, (2, 2), (2, 2))
        for i, w in reversed(list(enumerate(self.widths[:-1]))):
            B, H, W, C = h.shape
            h = jax.image.resize(h, (B, 2 * H, 2 * W, C), "nearest")
            h = jnp.concatenate([h, skips[i]], axis=-1)
            for _ in range(self.blocks):
                h = _ResBlock(w, self.groups)(h, temb)
        h = nn.silu(nn.GroupNorm(num_groups=self.groups)(h))
        return nn.Conv(self.out, (3, 3), kernel_init=nn.initializers.zeros)(h)


def _net(cfg: CogDPMConfig) -> UNet:
    return UNet(widths=tuple(cfg.widths), out=cfg.frames_out * cfg.channels, blocks=cfg.blocks, groups=cfg.groups)


def init(key: jax.Array, cfg: CogDPMConfig) -> Any:
    """U-Net parameters for ``cfg`` (float32)."""
    _cfg(cfg)
    c_in = (cfg.frames_out + cfg.frames_in) * cfg.channels + 1
    x = jnp.zeros((1, cfg.height, cfg.width, c_in), jnp.float32)
    return _net(cfg).init(key, x, jnp.zeros((1,), jnp.int32))


def _stack(x: jax.Array) -> jax.Array:
    """f[B, F, H, W, C] -> f[B, H, W, F*C]."""
    B, F, H, W, C = x.shape
    return x.transpose(0, 2, 3, 1, 4).reshape(B, H, W, F * C)


def _check_frames(name: str, x: Any, frames: int, cfg: CogDPMConfig, field: str) -> None:
    check_array(name, x, ndim=5)
    want = (frames, cfg.height, cfg.width, cfg.channels)
    if tuple(x.shape[1:]) != want:
        raise ValueError(f"{name}: expected shape (B, {field}={frames}, height={cfg.height}, width={cfg.width}, "
                         f"channels={cfg.channels}), got {tuple(x.shape)}")


def denoise(params: Any, cfg: CogDPMConfig, x_t: jax.Array, t: jax.Array, context: jax.Array,
            has_ctx: jax.Array) -> jax.Array:
    """eps_theta(x_t, t, c~). x_t: f[B, To, H, W, Ch]; t: i32[B] in 1..T; context: f[B, Ti, H, W, Ch];
    has_ctx: bool[B] (False: the null context, zeros and indicator 0). Returns f[B, To, H, W, Ch]."""
    _check_frames("x_t", x_t, cfg.frames_out, cfg, "frames_out")
    _check_frames("context", context, cfg.frames_in, cfg, "frames_in")
    B = x_t.shape[0]
    if context.shape[0] != B or jnp.shape(t) != (B,) or jnp.shape(has_ctx) != (B,):
        raise ValueError(f"context, t, has_ctx: expected batch size {B} (as x_t), got {context.shape[0]}, "
                         f"{jnp.shape(t)}, {jnp.shape(has_ctx)}")
    dt = x_t.dtype
    ind = jnp.asarray(has_ctx).astype(dt)
    ctx = context.astype(dt) * ind[:, None, None, None, None]
    inp = jnp.concatenate([_stack(x_t), _stack(ctx), jnp.broadcast_to(ind[:, None, None, None],
                                                                     (B, cfg.height, cfg.width, 1))], axis=-1)
    out = _net(cfg).apply(params, inp, jnp.asarray(t, jnp.int32)).astype(dt)
    return out.reshape(B, cfg.height, cfg.width, cfg.frames_out, cfg.channels).transpose(0, 3, 1, 2, 4)


def loss(params: Any, cfg: CogDPMConfig, key: jax.Array, batch: dict) -> tuple[jax.Array, dict]:
    """The eps loss with condition dropout: ``batch = {"context": f[B, Ti, ...], "target": f[B, To, ...]}`` in z-space."""
    if not isinstance(batch, dict) or not {"context", "target"} <= set(batch):
        raise ValueError("batch: expected a dict with keys 'context' and 'target'")
    _check_frames("batch['target']", batch["target"], cfg.frames_out, cfg, "frames_out")
    _check_frames("batch['context']", batch["context"], cfg.frames_in, cfg, "frames_in")
    k_drop, k_diff = jax.random.split(key)
    x0, ctx = jnp.asarray(batch["target"]), jnp.asarray(batch["context"])
    has = jax.random.uniform(k_drop, (x0.shape[0],)) >= cfg.p_uncond
    eps_fn = lambda x_t, t: denoise(params, cfg, x_t, t, ctx, has)  # noqa: E731
    value, aux = diffusion.eps_loss(eps_fn, schedule(cfg, x0.dtype), k_diff, x0)
    return value, {**aux, "ctx_fraction": jnp.mean(has.astype(x0.dtype))}


# ------------------------------------------------------------------ precision and guidance


class PrecisionState(NamedTuple):
    """U: f[...] the uncertainty; prev_x0: f[...] the previous level's x0; count: i32[] increments used."""

    U: jax.Array
    prev_x0: jax.Array
    count: jax.Array


def init_uncertainty(x0_like: jax.Array) -> PrecisionState:
    """The empty state (U = 0, no previous level) for estimates shaped like ``x0_like``."""
    check_array("x0_like", x0_like, ndim=range(1, 10), finite=False)
    z = jnp.zeros_like(x0_like)
    return PrecisionState(z, z, jnp.zeros((), jnp.int32))


def _burn(cfg: CogDPMConfig, S: int) -> int:
    return int(math.ceil(cfg.burn_in * S))


def update_uncertainty(state: PrecisionState, x0_k: jax.Array, level_index: Any, cfg: CogDPMConfig,
                       num_levels: int | None = None) -> PrecisionState:
    """Fold level ``level_index`` (0 = the first processed, noisiest level) into the uncertainty.

    ``trajectory``: U += (x0_k - x0_prev)^2 for level_index >= b + 1, b = ceil(burn_in S).
    ``ensemble``: U = Var over axis 0 (the members) of x0_k, broadcast back, from level b + 1 on.
    ``num_levels``: S (default: ``len(levels(cfg))``).
    """
    check_array("x0_k", x0_k)
    x0_k = jnp.asarray(x0_k)
    if jnp.shape(state.U) != x0_k.shape:
        raise ValueError(f"state: expected U of shape {x0_k.shape} (as x0_k), got {jnp.shape(state.U)}")
    S = len(levels(cfg)) if num_levels is None else num_levels
    active = jnp.asarray(level_index) >= _burn(cfg, S) + 1
    if cfg.estimator == "trajectory":
        U = state.U + jnp.where(active, (x0_k - state.prev_x0) ** 2, 0.0)
    else:
        if x0_k.shape[0] < 2:
            raise ValueError(f"x0_k: the 'ensemble' estimator needs >= 2 members on axis 0, got {x0_k.shape[0]}")
        U = jnp.where(active, jnp.broadcast_to(jnp.var(x0_k, axis=0), x0_k.shape), state.U)
    return PrecisionState(U.astype(x0_k.dtype), x0_k, state.count + active.astype(jnp.int32))


def precision(U: Any, delta: float = 1e-6) -> jax.Array:
    """Pi = 1 / (U + delta)."""
    check_array("U", U)
    check_range("delta", delta, low=0.0, low_inclusive=False)
    return 1.0 / (jnp.asarray(U) + delta)


def weight_map(U: Any, cfg: CogDPMConfig) -> jax.Array:
    """W = clip((U_s + delta) / (mean U_s + delta), 0, w_max); U: f[..., To, H, W, Ch], U_s its s x s average
    (stride 1, zero padding) over (H, W); the mean runs per sample over the last four axes."""
    check_array("U", U, ndim=range(4, 10))
    U = jnp.asarray(U)
    if not is_traced(U) and bool(jnp.any(U < 0)):
        raise ValueError("U: expected a non-negative uncertainty map")
    s, r = cfg.smooth, cfg.smooth // 2
    if s > 1:
        pad = [(0, 0)] * (U.ndim - 3) + [(r, r), (r, r), (0, 0)]
        win = (1,) * (U.ndim - 3) + (s, s, 1)
        U = jax.lax.reduce_window(U, 0.0, jax.lax.add, win, (1,) * U.ndim, pad) / (s * s)
    m = jnp.mean(U, axis=(-4, -3, -2, -1), keepdims=True)
    return jnp.clip((U + cfg.delta) / (m + cfg.delta), 0.0, cfg.w_max)


def guided_eps(eps_c: Any, eps_u: Any, W: Any, w: float) -> jax.Array:
    """eps~ = eps_c + w W (eps_c - eps_u) (elementwise; W = 1 is classifier-free guidance, w = 0 none)."""
    check_array("eps_c", eps_c)
    check_array("eps_u", eps_u)
    if not is_traced(w):
        check_range("w", w, low=0.0)
    eps_c, eps_u = jnp.asarray(eps_c), jnp.asarray(eps_u)
    if eps_c.shape != eps_u.shape:
        raise ValueError(f"eps_c, eps_u: expected the same shape, got {eps_c.shape} and {eps_u.shape}")
    return eps_c + w * W * (eps_c - eps_u)


def sample(params: Any, cfg: CogDPMConfig, key: jax.Array, context: Any, mode: str | None = None,
           eps_fn: Any = None) -> tuple[jax.Array, jax.Array]:
    """CogDPM sampling: M = ``cfg.ensemble_size`` members per context, S levels, one mode.

    Args:
      context: f[B, Ti, H, W, Ch] in z-space. mode: 'pw' (precision-weighted), 'cfg' (W = 1) or
        'none' (w = 0); default ``cfg.mode``. eps_fn: optional replacement denoiser
        ``(x_t, t, context, has_ctx) -> eps`` (tests: exact scores); default `denoise` with ``params``.
    Returns:
      ``(samples f[M, B, To, H, W, Ch], U f[M, B, To, H, W, Ch])`` (U: the final uncertainty map, tracked
      in every mode; mode 'none' skips the unconditional call).
    """
    mode = cfg.mode if mode is None else mode
    check_choice("mode", mode, MODES)
    w = 0.0 if mode == "none" else cfg.guidance_w
    return _sample(params, cfg, key, context, w, mode == "pw", mode == "none", eps_fn)


def sample_modes(params: Any, cfg: CogDPMConfig, key: jax.Array, context: Any, modes: tuple[str, ...] = MODES,
                 eps_fn: Any = None) -> tuple[jax.Array, jax.Array]:
    """`sample` in several modes at once (one compiled program, vmapped over the modes' (w, W-switch)).

    The same key is used by every mode (common random numbers). Returns ``(samples f[len(modes), M, B, To, H, W, Ch],
    U f[len(modes), M, B, To, H, W, Ch])``; entry i equals ``sample(..., mode=modes[i])`` up to float rounding.
    """
    if not modes:
        raise ValueError("modes: expected at least one of 'pw', 'cfg', 'none'")
    for m in modes:
        check_choice("modes", m, MODES)
    dt = jnp.result_type(float)
    ws = jnp.asarray([0.0 if m == "none" else cfg.guidance_w for m in modes], dt)
    pws = jnp.asarray([m == "pw" for m in modes])
    return jax.vmap(lambda w, pw: _sample(params, cfg, key, context, w, pw, False, eps_fn))(ws, pws)


def _sample(params, cfg, key, context, w, use_pw, skip_uncond: bool, eps_fn):
    _check_frames("context", context, cfg.frames_in, cfg, "frames_in")
    context = jnp.asarray(context)
    dt = context.dtype if jnp.issubdtype(context.dtype, jnp.floating) else jnp.result_type(float)
    context = context.astype(dt)
    fn = eps_fn if eps_fn is not None else (lambda x, t, c, h: denoise(params, cfg, x, t, c, h))
    M, B = cfg.ensemble_size, context.shape[0]
    shape = (M, B, cfg.frames_out, cfg.height, cfg.width, cfg.channels)
    lv = levels(cfg)
    S = len(lv)
    sch = schedule(cfg, dt)
    abar = jnp.concatenate([jnp.ones((1,), dt), sch.abar.astype(dt)])
    k0, k_steps = jax.random.split(key)
    x = jax.random.normal(k0, shape, dt)
    ctx_m = jnp.broadcast_to(context, (M,) + context.shape).reshape((M * B,) + context.shape[1:])
    flat = lambda a: a.reshape((M * B,) + a.shape[2:])  # noqa: E731

    def body(carry, inp):
        x, st = carry
        i, t, s, k = inp
        tt = jnp.full((M * B,), t, jnp.int32)
        if skip_uncond:
            eps_c = fn(flat(x), tt, ctx_m, jnp.ones((M * B,), bool)).reshape(shape)
            eps_u = eps_c
        else:
            both = fn(jnp.concatenate([flat(x)] * 2), jnp.concatenate([tt, tt]), jnp.concatenate([ctx_m] * 2),
                      jnp.concatenate([jnp.ones((M * B,), bool), jnp.zeros((M * B,), bool)]))
            eps_c, eps_u = both[: M * B].reshape(shape), both[M * B :].reshape(shape)
        x0_c = jnp.clip(diffusion.x0_from_eps(x, eps_c, abar[t]), -1.0, 1.0)
        st = update_uncertainty(st, x0_c, i, cfg, S)
        W = jnp.where(use_pw & (st.count > 0), weight_map(st.U, cfg), jnp.ones_like(st.U))
        eps = guided_eps(eps_c, eps_u, W, w)
        x = diffusion.ddim_step(x, eps, abar[t], abar[s], cfg.eta, k if cfg.eta > 0 else None, clip=1.0)
        return (x, st), None

    t_now = lv[::-1]
    t_next = np.concatenate([lv[::-1][1:], [0]])
    xs = (jnp.arange(S), jnp.asarray(t_now, jnp.int32), jnp.asarray(t_next, jnp.int32), jax.random.split(k_steps, S))
    (x, st), _ = jax.lax.scan(body, (x, init_uncertainty(x)), xs)
    return x, st.U
