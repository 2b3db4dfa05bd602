r"""Predictive multiplicity: epsilon-Rashomon sets of regularised logistic regression, in JAX.

Paper: Jamelle Watson-Daniels, David C. Parkes, Berk Ustun, "Predictive Multiplicity in
Probabilistic Classification", AAAI 2023, arXiv 2206.01131. Official code: none found.

Model and set (``xt = [x; 1]``, ``ys = 2y - 1``, intercept last and unpenalised by default)::

    L(w) = (1/n) sum_i log(1 + exp(-ys_i w^T xt_i)) + lam/2 ||w_{1:d}||^2     objective, grad, hess
    w0 = argmin L, L0 = L(w0)                                                fit_baseline (Newton)
    S_eps = { w : L(w) <= L0 + eps }
    V_eps(x) = [min_{S_eps} sigmoid(w^T xt), max_{S_eps} sigmoid(w^T xt)]     viable_prediction_range (Def. 2)
    A_{eps,delta} = (1/m) sum_i 1[max(u_i - p_i, p_i - l_i) >= delta]         ambiguity, ambiguity_mask (Def. 3)
    D_{eps,delta} = max_{w in S_eps} (1/m) sum_i 1[|h_w(x_i) - p_i| >= delta]  discrepancy_bounds (Def. 4, bracketed)

Per-point problem (sigma is increasing, so work in score space): ``max w^T xt s.t. L(w) <= L0 + eps``.
By strong duality (Slater holds for eps > 0) the maximiser is ``w(nu*)`` of the tilted ERM

    w(nu) = argmin_w L(w) - nu xt^T w                                        tilted_solve (Newton)

with ``L(w(nu*)) = L0 + eps``; ``phi(nu) = L(w(nu)) - L0`` increases with nu and
``phi'(nu) = nu xt^T H(w(nu))^{-1} xt``, so nu* is found by a SAFEGUARDED NEWTON iteration on nu
(bracketed, bisection fallback) on ``sqrt(2 phi(nu))``, which is nearly linear in nu, started at the
quadratic-model guess ``sqrt(2 eps / xt^T H0^-1 xt)``
(``extreme_score``). The minimum uses ``-xt``. All per-point solves are written for one point and
vmapped over points x {min, max} with bounded ``while_loop``s: one compiled call per batch.

Oracle formulation (tests): ``l*(t) = min { L(w) : w^T xt = t }`` by equality-constrained Newton,
bisection on t for ``l*(t) = L0 + eps`` (``score_constrained_vpr``). Small-eps asymptotics:
``s_+- = s0 +- sqrt(2 eps xt^T H0^-1 xt)`` (``quadratic_vpr``), i.e. multiplicity follows the
leverage ``xt^T H0^-1 xt``. The shared logistic pieces live in :mod:`zoo.stats.glm`.

Choices that are the zoo's (the spec's or ours, not the paper's):

* nu* by safeguarded Newton on ``phi(nu) - eps_target`` instead of plain bisection (the spec's
  bisection takes ~60 steps; Newton ~6). The target is ``eps - tol_phi`` with
  ``tol_phi = 1e-12 + 1e-9 eps``, and the returned model is the last FEASIBLE iterate, so every
  returned extreme model has ``L0 + eps - 2 tol_phi <= L(w) <= L0 + eps``.
* Discrepancy is only bracketed: ``D_lb`` = the best of the 2m extreme models (plus feasible extra
  candidates), ``D_ub`` = ambiguity. ``eps`` is absolute on the mean objective (``relative=True``:
  ``eps * L0``). Float64 is required for the spec's tolerances (``jax.enable_x64(True)``).
* ``lam = 0`` with linearly separable data (checked by an LP) raises: ``S_eps`` is unbounded.
* The augmented-Lagrangian solver of the spec (optional, for non-logistic losses) is not implemented.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range, is_traced
from zoo.stats import glm

__all__ = [
    "Problem",
    "add_outliers",
    "ambiguity",
    "ambiguity_mask",
    "discrepancy_bounds",
    "extreme_score",
    "fit_baseline",
    "grad",
    "hess",
    "leverage",
    "load_breast_cancer_problem",
    "make_problem",
    "make_separable",
    "make_two_groups",
    "objective",
    "quadratic_vpr",
    "score_constrained_vpr",
    "tilted_solve",
    "viable_prediction_range",
]


class Problem(NamedTuple):
    """A regularised logistic ERM problem (a pytree): ``Xt: f[n, d+1]`` (intercept last), ``ys: f[n]``
    in {-1, +1}, ``lam: f[]``, ``pen_mask: f[d+1]``."""

    Xt: jax.Array
    ys: jax.Array
    lam: jax.Array
    pen_mask: jax.Array


def _separable(Xt: np.ndarray, ys: np.ndarray) -> bool:
    """Linear separability by an LP: is there w with ys_i xt_i^T w >= 1 for every i?"""
    from scipy.optimize import linprog

    A = -(ys[:, None] * Xt)
    res = linprog(np.zeros(Xt.shape[1]), A_ub=A, b_ub=-np.ones(len(ys)), bounds=[(None, None)] * Xt.shape[1],
                  method="highs")
    return res.status == 0


def make_problem(X, y, lam: float = 1e-2, penalize_intercept: bool = False) -> Problem:
    """Validate ``X: f[n, d]`` (finite, n >= 2) and ``y: [n]`` in {0, 1} (both present); build a :class:`Problem`.

    ``lam`` >= 0 is on the mean-loss scale (scikit-learn ``C = 1 / (n lam)``). ``lam = 0`` with
    linearly separable data raises (the Rashomon set is unbounded).
    """
    X, y = glm._as_array(X), glm._as_array(y)
    check_array("X", X, ndim=2, min_size=2)
    glm._check_binary("y", y)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y: expected the same number of rows, got {X.shape[0]} and {y.shape[0]}")
    check_range("lam", float(lam), low=0.0)
    X = jnp.asarray(X)
    dtype = X.dtype if jnp.issubdtype(X.dtype, jnp.floating) else jnp.result_type(float)
    Xt = glm.add_intercept(X.astype(dtype))
    ys = 2.0 * jnp.asarray(y, dtype) - 1.0
    if lam == 0 and _separable(np.asarray(Xt, np.float64), np.asarray(ys, np.float64)):
        raise ValueError(
            "lam = 0 with linearly separable data: the loss has no minimiser and the epsilon-Rashomon set is "
            "unbounded (scores can go to +-inf); use lam > 0"
        )
    m = glm.penalty_mask(X.shape[1], penalize_intercept=penalize_intercept, dtype=dtype)
    return Problem(Xt=Xt, ys=ys, lam=jnp.asarray(lam, dtype), pen_mask=m)


def _check_problem(prob) -> None:
    """``prob`` must be a :class:`Problem` (from :func:`make_problem`); shapes of its fields."""
    if not isinstance(prob, Problem):
        raise TypeError(f"prob: expected a Problem (from make_problem), got {type(prob).__name__}")
    check_array("prob.Xt", prob.Xt, ndim=2, finite=False)
    check_array("prob.ys", prob.ys, shape=(prob.Xt.shape[0],), finite=False)
    check_array("prob.pen_mask", prob.pen_mask, shape=(prob.Xt.shape[1],), finite=False)


def _check_vec(name: str, v, prob: Problem):
    """``v: f[d+1]`` (a weight vector or an augmented point) of ``prob``'s width; returned as an array."""
    v = jnp.asarray(v)
    k = prob.Xt.shape[1]
    if v.shape != (k,):
        raise ValueError(f"{name}: expected shape ({k},) (d+1 = {k}, intercept last), got {tuple(v.shape)}")
    check_array(name, v)
    return v


