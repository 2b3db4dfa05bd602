"""Dequantize-and-matmul for packed int4 / int8 weights (the PTQ family's inference kernel) in Pallas.

Math (x: f[M, K] activations; W: [K, N] in the Flax ``Dense`` layout, stored as integer codes q with
scales s and integer zero points z, ``_quantization_family.md`` §1, §6, §7):

    W_kn = s_{grp(k, n)} (q_kn - z_{grp(k, n)}),      y = x W (+ b): [M, N]

Groups (``group_axis``, ``group_size`` g):
  "oc" — g consecutive rows (input channels) of one column share (s, z): scales [K/g, N]
         (g = None: one per output channel, [1, N]; g = 128: GPTQ/AWQ "group-wise").
  "ic" — g consecutive columns of one row share (s, z): scales [K, N/g] (g = None: [K, 1]).

Packing (§6; the contract with ``zoo.quant.core``):
  bits = 4, ``qweight: u32|i32[K/8, N]`` — AutoGPTQ layout: row k = 8r + j is word r, bits [4j, 4j + 4);
  bits = 4, ``qweight: u8[K/2, N]``      — row k = 2r + j is byte r, bits [4j, 4j + 4);
  bits = 8, ``qweight: u8|i8[K, N]``     — one code per byte.
  Codes are unsigned fields (``signed=False``, asymmetric, q in [0, 2^b - 1]) or two's-complement
  (``signed=True``, symmetric, q in [-2^(b-1), 2^(b-1) - 1], usually with ``zeros=None`` = 0).
  Zero points are stored as they are (no AutoGPTQ v1 "z - 1").

Functions:
  ``unpack_codes``              packed words -> i32[K, N] codes (jnp).
  ``dequantize_reference``      codes, scales, zeros -> f32[K, N] (jnp; ``dequantize_linear`` of §6).
  ``dequant_matmul_reference``  ``(x.astype(f32) @ dequantize_reference(...) + b).astype(x.dtype)``.
  ``dequant_matmul``            the Pallas kernel (dequantize inside each K tile, never a dense W).
  ``plan``                      the tiling a call will use.

Kernel (grid = (M tiles, N tiles, K splits)): each program keeps an f32 accumulator [bm, bn] and loops
over its K tiles: load x[bm, bk] and the packed tile [bk / pack, bn]; unpack by repeating each word
row ``pack`` times (broadcast + reshape, the AutoGPTQ Triton trick) and shifting row k by 4 (k mod
pack); then
  "oc": acc += (x (q - z)) * s   with one (s, z) row per tile (bk divides g): q - z is an integer,
        exact in bf16, so the dot sees exact weights and the scale is applied in f32 afterwards;
  "ic": acc += x ((q - z) s)     with one (s, z) column per tile (bn divides g), dequantized in f32
        and cast to the input dtype (as the reference's bf16 path would).
M = 1 (decode) uses a broadcast-multiply-reduce instead of a dot (Triton's dot needs M >= 16), so
x is not padded. With few output tiles (decode) the K loop is split over ``split_k`` programs whose
f32 partials are summed in the wrapper in a fixed order (no atomics).

Choices that are ours:
  - Tiles divide the problem where the layout forces it: bk | K, bk | g (oc), bn | g (ic); on Triton
    they must be powers of two >= 16, and a shape that admits none raises ``ValueError`` (every LLM
    layer has K, N, g multiples of 16). N (oc) and M are padded in the wrapper when no tile divides
    them (a padded copy of the weight: the plan's ``n_pad``).
  - Accumulation in f32; bias added in f32; output in x's dtype. On GPU f32 inputs use the default
    f32 dot precision (TF32), like the jitted reference.
  - Zero points must hold integers (they are subtracted from integer codes in the compute dtype).
  - TPU (Mosaic) tiling is not provided: the Triton rules are used and it is untested.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

from zoo.checks import check_array, check_choice, check_range

from ._common import (
    cdiv,
    default_interpret,
    divisor_tile,
    kernel_target,
    next_pow2,
    pow2_tile,
    round_up,
    tree_sum,
)

__all__ = [
    "Plan",
    "dequant_matmul",
    "dequant_matmul_reference",
    "dequantize_reference",
    "packing_of",
    "plan",
    "unpack_codes",
]


# ------------------------------------------------------------------------------------ layout


def packing_of(qweight_dtype, bits: int) -> int:
    """Codes per stored element: 8 (u32/i32 words, 4-bit), 2 (u8, 4-bit) or 1 (u8/i8, 8-bit); 0 if invalid."""
    dt = np.dtype(qweight_dtype)
    if bits == 4:
        return {np.dtype(np.uint32): 8, np.dtype(np.int32): 8, np.dtype(np.uint8): 2}.get(dt, 0)
    if bits == 8:
        return 1 if dt in (np.dtype(np.uint8), np.dtype(np.int8)) else 0
    return 0


def _group(group_axis: str, group_size: int | None, k: int, n: int) -> int:
    """The effective group size g (None -> the whole grouped axis)."""
    return group_size or (k if group_axis == "oc" else n)


def _qparam_shape(group_axis: str, g: int, k: int, n: int) -> tuple[int, int]:
    return (k // g, n) if group_axis == "oc" else (k, n // g)


def _sign_extend(q: jax.Array, bits: int) -> jax.Array:
    """Two's-complement field of ``bits`` bits (in an int32 holding 0..2^bits-1) -> signed int32."""
    half = 1 << (bits - 1)
    return jnp.where(q >= half, q - 2 * half, q)


