"""Tests for zoo.stats.predictive_multiplicity (spec papers/predictive_multiplicity.md section 6).

All in float64 on a small two-group problem (n = 60, d = 2) so that each jitted solver compiles for
one shape. Independent references: scikit-learn LogisticRegression (baseline), scipy SLSQP on the
same convex program, the score-constrained oracle (formulation 2), the small-eps quadratic model and
Monte-Carlo samples of the Rashomon set.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from zoo.stats import predictive_multiplicity as pm

LAM = 1e-2
EPS = 0.02


def _data():
    d = pm.make_two_groups(0, n_maj=48, n_min=12)
    return d["x"], d["y"]


X, Y = _data()


@pytest.fixture(scope="module")
def setup():
    with jax.enable_x64(True):
        prob = pm.make_problem(X, Y, lam=LAM)
        w0, L0, info = pm.fit_baseline(prob)
        vpr = pm.viable_prediction_range(prob, EPS, baseline=(w0, L0))
        return prob, w0, L0, info, jax.tree.map(np.asarray, vpr)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _np_loss(w, Xt, ys):
    return np.mean(np.logaddexp(0.0, -ys * (Xt @ w))) + 0.5 * LAM * np.sum(w[:-1] ** 2)


def _np_grad(w, Xt, ys):
    s = Xt @ w
    r = -ys / (1.0 + np.exp(ys * s))
    g = Xt.T @ r / len(ys)
    g[:-1] += LAM * w[:-1]
    return g


def _slsqp(prob, w0, L0, x, eps, sign):
    Xt, ys = np.asarray(prob.Xt), np.asarray(prob.ys)
    res = minimize(lambda w: -sign * (x @ w), np.asarray(w0), jac=lambda w: -sign * x, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda w: float(L0) + eps - _np_loss(w, Xt, ys),
                                 "jac": lambda w: -_np_grad(w, Xt, ys)}],
                   options={"ftol": 1e-14, "maxiter": 500})
    return x @ res.x


def test_baseline_matches_sklearn(setup):
    from sklearn.linear_model import LogisticRegression

    prob, w0, L0, info, _ = setup
    assert float(info.grad_norm) <= 1e-10
    ref = LogisticRegression(C=1 / (len(Y) * LAM), tol=1e-12, max_iter=10_000).fit(X, Y)
    np.testing.assert_allclose(np.asarray(w0), np.r_[ref.coef_[0], ref.intercept_], atol=1e-6)
    assert float(L0) == pytest.approx(_np_loss(np.asarray(w0), np.asarray(prob.Xt), np.asarray(prob.ys)), rel=1e-12)


def test_vpr_contains_p0_and_extreme_models_are_feasible_and_active(setup, x64):
    prob, w0, L0, _, v = setup
    assert np.all(v["lo"] <= v["p0"]) and np.all(v["p0"] <= v["hi"])
    assert np.all(v["hi"] - v["lo"] > 0)
    L = np.asarray(jax.jit(jax.vmap(lambda w: pm.objective(w, prob)))(jnp.concatenate([v["w_lo"], v["w_hi"]])))
    assert np.all(L <= float(L0) + EPS + 1e-10)
    assert np.all(L >= float(L0) + EPS - 1e-7)
    # eps = 0: the range collapses to p0 exactly
    v0 = pm.viable_prediction_range(prob, 0.0, baseline=(w0, L0))
    np.testing.assert_array_equal(np.asarray(v0["lo"]), np.asarray(v0["p0"]))
    np.testing.assert_array_equal(np.asarray(v0["hi"]), np.asarray(v0["p0"]))


def test_tilted_equals_score_constrained_oracle_equals_slsqp(setup, x64):
    prob, w0, L0, _, v = setup
    idx = np.array([0, 7, 19, 33, 58])
    s_lo2, s_hi2 = pm.score_constrained_vpr(prob, w0, L0, EPS, prob.Xt[idx])
    np.testing.assert_allclose(v["s_lo"][idx], np.asarray(s_lo2), atol=1e-6)
    np.testing.assert_allclose(v["s_hi"][idx], np.asarray(s_hi2), atol=1e-6)
    for i in idx:
        x = np.asarray(prob.Xt[i])
        assert abs(_slsqp(prob, w0, L0, x, EPS, 1.0) - v["s_hi"][i]) <= 1e-6
        assert abs(_slsqp(prob, w0, L0, x, EPS, -1.0) - v["s_lo"][i]) <= 1e-6


def test_tilt_path_is_monotone(setup, x64):
    prob, w0, _, _, _ = setup
    x = prob.Xt[3]
    nus = jnp.linspace(0.0, 0.2, 9)
    W = jax.jit(jax.vmap(lambda nu: pm.tilted_solve(prob, x, nu, w0)))(nus)
    s = np.asarray(W @ x)
    L = np.asarray(jax.vmap(lambda w: pm.objective(w, prob))(W))
    assert np.all(np.diff(s) >= -1e-12) and np.all(np.diff(L) >= -1e-12)
    assert s[-1] > s[0] + 1e-3


def test_small_eps_matches_quadratic_model(setup, x64):
    prob, w0, L0, _, _ = setup
    v = pm.viable_prediction_range(prob, 1e-5, baseline=(w0, L0))
    q_lo, q_hi = pm.quadratic_vpr(prob, w0, 1e-5, prob.Xt)
    half_q = np.asarray(q_hi - v["s0"])
    np.testing.assert_allclose(np.asarray(v["s_hi"] - v["s0"]), half_q, rtol=1e-2)
    np.testing.assert_allclose(np.asarray(v["s0"] - v["s_lo"]), half_q, rtol=1e-2)


def test_nesting_and_invariances(setup, x64):
    prob, w0, L0, _, v = setup
    small = pm.viable_prediction_range(prob, EPS / 4, baseline=(w0, L0))
    assert np.all(np.asarray(small["lo"]) >= v["lo"] - 1e-12) and np.all(np.asarray(small["hi"]) <= v["hi"] + 1e-12)
    # permuting rows changes nothing (evaluate at the original points)
    perm = np.random.default_rng(1).permutation(len(Y))
    p2 = pm.make_problem(X[perm], Y[perm], lam=LAM)
    v2 = pm.viable_prediction_range(p2, EPS, eval_x=prob.Xt)
    np.testing.assert_allclose(np.asarray(v2["lo"]), v["lo"], atol=1e-8)
    np.testing.assert_allclose(np.asarray(v2["hi"]), v["hi"], atol=1e-8)
    # flipping every label maps [lo, hi] to [1 - hi, 1 - lo]
    p3 = pm.make_problem(X, 1 - Y, lam=LAM)
    v3 = pm.viable_prediction_range(p3, EPS)
    np.testing.assert_allclose(np.asarray(v3["lo"]), 1 - v["hi"], atol=1e-8)
    np.testing.assert_allclose(np.asarray(v3["hi"]), 1 - v["lo"], atol=1e-8)


def test_duplicating_the_data_changes_nothing(setup, x64):
    prob, _, L0, _, v = setup
    p2 = pm.make_problem(np.concatenate([X, X]), np.concatenate([Y, Y]), lam=LAM)
    v2 = pm.viable_prediction_range(p2, EPS, eval_x=prob.Xt)
    assert float(v2["L0"]) == pytest.approx(float(L0), rel=1e-12)
    np.testing.assert_allclose(np.asarray(v2["lo"]), v["lo"], atol=1e-8)
    np.testing.assert_allclose(np.asarray(v2["hi"]), v["hi"], atol=1e-8)


def _monte_carlo_models(prob, w0, L0, eps, n=400, seed=0):
    """Random directions from w0, each pushed to a random fraction of the way to the boundary of S_eps."""
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((n, prob.Xt.shape[1]))
    Xt, ys = np.asarray(prob.Xt), np.asarray(prob.ys)
    out = []
    for u in U:
        a, b = 0.0, 1.0
        while _np_loss(np.asarray(w0) + b * u, Xt, ys) <= float(L0) + eps:
            b *= 2
        for _ in range(50):
            m = 0.5 * (a + b)
            a, b = (m, b) if _np_loss(np.asarray(w0) + m * u, Xt, ys) <= float(L0) + eps else (a, m)
        out.append(np.asarray(w0) + a * rng.uniform(0.5, 1.0) ** 0.1 * u)
    return np.stack(out)


def test_ambiguity_discrepancy_and_monte_carlo_soundness(setup, x64):
    prob, w0, L0, _, v = setup
    DELTA = 0.2  # eps = 0.02 on 60 points: every point moves by 0.1, about 12% by 0.2
    assert float(pm.ambiguity(v, 1e-9)) == 1.0
    assert float(pm.ambiguity(v, 1.0)) == 0.0
    A = float(pm.ambiguity(v, DELTA))
    assert 0 < A < 1
    np.testing.assert_array_equal(np.asarray(pm.ambiguity_mask(v, DELTA)),
                                  np.maximum(v["hi"] - v["p0"], v["p0"] - v["lo"]) >= DELTA)
    W = _monte_carlo_models(prob, w0, L0, EPS)
    P = 1 / (1 + np.exp(-(W @ np.asarray(prob.Xt).T)))
    assert np.all(P <= v["hi"][None, :] + 1e-9) and np.all(P >= v["lo"][None, :] - 1e-9)  # soundness
    assert np.max(P.max(axis=0) - v["hi"]) > -0.05  # and the samples get close to the range
    lower, upper, best = pm.discrepancy_bounds(prob, v, DELTA)
    d_mc = np.max(np.mean(np.abs(P - v["p0"][None, :]) >= DELTA, axis=1))
    assert float(lower) <= float(upper) == pytest.approx(A)
    assert d_mc <= float(upper) + 1e-12
    lower2, _, _ = pm.discrepancy_bounds(prob, v, DELTA, extra_candidates=W)
    assert float(lower2) >= max(float(lower), d_mc) - 1e-12


def test_objective_gradients_and_vmap(setup, x64):
    from jax.test_util import check_grads

    prob, w0, L0, _, v = setup
    check_grads(lambda w: pm.objective(w, prob), (w0 + 0.1,), order=2, modes=["rev"])
    np.testing.assert_allclose(pm.grad(w0 + 0.1, prob), jax.grad(pm.objective)(w0 + 0.1, prob), rtol=1e-10)
    H0inv = jnp.linalg.inv(pm.hess(w0, prob))
    one = jax.jit(lambda x: pm.extreme_score(prob, w0, L0, H0inv, x, EPS, 1.0)[0])
    for i in (2, 40):
        assert float(one(prob.Xt[i])) == pytest.approx(v["s_hi"][i], abs=1e-9)


def test_bad_inputs(x64):
    with pytest.raises(ValueError, match=r"y: expected binary labels"):
        pm.make_problem(X, Y + 1)
    with pytest.raises(ValueError, match="both classes"):
        pm.make_problem(X, np.ones_like(Y))
    Xn = X.copy()
    Xn[0, 0] = np.inf
    with pytest.raises(ValueError, match="X: contains 1 non-finite"):
        pm.make_problem(Xn, Y)
    with pytest.raises(ValueError, match="lam"):
        pm.make_problem(X, Y, lam=-1.0)
    sep = pm.make_separable(0, n=40)
    with pytest.raises(ValueError, match="separable.*unbounded"):
        pm.make_problem(sep["x"], sep["y"], lam=0.0)
    prob = pm.make_problem(X, Y, lam=LAM)
    with pytest.raises(ValueError, match="eps"):
        pm.viable_prediction_range(prob, -0.1)
    with pytest.raises(ValueError, match="eval_x.*width"):
        pm.viable_prediction_range(prob, 0.1, eval_x=np.ones((3, 5)))
    fake = {"hi": jnp.ones(2), "lo": jnp.zeros(2), "p0": jnp.full(2, 0.5)}
    with pytest.raises(ValueError, match="delta"):
        pm.ambiguity(fake, 0.0)
    with pytest.raises(ValueError, match="delta"):
        pm.ambiguity(fake, 1.5)