def _check_scalar(name: str, v) -> None:
    check_array(name, v if hasattr(v, "shape") else np.asarray(v, np.float64), ndim=0)


def objective(w, prob: Problem):
    """``L(w)``: f[] (mean logistic loss + ridge on the masked weights)."""
    _check_problem(prob)
    w = _check_vec("w", w, prob)
    return glm.logistic_objective(w, prob.Xt, prob.ys, prob.lam, prob.pen_mask)


def grad(w, prob: Problem):
    """Closed-form ``grad L(w)``: f[d+1]."""
    _check_problem(prob)
    w = _check_vec("w", w, prob)
    return glm.logistic_grad(w, prob.Xt, prob.ys, prob.lam, prob.pen_mask)


def hess(w, prob: Problem):
    """Closed-form ``hess L(w)``: f[d+1, d+1]."""
    _check_problem(prob)
    w = _check_vec("w", w, prob)
    return glm.logistic_hess(w, prob.Xt, prob.ys, prob.lam, prob.pen_mask)


def _check_solver(max_iter, tol) -> None:
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter: expected an int >= 1, got {max_iter!r}")
    if not is_traced(tol):
        _check_scalar("tol", tol)
        check_range("tol", float(tol), low=0.0)


def fit_baseline(prob: Problem, *, max_iter: int = 50, tol: float = 1e-10):
    """``(w0: f[d+1], L0: f[], info: glm.NewtonInfo)``: the ERM minimiser by Newton with Armijo search (jitted)."""
    _check_problem(prob)
    _check_solver(max_iter, tol)
    return _fit_baseline(prob, max_iter=max_iter, tol=tol)


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _fit_baseline(prob: Problem, *, max_iter: int = 50, tol: float = 1e-10):
    w0, info = glm.newton_logistic(prob.Xt, prob.ys, prob.lam, prob.pen_mask, max_iter=max_iter, tol=tol)
    return w0, info.objective, info


