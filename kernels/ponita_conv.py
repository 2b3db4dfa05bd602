"""Fused separable group convolution (PONITA's hot loop) as Pallas kernels.

Paper: Bekkers et al., "Fast, Expressive SE(n) Equivariant Networks through Weight-Sharing in
Position-Orientation Space", ICLR 2024 (arXiv 2310.02970), §2.5 of ``papers/ponita.md``.

Math (x: f[N, O, C] node features on an O-orientation grid, basis: f[E, O, Bd] the spatial basis
Phi_ij(o) with the window folded in, A: f[Bd, C], directed edges s_e -> r_e with mask m_e):

    K[e, o, c]  = (basis[e, o] @ A)[c]                                   spatial kernel (never stored)
    g[n, o, c]  = sum_{e: r_e = n, m_e} K[e, o, c] * x[s_e, o, c]        message + receiver sum
    h[n, p, c]  = (1/O) sum_o F[o, p, c] g[n, o, c] + bias[c]            fiber mix (optional)

Without ``fiber_kernel`` the result is ``g + bias``. With ``A = None`` the ``basis`` argument is the
spatial kernel K itself (f[E, O, C]); that is the model's ``separable_conv`` signature.

Functions:
  ``fused_separable_conv_reference``  the unfused jnp version (gather, multiply, segment_sum).
  ``fused_separable_conv``            the Pallas version with a custom VJP (first derivatives).
  ``separable_conv``                  adapter with the model's signature (k_spatial given).
  ``plan``                            the static tiling a call will use (for benchmarks).

Forward kernel (``_conv_kernel``; grid = (receiver blocks of R nodes, channel tiles of Ct)):
  The wrapper sorts edge *indices* by receiver (masked edges go last under a sentinel receiver), so
  the edges of receiver block b are the contiguous range [start_b, end_b) of the sorted order; the
  basis and x are never permuted or copied: the kernel gathers their rows through the indices.
  A program loops over orientations o and, inside, over chunks of Et sorted edges:
      Kc  = basis[perm[chunk] * O + o, :] @ A[:, tile]        [Et, Ct]   (tensor-core GEMM)
      msg = Kc * x[send[chunk] * O + o, tile]                 [Et, Ct]
      acc += onehot(recv[chunk] - r0)^T-style [R, Et] @ msg   [R, Ct]    (a GEMM, no atomics)
  and writes acc to g[o, block, tile]. Neither K nor the messages ([E, O, C]) ever exist in memory.
  The one-hot GEMM splits the f32 messages into three exact bf16 pieces (as ``kmeans`` does), so the
  receiver sums keep f32 accuracy on bf16 tensor cores.

Backward (custom VJP), given dh: f[N, O, C]:
  dbias = sum_{n,p} dh;  dg = (1/O) sum_p F[o,p] dh[n,p];  dF = (1/O) sum_n g[n,o] dh[n,p]     (jnp, small)
  dx    = the forward kernel on the *sender*-sorted edges with x := dg (roles of s and r swapped)
  dK[e,o,c] = m_e dg[r_e,o,c] x[s_e,o,c];  dbasis = dK @ A^T;  dA = sum_{e,o} basis[e,o]^T dK[e,o]
        -> ``_edge_grad_kernel``: row tiles of the flat (edge, orientation) axis, dK formed in
           registers, dbasis written once, per-program partial dA reduced in a fixed pairwise order
           (``_common.tree_sum``): no atomics, no [E, O, C] temporary.
  With A = None, dK is the cotangent of k_spatial and is returned directly (jnp).

Choices that are ours:
  - The fiber-mix epilogue (and bias) runs as an XLA fusion on g (N*O*C floats, small next to the
    E*O*Bd basis): fusing it into the kernel would need O*R*C accumulators per program in registers.
    g is also the residual the VJP needs for dF.
  - Second-order derivatives are not supported: the backward kernels raise ``NotImplementedError``
    when differentiated (use the jnp path, e.g. the model's ``use_kernel=False``, for force training).
  - On Triton, tiles are powers of two >= 16 and C, Bd are zero-padded to powers of two (a copy of
    the basis only when Bd is not a power of two, e.g. never for Bd = 256); O is not padded.
  - The spatial GEMM runs at the backend's default f32 precision (TF32 on Ampere+), like the jitted
    jnp reference on the same GPU.
  - Eager calls validate values (index ranges, NaN/inf) on the host; under ``jit`` only shapes.
TPU (Mosaic) lowering is untested.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

from zoo.checks import check_array, check_choice, check_range, is_traced

from ._common import cdiv, default_interpret, kernel_target, next_pow2, prev_pow2, round_up, tree_sum

__all__ = [
    "Plan",
    "fused_separable_conv",
    "fused_separable_conv_reference",
    "plan",
    "separable_conv",
]

_MAX_EDGE_GRAD_PROGRAMS = 256  # programs of the dbasis/dA kernel (each reduces many row tiles)


# ------------------------------------------------------------------------------------ reference


def fused_separable_conv_reference(
    x: jax.Array,
    basis: jax.Array,
    A: jax.Array | None,
    senders: jax.Array,
    receivers: jax.Array,
    edge_mask: jax.Array | None = None,
    fiber_kernel: jax.Array | None = None,
    bias: jax.Array | None = None,
) -> jax.Array:
    """Unfused jnp separable group convolution (the semantics ``fused_separable_conv`` must match).

    Args:
      x: f[N, O, C].  basis: f[E, O, Bd] (or the spatial kernel f[E, O, C] when ``A`` is None).
      A: f[Bd, C] or None.  senders, receivers: int[E].  edge_mask: bool[E] or None (all edges).
      fiber_kernel: f[O, O, C] or None.  bias: f[C] or None.
    Returns:
      h: f[N, O, C] with h[n,p,c] = (1/O) sum_o F[o,p,c] g[n,o,c] + bias[c] and
      g[n,o,c] = sum_{e: r_e=n, m_e} (basis[e,o] @ A)[c] x[s_e,o,c]  (h = g + bias without F).
    """
    k = basis if A is None else jnp.einsum("eob,bc->eoc", basis, A)
    msg = k * x[senders]
    if edge_mask is not None:
        msg = jnp.where(edge_mask[:, None, None], msg, 0)
    g = jax.ops.segment_sum(msg, receivers, num_segments=x.shape[0])
    return _epilogue(g, fiber_kernel, bias)


def _epilogue(g, fiber_kernel, bias):
    """h = (1/O) sum_o F[o, p] * g[:, o] + bias (each part optional)."""
    h = g
    if fiber_kernel is not None:
        h = jnp.einsum("opc,noc->npc", fiber_kernel, g) / g.shape[1]
    if bias is not None:
        h = h + bias
    return h


# ------------------------------------------------------------------------------------ planning


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """Static tiling of one call (all Python ints)."""

    target: str  # "interpret" | "triton" | "mosaic"
    block_nodes: int  # R: receivers per program
    block_edges: int  # Et: edges per inner chunk (also the dbasis/dA row tile)
    block_channels: int  # Ct: channels per program
    block_basis: int  # Bd tile of the dbasis/dA kernel
    block_k: int  # contraction chunk of every in-kernel GEMM (bounds shared memory on GPU)
    n_pad: int  # N rounded up to a multiple of R
    c_pad: int  # C as the backend needs it
    bd_pad: int  # Bd as the backend needs it

    @property
    def node_blocks(self) -> int:
        return self.n_pad // self.block_nodes

    @property
    def channel_tiles(self) -> int:
        return self.c_pad // self.block_channels


def plan(
    n: int,
    c: int,
    bd: int,
    *,
    block_nodes: int = 16,
    block_edges: int = 32,
    block_channels: int = 64,
    target: str = "interpret",
) -> Plan:
    """Choose tiles and padding for N nodes, C channels, basis width Bd on ``target``.

    Triton: every in-kernel tensor needs power-of-two dims and ``tl.dot`` needs dims >= 16, so tiles
    are rounded down to powers of two >= 16 and C, Bd zero-padded to powers of two >= 16. Interpret:
    any sizes (tiles clipped to the problem). Mosaic (untested): 8-row / 128-lane multiples.
    """
    check_choice("target", target, ("interpret", "triton", "mosaic"))
    if target == "triton":
        cp, bdp = max(16, next_pow2(c)), max(16, next_pow2(bd))
        r = min(max(16, prev_pow2(block_nodes)), max(16, next_pow2(n)))
        et = max(16, prev_pow2(block_edges))
        ct = min(max(16, prev_pow2(block_channels)), cp)
        bb = min(64, bdp)  # the backward's A tile [bb, Cp] and accumulators live in shared memory
        bk = min(64, bdp, cp)
    elif target == "mosaic":
        cp, bdp = round_up(c, 128), round_up(bd, 128)
        r = round_up(min(block_nodes, round_up(n, 8)), 8)
        et = round_up(block_edges, 8)
        ct = min(round_up(block_channels, 128), cp)
        while cp % ct:
            ct -= 128
        bb = 128
        bk = 128
    else:
        cp, bdp = c, bd
        r = min(block_nodes, n)
        et = block_edges
        ct = min(block_channels, c)
        while c % ct:  # channel tiles must divide C (no padding in interpret mode)
            ct -= 1
        bb = bd
        bk = _largest_divisor(math.gcd(bd, c), 64)
    return Plan(
        target=target,
        block_nodes=r,
        block_edges=et,
        block_channels=ct,
        block_basis=bb,
        block_k=bk,
        n_pad=round_up(n, r),
        c_pad=cp,
        bd_pad=bdp,
    )


def _largest_divisor(n: int, cap: int) -> int:
    """Largest divisor of ``n`` that is ``<= cap``."""
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


# ------------------------------------------------------------------------------------ kernels


def _split_bf16(x):
    """f32 x -> (b1, b2, b3) bf16 with b1 + b2 + b3 == x exactly."""
    b1 = x.astype(jnp.bfloat16)
    r1 = x - b1.astype(x.dtype)
    b2 = r1.astype(jnp.bfloat16)
    return b1, b2, (r1 - b2.astype(x.dtype)).astype(jnp.bfloat16)


def _onehot_dot(onehot, msg):
    """onehot: bool[R, Et], msg: f[Et, Ct] -> onehot @ msg: f[R, Ct] at (at least) f32 accuracy."""
    dims = (((1,), (0,)), ((), ()))
    if msg.dtype == jnp.float32:
        oh = onehot.astype(jnp.bfloat16)  # exact
        p = [lax.dot_general(oh, b, dims, preferred_element_type=jnp.float32) for b in _split_bf16(msg)]
        return (p[2] + p[1]) + p[0]
    return lax.dot_general(
        onehot.astype(msg.dtype), msg, dims, precision=lax.Precision.HIGHEST, preferred_element_type=msg.dtype
    )


def _conv_kernel(*refs, num_ori: int, block_nodes: int, block_edges: int, block_k: int, has_a: bool):
    """One (receiver block, channel tile). Refs, in order:

    start_ref i32[nb], end_ref i32[nb]: sorted-edge range of each receiver block;
    send_ref, recv_ref, perm_ref i32[E + Et]: sorted senders / receivers (sentinel n_pad when
    masked or padding) / original edge ids; x_ref f[N*O, Ct] (rows n*O + o);
    k_ref f[E*O, Bd] (basis, with a_ref f[Bd, Ct]) or f[E*O, Ct] (the kernel itself, no a_ref);
    g_ref f[O, R, Ct] (output block).
    """
    start_ref, end_ref, send_ref, recv_ref, perm_ref, x_ref, k_ref, *rest = refs
    a_ref = rest.pop(0) if has_a else None
    (g_ref,) = rest
    b = pl.program_id(0)
    start = start_ref[b]
    end = end_ref[b]
    n_chunks = (end - start + block_edges - 1) // block_edges
    r0 = b * block_nodes
    lanes = lax.broadcasted_iota(jnp.int32, (block_edges,), 0)
    rows = lax.broadcasted_iota(jnp.int32, (block_nodes, block_edges), 0)
    dtype = g_ref.dtype

    def ori_step(o, carry):
        def chunk_step(i, acc):
            pos = start + i * block_edges
            chunk = pl.ds(pos, block_edges)
            valid = (pos + lanes) < end  # [Et]
            krows = perm_ref[chunk] * num_ori + o
            if a_ref is None:
                kk = k_ref[krows, :]  # [Et, Ct]
            else:  # [Et, Bd] @ [Bd, Ct], contracted in chunks of block_k
                kk = None
                for j in range(k_ref.shape[1] // block_k):
                    cols = pl.ds(j * block_k, block_k)
                    part = lax.dot_general(
                        k_ref[krows, cols], a_ref[cols, :], (((1,), (0,)), ((), ())), preferred_element_type=dtype
                    )
                    kk = part if kk is None else kk + part
            msg = kk * x_ref[send_ref[chunk] * num_ori + o, :]  # [Et, Ct]
            msg = jnp.where(valid[:, None], msg, 0.0)  # rows past the block's range (other blocks / padding)
            onehot = (recv_ref[chunk] - r0)[None, :] == rows  # [R, Et]; sentinel never matches
            return acc + _onehot_dot(onehot, msg).astype(dtype)

        acc = lax.fori_loop(0, n_chunks, chunk_step, jnp.zeros(g_ref.shape[1:], dtype))
        g_ref[o, :, :] = acc
        return carry

    lax.fori_loop(0, num_ori, ori_step, 0)


def _edge_grad_kernel(
    xrow_ref,
    grow_ref,
    x_ref,
    dg_ref,
    basis_ref,
    a_ref,
    dbasis_ref,
    da_ref,
    *,
    rows_total: int,
    block_rows: int,
    block_k: int,
    tiles_per_program: int,
):
    """dbasis and a partial dA for one (row-program, Bd tile). Flat rows q = e*O + o.

    xrow_ref, grow_ref i32[EO]: rows of x (s_e*O + o) and of dg (r_e*O + o, or the zero row N*O when
    the edge is masked); x_ref f[N*O, Cp]; dg_ref f[N*O + 1, Cp]; basis_ref f[EO, Bt] (Bd tile);
    a_ref f[Bt, Cp]; dbasis_ref f[EO, Bt] (written by row index); da_ref f[Bt, Cp] (this program's
    partial). Channels are processed in chunks of ``block_k``. The last tile clamps its rows to
    EO - 1: its duplicate rows recompute (and rewrite) the same dbasis values and are masked out of dA.
    """
    prog = pl.program_id(0)
    lanes = lax.broadcasted_iota(jnp.int32, (block_rows,), 0)
    dtype = da_ref.dtype
    n_k = x_ref.shape[1] // block_k

    def tile_step(t, accs):
        q = (prog * tiles_per_program + t) * block_rows + lanes
        rows = jnp.minimum(q, rows_total - 1)
        valid = (q < rows_total)[:, None]
        gi, xi = grow_ref[rows], xrow_ref[rows]
        bas = basis_ref[rows, :]  # [T, Bt]
        dbasis, new = None, []
        for j in range(n_k):
            cols = pl.ds(j * block_k, block_k)
            dk = dg_ref[gi, cols] * x_ref[xi, cols]  # [T, bk] = dK[e, o, chunk]
            part = lax.dot_general(dk, a_ref[:, cols], (((1,), (1,)), ((), ())), preferred_element_type=dtype)
            dbasis = part if dbasis is None else dbasis + part  # [T, Bt]
            dk = jnp.where(valid, dk, 0.0)
            new.append(accs[j] + lax.dot_general(bas, dk, (((0,), (0,)), ((), ())), preferred_element_type=dtype))
        dbasis_ref[rows, :] = dbasis.astype(dbasis_ref.dtype)
        return tuple(new)

    init = tuple(jnp.zeros((da_ref.shape[0], block_k), dtype) for _ in range(n_k))
    accs = lax.fori_loop(0, tiles_per_program, tile_step, init)
    for j in range(n_k):
        da_ref[:, pl.ds(j * block_k, block_k)] = accs[j]


def _compiler_params(p: Plan, rows: int):
    if p.target != "triton":
        return None
    from jax.experimental.pallas import triton as plgpu  # GPU-only import

    return plgpu.CompilerParams(num_warps=8 if rows * p.block_channels >= 64 * 128 else 4, num_stages=2)


# ------------------------------------------------------------------------------------ wrapper pieces


def _sorted_csr(keys, edge_mask, p: Plan):
    """Sort edge ids by ``keys`` (masked edges last under the sentinel n_pad); per-block ranges.

    Returns perm i32[E + Et] (original edge ids in sorted order, padded with 0), sorted keys
    i32[E + Et] (padded with the sentinel), starts, ends i32[node_blocks].
    """
    e = keys.shape[0]
    keys = keys.astype(jnp.int32)
    if edge_mask is not None:
        keys = jnp.where(edge_mask, keys, p.n_pad)
    perm = jnp.argsort(keys, stable=True).astype(jnp.int32)
    skeys = keys[perm]
    bounds = jnp.arange(p.node_blocks + 1, dtype=jnp.int32) * p.block_nodes
    ptr = jnp.searchsorted(skeys, bounds, side="left").astype(jnp.int32)
    pad = p.block_edges
    perm = jnp.pad(perm, (0, pad))
    skeys = jnp.pad(skeys, (0, pad), constant_values=p.n_pad)
    del e
    return perm, skeys, ptr[:-1], ptr[1:]


def _run_conv(x2, kflat, a, senders, receivers, edge_mask, p: Plan, *, num_ori: int, interpret: bool):
    """g: f[N, O, C_pad] via ``_conv_kernel``. x2: f[N*O, Cp]; kflat: f[E*O, Bdp] (a: f[Bdp, Cp]) or
    f[E*O, Cp] (a None); edges gather rows, summed per receiver."""
    n = x2.shape[0] // num_ori
    dtype = x2.dtype
    perm, srecv, starts, ends = _sorted_csr(receivers, edge_mask, p)
    ssend = jnp.pad(senders.astype(jnp.int32)[perm[: senders.shape[0]]], (0, p.block_edges))
    r, ct = p.block_nodes, p.block_channels
    whole = lambda i, j: (0,)  # noqa: E731
    in_specs = [pl.BlockSpec(starts.shape, whole), pl.BlockSpec(ends.shape, whole)]
    in_specs += [pl.BlockSpec(ssend.shape, whole)] * 3
    in_specs.append(pl.BlockSpec((x2.shape[0], ct), lambda i, j: (0, j)))
    args = [starts, ends, ssend, srecv, perm, x2, kflat]
    if a is None:
        in_specs.append(pl.BlockSpec((kflat.shape[0], ct), lambda i, j: (0, j)))
    else:
        in_specs.append(pl.BlockSpec(kflat.shape, lambda i, j: (0, 0)))
        in_specs.append(pl.BlockSpec((a.shape[0], ct), lambda i, j: (0, j)))
        args.append(a)
    kernel = functools.partial(
        _conv_kernel,
        num_ori=num_ori,
        block_nodes=r,
        block_edges=p.block_edges,
        block_k=p.block_k,
        has_a=a is not None,
    )
    g = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((num_ori, p.n_pad, p.c_pad), dtype),
        grid=(p.node_blocks, p.channel_tiles),
        in_specs=in_specs,
        out_specs=pl.BlockSpec((num_ori, r, ct), lambda i, j: (0, i, j)),
        interpret=interpret,
        compiler_params=None if interpret else _compiler_params(p, p.block_edges),
        name="ponita_separable_conv",
    )(*args)
    return jnp.transpose(g[:, :n], (1, 0, 2))  # [N, O, Cp]


def _run_edge_grad(x2, dg2, bflat, a, senders, receivers, edge_mask, p: Plan, *, num_ori: int, interpret: bool):
    """(dbasis f[E*O, Bdp], dA f[Bdp, Cp]) via ``_edge_grad_kernel``."""
    n = x2.shape[0] // num_ori
    eo = bflat.shape[0]
    dtype = x2.dtype
    o = jnp.arange(num_ori, dtype=jnp.int32)
    xrow = (senders.astype(jnp.int32)[:, None] * num_ori + o).reshape(-1)
    grow = receivers.astype(jnp.int32)[:, None] * num_ori + o
    if edge_mask is not None:
        grow = jnp.where(edge_mask[:, None], grow, n * num_ori)  # -> the appended zero row
    grow = grow.reshape(-1)
    dgz = jnp.concatenate([dg2, jnp.zeros((1, dg2.shape[1]), dtype)], axis=0)
    t = p.block_edges
    n_tiles = cdiv(eo, t)
    per = cdiv(n_tiles, _MAX_EDGE_GRAD_PROGRAMS)
    progs = cdiv(n_tiles, per)
    bt = p.block_basis
    nbt = p.bd_pad // bt
    kernel = functools.partial(
        _edge_grad_kernel, rows_total=eo, block_rows=t, block_k=p.block_k, tiles_per_program=per
    )
    whole1 = lambda i, j: (0,)  # noqa: E731
    whole2 = lambda i, j: (0, 0)  # noqa: E731
    dbasis, da = pl.pallas_call(
        kernel,
        out_shape=[
            jax.ShapeDtypeStruct((eo, p.bd_pad), dtype),
            jax.ShapeDtypeStruct((progs * p.bd_pad, p.c_pad), dtype),
        ],
        grid=(progs, nbt),
        in_specs=[
            pl.BlockSpec((eo,), whole1),
            pl.BlockSpec((eo,), whole1),
            pl.BlockSpec(x2.shape, whole2),
            pl.BlockSpec(dgz.shape, whole2),
            pl.BlockSpec((eo, bt), lambda i, j: (0, j)),
            pl.BlockSpec((bt, p.c_pad), lambda i, j: (j, 0)),
        ],
        out_specs=[
            pl.BlockSpec((eo, bt), lambda i, j: (0, j)),
            pl.BlockSpec((bt, p.c_pad), lambda i, j: (i * nbt + j, 0)),
        ],
        interpret=interpret,
        compiler_params=None if interpret else _compiler_params(p, t),
        name="ponita_separable_conv_edge_grad",
    )(xrow, grow, x2, dgz, bflat, a)
    return dbasis, tree_sum(da.reshape(progs, p.bd_pad, p.c_pad))


def _no_second_order(fn):
    """Wrap a backward computation so that differentiating it raises a clear error."""
    wrapped = jax.custom_jvp(fn)

    def _jvp(primals, tangents):
        raise NotImplementedError(
            "fused_separable_conv: second-order derivatives (differentiating the custom VJP, e.g. force "
            "training through jax.grad of an energy) are not supported by the Pallas kernel; use the jnp "
            "path (fused_separable_conv_reference, or the model's use_kernel=False)."
        )

    wrapped.defjvp(_jvp)
    return wrapped


# ------------------------------------------------------------------------------------ custom VJP core


def _pad_last(a, size):
    return a if a.shape[-1] == size else jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, size - a.shape[-1])])


def _forward_g(x, basis, A, senders, receivers, edge_mask, p: Plan, interpret: bool):
    """g: f[N, O, C] (unpadded) from the kernel."""
    n, o, c = x.shape
    e = basis.shape[0]
    if e == 0:
        return jnp.zeros((n, o, c), x.dtype)
    x2 = _pad_last(x.reshape(n * o, c), p.c_pad)
    if A is None:
        kflat, a = _pad_last(basis.reshape(e * o, c), p.c_pad), None
    else:
        kflat = _pad_last(basis.reshape(e * o, basis.shape[2]), p.bd_pad)
        a = jnp.pad(A, ((0, p.bd_pad - A.shape[0]), (0, p.c_pad - c)))
    g = _run_conv(x2, kflat, a, senders, receivers, edge_mask, p, num_ori=o, interpret=interpret)
    return g[..., :c]


def _guarded_forward_g(p: Plan, interpret: bool):
    """``_forward_g`` that raises a clear error when JVP'd (grad-of-grad differentiates the forward too)."""
    return _no_second_order(lambda *a: _forward_g(*a, p, interpret))


