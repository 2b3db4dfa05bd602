r"""PRESTO — Predicting Rare Events by Shrinking Towards Proportional Odds, as pure JAX functions.

Paper: Gregory Faletto, Jacob Bien, "Predicting Rare Events by Shrinking Towards Proportional Odds",
ICML 2023 (PMLR 202), arXiv 2305.18700. Official code: gregfaletto/presto (R scripts around a
modified copy of ordinalNet 2.12); used as a reference for behaviour only, nothing is copied.

Model (``y`` in {0, ..., K-1}; the RARE class is the last one, K-1)::

    eta_k(x) = alpha_k + x^T beta_k,  k = 0..K-2       cumulative_logits
    P(y <= k | x) = sigmoid(eta_k)
    pi_k = sigmoid(eta_k) - sigmoid(eta_{k-1})         class_log_probs, predict_proba
    pi_{K-1} = 1 - sigmoid(eta_{K-2})                   rare_proba
    beta_k = sum_{l<=k} psi_l   (psi_0 = beta_0,        betas, from_betas
             psi_k = beta_k - beta_{k-1})

Estimator (Eq. of Sec. 3: the penalty on adjacent differences, as a lasso on ``psi``)::

    min_{alpha, psi}  NLL(alpha, psi) + lam [ a ||M * psi||_1 + (1-a)/2 ||M * psi||_2^2 ]
    NLL = -(1/n) sum_i log pi_{y_i}(x_i)               nll (+inf if a training row is infeasible)
    M = 1 everywhere (penalize_first=True, the official default) or 0 on block psi_0

    log pi_0     = -softplus(-eta_0)                   (Sec. 2.4 of the zoo spec: stable forms)
    log pi_{K-1} = -softplus(eta_{K-2})
    log pi_k     = -softplus(-a) + log1mexp(b - a) - softplus(b),  a = eta_k > b = eta_{k-1}
                   (= a + log1mexp(b-a) - softplus(a) - softplus(b); -inf if b >= a)

Functions:

* ``nll``, ``nll_grad`` (closed form: ``dNLL/deta``, then ``X^T G / n`` and a reverse cumsum), ``penalty``.
* ``fit``: FISTA (accelerated proximal gradient) in ``lax.while_loop`` with backtracking on the
  Lipschitz constant, monotone restarts, infeasible-step rejection.
* ``standardize`` / ``unstandardize`` (population SD, the CORRECT intercept back-transform with the
  cumulative ``beta_k``), ``lambda_max``, ``lambda_grid``, ``fit_path`` (``lax.scan``, warm starts),
  ``cv_brier`` (folds as 0/1 weights, vmapped), ``presto_pipeline`` / ``fit_presto`` (the official
  tuning: 20 lambdas, ratio 0.01, 5 folds, Brier score, largest lambda among the minima, refit).
* Baselines: ``fit_proportional_odds`` (same solver, psi_1.. frozen at 0, lam = 0) and
  ``fit_rare_logistic`` (Newton logistic regression of 1{y = K-1}, :mod:`zoo.stats.glm`).
* Metrics: ``brier_multiclass``, ``rare_prob_mse``, ``osce_equal_freq``.

Choices that are the zoo's, not the paper's (the official solver is ordinalNet's coordinate descent):

* Solver: FISTA with backtracking (L doubles on failure, shrinks by 1.5 after each accepted step,
  starts at 1), a restart (momentum reset, step rejected) whenever the objective increases or the
  extrapolated point is infeasible, so the objective is monotone; stop on relative objective change
  <= ``tol`` (1e-9) of an accepted step, or ``max_iter`` (5000). The first/middle/last log-prob
  forms above are the spec's, rearranged (``a - softplus(a) = -softplus(-a)``) for accuracy at large ``a``.
* Held-out fold predictions are clipped at 0 and renormalised before the Brier score (the official
  CV scores a mis-specified predictor, see the docs page); ties in the CV curve pick the largest lambda.
* ``lambda_max`` is the official one (all psi entries, at the intercept-only fit); with
  ``penalize_first=False`` it is only an upper bound of the interesting range.
* Standardisation moments for a fold use the fold's training rows only (weighted moments); a column
  with zero spread is divided by 1. Intercepts start at the clipped (+-100) empirical cumulative logits.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range, is_traced
from zoo.stats import glm

__all__ = [
    "FitInfo",
    "PrestoParams",
    "TRACE_COUNTS",
    "betas",
    "brier_multiclass",
    "class_log_probs",
    "cumulative_logits",
    "cv_brier",
    "fit",
    "fit_path",
    "fit_presto",
    "fit_proportional_odds",
    "fit_rare_logistic",
    "fold_ids_from_key",
    "from_betas",
    "init_params",
    "lambda_grid",
    "lambda_max",
    "nll",
    "nll_grad",
    "osce_equal_freq",
    "penalty",
    "predict_proba",
    "presto_pipeline",
    "rare_prob_mse",
    "rare_proba",
    "standardize",
    "unstandardize",
]

_LN2 = math.log(2.0)
_LOGIT_CLIP = 100.0  # ordinalNet clips the starting intercepts to +-100

# How often each jitted entry point was traced (= compiled): a retracing diagnostic for tests.
TRACE_COUNTS: dict[str, int] = {"fit": 0, "fit_path": 0, "presto_pipeline": 0}


class PrestoParams(NamedTuple):
    """PRESTO parameters (a pytree): ``alpha: f[K-1]`` intercepts, ``psi: f[p, K-1]`` differences."""

    alpha: jax.Array
    psi: jax.Array


class FitInfo(NamedTuple):
    """FISTA diagnostics (a pytree; leading axes under ``vmap``/``scan``)."""

    n_iter: jax.Array  # i32[] iterations (accepted steps + restarts)
    objective: jax.Array  # f[]  NLL + penalty at the returned params
    converged: jax.Array  # bool[] relative objective change <= tol was reached


# ============================================================================ model


def betas(params: PrestoParams) -> jax.Array:
    """``B = cumsum(psi, axis=1)``: f[p, K-1], column k is beta_k."""
    return jnp.cumsum(params.psi, axis=1)


def from_betas(alpha, B) -> PrestoParams:
    """Inverse of :func:`betas`: ``psi_0 = beta_0``, ``psi_k = beta_k - beta_{k-1}``."""
    B = jnp.asarray(B)
    psi = jnp.concatenate([B[:, :1], jnp.diff(B, axis=1)], axis=1)
    return PrestoParams(alpha=jnp.asarray(alpha), psi=psi)


def cumulative_logits(params: PrestoParams, X) -> jax.Array:
    """``eta = alpha + X @ cumsum(psi)``: f[n, K-1] (no block design is ever built)."""
    return params.alpha + X @ betas(params)


def _log1mexp(t):
    """``log(1 - e^t)`` for ``t < 0`` (Maechler's switch at -ln 2)."""
    return jnp.where(t > -_LN2, jnp.log(-jnp.expm1(t)), jnp.log1p(-jnp.exp(t)))


def _log_probs_from_eta(eta):
    """``eta: f[n, K-1] -> log pi: f[n, K]``; ``-inf`` where ``eta_{k-1} >= eta_k`` (gradient-safe)."""
    sp = jax.nn.softplus
    first = -sp(-eta[:, :1])
    last = -sp(eta[:, -1:])
    a, b = eta[:, 1:], eta[:, :-1]
    t = b - a
    ok = t < 0
    ts = jnp.where(ok, t, -1.0)  # a safe value where infeasible: no NaN in values or gradients
    mid = jnp.where(ok, -sp(-a) + _log1mexp(ts) - sp(b), -jnp.inf)
    return jnp.concatenate([first, mid, last], axis=1)


def class_log_probs(params: PrestoParams, X) -> jax.Array:
    """``log pi_k(x_i)``: f[n, K] by the stable Sec. 2.4 forms; ``-inf`` where eta is non-increasing."""
    return _log_probs_from_eta(cumulative_logits(params, X))


def predict_proba(params: PrestoParams, X, clip: bool = False) -> jax.Array:
    """Class probabilities f[n, K] (raw differences of sigmoids, rows sum to 1).

    With non-parallel betas a new ``x`` can give negative ``pi_k``; ``clip=True`` clips at 0 and
    renormalises each row.
    """
    s = jax.nn.sigmoid(cumulative_logits(params, X))
    n = s.shape[0]
    cdf = jnp.concatenate([jnp.zeros((n, 1), s.dtype), s, jnp.ones((n, 1), s.dtype)], axis=1)
    P = jnp.diff(cdf, axis=1)
    if clip:
        P = jnp.maximum(P, 0.0)
        P = P / jnp.sum(P, axis=1, keepdims=True)
    return P


def rare_proba(params: PrestoParams, X) -> jax.Array:
    """``pi_{K-1}(x) = 1 - sigmoid(eta_{K-2}) = sigmoid(-eta_{K-2})``: f[n] (only the last boundary)."""
    return jax.nn.sigmoid(-(params.alpha[-1] + X @ betas(params)[:, -1]))


def _onehot(y, K, dtype):
    return (y[:, None] == jnp.arange(K)).astype(dtype)


def _nll_parts(params, X, y, w):
    """Shared pieces of the NLL and its gradient: (value, G = dloss_i/deta: f[n, K-1], weights)."""
    K = params.alpha.shape[0] + 1
    eta = cumulative_logits(params, X)
    lp = _log_probs_from_eta(eta)
    w = jnp.ones(X.shape[0], eta.dtype) if w is None else jnp.asarray(w, eta.dtype)
    Y = _onehot(y, K, eta.dtype)
    lp_y = jnp.sum(jnp.where(Y > 0, lp, 0.0), axis=1)
    infeasible = jnp.any((w > 0)[:, None] & ~jnp.isfinite(lp))
    val = jnp.sum(jnp.where(w > 0, w * -lp_y, 0.0)) / jnp.sum(w)
    val = jnp.where(infeasible, jnp.inf, val)
    # dloss_i/deta_c = -f_c / pi_c (c <= K-2), dloss_i/deta_{c-1} = +f_{c-1} / pi_c (c >= 1)
    log_f = -jax.nn.softplus(-eta) - jax.nn.softplus(eta)
    lp_y_safe = jnp.where(jnp.isfinite(lp_y), lp_y, 0.0)
    r = jnp.exp(log_f - lp_y_safe[:, None])
    G = -Y[:, :-1] * r + Y[:, 1:] * r
    G = jnp.where((w > 0)[:, None], G * w[:, None], 0.0) / jnp.sum(w)
    return val, G


def nll(params: PrestoParams, X, y, w=None) -> jax.Array:
    """Weighted mean negative log-likelihood: f[]; ``+inf`` if any row with ``w > 0`` is infeasible.

    Args: X: f[n, p]; y: i[n] in [0, K); w: f[n] >= 0 (0/1 weights select CV training folds) or None.
    """
    return _nll_parts(params, X, y, w)[0]


def nll_grad(params: PrestoParams, X, y, w=None) -> PrestoParams:
    """Closed-form gradient of :func:`nll` (Sec. 2.4): ``dalpha_k = sum_i G_ik``, ``dB = X^T G``,
    ``dpsi_l = sum_{k>=l} dB_k`` (reverse cumsum), with ``G`` the weighted ``dloss_i/deta_ik``."""
    return _nll_value_and_grad(params, X, y, w)[1]


def _nll_value_and_grad(params, X, y, w):
    val, G = _nll_parts(params, X, y, w)
    dB = X.T @ G
    dpsi = jnp.flip(jnp.cumsum(jnp.flip(dB, axis=1), axis=1), axis=1)
    return val, PrestoParams(alpha=jnp.sum(G, axis=0), psi=dpsi)


def _pen_mask(p, K, penalize_first, dtype):
    m = np.ones((p, K - 1))
    if not penalize_first:
        m[:, 0] = 0.0
    return jnp.asarray(m, dtype)


def penalty(params: PrestoParams, lam, penalize_first: bool = True, mix: float = 1.0) -> jax.Array:
    """``lam * sum M (a |psi| + (1-a)/2 psi^2)``: f[] (intercepts never penalised)."""
    M = _pen_mask(params.psi.shape[0], params.psi.shape[1] + 1, penalize_first, params.psi.dtype)
    psi = params.psi
    return lam * jnp.sum(M * (mix * jnp.abs(psi) + 0.5 * (1.0 - mix) * psi * psi))


def init_params(X, y, n_classes: int, w=None) -> PrestoParams:
    """Start: ``psi = 0``, ``alpha_k = logit(weighted share of y <= k)`` clipped to +-100 (increasing)."""
    X = jnp.asarray(X)
    dtype = X.dtype if jnp.issubdtype(X.dtype, jnp.floating) else jnp.result_type(float)
    w = jnp.ones(X.shape[0], dtype) if w is None else jnp.asarray(w, dtype)
    Y = _onehot(jnp.asarray(y), n_classes, dtype)
    cum = jnp.cumsum(Y.T @ w / jnp.sum(w))[:-1]
    alpha = jnp.clip(jnp.log(cum) - jnp.log1p(-cum), -_LOGIT_CLIP, _LOGIT_CLIP)
    return PrestoParams(alpha=alpha, psi=jnp.zeros((X.shape[1], n_classes - 1), dtype))


# ============================================================================ solver


def _fista(X, y, w, lam, mix, pen_mask, upd_mask, init, max_iter, tol, record=0):
    """FISTA on ``f(alpha, psi) + lam a ||M psi||_1``, smooth ``f = NLL + lam (1-a)/2 ||M psi||^2``.

    ``upd_mask`` (f[p, K-1]) freezes entries of psi at their initial value (0 for the PO baseline).
    ``record > 0`` also returns the objective after each of the first ``record`` iterations (tests).
    """
    dtype = X.dtype
    lam = jnp.asarray(lam, dtype)
    l1 = lam * mix * pen_mask
    l2 = lam * (1.0 - mix) * pen_mask

    def smooth(p):
        v, g = _nll_value_and_grad(p, X, y, w)
        v = v + 0.5 * jnp.sum(l2 * p.psi * p.psi)
        return v, PrestoParams(alpha=g.alpha, psi=upd_mask * (g.psi + l2 * p.psi))

    def smooth_value(p):
        return nll(p, X, y, w) + 0.5 * jnp.sum(l2 * p.psi * p.psi)

    def nonsmooth(p):
        return jnp.sum(l1 * jnp.abs(p.psi))

    def prox_step(z, g, L):
        a = z.alpha - g.alpha / L
        u = z.psi - g.psi / L
        psi = jnp.sign(u) * jnp.maximum(jnp.abs(u) - l1 / L, 0.0)
        return PrestoParams(alpha=a, psi=jnp.where(upd_mask > 0, psi, z.psi))

    def tree_axpy(a, x, y_):  # y + a * x
        return jax.tree.map(lambda xi, yi: yi + a * xi, x, y_)

    def tree_dot(x, y_):
        return sum(jnp.sum(xi * yi) for xi, yi in zip(jax.tree.leaves(x), jax.tree.leaves(y_)))

    eps = jnp.finfo(dtype).eps

    def cond(s):
        return (s["it"] < max_iter) & ~s["done"]

    def body(s):
        x, x_prev, t = s["x"], s["x_prev"], s["t"]
        t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        beta = (t - 1.0) / t_next
        z_c = tree_axpy(beta, jax.tree.map(jnp.subtract, x, x_prev), x)
        feas = jnp.isfinite(smooth_value(z_c))
        plain = (~feas) | (beta == 0)  # z = x: a plain proximal-gradient step
        z = jax.tree.map(lambda a, b: jnp.where(feas, a, b), z_c, x)
        fz, gz = smooth(z)

        def bt_cond(b):
            return ~b["ok"] & (b["k"] < 60)

        def bt_body(b):
            L = b["L"]
            new = prox_step(z, gz, L)
            fn = smooth_value(new)
            d = jax.tree.map(jnp.subtract, new, z)
            Q = fz + tree_dot(gz, d) + 0.5 * L * tree_dot(d, d)
            ok = jnp.isfinite(fn) & (fn <= Q + 10 * eps * jnp.abs(fz))
            return {"L": jnp.where(ok, L, 2.0 * L), "new": new, "fn": fn, "ok": ok, "k": b["k"] + 1}

        b0 = {"L": s["L"], "new": z, "fn": fz, "ok": jnp.zeros((), bool), "k": jnp.zeros((), jnp.int32)}
        b = jax.lax.while_loop(bt_cond, bt_body, b0)
        F_new = b["fn"] + nonsmooth(b["new"])
        accept = b["ok"] & (F_new <= s["F"])
        rel = jnp.abs(s["F"] - F_new) / jnp.maximum(jnp.abs(s["F"]), eps)
        # converged: an accepted step that barely moved the objective, or no progress from a plain step
        done = (accept & (rel <= tol)) | (~accept & plain)
        x_new = jax.tree.map(lambda a, c: jnp.where(accept, a, c), b["new"], x)
        out = {
            "x": x_new,
            "x_prev": x,  # on a restart x_prev = x: the next extrapolation is a plain step
            "t": jnp.where(accept & feas, t_next, 1.0),
            "L": jnp.where(accept, b["L"] / 1.5, b["L"]),
            "F": jnp.where(accept, F_new, s["F"]),
            "it": s["it"] + 1,
            "done": done,
            "conv": (accept & (rel <= tol)) | (~accept & plain & b["ok"]),
        }
        if record:
            out["hist"] = s["hist"].at[jnp.minimum(s["it"], record - 1)].set(out["F"])
        return out

    F0 = smooth_value(init) + nonsmooth(init)
    s0 = {
        "x": init,
        "x_prev": init,
        "t": jnp.ones((), dtype),
        "L": jnp.ones((), dtype),
        "F": F0,
        "it": jnp.zeros((), jnp.int32),
        "done": ~jnp.isfinite(F0),
        "conv": jnp.zeros((), bool),
    }
    if record:
        s0["hist"] = jnp.full((record,), jnp.nan, dtype)
    s = jax.lax.while_loop(cond, body, s0)
    info = FitInfo(n_iter=s["it"], objective=s["F"], converged=s["conv"])
    if record:
        return s["x"], info, s["hist"]
    return s["x"], info


# ============================================================================ validation


def _float_dtype(X):
    X = jnp.asarray(X)
    return X.dtype if jnp.issubdtype(X.dtype, jnp.floating) else jnp.result_type(float)


def _check_xy(X, y, n_classes, *, min_classes=3, require_all=True, w=None):
    """Eager checks outside jit (value checks are skipped for tracers)."""
    if not isinstance(n_classes, (int, np.integer)) or isinstance(n_classes, bool):
        raise ValueError(f"n_classes: expected an int, got {n_classes!r}")
    if n_classes < min_classes:
        what = "PRESTO needs an ordinal response with K >= 3 classes" if min_classes >= 3 else "need K >= 2"
        raise ValueError(f"n_classes: {what}, got {n_classes}")
    check_array("X", X, ndim=2, min_size=2)
    check_array("y", y, ndim=1)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y: expected the same number of rows, got {X.shape[0]} and {y.shape[0]}")
    if np.dtype(y.dtype).kind not in "iu":
        raise ValueError(f"y: expected integer ordinal labels in [0, {n_classes}), got dtype {y.dtype}")
    if not is_traced(y):
        yn = np.asarray(y)
        bad = (yn < 0) | (yn >= n_classes)
        if bad.any():
            raise ValueError(
                f"y: expected ordinal labels in [0, {n_classes}), got {int(yn[bad][0])} at index {int(np.argmax(bad))}"
            )
        if require_all:
            sel = yn if (w is None or is_traced(w)) else yn[np.asarray(w) > 0]
            missing = sorted(set(range(n_classes)) - set(np.unique(sel).tolist()))
            if missing:
                raise ValueError(f"y: every class 0..{n_classes - 1} must appear; missing {missing}")
    if w is not None:
        check_array("w", w, shape=(X.shape[0],))
        if not is_traced(w) and (np.any(np.asarray(w) < 0) or not np.any(np.asarray(w) > 0)):
            raise ValueError("w: expected non-negative weights with at least one positive entry")


def _check_lam_mix(lam, mix):
    if not is_traced(lam):
        lam_np = np.asarray(lam)
        if lam_np.ndim:
            if not np.all(np.isfinite(lam_np)) or np.any(lam_np < 0):
                raise ValueError(f"lam: expected finite values >= 0, got {lam_np.tolist()}")
        else:
            check_range("lam", float(lam_np), low=0.0)
            if not np.isfinite(lam_np):
                raise ValueError(f"lam: expected a finite value >= 0, got {float(lam_np)}")
    if not is_traced(mix):
        check_range("mix", float(mix), low=0.0, high=1.0)


# ============================================================================ fitting


def fit(
    X,
    y,
    lam,
    *,
    n_classes: int,
    penalize_first: bool = True,
    mix: float = 1.0,
    w=None,
    init: PrestoParams | None = None,
    max_iter: int = 5000,
    tol: float = 1e-9,
):
    """PRESTO at one ``lam`` by FISTA in ``lax.while_loop`` (X as given: standardise first, see ``fit_presto``).

    Args:
      X: f[n, p]; y: i[n] in [0, K); lam: f[] >= 0; n_classes: K >= 3 (static).
      penalize_first: also penalise ||beta_0||_1 (official default). mix: elastic-net a in [0, 1].
      w: f[n] 0/1 (or >= 0) sample weights (CV folds with static shapes). init: start (None: ``init_params``).
      max_iter, tol: FISTA stopping rule (relative objective change); traced, like ``lam``, so that
      changing them does not recompile (``n_classes`` and ``penalize_first`` are static).
    Returns: ``(PrestoParams, FitInfo)``. Vmappable over ``lam`` and ``w``; no recompiles across lam values.
    """
    _check_xy(X, y, n_classes, w=w)
    _check_lam_mix(lam, mix)
    dtype = _float_dtype(X)
    X = jnp.asarray(X, dtype)
    wv = jnp.ones(X.shape[0], dtype) if w is None else jnp.asarray(w, dtype)
    if init is None:
        init = _init_jit(X, jnp.asarray(y), n_classes, wv)
    return _fit_jit(X, jnp.asarray(y), jnp.asarray(lam, dtype), jnp.asarray(mix, dtype), wv, init,
                    n_classes, penalize_first, max_iter, tol)


@functools.partial(jax.jit, static_argnums=(6, 7))
def _fit_jit(X, y, lam, mix, w, init, n_classes, penalize_first, max_iter, tol):
    TRACE_COUNTS["fit"] += 1
    M = _pen_mask(X.shape[1], n_classes, penalize_first, X.dtype)
    return _fista(X, y, w, lam, mix, M, jnp.ones_like(M), init, max_iter, tol)


_init_jit = jax.jit(init_params, static_argnums=2)


def standardize(X, w=None):
    """Centre and scale columns by (weighted) mean and POPULATION SD; zero-SD columns divided by 1.

    Returns ``(Xs: f[n, p], mean: f[p], sd: f[p])``; with 0/1 weights the moments are the training fold's.
    """
    X = jnp.asarray(X, _float_dtype(X))
    w = jnp.ones(X.shape[0], X.dtype) if w is None else jnp.asarray(w, X.dtype)
    return _standardize(X, w)


@jax.jit
def _standardize(X, w):
    sw = jnp.sum(w)
    mean = w @ X / sw
    var = w @ (X - mean) ** 2 / sw
    sd = jnp.sqrt(var)
    tiny = 100 * jnp.finfo(X.dtype).eps * jnp.maximum(1.0, jnp.abs(mean))
    sd = jnp.where(sd > tiny, sd, 1.0)
    return (X - mean) / sd, mean, sd


def unstandardize(params_std: PrestoParams, mean, sd):
    """Raw-scale ``(alpha_raw: f[K-1], B_raw: f[p, K-1])``: ``B = cumsum(psi)/sd``, ``alpha = alpha_s - mean @ B``.

    (The official code subtracts ``mean @ psi_k / sd`` instead of the cumulative ``beta_k``: a bug.)
    """
    B = betas(params_std) / sd[:, None]
    return params_std.alpha - mean @ B, B


def lambda_max(Xs, y, n_classes: int, w=None, mix: float = 1.0):
    """``max_{j,k} |dNLL/dpsi_jk| / max(a, 0.01)`` at the intercept-only fit (psi = 0): f[]."""
    _check_xy(Xs, y, n_classes, w=w)
    _check_lam_mix(0.0, mix)
    return _lambda_max_jit(jnp.asarray(Xs, _float_dtype(Xs)), jnp.asarray(y), n_classes, w, mix)


def _lambda_max(Xs, y, n_classes, w, mix):
    p0 = init_params(Xs, y, n_classes, w)
    g = nll_grad(p0, Xs, y, w)
    return jnp.max(jnp.abs(g.psi)) / jnp.maximum(mix, 0.01)


_lambda_max_jit = jax.jit(_lambda_max, static_argnums=2)


def lambda_grid(lmax, n_lambda: int = 20, min_ratio: float = 0.01):
    """``n_lambda`` log-spaced values from ``lmax`` down to ``min_ratio * lmax`` (decreasing): f[n_lambda]."""
    if not isinstance(n_lambda, (int, np.integer)) or n_lambda < 1:
        raise ValueError(f"n_lambda: expected an int >= 1, got {n_lambda!r}")
    if not is_traced(min_ratio):
        check_range("min_ratio", float(min_ratio), low=0.0, high=1.0, low_inclusive=False)
    if not is_traced(lmax):
        check_range("lmax", float(lmax), low=0.0, low_inclusive=False)
    return _lambda_grid(lmax, n_lambda, min_ratio)


def _lambda_grid(lmax, n_lambda, min_ratio):
    lmax = jnp.asarray(lmax)
    if n_lambda == 1:
        return lmax[None]
    return lmax * jnp.exp(jnp.linspace(0.0, math.log(min_ratio), n_lambda).astype(lmax.dtype))


def fit_path(
    Xs,
    y,
    lambdas,
    *,
    n_classes: int,
    penalize_first: bool = True,
    mix: float = 1.0,
    w=None,
    max_iter: int = 5000,
    tol: float = 1e-9,
):
    """The lambda path in the given (decreasing) order by ``lax.scan`` with warm starts.

    Returns ``(PrestoParams with leading [n_lambda] axis, FitInfo with leading [n_lambda] axis)``.
    """
    _check_xy(Xs, y, n_classes, w=w)
    check_array("lambdas", lambdas, ndim=1)
    _check_lam_mix(lambdas, mix)
    dtype = _float_dtype(Xs)
    Xs = jnp.asarray(Xs, dtype)
    wv = jnp.ones(Xs.shape[0], dtype) if w is None else jnp.asarray(w, dtype)
    return _fit_path_jit(Xs, jnp.asarray(y), jnp.asarray(lambdas, dtype), jnp.asarray(mix, dtype), wv,
                         n_classes, penalize_first, max_iter, tol)


@functools.partial(jax.jit, static_argnums=(5, 6))
def _fit_path_jit(Xs, y, lambdas, mix, w, n_classes, penalize_first, max_iter, tol):
    TRACE_COUNTS["fit_path"] += 1
    return _path(Xs, y, lambdas, mix, w, n_classes, penalize_first, max_iter, tol)


def _path(Xs, y, lambdas, mix, w, n_classes, penalize_first, max_iter, tol):
    M = _pen_mask(Xs.shape[1], n_classes, penalize_first, Xs.dtype)
    U = jnp.ones_like(M)

    def step(params, lam):
        new, info = _fista(Xs, y, w, lam, mix, M, U, params, max_iter, tol)
        return new, (new, info)

    _, (params, info) = jax.lax.scan(step, init_params(Xs, y, n_classes, w), lambdas)
    return params, info


def brier_multiclass(P, y, w=None):
    """``mean_i sum_k (1{y_i = k} - P_ik)^2`` (weighted mean with ``w``): f[]."""
    P = jnp.asarray(P)
    Y = _onehot(jnp.asarray(y), P.shape[1], P.dtype)
    per = jnp.sum((Y - P) ** 2, axis=1)
    if w is None:
        return jnp.mean(per)
    w = jnp.asarray(w, P.dtype)
    return jnp.sum(w * per) / jnp.sum(w)


def _fold_paths(X, y, lambdas, W, mix, n_classes, penalize_first, max_iter, tol):
    """Paths for a stack of training-weight vectors ``W: f[m, n]`` (vmapped; ONE traced solver).

    Each member standardises X with its own weighted moments. Returns held-out Brier ``f[m, L]``
    (rows with weight 0), the paths' params (standardised scale), infos, means and sds.
    """

    def one(w_tr):
        Xs, mean, sd = standardize(X, w_tr)
        params, info = _path(Xs, y, lambdas, mix, w_tr, n_classes, penalize_first, max_iter, tol)
        P = jax.vmap(lambda p: predict_proba(p, Xs, clip=True))(params)  # [L, n, K]
        held = 1.0 - w_tr
        brier = jax.vmap(lambda Pl: brier_multiclass(Pl, y, held))(P)
        return brier, params, info, mean, sd

    return jax.vmap(one)(W)


def _fold_weights(fold_ids, n_folds, dtype):
    return (fold_ids[None, :] != jnp.arange(n_folds)[:, None]).astype(dtype)


def _cv_table(X, y, lambdas, fold_ids, mix, n_classes, n_folds, penalize_first, max_iter, tol):
    W = _fold_weights(fold_ids, n_folds, X.dtype)
    return _fold_paths(X, y, lambdas, W, mix, n_classes, penalize_first, max_iter, tol)[0].T


def cv_brier(
    X,
    y,
    lambdas,
    fold_ids,
    *,
    n_classes: int,
    n_folds: int,
    penalize_first: bool = True,
    mix: float = 1.0,
    max_iter: int = 5000,
    tol: float = 1e-9,
):
    """Held-out multi-class Brier score for every (lambda, fold): f[n_lambda, n_folds].

    Folds are 0/1 weights (static shapes; vmapped over folds); each fold standardises X with its
    training rows' moments and fits the whole path with warm starts. ``fold_ids: i[n]`` in [0, n_folds).
    """
    _check_xy(X, y, n_classes)
    check_array("lambdas", lambdas, ndim=1)
    _check_lam_mix(lambdas, mix)
    _check_folds(fold_ids, n_folds, X.shape[0])
    dtype = _float_dtype(X)
    return _cv_jit(jnp.asarray(X, dtype), jnp.asarray(y), jnp.asarray(lambdas, dtype), jnp.asarray(fold_ids),
                   jnp.asarray(mix, dtype), n_classes, n_folds, penalize_first, max_iter, tol)


_cv_jit = jax.jit(_cv_table, static_argnums=(5, 6, 7))


def _check_folds(fold_ids, n_folds, n):
    if not isinstance(n_folds, (int, np.integer)) or isinstance(n_folds, bool):
        raise ValueError(f"n_folds: expected an int, got {n_folds!r}")
    check_range("n_folds", n_folds, low=2, high=n)
    check_array("fold_ids", fold_ids, shape=(n,), kind="iu")
    if not is_traced(fold_ids):
        f = np.asarray(fold_ids)
        if f.min() < 0 or f.max() >= n_folds:
            raise ValueError(f"fold_ids: expected values in [0, {n_folds}), got range [{f.min()}, {f.max()}]")


def fold_ids_from_key(key, n: int, n_folds: int) -> jax.Array:
    """Random balanced folds (R's ``sample(rep(1:nFolds, length.out = n))``): i32[n] in [0, n_folds)."""
    perm = jax.random.permutation(key, n)
    return jnp.zeros(n, jnp.int32).at[perm].set(jnp.arange(n, dtype=jnp.int32) % n_folds)


def presto_pipeline(
    X,
    y,
    fold_ids,
    *,
    n_classes: int,
    n_folds: int,
    n_lambda: int = 20,
    min_ratio: float = 0.01,
    penalize_first: bool = True,
    mix: float = 1.0,
    max_iter: int = 5000,
    tol: float = 1e-9,
) -> dict:
    """The official end-to-end procedure as ONE pure, jit/vmap-able function (no validation).

    Standardise on all rows -> lambda_max -> grid -> CV Brier table [L, F] -> lambda* = largest
    lambda among the minima of the fold-mean -> full-data path with warm starts, taken at lambda*.
    Vmap it over replicates (stack X, y, fold_ids). Returns a dict: ``alpha: f[K-1]``, ``B: f[p, K-1]``
    (raw scale), ``lam_star``, ``lam_index``, ``lambdas: f[L]``, ``cv_table: f[L, F]``, ``path_iters: i[L]``.
    """
    return _pipeline_jit(X, y, fold_ids, mix, n_classes, n_folds, n_lambda, min_ratio, penalize_first,
                         max_iter, tol)


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7, 8))
def _pipeline_jit(X, y, fold_ids, mix, n_classes, n_folds, n_lambda, min_ratio, penalize_first, max_iter, tol):
    TRACE_COUNTS["presto_pipeline"] += 1
    X = jnp.asarray(X)
    mix = jnp.asarray(mix, X.dtype)
    Xs, _, _ = standardize(X)
    lambdas = _lambda_grid(_lambda_max(Xs, y, n_classes, None, mix), n_lambda, min_ratio)
    # the n_folds CV fits and the full-data refit as ONE vmapped solver call (last member: all rows)
    W = jnp.concatenate([_fold_weights(fold_ids, n_folds, X.dtype), jnp.ones((1, X.shape[0]), X.dtype)])
    brier, params, info, mean, sd = _fold_paths(X, y, lambdas, W, mix, n_classes, penalize_first, max_iter, tol)
    table = brier[:n_folds].T  # [L, F]
    score = jnp.mean(table, axis=1)
    idx = jnp.argmin(score)  # first index = largest lambda among ties (the grid decreases)
    best = jax.tree.map(lambda a: a[n_folds, idx], params)
    alpha, B = unstandardize(best, mean[n_folds], sd[n_folds])
    info = jax.tree.map(lambda a: a[n_folds], info)
    return {
        "alpha": alpha,
        "B": B,
        "lam_star": lambdas[idx],
        "lam_index": idx,
        "lambdas": lambdas,
        "cv_table": table,
        "path_iters": info.n_iter,
        "path_converged": info.converged,
    }


