"""GPTQ in JAX (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers", arXiv:2210.17323), spec §5. Built on ``zoo.quant.core``.

Layout: ``W: f32[K, N]`` (Flax), calibration inputs ``X: f32[n, K]``; GPTQ sweeps the *rows* of
``W`` (torch's columns). Objective ``min_Ŵ ‖X W - X Ŵ‖²_F`` over quantized ``Ŵ``.

    H = (2/n) Σ_t x_t x_tᵀ, streamed: H ← H·n/(n+m) + (2/(n+m)) X_mᵀX_m  -> `hessian_init`, `hessian_update`
    dead rows (H_kk = 0): H_kk ← 1, W_k ← 0; act-order perm = argsort(-diag H)
    H ← H + λ·mean(diag H)·I;  U = chol(H⁻¹)ᵀ (H⁻¹ = UᵀU)
    for k = 0..K-1 (blocks of B rows, lazy updates):
        q_k = fq(w_k);  e_k = (w_k - q_k)/U_kk;  W_{j>k} -= U_kj e_k;  loss += ‖w_k - q_k‖²/(2U_kk²)
                                                                        -> `gptq_quantize`

Quantizer per row: ``tensor`` and ``oc`` with g = -1 use qparams fixed from the original W (the
reference calls ``find_params(W)`` before the dead-row fix); ``oc`` groups recompute qparams at
each group start from the rows ``W[k:k+g]`` as they stand in the lazily-updated matrix
("dynamic groups": errors of earlier *blocks* included, of the current block not — exactly the
reference's behaviour; identical to fully-updated rows when g is a multiple of B and aligned), or
take them from a table built on the original W ("static groups", the group of permuted row k is
``perm[k] // g``); ``ic`` computes per-row qparams from the current, fully error-compensated row
(AdaDim's per-IC GPTQ).

Ours, not the reference's: K is padded to a multiple of B with isolated identity rows (U block
diagonal, so they never touch real rows; their loss is masked); a failed Cholesky (NaN) is retried
with ``percdamp·10^j``, j = 1..3, and the damping used is returned (the reference crashes);
``g_idx[r]`` is the qparams row used by original row r for every granularity (oc: group id;
ic: r; per-column/tensor: 0).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_float_dtype, check_range, is_traced
from zoo.quant.core import QParams, QuantSpec, _fdtype, _qparams_2d, check_weight


class GPTQResult(NamedTuple):
    """Output of `gptq_quantize` (all in the original row order).

    codes: u8/i8[K, N]; qparams: QParams of shape ``()`` (tensor), ``[1, N]`` (oc, g = -1),
    ``[K/g, N]`` (oc groups, row r uses ``qparams[g_idx[r]]``), ``[K, N/g]`` (ic);
    g_idx: i32[K]; w_hat: float[K, N] (w's float dtype) = dequantized codes;
    loss: float[] = Σ_k ‖w_k - q_k‖²/(2U_kk²);
    percdamp: f32[] the damping actually used (> the requested one after a Cholesky retry).
    """

    codes: jax.Array
    qparams: QParams
    g_idx: jax.Array
    w_hat: jax.Array
    loss: jax.Array
    percdamp: jax.Array


def hessian_init(K: int, dtype=None) -> tuple[jax.Array, jax.Array]:
    """``(H, n) = (zeros[K, K], 0)``: an empty Hessian accumulator (``dtype``: a float dtype, default
    JAX's default float; `hessian_update` promotes it to the inputs' float dtype)."""
    if isinstance(K, bool) or not isinstance(K, int | np.integer) or K < 1:
        raise ValueError(f"K: expected a positive int, got {K!r}")
    dtype = check_float_dtype("dtype", dtype)
    return jnp.zeros((K, K), dtype), jnp.zeros((), jnp.int32)


@jax.jit
def _hessian_update(H, n, x):
    m = x.shape[0]
    dt = _fdtype(H, x)
    H = H.astype(dt)
    xf = x.reshape(-1, x.shape[-1]).astype(dt)
    tot = (n + m).astype(dt)
    return H * (n.astype(dt) / tot) + (2.0 / tot) * (xf.T @ xf), n + m


def hessian_update(H: jax.Array, n: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Add a batch of layer inputs to the running Hessian ``H = (2/n) Σ x xᵀ``.

    Args:
      H: f32[K, K]; n: i32[] rows seen so far.
      x: f32[m, K] or f32[m, T, K] (then the ``m·T`` token rows all enter ``XᵀX`` but ``n``
        counts ``m``, as the reference counts sequences).
    Returns ``(H·n/(n+m) + 2/(n+m)·XᵀX, n + m)``, ``H`` in the inputs' float dtype (at least float32).
    """
    check_array("H", H, ndim=2)
    if not is_traced(n) and (np.ndim(n) != 0 or int(n) < 0):
        raise ValueError(f"n: expected a non-negative int scalar (rows seen so far), got {n!r}")
    K = jnp.shape(H)[0]
    check_array("H", H, shape=(K, K))
    check_array("x", x, ndim=(2, 3), kind="iuf")
    if jnp.shape(x)[-1] != K:
        raise ValueError(f"x: expected last dim K={K} (the Hessian's size), got shape {tuple(jnp.shape(x))}")
    if jnp.shape(x)[0] == 0:
        raise ValueError("x: the calibration batch is empty")
    return _hessian_update(jnp.asarray(H), jnp.asarray(n, jnp.int32), jnp.asarray(x))


def _upper_chol_inv(H, percdamp):
    """``U = chol((H + λ·mean(diag H)·I)⁻¹)ᵀ``, retrying with λ·10^j (j <= 3) while it has NaNs."""
    K = H.shape[0]
    eye = jnp.eye(K, dtype=H.dtype)
    mean_diag = jnp.mean(jnp.diag(H))

    def attempt(j):
        lam = percdamp * 10.0 ** j.astype(H.dtype)
        L = jnp.linalg.cholesky(H + lam * mean_diag * eye)
        Hinv = jax.scipy.linalg.cho_solve((L, True), eye)
        return jnp.linalg.cholesky(Hinv).T, lam

    def ok(U):
        return jnp.all(jnp.isfinite(U))

    U0, lam0 = attempt(jnp.zeros((), jnp.int32))

    def body(c):
        j, _, _ = c
        U, lam = attempt(j + 1)
        return j + 1, U, lam

    _, U, lam = jax.lax.while_loop(lambda c: (~ok(c[1])) & (c[0] < 3), body, (jnp.zeros((), jnp.int32), U0, lam0))
    return U, lam


@functools.partial(jax.jit, static_argnames=("spec", "blocksize", "act_order", "static_groups"))
def _gptq(w, H, percdamp, *, spec: QuantSpec, blocksize: int, act_order: bool, static_groups: bool):
    dt = jnp.promote_types(w.dtype, jnp.float32)
    W, H = w.astype(dt), H.astype(dt)
    K, N = W.shape
    g = spec.group_size
    gran = spec.granularity
    oc_groups = gran == "oc" and g != -1
    fixed = _qparams_2d(W, spec, "minmax") if not (oc_groups or gran == "ic") else None

    dead = jnp.diag(H) == 0
    H = H + jnp.diag(dead.astype(dt))
    W = jnp.where(dead[:, None], 0.0, W)
    table0 = _qparams_2d(W, spec, "minmax") if (oc_groups and static_groups) else None
    perm = jnp.argsort(-jnp.diag(H)) if act_order else jnp.arange(K)
    invperm = jnp.argsort(perm)
    W, H = W[perm], H[perm][:, perm]
    U, lam = _upper_chol_inv(H, percdamp.astype(dt))

    B = min(blocksize, K)
    nb = -(-K // B)
    Kp = nb * B
    W = jnp.pad(W, ((0, Kp - K), (0, 0)))
    U = jnp.pad(U, ((0, Kp - K), (0, Kp - K))) + jnp.diag((jnp.arange(Kp) >= K).astype(dt))
    perm_p = jnp.pad(perm, (0, Kp - K))
    row_spec = dataclasses.replace(spec, granularity="oc", group_size=-1)  # minmax over rows per column

    if gran == "ic":
        n_ic = 1 if g == -1 else N // g
        table = QParams(jnp.zeros((Kp, n_ic), dt), jnp.zeros((Kp, n_ic), dt))
    elif oc_groups and not static_groups:
        table = QParams(jnp.zeros((K // g, N), dt), jnp.zeros((K // g, N), dt))
    else:
        table = None
    cur = QParams(jnp.ones((1, N), dt), jnp.zeros((1, N), dt)) if (oc_groups and not static_groups) else None

    def row_quant(k, w_row, Wfull, cur, table):
        """Qparams of row k (expanded to [N]), and the updated carried state."""
        if gran == "ic":
            qp = _qparams_2d(w_row[None, :], spec, "minmax")  # [1, N/g]
            table = QParams(*(jax.lax.dynamic_update_slice(t, v, (k, 0)) for t, v in zip(table, qp)))
            rep = N // qp.scale.shape[1]
            return jnp.repeat(qp.scale[0], rep), jnp.repeat(qp.zero[0], rep), cur, table
        if oc_groups and static_groups:
            gid = perm_p[k] // g
            return table0.scale[gid], table0.zero[gid], cur, table
        if oc_groups:
            def new_group(c_t):
                rows = jax.lax.dynamic_slice(Wfull, (jnp.minimum(k, K - g), 0), (g, N))
                qp = _qparams_2d(rows, row_spec, "minmax")
                t = QParams(*(jax.lax.dynamic_update_slice(tt, v, (k // g, 0)) for tt, v in zip(c_t[1], qp)))
                return qp, t

            start = (k % g == 0) & (k < K)
            cur, table = jax.lax.cond(start, new_group, lambda c_t: c_t, (cur, table))
            return cur.scale[0], cur.zero[0], cur, table
        s, z = fixed
        return jnp.broadcast_to(s.reshape(-1), (N,)), jnp.broadcast_to(z.reshape(-1), (N,)), cur, table

    def block(b, carry):
        Wfull, Q, C, loss, cur, table = carry
        bs = b * B
        W1 = jax.lax.dynamic_slice(Wfull, (bs, 0), (B, N))
        U1 = jax.lax.dynamic_slice(U, (bs, bs), (B, B))

        def row(i, c):
            W1, Q1, C1, E1, loss, cur, table = c
            k = bs + i
            w_row = W1[i]
            d = U1[i, i]
            s, z, cur, table = row_quant(k, w_row, Wfull, cur, table)
            code = jnp.clip(jnp.round(w_row / s) + z, spec.qmin, spec.qmax)
            q = s * (code - z)
            loss = loss + jnp.where(k < K, jnp.sum((w_row - q) ** 2) / (2 * d * d), 0.0)
            e = (w_row - q) / d
            W1 = W1 - jnp.outer(U1[i], e)  # U1[i, :i] = 0: only rows >= i move
            return W1, Q1.at[i].set(q), C1.at[i].set(code), E1.at[i].set(e), loss, cur, table

        z0 = jnp.zeros((B, N), dt)
        _, Q1, C1, E1, loss, cur, table = jax.lax.fori_loop(0, B, row, (W1, z0, z0, z0, loss, cur, table))
        Ub = jax.lax.dynamic_slice(U, (bs, 0), (B, Kp))
        later = (jnp.arange(Kp) >= bs + B)[:, None]
        Wfull = Wfull - jnp.where(later, Ub.T @ E1, 0.0)
        Q = jax.lax.dynamic_update_slice(Q, Q1, (bs, 0))
        C = jax.lax.dynamic_update_slice(C, C1, (bs, 0))
        return Wfull, Q, C, loss, cur, table

    zK = jnp.zeros((Kp, N), dt)
    _, Q, C, loss, _, table = jax.lax.fori_loop(0, nb, block, (W, zK, zK, jnp.zeros((), dt), cur, table))
    Q, C = Q[:K][invperm], C[:K][invperm]
    if gran == "ic":
        qparams = QParams(table.scale[:K][invperm], table.zero[:K][invperm])
        g_idx = jnp.arange(K, dtype=jnp.int32)
    elif oc_groups:
        qparams = table0 if static_groups else table
        g_idx = (jnp.arange(K) // g if static_groups else invperm // g).astype(jnp.int32)
    else:
        qparams = fixed
        g_idx = jnp.zeros((K,), jnp.int32)
    return GPTQResult(C.astype(spec.code_dtype), qparams, g_idx, Q, loss, lam)


def gptq_quantize(
    w: jax.Array,
    H: jax.Array,
    spec: QuantSpec,
    *,
    blocksize: int = 128,
    percdamp: float = 0.01,
    act_order: bool = False,
    static_groups: bool = False,
) -> GPTQResult:
    """GPTQ-quantize one dense kernel given the Hessian of its inputs (module docstring).

    Args:
      w: f32[K, N] Flax kernel (rows = input features, the swept axis).
      H: f32[K, K] from `hessian_update` (``(2/n) XᵀX``).
      spec: the quantizer; ``oc`` groups run along K (GPTQ's ``groupsize``), ``ic`` groups along N.
      blocksize: rows per lazy-update block (B >= 1).
      percdamp: relative damping λ > 0.
      act_order: sweep rows by decreasing ``diag(H)``.
      static_groups: ``oc`` groups' qparams from the original W (keeps groups contiguous with act-order).
    Returns:
      `GPTQResult` in the original row order. jit-able (``spec`` and the flags static).
    """
    check_weight("w", w, spec)
    if jnp.ndim(w) != 2:
        raise ValueError(f"w: expected a 2-D kernel [K, N], got shape {tuple(jnp.shape(w))}")
    K = jnp.shape(w)[0]
    check_array("H", H, ndim=2)
    check_array("H", H, shape=(K, K))
    if isinstance(blocksize, bool) or not isinstance(blocksize, int | np.integer) or blocksize < 1:
        raise ValueError(f"blocksize: expected a positive int, got {blocksize!r}")
    if not is_traced(percdamp):
        check_range("percdamp", float(percdamp), low=0.0, low_inclusive=False)
    res = _gptq(
        jnp.asarray(w), jnp.asarray(H), jnp.asarray(percdamp),
        spec=spec, blocksize=int(blocksize), act_order=bool(act_order), static_groups=bool(static_groups),
    )
    if not is_traced(res.w_hat) and not bool(jnp.all(jnp.isfinite(res.w_hat))):
        raise ValueError(
            f"H: Cholesky of the damped Hessian failed even with percdamp={float(res.percdamp):g} "
            "(H is not positive semi-definite?)"
        )
    return res
