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

* Solver: an augmented Lagrangian (``_solve``) for the row-ordering constraints
  ``eta_{k+1}(x_i) >= eta_k(x_i)`` (linear in alpha, psi) around FISTA (``_fista``: backtracking, L
  doubles on failure, shrinks by 1.5 after each accepted step, momentum restarts, monotone). Plain
  FISTA with infeasible-step rejection (the spec's proposal) jams when the optimum is on that
  boundary. Stop rule: relative objective change <= ``tol`` AND gradient mapping <= 0.1 sqrt(tol),
  plus feasibility/complementarity <= 0.1 sqrt(tol); ``FitInfo.converged`` is True only then. The
  first/middle/last log-prob forms above are the spec's, rearranged (``a - softplus(a) = -softplus(-a)``).
* CV folds must contain every class in every training fold (``draw_fold_ids`` re-draws random folds;
  ``cv_brier`` raises naming the fold).
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
    "draw_fold_ids",
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
_RHO = 0.01  # augmented-Lagrangian penalty per unit of row weight (see _solve; 1.0 conditioned FISTA badly)
_GFAC = 0.1  # gradient-mapping tolerance = _GFAC * sqrt(tol)
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
    _check_params_x(params, None)
    return jnp.cumsum(params.psi, axis=1)


def from_betas(alpha, B) -> PrestoParams:
    """Inverse of :func:`betas`: ``psi_0 = beta_0``, ``psi_k = beta_k - beta_{k-1}``."""
    check_array("alpha", alpha, ndim=1, finite=False)
    check_array("B", B, ndim=2, shape=(None, np.shape(alpha)[0]), finite=False)
    B = jnp.asarray(B)
    psi = jnp.concatenate([B[:, :1], jnp.diff(B, axis=1)], axis=1)
    return PrestoParams(alpha=jnp.asarray(alpha), psi=psi)


def cumulative_logits(params: PrestoParams, X) -> jax.Array:
    """``eta = alpha + X @ cumsum(psi)``: f[n, K-1] (no block design is ever built)."""
    _check_params_x(params, X)
    return params.alpha + jnp.asarray(X) @ jnp.cumsum(params.psi, axis=1)


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
    _check_params_x(params, X)
    return _log_probs_from_eta(cumulative_logits(params, X))


def predict_proba(params: PrestoParams, X, clip: bool = False) -> jax.Array:
    """Class probabilities f[n, K] (raw differences of sigmoids, rows sum to 1).

    With non-parallel betas a new ``x`` can give negative ``pi_k``; ``clip=True`` clips at 0 and
    renormalises each row.
    """
    _check_params_x(params, X)
    return _predict_proba(params, jnp.asarray(X), clip)


def _predict_proba(params, X, clip=False):
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
    _check_params_x(params, X)
    return jax.nn.sigmoid(-(params.alpha[-1] + X @ betas(params)[:, -1]))


def _onehot(y, K, dtype):
    return (y[:, None] == jnp.arange(K)).astype(dtype)


def _nll_parts(params, X, y, w, strict=True):
    """Shared pieces of the NLL and its gradient: (value, G = dloss_i/deta: f[n, K-1], eta).

    ``strict=True``: ``+inf`` if ANY class of a row with ``w > 0`` is infeasible (the ordinalNet
    convention, :func:`nll`). ``strict=False``: only a row's OWN class must be feasible (the smooth
    extension that the solver minimises under explicit ordering constraints, see :func:`_solve`).
    """
    K = params.alpha.shape[0] + 1
    eta = cumulative_logits(params, X)
    lp = _log_probs_from_eta(eta)
    w = jnp.ones(X.shape[0], eta.dtype) if w is None else jnp.asarray(w, eta.dtype)
    Y = _onehot(y, K, eta.dtype)
    lp_y = jnp.sum(jnp.where(Y > 0, lp, 0.0), axis=1)
    bad = ~jnp.isfinite(lp) if strict else ~jnp.isfinite(lp_y)[:, None]
    infeasible = jnp.any((w > 0)[:, None] & bad)
    val = jnp.sum(jnp.where(w > 0, w * -lp_y, 0.0)) / jnp.sum(w)
    val = jnp.where(infeasible, jnp.inf, val)
    # dloss_i/deta_c = -f_c / pi_c (c <= K-2), dloss_i/deta_{c-1} = +f_{c-1} / pi_c (c >= 1)
    log_f = -jax.nn.softplus(-eta) - jax.nn.softplus(eta)
    lp_y_safe = jnp.where(jnp.isfinite(lp_y), lp_y, 0.0)
    r = jnp.exp(log_f - lp_y_safe[:, None])
    G = -Y[:, :-1] * r + Y[:, 1:] * r
    G = jnp.where((w > 0)[:, None], G * w[:, None], 0.0) / jnp.sum(w)
    return val, G, eta


def _own_class_parts(params, X, y, w):
    """The ``strict=False`` NLL and ``G = dloss_i/deta`` of :func:`_nll_parts`, computed on each row's
    OWN class only (a = eta_{y_i}, b = eta_{y_i - 1}; +-inf past the ends): about a third of the
    transcendentals of the all-classes form (the solver's hot loop). Returns (value, G, eta)."""
    K1 = params.alpha.shape[0]
    eta = cumulative_logits(params, X)
    dtype = eta.dtype
    w = jnp.ones(X.shape[0], dtype) if w is None else jnp.asarray(w, dtype)
    Y = _onehot(y, K1 + 1, dtype)
    up, lo = Y[:, :-1], Y[:, 1:]  # row i's upper boundary is eta_{y_i}, its lower one eta_{y_i - 1}
    a = jnp.where(y == K1, jnp.inf, jnp.sum(up * eta, axis=1))
    b = jnp.where(y == 0, -jnp.inf, jnp.sum(lo * eta, axis=1))
    fa, fb = jnp.where(y == K1, 0.0, a), jnp.where(y == 0, 0.0, b)  # finite stand-ins
    spa, spb = jax.nn.softplus(fa), jax.nn.softplus(fb)  # softplus(-x) = softplus(x) - x
    t = b - a
    ok = t < 0
    ts = jnp.where(ok, t, -1.0)
    lp = (jnp.where(y == K1, 0.0, fa - spa) + _log1mexp(ts) - jnp.where(y == 0, 0.0, spb))
    lp = jnp.where(ok, lp, -jnp.inf)
    pos = w > 0
    sw = jnp.sum(w)
    val = jnp.sum(jnp.where(pos, w * -lp, 0.0)) / sw
    val = jnp.where(jnp.any(pos & ~ok), jnp.inf, val)
    lp_safe = jnp.where(ok, lp, 0.0)
    # log f(x) = log sigmoid(x) + log sigmoid(-x) = x - 2 softplus(x); 0 past the ends
    ra = jnp.where(y == K1, 0.0, jnp.exp(fa - 2.0 * spa - lp_safe))
    rb = jnp.where(y == 0, 0.0, jnp.exp(fb - 2.0 * spb - lp_safe))
    scale = jnp.where(pos, w, 0.0) / sw
    G = (lo * rb[:, None] - up * ra[:, None]) * scale[:, None]
    return val, G, eta


def nll(params: PrestoParams, X, y, w=None) -> jax.Array:
    """Weighted mean negative log-likelihood: f[]; ``+inf`` if any row with ``w > 0`` is infeasible.

    Args: X: f[n, p]; y: i[n] in [0, K); w: f[n] >= 0 (0/1 weights select CV training folds) or None.
    Eager calls check the inputs (finite X, integer y in [0, K), w >= 0 with a positive entry).
    """
    _check_params_x(params, X)
    _check_labels(y, params.alpha.shape[0] + 1, X.shape[0])
    _check_w(w, X.shape[0])
    return _nll_parts(params, jnp.asarray(X), jnp.asarray(y), w)[0]


def nll_grad(params: PrestoParams, X, y, w=None) -> PrestoParams:
    """Closed-form gradient of :func:`nll` (Sec. 2.4): ``dalpha_k = sum_i G_ik``, ``dB = X^T G``,
    ``dpsi_l = sum_{k>=l} dB_k`` (reverse cumsum), with ``G`` the weighted ``dloss_i/deta_ik``."""
    _check_params_x(params, X)
    _check_labels(y, params.alpha.shape[0] + 1, X.shape[0])
    _check_w(w, X.shape[0])
    return _nll_value_and_grad(params, jnp.asarray(X), jnp.asarray(y), w)[1]


def _grad_from_G(X, G):
    dB = X.T @ G
    dpsi = jnp.flip(jnp.cumsum(jnp.flip(dB, axis=1), axis=1), axis=1)
    return PrestoParams(alpha=jnp.sum(G, axis=0), psi=dpsi)


def _nll_value_and_grad(params, X, y, w, strict=True):
    val, G, _ = _nll_parts(params, X, y, w, strict)
    return val, _grad_from_G(X, G)


def _pen_mask(p, K, penalize_first, dtype):
    m = np.ones((p, K - 1))
    if not penalize_first:
        m[:, 0] = 0.0
    return jnp.asarray(m, dtype)


def penalty(params: PrestoParams, lam, penalize_first: bool = True, mix: float = 1.0) -> jax.Array:
    """``lam * sum M (a |psi| + (1-a)/2 psi^2)``: f[] (intercepts never penalised)."""
    check_array("params.psi", params.psi, ndim=2)
    _check_lam_mix(lam, mix)
    M = _pen_mask(params.psi.shape[0], params.psi.shape[1] + 1, penalize_first, params.psi.dtype)
    psi = params.psi
    return lam * jnp.sum(M * (mix * jnp.abs(psi) + 0.5 * (1.0 - mix) * psi * psi))


def init_params(X, y, n_classes: int, w=None) -> PrestoParams:
    """Start: ``psi = 0``, ``alpha_k = logit(weighted share of y <= k)`` clipped to +-100 (increasing)."""
    _check_xy(X, y, n_classes, min_classes=2, w=w)
    return _init_params(jnp.asarray(X, _float_dtype(X)), jnp.asarray(y), n_classes, w)


def _init_params(X, y, n_classes, w=None):
    dtype = X.dtype
    w = jnp.ones(X.shape[0], dtype) if w is None else jnp.asarray(w, dtype)
    Y = _onehot(y, n_classes, dtype)
    cum = jnp.cumsum(Y.T @ w / jnp.sum(w))[:-1]
    alpha = jnp.clip(jnp.log(cum) - jnp.log1p(-cum), -_LOGIT_CLIP, _LOGIT_CLIP)
    return PrestoParams(alpha=alpha, psi=jnp.zeros((X.shape[1], n_classes - 1), dtype))


# ============================================================================ solver


def _tree_dot(x, y_):
    return sum(jnp.sum(xi * yi) for xi, yi in zip(jax.tree.leaves(x), jax.tree.leaves(y_)))


def _fista(smooth, l1, upd_mask, init, L0, max_iter, tol, record=0):
    """FISTA on ``smooth(params) + ||l1 * psi||_1`` (``smooth -> (value, grad)``; ``+inf`` = outside).

    Backtracking doubles L until the quadratic upper bound holds (a non-finite value is a failed
    step); L shrinks by 1.5 after each accepted step; a step that raises the objective, or an
    extrapolated point outside the domain, restarts the momentum (the objective is monotone).
    Stops (``converged``) when an accepted step changes the objective by <= ``tol`` (relative) AND
    the gradient mapping ``L (x+ - z)`` is small (<= ``0.1 sqrt(tol) max(1, |F|)``): a step that
    is tiny because L blew up does not count. A plain step that cannot progress, or ``max_iter``,
    stops it unconverged.
    ``upd_mask`` (f[p, K-1]) freezes psi entries (the PO baseline). ``record > 0`` also returns
    the objective after each of the first ``record`` iterations (tests).
    Returns ``(params, F, n_iter, converged, L)``.
    """
    dtype = init.psi.dtype
    eps = jnp.finfo(dtype).eps
    gtol = _GFAC * jnp.sqrt(jnp.maximum(jnp.asarray(tol, dtype), eps))

    def value(p):
        return smooth(p)[0] + jnp.sum(l1 * jnp.abs(p.psi))

    def prox_step(z, g, L):
        a = z.alpha - g.alpha / L
        u = z.psi - upd_mask * g.psi / L
        psi = jnp.sign(u) * jnp.maximum(jnp.abs(u) - l1 / L, 0.0)
        return PrestoParams(alpha=a, psi=jnp.where(upd_mask > 0, psi, z.psi))

    def cond(s):
        return (s["it"] < max_iter) & ~s["done"]

    def body(s):
        x, x_prev, t = s["x"], s["x_prev"], s["t"]
        t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        beta = (t - 1.0) / t_next
        z = jax.tree.map(lambda a, b: a + beta * (a - b), x, x_prev)
        fz, gz = smooth(z)  # the only gradient of the iteration
        feas = jnp.isfinite(fz)  # always True when beta == 0 (z = x)
        plain = beta == 0  # z = x: a plain proximal-gradient step

        def bt_cond(b):
            return ~b["ok"] & (b["k"] < 60)

        def bt_body(b):
            L = b["L"]
            new = prox_step(z, gz, L)
            fn = smooth(new)[0]
            d = jax.tree.map(jnp.subtract, new, z)
            Q = fz + _tree_dot(gz, d) + 0.5 * L * _tree_dot(d, d)
            ok = jnp.isfinite(fn) & (fn <= Q + 10 * eps * jnp.abs(fz))
            return {"L": jnp.where(ok, L, 2.0 * L), "new": new, "fn": fn, "ok": ok, "k": b["k"] + 1}

        # an extrapolated point outside the domain: no step, restart (the next z is x, a plain step)
        b0 = {"L": s["L"], "new": z, "fn": fz, "ok": jnp.zeros((), bool), "k": jnp.where(feas, 0, 60).astype(jnp.int32)}
        b = jax.lax.while_loop(bt_cond, bt_body, b0)
        F_new = b["fn"] + jnp.sum(l1 * jnp.abs(b["new"].psi))
        accept = b["ok"] & (F_new <= s["F"])
        rel = jnp.abs(s["F"] - F_new) / jnp.maximum(jnp.abs(s["F"]), eps)
        d = jax.tree.map(jnp.subtract, b["new"], z)
        gmap = b["L"] * jnp.sqrt(_tree_dot(d, d))  # gradient-mapping norm at z
        small = b["ok"] & (gmap <= gtol * jnp.maximum(1.0, jnp.abs(s["F"])))
        conv = small & ((accept & (rel <= tol)) | (~accept & plain))
        stop = conv | (~accept & plain)  # converged, or a plain step can make no progress (stall)
        x_new = jax.tree.map(lambda a, c: jnp.where(accept, a, c), b["new"], x)
        out = {
            "x": x_new,
            "x_prev": x,  # on a restart x_prev = x: the next extrapolation is a plain step
            "t": jnp.where(accept & feas, t_next, 1.0),
            "L": jnp.where(accept, b["L"] / 1.5, b["L"]),
            "F": jnp.where(accept, F_new, s["F"]),
            "it": s["it"] + 1,
            "done": stop,
            "conv": conv,
        }
        if record:
            out["hist"] = s["hist"].at[jnp.minimum(s["it"], record - 1)].set(out["F"])
        return out

    F0 = value(init)
    s0 = {
        "x": init,
        "x_prev": init,
        "t": jnp.ones((), dtype),
        "L": jnp.asarray(L0, dtype),
        "F": F0,
        "it": jnp.zeros((), jnp.int32),
        "done": ~jnp.isfinite(F0),
        "conv": jnp.zeros((), bool),
    }
    if record:
        s0["hist"] = jnp.full((record,), jnp.nan, dtype)
    s = jax.lax.while_loop(cond, body, s0)
    out = (s["x"], s["F"], s["it"], s["conv"], s["L"])
    if record:
        return out + (s["hist"],)
    return out


def _solve(X, y, w, lam, mix, pen_mask, upd_mask, init, max_iter, tol, max_outer=200):
    r"""PRESTO at one lambda: an augmented Lagrangian around FISTA, so boundary optima are reached.

    The training objective is ``+inf`` wherever a row with ``w > 0`` has ``eta_{k-1} >= eta_k``
    (a negative class probability). At small lambda the optimum often sits ON that boundary (with
    the paper's design and lam = 0, some row's middle-class probability goes to 0), where plain
    FISTA with infeasible-step rejection jams: every step leaves the region, steps shrink, and the
    relative change looks converged while the objective is ~1e-3 above the optimum. Instead:

    * minimise ``NLL_ext + pen`` where ``NLL_ext`` needs only each row's OWN class to be feasible
      (it is smooth and convex beyond the other boundaries), subject to the linear constraints
      ``g_ik = eta_{i,k+1} - eta_{i,k} >= 0`` (rows with ``w > 0``);
    * augmented Lagrangian with per-row multipliers ``nu >= 0`` (scaled by ``w_i / sum w``):
      ``+ sum_i (w_i/sum w) [ (rho/2) max(0, nu_i/rho - g_i)^2 - nu_i^2/(2 rho) ]``, inner problem
      by :func:`_fista` (warm started), update ``nu <- max(0, nu - rho g)``;
      ``rho = 0.01 / max_i(w_i/sum w)`` (``_RHO``): each violated row adds curvature ~0.01 |x_i|^2, the
      scale of the mean NLL's, so FISTA's conditioning survives (``_RHO = 1`` took 2-4x the
      iterations at small lambda on the quick design). With the small rho the multipliers converge
      slowly on some boundary fits (30-100 outer rounds of a few FISTA steps each; 4 of 50 quick
      replicates hit the former cap of 30 unconverged), hence ``max_outer = 200``;
    * stop when ``max |min(g, nu/rho)| <= 0.1 sqrt(tol)`` (feasible + complementary) after a converged
      inner solve; then restore STRICT feasibility by the shortest blend towards the intercept-only
      start (strictly ordered), so the returned objective is finite.

    In the interior (no constraint active) ``nu`` stays 0 and this is one plain FISTA run.
    Returns ``(params, FitInfo)``; ``FitInfo.converged`` is True only when both criteria were met
    within ``max_iter`` total FISTA iterations.
    """
    dtype = X.dtype
    eps = jnp.finfo(dtype).eps
    lam = jnp.asarray(lam, dtype)
    l1 = lam * mix * pen_mask
    l2 = lam * (1.0 - mix) * pen_mask
    wn = w / jnp.sum(w)
    active_rows = (w > 0)[:, None]
    rho = _RHO / jnp.max(wn)
    feas_tol = jnp.maximum(_GFAC * jnp.sqrt(jnp.asarray(tol, dtype)), 100.0 * eps)
    n, K1 = X.shape[0], init.alpha.shape[0]

    def make_smooth(nu):
        def smooth(p):
            v, G, eta = _own_class_parts(p, X, y, w)
            g = jnp.diff(eta, axis=1)  # [n, K-2]
            s = jnp.where(active_rows, jnp.maximum(0.0, nu - rho * g), 0.0)
            v = v + jnp.sum(wn[:, None] * (s * s - nu * nu)) / (2.0 * rho) + 0.5 * jnp.sum(l2 * p.psi * p.psi)
            dg = -wn[:, None] * s  # d AL / d g
            zero = jnp.zeros((n, 1), dtype)
            G = G + jnp.concatenate([zero, dg], axis=1) - jnp.concatenate([dg, zero], axis=1)
            grad = _grad_from_G(X, G)
            return v, PrestoParams(alpha=grad.alpha, psi=grad.psi + l2 * p.psi)

        return smooth

    def gaps(p):
        return jnp.diff(cumulative_logits(p, X), axis=1)

    def cond(s):
        return (s["outer"] < max_outer) & (s["it"] < max_iter) & ~s["done"]

    def body(s):
        x, F, it, conv, L = _fista(make_smooth(s["nu"]), l1, upd_mask, s["x"], s["L"], max_iter - s["it"], tol)
        g = gaps(x)
        nu_new = jnp.where(active_rows, jnp.maximum(0.0, s["nu"] - rho * g), 0.0)
        kkt = jnp.max(jnp.where(active_rows, jnp.abs(jnp.minimum(g, s["nu"] / rho)), 0.0), initial=0.0)
        ok = conv & (kkt <= feas_tol)
        return {"x": x, "nu": nu_new, "L": L, "it": s["it"] + it, "outer": s["outer"] + 1,
                "done": ok | ~jnp.isfinite(F), "conv": ok}

    s0 = {"x": init, "nu": jnp.zeros((n, K1 - 1), dtype), "L": jnp.ones((), dtype),
          "it": jnp.zeros((), jnp.int32), "outer": jnp.zeros((), jnp.int32),
          "done": jnp.zeros((), bool), "conv": jnp.zeros((), bool)}
    s = jax.lax.while_loop(cond, body, s0)
    x = _restore_feasible(s["x"], _init_params(X, y, K1 + 1, w), gaps, active_rows, eps)
    F = _nll_parts(x, X, y, w)[0] + _penalty_value(x, l1, l2)
    return x, FitInfo(n_iter=s["it"], objective=F, converged=s["conv"] & jnp.isfinite(F))


def _penalty_value(p, l1, l2):
    return jnp.sum(l1 * jnp.abs(p.psi)) + 0.5 * jnp.sum(l2 * p.psi * p.psi)


def _restore_feasible(x, anchor, gaps, active_rows, eps):
    """Shortest blend ``x + tau (anchor - x)`` with every training gap >= a tiny margin (tau in [0, 1])."""
    g, ga = gaps(x), gaps(anchor)
    scale = 1.0 + jnp.max(jnp.abs(x.alpha))
    margin = jnp.minimum(1e3 * eps * scale, 0.5 * jnp.min(jnp.where(active_rows, ga, jnp.inf), initial=jnp.inf))
    need = active_rows & (g < margin)
    tau = jnp.max(jnp.where(need, (margin - g) / jnp.maximum(ga - g, eps), 0.0), initial=0.0)
    tau = jnp.clip(tau, 0.0, 1.0)
    return jax.tree.map(lambda a, b: a + tau * (b - a), x, anchor)


# ============================================================================ validation


def _float_dtype(X):
    X = jnp.asarray(X)
    return X.dtype if jnp.issubdtype(X.dtype, jnp.floating) else jnp.result_type(float)


def _check_labels(y, n_classes, n=None):
    """``y``: integer labels, 1-D (length ``n``), values in [0, n_classes) (value check skipped for tracers)."""
    check_array("y", y, ndim=1)
    if n is not None and y.shape[0] != n:
        raise ValueError(f"X and y: expected the same number of rows, got {n} and {y.shape[0]}")
    if np.dtype(y.dtype).kind not in "iu":
        raise ValueError(f"y: expected integer ordinal labels in [0, {n_classes}), got dtype {y.dtype}")
    if not is_traced(y):
        yn = np.asarray(y)
        bad = (yn < 0) | (yn >= n_classes)
        if bad.any():
            raise ValueError(
                f"y: expected ordinal labels in [0, {n_classes}), got {int(yn[bad][0])} at index {int(np.argmax(bad))}"
            )


def _check_w(w, n):
    """Sample weights: None, or f[n], finite, >= 0, with at least one positive entry."""
    if w is None:
        return
    check_array("w", w, shape=(n,))
    if not is_traced(w):
        wn = np.asarray(w)
        neg = wn < 0
        if neg.any():
            raise ValueError(f"w: sample weights must be >= 0; got {int(neg.sum())} negative value(s), first "
                             f"{float(wn[neg][0])} at index {int(np.argmax(neg))}")
        if not np.any(wn > 0):
            raise ValueError("w: all sample weights are 0; at least one must be positive")


def _check_params_x(params, X):
    """``params``: a PrestoParams (alpha f[K-1], psi f[p, K-1]); ``X``: finite f[n, p]."""
    if not (hasattr(params, "alpha") and hasattr(params, "psi")):
        raise TypeError(f"params: expected a PrestoParams(alpha, psi), got {type(params).__name__}")
    check_array("params.alpha", params.alpha, ndim=1)
    check_array("params.psi", params.psi, shape=(None, params.alpha.shape[0]))
    if X is not None:
        check_array("X", X, ndim=2, shape=(None, params.psi.shape[0]))


def _check_xy(X, y, n_classes, *, min_classes=3, require_all=True, w=None):
    """Eager checks outside jit (value checks are skipped for tracers)."""
    if not isinstance(n_classes, (int, np.integer)) or isinstance(n_classes, bool):
        raise ValueError(f"n_classes: expected an int, got {n_classes!r}")
    if n_classes < min_classes:
        what = "PRESTO needs an ordinal response with K >= 3 classes" if min_classes >= 3 else "need K >= 2"
        raise ValueError(f"n_classes: {what}, got {n_classes}")
    check_array("X", X, ndim=2, min_size=2)
    _check_labels(y, n_classes, X.shape[0])
    _check_w(w, X.shape[0])
    if require_all and not is_traced(y):
        yn = np.asarray(y)
        sel = yn if (w is None or is_traced(w)) else yn[np.asarray(w) > 0]
        missing = sorted(set(range(n_classes)) - set(np.unique(sel).tolist()))
        if missing:
            raise ValueError(f"y: every class 0..{n_classes - 1} must appear (with w > 0); missing {missing}")


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
    return _solve(X, y, w, lam, mix, M, jnp.ones_like(M), init, max_iter, tol)


_init_jit = jax.jit(_init_params, static_argnums=2)


def standardize(X, w=None):
    """Centre and scale columns by (weighted) mean and POPULATION SD; zero-SD columns divided by 1.

    Returns ``(Xs: f[n, p], mean: f[p], sd: f[p])``; with 0/1 weights the moments are the training fold's.
    """
    check_array("X", X, ndim=2, min_size=1)
    _check_w(w, X.shape[0])
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
    _check_params_x(params_std, None)
    check_array("mean", mean, shape=(params_std.psi.shape[0],))
    check_array("sd", sd, shape=(params_std.psi.shape[0],))
    if not is_traced(sd) and np.any(np.asarray(sd) <= 0):
        raise ValueError("sd: expected positive column scales (as returned by standardize)")
    B = betas(params_std) / sd[:, None]
    return params_std.alpha - mean @ B, B


def lambda_max(Xs, y, n_classes: int, w=None, mix: float = 1.0):
    """``max_{j,k} |dNLL/dpsi_jk| / max(a, 0.01)`` at the intercept-only fit (psi = 0): f[]."""
    _check_xy(Xs, y, n_classes, w=w)
    _check_lam_mix(0.0, mix)
    return _lambda_max_jit(jnp.asarray(Xs, _float_dtype(Xs)), jnp.asarray(y), n_classes, w, mix)


def _lambda_max(Xs, y, n_classes, w, mix):
    p0 = _init_params(Xs, y, n_classes, w)
    g = _nll_value_and_grad(p0, Xs, y, w)[1]
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
        new, info = _solve(Xs, y, w, lam, mix, M, U, params, max_iter, tol)
        return new, (new, info)

    _, (params, info) = jax.lax.scan(step, _init_params(Xs, y, n_classes, w), lambdas)
    return params, info


def brier_multiclass(P, y, w=None):
    """``mean_i sum_k (1{y_i = k} - P_ik)^2`` (weighted mean with ``w``): f[]."""
    check_array("P", P, ndim=2)
    _check_labels(y, P.shape[1], P.shape[0])
    _check_w(w, P.shape[0])
    P = jnp.asarray(P)
    Y = _onehot(jnp.asarray(y), P.shape[1], P.dtype)
    per = jnp.sum((Y - P) ** 2, axis=1)
    if w is None:
        return jnp.mean(per)
    w = jnp.asarray(w, P.dtype)
    return jnp.sum(w * per) / jnp.sum(w)


def _fold_paths(X, y, lambdas, W, mix, n_classes, penalize_first, max_iter, tol, sequential=False):
    """Paths for a stack of training-weight vectors ``W: f[m, n]`` (vmapped; ONE traced solver).

    ``sequential=True`` runs the members one after another (``lax.map``) instead: a vmapped
    ``while_loop`` runs every member to the slowest member's iteration count, which costs more than
    it saves on CPU. Each member standardises X with its own weighted moments. Returns held-out Brier ``f[m, L]``
    (rows with weight 0), the paths' params (standardised scale), infos, means and sds.
    """

    def one(w_tr):
        Xs, mean, sd = _standardize(X, w_tr)
        params, info = _path(Xs, y, lambdas, mix, w_tr, n_classes, penalize_first, max_iter, tol)
        P = jax.vmap(lambda p: _predict_proba(p, Xs, clip=True))(params)  # [L, n, K]
        held = 1.0 - w_tr
        brier = jax.vmap(lambda Pl: brier_multiclass(Pl, y, held))(P)
        return brier, params, info, mean, sd

    return jax.lax.map(one, W) if sequential else jax.vmap(one)(W)


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
    _check_fold_classes(y, fold_ids, n_folds, n_classes)
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


def _missing_in_folds(y, fold_ids, n_folds, n_classes):
    """``{fold: [classes absent from that fold's TRAINING rows]}`` (host-side, numpy)."""
    y, f = np.asarray(y), np.asarray(fold_ids)
    out = {}
    for k in range(n_folds):
        miss = sorted(set(range(n_classes)) - set(np.unique(y[f != k]).tolist()))
        if miss:
            out[k] = miss
    return out


def _check_fold_classes(y, fold_ids, n_folds, n_classes):
    """Every class must appear in every training fold: a missing class would get an intercept
    clipped at logit +-100 and its held-out Brier score would enter the choice of lambda."""
    if is_traced(y) or is_traced(fold_ids):
        return
    bad = _missing_in_folds(y, fold_ids, n_folds, n_classes)
    if bad:
        k, miss = next(iter(bad.items()))
        raise ValueError(f"fold_ids: training fold {k} (rows with fold_ids != {k}) lacks class(es) {miss}; "
                         f"{len(bad)} of {n_folds} folds miss a class. Every class needs >= 2 rows spread over "
                         f"folds (draw_fold_ids re-draws random folds until this holds)")


def draw_fold_ids(key, y, n_folds: int, n_classes: int, max_tries: int = 100) -> jax.Array:
    """Random balanced folds (:func:`fold_ids_from_key`) re-drawn (new sub-keys) until every class
    appears in every TRAINING fold; ``ValueError`` naming the fold after ``max_tries`` draws.

    Host-side (not jit-able): ``y`` must be concrete. Returns i32[n] in [0, n_folds).
    """
    check_array("y", y, ndim=1)
    _check_labels(y, n_classes)
    if not isinstance(n_folds, (int, np.integer)) or isinstance(n_folds, bool):
        raise ValueError(f"n_folds: expected an int, got {n_folds!r}")
    check_range("n_folds", n_folds, low=2, high=int(np.shape(y)[0]))
    check_range("max_tries", max_tries, low=1)
    n = int(np.shape(y)[0])
    for _ in range(max_tries):
        key, sub = jax.random.split(key)
        folds = fold_ids_from_key(sub, n, n_folds)
        if not _missing_in_folds(y, folds, n_folds, n_classes):
            return folds
    _check_fold_classes(y, folds, n_folds, n_classes)
    return folds  # pragma: no cover (the check raises)


def fold_ids_from_key(key, n: int, n_folds: int) -> jax.Array:
    """Random balanced folds (R's ``sample(rep(1:nFolds, length.out = n))``): i32[n] in [0, n_folds).

    Jit-able; it does NOT ensure that every class is in every training fold (use :func:`draw_fold_ids`).
    """
    for name, v, low in (("n", n, 1), ("n_folds", n_folds, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
    if n_folds > n:
        raise ValueError(f"n_folds: expected a value <= n = {n}, got {n_folds}")
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
    sequential_folds: bool = False,
) -> dict:
    """The official end-to-end procedure as ONE pure, jit/vmap-able function (checks only when eager).

    Standardise on all rows -> lambda_max -> grid -> CV Brier table [L, F] -> lambda* = largest
    lambda among the minima of the fold-mean -> full-data path with warm starts, taken at lambda*.
    Vmap it over replicates (stack X, y, fold_ids) on accelerators; on CPU call it once per replicate
    with ``sequential_folds=True`` (static): a vmapped ``while_loop`` runs every member until the
    slowest one stops, and small-lambda fits on the ordering boundary are the stragglers. Every
    class must appear in every training fold (checked on eager calls; under a trace it is the
    caller's job: use :func:`draw_fold_ids`). Returns a dict: ``alpha: f[K-1]``, ``B: f[p, K-1]``
    (raw scale), ``lam_star``, ``lam_index``, ``lambdas: f[L]``, ``cv_table: f[L, F]``,
    ``path_iters: i[L]``, ``path_converged: bool[L]`` (the full-data path).
    """
    if not (is_traced(X) or is_traced(y) or is_traced(fold_ids)):
        _check_xy(X, y, n_classes)
        _check_folds(fold_ids, n_folds, X.shape[0])
        _check_fold_classes(y, fold_ids, n_folds, n_classes)
    return _pipeline_jit(X, y, fold_ids, mix, n_classes, n_folds, n_lambda, min_ratio, penalize_first,
                         max_iter, tol, sequential_folds)


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7, 8, 11))
def _pipeline_jit(X, y, fold_ids, mix, n_classes, n_folds, n_lambda, min_ratio, penalize_first, max_iter, tol,
                  sequential_folds=False):
    TRACE_COUNTS["presto_pipeline"] += 1
    X = jnp.asarray(X)
    mix = jnp.asarray(mix, X.dtype)
    Xs, _, _ = _standardize(X, jnp.ones(X.shape[0], X.dtype))
    lambdas = _lambda_grid(_lambda_max(Xs, y, n_classes, None, mix), n_lambda, min_ratio)
    # the n_folds CV fits and the full-data refit as ONE vmapped solver call (last member: all rows)
    W = jnp.concatenate([_fold_weights(fold_ids, n_folds, X.dtype), jnp.ones((1, X.shape[0]), X.dtype)])
    brier, params, info, mean, sd = _fold_paths(X, y, lambdas, W, mix, n_classes, penalize_first, max_iter, tol,
                                                sequential_folds)
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
    folds = draw_fold_ids(key, y, n_folds, n_classes)
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
    Xs, mean, sd = _standardize(X, w)
    U = jnp.zeros((X.shape[1], n_classes - 1), X.dtype).at[:, 0].set(1.0)
    params, _ = _solve(Xs, y, w, 0.0, 1.0, jnp.zeros_like(U), U, _init_params(Xs, y, n_classes, w), max_iter, tol)
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


@functools.partial(jax.jit, static_argnums=(3, 4, 5))  # glm.newton_logistic wants Python max_iter/tol
def _rare_logit_jit(X, y, w, n_classes, max_iter, tol):
    return _rare_logit(X, y, w, n_classes, max_iter, tol)


def _rare_logit(X, y, w, n_classes, max_iter, tol):
    Xs, mean, sd = _standardize(X, w)
    ys = jnp.where(y == n_classes - 1, 1.0, -1.0).astype(X.dtype)
    m = glm.penalty_mask(X.shape[1], dtype=X.dtype)
    wt, _ = glm.newton_logistic(glm.add_intercept(Xs), ys, 0.0, m, sw=w, max_iter=max_iter, tol=tol)
    coef = wt[:-1] / sd
    intercept = wt[-1] - mean @ coef
    return -intercept, -coef


# ============================================================================ metrics


def rare_prob_mse(p_hat, p_true) -> jax.Array:
    """``mean_i (p_hat_i - p_true_i)^2``: f[] (the synthetic studies' metric)."""
    check_array("p_hat", p_hat, ndim=1)
    check_array("p_true", p_true, shape=(np.shape(p_hat)[0],))
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
