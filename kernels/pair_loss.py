r"""Fused, tiled Multi-Similarity loss (forward and custom-VJP backward) that never forms S = E E^T.

Math (E: f[B, D] unit rows, labels i[B]; spec ``papers/ms_loss.md`` §4, loss of arXiv 1904.06627 Eq. 9):

    pass 1 (mining statistics)  mp_i = min_{j in P_i} S_ij,   mn_i = max_{k in N_i} S_ik
    pass 2 (weighting)          P^_i = {j in P_i : S_ij - eps < mn_i},  N^_i = {k in N_i : S_ik + eps > mp_i}
                                lp_i = log(1 + sum_{P^_i} e^{-alpha(S_ij - lam)}),  ln_i = log(1 + sum_{N^_i} e^{beta(S_ik - lam)})
                                L = 1/B sum_i valid_i (lp_i / alpha + ln_i / beta),  valid_i = |P^_i| > 0 and |N^_i| > 0
    backward                    G_ij = g/B valid_i [ -1{j in P^_i} e^{-alpha(S_ij-lam) - lp_i} + 1{j in N^_i} e^{beta(S_ij-lam) - ln_i} ]
                                dE = G E + G^T E

Functions:
  ``ms_loss_reference``  the jnp reference (``zoo.representation.ms_loss.ms_loss``; materialises B x B).
  ``ms_loss``            the same value and gradient from Pallas kernels (``jax.custom_vjp`` in E).
  ``ms_loss_stats``      the forward kernel's per-anchor residuals (mp, mn, lp, ln, valid), for tests/debugging.
  ``plan``               the tiling a call will use.

Kernels (grid over row blocks of ``block_m`` anchors; inner ``fori_loop`` over column tiles of ``block_n``):
  forward: two sweeps over the column tiles per row block — sweep 1 keeps the running (mp, mn), sweep 2
    recomputes each S tile, applies the mined masks and updates two online log-sum-exps per row that start
    at (max 0, sum 1) (the "1 +"), rescaled by the running max as in flash-attention. Residuals: 5 floats
    per anchor; nothing of size B x B is written.
  backward A (grid over row blocks): recompute S and G tiles, ``dE_rows += G_t E_cols``.
  backward B (grid over column blocks, loop over row tiles with those rows' residuals): ``dE_cols += G_t^T
    E_rows``. dE = A + B; no atomics.

Choices that are ours:
  - Padding in the wrapper: B up to a multiple of both block sizes (padded anchors are invalid and padded
    columns belong to no set), D as the backend needs (Triton: a power of two >= 16; zero columns change
    no similarity). Block sizes are clipped to the problem (Triton: powers of two >= 16).
  - alpha, beta, lam, eps may be traced (one small f[1, 8] operand); ``mining`` and the tiling are static.
    There is no gradient w.r.t. the hyperparameters or labels (the mining masks are piecewise constant).
  - Computation in ``promote_types(E.dtype, float32)``; S tiles from one ``dot_general`` per tile in the
    same orientation in every kernel, so forward and backward mine identical pairs.
  - Eager calls validate values on the host like the reference (NaN scan, single-class batches raise);
    under ``jit`` only shapes are checked.
TPU (Mosaic) lowering is untested; GPU (Triton) lowering has not been run by the author of this module.
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

from zoo.checks import check_choice, check_range

from ._common import default_interpret, kernel_target, next_pow2, prev_pow2, round_up

__all__ = ["Plan", "ms_loss", "ms_loss_reference", "ms_loss_stats", "plan"]


def ms_loss_reference(E: jax.Array, labels: jax.Array, *, alpha=2.0, beta=40.0, lam=0.5, eps=0.1,
                      mining: bool = True) -> jax.Array:
    """The jnp MS loss (``zoo.representation.ms_loss.ms_loss``): builds S, masks and exponents as B x B arrays."""
    from zoo.representation.ms_loss import ms_loss as _ref

    return _ref(E, labels, alpha=alpha, beta=beta, lam=lam, eps=eps, mining=mining)


# ------------------------------------------------------------------------------------ planning


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """Static tiling of one call (all Python ints)."""

    target: str  # "interpret" | "triton" | "mosaic"
    block_m: int  # anchors (rows) per program
    block_n: int  # columns per inner-loop step
    b_pad: int  # B rounded up to a multiple of both blocks
    d_pad: int  # D as the backend needs it

    @property
    def row_tiles(self) -> int:
        return self.b_pad // self.block_m

    @property
    def col_tiles(self) -> int:
        return self.b_pad // self.block_n


def plan(b: int, d: int, *, block_m: int = 64, block_n: int = 64, target: str = "interpret") -> Plan:
    """Tile sizes and padding for a batch of ``b`` embeddings of width ``d`` on ``target``."""
    check_choice("target", target, ("interpret", "triton", "mosaic"))
    check_range("b", b, low=1)
    check_range("d", d, low=1)
    if target == "triton":
        bm = min(max(16, prev_pow2(block_m)), max(16, next_pow2(b)))
        bn = min(max(16, prev_pow2(block_n)), max(16, next_pow2(b)))
        dp = max(16, next_pow2(d))
    elif target == "mosaic":
        bm = round_up(min(block_m, round_up(b, 8)), 8)
        bn = round_up(min(block_n, round_up(b, 128)), 128)
        dp = round_up(d, 128)
    else:
        bm = min(block_m, round_up(b, 8))
        bn = min(block_n, round_up(b, 8))
        dp = d
    return Plan(target=target, block_m=bm, block_n=bn, b_pad=round_up(b, math.lcm(bm, bn)), d_pad=dp)


# ------------------------------------------------------------------------------------ kernel bodies


def _hp(p, k):
    """Entry k of the [1, 8] hyperparameter row as a [1, 1] value (elementwise ops only: portable)."""
    idx = lax.broadcasted_iota(jnp.int32, p.shape, 1)
    return jnp.sum(jnp.where(idx == k, p, 0.0), axis=1, keepdims=True)


def _tile(er, ec, yr, yc, rid, cid, n):
    """S tile [bm, bn] and the unmined pos/neg masks (diagonal and padded columns excluded)."""
    s = lax.dot_general(er, ec, (((1,), (1,)), ((), ())), preferred_element_type=er.dtype)
    col_ok = cid < n
    same = yr == yc
    return s, same & (rid != cid) & col_ok, jnp.logical_not(same) & col_ok


def _mined(s, pos, neg, mp, mn, eps, mining):
    if not mining:
        return pos, neg
    return pos & (s - eps < mn), neg & (s + eps > mp)


def _fwd_kernel(p_ref, er_ref, yr_ref, e_ref, yc_ref, mp_ref, mn_ref, lp_ref, ln_ref, v_ref, *,
                n, bm, bn, col_tiles, mining):
    er = er_ref[...]
    dt = er.dtype
    p = p_ref[...].astype(dt)
    alpha, beta, lam, eps = (_hp(p, k) for k in range(4))
    yr = yr_ref[...]  # [bm, 1]
    rid = pl.program_id(0) * bm + lax.broadcasted_iota(jnp.int32, (bm, 1), 0)

    def load(t):
        start = pl.multiple_of(t * bn, bn)
        cid = start + lax.broadcasted_iota(jnp.int32, (1, bn), 1)
        return _tile(er, e_ref[pl.ds(start, bn), :], yr, yc_ref[:, pl.ds(start, bn)], rid, cid, n)

    def sweep1(t, c):
        mp, mn = c
        s, pos, neg = load(t)
        mp = jnp.minimum(mp, jnp.min(jnp.where(pos, s, jnp.inf), axis=1, keepdims=True))
        mn = jnp.maximum(mn, jnp.max(jnp.where(neg, s, -jnp.inf), axis=1, keepdims=True))
        return mp, mn

    inf = jnp.full((bm, 1), jnp.inf, dt)
    mp, mn = lax.fori_loop(0, col_tiles, sweep1, (inf, -inf))

    def online(m, sm, x, mask):
        xm = jnp.where(mask, x, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(xm, axis=1, keepdims=True))
        sm = sm * jnp.exp(m - m_new) + jnp.sum(jnp.where(mask, jnp.exp(xm - m_new), 0.0), axis=1, keepdims=True)
        return m_new, sm

    def sweep2(t, c):
        m_p, s_p, c_p, m_n, s_n, c_n = c
        s, pos, neg = load(t)
        pos, neg = _mined(s, pos, neg, mp, mn, eps, mining)
        m_p, s_p = online(m_p, s_p, -alpha * (s - lam), pos)
        m_n, s_n = online(m_n, s_n, beta * (s - lam), neg)
        c_p = c_p + jnp.sum(pos.astype(dt), axis=1, keepdims=True)
        c_n = c_n + jnp.sum(neg.astype(dt), axis=1, keepdims=True)
        return m_p, s_p, c_p, m_n, s_n, c_n

    zero, one = jnp.zeros((bm, 1), dt), jnp.ones((bm, 1), dt)
    m_p, s_p, c_p, m_n, s_n, c_n = lax.fori_loop(0, col_tiles, sweep2, (zero, one, zero, zero, one, zero))
    valid = (c_p > 0) & (c_n > 0) & (rid < n)
    mp_ref[...] = mp
    mn_ref[...] = mn
    lp_ref[...] = m_p + jnp.log(s_p)
    ln_ref[...] = m_n + jnp.log(s_n)
    v_ref[...] = valid.astype(dt)


def _g_tile(s, pos, neg, mp, mn, lp, ln, valid, p, mining):
    """G tile [bm, bn] (rows = anchors) from an S tile and the anchors' residuals; includes g / B."""
    alpha, beta, lam, eps, scale = (_hp(p, k) for k in range(5))
    pos, neg = _mined(s, pos, neg, mp, mn, eps, mining)
    ok = valid > 0
    wp = jnp.where(pos & ok, jnp.exp(-alpha * (s - lam) - lp), 0.0)
    wn = jnp.where(neg & ok, jnp.exp(beta * (s - lam) - ln), 0.0)
    return scale * (wn - wp)