def fit_presto(
    X,
    y,
    key,
    *,
    n_classes: int,
    n_lambda: int = 20,
    min_ratio: float = 0.01,
    n_folds: int = 5,
    penalize_first: bool = True,
    mix: float = 1.0,
    max_iter: int = 5000,
    tol: float = 1e-9,
):
    """PRESTO tuned as the official code does (20 lambdas, ratio 0.01, 5 random folds, Brier, refit).

    Args: X: f[n, p] raw features; y: i[n] in [0, K), K >= 3, every class present; key: PRNG key for folds.
    Returns: ``(alpha_raw: f[K-1], B_raw: f[p, K-1], lam_star: f[], cv_table: f[n_lambda, n_folds])``.
    """
    _check_xy(X, y, n_classes)
    _check_lam_mix(0.0, mix)
    if not isinstance(n_lambda, (int, np.integer)) or n_lambda < 1:
        raise ValueError(f"n_lambda: expected an int >= 1, got {n_lambda!r}")
    check_range("min_ratio", float(min_ratio), low=0.0, high=1.0, low_inclusive=False)
    if not isinstance(n_folds, (int, np.integer)) or isinstance(n_folds, bool):
        raise ValueError(f"n_folds: expected an int, got {n_folds!r}")
    check_range("n_folds", n_folds, low=2, high=X.shape[0])
    dtype = _float_dtype(X)
    folds = fold_ids_from_key(key, X.shape[0], n_folds)
    out = presto_pipeline(jnp.asarray(X, dtype), jnp.asarray(y), folds, n_classes=n_classes, n_folds=n_folds,
                          n_lambda=n_lambda, min_ratio=min_ratio, penalize_first=penalize_first, mix=mix,
                          max_iter=max_iter, tol=tol)
    return out["alpha"], out["B"], out["lam_star"], out["cv_table"]