@functools.partial(jax.custom_vjp, nondiff_argnums=(8, 9))
def _fused(x, basis, A, fiber, bias, senders, receivers, edge_mask, p, interpret):
    g = _guarded_forward_g(p, interpret)(x, basis, A, senders, receivers, edge_mask)
    return _epilogue(g, fiber, bias)


def _fused_fwd(x, basis, A, fiber, bias, senders, receivers, edge_mask, p, interpret):
    g = _guarded_forward_g(p, interpret)(x, basis, A, senders, receivers, edge_mask)
    res = (x, basis, A, fiber, bias, senders, receivers, edge_mask, g if fiber is not None else None)
    return _epilogue(g, fiber, bias), res


def _backward(p, interpret, res, dh):
    x, basis, A, fiber, bias, senders, receivers, edge_mask, g = res
    n, o, c = x.shape
    e = basis.shape[0]
    dbias = None if bias is None else jnp.sum(dh, axis=(0, 1)).astype(bias.dtype)
    if fiber is None:
        dfiber, dg = None, dh
    else:
        dfiber = (jnp.einsum("noc,npc->opc", g, dh) / o).astype(fiber.dtype)
        dg = jnp.einsum("opc,npc->noc", fiber, dh) / o
    dg = dg.astype(x.dtype)
    if e == 0:
        return (jnp.zeros_like(x), jnp.zeros_like(basis), None if A is None else jnp.zeros_like(A), dfiber, dbias)
    # dx: the same kernel on the sender-sorted edges (x := dg, senders <-> receivers)
    dx = _forward_g(dg, basis, A, receivers, senders, edge_mask, p, interpret)
    if A is None:
        dk = dg[receivers] * x[senders]
        if edge_mask is not None:
            dk = jnp.where(edge_mask[:, None, None], dk, 0)
        return dx, dk.astype(basis.dtype), None, dfiber, dbias
    bd = basis.shape[2]
    x2 = _pad_last(x.reshape(n * o, c), p.c_pad)
    dg2 = _pad_last(dg.reshape(n * o, c), p.c_pad)
    bflat = _pad_last(basis.reshape(e * o, bd), p.bd_pad)
    a = jnp.pad(A, ((0, p.bd_pad - bd), (0, p.c_pad - c)))
    dbasis, da = _run_edge_grad(x2, dg2, bflat, a, senders, receivers, edge_mask, p, num_ori=o, interpret=interpret)
    dbasis = dbasis[:, :bd].reshape(e, o, bd).astype(basis.dtype)
    return dx, dbasis, da[:bd, :c].astype(A.dtype), dfiber, dbias


