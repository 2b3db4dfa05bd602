"""Fused LM-head log-prob and entropy (the GRPO family's hot loop) as Pallas kernels.

Math (h: f[M, d] hidden states, w: f[d, V] unembedding, targets: i32[M]; z = h w: f32[M, V] logits):

    lse_i  = log sum_v exp(z_iv)                                   (online over V tiles)
    logp_i = z_{i, t_i} - lse_i                                    (gathered target logit)
    H_i    = -sum_v p_iv log p_iv = lse_i - sum_v p_iv z_iv        (entropy of p_i = softmax(z_i))

and the gradients (g: cotangent of logp, e: cotangent of H, 1_t the one-hot of the target):

    dlogp_i/dz_iv = 1[v = t_i] - p_iv,     dH_i/dz_iv = -p_iv (log p_iv + H_i)
    dz = g 1_t - p (g + e (log p + H)),    dh = dz w^T: f[M, d],    dw = h^T dz: f[d, V].

Functions (``_grpo_family.md`` §11, ``tw_grpo.md`` §4):
  ``fused_logprob_reference``  jnp: logits, ``log_softmax``, ``take_along_axis`` (materialises [M, V]).
  ``fused_logprob``            Pallas forward + custom VJP; never holds [M, V] logits.
  ``plan``                     the tiling a call will use (for benchmarks and tests).

Forward kernel (grid = (M tiles, V splits)): a program loads its h tile [bm, d] by d-chunks, loops over
its share of the V tiles, forms each logit tile z = h w[:, tile] ([bm, bv], f32 accumulation over
d-chunks of bd) and updates per-row running statistics, flash-attention style:

    m' = max(m, max_v z),  a = exp(m - m'),  s' = a s + sum_v e^{z - m'},
    u' = a (u + s (m - m')) + sum_v e^{z - m'} (z - m'),   g' = g + z[target]

(u = sum_v e^{z - m} (z - m) is kept relative to the running max, so H = log s - u / s has no
cancellation against m). The V splits (flash-decoding) keep every SM busy when M / bm is small; their
(m, s, u, g) partials, [M, S] each, are merged in the wrapper.

Backward: for each chunk of ``chunk_v`` vocabulary columns, a Pallas kernel (grid = (M tiles, chunk
tiles)) recomputes the logit tiles and writes dz for that chunk only ([M, chunk_v]; never [M, V]);
then two GEMMs give dh += dz_c w_c^T and dw_c = h^T dz_c. The GEMMs run in XLA (cuBLAS on GPU): a
dh accumulator of [bm, d] (d = 1536) does not fit one program's registers, and dw's reduction over M
would need atomics, which the portable Pallas subset does not have.

Choices that are ours:
  - Padding in the wrapper: M to a multiple of bm (zero rows, zero cotangents), V to a multiple of bv
    (padded logits are masked to -inf in the kernel), d to a multiple of bd (zero columns). Block
    sizes are chosen to divide the problem when they can, so the [d, V] weight is not copied
    (Qwen2.5-1.5B: d = 1536 = 24 * 64, V = 151,936 = 1187 * 128).
  - Running max starts at -1e30 (finite), so empty tiles and splits never produce inf - inf.
  - Logits accumulate in f32 (float64 for float64 inputs); bf16 inputs feed bf16 dots with f32
    accumulation. On GPU, f32 inputs use the backend's default f32 dot precision (TF32), like the
    jitted reference. dz is stored in the input dtype (bf16 for bf16 inputs) before the two backward
    GEMMs, which accumulate in f32.
  - Targets outside [0, V) are rejected eagerly; under ``jit`` (no host check) such a row's gathered
    logit is 0.
  - TPU (Mosaic) tiling rules are provided but untested.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

from zoo.checks import check_array, check_choice, check_range, is_traced

from ._common import (
    cdiv,
    default_interpret,
    kernel_target,
    next_pow2,
    pow2_tile,
    prev_pow2,
    round_up,
)

__all__ = ["Plan", "fused_logprob", "fused_logprob_reference", "plan"]

_NEG = -1e30  # initial running max: finite, so exp(m - m') and s (m - m') never see inf - inf


# ------------------------------------------------------------------------------------ reference


def _acc_dtype(*dtypes) -> jnp.dtype:
    """f32 accumulation, f64 for f64 inputs."""
    return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)


def fused_logprob_reference(h: jax.Array, w: jax.Array, targets: jax.Array, *, return_entropy: bool = True):
    """Pure-jnp log p(target) and entropy; materialises the [M, V] logits.

    Args:
      h: f[M, d] hidden states.  w: f[d, V] unembedding.  targets: int[M] in [0, V).
      return_entropy: also return the entropy.
    Returns:
      logp: f32[M] = log_softmax(h w)[i, t_i]; and, if ``return_entropy``, entropy f32[M] =
      -sum_v p log p (float64 for float64 inputs).
    """
    acc = _acc_dtype(h.dtype, w.dtype)
    logits = jnp.dot(h, w, preferred_element_type=acc).astype(acc)
    logz = jax.nn.log_softmax(logits, axis=-1)
    logp = jnp.take_along_axis(logz, targets.astype(jnp.int32)[:, None], axis=1)[:, 0]
    if not return_entropy:
        return logp
    return logp, -jnp.sum(jnp.exp(logz) * logz, axis=-1)


# ------------------------------------------------------------------------------------ planning


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """Static tiling of one call (all Python ints; hashable, so it is a static argument)."""

    target: str  # "interpret" | "triton" | "mosaic"
    m: int
    v: int
    d: int
    block_m: int  # rows per program
    block_v: int  # vocabulary columns per logit tile
    block_d: int  # contraction chunk of the logit GEMM
    splits: int  # V splits in the forward grid (partials merged in the wrapper)
    chunk_v: int  # backward: vocabulary columns of dz held at once (a multiple of block_v)
    m_pad: int
    v_pad: int
    d_pad: int

    @property
    def m_tiles(self) -> int:
        return self.m_pad // self.block_m

    @property
    def v_tiles(self) -> int:
        return self.v_pad // self.block_v

    @property
    def d_chunks(self) -> int:
        return self.d_pad // self.block_d

    @property
    def tiles_per_split(self) -> int:
        return cdiv(self.v_tiles, self.splits)

    @property
    def chunk_tiles(self) -> int:
        return self.chunk_v // self.block_v

    def workspace_bytes(self, itemsize: int = 4, *, backward: bool = False) -> int:
        """Temporary bytes beyond inputs/outputs: padded copies, per-split partials, one dz chunk."""
        extra = 0
        if (self.m_pad, self.d_pad) != (self.m, self.d):
            extra += self.m_pad * self.d_pad * itemsize  # padded h
        if (self.v_pad, self.d_pad) != (self.v, self.d):
            extra += self.d_pad * self.v_pad * itemsize  # padded w
        extra += 4 * self.m_pad * self.splits * 4 + 4 * self.m_pad  # partials, targets
        if backward:
            extra += self.m_pad * self.chunk_v * itemsize + self.m_pad * self.d_pad * 4  # dz chunk, dh acc
        return extra


def plan(
    m: int,
    v: int,
    d: int,
    *,
    block_m: int = 128,
    block_v: int = 128,
    block_d: int = 64,
    splits: int | None = None,
    chunk_v: int = 16384,
    target: str = "interpret",
) -> Plan:
    """Choose tiles and padding for an (M, V, d) problem on ``target``.

    Triton: power-of-two tiles >= 16 (its ``tl.dot`` minimum); bv and bd are the largest powers of
    two <= the request that divide V and d (no padded copy of w), else V / d are padded. Default
    ``splits`` gives >= 256 programs (two waves of an H100's 132 SMs). Interpret: tiles clipped to
    the problem, ``splits`` defaults to 1. Mosaic (TPU, untested): 8-row and 128-lane multiples.
    """
    check_choice("target", target, ("interpret", "triton", "mosaic"))
    if target == "triton":
        bm = min(max(16, prev_pow2(block_m)), max(16, next_pow2(m)))
        bv = min(pow2_tile(v, block_v), max(16, next_pow2(v)))
        bd = min(pow2_tile(d, block_d), max(16, next_pow2(d)))
    elif target == "mosaic":
        bm = round_up(min(block_m, round_up(m, 8)), 8)
        bv = round_up(min(block_v, round_up(v, 128)), 128)
        bd = round_up(min(block_d, round_up(d, 128)), 128)
    else:
        bm = min(block_m, round_up(m, 8))
        bv = min(block_v, round_up(v, 8))
        bd = min(block_d, d)
    m_pad, v_pad, d_pad = round_up(m, bm), round_up(v, bv), round_up(d, bd)
    v_tiles = v_pad // bv
    if splits is None:
        splits = 1 if target == "interpret" else max(1, min(v_tiles, cdiv(256, m_pad // bm)))
    splits = max(1, min(int(splits), v_tiles))
    chunk = min(round_up(max(chunk_v, bv), bv), v_pad)
    return Plan(
        target=target, m=m, v=v, d=d, block_m=bm, block_v=bv, block_d=bd, splits=splits, chunk_v=chunk,
        m_pad=m_pad, v_pad=v_pad, d_pad=d_pad,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ kernels


def _logit_tile(h_ref, w_ref, col, *, p: Plan, acc):
    """z = h_tile @ w[:, col:col + bv]: f32[bm, bv], accumulated over d-chunks of bd."""
    dims = (((1,), (0,)), ((), ()))

    def chunk(c, z):
        off = pl.multiple_of(c * p.block_d, p.block_d)
        hc = h_ref[:, pl.ds(off, p.block_d)]
        wc = w_ref[pl.ds(off, p.block_d), pl.ds(col, p.block_v)]
        return z + lax.dot_general(hc, wc, dims, preferred_element_type=acc).astype(acc)

    z0 = jnp.zeros((p.block_m, p.block_v), acc)
    if p.d_chunks == 1:
        return chunk(0, z0)
    return lax.fori_loop(0, p.d_chunks, chunk, z0)


def _forward_kernel(h_ref, w_ref, t_ref, m_ref, s_ref, u_ref, g_ref, *, p: Plan, acc):
    """One (row tile, V split). Refs: h [bm, d_pad], w [d_pad, V_pad] (whole), targets i32[bm, 1];
    outputs m, s, u, g: [bm, 1] each (this split's running max, sum-exp, sum e(z - m), target logit)."""
    split = pl.program_id(1)
    tgt = t_ref[...]  # [bm, 1]

    def v_step(k, carry):
        m, s, u, g = carry
        tile = split * p.tiles_per_split + k
        col = pl.multiple_of(jnp.minimum(tile, p.v_tiles - 1) * p.block_v, p.block_v)  # clamp: stay in bounds
        z = _logit_tile(h_ref, w_ref, col, p=p, acc=acc)
        cols = tile * p.block_v + lax.broadcasted_iota(jnp.int32, (1, p.block_v), 1)
        valid = cols < p.v  # padded vocabulary and tiles past the end of the split are -inf
        zm = jnp.where(valid, z, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(zm, axis=1, keepdims=True))
        alpha = jnp.exp(m - m_new)
        e = jnp.exp(zm - m_new)  # 0 where masked
        zc = jnp.where(valid, z - m_new, 0.0)
        u = alpha * (u + s * (m - m_new)) + jnp.sum(e * zc, axis=1, keepdims=True)
        s = alpha * s + jnp.sum(e, axis=1, keepdims=True)
        g = g + jnp.sum(jnp.where(cols == tgt, z, 0.0), axis=1, keepdims=True)
        return m_new, s, u, g

    zero = jnp.zeros((p.block_m, 1), acc)
    init = (jnp.full((p.block_m, 1), _NEG, acc), zero, zero, zero)
    m, s, u, g = lax.fori_loop(0, p.tiles_per_split, v_step, init)
    m_ref[...], s_ref[...], u_ref[...], g_ref[...] = m, s, u, g


def _dz_kernel(h_ref, w_ref, t_ref, lse_ref, ent_ref, gl_ref, ge_ref, dz_ref, *, p: Plan, acc, first_tile: int):
    """One (row tile, vocabulary tile) of dz = g 1_t - p (g + e (log p + H)). Refs: h [bm, d_pad],
    w [d_pad, bv] (this tile), targets / lse / H / g / e: [bm, 1]; output dz [bm, bv]."""
    z = _logit_tile(h_ref, w_ref, 0, p=p, acc=acc)
    tile = first_tile + pl.program_id(1)
    cols = tile * p.block_v + lax.broadcasted_iota(jnp.int32, (1, p.block_v), 1)
    valid = cols < p.v
    logq = jnp.where(valid, z - lse_ref[...], 0.0)  # log p
    prob = jnp.where(valid, jnp.exp(logq), 0.0)
    gl = gl_ref[...]
    dz = jnp.where(cols == t_ref[...], gl, 0.0) - prob * (gl + ge_ref[...] * (logq + ent_ref[...]))
    dz_ref[...] = dz.astype(dz_ref.dtype)


def _compiler_params(p: Plan, *, interpret: bool):
    """Triton launch settings (only for compiled GPU calls)."""
    if interpret or p.target != "triton":
        return None
    from jax.experimental.pallas import triton as plgpu  # GPU-only import

    num_warps = 8 if p.block_m * p.block_v >= 128 * 128 else 4
    return plgpu.CompilerParams(num_warps=num_warps, num_stages=3)


def _pad_inputs(h, w, targets, p: Plan):
    dtype = jnp.result_type(h, w)
    hp = jnp.pad(h.astype(dtype), ((0, p.m_pad - p.m), (0, p.d_pad - p.d)))
    wp = jnp.pad(w.astype(dtype), ((0, p.d_pad - p.d), (0, p.v_pad - p.v)))
    tp = jnp.pad(targets.astype(jnp.int32), (0, p.m_pad - p.m))[:, None]
    return hp, wp, tp


def _forward(h, w, targets, p: Plan, interpret: bool):
    """-> (logp, entropy, lse), each acc[M]."""
    acc = _acc_dtype(h.dtype, w.dtype)
    hp, wp, tp = _pad_inputs(h, w, targets, p)
    row = pl.BlockSpec((p.block_m, 1), lambda i, s: (i, 0))
    part = pl.BlockSpec((p.block_m, 1), lambda i, s: (i, s))
    stats = pl.pallas_call(
        functools.partial(_forward_kernel, p=p, acc=acc),
        out_shape=[jax.ShapeDtypeStruct((p.m_pad, p.splits), acc)] * 4,
        grid=(p.m_tiles, p.splits),
        in_specs=[
            pl.BlockSpec((p.block_m, p.d_pad), lambda i, s: (i, 0)),
            pl.BlockSpec((p.d_pad, p.v_pad), lambda i, s: (0, 0)),
            row,
        ],
        out_specs=[part] * 4,
        interpret=interpret,
        compiler_params=_compiler_params(p, interpret=interpret),
        name="fused_logprob_fwd",
    )(hp, wp, tp)
    m, s, u, g = (a[: p.m] for a in stats)
    # merge the V splits: rescale each split's partials to the global max
    mx = jnp.max(m, axis=1, keepdims=True)
    a = jnp.exp(m - mx)
    ssum = jnp.sum(a * s, axis=1)
    usum = jnp.sum(a * (u + s * (m - mx)), axis=1)
    log_s = jnp.log(ssum)
    lse = mx[:, 0] + log_s
    return jnp.sum(g, axis=1) - lse, log_s - usum / ssum, lse


def _backward(h, w, targets, lse, ent, g_logp, g_ent, p: Plan, interpret: bool):
    """-> (dh, dw) by V chunks: Pallas dz chunk [M_pad, chunk_v], then dh += dz w_c^T, dw_c = h^T dz."""
    acc = _acc_dtype(h.dtype, w.dtype)
    dz_dtype = jnp.result_type(h, w)
    hp, wp, tp = _pad_inputs(h, w, targets, p)
    col = lambda a: jnp.pad(a.astype(acc), (0, p.m_pad - p.m))[:, None]  # noqa: E731
    rows = [tp, col(lse), col(ent), col(g_logp), col(g_ent)]  # padded rows: zero cotangents -> dz = 0
    row = pl.BlockSpec((p.block_m, 1), lambda i, j: (i, 0))
    dh = jnp.zeros((p.m_pad, p.d_pad), acc)
    dws = []
    for first in range(0, p.v_tiles, p.chunk_tiles):
        n_tiles = min(p.chunk_tiles, p.v_tiles - first)
        dz = pl.pallas_call(
            functools.partial(_dz_kernel, p=p, acc=acc, first_tile=first),
            out_shape=jax.ShapeDtypeStruct((p.m_pad, n_tiles * p.block_v), dz_dtype),
            grid=(p.m_tiles, n_tiles),
            in_specs=[
                pl.BlockSpec((p.block_m, p.d_pad), lambda i, j: (i, 0)),
                pl.BlockSpec((p.d_pad, p.block_v), lambda i, j, f=first: (0, j + f)),
                *([row] * 5),
            ],
            out_specs=pl.BlockSpec((p.block_m, p.block_v), lambda i, j: (i, j)),
            interpret=interpret,
            compiler_params=_compiler_params(p, interpret=interpret),
            name="fused_logprob_dz",
        )(hp, wp, *rows)
        wc = lax.slice_in_dim(wp, first * p.block_v, (first + n_tiles) * p.block_v, axis=1)
        dh = dh + lax.dot_general(dz, wc, (((1,), (1,)), ((), ())), preferred_element_type=acc).astype(acc)
        dws.append(lax.dot_general(hp, dz, (((0,), (0,)), ((), ())), preferred_element_type=acc).astype(acc))
    dw = dws[0] if len(dws) == 1 else jnp.concatenate(dws, axis=1)
    return dh[: p.m, : p.d].astype(h.dtype), dw[: p.d, : p.v].astype(w.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _core(h, w, targets, p: Plan, interpret: bool):
    logp, ent, _ = _forward(h, w, targets, p, interpret)
    return logp, ent


def _core_fwd(h, w, targets, p, interpret):
    logp, ent, lse = _forward(h, w, targets, p, interpret)
    return (logp, ent), (h, w, targets, lse, ent)


def _core_bwd(p, interpret, res, cts):
    h, w, targets, lse, ent = res
    g_logp, g_ent = cts
    dh, dw = _backward(h, w, targets, lse, ent, g_logp, g_ent, p, interpret)
    return dh, dw, None


_core.defvjp(_core_fwd, _core_bwd)
_core_jit = jax.jit(_core, static_argnums=(3, 4))


# ------------------------------------------------------------------------------------ public API


def _as_array(a):
    return a if hasattr(a, "shape") else np.asarray(a)


def _validate(h, w, targets, blocks: dict, splits, chunk_v, interpret, return_entropy) -> None:
    check_array("h", h, kind="f", ndim=2, min_size=1)
    check_range("h.shape[1] (d)", h.shape[1], low=1)
    check_array("w", w, kind="f", ndim=2)
    check_array("w", w, shape=(h.shape[1], None), finite=False)
    check_range("w.shape[1] (V)", w.shape[1], low=1)
    check_array("targets", targets, ndim=1, kind="iu", finite=False)
    check_array("targets", targets, shape=(h.shape[0],), finite=False)
    if not is_traced(targets):
        t = np.asarray(targets)
        bad = (t < 0) | (t >= w.shape[1])
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"targets: expected token ids in [0, {w.shape[1]}) (V = w.shape[1]), got {int(t[i])} at index {i}"
            )
    for name, b in blocks.items():
        if isinstance(b, bool) or not isinstance(b, int):
            raise ValueError(f"{name}: expected a positive int, got {b!r}")
        check_range(name, b, low=1)
    if splits is not None:
        if isinstance(splits, bool) or not isinstance(splits, int):
            raise ValueError(f"splits: expected None or a positive int, got {splits!r}")
        check_range("splits", splits, low=1)
    check_choice("interpret", interpret, (None, True, False))
    check_choice("return_entropy", return_entropy, (True, False))


def fused_logprob(
    h: jax.Array,
    w: jax.Array,
    targets: jax.Array,
    *,
    block_m: int = 128,
    block_v: int = 128,
    block_d: int = 64,
    splits: int | None = None,
    chunk_v: int = 16384,
    interpret: bool | None = None,
    return_entropy: bool = True,
):
    """Per-token log p(target) and entropy of softmax(h @ w), never materialising the [M, V] logits.

    Same values as ``fused_logprob_reference``; differentiable w.r.t. ``h`` and ``w`` (custom VJP that
    recomputes logit tiles; see the module docstring), under ``jit``, ``vmap`` (batched by XLA) and
    ``grad``.

    Args:
      h: f32|bf16[M, d] hidden states (finite).
      w: f32|bf16[d, V] unembedding (finite).
      targets: int[M] token ids in [0, V).
      block_m, block_v, block_d: tile sizes (rows, vocabulary columns, contraction chunk), clipped to
        the problem; powers of two >= 16 on GPU.
      splits: V splits of the forward grid (None: enough programs to fill a GPU; 1 on CPU).
      chunk_v: backward: vocabulary columns of dz held at once ([M, chunk_v] in the input dtype).
      interpret: None -> Pallas interpreter on CPU, compiled kernel on GPU/TPU.
      return_entropy: if False return only ``logp``.
    Returns:
      (logp f32[M], entropy f32[M]) (float64 for float64 inputs), or ``logp`` alone.
    """
    h, w, targets = _as_array(h), _as_array(w), _as_array(targets)
    blocks = dict(block_m=block_m, block_v=block_v, block_d=block_d, chunk_v=chunk_v)
    _validate(h, w, targets, blocks, splits, chunk_v, interpret, return_entropy)
    interp = default_interpret(interpret)
    (m, d), v = h.shape, w.shape[1]
    p = plan(
        m, v, d, block_m=block_m, block_v=block_v, block_d=block_d, splits=splits, chunk_v=chunk_v,
        target=kernel_target(interp),
    )  # fmt: skip
    logp, ent = _core_jit(jnp.asarray(h), jnp.asarray(w), jnp.asarray(targets), p, interp)
    return (logp, ent) if return_entropy else logp