def tilted_solve(prob: Problem, x, nu, w_init, *, max_iter: int = 50, tol: float = 1e-10):
    """``w(nu) = argmin_w L(w) - nu x^T w`` by Newton from ``w_init``: f[d+1] (``x: f[d+1]`` augmented)."""
    _check_problem(prob)
    x, w_init = _check_vec("x", x, prob), _check_vec("w_init", w_init, prob)
    _check_scalar("nu", nu)
    _check_solver(max_iter, tol)
    w, _ = glm.newton_logistic(prob.Xt, prob.ys, prob.lam, prob.pen_mask, tilt=nu * x, w_init=w_init,
                               max_iter=max_iter, tol=tol)
    return w


def leverage(prob: Problem, w0, eval_x):
    """``xt^T H0^{-1} xt`` for every row of ``eval_x: f[m, d+1]``: f[m]."""
    _check_problem(prob)
    w0 = _check_vec("w0", w0, prob)
    eval_x = jnp.asarray(eval_x)
    _check_eval_x(prob, eval_x)
    H0 = hess(w0, prob)
    return jnp.sum(eval_x * jnp.linalg.solve(H0, eval_x.T).T, axis=1)


def extreme_score(prob: Problem, w0, L0, H0inv, x, eps, sign, *, max_outer: int = 60, max_iter: int = 50,
                  tol: float = 1e-10):
    """``max_{w in S_eps} sign * x^T w`` for one point (``sign = -1``: the minimum).

    Safeguarded Newton on the multiplier nu (see the module docstring).
    Returns ``(score: f[] = x^T w, w: f[d+1], nu: f[], n_iter: i32[])`` with ``w`` the last feasible model.
    """
    _check_problem(prob)
    w0, x = _check_vec("w0", w0, prob), _check_vec("x", x, prob)
    _check_scalar("L0", L0)
    k = prob.Xt.shape[1]
    H0inv = jnp.asarray(H0inv)
    check_array("H0inv", H0inv, shape=(k, k))
    _check_eps(eps)
    _check_scalar("sign", sign)
    if not is_traced(sign) and float(sign) not in (-1.0, 1.0):
        raise ValueError(f"sign: expected +1 (the maximum) or -1 (the minimum), got {float(sign)!r}")
    _check_solver(max_iter, tol)
    if isinstance(max_outer, bool) or not isinstance(max_outer, (int, np.integer)) or max_outer < 1:
        raise ValueError(f"max_outer: expected an int >= 1, got {max_outer!r}")
    d = sign * x
    dtype = w0.dtype
    target = eps - (1e-12 + 1e-9 * eps)
    tol_phi = 1e-12 + 1e-9 * eps
    q0 = d @ H0inv @ d
    nu0 = jnp.sqrt(2.0 * eps / jnp.maximum(q0, 1e-300))

    def phi_and_slope(nu, w_init):
        w = tilted_solve(prob, d, nu, w_init, max_iter=max_iter, tol=tol)
        phi = objective(w, prob) - L0
        H = hess(w, prob)
        slope = nu * (d @ jnp.linalg.solve(H, d))
        return w, phi, slope

    def cond(s):
        return (s["k"] < max_outer) & ~s["done"]

    def body(s):
        nu = s["nu"]
        w, phi, slope = phi_and_slope(nu, s["w_lo"])
        ok = jnp.isfinite(phi)
        feasible = ok & (phi <= eps)
        below = ok & (phi - target < 0)
        lo = jnp.where(below, nu, s["lo"])
        hi = jnp.where(below, s["hi"], nu)
        better = feasible & (nu >= s["nu_lo"])
        w_lo = jnp.where(better, w, s["w_lo"])
        nu_lo = jnp.where(better, nu, s["nu_lo"])
        done = ok & (jnp.abs(phi - target) <= tol_phi)
        # Newton on g(nu) = sqrt(2 phi(nu)), nearly linear in nu (exactly so for a quadratic L)
        g = jnp.sqrt(2.0 * jnp.maximum(phi, 1e-300))
        step = nu - (g - jnp.sqrt(2.0 * target)) * g / slope
        inside = ok & jnp.isfinite(step) & (step > lo) & (step < hi)
        fallback = jnp.where(jnp.isinf(hi), 2.0 * jnp.maximum(lo, nu0), 0.5 * (lo + hi))
        nxt = jnp.where(inside, step, fallback)
        done = done | (jnp.isfinite(hi) & ((hi - lo) <= 1e-13 * jnp.maximum(1.0, hi)))
        return {"nu": nxt, "lo": lo, "hi": hi, "w_lo": w_lo, "nu_lo": nu_lo, "k": s["k"] + 1, "done": done}

    s0 = {"nu": nu0, "lo": jnp.zeros((), dtype), "hi": jnp.full((), jnp.inf, dtype), "w_lo": w0,
          "nu_lo": jnp.zeros((), dtype), "k": jnp.zeros((), jnp.int32), "done": eps <= 0}
    s = jax.lax.while_loop(cond, body, s0)
    return x @ s["w_lo"], s["w_lo"], s["nu_lo"], s["k"]