# ============================================================================ baselines


def fit_proportional_odds(X, y, n_classes: int, *, w=None, max_iter: int = 5000, tol: float = 1e-12):
    """Proportional-odds MLE (shared beta): the PRESTO solver with psi_1.. frozen at 0 and lam = 0.

    Works for K >= 2 (K = 2 is logistic regression of 1{y = 1}, in PRESTO's sign convention).
    Returns raw-scale ``(alpha: f[K-1], B: f[p, K-1])`` with identical columns.
    """
    _check_xy(X, y, n_classes, min_classes=2, w=w)
    dtype = _float_dtype(X)
    wv = jnp.ones(X.shape[0], dtype) if w is None else jnp.asarray(w, dtype)
    return _po_jit(jnp.asarray(X, dtype), jnp.asarray(y), wv, n_classes, max_iter, tol)


@functools.partial(jax.jit, static_argnums=(3,))
def _po_jit(X, y, w, n_classes, max_iter, tol):
    return _po(X, y, w, n_classes, max_iter, tol)


def _po(X, y, w, n_classes, max_iter, tol):
    Xs, mean, sd = standardize(X, w)
    U = jnp.zeros((X.shape[1], n_classes - 1), X.dtype).at[:, 0].set(1.0)
    params, _ = _fista(Xs, y, w, 0.0, 1.0, jnp.zeros_like(U), U, init_params(Xs, y, n_classes, w), max_iter, tol)
    return unstandardize(params, mean, sd)


