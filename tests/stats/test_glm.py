"""Tests for zoo.stats.glm: the shared weighted, L2-regularised logistic regression (Newton)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from zoo.stats import glm

RNG = np.random.default_rng(0)
X = RNG.standard_normal((80, 3))
Y = (RNG.uniform(size=80) < 1 / (1 + np.exp(-(X @ np.array([1.0, -1.0, 0.5]) + 0.3)))).astype(np.int32)
SW = RNG.uniform(0.2, 2.0, size=80)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _prob(lam=0.1):
    Xt = glm.add_intercept(jnp.asarray(X))
    return Xt, jnp.asarray(2.0 * Y - 1.0), lam, glm.penalty_mask(3, dtype=Xt.dtype)


def test_closed_forms_match_autodiff(x64):
    Xt, ys, lam, m = _prob()
    w = jnp.asarray([0.3, -0.2, 0.1, 0.05])
    sw = jnp.asarray(SW)
    obj = jax.jit(glm.logistic_objective)
    np.testing.assert_allclose(jax.jit(glm.logistic_grad)(w, Xt, ys, lam, m, sw),
                               jax.jit(jax.grad(glm.logistic_objective))(w, Xt, ys, lam, m, sw), rtol=1e-10)
    np.testing.assert_allclose(jax.jit(glm.logistic_hess)(w, Xt, ys, lam, m, sw),
                               jax.jit(jax.hessian(glm.logistic_objective))(w, Xt, ys, lam, m, sw), rtol=1e-10,
                               atol=1e-14)
    ref = np.sum(SW * np.log1p(np.exp(-(2 * Y - 1) * (np.asarray(Xt) @ np.asarray(w))))) / SW.sum()
    assert float(obj(w, Xt, ys, lam, m, sw)) == pytest.approx(ref + 0.05 * (0.09 + 0.04 + 0.01), rel=1e-12)


def test_weighted_ridge_fit_matches_sklearn(x64):
    lam = 0.05
    w, info = glm.fit_logistic(X, Y, lam=lam, sample_weight=SW)
    assert bool(info.converged) and float(info.grad_norm) <= 1e-10
    # sklearn: sum_i sw_i loss_i + ||w||^2 / (2C)  ==  (sum sw) * [weighted mean + lam/2 ||w||^2] with C = 1/(lam sum sw)
    ref = LogisticRegression(C=1 / (lam * SW.sum()), tol=1e-12, max_iter=10_000).fit(X, Y, sample_weight=SW)
    np.testing.assert_allclose(np.asarray(w), np.r_[ref.coef_[0], ref.intercept_], atol=1e-6)


def test_tilted_solution_satisfies_its_optimality_condition(x64):
    Xt, ys, lam, m = _prob()
    c = jnp.asarray([0.05, 0.0, -0.02, 0.01])
    C = jnp.stack([c, -c, 2 * c])
    # one vmapped call over tilts; each solution satisfies grad L(w) = c
    W, info = jax.jit(jax.vmap(lambda c: glm.newton_logistic(Xt, ys, lam, m, tilt=c)))(C)
    G = jax.jit(jax.vmap(lambda w: glm.logistic_grad(w, Xt, ys, lam, m)))(W)
    np.testing.assert_allclose(G, C, atol=1e-10)
    assert np.all(np.asarray(info.converged))
    # the scores move with the tilt: w(2c) differs from w(c)
    assert np.abs(np.asarray(W[2] - W[0])).max() > 1e-3


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"y: expected binary labels in \{0, 1\}"):
        glm.fit_logistic(X, Y + 1)
    with pytest.raises(ValueError, match="both classes"):
        glm.fit_logistic(X, np.zeros(80, np.int32))
    with pytest.raises(ValueError, match="lam"):
        glm.fit_logistic(X, Y, lam=-1.0)
    with pytest.raises(ValueError, match="same number of rows"):
        glm.fit_logistic(X, Y[:-1])
    with pytest.raises(ValueError, match="sample_weight"):
        glm.fit_logistic(X, Y, sample_weight=-SW)