@functools.partial(jax.jit, static_argnames=("max_outer", "max_iter", "batch"))
def _vpr_core(prob, w0, L0, eps, eval_x, max_outer=60, max_iter=50, tol=1e-10, batch=64):
    H0inv = jnp.linalg.inv(hess(w0, prob))

    def one(x, sign):
        return extreme_score(prob, w0, L0, H0inv, x, eps, sign, max_outer=max_outer, max_iter=max_iter, tol=tol)

    # points x {max, min} as one batch, mapped in chunks of `batch` (vmapped inside a chunk):
    # a straggler then only holds up its own chunk
    xs = jnp.concatenate([eval_x, eval_x])
    signs = jnp.concatenate([jnp.ones(eval_x.shape[0], eval_x.dtype), -jnp.ones(eval_x.shape[0], eval_x.dtype)])
    out = jax.lax.map(lambda a: one(*a), (xs, signs), batch_size=batch)
    m = eval_x.shape[0]
    hi = jax.tree.map(lambda a: a[:m], out)
    lo = jax.tree.map(lambda a: a[m:], out)
    return lo, hi


def _check_eps(eps):
    if not is_traced(eps):
        _check_scalar("eps", eps)
        check_range("eps", float(eps), low=0.0)


def _check_eval_x(prob, eval_x):
    check_array("eval_x", eval_x, ndim=2, min_size=1)
    if eval_x.shape[1] != prob.Xt.shape[1]:
        raise ValueError(
            f"eval_x: expected augmented rows [x; 1] of width d+1 = {prob.Xt.shape[1]}, got width {eval_x.shape[1]}"
        )