def _fused_bwd(p, interpret, res, dh):
    grads = _no_second_order(functools.partial(_backward, p, interpret))(res, dh)
    return (*grads, None, None, None)


_fused.defvjp(_fused_fwd, _fused_bwd)
_fused_jit = jax.jit(_fused, static_argnums=(8, 9))


# ------------------------------------------------------------------------------------ public API


def _as_array(a):
    return a if a is None or hasattr(a, "shape") else np.asarray(a)


def _check_block(name, b):
    if isinstance(b, bool) or not isinstance(b, int):
        raise ValueError(f"{name}: expected a positive int, got {b!r}")
    check_range(name, b, low=1)


def _validate(x, basis, A, senders, receivers, edge_mask, fiber, bias, blocks, interpret):
    check_array("x", x, ndim=3, kind="f")
    n, o, c = x.shape
    if n == 0:
        raise ValueError("x: empty graph (N = 0 nodes); expected at least one node")
    check_range("x.shape[1] (O, orientations)", o, low=1)
    check_range("x.shape[2] (C, channels)", c, low=1)
    check_array("basis", basis, ndim=3, kind="f")
    e = basis.shape[0]
    if A is None:
        check_array("basis", basis, shape=(None, o, c), finite=False)
    else:
        check_array("basis", basis, shape=(None, o, None), finite=False)
        check_range("basis.shape[2] (Bd)", basis.shape[2], low=1)
        check_array("A", A, shape=(basis.shape[2], c), kind="f")
    for name, idx in (("senders", senders), ("receivers", receivers)):
        check_array(name, idx, shape=(e,), kind="iu")
        if not is_traced(idx) and e:
            v = np.asarray(idx)
            if v.min() < 0 or v.max() >= n:
                raise ValueError(f"{name}: node indices must lie in [0, {n}) (N = x.shape[0]); got range "
                                 f"[{int(v.min())}, {int(v.max())}]")
    if edge_mask is not None:
        check_array("edge_mask", edge_mask, shape=(e,), kind="b")
    if fiber is not None:
        check_array("fiber_kernel", fiber, shape=(o, o, c), kind="f")
    if bias is not None:
        check_array("bias", bias, shape=(c,), kind="f")
    for name, b in blocks.items():
        _check_block(name, b)
    check_choice("interpret", interpret, (None, True, False))


