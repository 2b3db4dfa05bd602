"""Fused k-means assignment and Lloyd accumulation (PPP's hot loop) as Pallas kernels.

Math (x: f[N, D] points, c: f[K, D] centroids, optional mask: bool[N]):

    d2_ik    = ||x_i||^2 - 2 x_i . c_k + ||c_k||^2                       (GEMM + two norms)
    labels_i = argmin_k d2_ik   (ties -> lowest k)                        (row-wise reduction)
    d2_i     = max(min_k d2_ik, 0)                                        (clamped squared distance)
    sums_k   = sum_{i: labels_i = k} x_i,   counts_k = #{i: labels_i = k}  (Lloyd update, Eq. of ppp.md §4)

Rows with ``mask`` False get label -1, d2 0, and contribute to no sum or count.

Functions:
  ``assign_reference``            labels, d2 in jnp (materialises the N x K matrix).
  ``assign``                      the same as a Pallas kernel that never materialises N x K.
  ``assign_accumulate_reference`` labels, d2, sums, counts in jnp (segment sums).
  ``assign_accumulate``           the same with the Lloyd sums fused into the assignment kernel.
  ``plan``                        the block sizes / padding a call will use (for benchmarks).

Kernel (one program per row tile of ``bn`` rows; grid = N_pad / bn):
  1. load the x tile [bn, D_pad] once; ||x||^2 per row;
  2. ``fori_loop`` over K tiles of ``bk`` centroids: S = x_tile c_tile^T, d = ||x||^2 - 2 S + ||c||^2,
     tile (min, argmin) and an online update of the running (min, argmin) per row — like
     flash-attention's running max, so only [bn, bk] distances ever exist;
  3. (accumulate) with the argmin final, a second loop over K tiles builds one-hot [bn, bk] and writes
     this tile's partial ``onehot^T x_tile`` [bk, D] and counts [bk]; the wrapper sums the per-tile
     partials in a fixed pairwise order (``_common.tree_sum``): no atomics, bit-reproducible.

Choices that are ours:
  - Padding is done in the wrapper: N to a multiple of ``bn`` (padded rows are masked out), K to a
    multiple of ``bk`` (padded centroids get ||c||^2 = +inf, so they never win), D as the backend needs
    (Triton: a power of two >= 16; zero columns change no distance).
  - Block sizes are clipped to the padded problem, and on Triton rounded down to powers of two >= 16.
  - Inputs are computed in ``promote_types(dtype, float32)`` (f16 inputs are computed in f32).
  - The one-hot GEMM of the accumulate step splits f32 x into three bf16 pieces (x = b1 + b2 + b3
    exactly) and runs three GEMMs with f32 accumulation: the one-hot is exact in bf16, so the sums keep
    f32 accuracy while using bf16 tensor cores on GPU (a plain TF32 GEMM would round x to 10 bits).
  - On GPU the distance GEMM uses the backend's default f32 precision (TF32 on Ampere+), like the
    jitted jnp reference does.
  - Eager calls validate values on the host (NaN/inf scan of x and c); under ``jit`` only shapes are
    checked (see ``zoo.checks``), so wrap hot loops in ``jit``.
TPU (Mosaic) lowering is untested.
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

from ._common import default_interpret, kernel_target, next_pow2, prev_pow2, round_up, tree_sum

__all__ = [
    "MAX_ACCUMULATE_K",
    "Plan",
    "assign",
    "assign_accumulate",
    "assign_accumulate_reference",
    "assign_reference",
    "plan",
]

#: Largest K that ``assign_accumulate`` supports (its per-tile partial sums are [K, D] per row tile).
MAX_ACCUMULATE_K = 1024

_BIG_INDEX = 2**30  # larger than any centroid index: loses every min


# ------------------------------------------------------------------------------------ references


def assign_reference(x: jax.Array, c: jax.Array, mask: jax.Array | None = None):
    """Pure-jnp nearest-centroid assignment; materialises the N x K distance matrix.

    Args:
      x: f[N, D] points.  c: f[K, D] centroids.  mask: optional bool[N]; False rows -> label -1.
    Returns:
      (labels i32[N], d2 f[N]) — index of the nearest centroid and squared distance to it.
    """
    xx = jnp.sum(x * x, axis=1, keepdims=True)
    cc = jnp.sum(c * c, axis=1)
    d2 = xx - 2.0 * (x @ c.T) + cc[None, :]
    labels = jnp.argmin(d2, axis=1).astype(jnp.int32)
    dmin = jnp.maximum(jnp.min(d2, axis=1), 0.0)
    if mask is not None:
        labels = jnp.where(mask, labels, -1)
        dmin = jnp.where(mask, dmin, 0.0)
    return labels, dmin


def assign_accumulate_reference(x: jax.Array, c: jax.Array, mask: jax.Array | None = None):
    """Pure-jnp assignment plus Lloyd sufficient statistics (segment sums).

    Args:
      x: f[N, D].  c: f[K, D].  mask: optional bool[N].
    Returns:
      (labels i32[N], d2 f[N], sums f[K, D], counts f[K]) with
      sums_k = sum_{labels_i = k} x_i and counts_k = #{i: labels_i = k}; masked rows count nowhere.
    """
    labels, d2 = assign_reference(x, c, mask)
    k = c.shape[0]
    seg = jnp.where(labels >= 0, labels, k)  # masked rows -> a dropped extra segment
    sums = jax.ops.segment_sum(x, seg, num_segments=k + 1)[:k]
    counts = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), seg, num_segments=k + 1)[:k]
    return labels, d2, sums, counts


# ------------------------------------------------------------------------------------ planning


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """Static tiling of one call: tile sizes and padded extents (all Python ints)."""

    target: str  # "interpret" | "triton" | "mosaic"
    block_n: int  # rows per program
    block_k: int  # centroids per inner-loop step
    n_pad: int  # N rounded up to a multiple of block_n
    k_pad: int  # K rounded up to a multiple of block_k
    d_pad: int  # D as the backend needs it

    @property
    def grid(self) -> int:
        """Number of row tiles (programs)."""
        return self.n_pad // self.block_n

    @property
    def k_tiles(self) -> int:
        return self.k_pad // self.block_k

    def workspace_bytes(self, n: int, k: int, d: int, *, accumulate: bool, itemsize: int = 4) -> int:
        """Temporary bytes beyond inputs/outputs: padded copies of x (and c), per-tile partials."""
        extra = 0
        if (self.n_pad, self.d_pad) != (n, d):
            extra += self.n_pad * self.d_pad * itemsize  # padded copy of x
        extra += self.k_pad * self.d_pad * itemsize + self.k_pad * itemsize  # padded c, ||c||^2
        extra += 2 * self.n_pad * 4  # padded label / d2 columns
        if accumulate:
            extra += self.grid * self.k_pad * (self.d_pad + 1) * itemsize  # per-tile partials
        return extra


def plan(n: int, k: int, d: int, *, block_n: int = 256, block_k: int = 128, target: str = "interpret") -> Plan:
    """Choose tile sizes and padding for an (N, K, D) problem on ``target``.

    Block sizes are clipped to the problem (rounded up to 8, or to a power of two on Triton) so tiny
    problems do not pay for 256-row tiles. Triton needs power-of-two block dims >= 16 (its ``tl.dot``
    minimum), so block sizes are rounded down to powers of two and D is zero-padded to one. Mosaic
    (TPU, untested) wants 8-row sublane and 128-lane multiples.
    """
    check_choice("target", target, ("interpret", "triton", "mosaic"))
    if target == "triton":
        bn = min(max(16, prev_pow2(block_n)), max(16, next_pow2(n)))
        bk = min(max(16, prev_pow2(block_k)), max(16, next_pow2(k)))
        dp = max(16, next_pow2(d))
    elif target == "mosaic":
        bn = round_up(min(block_n, round_up(n, 8)), 8)
        bk = round_up(min(block_k, round_up(k, 128)), 128)
        dp = round_up(d, 128)
    else:
        bn = min(block_n, round_up(n, 8))
        bk = min(block_k, round_up(k, 8))
        dp = d
    return Plan(target=target, block_n=bn, block_k=bk, n_pad=round_up(n, bn), k_pad=round_up(k, bk), d_pad=dp)


# ------------------------------------------------------------------------------------ kernel


def _split_bf16(x: jax.Array) -> tuple[jax.Array, ...]:
    """f32 x -> (b1, b2, b3) bf16 with b1 + b2 + b3 == x exactly (8 + 8 + 8 significand bits)."""
    b1 = x.astype(jnp.bfloat16)
    r1 = x - b1.astype(x.dtype)
    b2 = r1.astype(jnp.bfloat16)
    r2 = r1 - b2.astype(x.dtype)
    return b1, b2, r2.astype(jnp.bfloat16)


def _onehot_t_dot(onehot: jax.Array, x: jax.Array) -> jax.Array:
    """onehot: {0,1}[Tn, Tk], x: f[Tn, D] -> onehot^T x: f[Tk, D] at (at least) f32 accuracy."""
    dims = (((0,), (0,)), ((), ()))
    if x.dtype == jnp.float32:
        oh = onehot.astype(jnp.bfloat16)  # exact
        parts = [lax.dot_general(oh, b, dims, preferred_element_type=jnp.float32) for b in _split_bf16(x)]
        return (parts[2] + parts[1]) + parts[0]  # smallest first
    oh = onehot.astype(x.dtype)
    return lax.dot_general(oh, x, dims, precision=lax.Precision.HIGHEST, preferred_element_type=x.dtype)


def _kmeans_kernel(*refs, n: int, block_n: int, block_k: int, k_tiles: int, has_mask: bool, accumulate: bool):
    """One row tile. Refs (in order):

    x_ref f[bn, Dp], c_ref f[Kp, Dp], cc_ref f[1, Kp] (+inf on padded centroids),
    [mask_ref i32[bn, 1]], labels_ref i32[bn, 1], d2_ref f[bn, 1], [sums_ref f[Kp, Dp], counts_ref f[1, Kp]].
    """
    x_ref, c_ref, cc_ref, *rest = refs
    mask_ref = rest.pop(0) if has_mask else None
    labels_ref, d2_ref, *acc_refs = rest

    x = x_ref[...]
    dtype = x.dtype
    xx = jnp.sum(x * x, axis=1, keepdims=True)  # [bn, 1]
    rows = pl.program_id(0) * block_n + lax.broadcasted_iota(jnp.int32, (block_n, 1), 0)
    valid = rows < n  # padded rows never count
    if mask_ref is not None:
        valid = jnp.logical_and(valid, mask_ref[...] != 0)

    def k_step(kb, carry):
        best_d, best_i = carry  # [bn, 1] running min and argmin
        start = pl.multiple_of(kb * block_k, block_k)
        c = c_ref[pl.ds(start, block_k), :]  # [bk, Dp]
        cc = cc_ref[:, pl.ds(start, block_k)]  # [1, bk]
        s = lax.dot_general(x, c, (((1,), (1,)), ((), ())), preferred_element_type=dtype)  # [bn, bk]
        d = xx - 2.0 * s + cc  # same association as the reference
        cols = start + lax.broadcasted_iota(jnp.int32, (1, block_k), 1)
        tile_d = jnp.min(d, axis=1, keepdims=True)
        tile_i = jnp.min(jnp.where(d == tile_d, cols, _BIG_INDEX), axis=1, keepdims=True)  # lowest tied index
        better = tile_d < best_d  # strict: an earlier (lower-index) tile keeps ties
        return jnp.where(better, tile_d, best_d), jnp.where(better, tile_i, best_i)

    init = (jnp.full((block_n, 1), jnp.inf, dtype), jnp.zeros((block_n, 1), jnp.int32))
    best_d, best_i = lax.fori_loop(0, k_tiles, k_step, init)
    labels = jnp.where(valid, best_i, -1)
    labels_ref[...] = labels
    d2_ref[...] = jnp.where(valid, jnp.maximum(best_d, 0.0), 0.0).astype(d2_ref.dtype)

    if accumulate:
        sums_ref, counts_ref = acc_refs

        def acc_step(kb, carry):
            start = pl.multiple_of(kb * block_k, block_k)
            cols = start + lax.broadcasted_iota(jnp.int32, (1, block_k), 1)
            onehot = labels == cols  # [bn, bk]; label -1 matches nothing
            sums_ref[pl.ds(start, block_k), :] = _onehot_t_dot(onehot, x).astype(sums_ref.dtype)
            counts_ref[:, pl.ds(start, block_k)] = jnp.sum(
                onehot.astype(counts_ref.dtype), axis=0, keepdims=True
            )
            return carry

        lax.fori_loop(0, k_tiles, acc_step, 0)


def _compiler_params(p: Plan):
    """Backend-specific launch settings (only for compiled GPU calls)."""
    if p.target != "triton":
        return None
    from jax.experimental.pallas import triton as plgpu  # GPU-only import

    num_warps = 8 if p.block_n * p.block_k >= 256 * 128 else 4
    return plgpu.CompilerParams(num_warps=num_warps)


@functools.partial(jax.jit, static_argnames=("block_n", "block_k", "interpret", "target", "accumulate"))
def _fused(x, c, mask, *, block_n: int, block_k: int, interpret: bool, target: str, accumulate: bool):
    """Pad, run the kernel, unpad; reduce per-tile partials in a fixed order. Shapes validated by callers."""
    n, d = x.shape
    k = c.shape[0]
    dtype = jnp.promote_types(jnp.result_type(x, c), jnp.float32)
    p = plan(n, k, d, block_n=block_n, block_k=block_k, target=target)
    x = x.astype(dtype)
    c = c.astype(dtype)

    cc = jnp.sum(c * c, axis=1)  # ||c||^2 exactly as the reference computes it
    cc = jnp.pad(cc, (0, p.k_pad - k), constant_values=jnp.inf)[None, :]
    xp = jnp.pad(x, ((0, p.n_pad - n), (0, p.d_pad - d)))
    cp = jnp.pad(c, ((0, p.k_pad - k), (0, p.d_pad - d)))
    args = [xp, cp, cc]
    in_specs = [
        pl.BlockSpec((p.block_n, p.d_pad), lambda i: (i, 0)),
        pl.BlockSpec((p.k_pad, p.d_pad), lambda i: (0, 0)),
        pl.BlockSpec((1, p.k_pad), lambda i: (0, 0)),
    ]
    if mask is not None:
        args.append(jnp.pad(mask.astype(jnp.int32), (0, p.n_pad - n))[:, None])
        in_specs.append(pl.BlockSpec((p.block_n, 1), lambda i: (i, 0)))

    out_shape = [
        jax.ShapeDtypeStruct((p.n_pad, 1), jnp.int32),
        jax.ShapeDtypeStruct((p.n_pad, 1), dtype),
    ]
    out_specs = [
        pl.BlockSpec((p.block_n, 1), lambda i: (i, 0)),
        pl.BlockSpec((p.block_n, 1), lambda i: (i, 0)),
    ]
    if accumulate:  # per-tile partials, stacked along rows so every block is 2-D
        out_shape += [
            jax.ShapeDtypeStruct((p.grid * p.k_pad, p.d_pad), dtype),
            jax.ShapeDtypeStruct((p.grid, p.k_pad), dtype),
        ]
        out_specs += [
            pl.BlockSpec((p.k_pad, p.d_pad), lambda i: (i, 0)),
            pl.BlockSpec((1, p.k_pad), lambda i: (i, 0)),
        ]

    kernel = functools.partial(
        _kmeans_kernel,
        n=n,
        block_n=p.block_n,
        block_k=p.block_k,
        k_tiles=p.k_tiles,
        has_mask=mask is not None,
        accumulate=accumulate,
    )
    outs = pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(p.grid,),
        in_specs=in_specs,
        out_specs=out_specs,
        interpret=interpret,
        compiler_params=None if interpret else _compiler_params(p),
        name="kmeans_assign_accumulate" if accumulate else "kmeans_assign",
    )(*args)
    labels = outs[0][:n, 0]
    d2 = outs[1][:n, 0]
    if not accumulate:
        return labels, d2
    sums = tree_sum(outs[2].reshape(p.grid, p.k_pad, p.d_pad))[:k, :d]
    counts = tree_sum(outs[3])[:k]
    return labels, d2, sums, counts


# ------------------------------------------------------------------------------------ public API


def _as_array(a):
    """Array-likes (lists) -> numpy, so shape checks can run; arrays and tracers pass through."""
    return a if a is None or hasattr(a, "shape") else np.asarray(a)


def _validate(x, c, mask, block_n, block_k, interpret, *, max_k: int | None = None) -> None:
    """Boundary checks shared by ``assign`` and ``assign_accumulate`` (values skipped under jit)."""
    check_array("x", x, ndim=2, min_size=1, kind="f")
    check_range("x.shape[1] (D)", x.shape[1], low=1)
    check_array("c", c, ndim=2, min_size=1, kind="f")
    check_array("c", c, shape=(None, x.shape[1]), finite=False)
    if max_k is not None:
        check_range("c.shape[0] (K) for assign_accumulate", c.shape[0], low=1, high=max_k)
    if mask is not None:
        check_array("mask", mask, shape=(x.shape[0],), kind="b")
    for name, b in (("block_n", block_n), ("block_k", block_k)):
        if isinstance(b, bool) or not isinstance(b, int):
            raise ValueError(f"{name}: expected a positive int, got {b!r}")
        check_range(name, b, low=1)
    check_choice("interpret", interpret, (None, True, False))


def assign(
    x: jax.Array,
    c: jax.Array,
    mask: jax.Array | None = None,
    *,
    block_n: int = 256,
    block_k: int = 128,
    interpret: bool | None = None,
):
    """Nearest-centroid assignment as a Pallas kernel (same semantics as ``assign_reference``).

    d2_ik = ||x_i||^2 - 2 x_i . c_k + ||c_k||^2; labels_i = argmin_k (ties -> lowest k);
    d2_i = max(min_k d2_ik, 0). The N x K matrix is never materialised: each program keeps a running
    (min, argmin) over K tiles.

    Args:
      x: f[N, D] points (N >= 1, D >= 1, finite).
      c: f[K, D] centroids (K >= 1, finite).
      mask: optional bool[N]; False rows get label -1 and d2 0.
      block_n: rows per program (clipped to the problem; power of two >= 16 on GPU).
      block_k: centroids per inner-loop step (same rules).
      interpret: None -> Pallas interpreter on CPU, compiled kernel on GPU/TPU.
    Returns:
      (labels i32[N], d2 f[N]); d2 is float32 (float64 for float64 inputs).
    """
    x, c, mask = _as_array(x), _as_array(c), _as_array(mask)
    _validate(x, c, mask, block_n, block_k, interpret)
    interp = default_interpret(interpret)
    x, c, mask = (None if a is None else jnp.asarray(a) for a in (x, c, mask))
    return _fused(
        x, c, mask, block_n=block_n, block_k=block_k, interpret=interp, target=kernel_target(interp), accumulate=False
    )


def assign_accumulate(
    x: jax.Array,
    c: jax.Array,
    mask: jax.Array | None = None,
    *,
    block_n: int = 256,
    block_k: int = 128,
    interpret: bool | None = None,
):
    """``assign`` with the Lloyd update fused in: x is read once for distances and sums.

    After a row tile's argmin is final, one-hot [Tn, Tk] tiles give the partial sums onehot^T x_tile
    and counts; per-tile partials are reduced in a fixed pairwise order (bit-reproducible).

    Args:
      x: f[N, D].  c: f[K, D] with 1 <= K <= ``MAX_ACCUMULATE_K``.  mask: optional bool[N].
      block_n, block_k, interpret: as in ``assign``.
    Returns:
      (labels i32[N], d2 f[N], sums f[K, D], counts f[K]) as ``assign_accumulate_reference``.
    Memory: besides x, the per-tile partials take ceil(N / block_n) * K * (D + 1) floats.
    """
    x, c, mask = _as_array(x), _as_array(c), _as_array(mask)
    _validate(x, c, mask, block_n, block_k, interpret, max_k=MAX_ACCUMULATE_K)
    interp = default_interpret(interpret)
    x, c, mask = (None if a is None else jnp.asarray(a) for a in (x, c, mask))
    return _fused(
        x, c, mask, block_n=block_n, block_k=block_k, interpret=interp, target=kernel_target(interp), accumulate=True
    )