def viable_prediction_range(prob: Problem, eps, eval_x=None, *, relative: bool = False, baseline=None,
                            max_outer: int = 60, max_iter: int = 50, tol: float = 1e-10, batch: int = 64) -> dict:
    """Viable prediction ranges ``[lo, hi]`` of every evaluation point (paper Definition 2).

    Args:
      prob: from :func:`make_problem`. eps: >= 0, absolute on ``L`` (``relative=True``: ``eps * L0``).
      eval_x: f[m, d+1] augmented points (default: the training points ``prob.Xt``).
      baseline: optional ``(w0, L0)`` from :func:`fit_baseline`.
      batch: problems vmapped together (``lax.map`` over chunks; a chunk runs until its slowest point).
    Returns dict: ``lo, hi, p0: f[m]`` (probabilities), ``s_lo, s_hi, s0: f[m]`` (scores),
    ``w_lo, w_hi: f[m, d+1]`` (the extreme models), ``iters_lo, iters_hi``, and ``eval_x, eps, w0, L0``.
    """
    _check_problem(prob)
    _check_eps(eps)
    eval_x = prob.Xt if eval_x is None else jnp.asarray(eval_x, prob.Xt.dtype)
    _check_eval_x(prob, eval_x)
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch: expected an int >= 1, got {batch!r}")
    _check_solver(max_iter, tol)
    if baseline is None:
        w0, L0, _ = fit_baseline(prob)
    else:
        if not (isinstance(baseline, (tuple, list)) and len(baseline) >= 2):
            raise ValueError(f"baseline: expected (w0, L0) from fit_baseline, got {type(baseline).__name__}")
        w0, L0 = _check_vec("baseline[0] (w0)", baseline[0], prob), baseline[1]
        _check_scalar("baseline[1] (L0)", L0)
    eps_abs = eps * L0 if relative else jnp.asarray(eps, prob.Xt.dtype)
    (s_lo, w_lo, _, it_lo), (s_hi, w_hi, _, it_hi) = _vpr_core(prob, w0, L0, eps_abs, eval_x, max_outer, max_iter,
                                                               tol, batch)
    s0 = eval_x @ w0
    return {
        "lo": jax.nn.sigmoid(s_lo), "hi": jax.nn.sigmoid(s_hi), "p0": jax.nn.sigmoid(s0),
        "s_lo": s_lo, "s_hi": s_hi, "s0": s0, "w_lo": w_lo, "w_hi": w_hi, "iters_lo": it_lo, "iters_hi": it_hi,
        "eval_x": eval_x, "eps": eps_abs, "w0": w0, "L0": L0,
    }


def _check_delta(delta):
    if not is_traced(delta):
        _check_scalar("delta", delta)
        check_range("delta", float(delta), low=0.0, high=1.0, low_inclusive=False)


_VPR_KEYS = ("lo", "hi", "p0", "w_lo", "w_hi", "eval_x", "eps", "L0")


def _check_vpr(vpr, keys=_VPR_KEYS) -> None:
    if not isinstance(vpr, dict) or any(k not in vpr for k in keys):
        got = sorted(vpr) if isinstance(vpr, dict) else type(vpr).__name__
        raise ValueError(f"vpr: expected the dict of viable_prediction_range (keys {', '.join(keys)}), got {got}")


def ambiguity_mask(vpr: dict, delta) -> jax.Array:
    """``bool[m]``: some model in S_eps moves the point's risk by >= delta (``max(u - p, p - l) >= delta``)."""
    _check_vpr(vpr, ("lo", "hi", "p0"))
    _check_delta(delta)
    return jnp.maximum(vpr["hi"] - vpr["p0"], vpr["p0"] - vpr["lo"]) >= delta


def ambiguity(vpr: dict, delta) -> jax.Array:
    """``A_{eps,delta}``: the share of evaluation points that are ambiguous (Definition 3): f[]."""
    return jnp.mean(ambiguity_mask(vpr, delta).astype(vpr["p0"].dtype))


def discrepancy_bounds(prob: Problem, vpr: dict, delta, extra_candidates=None):
    """Certified bracket ``D_lb <= D_{eps,delta} <= D_ub = A_{eps,delta}`` (Definition 4).

    ``D_lb`` is the best share of conflicts over the 2m extreme models of ``vpr`` (and the rows of
    ``extra_candidates: f[c, d+1]`` that lie in S_eps). Returns ``(lower: f[], upper: f[], argmax_model: f[d+1])``.
    """
    _check_problem(prob)
    _check_vpr(vpr)
    _check_delta(delta)
    cands = jnp.concatenate([vpr["w_lo"], vpr["w_hi"]])
    feas = jnp.ones(cands.shape[0], bool)
    if extra_candidates is not None:
        extra = jnp.asarray(extra_candidates, cands.dtype)
        check_array("extra_candidates", extra, ndim=2)
        if extra.shape[1] != cands.shape[1]:
            raise ValueError(f"extra_candidates: expected width {cands.shape[1]}, got {extra.shape[1]}")
        L_extra = jax.vmap(lambda w: objective(w, prob))(extra)
        cands = jnp.concatenate([cands, extra])
        feas = jnp.concatenate([feas, L_extra <= vpr["L0"] + vpr["eps"]])
    return _discrepancy(cands, feas, vpr["eval_x"], vpr["p0"], delta, ambiguity(vpr, delta))


