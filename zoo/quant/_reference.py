"""Float64 numpy references for the PTQ toolkit (test-only; written independently of core/gptq).

- `ref_minmax(v, bits, ...)`: min-max (s, z) of one group (reduction over ``axis``).
- `ref_fake_quant(w, s, z, bits, symmetric)`: ``s·(clip(round(w/s)+z) - z)`` with broadcasting.
- `ref_qparams(w, spec)`: full per-group qparams with explicit python loops over groups.
- `ref_gptq(w, H, spec, ...)`: a line-by-line port of the GPTQ reference loop (``fasterquant``)
  to numpy in Flax layout (rows of ``W[K, N]`` are the swept input features).

The references take any object with the `QuantSpec` fields (bits, symmetric, granularity,
group_size, include_zero, scale_floor, range_floor).
"""

from __future__ import annotations

import numpy as np


def _qrange(bits, symmetric):
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)


def ref_minmax(v, spec, axis=None):
    """(s, z) float64 of the min-max quantizer reducing ``v`` over ``axis`` (None = all)."""
    v = np.asarray(v, np.float64)
    lo, hi = v.min(axis=axis), v.max(axis=axis)
    if spec.symmetric:
        amax = np.maximum(np.abs(lo), np.abs(hi))
        s = np.maximum(amax / (2 ** (spec.bits - 1) - 1), spec.scale_floor)
        return s, np.zeros_like(s)
    if spec.include_zero:
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    levels = 2**spec.bits - 1
    s = np.maximum(np.maximum(hi - lo, spec.range_floor) / levels, spec.scale_floor)
    z = np.clip(np.round(-lo / s), 0, levels)
    return s, z


def ref_codes(w, s, z, spec):
    qmin, qmax = _qrange(spec.bits, spec.symmetric)
    return np.clip(np.round(np.asarray(w, np.float64) / s) + z, qmin, qmax)


def ref_fake_quant(w, s, z, spec):
    return s * (ref_codes(w, s, z, spec) - z)


def ref_qparams(w, spec):
    """Per-group min-max qparams of ``w: [K, N]`` by explicit loops (shape as in spec §2.1)."""
    w = np.asarray(w, np.float64)
    K, N = w.shape
    if spec.granularity == "tensor":
        return ref_minmax(w, spec)
    if spec.granularity == "oc":
        g = K if spec.group_size == -1 else spec.group_size
        s = np.zeros((K // g, N))
        z = np.zeros((K // g, N))
        for i in range(K // g):
            for j in range(N):
                s[i, j], z[i, j] = ref_minmax(w[i * g:(i + 1) * g, j], spec)
        return s, z
    g = N if spec.group_size == -1 else spec.group_size
    s = np.zeros((K, N // g))
    z = np.zeros((K, N // g))
    for i in range(K):
        for j in range(N // g):
            s[i, j], z[i, j] = ref_minmax(w[i, j * g:(j + 1) * g], spec)
    return s, z


def _row_qparams_ic(row, spec):
    N = row.shape[0]
    g = N if spec.group_size == -1 else spec.group_size
    s, z = ref_minmax(row.reshape(N // g, g), spec, axis=1)
    return np.repeat(s, g), np.repeat(z, g)


def ref_gptq(w, H, spec, *, blocksize=128, percdamp=0.01, act_order=False, static_groups=False):
    """GPTQ (``fasterquant``) in float64 numpy, Flax layout. Returns dict(w_hat, codes, g_idx, loss)."""
    W = np.array(w, np.float64)
    H = np.array(H, np.float64)
    K, N = W.shape
    g = spec.group_size
    oc_groups = spec.granularity == "oc" and g != -1
    # whole-tensor / per-column qparams come from the original W (before dead-row zeroing)
    if spec.granularity == "tensor":
        fixed = ref_minmax(W, spec)
    elif spec.granularity == "oc" and g == -1:
        fixed = ref_minmax(W, spec, axis=0)
    else:
        fixed = None
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[dead, :] = 0
    groups = None
    if oc_groups and static_groups:
        groups = [ref_minmax(W[i:i + g], spec, axis=0) for i in range(0, K, g)]
    perm = np.arange(K)
    if act_order:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[perm]
        H = H[perm][:, perm]
    invperm = np.argsort(perm)
    H = H + percdamp * np.mean(np.diag(H)) * np.eye(K)
    L = np.linalg.cholesky(H)
    Linv = np.linalg.inv(L)
    Hinv = Linv.T @ Linv
    U = np.linalg.cholesky(Hinv).T  # upper, Hinv = U^T U
    Q = np.zeros_like(W)
    C = np.zeros_like(W)
    losses = np.zeros_like(W)
    g_idx = np.zeros(K, np.int64)
    cur = fixed
    for i1 in range(0, K, blocksize):
        i2 = min(i1 + blocksize, K)
        W1 = W[i1:i2].copy()
        E1 = np.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            k = i1 + i
            w_row = W1[i]
            d = U1[i, i]
            if oc_groups:
                if static_groups:
                    gid = perm[k] // g
                    cur = groups[gid]
                else:
                    gid = k // g
                    if k % g == 0:  # from the lazily-updated full W, as the reference does
                        cur = ref_minmax(W[k:k + g], spec, axis=0)
                g_idx[perm[k]] = gid
                s, z = cur
            elif spec.granularity == "ic":
                s, z = _row_qparams_ic(w_row, spec)
                g_idx[perm[k]] = perm[k]
            else:
                s, z = cur
            c = ref_codes(w_row, s, z, spec)
            q = s * (c - z)
            Q[k], C[k] = q, c
            losses[k] = (w_row - q) ** 2 / d**2 / 2
            e = (w_row - q) / d
            W1[i:] -= np.outer(U1[i, i:], e)
            E1[i] = e
        W[i2:] -= U[i1:i2, i2:].T @ E1
    return dict(w_hat=Q[invperm], codes=C[invperm], g_idx=g_idx, loss=losses.sum())