def fit_rare_logistic(X, y, *, n_classes: int | None = None, w=None, max_iter: int = 100, tol: float = 1e-10):
    """Unpenalised logistic regression of 1{y = K-1} on x (Newton, :func:`zoo.stats.glm.newton_logistic`).

    Returned in PRESTO's sign convention, ``pi_{K-1}(x) = 1 - sigmoid(alpha + x^T beta)``:
    ``(alpha: f[], beta: f[p])``. ``n_classes`` defaults to ``max(y) + 1``.
    """
    if n_classes is None:
        check_array("y", y, ndim=1)
        n_classes = int(np.asarray(y).max()) + 1
    _check_xy(X, y, n_classes, min_classes=2, require_all=False, w=w)
    if not is_traced(y):
        r = np.asarray(y) == n_classes - 1
        if r.all() or not r.any():
            raise ValueError(f"y: the rare class {n_classes - 1} and at least one other class must both appear")
    dtype = _float_dtype(X)
    wv = jnp.ones(X.shape[0], dtype) if w is None else jnp.asarray(w, dtype)
    return _rare_logit_jit(jnp.asarray(X, dtype), jnp.asarray(y), wv, n_classes, max_iter, tol)


@functools.partial(jax.jit, static_argnums=(3,))
def _rare_logit_jit(X, y, w, n_classes, max_iter, tol):
    return _rare_logit(X, y, w, n_classes, max_iter, tol)


