"""Loop-based numpy references for `zoo.rl.grpo_core` (tests only).

Written independently of the vectorised code: one group / one sequence / one token at a time,
straight from the formulas of ``papers/_grpo_family.md`` §2–§5. float64 throughout.
"""

from __future__ import annotations

import math

import numpy as np


def group_advantages_ref(rewards, *, norm="std", eps=1e-6, valid=None):
    r = np.asarray(rewards, np.float64)
    b_, g_ = r.shape
    v = np.ones((b_, g_), bool) if valid is None else np.asarray(valid, bool)
    out = np.zeros((b_, g_))
    if norm == "batch":
        vals = [r[b, i] for b in range(b_) for i in range(g_) if v[b, i]]
        mu_all = sum(vals) / max(len(vals), 1)
        sd_all = math.sqrt(sum((x - mu_all) ** 2 for x in vals) / max(len(vals) - 1, 1))
    for b in range(b_):
        members = [i for i in range(g_) if v[b, i]]
        if len(members) < 2:
            continue
        mu = sum(r[b, i] for i in members) / len(members)
        sd = math.sqrt(sum((r[b, i] - mu) ** 2 for i in members) / (len(members) - 1))
        for i in members:
            if norm == "std":
                out[b, i] = (r[b, i] - mu) / (sd + eps)
            elif norm == "batch":
                out[b, i] = (r[b, i] - mu) / (sd_all + eps)
            else:
                out[b, i] = r[b, i] - mu
    return out


def ratio_ref(logp, logp_old, mask, *, level="token"):
    lp, lo, m = (np.asarray(x, np.float64) for x in (logp, logp_old, mask))
    n_, t_ = lp.shape
    out = np.ones((n_, t_))
    for n in range(n_):
        if level == "token":
            for t in range(t_):
                if m[n, t]:
                    out[n, t] = math.exp(lp[n, t] - lo[n, t])
        else:
            toks = [lp[n, t] - lo[n, t] for t in range(t_) if m[n, t]]
            val = math.exp(sum(toks) / len(toks)) if toks else 1.0
            out[n, :] = val
    return out


def clipped_pg_loss_ref(logp, logp_old, adv, mask, *, clip_low=0.2, clip_high=0.2, dual_clip=None, level="token"):
    rho = ratio_ref(logp, logp_old, mask, level=level)
    a, m = np.asarray(adv, np.float64), np.asarray(mask, np.float64)
    out = np.zeros_like(rho)
    for n in range(rho.shape[0]):
        for t in range(rho.shape[1]):
            if not m[n, t]:
                continue
            r, A = rho[n, t], a[n, t]
            rc = min(max(r, 1 - clip_low), 1 + clip_high)
            val = -min(r * A, rc * A)
            if dual_clip is not None and A < 0:
                val = min(val, dual_clip * abs(A))
            out[n, t] = val
    return out


def kl_penalty_ref(logp, logp_ref, *, estimator="k3", clamp_delta=None, clamp_out=None):
    lp, lr = np.asarray(logp, np.float64), np.asarray(logp_ref, np.float64)
    out = np.zeros_like(lp)
    for idx in np.ndindex(lp.shape):
        d = lr[idx] - lp[idx]
        if clamp_delta is not None:
            lo, hi = (-clamp_delta, clamp_delta) if np.isscalar(clamp_delta) else clamp_delta
            d = min(max(d, lo), hi)
        if estimator == "k1":
            k = -d
        elif estimator == "k2":
            k = 0.5 * d * d
        else:  # k3 and k3_st share the forward value
            k = math.exp(d) - d - 1
        if clamp_out is not None:
            lo, hi = (-clamp_out, clamp_out) if np.isscalar(clamp_out) else clamp_out
            k = min(max(k, lo), hi)
        out[idx] = k
    return out


def aggregate_ref(loss, mask, *, agg="token_mean", t_max=None, weights=None):
    L, m = np.asarray(loss, np.float64), np.asarray(mask, np.float64)
    w = np.ones_like(L) if weights is None else np.asarray(weights, np.float64)
    n_, t_ = L.shape
    tm = t_ if t_max is None else t_max
    total, count = 0.0, 0.0
    rows = []
    for n in range(n_):
        s, c = 0.0, 0.0
        for t in range(t_):
            if m[n, t]:
                s += L[n, t] * w[n, t]
                c += 1
        total += s
        count += c
        if c > 0:
            rows.append(s / c if agg == "seq_mean_token_mean" else s)
    if agg == "token_mean":
        return total / max(count, 1.0)
    if agg == "const_norm":
        return total / (n_ * tm)
    if agg == "sum_over_tmax":
        return total / tm
    return sum(rows) / max(len(rows), 1)


def grpo_objective_ref(logp, logp_old, logp_ref, adv, mask, *, clip_low=0.2, clip_high=0.2, dual_clip=None,
                       kl_coef=0.0, kl_estimator="k3", agg="token_mean", t_max=None, entropy_coef=0.0,
                       weights=None, entropy=None, level="token"):
    pg = clipped_pg_loss_ref(logp, logp_old, adv, mask, clip_low=clip_low, clip_high=clip_high,
                             dual_clip=dual_clip, level=level)
    if kl_coef:
        pg = pg + kl_coef * kl_penalty_ref(logp, logp_ref, estimator=kl_estimator) * np.asarray(mask, np.float64)
    loss = aggregate_ref(pg, mask, agg=agg, t_max=t_max, weights=weights)
    if entropy is not None and entropy_coef:
        loss -= entropy_coef * aggregate_ref(entropy, mask, agg=agg, t_max=t_max)
    return loss