@jax.jit
def _discrepancy(cands, feas, eval_x, p0, delta, upper):
    P = jax.nn.sigmoid(cands @ eval_x.T)  # [c, m]
    share = jnp.mean((jnp.abs(P - p0[None, :]) >= delta).astype(P.dtype), axis=1)
    share = jnp.where(feas, share, -1.0)
    best = jnp.argmax(share)
    return share[best], upper, cands[best]


def quadratic_vpr(prob: Problem, w0, eps, eval_x):
    """Small-eps approximation ``s0 -+ sqrt(2 eps xt^T H0^-1 xt)``: ``(s_lo: f[m], s_hi: f[m])``."""
    _check_problem(prob)
    _check_eps(eps)
    w0 = _check_vec("w0", w0, prob)
    eval_x = jnp.asarray(eval_x, prob.Xt.dtype)
    _check_eval_x(prob, eval_x)
    s0 = eval_x @ w0
    half = jnp.sqrt(2.0 * eps * leverage(prob, w0, eval_x))
    return s0 - half, s0 + half


def _constrained_min(prob, x, t, w_start, n_newton=30):
    """``l*(t) = min L(w) s.t. x^T w = t`` by equality-constrained Newton (KKT system) from a feasible start."""
    w = w_start + (t - x @ w_start) * x / (x @ x)
    k = x.shape[0]

    def body(_, w):
        g = grad(w, prob)
        H = hess(w, prob)
        K = jnp.block([[H, x[:, None]], [x[None, :], jnp.zeros((1, 1), w.dtype)]])
        sol = jnp.linalg.solve(K, jnp.concatenate([-g, jnp.zeros(1, w.dtype)]))
        dw = sol[:k]
        f0 = objective(w, prob)

        def ls(c):
            step, _ = c
            return step * 0.5, objective(w + step * 0.5 * dw, prob)

        step, fs = jax.lax.while_loop(lambda c: (c[1] > f0 + 0.25 * c[0] * (g @ dw)) & (c[0] > 1e-10), ls,
                                      (jnp.ones((), w.dtype), objective(w + dw, prob)))
        return jnp.where(fs <= f0, w + step * dw, w)

    w = jax.lax.fori_loop(0, n_newton, body, w)
    return objective(w, prob), w


def score_constrained_vpr(prob: Problem, w0, L0, eps, eval_x, n_bisect: int = 80):
    """Oracle (formulation 2): the roots of ``l*(t) = L0 + eps`` on either side of ``t0 = x^T w0``.

    Bracket by doubling from the quadratic-model half-width, then ``n_bisect`` bisection steps.
    Returns ``(s_lo: f[m], s_hi: f[m])``. Slow (nested Newton in bisection): for tests. Jitted.
    """
    _check_problem(prob)
    w0 = _check_vec("w0", w0, prob)
    _check_scalar("L0", L0)
    _check_eps(eps)
    eval_x = jnp.asarray(eval_x, prob.Xt.dtype)
    _check_eval_x(prob, eval_x)
    if isinstance(n_bisect, bool) or not isinstance(n_bisect, (int, np.integer)) or n_bisect < 1:
        raise ValueError(f"n_bisect: expected an int >= 1, got {n_bisect!r}")
    return _score_constrained_vpr(prob, w0, L0, eps, eval_x, int(n_bisect))