def _bwd_rows_kernel(p_ref, er_ref, yr_ref, mp_ref, mn_ref, lp_ref, ln_ref, v_ref, e_ref, yc_ref, de_ref, *,
                     n, bm, bn, col_tiles, mining):
    er = er_ref[...]
    dt = er.dtype
    p = p_ref[...].astype(dt)
    yr = yr_ref[...]
    res = (mp_ref[...], mn_ref[...], lp_ref[...], ln_ref[...], v_ref[...])
    rid = pl.program_id(0) * bm + lax.broadcasted_iota(jnp.int32, (bm, 1), 0)

    def step(t, acc):
        start = pl.multiple_of(t * bn, bn)
        cid = start + lax.broadcasted_iota(jnp.int32, (1, bn), 1)
        ec = e_ref[pl.ds(start, bn), :]
        s, pos, neg = _tile(er, ec, yr, yc_ref[:, pl.ds(start, bn)], rid, cid, n)
        g = _g_tile(s, pos, neg, *res, p, mining)
        return acc + lax.dot_general(g, ec, (((1,), (0,)), ((), ())), preferred_element_type=dt)

    de_ref[...] = lax.fori_loop(0, col_tiles, step, jnp.zeros(er.shape, dt)).astype(de_ref.dtype)


def _bwd_cols_kernel(p_ref, ec_ref, yc_ref, e_ref, yr_ref, mp_ref, mn_ref, lp_ref, ln_ref, v_ref, de_ref, *,
                     n, bm, bn, row_tiles, mining):
    ec = ec_ref[...]  # [bn, Dp]: this program's columns
    dt = ec.dtype
    p = p_ref[...].astype(dt)
    yc = yc_ref[...]  # [1, bn]
    cid = pl.program_id(0) * bn + lax.broadcasted_iota(jnp.int32, (1, bn), 1)

    def step(t, acc):
        start = pl.multiple_of(t * bm, bm)
        rows = pl.ds(start, bm)
        rid = start + lax.broadcasted_iota(jnp.int32, (bm, 1), 0)
        er = e_ref[rows, :]
        s, pos, neg = _tile(er, ec, yr_ref[rows, :], yc, rid, cid, n)
        g = _g_tile(s, pos, neg, mp_ref[rows, :], mn_ref[rows, :], lp_ref[rows, :], ln_ref[rows, :],
                    v_ref[rows, :], p, mining)
        return acc + lax.dot_general(g, er, (((0,), (0,)), ((), ())), preferred_element_type=dt)

    de_ref[...] = lax.fori_loop(0, row_tiles, step, jnp.zeros(ec.shape, dt)).astype(de_ref.dtype)