def unpack_codes(qweight: jax.Array, *, bits: int, signed: bool = False) -> jax.Array:
    """Packed ``qweight`` -> i32[K, N] codes (layouts in the module docstring).

    Args:
      qweight: u32|i32[K/8, N] or u8[K/2, N] (bits = 4), u8|i8[K, N] (bits = 8).
      bits: 4 or 8.  signed: fields are two's-complement.
    """
    pack = packing_of(qweight.dtype, bits)
    if pack == 1:
        q = qweight.astype(jnp.int32)
        return _sign_extend(q & 0xFF, 8) if signed else q & 0xFF
    words = qweight
    if words.dtype == jnp.int32:
        words = lax.bitcast_convert_type(words, jnp.uint32)
    shifts = (4 * jnp.arange(pack, dtype=words.dtype))[None, :, None]
    q = ((words[:, None, :] >> shifts) & 0xF).astype(jnp.int32)  # [K/pack, pack, N]: row pack*r + j
    q = q.reshape(-1, words.shape[1])
    return _sign_extend(q, 4) if signed else q


def dequantize_reference(
    qweight: jax.Array,
    scales: jax.Array,
    zeros: jax.Array | None = None,
    *,
    bits: int,
    group_size: int | None = None,
    group_axis: str = "oc",
    signed: bool = False,
) -> jax.Array:
    """W = s (q - z) expanded to f32[K, N] (``jnp.repeat`` of the grouped qparams along their axis)."""
    q = unpack_codes(qweight, bits=bits, signed=signed).astype(jnp.float32)
    k, n = q.shape
    g = _group(group_axis, group_size, k, n)
    axis = 0 if group_axis == "oc" else 1
    s = jnp.repeat(scales.astype(jnp.float32), g, axis=axis)
    z = 0.0 if zeros is None else jnp.repeat(zeros.astype(jnp.float32), g, axis=axis)
    return s * (q - z)


def dequant_matmul_reference(
    x: jax.Array,
    qweight: jax.Array,
    scales: jax.Array,
    zeros: jax.Array | None = None,
    bias: jax.Array | None = None,
    *,
    bits: int,
    group_size: int | None = None,
    group_axis: str = "oc",
    signed: bool = False,
) -> jax.Array:
    """``(x.astype(f32) @ dequantize_reference(...) (+ b)).astype(x.dtype)``: x: f[M, K] -> [M, N]."""
    qkw = dict(bits=bits, group_size=group_size, group_axis=group_axis, signed=signed)
    w = dequantize_reference(qweight, scales, zeros, **qkw)
    y = jnp.dot(x.astype(jnp.float32), w)
    if bias is not None:
        y = y + bias.astype(jnp.float32)
    return y.astype(x.dtype)