def fused_separable_conv(
    x: jax.Array,
    basis: jax.Array,
    A: jax.Array | None,
    senders: jax.Array,
    receivers: jax.Array,
    edge_mask: jax.Array | None = None,
    fiber_kernel: jax.Array | None = None,
    bias: jax.Array | None = None,
    *,
    interpret: bool | None = None,
    block_nodes: int = 16,
    block_edges: int = 32,
    block_channels: int = 64,
) -> jax.Array:
    """Fused separable group convolution (same semantics as ``fused_separable_conv_reference``).

    g[n,o,c] = sum_{e: r_e=n, m_e} (basis[e,o] @ A)[c] x[s_e,o,c];
    h[n,p,c] = (1/O) sum_o F[o,p,c] g[n,o,c] + bias[c]  (h = g + bias without ``fiber_kernel``).
    Neither the spatial kernel nor the messages ([E, O, C]) are materialised. Differentiable once
    (custom VJP for x, basis, A, fiber_kernel, bias); a second derivative raises NotImplementedError.

    Args:
      x: f[N, O, C] node features on the orientation grid (N >= 1).
      basis: f[E, O, Bd] spatial basis (window folded in); with ``A = None``, the spatial kernel
        f[E, O, C] itself.
      A: f[Bd, C] basis-to-channel weights, or None.
      senders, receivers: int[E] node indices in [0, N) (any order; E may be 0).
      edge_mask: bool[E] or None; False edges contribute nothing.
      fiber_kernel: f[O, O, C] or None.  bias: f[C] or None.
      interpret: None -> Pallas interpreter on CPU, compiled kernel on GPU/TPU.
      block_nodes: receivers per program (R).  block_edges: edges per inner chunk (Et; also the row
        tile of the backward dbasis/dA kernel).  block_channels: channels per program (Ct).
        All are clipped/rounded per backend (see ``plan``).
    Returns:
      h: f[N, O, C] in promote_types(x.dtype, float32).
    """
    x, basis, A, senders, receivers, edge_mask, fiber_kernel, bias = map(
        _as_array, (x, basis, A, senders, receivers, edge_mask, fiber_kernel, bias)
    )
    blocks = dict(block_nodes=block_nodes, block_edges=block_edges, block_channels=block_channels)
    _validate(x, basis, A, senders, receivers, edge_mask, fiber_kernel, bias, blocks, interpret)
    interp = default_interpret(interpret)
    n, _, c = x.shape
    bd = c if A is None else basis.shape[2]
    p = plan(n, c, bd, target=kernel_target(interp), **blocks)
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    cast = lambda a: None if a is None else jnp.asarray(a, dtype)  # noqa: E731
    return _fused_jit(
        cast(x),
        cast(basis),
        cast(A),
        cast(fiber_kernel),
        cast(bias),
        jnp.asarray(senders),
        jnp.asarray(receivers),
        None if edge_mask is None else jnp.asarray(edge_mask),
        p,
        interp,
    )


def separable_conv(
    x: jax.Array,
    k_spatial: jax.Array,
    k_fiber: jax.Array | None,
    senders: jax.Array,
    receivers: jax.Array,
    edge_mask: jax.Array | None = None,
    *,
    bias: jax.Array | None = None,
    interpret: bool | None = None,
    **blocks,
) -> jax.Array:
    """The model's ``separable_conv`` signature on the kernel (spatial kernel given, not its basis).

    h[n,p,c] = (1/O) sum_o k_fiber[o,p,c] sum_{e: r_e=n, m_e} k_spatial[e,o,c] x[s_e,o,c] (+ bias).
    Args: x f[N, O, C]; k_spatial f[E, O, C]; k_fiber f[O, O, C] or None; senders, receivers int[E];
    edge_mask bool[E] or None. Cheaper still is ``fused_separable_conv`` with the basis and A, which
    never materialises k_spatial.
    """
    return fused_separable_conv(
        x, k_spatial, None, senders, receivers, edge_mask, k_fiber, bias, interpret=interpret, **blocks
    )