# ------------------------------------------------------------------------------------ pallas calls


@dataclasses.dataclass(frozen=True)
class _Cfg:
    n: int
    d: int
    plan: Plan
    mining: bool
    interpret: bool


def _compiler_params(p: Plan):
    if p.target != "triton":
        return None
    from jax.experimental.pallas import triton as plgpu  # GPU-only import

    return plgpu.CompilerParams(num_warps=4 if p.block_m * p.block_n <= 64 * 64 else 8)


def _pad(cfg: _Cfg, E, labels):
    p = cfg.plan
    ep = jnp.pad(E, ((0, p.b_pad - cfg.n), (0, p.d_pad - cfg.d)))
    y = jnp.pad(labels.astype(jnp.int32), (0, p.b_pad - cfg.n), constant_values=-1)
    return ep, y[:, None], y[None, :]


def _forward(cfg: _Cfg, E, labels, hp):
    p = cfg.plan
    ep, yr, yc = _pad(cfg, E, labels)
    dt = ep.dtype
    col = jax.ShapeDtypeStruct((p.b_pad, 1), dt)
    row_block = pl.BlockSpec((p.block_m, 1), lambda i: (i, 0))
    kern = functools.partial(_fwd_kernel, n=cfg.n, bm=p.block_m, bn=p.block_n, col_tiles=p.col_tiles,
                             mining=cfg.mining)
    outs = pl.pallas_call(
        kern,
        out_shape=[col] * 5,
        grid=(p.row_tiles,),
        in_specs=[
            pl.BlockSpec((1, 8), lambda i: (0, 0)),
            pl.BlockSpec((p.block_m, p.d_pad), lambda i: (i, 0)),
            row_block,
            pl.BlockSpec((p.b_pad, p.d_pad), lambda i: (0, 0)),
            pl.BlockSpec((1, p.b_pad), lambda i: (0, 0)),
        ],
        out_specs=[row_block] * 5,
        interpret=cfg.interpret,
        compiler_params=None if cfg.interpret else _compiler_params(p),
        name="ms_loss_fwd",
    )(hp, ep, yr, ep, yc)
    mp, mn, lp, ln, v = outs
    alpha, beta = hp[0, 0].astype(dt), hp[0, 1].astype(dt)
    loss = jnp.sum(jnp.where(v[:, 0] > 0, lp[:, 0] / alpha + ln[:, 0] / beta, 0.0)) / cfg.n
    return loss, outs