# ------------------------------------------------------------------------------------ planning


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """Static tiling of one call (Python ints; hashable)."""

    target: str
    m: int
    n: int
    k: int
    pack: int  # codes per stored element
    group_axis: str
    group: int  # effective group size g
    block_m: int
    block_n: int
    block_k: int
    split_k: int
    m_pad: int
    n_pad: int

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.m_pad // self.block_m, self.n_pad // self.block_n, self.split_k)

    @property
    def k_tiles_per_split(self) -> int:
        return self.k // self.block_k // self.split_k

    @property
    def use_dot(self) -> bool:
        """Dot (M tile >= 16, Triton's minimum) or broadcast-multiply-reduce (M = 1 decode)."""
        return self.block_m >= 16

    def weight_bytes(self, *, bits: int, scale_itemsize: int = 2, has_zeros: bool = True) -> int:
        """Bytes of packed codes + scales (+ zeros, u8) the kernel streams once."""
        g = self.group
        nq = (self.k // g) * self.n if self.group_axis == "oc" else self.k * (self.n // g)
        return self.k * self.n * bits // 8 + nq * scale_itemsize + (nq if has_zeros else 0)


def plan(
    m: int,
    n: int,
    k: int,
    *,
    bits: int = 4,
    pack: int = 8,
    group_size: int | None = None,
    group_axis: str = "oc",
    block_m: int | None = None,
    block_n: int | None = None,
    block_k: int = 128,
    split_k: int | None = None,
    target: str = "interpret",
) -> Plan:
    """Tiles for an (M, N, K) problem; raises ``ValueError`` when the layout admits no tile on ``target``.

    bk divides K and (oc) g, and is a multiple of ``pack``; bn divides g (ic) or N is padded (oc).
    Triton: powers of two >= 16; bm = 1 for M = 1, else min(128, max(16, next_pow2(M))) unless given;
    default ``split_k`` aims at >= 128 programs; ``split_k`` is lowered to a divisor of the K tile count.
    Triton at M <= 16 (decode; memory-bound): default bn = 64 and >= 512 programs — on H200s this gave
    1.84x / 1.50x and, on another machine, 1.60x / 1.29x over XLA at M = 1 / 16 (K = N = 4096, int4),
    against 1.31x / 1.20x with bn = 128 and >= 128 programs (docs/benchmarks.md). Otherwise bn = 128.
    Interpret: any divisor; ``split_k`` defaults to 1.
    """
    check_choice("target", target, ("interpret", "triton", "mosaic"))
    check_choice("bits", bits, (4, 8))
    check_choice("group_axis", group_axis, ("oc", "ic"))
    g = _group(group_axis, group_size, k, n)
    pow2 = target != "interpret"
    decode = pow2 and m <= 16
    if block_n is None:
        block_n = 64 if decode else 128
    k_extent = g if group_axis == "oc" else k  # bk must divide this (g | K for oc)
    if pow2:
        bk = pow2_tile(k_extent, block_k)
        if k_extent % bk or bk % pack:
            what = "group_size" if group_axis == "oc" and group_size else "K"
            raise ValueError(
                f"{what}: {k_extent} has no power-of-two K tile >= 16 (needed by the {target} kernel); "
                "use K and group sizes that are multiples of 16"
            )
    else:
        bk = divisor_tile(k_extent, max(block_k, pack), multiple_of=pack)
        if bk is None:  # pragma: no cover - K % pack == 0 is validated first
            raise ValueError(f"K: {k} has no tile that is a multiple of {pack}")
    if group_axis == "ic":
        if pow2:
            bn = pow2_tile(g, block_n)
            if g % bn:
                raise ValueError(f"group_size: {g} has no power-of-two N tile >= 16 (needed by the {target} kernel)")
        else:
            bn = divisor_tile(g, block_n)
    else:
        bn = min(pow2_tile(n, block_n), max(16, next_pow2(n))) if pow2 else min(block_n, n)
    n_pad = round_up(n, bn)
    if block_m is None:
        bm = 1 if m == 1 else min(128, max(16, next_pow2(m)))
        bm = bm if pow2 else min(bm, round_up(m, 8))
    else:
        bm = block_m if not pow2 else (1 if block_m == 1 and m == 1 else max(16, 1 << (int(block_m).bit_length() - 1)))
    m_pad = round_up(m, bm)
    k_tiles = k // bk
    if split_k is None:
        tiles = (m_pad // bm) * (n_pad // bn)
        split_k = 1 if not pow2 else max(1, cdiv(512 if decode else 128, tiles))
    split_k = max(s for s in range(1, k_tiles + 1) if k_tiles % s == 0 and s <= split_k)  # a divisor of the K tiles
    return Plan(
        target=target, m=m, n=n, k=k, pack=pack, group_axis=group_axis, group=g, block_m=bm, block_n=bn,
        block_k=bk, split_k=split_k, m_pad=m_pad, n_pad=n_pad,
    )  # fmt: skip


# ------------------------------------------------------------------------------------ kernel


def _unpack_tile(qw: jax.Array, *, pack: int, bits: int, signed: bool) -> jax.Array:
    """Packed tile [bk / pack, bn] -> i32[bk, bn] codes, in ops Triton lowers (broadcast, reshape, shifts)."""
    q = qw.astype(jnp.int32)
    if pack == 1:
        q = q & 0xFF  # u8 zero-extends already; i8 is re-read as its unsigned field
        return _sign_extend(q, 8) if signed else q
    rows, bn = qw.shape
    q = lax.broadcast_in_dim(q, (rows, pack, bn), (0, 2)).reshape(rows * pack, bn)  # row pack*r + j <- word r
    shift = (lax.broadcasted_iota(jnp.int32, (rows * pack, 1), 0) & (pack - 1)) * 4
    q = lax.shift_right_logical(q, shift) & 0xF
    return _sign_extend(q, 4) if signed else q


def _kernel(*refs, p: Plan, bits: int, signed: bool, has_zeros: bool, has_bias: bool, cdt):
    """Refs: x [bm, K], q [K/pack, bn], s (oc [K/g, bn] | ic [K, 1]), [z like s], [b [1, bn]], out [bm, bn]."""
    x_ref, q_ref, s_ref, *rest = refs
    z_ref = rest.pop(0) if has_zeros else None
    b_ref = rest.pop(0) if has_bias else None
    (o_ref,) = rest
    split = pl.program_id(2)
    bk, kq = p.block_k, p.block_k // p.pack

    def mm(a, b):
        if p.use_dot:
            return lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)
        return jnp.sum(a.astype(jnp.float32)[:, :, None] * b.astype(jnp.float32)[None, :, :], axis=1)

    def k_step(kk, acc):
        kb = split * p.k_tiles_per_split + kk
        xt = x_ref[:, pl.ds(pl.multiple_of(kb * bk, bk), bk)]
        q = _unpack_tile(q_ref[pl.ds(pl.multiple_of(kb * kq, kq), kq), :], pack=p.pack, bits=bits, signed=signed)
        q = q.astype(jnp.float32)
        if p.group_axis == "oc":  # one (s, z) row per tile: scale after the dot
            r = lax.div(kb, p.group // bk)  # bk | g: tiles per group
            if z_ref is not None:
                q = q - z_ref[pl.ds(r, 1), :].astype(jnp.float32)
            return acc + mm(xt, q.astype(cdt)) * s_ref[pl.ds(r, 1), :].astype(jnp.float32)
        rows = pl.ds(pl.multiple_of(kb * bk, bk), bk)  # ic: one (s, z) column per tile, per-row values
        if z_ref is not None:
            q = q - z_ref[rows, :].astype(jnp.float32)
        return acc + mm(xt, (q * s_ref[rows, :].astype(jnp.float32)).astype(cdt))

    acc = lax.fori_loop(0, p.k_tiles_per_split, k_step, jnp.zeros((p.block_m, p.block_n), jnp.float32))
    if b_ref is not None:
        acc = acc + b_ref[...].astype(jnp.float32)
    o_ref[...] = acc.astype(o_ref.dtype)


def _compiler_params(p: Plan, interpret: bool):
    if interpret or p.target != "triton":
        return None
    from jax.experimental.pallas import triton as plgpu  # GPU-only import

    return plgpu.CompilerParams(num_warps=4, num_stages=3)


@functools.partial(jax.jit, static_argnames=("p", "bits", "signed", "interpret"))
def _fused(x, qweight, scales, zeros, bias, *, p: Plan, bits: int, signed: bool, interpret: bool):
    """Pad, run the kernel, reduce K splits, unpad. Shapes validated by the caller."""
    cdt = x.dtype
    if qweight.dtype == jnp.uint32:
        qweight = lax.bitcast_convert_type(qweight, jnp.int32)  # same bits; shifts are logical
    xp = jnp.pad(x, ((0, p.m_pad - p.m), (0, 0))) if p.m_pad != p.m else x
    dn = p.n_pad - p.n
    if dn:  # oc only (ic tiles divide N): pad the columns of the weight and its qparams
        qweight = jnp.pad(qweight, ((0, 0), (0, dn)))
        scales = jnp.pad(scales, ((0, 0), (0, dn)))
        zeros = None if zeros is None else jnp.pad(zeros, ((0, 0), (0, dn)))
        bias = None if bias is None else jnp.pad(bias, (0, dn))
    nq = p.k // p.pack
    bm, bn = p.block_m, p.block_n
    in_specs = [
        pl.BlockSpec((bm, p.k), lambda i, j, s: (i, 0)),
        pl.BlockSpec((nq, bn), lambda i, j, s: (0, j)),
    ]
    if p.group_axis == "oc":
        qp_spec = pl.BlockSpec((p.k // p.group, bn), lambda i, j, s: (0, j))
    else:
        per = p.group // bn  # N tiles per group
        qp_spec = pl.BlockSpec((p.k, 1), lambda i, j, s: (0, j // per))
    args = [xp, qweight, scales]
    in_specs.append(qp_spec)
    if zeros is not None:
        args.append(zeros)
        in_specs.append(qp_spec)
    fuse_bias = bias is not None and p.split_k == 1
    if fuse_bias:
        args.append(bias[None, :])
        in_specs.append(pl.BlockSpec((1, bn), lambda i, j, s: (0, j)))
    mt = p.m_pad // bm
    if p.split_k == 1:
        out_shape = jax.ShapeDtypeStruct((p.m_pad, p.n_pad), x.dtype)
        out_spec = pl.BlockSpec((bm, bn), lambda i, j, s: (i, j))
    else:  # f32 partials, one [M_pad, N_pad] slab per split
        out_shape = jax.ShapeDtypeStruct((p.split_k * p.m_pad, p.n_pad), jnp.float32)
        out_spec = pl.BlockSpec((bm, bn), lambda i, j, s: (s * mt + i, j))
    kernel = functools.partial(
        _kernel, p=p, bits=bits, signed=signed, has_zeros=zeros is not None, has_bias=fuse_bias, cdt=cdt
    )
    out = pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=p.grid,
        in_specs=in_specs,
        out_specs=out_spec,
        interpret=interpret,
        compiler_params=_compiler_params(p, interpret),
        name=f"dequant_matmul_int{bits}_{p.group_axis}",
    )(*args)
    if p.split_k > 1:
        out = tree_sum(out.reshape(p.split_k, p.m_pad, p.n_pad))
        if bias is not None:
            out = out + bias.astype(jnp.float32)[None, :]
        out = out.astype(x.dtype)
    return out[: p.m, : p.n]


# ------------------------------------------------------------------------------------ public API


def _as_array(a):
    return a if a is None or hasattr(a, "shape") else np.asarray(a)


def _validate(x, qweight, scales, zeros, bias, bits, group_size, group_axis, signed, interpret) -> int:
    """Boundary checks; returns the packing factor."""
    check_choice("bits", bits, (4, 8))
    check_choice("group_axis", group_axis, ("oc", "ic"))
    check_choice("signed", signed, (True, False))
    check_choice("interpret", interpret, (None, True, False))
    check_array("x", x, kind="f", ndim=2, min_size=1)
    m, k = x.shape
    check_range("x.shape[1] (K)", k, low=1)
    check_array("qweight", qweight, ndim=2, kind="iu", finite=False)
    pack = packing_of(qweight.dtype, bits)
    if pack == 0:
        want = "uint32/int32 [K/8, N] or uint8 [K/2, N]" if bits == 4 else "uint8/int8 [K, N]"
        raise ValueError(f"qweight: for bits={bits} expected {want}, got dtype {qweight.dtype}")
    if k % pack:
        raise ValueError(f"x.shape[1] (K): expected a multiple of {pack} for this packing, got {k}")
    n = qweight.shape[1]
    check_array("qweight", qweight, shape=(k // pack, None), finite=False)
    check_range("qweight.shape[1] (N)", n, low=1)
    if group_size is not None:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size: expected None or a positive int, got {group_size!r}")
        extent, name = (k, "K") if group_axis == "oc" else (n, "N")
        if extent % group_size:
            raise ValueError(
                f"group_size: expected a divisor of {name} = {extent} (group_axis={group_axis!r}), got {group_size}"
            )
    g = _group(group_axis, group_size, k, n)
    qshape = _qparam_shape(group_axis, g, k, n)
    check_array("scales", scales, kind="f", ndim=2)
    check_array("scales", scales, shape=qshape, finite=False)
    if zeros is not None:
        check_array("zeros", zeros, ndim=2, kind="iuf")
        check_array("zeros", zeros, shape=qshape, finite=False)
    if bias is not None:
        check_array("bias", bias, kind="f", shape=(n,))
    return pack


def dequant_matmul(
    x: jax.Array,
    qweight: jax.Array,
    scales: jax.Array,
    zeros: jax.Array | None = None,
    bias: jax.Array | None = None,
    *,
    bits: int,
    group_size: int | None = None,
    group_axis: str = "oc",
    signed: bool = False,
    block_m: int | None = None,
    block_n: int | None = None,
    block_k: int = 128,
    split_k: int | None = None,
    interpret: bool | None = None,
) -> jax.Array:
    """y = x dequant(qweight) (+ bias) with the dequantization fused into the GEMM's K loop.

    Same result as ``dequant_matmul_reference`` up to f32 accumulation order (and, for bf16 inputs,
    the rounding of x and of ic-grouped dequantized weights to bf16).

    Args:
      x: bf16|f16|f32[M, K] activations.
      qweight: packed codes (module docstring): u32|i32[K/8, N] or u8[K/2, N] (bits=4), u8|i8[K, N] (bits=8).
      scales: f[K/g, N] ("oc") or f[K, N/g] ("ic"), any float dtype.
      zeros: integer zero points, same shape as ``scales`` (None: 0, e.g. symmetric codes).
      bias: optional f[N].
      bits: 4 or 8 (static).
      group_size: g; None = the whole grouped axis (per output channel for "oc"); must divide it.
      group_axis: "oc" (groups of input channels per output column) or "ic" (groups of output columns).
      signed: codes are two's-complement fields.
      block_m, block_n, block_k, split_k: tiling (see ``plan``); None = chosen by the problem.
      interpret: None -> Pallas interpreter on CPU, compiled kernel on GPU.
    Returns:
      y: [M, N] in x's dtype.
    """
    x, qweight, scales, zeros, bias = map(_as_array, (x, qweight, scales, zeros, bias))
    pack = _validate(x, qweight, scales, zeros, bias, bits, group_size, group_axis, signed, interpret)
    for name, b in (("block_n", block_n), ("block_k", block_k), ("block_m", block_m), ("split_k", split_k)):
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise ValueError(f"{name}: expected a positive int, got {b!r}")
    interp = default_interpret(interpret)
    (m, k), n = x.shape, qweight.shape[1]
    p = plan(
        m, n, k, bits=bits, pack=pack, group_size=group_size, group_axis=group_axis, block_m=block_m,
        block_n=block_n, block_k=block_k, split_k=split_k, target=kernel_target(interp),
    )  # fmt: skip
    arrs = [None if a is None else jnp.asarray(a) for a in (x, qweight, scales, zeros, bias)]
    return _fused(*arrs, p=p, bits=bits, signed=signed, interpret=interp)