def _rare_logit(X, y, w, n_classes, max_iter, tol):
    Xs, mean, sd = standardize(X, w)
    ys = jnp.where(y == n_classes - 1, 1.0, -1.0).astype(X.dtype)
    m = glm.penalty_mask(X.shape[1], dtype=X.dtype)
    wt, _ = glm.newton_logistic(glm.add_intercept(Xs), ys, 0.0, m, sw=w, max_iter=max_iter, tol=tol)
    coef = wt[:-1] / sd
    intercept = wt[-1] - mean @ coef
    return -intercept, -coef


# ============================================================================ metrics


def rare_prob_mse(p_hat, p_true) -> jax.Array:
    """``mean_i (p_hat_i - p_true_i)^2``: f[] (the synthetic studies' metric)."""
    p_hat, p_true = jnp.asarray(p_hat), jnp.asarray(p_true)
    return jnp.mean((p_hat - p_true) ** 2)


def osce_equal_freq(p_hat, actual, n_bins: int | None = None, *, legacy_unsorted: bool = False) -> float:
    """Squared one-sided calibration error with equal-frequency bins (the real-data metric).

    Sort predictions, cut into ``n_bins`` contiguous bins (default ``max(round(n/100), 10)``; the first
    ``n mod n_bins`` bins get one extra point), ``o_b`` = observed rare frequency in bin b; return
    ``mean_i (p_sorted_i - o_{b(i)})^2``. ``legacy_unsorted=True`` reproduces the official indexing
    bug (the prediction term taken from the UNSORTED vector), for cross-checking only.

    Args: p_hat: f[n] predicted rare probabilities; actual: [n] 0/1 rare indicators.
    """
    p = np.asarray(p_hat, np.float64)
    a = np.asarray(actual, np.float64)
    check_array("p_hat", p, ndim=1)
    check_array("actual", a, shape=(p.shape[0],))
    n = p.shape[0]
    if n_bins is None:
        n_bins = max(int(round(n / 100)), 10)
    check_range("n_bins", n_bins, low=1, high=n)
    order = np.argsort(p, kind="stable")
    sizes = np.full(n_bins, n // n_bins)
    sizes[: n % n_bins] += 1
    bin_of = np.repeat(np.arange(n_bins), sizes)
    a_sorted = a[order]
    o = np.bincount(bin_of, weights=a_sorted) / sizes
    pred = p if legacy_unsorted else p[order]
    return float(np.mean((pred - o[bin_of]) ** 2))
