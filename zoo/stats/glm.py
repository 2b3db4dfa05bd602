r"""Shared generalised-linear-model pieces: weighted, L2-regularised binary logistic regression.

Used by :mod:`zoo.stats.presto` (the rare-class logistic baseline) and
:mod:`zoo.stats.predictive_multiplicity` (the baseline model and the tilted per-point solves).

Model and objective (``Xt = [X, 1]``: intercept last; signed labels ``ys`` in {-1, +1})::

    s_i  = w^T xt_i                                                  (scores)
    L(w) = sum_i v_i softplus(-ys_i s_i) / sum_i v_i
           + (lam / 2) sum_j m_j w_j^2                               logistic_objective
    g(w) = -Xt^T (v * ys * sigmoid(-ys * s)) / sum v + lam m * w     logistic_grad
    H(w) = Xt^T diag(v * sigmoid(s) sigmoid(-s)) Xt / sum v
           + lam diag(m)                                             logistic_hess

``v`` are non-negative sample weights (all ones by default) and ``m`` is the penalty mask (1 on
penalised coordinates, 0 on the intercept by default). ``newton_logistic`` minimises the *tilted*
objective ``L(w) - c^T w`` (``c = 0`` gives plain ERM) by Newton's method with an Armijo
backtracking line search in a ``lax.while_loop``, so it jits and vmaps over problems, tilts and
weights. Float64 is recommended (``jax.enable_x64(True)``); the gradient-norm tolerance
``1e-10`` is unreachable in float32, where the loop then stops at ``max_iter`` or on stagnation.

Choices that are the zoo's: Armijo constant 0.25 and step shrink 0.5 (the multiplicity spec's
defaults) with a rounding slack of 16 eps |L| (so that full Newton steps are taken at the optimum); up to
40 halvings; a non-finite Newton direction (singular Hessian, e.g. separable data
with ``lam = 0``) falls back to the steepest-descent direction. Every public function checks the
shapes of its arguments (also under ``jit``) and their finiteness on concrete inputs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range, is_traced

__all__ = [
    "NewtonInfo",
    "add_intercept",
    "fit_logistic",
    "logistic_grad",
    "logistic_hess",
    "logistic_objective",
    "newton_logistic",
    "penalty_mask",
]


class NewtonInfo(NamedTuple):
    """Diagnostics of :func:`newton_logistic` (a pytree; leading axes appear under ``vmap``)."""

    n_iter: jax.Array  # i32[]  Newton iterations taken
    grad_norm: jax.Array  # f[]  ||g(w) - c||_2 at the returned w
    objective: jax.Array  # f[]  L(w) (without the tilt)
    converged: jax.Array  # bool[] grad_norm <= tol


def add_intercept(X: jax.Array) -> jax.Array:
    """``X: f[n, d] -> Xt: f[n, d+1]`` with a trailing column of ones (the intercept)."""
    X = jnp.asarray(X)
    check_array("X", X, ndim=2)
    return jnp.concatenate([X, jnp.ones((X.shape[0], 1), X.dtype)], axis=1)


def penalty_mask(d: int, *, penalize_intercept: bool = False, dtype=None) -> jax.Array:
    """``m: f[d+1]``: ones on the ``d`` feature weights, ``penalize_intercept`` on the last entry."""
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
        raise TypeError(f"d: expected an int (the number of features), got {type(d).__name__}")
    check_range("d", int(d), low=0)
    m = np.ones(d + 1)
    m[-1] = float(penalize_intercept)
    return jnp.asarray(m, dtype=dtype)


def _weights(ys, sw):
    return jnp.ones_like(ys) if sw is None else jnp.asarray(sw, ys.dtype)


def _check_glm(w, Xt, ys, lam, pen_mask, sw=None):
    """Shapes (always, also under ``jit``) and finiteness (concrete inputs only) of the GLM arguments.

    Returns them as arrays; ``w`` may be None (not checked)."""
    Xt, ys, pen_mask = jnp.asarray(Xt), jnp.asarray(ys), jnp.asarray(pen_mask)
    check_array("Xt", Xt, ndim=2, min_size=1)
    n, k = Xt.shape
    if w is not None:
        w = jnp.asarray(w)
        check_array("w", w, shape=(k,))
    check_array("ys", ys, shape=(n,))
    check_array("pen_mask", pen_mask, shape=(k,))
    check_array("lam", lam if hasattr(lam, "shape") else np.asarray(lam), ndim=0)
    if not is_traced(lam) and float(lam) < 0:
        raise ValueError(f"lam: expected a value >= 0, got {float(lam)!r}")
    if sw is not None:
        sw = jnp.asarray(sw)
        check_array("sw", sw, shape=(n,))
    return w, Xt, ys, pen_mask, sw


def logistic_objective(w, Xt, ys, lam, pen_mask, sw=None):
    """``L(w)``: weighted mean logistic loss plus ``lam/2 ||m * w||^2``.

    Args:
      w: f[d+1] weights (intercept last). Xt: f[n, d+1]. ys: f[n] in {-1, +1}.
      lam: f[] ridge strength >= 0. pen_mask: f[d+1] (1 penalised, 0 free). sw: f[n] weights or None.
    Returns: f[].
    """
    w, Xt, ys, pen_mask, sw = _check_glm(w, Xt, ys, lam, pen_mask, sw)
    v = _weights(ys, sw)
    s = Xt @ w
    return jnp.sum(v * jax.nn.softplus(-ys * s)) / jnp.sum(v) + 0.5 * lam * jnp.sum(pen_mask * w * w)


def logistic_grad(w, Xt, ys, lam, pen_mask, sw=None):
    """Closed-form ``g(w) = -Xt^T (v ys sigmoid(-ys s)) / sum v + lam m w``: f[d+1]."""
    w, Xt, ys, pen_mask, sw = _check_glm(w, Xt, ys, lam, pen_mask, sw)
    v = _weights(ys, sw)
    s = Xt @ w
    r = -v * ys * jax.nn.sigmoid(-ys * s)
    return Xt.T @ r / jnp.sum(v) + lam * pen_mask * w


def logistic_hess(w, Xt, ys, lam, pen_mask, sw=None):
    """Closed-form ``H(w) = Xt^T diag(v q) Xt / sum v + lam diag(m)``, ``q = sigmoid(s) sigmoid(-s)``: f[d+1, d+1]."""
    w, Xt, ys, pen_mask, sw = _check_glm(w, Xt, ys, lam, pen_mask, sw)
    v = _weights(ys, sw)
    s = Xt @ w
    q = v * jax.nn.sigmoid(s) * jax.nn.sigmoid(-s)
    return (Xt * q[:, None]).T @ Xt / jnp.sum(v) + jnp.diag(lam * pen_mask)


def newton_logistic(
    Xt,
    ys,
    lam,
    pen_mask,
    *,
    sw=None,
    tilt=None,
    w_init=None,
    max_iter: int = 50,
    tol: float = 1e-10,
    armijo: float = 0.25,
    shrink: float = 0.5,
    max_halvings: int = 40,
):
    """Minimise ``L(w) - tilt^T w`` by damped Newton (Armijo backtracking); jit/vmap-able.

    Args:
      Xt: f[n, d+1]; ys: f[n] in {-1, +1}; lam: f[]; pen_mask: f[d+1]; sw: f[n] or None.
      tilt: f[d+1] linear tilt ``c`` (None: 0). w_init: f[d+1] start (None: 0).
      max_iter: Newton iterations (a bound for ``lax.while_loop``). tol: stop when ``||g - c|| <= tol``.
    Returns:
      ``(w: f[d+1], NewtonInfo)``. The loop also stops when a line search cannot decrease the
      tilted objective (stagnation at machine precision); ``converged`` then reports the gradient test.
    """
    _, Xt, ys, pen_mask, sw = _check_glm(None, Xt, ys, lam, pen_mask, sw)
    if not jnp.issubdtype(Xt.dtype, jnp.floating):
        raise TypeError(f"Xt: expected a floating dtype, got {Xt.dtype}")
    k = Xt.shape[1]
    for name, v in (("tilt", tilt), ("w_init", w_init)):
        if v is not None:
            check_array(name, v, shape=(k,))
    for name, v, low in (("max_iter", max_iter, 1), ("max_halvings", max_halvings, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
    for name, v, lo, hi in (("tol", tol, 0.0, None), ("armijo", armijo, 0.0, 1.0), ("shrink", shrink, 0.0, 1.0)):
        if not is_traced(v):
            check_array(name, np.asarray(v, np.float64), ndim=0)
            check_range(name, float(v), low=lo, high=hi, low_inclusive=name == "tol", high_inclusive=False)
    dtype = Xt.dtype
    c = jnp.zeros(Xt.shape[1], dtype) if tilt is None else jnp.asarray(tilt, dtype)
    w = jnp.zeros(Xt.shape[1], dtype) if w_init is None else jnp.asarray(w_init, dtype)

    def f(w):
        return logistic_objective(w, Xt, ys, lam, pen_mask, sw) - c @ w

    def g(w):
        return logistic_grad(w, Xt, ys, lam, pen_mask, sw) - c

    def cond(state):
        _, _, gnorm, it, stalled = state
        return (it < max_iter) & (gnorm > tol) & ~stalled

    def body(state):
        w, fw, _, it, _ = state
        gw = g(w)
        H = logistic_hess(w, Xt, ys, lam, pen_mask, sw)
        d = -jnp.linalg.solve(H, gw)
        d = jnp.where(jnp.all(jnp.isfinite(d)) & (gw @ d < 0), d, -gw)
        slope = gw @ d

        slack = 16 * jnp.finfo(dtype).eps * jnp.abs(fw)  # accept steps whose decrease is below rounding

        def ls_cond(s):
            t, ft, k = s
            return (k < max_halvings) & ~(ft <= fw + armijo * t * slope + slack)

        def ls_body(s):
            t, _, k = s
            t = t * shrink
            return t, f(w + t * d), k + 1

        t, ft, _ = jax.lax.while_loop(ls_cond, ls_body, (jnp.ones((), dtype), f(w + d), 0))
        ok = ft <= fw + armijo * t * slope + slack
        w_new = jnp.where(ok, w + t * d, w)
        f_new = jnp.where(ok, ft, fw)
        return w_new, f_new, jnp.linalg.norm(g(w_new)), it + 1, ~ok

    init = (w, f(w), jnp.linalg.norm(g(w)), jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    w, _, gnorm, it, _ = jax.lax.while_loop(cond, body, init)
    info = NewtonInfo(
        n_iter=it,
        grad_norm=gnorm,
        objective=logistic_objective(w, Xt, ys, lam, pen_mask, sw),
        converged=gnorm <= tol,
    )
    return w, info


def _as_array(x):
    """``x`` itself when it has a shape (numpy, jax, tracer), else ``np.asarray(x)`` (lists, scalars)."""
    return x if hasattr(x, "shape") else np.asarray(x)


def _check_binary(name, y):
    check_array(name, y, ndim=1)
    y_np = None if is_traced(y) else np.asarray(y)
    if y_np is not None:
        if y_np.dtype.kind == "f" and not np.all(np.isfinite(y_np)):
            raise ValueError(f"{name}: contains non-finite values; expected labels in {{0, 1}}")
        bad = ~np.isin(y_np, (0, 1))
        if bad.any():
            raise ValueError(
                f"{name}: expected binary labels in {{0, 1}}, got {np.unique(y_np[bad])[:5].tolist()} "
                f"(first at index {int(np.argmax(bad))})"
            )
        if np.unique(y_np).size < 2:
            raise ValueError(f"{name}: both classes 0 and 1 must be present, got only {int(y_np[0])}")


def fit_logistic(
    X,
    y,
    *,
    lam: float = 0.0,
    penalize_intercept: bool = False,
    sample_weight=None,
    max_iter: int = 50,
    tol: float = 1e-10,
):
    """Fit ``P(y=1 | x) = sigmoid(w^T [x; 1])`` by Newton; validate inputs first (host-side).

    Args:
      X: f[n, d] features; y: [n] labels in {0, 1} (both present); lam: ridge strength >= 0 on the
      mean-loss scale (scikit-learn's ``C = 1 / (n lam)``); sample_weight: f[n] >= 0 or None.
    Returns:
      ``(w: f[d+1] (intercept last), NewtonInfo)``.
    """
    X, y = _as_array(X), _as_array(y)
    check_array("X", X, ndim=2, min_size=2)
    _check_binary("y", y)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y: expected the same number of rows, got {X.shape[0]} and {y.shape[0]}")
    if not is_traced(lam):
        check_range("lam", float(lam), low=0.0)
    if sample_weight is not None:
        check_array("sample_weight", sample_weight, shape=(X.shape[0],))
        if not is_traced(sample_weight) and np.any(np.asarray(sample_weight) < 0):
            raise ValueError("sample_weight: expected non-negative weights")
    X = jnp.asarray(X)
    if not jnp.issubdtype(X.dtype, jnp.floating):
        X = X.astype(jnp.result_type(float))
    Xt = add_intercept(X)
    ys = 2.0 * jnp.asarray(y, X.dtype) - 1.0
    m = penalty_mask(X.shape[1], penalize_intercept=penalize_intercept, dtype=X.dtype)
    return _fit_logistic_jit(Xt, ys, jnp.asarray(lam, X.dtype), m, sample_weight, max_iter, tol)


@functools.partial(jax.jit, static_argnums=(5, 6))
def _fit_logistic_jit(Xt, ys, lam, m, sw, max_iter, tol):
    return newton_logistic(Xt, ys, lam, m, sw=sw, max_iter=max_iter, tol=tol)