def _backward(cfg: _Cfg, E, labels, hp, res, g):
    p = cfg.plan
    ep, yr, yc = _pad(cfg, E, labels)
    dt = ep.dtype
    hp = hp.at[0, 4].set((g / cfg.n).astype(hp.dtype))
    full_col = pl.BlockSpec((p.b_pad, 1), lambda i: (0, 0))
    rows_in = [pl.BlockSpec((p.block_m, 1), lambda i: (i, 0))] * 5
    cp = None if cfg.interpret else _compiler_params(p)
    out = jax.ShapeDtypeStruct((p.b_pad, p.d_pad), dt)
    de_rows = pl.pallas_call(
        functools.partial(_bwd_rows_kernel, n=cfg.n, bm=p.block_m, bn=p.block_n, col_tiles=p.col_tiles,
                          mining=cfg.mining),
        out_shape=out,
        grid=(p.row_tiles,),
        in_specs=[pl.BlockSpec((1, 8), lambda i: (0, 0)),
                  pl.BlockSpec((p.block_m, p.d_pad), lambda i: (i, 0)),
                  pl.BlockSpec((p.block_m, 1), lambda i: (i, 0)),
                  *rows_in,
                  pl.BlockSpec((p.b_pad, p.d_pad), lambda i: (0, 0)),
                  pl.BlockSpec((1, p.b_pad), lambda i: (0, 0))],
        out_specs=pl.BlockSpec((p.block_m, p.d_pad), lambda i: (i, 0)),
        interpret=cfg.interpret, compiler_params=cp, name="ms_loss_bwd_rows",
    )(hp, ep, yr, *res, ep, yc)
    de_cols = pl.pallas_call(
        functools.partial(_bwd_cols_kernel, n=cfg.n, bm=p.block_m, bn=p.block_n, row_tiles=p.row_tiles,
                          mining=cfg.mining),
        out_shape=out,
        grid=(p.col_tiles,),
        in_specs=[pl.BlockSpec((1, 8), lambda i: (0, 0)),
                  pl.BlockSpec((p.block_n, p.d_pad), lambda i: (i, 0)),
                  pl.BlockSpec((1, p.block_n), lambda i: (0, i)),
                  pl.BlockSpec((p.b_pad, p.d_pad), lambda i: (0, 0)),
                  full_col,
                  *([full_col] * 5)],
        out_specs=pl.BlockSpec((p.block_n, p.d_pad), lambda i: (i, 0)),
        interpret=cfg.interpret, compiler_params=cp, name="ms_loss_bwd_cols",
    )(hp, ep, yc, ep, yr, *res)
    return (de_rows + de_cols)[: cfg.n, : cfg.d]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(cfg: _Cfg, E, labels, hp):
    return _forward(cfg, E, labels, hp)[0]