@functools.partial(jax.jit, static_argnames=("n_bisect",))
def _score_constrained_vpr(prob: Problem, w0, L0, eps, eval_x, n_bisect: int = 80):
    H0inv = jnp.linalg.inv(hess(w0, prob))

    def side(x, sign):
        t0 = x @ w0
        h0 = jnp.sqrt(2.0 * eps * (x @ H0inv @ x))

        def grow(c):
            h, k = c
            return h * 2.0, k + 1

        def too_small(c):
            h, k = c
            return (_constrained_min(prob, x, t0 + sign * h, w0)[0] <= L0 + eps) & (k < 60)

        h_hi, _ = jax.lax.while_loop(too_small, grow, (h0, 0))

        def bis(_, c):
            a, b = c
            m = 0.5 * (a + b)
            inside = _constrained_min(prob, x, t0 + sign * m, w0)[0] <= L0 + eps
            return jnp.where(inside, m, a), jnp.where(inside, b, m)

        a, _ = jax.lax.fori_loop(0, n_bisect, bis, (jnp.zeros_like(h0), h_hi))
        return t0 + sign * a

    return jax.vmap(lambda x: side(x, -1.0))(eval_x), jax.vmap(lambda x: side(x, 1.0))(eval_x)


# ============================================================================ data


def load_breast_cancer_problem(lam: float = 1e-2) -> Problem:
    """scikit-learn's bundled breast cancer (569 x 30; 357 benign = label 1), features standardised
    with the POPULATION SD, as a :class:`Problem` (dtype float64 when x64 is enabled)."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    X = np.asarray(d.data, np.float64)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return make_problem(X, d.target.astype(np.int32), lam=lam)


def make_two_groups(seed: int, *, n_maj: int = 400, n_min: int = 40, shift: float = 2.0,
                    beta_maj=(1.5, -1.0), beta_min=(-1.0, 1.5)) -> dict[str, np.ndarray]:
    """Majority/minority data (our construction): group g's x ~ N(shift * g, I), y ~ Bernoulli(sigmoid(x^T beta_g)).

    Returns ``{"x": f64[n, d], "y": i32[n], "group": i32[n]}`` (group 1 = minority), rows shuffled.
    """
    check_range("n_maj", n_maj, low=1)
    check_range("n_min", n_min, low=1)
    rng = np.random.default_rng(seed)
    bm, bn = np.asarray(beta_maj, float), np.asarray(beta_min, float)
    if bm.shape != bn.shape:
        raise ValueError(f"beta_min: expected the shape of beta_maj {bm.shape}, got {bn.shape}")
    d = bm.size
    x = np.concatenate([rng.standard_normal((n_maj, d)), shift + rng.standard_normal((n_min, d))])
    g = np.r_[np.zeros(n_maj, np.int32), np.ones(n_min, np.int32)]
    logits = np.where(g[:, None] == 1, x @ bn[:, None], x @ bm[:, None])[:, 0]
    y = (rng.uniform(size=g.size) < 1 / (1 + np.exp(-logits))).astype(np.int32)
    perm = rng.permutation(g.size)
    return {"x": x[perm], "y": y[perm], "group": g[perm]}


def add_outliers(seed: int, X, y, *, k: int = 10, scale: float = 5.0) -> dict[str, np.ndarray]:
    """Append ``k`` outliers: random rows of X pushed ``scale`` SDs out, with flipped labels; ``"outlier"`` marks them."""
    X, y = np.asarray(X, float), np.asarray(y)
    check_array("X", X, ndim=2, min_size=1)
    check_array("y", y, shape=(X.shape[0],))
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k: expected an int >= 0 (the number of outliers), got {k!r}")
    _check_scalar("scale", scale)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=k)
    Xo = X[idx] + scale * X.std(axis=0) * rng.choice([-1.0, 1.0], size=(k, X.shape[1]))
    return {"x": np.concatenate([X, Xo]), "y": np.concatenate([y, 1 - y[idx]]).astype(np.int32),
            "outlier": np.r_[np.zeros(len(y), bool), np.ones(k, bool)]}


def make_separable(seed: int, *, n: int = 200, d: int = 2, margin: float = 0.5) -> dict[str, np.ndarray]:
    """Linearly separable data: x ~ N(0, I), label = 1[x_0 > 0], points within ``margin`` of the plane pushed out."""
    for name, v in (("n", n), ("d", d)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    _check_scalar("margin", margin)
    check_range("margin", float(margin), low=0.0)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    x[:, 0] += np.sign(x[:, 0]) * margin
    return {"x": x, "y": (x[:, 0] > 0).astype(np.int32)}
