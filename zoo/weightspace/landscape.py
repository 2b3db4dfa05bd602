"""Loss-landscape metrics of the weight-space family: curvature, representation similarity, connectivity.

The issue (16) asks for these "in zoo.weightspace.core"; ``core.py`` is owned by another engineer, so
they live here and reuse core's interpolation and barrier functions (`zoo.weightspace.core.lerp`,
`path_losses`, `barrier_linear`, `mode_connectivity`). Toolkit: ``papers/_weightspace_family.md``
§7 (curvature), §8 (CKA), §9 (Bezier curves); protocol of the phase-transition model zoo
(Schürholt et al. 2025, arXiv 2504.18072) and PyHessian (Yao et al. 2020).

Every function is matrix-free (only Hessian-vector products, never the Hessian) and pure: a
population of models is handled by ``jax.vmap`` over ``params`` (and ``key``), with ``loss_fn``
closing over fixed data.

Functions
  hvp(loss_fn, params, v)            H v = d/dε ∇L(θ + εv), forward-over-reverse (jvp of grad).
  top_eigenvalue(...)                power iteration on H: λ = <v, Hv>, stop when
                                     |λ_new − λ_old| / (|λ_old| + 1e-6) < tol (PyHessian: 100 it, 1e-3).
                                     Converges to the eigenvalue of largest MAGNITUDE.
  lanczos_eigenvalues(...)           m-step Lanczos with full re-orthogonalisation; the Ritz values
                                     (eigenvalues of the tridiagonal T_m); [-1] is the largest algebraic.
  hutchinson_trace(...)              tr H ≈ mean_j z_jᵀ H z_j, Rademacher z_j; stop when the running mean
                                     changes relatively by < tol (denominator |mean| + 1e-6 — PyHessian
                                     uses ``trace + 1e-6``, wrong for negative traces); returns stderr.
  linear_cka(X, Y)                   ‖X̃ᵀỸ‖_F² / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F), columns centred (Kornblith 2019).
  minibatch_cka(Xb, Yb)              mean of per-batch linear CKA (the phase zoo's logit CKA).
  loss_barrier(loss_fn, pa, pb, ts)  loss along the linear path θ(t) = (1−t)θ_a + tθ_b: the barrier
                                     max_t [L(t) − ((1−t)L(0) + tL(1))] and the phase-zoo signed mc
                                     (negative = barrier).
  bezier_point / fit_bezier / bezier_losses
                                     quadratic Bezier θ(t) = (1−t)²θ₀ + 2t(1−t)θ₁ + t²θ₂ with fixed ends;
                                     the bend θ₁ is trained by SGD+momentum on L(θ(t)), t ~ U(0,1) per
                                     step, weight decay on the bend only, initialised at the midpoint
                                     (Garipov et al. 2018; phase-zoo lr schedule: factor 1 until 50%,
                                     linear to 0.01 at 90%, then 0.01).

Our choices: a Gaussian normalised start vector for power iteration and Lanczos; Lanczos breakdown
(β < 1e-10·|α|max) zeroes the remaining Krylov vectors (their Ritz values are then 0 — use ``m`` ≤ the
number of parameters and read only the converged end of the spectrum); probes of Hutchinson are drawn
one per iteration from ``fold_in(key, j)`` so the estimate is a pure function of ``key``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from zoo.checks import check_array, check_range, check_tree_like, is_traced
from zoo.weightspace import core

__all__ = [
    "hvp",
    "top_eigenvalue",
    "lanczos_eigenvalues",
    "hutchinson_trace",
    "linear_cka",
    "minibatch_cka",
    "loss_barrier",
    "bezier_point",
    "fit_bezier",
    "bezier_losses",
]

Params = Any


def _check_fn(name: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{name}: expected a callable params -> scalar loss, got {type(fn).__name__}")


def _check_params(name: str, params: Params) -> None:
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError(f"{name}: expected a non-empty pytree of float arrays")
    for i, x in enumerate(leaves):
        check_array(f"{name} (leaf {i})", x, kind="f")


def _check_key(key: Any) -> None:
    if not (isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                                            or (key.dtype == jnp.uint32 and key.shape[-1:] == (2,)))):
        raise TypeError(f"key: expected a JAX PRNG key, got {type(key).__name__}")


def hvp(loss_fn: Callable[[Params], Any], params: Params, v: Params) -> Params:
    """Hessian-vector product ``∇²L(params) v`` by forward-over-reverse (``jvp`` of ``grad``); vmappable."""
    _check_fn("loss_fn", loss_fn)
    _check_params("params", params)
    check_tree_like("v", v, params, "params")
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def _flat_hvp(loss_fn, params):
    flat, unravel = ravel_pytree(params)
    g = jax.grad(lambda f: loss_fn(unravel(f)))
    return flat, (lambda v: jax.jvp(g, (flat,), (v.astype(flat.dtype),))[1])


def top_eigenvalue(loss_fn: Callable[[Params], Any], params: Params, key: jax.Array, *, max_iter: int = 100,
                   tol: float = 1e-3) -> dict:
    """Power iteration on the Hessian: ``{"eigenvalue", "eigenvector" (pytree), "n_iter"}``.

    Converges to the eigenvalue of largest magnitude (negative at saddles). Stops after ``max_iter``
    HVPs or when the relative change of ``λ = <v, Hv>`` is below ``tol``.
    """
    _check_fn("loss_fn", loss_fn)
    _check_params("params", params)
    _check_key(key)
    check_range("max_iter", max_iter, low=1)
    check_range("tol", tol, low=0.0)
    flat, mv = _flat_hvp(loss_fn, params)
    _, unravel = ravel_pytree(params)
    v0 = jax.random.normal(key, flat.shape, flat.dtype)
    v0 = v0 / jnp.linalg.norm(v0)

    def cond(c):
        _, _, it, done = c
        return (it < max_iter) & ~done

    def body(c):
        v, lam, it, _ = c
        hv = mv(v)
        new = jnp.vdot(v, hv)
        nrm = jnp.linalg.norm(hv)
        v_next = jnp.where(nrm > 0, hv / jnp.where(nrm > 0, nrm, 1), v)
        done = (it > 0) & (jnp.abs(new - lam) / (jnp.abs(lam) + 1e-6) < tol)
        return v_next, new, it + 1, done

    v, lam, it, _ = jax.lax.while_loop(cond, body, (v0, jnp.zeros((), flat.dtype), jnp.int32(0), jnp.bool_(False)))
    return {"eigenvalue": lam, "eigenvector": unravel(v), "n_iter": it}


def lanczos_eigenvalues(loss_fn: Callable[[Params], Any], params: Params, key: jax.Array, *, m: int = 30) -> jax.Array:
    """Ritz values (ascending, f[m]) of ``m`` Lanczos steps on the Hessian; ``[-1]`` ≈ largest algebraic λ.

    Full re-orthogonalisation against all previous Lanczos vectors (stable in float32). With ``m``
    equal to the number of parameters the Ritz values are the Hessian's spectrum (exact arithmetic).
    """
    _check_fn("loss_fn", loss_fn)
    _check_params("params", params)
    _check_key(key)
    n = int(sum(np.size(x) for x in jax.tree.leaves(params)))
    check_range("m", m, low=1, high=n)
    flat, mv = _flat_hvp(loss_fn, params)
    dt = flat.dtype
    v0 = jax.random.normal(key, flat.shape, dt)
    v0 = v0 / jnp.linalg.norm(v0)
    V = jnp.zeros((m, n), dt).at[0].set(v0)

    def body(c, j):
        V, alphas, betas, scale = c
        v = V[j]
        w = mv(v)
        a = jnp.vdot(v, w)
        mask = (jnp.arange(m) <= j)[:, None]
        Vm = V * mask
        w = w - Vm.T @ (Vm @ w)  # full re-orthogonalisation (twice is enough)
        w = w - Vm.T @ (Vm @ w)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(a))
        ok = b > 1e-10 * jnp.maximum(scale, 1e-30)
        nxt = jnp.where(ok, w / jnp.where(ok, b, 1), 0)
        V = jnp.where(j + 1 < m, V.at[jnp.minimum(j + 1, m - 1)].set(nxt), V)
        return (V, alphas.at[j].set(a), betas.at[j].set(jnp.where(ok, b, 0)), scale), None

    init = (V, jnp.zeros(m, dt), jnp.zeros(m, dt), jnp.zeros((), dt))
    (V, alphas, betas, _), _ = jax.lax.scan(body, init, jnp.arange(m))
    T = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    return jnp.linalg.eigvalsh(T)


def hutchinson_trace(loss_fn: Callable[[Params], Any], params: Params, key: jax.Array, *, max_probes: int = 100,
                     tol: float = 1e-3, min_probes: int = 2) -> dict:
    """Hutchinson estimate of ``tr ∇²L`` with Rademacher probes: ``{"trace", "stderr", "n_probes"}``.

    Probe ``j`` is drawn from ``fold_in(key, j)``; stops after ``max_probes`` or (after ``min_probes``)
    when the running mean changes by less than ``tol · (|mean| + 1e-6)``.
    """
    _check_fn("loss_fn", loss_fn)
    _check_params("params", params)
    _check_key(key)
    check_range("max_probes", max_probes, low=1)
    check_range("min_probes", min_probes, low=1)
    check_range("tol", tol, low=0.0)
    flat, mv = _flat_hvp(loss_fn, params)
    dt = flat.dtype

    def cond(c):
        _, _, j, done = c
        return (j < max_probes) & ~done

    def body(c):
        s, s2, j, _ = c
        z = jax.random.rademacher(jax.random.fold_in(key, j), flat.shape, dt)
        q = jnp.vdot(z, mv(z))
        old = s / jnp.maximum(j, 1)
        s, s2, j = s + q, s2 + q * q, j + 1
        new = s / j
        done = (j >= min_probes) & (jnp.abs(new - old) < tol * (jnp.abs(old) + 1e-6))
        return s, s2, j, done

    z0 = jnp.zeros((), dt)
    s, s2, j, _ = jax.lax.while_loop(cond, body, (z0, z0, jnp.int32(0), jnp.bool_(False)))
    jf = j.astype(dt)
    mean = s / jf
    var = jnp.maximum(s2 / jf - mean**2, 0) * jf / jnp.maximum(jf - 1, 1)
    return {"trace": mean, "stderr": jnp.sqrt(var / jf), "n_probes": j}


def linear_cka(X: Any, Y: Any) -> jax.Array:
    """Linear CKA of two representations of the same N inputs, ``X: f[N, p]``, ``Y: f[N, q]``; in [0, 1]."""
    check_array("X", X, ndim=2, kind="fiu")
    check_array("Y", Y, ndim=2, kind="fiu")
    if np.shape(X)[0] != np.shape(Y)[0]:
        raise ValueError(f"Y: expected {np.shape(X)[0]} rows (as X), got {np.shape(Y)[0]}")
    if np.shape(X)[0] < 2:
        raise ValueError(f"X: expected at least 2 rows, got {np.shape(X)[0]}")
    dt = jnp.result_type(X, Y, float)
    X = jnp.asarray(X, dt)
    Y = jnp.asarray(Y, dt)
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    xy = jnp.sum((X.T @ Y) ** 2)
    xx = jnp.linalg.norm(X.T @ X)
    yy = jnp.linalg.norm(Y.T @ Y)
    den = xx * yy
    return jnp.where(den > 0, xy / jnp.where(den > 0, den, 1), 0.0)


def minibatch_cka(Xb: Any, Yb: Any) -> jax.Array:
    """Mean over batches of `linear_cka` (``Xb: f[nb, B, p]``, ``Yb: f[nb, B, q]``): the phase zoo's logit CKA.

    Not the CKA of the concatenated batches (small batches bias it upward; keep B fixed).
    """
    check_array("Xb", Xb, ndim=3, kind="fiu")
    check_array("Yb", Yb, ndim=3, kind="fiu")
    if np.shape(Xb)[:2] != np.shape(Yb)[:2]:
        raise ValueError(f"Yb: expected batches of shape {np.shape(Xb)[:2]} (as Xb), got {np.shape(Yb)[:2]}")
    return jnp.mean(jax.vmap(linear_cka)(jnp.asarray(Xb), jnp.asarray(Yb)))


def loss_barrier(loss_fn: Callable[[Params], Any], pa: Params, pb: Params, ts: Any = None) -> dict:
    """Loss along the linear path: ``{"losses": f[T], "barrier", "t_star", "mc"}``.

    ``barrier = max_t [L(t) − ((1−t) L(0) + t L(1))]`` (≥ 0; Frankle/Ainsworth); ``mc`` is the phase
    zoo's signed mode connectivity ``½(L(0)+L(1)) − L(t*)``, ``t* = argmax |L(t) − ½(L(0)+L(1))|``.
    ``ts`` must contain 0 and 1 first and last (default ``linspace(0, 1, 11)``). vmappable over pairs.
    """
    _check_fn("loss_fn", loss_fn)
    _check_params("pa", pa)
    check_tree_like("pb", pb, pa, "pa")
    dt = jnp.result_type(jax.tree.leaves(pa)[0])
    ts = jnp.linspace(0.0, 1.0, 11, dtype=dt) if ts is None else ts
    core._check_ts(ts, ends=True)
    losses = core.path_losses(loss_fn, pa, pb, ts)
    b, tstar = core.barrier_linear(losses, ts)
    return {"losses": losses, "barrier": b, "t_star": tstar, "mc": core.mode_connectivity(losses)}


# --------------------------------------------------------------------------------------- Bezier curves


def bezier_point(t: Any, theta0: Params, theta1: Params, theta2: Params) -> Params:
    """``(1−t)² θ₀ + 2t(1−t) θ₁ + t² θ₂`` leafwise (t scalar)."""
    check_array("t", t, shape=())
    if not is_traced(t):
        check_range("t", float(t), low=0.0, high=1.0)
    check_tree_like("theta1", theta1, theta0, "theta0")
    check_tree_like("theta2", theta2, theta0, "theta0")

    def f(a, b, c):
        tt = jnp.asarray(t, jnp.result_type(a))
        return (1 - tt) ** 2 * a + 2 * tt * (1 - tt) * b + tt**2 * c

    return jax.tree.map(f, theta0, theta1, theta2)


def fit_bezier(loss_fn: Callable[[Params, Any], Any], theta0: Params, theta2: Params, batches: Any, key: jax.Array,
               *, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4) -> Params:
    """Train the bend θ₁ of a quadratic Bezier curve between fixed ends; returns θ₁.

    ``loss_fn(params, batch) -> scalar``; ``batches``: pytree of leaves ``[S, ...]`` (one batch per
    step, S steps). Step s draws ``t ~ U(0,1)`` from ``fold_in(key, s)`` and applies SGD (momentum,
    weight decay on the bend) to ``L(θ(t), batch_s)``; lr factor 1 until 50% of the steps, linear to
    0.01 at 90%, then 0.01 (Garipov's schedule as in the phase zoo). Bend initialised at the midpoint.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable (params, batch) -> scalar, got {type(loss_fn).__name__}")
    _check_params("theta0", theta0)
    check_tree_like("theta2", theta2, theta0, "theta0")
    _check_key(key)
    check_range("lr", lr, low=0.0, low_inclusive=False)
    check_range("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)
    check_range("weight_decay", weight_decay, low=0.0)
    lb = jax.tree.leaves(batches)
    if not lb or any(np.ndim(x) == 0 for x in lb) or len({np.shape(x)[0] for x in lb}) != 1:
        raise ValueError("batches: expected a pytree whose leaves share a leading steps axis")
    steps = np.shape(lb[0])[0]
    bend = jax.tree.map(lambda a, c: 0.5 * (a + c), theta0, theta2)
    dt = jnp.result_type(jax.tree.leaves(theta0)[0])

    def factor(s):
        x = s / steps
        return jnp.where(x < 0.5, 1.0, jnp.where(x < 0.9, 1.0 - 0.99 * (x - 0.5) / 0.4, 0.01)).astype(dt)

    def step(c, inp):
        bend, buf = c
        s, batch = inp
        t = jax.random.uniform(jax.random.fold_in(key, s), (), dt)
        g = jax.grad(lambda b: loss_fn(bezier_point(t, theta0, b, theta2), batch))(bend)
        g = jax.tree.map(lambda gi, b: gi + weight_decay * b, g, bend)
        buf = jax.tree.map(lambda m, gi: momentum * m + gi, buf, g)
        bend = jax.tree.map(lambda b, m: b - lr * factor(s) * m, bend, buf)
        return (bend, buf), None

    (bend, _), _ = jax.lax.scan(step, (bend, jax.tree.map(jnp.zeros_like, bend)), (jnp.arange(steps), batches))
    return bend


def bezier_losses(eval_fn: Callable[[Params], Any], theta0: Params, theta1: Params, theta2: Params,
                  ts: Any = None) -> Any:
    """``eval_fn(bezier_point(t, θ₀, θ₁, θ₂))`` for every t (default 5 equispaced points, as the zoo)."""
    if not callable(eval_fn):
        raise TypeError(f"eval_fn: expected a callable params -> scalar(s), got {type(eval_fn).__name__}")
    _check_params("theta0", theta0)
    dt = jnp.result_type(jax.tree.leaves(theta0)[0])
    ts = jnp.linspace(0.0, 1.0, 5, dtype=dt) if ts is None else ts
    core._check_ts(ts, ends=False)
    return jax.lax.map(lambda t: eval_fn(bezier_point(t, theta0, theta1, theta2)), jnp.asarray(ts))