def _fused_fwd(cfg, E, labels, hp):
    loss, res = _forward(cfg, E, labels, hp)
    return loss, (E, labels, hp, res)


def _fused_bwd(cfg, saved, g):
    E, labels, hp, res = saved
    return _backward(cfg, E, labels, hp, res, g).astype(E.dtype), None, None


_fused.defvjp(_fused_fwd, _fused_bwd)
_fused_jit = jax.jit(_fused, static_argnums=(0,))
_forward_jit = jax.jit(_forward, static_argnums=(0,))


# ------------------------------------------------------------------------------------ public API


def _prepare(E, labels, alpha, beta, lam, eps, mining, block_m, block_n, interpret):
    from zoo.representation.ms_loss import _check_embeddings, _check_ms_hparams  # shared boundary checks

    E = E if hasattr(E, "shape") else np.asarray(E)
    labels = labels if hasattr(labels, "shape") else np.asarray(labels)
    E, labels = _check_embeddings(E, labels)
    _check_ms_hparams(alpha, beta, lam, eps, mining)
    for name, b in (("block_m", block_m), ("block_n", block_n)):
        if isinstance(b, bool) or not isinstance(b, int):
            raise ValueError(f"{name}: expected a positive int, got {b!r}")
        check_range(name, b, low=1)
    check_choice("interpret", interpret, (None, True, False))
    interp = default_interpret(interpret)
    dt = jnp.promote_types(E.dtype, jnp.float32)
    n, d = E.shape
    cfg = _Cfg(n=n, d=d, plan=plan(n, d, block_m=block_m, block_n=block_n, target=kernel_target(interp)),
               mining=mining, interpret=interp)
    hp = jnp.zeros((1, 8), dt).at[0, :4].set(jnp.stack([jnp.asarray(v, dt) for v in (alpha, beta, lam, eps)]))
    return cfg, E.astype(dt), labels, hp


def ms_loss(E: jax.Array, labels: jax.Array, *, alpha=2.0, beta=40.0, lam=0.5, eps=0.1, mining: bool = True,
            block_m: int = 64, block_n: int = 64, interpret: bool | None = None) -> jax.Array:
    """The MS loss from fused Pallas kernels; same value and gradient (in E) as ``ms_loss_reference``.

    Args:
      E: f[B, D] unit-norm embeddings (B >= 2).  labels: i[B] (at least two classes in an eager call).
      alpha, beta, lam, eps: as the reference (may be traced; no gradient flows to them).
      mining: static; False skips mining.
      block_m, block_n: anchors per program / columns per inner step (clipped; powers of two >= 16 on GPU).
      interpret: None -> Pallas interpreter on CPU, compiled kernels on GPU/TPU.
    Returns:
      f[] in ``promote_types(E.dtype, float32)`` (float32 for bf16 inputs). Memory: O(B D), never O(B^2).
    """
    cfg, E, labels, hp = _prepare(E, labels, alpha, beta, lam, eps, mining, block_m, block_n, interpret)
    return _fused_jit(cfg, E, labels, hp)


def ms_loss_stats(E: jax.Array, labels: jax.Array, *, alpha=2.0, beta=40.0, lam=0.5, eps=0.1,
                  mining: bool = True, block_m: int = 64, block_n: int = 64, interpret: bool | None = None) -> dict:
    """The forward kernel's per-anchor residuals: ``{min_pos, max_neg, lse_pos, lse_neg, valid}``, each f[B].

    ``min_pos``/``max_neg`` are the mining thresholds (+inf / -inf for an empty set), ``lse_*`` the
    log(1 + sum e^x) of the mined sets, ``valid`` 1.0 where the anchor contributes.
    """
    cfg, E, labels, hp = _prepare(E, labels, alpha, beta, lam, eps, mining, block_m, block_n, interpret)
    _, outs = _forward_jit(cfg, E, labels, hp)
    names = ("min_pos", "max_neg", "lse_pos", "lse_neg", "valid")
    return {k: o[: cfg.n, 0] for k, o in zip(names, outs)}
