"""Tests for zoo.stats.presto (spec papers/presto.md section 6).

References are independent: numpy likelihoods minimised by scipy BFGS (proportional-odds and
non-parallel MLEs), scikit-learn's unpenalised LogisticRegression (K = 2), central finite
differences, and hand-computed metrics. (statsmodels, which the spec names for OrderedModel/Logit,
is not installed; scipy on our own numpy likelihood replaces it, with the sign flip made explicit.)

Tolerances: likelihood 1e-12 (f64); gradients 1e-6 relative (f64); MLE parameters 1e-4, objectives
1e-7 (f64); KKT 1e-5 (f64, tol = 1e-14). Shapes are shared so each jitted entry point compiles a
few times only.
"""

from __future__ import annotations

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from zoo.data.ordinal import make_relaxed_po, ordinal_probs
from zoo.stats import presto as pr

N, P, K = 300, 3, 4
ALPHA_TRUE = np.array([-1.0, 0.5, 2.0])
BETA_TRUE = np.array([2.0, -1.0, 0.5])


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _po_data(seed=0, n=N):
    """Proportional-odds data, K = 4, X ~ U(-1, 1)^{n x 3} as in the paper's designs.

    Bounded X keeps the unpenalised non-parallel MLE inside the ordered region (with Gaussian X it
    sits on the boundary eta_k(x_i) = eta_{k-1}(x_i) of some row, where no smooth solver is exact).
    """
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n, P))
    probs = ordinal_probs(X, ALPHA_TRUE, np.repeat(BETA_TRUE[:, None], K - 1, axis=1))
    y = (rng.uniform(size=(n, 1)) > np.cumsum(probs, axis=1)).sum(axis=1).astype(np.int32)
    return X, np.minimum(y, K - 1)


DATA = _po_data()

# jitted once, reused: eager op-by-op dispatch is what makes JAX tests slow on CPU
_lp = jax.jit(pr.class_log_probs)
_lp_eta = jax.jit(pr._log_probs_from_eta)
_pp = jax.jit(pr.predict_proba, static_argnames="clip")
_nll = jax.jit(pr.nll)
_grad = jax.jit(pr.nll_grad)
_autograd = jax.jit(jax.grad(pr.nll))


# ----------------------------------------------------------------------------- numpy references


def _np_nll(alpha, B, X, y):
    eta = alpha[None, :] + X @ B
    cdf = 1.0 / (1.0 + np.exp(-eta))
    Pm = np.diff(np.concatenate([np.zeros((len(y), 1)), cdf, np.ones((len(y), 1))], axis=1), axis=1)
    if np.any(Pm <= 0):
        return 1e6
    return -np.mean(np.log(Pm[np.arange(len(y)), y]))


def _scipy_po(X, y, k):
    p = X.shape[1]

    def f(th):
        return _np_nll(th[: k - 1], np.repeat(th[k - 1 :, None], k - 1, axis=1), X, y)

    th0 = np.concatenate([np.linspace(-1, 1, k - 1), np.zeros(p)])
    r = minimize(f, th0, method="BFGS", options={"gtol": 1e-9, "maxiter": 10_000})
    return r.x[: k - 1], r.x[k - 1 :], r.fun


def _scipy_nonparallel(X, y, k, start):
    p = X.shape[1]

    def f(th):
        return _np_nll(th[: k - 1], th[k - 1 :].reshape(p, k - 1), X, y)

    r = minimize(f, start, method="BFGS", options={"gtol": 1e-9, "maxiter": 20_000})
    return r.fun


@functools.lru_cache(maxsize=None)
def _scipy_po_cached():
    return _scipy_po(*DATA, K)


# ----------------------------------------------------------------------------- 1. likelihood


def _eta_params(eta_rows):
    """Params whose cumulative logits at X = I equal ``eta_rows`` (alpha = 0, B = eta_rows)."""
    eta_rows = jnp.asarray(eta_rows)
    return pr.from_betas(jnp.zeros(eta_rows.shape[1], eta_rows.dtype), eta_rows), jnp.eye(eta_rows.shape[0],
                                                                                              dtype=eta_rows.dtype)


def test_class_log_probs_match_naive_and_mark_infeasible(x64):
    rng = np.random.default_rng(1)
    eta = np.sort(rng.normal(0, 3, size=(50, 3)), axis=1)
    eta[:5, 1] = eta[:5, 0]  # ties: eta_1 == eta_0 -> class 1 infeasible
    eta[5:10, 2] = eta[5:10, 1] - 0.5  # decreasing -> class 2 infeasible
    params, X = _eta_params(eta)
    lp = np.asarray(_lp(params, X))
    s = 1 / (1 + np.exp(-eta))
    naive = np.diff(np.concatenate([np.zeros((50, 1)), s, np.ones((50, 1))], axis=1), axis=1)
    infeasible = np.zeros_like(lp, bool)
    infeasible[:, 1:-1] = np.diff(eta, axis=1) <= 0
    assert np.array_equal(np.isneginf(lp), infeasible)
    ok = ~infeasible
    np.testing.assert_allclose(np.exp(lp[ok]), naive[ok], rtol=0, atol=1e-12)
    feasible_rows = ~infeasible.any(axis=1)
    np.testing.assert_allclose(np.exp(lp[feasible_rows]).sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(_pp(params, X)).sum(axis=1), 1.0, atol=1e-12)


def test_class_log_probs_no_nan_float32_extremes():
    eta = jnp.asarray([[-80.0, -79.0, 80.0], [-80.0, 79.0, 80.0], [70.0, 79.0, 80.0], [-1e-3, 0.0, 1e-3],
                       [-80.0, -80.0, -79.9]], jnp.float32)
    params, X = _eta_params(eta)
    lp = _lp(params, X)
    assert lp.dtype == jnp.float32 and not jnp.any(jnp.isnan(lp))
    assert jnp.isneginf(lp[4, 1])  # tie
    g = jax.jit(jax.grad(lambda e: jnp.sum(jnp.where(jnp.isfinite(lp), pr._log_probs_from_eta(e), 0.0))))(eta)
    assert not jnp.any(jnp.isnan(g))
    # the rare class for eta = -80 (almost sure) and eta = 80 (almost impossible)
    np.testing.assert_allclose(float(lp[0, 3]), -80.0, rtol=1e-6)
    np.testing.assert_allclose(float(lp[0, 0]), -80.0, rtol=1e-6)


# ----------------------------------------------------------------------------- 2. gradient


def test_gradient_matches_autodiff_and_finite_differences(x64):
    X, y = DATA[0][:40], DATA[1][:40]
    rng = np.random.default_rng(3)
    B = np.repeat(BETA_TRUE[:, None], K - 1, axis=1) + 0.1 * rng.standard_normal((P, K - 1))
    params = pr.from_betas(jnp.asarray(ALPHA_TRUE), jnp.asarray(B))
    w = jnp.asarray(rng.uniform(0.2, 1.5, size=40))
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    g_an = _grad(params, Xj, yj, w)
    g_ad = _autograd(params, Xj, yj, w)
    for a, b in zip(jax.tree.leaves(g_an), jax.tree.leaves(g_ad)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    h = 1e-6
    E = h * jnp.eye(flat.size)
    f_at = jax.jit(jax.vmap(lambda v: pr.nll(unravel(v), Xj, yj, w)))
    fd = np.asarray((f_at(flat + E) - f_at(flat - E)) / (2 * h))
    an = np.asarray(jax.flatten_util.ravel_pytree(g_an)[0])
    np.testing.assert_allclose(an, fd, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- 3. reparameterisation


def test_reparameterisation_round_trip_and_cumsum_dependence(x64):
    rng = np.random.default_rng(4)
    params = pr.PrestoParams(alpha=jnp.asarray(ALPHA_TRUE), psi=jnp.asarray(0.2 * rng.standard_normal((P, K - 1))))
    back = pr.from_betas(params.alpha, pr.betas(params))
    np.testing.assert_allclose(back.psi, params.psi, atol=1e-15)
    np.testing.assert_array_equal(back.alpha, params.alpha)
    B = np.cumsum(np.asarray(params.psi), axis=1)
    X, y = DATA
    np.testing.assert_allclose(float(_nll(params, jnp.asarray(X), jnp.asarray(y))),
                               _np_nll(ALPHA_TRUE, B, X, y), rtol=1e-12)


# ----------------------------------------------------------------------------- 4. reductions


@pytest.fixture(scope="module")
def std64():
    with jax.enable_x64(True):
        X, y = DATA
        Xs, mean, sd = pr.standardize(jnp.asarray(X))
        lmax = float(pr.lambda_max(Xs, jnp.asarray(y), K))
        return Xs, jnp.asarray(y), mean, sd, lmax


def test_above_lambda_max_gives_intercept_only(x64, std64):
    Xs, y, _, _, lmax = std64
    params, info = pr.fit(Xs, y, lmax * (1 + 1e-4), n_classes=K)
    assert bool(info.converged)
    assert np.all(np.asarray(params.psi) == 0.0)
    np.testing.assert_allclose(params.alpha, pr.init_params(Xs, y, K).alpha, atol=1e-10)
    freq = np.cumsum(np.bincount(DATA[1], minlength=K))[:-1] / N
    np.testing.assert_allclose(params.alpha, np.log(freq / (1 - freq)), atol=1e-10)
    # just below lambda_max something enters
    params2, _ = pr.fit(Xs, y, lmax * 0.9, n_classes=K)
    assert np.any(np.asarray(params2.psi) != 0.0)


def test_proportional_odds_matches_scipy_and_large_lambda_presto(x64, std64):
    Xs, y, mean, sd, _ = std64
    a_ref, b_ref, _ = _scipy_po_cached()
    alpha, B = pr.fit_proportional_odds(jnp.asarray(DATA[0]), y, K)
    np.testing.assert_allclose(alpha, a_ref, atol=1e-4)
    for k in range(K - 1):
        np.testing.assert_allclose(B[:, k], b_ref, atol=1e-4)
    # PRESTO with a free first block and a huge lambda on the differences is the PO MLE
    params, info = pr.fit(Xs, y, 1e3, n_classes=K, penalize_first=False)
    a2, B2 = pr.unstandardize(params, mean, sd)
    np.testing.assert_allclose(a2, a_ref, atol=1e-4)
    np.testing.assert_allclose(B2, np.repeat(b_ref[:, None], K - 1, axis=1), atol=1e-4)
    assert np.all(np.asarray(params.psi[:, 1:]) == 0.0)


def test_two_classes_equal_logistic_regression(x64):
    from sklearn.linear_model import LogisticRegression

    X, y = DATA
    yb = (y == K - 1).astype(np.int32)
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(X, yb)
    alpha, beta = pr.fit_rare_logistic(jnp.asarray(X), jnp.asarray(y), n_classes=K)
    # PRESTO's sign: pi_rare = 1 - sigmoid(alpha + x beta) = sigmoid(-alpha - x beta)
    np.testing.assert_allclose(-np.asarray(beta), ref.coef_[0], atol=1e-5)
    np.testing.assert_allclose(-float(alpha), ref.intercept_[0], atol=1e-5)
    a2, B2 = pr.fit_proportional_odds(jnp.asarray(X), jnp.asarray(yb), 2)  # the K = 2 cumulative model
    np.testing.assert_allclose(B2[:, 0], beta, atol=1e-5)
    np.testing.assert_allclose(a2[0], alpha, atol=1e-5)


def test_lambda_zero_is_the_nonparallel_mle(x64, std64):
    Xs, y, mean, sd, _ = std64
    params, info = pr.fit(Xs, y, 0.0, n_classes=K, tol=1e-14)
    a, B = pr.unstandardize(params, mean, sd)
    ours = float(_nll(pr.from_betas(a, B), jnp.asarray(DATA[0]), y))
    a_ref, b_ref, f_po = _scipy_po_cached()
    start = np.concatenate([a_ref, np.repeat(b_ref[:, None], K - 1, axis=1).ravel()])
    f_ref = _scipy_nonparallel(*DATA, K, start)
    assert f_ref < f_po - 1e-4  # the non-parallel fit really differs from PO here
    np.testing.assert_allclose(ours, f_ref, rtol=0, atol=1e-7)
    assert ours <= f_ref + 1e-9


# ----------------------------------------------------------------------------- 5. KKT


def test_kkt_conditions_at_the_solution(x64, std64):
    Xs, y, _, _, lmax = std64
    lam = 0.3 * lmax
    params, info = pr.fit(Xs, y, lam, n_classes=K, tol=1e-14)
    g = _grad(params, Xs, y)
    psi, gp = np.asarray(params.psi), np.asarray(g.psi)
    zero = psi == 0
    assert zero.any() and (~zero).any()  # a real mix of active and inactive coordinates
    assert np.all(np.abs(gp[zero]) <= lam + 1e-5)
    np.testing.assert_allclose(gp[~zero], -lam * np.sign(psi[~zero]), atol=1e-5)
    np.testing.assert_allclose(g.alpha, 0.0, atol=1e-6)


# ----------------------------------------------------------------------------- 6. path / monotone objective


def test_path_sparsity_and_monotone_fista_objective(x64, std64):
    Xs, y, _, _, lmax = std64
    lams = pr.lambda_grid(lmax, 8, 0.01)
    params, info = pr.fit_path(Xs, y, lams, n_classes=K)
    nnz = np.sum(np.asarray(params.psi) != 0, axis=(1, 2))
    assert nnz[0] == 0 and nnz[-1] > 0
    assert np.all(np.diff(nnz) >= 0), nnz
    assert np.all(np.diff(np.asarray(info.objective)) <= 1e-12)  # the optimal value decreases with lambda
    # objective along the FISTA iterations (the inner solver), from a cold start at a small lambda
    M = jnp.ones((P, K - 1))
    lam = 0.02 * lmax

    def smooth(p):
        return pr._nll_value_and_grad(p, Xs, y, None)

    fista = jax.jit(lambda init: pr._fista(smooth, lam * M, M, init, 1.0, 200, 0.0, record=200))
    *_, hist = fista(pr._init_jit(Xs, y, K, jnp.ones(N)))
    h = np.asarray(hist)
    h = h[np.isfinite(h)]
    assert h.size > 20 and np.all(np.diff(h) <= 1e-14)


# ----------------------------------------------------------------------------- 7./8. invariances


def test_standardisation_invariance_catches_intercept_bug(x64):
    X, y = DATA
    Xt = 3.0 * X + np.array([5.0, -2.0, 10.0])
    probs = []
    for Z in (X, Xt):
        Zs, mean, sd = pr.standardize(jnp.asarray(Z))
        params, _ = pr.fit(Zs, jnp.asarray(y), 0.005, n_classes=K)
        a, B = pr.unstandardize(params, mean, sd)
        probs.append(np.asarray(_pp(pr.from_betas(a, B), jnp.asarray(Z))))
        # the official back-transform (psi_k instead of beta_k) would shift the intercepts
        wrong = params.alpha - mean @ (params.psi / sd[:, None])
        if Z is Xt:
            assert np.abs(np.asarray(wrong - a)).max() > 1e-3
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-8)
    assert np.abs(probs[0] - np.asarray(_pp(pr.from_betas(*pr.fit_proportional_odds(
        jnp.asarray(X), jnp.asarray(y), K)), jnp.asarray(X)))).max() > 1e-4


def test_class_reversal(x64):
    X, y = DATA
    rng = np.random.default_rng(5)
    alpha = jnp.asarray(ALPHA_TRUE)
    B = jnp.asarray(np.repeat(BETA_TRUE[:, None], K - 1, axis=1) + 0.05 * rng.standard_normal((P, K - 1)))
    Xj = jnp.asarray(X)
    P0 = _pp(pr.from_betas(alpha, B), Xj)
    Prev = _pp(pr.from_betas(-alpha[::-1], -B[:, ::-1]), Xj)
    np.testing.assert_allclose(Prev, P0[:, ::-1], atol=1e-12)
    # the MLE is equivariant: PO on reversed labels = reversed, negated PO
    a1, B1 = pr.fit_proportional_odds(Xj, jnp.asarray(y), K)
    a2, B2 = pr.fit_proportional_odds(Xj, jnp.asarray(K - 1 - y), K)
    np.testing.assert_allclose(a2, -a1[::-1], atol=1e-5)
    np.testing.assert_allclose(B2, -B1[:, ::-1], atol=1e-5)


# ----------------------------------------------------------------------------- 9. vmap / jit


def test_vmap_over_lambda_equals_separate_fits_without_recompiling(x64, std64):
    Xs, y, _, _, lmax = std64
    lams = jnp.asarray([0.5, 0.2, 0.05]) * lmax
    fit = functools.partial(pr.fit, n_classes=K)
    batched, binfo = jax.vmap(fit, in_axes=(None, None, 0))(Xs, y, lams)
    pr.fit(Xs, y, 0.3 * lmax, n_classes=K)
    before = pr.TRACE_COUNTS["fit"]
    for i, lam in enumerate(lams):
        single, _ = pr.fit(Xs, y, float(lam), n_classes=K)
        np.testing.assert_allclose(batched.psi[i], single.psi, atol=1e-8)
        np.testing.assert_allclose(batched.alpha[i], single.alpha, atol=1e-8)
    assert pr.TRACE_COUNTS["fit"] == before  # new lambda values, no new trace


# ----------------------------------------------------------------------------- 10. data generator


def test_generator_probabilities_and_rare_share():
    shares = []
    for s in range(10):
        d = make_relaxed_po(1000 + s)
        assert d["x"].shape == (2500, 10) and d["y"].shape == (2500,) and d["B"].shape == (10, 3)
        assert np.all(d["probs"] >= 0)
        np.testing.assert_allclose(d["probs"].sum(axis=1), 1.0, atol=1e-12)
        assert set(np.unique(d["y"]).tolist()) == {0, 1, 2, 3}
        shares.append(np.mean(d["y"] == 3))
    assert 0.005 <= np.mean(shares) <= 0.02
    a, b = make_relaxed_po(7, n=50, p=2, K=3, intercepts=(0.0, 1.0)), make_relaxed_po(7, n=50, p=2, K=3,
                                                                                          intercepts=(0.0, 1.0))
    np.testing.assert_array_equal(a["y"], b["y"])
    dense = make_relaxed_po(3, design="dense", intercepts=(0.0, 2.5, 4.5))
    assert np.all(dense["B"] != 0)
    with pytest.raises(ValueError, match="intercepts"):
        make_relaxed_po(0, intercepts=(0.0, 3.0))
    with pytest.raises(ValueError, match="design"):
        make_relaxed_po(0, design="medium")


# ----------------------------------------------------------------------------- 11. metrics


def test_metrics_by_hand():
    # 10 points, 2 bins of 5: sorted predictions 0.0..0.9, actual ones at sorted positions 3, 7, 8
    p = np.array([0.5, 0.0, 0.9, 0.3, 0.1, 0.7, 0.2, 0.8, 0.4, 0.6])
    actual = np.array([0, 0, 0, 1, 0, 1, 0, 1, 0, 0])  # rare at p = 0.3, 0.7, 0.8
    # bin 1 = {0.0..0.4}: o = 1/5; bin 2 = {0.5..0.9}: o = 2/5
    ps = np.sort(p)
    o = np.array([0.2] * 5 + [0.4] * 5)
    assert pr.osce_equal_freq(p, actual, 2) == pytest.approx(np.mean((ps - o) ** 2), abs=1e-15)
    assert pr.osce_equal_freq(p, actual, 2, legacy_unsorted=True) == pytest.approx(np.mean((p - o) ** 2), abs=1e-15)
    # unequal bins: 10 points in 3 bins -> sizes 4, 3, 3
    o3 = np.array([0.25] * 4 + [0.0] * 3 + [2 / 3] * 3)  # rare at sorted positions 3 | none | 7, 8
    assert pr.osce_equal_freq(p, actual, 3) == pytest.approx(np.mean((ps - o3) ** 2), abs=1e-15)
    y = np.array([0, 2, 1, 2])
    onehot = np.eye(3)[y]
    assert float(pr.brier_multiclass(onehot, y)) == 0.0
    assert float(pr.brier_multiclass(np.full((4, 3), 1 / 3), y)) == pytest.approx(2 / 3)
    assert float(pr.rare_prob_mse(np.array([0.1, 0.3]), np.array([0.2, 0.2]))) == pytest.approx(0.01)


# ----------------------------------------------------------------------------- 12. bad inputs


def test_bad_inputs_raise_clear_errors():
    X, y = DATA
    Xf = X.astype(np.float32)
    with pytest.raises(ValueError, match="n_classes.*K >= 3"):
        pr.fit(Xf, (y > 1).astype(np.int32), 0.1, n_classes=2)
    with pytest.raises(ValueError, match=r"missing \[3\]"):
        pr.fit(Xf, np.minimum(y, 2), 0.1, n_classes=4)
    Xn = Xf.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="X: contains 1 non-finite"):
        pr.fit(Xn, y, 0.1, n_classes=K)
    with pytest.raises(ValueError, match="lam"):
        pr.fit(Xf, y, -0.1, n_classes=K)
    with pytest.raises(ValueError, match="mix"):
        pr.fit(Xf, y, 0.1, n_classes=K, mix=1.5)
    with pytest.raises(ValueError, match="same number of rows"):
        pr.fit(Xf, y[:-1], 0.1, n_classes=K)
    with pytest.raises(ValueError, match="n_folds"):
        first = np.array([np.argmax(y == k) for k in range(K)])  # 4 rows, every class once
        pr.fit_presto(Xf[first], y[first], jax.random.key(0), n_classes=K, n_folds=5)
    with pytest.raises(ValueError, match="y: expected integer ordinal labels"):
        pr.fit(Xf, y.astype(np.float32), 0.1, n_classes=K)
    with pytest.raises(ValueError, match=r"y: expected ordinal labels in \[0, 4\)"):
        pr.fit(Xf, np.where(np.arange(N) == 7, 4, y).astype(np.int32), 0.1, n_classes=K)
    with pytest.raises(ValueError, match="n_classes"):
        pr.fit_presto(Xf, y, jax.random.key(0), n_classes=2)
    with pytest.raises(ValueError, match="fold_ids"):
        pr.cv_brier(Xf, y, np.array([0.1]), np.full(N, 7, np.int32), n_classes=K, n_folds=3)
    with pytest.raises(ValueError, match="lam"):
        pr.fit_path(Xf, y, np.array([0.1, -1.0]), n_classes=K)


# ----------------------------------------------------------------------------- solver on the boundary (issue 14)


def _np_own_nll_and_grad(theta, X, y, k):
    """Independent numpy NLL (own-class form, as SLSQP may probe outside the region) and its gradient
    in (alpha, psi) with psi the adjacent differences (B = cumsum(psi))."""
    n, p = X.shape
    alpha, psi = theta[: k - 1], theta[k - 1 :].reshape(p, k - 1)
    eta = alpha[None, :] + X @ np.cumsum(psi, axis=1)
    cdf = np.concatenate([np.zeros((n, 1)), 1 / (1 + np.exp(-eta)), np.ones((n, 1))], axis=1)
    dens = np.concatenate([np.zeros((n, 1)), cdf[:, 1:-1] * (1 - cdf[:, 1:-1]), np.zeros((n, 1))], axis=1)
    idx = np.arange(n)
    pi_y = np.maximum(cdf[idx, y + 1] - cdf[idx, y], 1e-300)
    G = np.zeros((n, k + 1))
    G[idx, y + 1] = -dens[idx, y + 1] / pi_y
    G[idx, y] += dens[idx, y] / pi_y
    G = G[:, 1:-1] / n
    dB = X.T @ G
    dpsi = np.cumsum(dB[:, ::-1], axis=1)[:, ::-1]
    return -np.mean(np.log(pi_y)), np.concatenate([G.sum(axis=0), dpsi.ravel()])


def _np_constrained_mle(X, y, k, start):
    """The unpenalised non-parallel MLE by scipy SLSQP with the ordering constraints
    eta_{k+1}(x_i) - eta_k(x_i) >= 0 (linear in alpha, psi). Plain BFGS cannot be the reference
    here: the optimum sits on that boundary, where BFGS line searches fail the same way FISTA did."""
    n, p = X.shape
    A = []
    for j in range(k - 2):
        a = np.zeros((n, k - 1 + p * (k - 1)))
        a[:, j + 1], a[:, j] = 1.0, -1.0
        a[:, k - 1 + np.arange(p) * (k - 1) + j + 1] = X
        A.append(a)
    A = np.concatenate(A)
    r = minimize(_np_own_nll_and_grad, start, args=(X, y, k), jac=True, method="SLSQP",
                 constraints=[{"type": "ineq", "fun": lambda t: A @ t, "jac": lambda t: A}],
                 options={"ftol": 1e-15, "maxiter": 3000})
    assert r.success, r.message
    return r.x, r.fun, (A @ r.x).min()


def test_lambda_zero_reaches_the_boundary_optimum(x64):
    """Issue 14: on the paper's design (seed 7, n = 400) the lam = 0 optimum lies on the ordering
    boundary. The old FISTA stalled ~1e-3 above it and still said converged=True."""
    d = make_relaxed_po(7, n=400, p=3, K=4, intercepts=(0.0, 2.0, 4.0))
    Xs, _, _ = pr.standardize(jnp.asarray(d["x"]))
    y = jnp.asarray(d["y"])
    params, info = pr.fit(Xs, y, 0.0, n_classes=K)
    Xn, yn = np.asarray(Xs), np.asarray(d["y"])
    start = np.concatenate([np.asarray(pr.init_params(Xs, y, K).alpha), np.zeros(P * (K - 1))])
    th_ref, f_ref, gap_ref = _np_constrained_mle(Xn, yn, K, start)
    assert gap_ref < 1e-8  # the reference optimum is on the boundary
    assert bool(info.converged)
    assert np.isfinite(float(info.objective))
    np.testing.assert_allclose(float(info.objective), f_ref, rtol=0, atol=1e-8)
    np.testing.assert_allclose(float(_nll(params, Xs, y)), float(info.objective), rtol=1e-12)
    ours = np.concatenate([np.asarray(params.alpha), np.asarray(params.psi).ravel()])
    np.testing.assert_allclose(ours, th_ref, atol=2e-3)  # flat directions near the boundary
    B_ours, B_ref = np.cumsum(np.asarray(params.psi), axis=1), np.cumsum(th_ref[K - 1:].reshape(P, K - 1), axis=1)
    np.testing.assert_allclose(B_ours, B_ref, atol=2e-3)
    eta = np.asarray(pr.cumulative_logits(params, Xs))
    assert np.all(np.diff(eta, axis=1) > 0)  # strictly feasible: the returned objective is finite


def test_converged_is_false_when_the_rule_is_not_met(x64, std64):
    Xs, y, _, _, lmax = std64
    _, info = pr.fit(Xs, y, 0.05 * lmax, n_classes=K, max_iter=3)
    assert int(info.n_iter) <= 3 and not bool(info.converged)
    _, info = pr.fit(Xs, y, 0.05 * lmax, n_classes=K)
    assert bool(info.converged)


# ----------------------------------------------------------------------------- CV folds (every class in training)


def test_cv_requires_every_class_in_every_training_fold():
    X, y = DATA
    Xf = X[:40].astype(np.float32)
    yy = np.array(y[:40])
    yy[yy == 3] = 2
    yy[5], yy[17] = 3, 3  # class 3 has two rows ...
    folds = np.arange(40, dtype=np.int32) % 4
    folds[5] = folds[17] = 1  # ... both held out in fold 1: fold 1's training rows lack class 3
    with pytest.raises(ValueError, match=r"fold_ids: training fold 1 .* lacks class\(es\) \[3\]"):
        pr.cv_brier(Xf, yy, np.array([0.1, 0.01], np.float32), folds, n_classes=K, n_folds=4)
    with pytest.raises(ValueError, match=r"training fold 1"):
        pr.presto_pipeline(jnp.asarray(Xf), jnp.asarray(yy), jnp.asarray(folds), n_classes=K, n_folds=4)
    # draw_fold_ids re-draws random folds until every training fold has every class
    f = np.asarray(pr.draw_fold_ids(jax.random.key(0), yy, 4, K))
    assert f.shape == (40,) and not pr._missing_in_folds(yy, f, 4, K)
    yy1 = yy.copy()
    yy1[17] = 2  # a class with a single row can never be in every training fold
    with pytest.raises(ValueError, match=r"fold_ids: training fold \d .* lacks class\(es\) \[3\]"):
        pr.draw_fold_ids(jax.random.key(0), yy1, 4, K, max_tries=5)


# ----------------------------------------------------------------------------- dtypes


def test_float64_end_to_end_and_float32_default():
    X, y = DATA
    with jax.enable_x64(True):  # jax.experimental.enable_x64 moved to jax.enable_x64 in this JAX (0.10)
        Xs, mean, sd = pr.standardize(jnp.asarray(X))
        assert Xs.dtype == mean.dtype == jnp.float64
        params, info = pr.fit(Xs, jnp.asarray(y), 0.01, n_classes=K)
        assert params.psi.dtype == params.alpha.dtype == info.objective.dtype == jnp.float64
        assert pr.nll(params, Xs, jnp.asarray(y)).dtype == jnp.float64
        assert pr.predict_proba(params, Xs).dtype == jnp.float64
        a, B = pr.unstandardize(params, mean, sd)
        assert a.dtype == B.dtype == jnp.float64
        f64 = float(info.objective)
    Xs32, _, _ = pr.standardize(X.astype(np.float32))
    p32, i32 = pr.fit(Xs32, jnp.asarray(y), 0.01, n_classes=K)
    assert Xs32.dtype == p32.psi.dtype == i32.objective.dtype == jnp.float32
    assert abs(float(i32.objective) - f64) < 1e-4


# ----------------------------------------------------------------------------- issue 13 fixes


def test_nll_and_friends_reject_bad_labels_nan_and_negative_weights():
    X, y = DATA
    Xj = jnp.asarray(X, jnp.float32)
    params = pr.init_params(Xj, jnp.asarray(y), K)
    with pytest.raises(ValueError, match=r"y: expected ordinal labels in \[0, 4\), got 4"):
        pr.nll(params, Xj, np.where(np.arange(N) == 2, 4, y))
    with pytest.raises(ValueError, match=r"y: expected ordinal labels in \[0, 4\), got -1"):
        pr.nll(params, Xj, np.where(np.arange(N) == 2, -1, y))
    Xn = np.array(X, np.float32)
    Xn[1, 2] = np.nan
    for call in (lambda: pr.nll(params, Xn, y), lambda: pr.predict_proba(params, Xn), lambda: pr.standardize(Xn)):
        with pytest.raises(ValueError, match="X: contains 1 non-finite"):
            call()
    w = np.ones(N, np.float32)
    w[4] = -1.0
    with pytest.raises(ValueError, match=r"w: sample weights must be >= 0; got 1 negative value\(s\)"):
        pr.nll(params, Xj, y, w)
    with pytest.raises(ValueError, match="w: all sample weights are 0"):
        pr.standardize(Xj, np.zeros(N, np.float32))


# ----------------------------------------------------------------------------- issue 14: solver cost


def test_own_class_parts_equal_the_all_classes_form(x64):
    """The solver's hot loop evaluates each row's OWN class only; value and dloss/deta must equal the
    spec's all-classes form (strict=False), also at rows of the first/last class, with 0 weights,
    and where a row's own class is infeasible (+inf, finite G)."""
    X, y = DATA
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    w = jnp.asarray((np.arange(N) % 5 != 0).astype(float))
    rng = np.random.default_rng(3)
    for scale, ww in ((0.0, None), (0.7, w), (4.0, w)):
        params = pr.PrestoParams(alpha=jnp.asarray(ALPHA_TRUE), psi=jnp.asarray(rng.normal(size=(P, K - 1)) * scale))
        v_ref, G_ref, _ = pr._nll_parts(params, Xj, yj, ww, strict=False)
        v, G, _ = jax.jit(pr._own_class_parts)(params, Xj, yj, ww)
        assert bool(jnp.all(jnp.isfinite(G)))
        if np.isfinite(float(v_ref)):
            np.testing.assert_allclose(float(v), float(v_ref), rtol=1e-13)
        else:
            assert float(v) == np.inf
        np.testing.assert_allclose(np.asarray(G), np.asarray(G_ref), rtol=1e-11, atol=1e-15)


def test_sequential_folds_equal_vmapped_folds(x64):
    """``sequential_folds=True`` (lax.map over the CV folds, the CPU setting of the experiment) runs the
    same fits as the vmapped folds."""
    X, y = DATA
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    folds = pr.draw_fold_ids(jax.random.key(1), y, 3, K)
    kw = dict(n_classes=K, n_folds=3, n_lambda=4, tol=1e-8)
    a = pr.presto_pipeline(Xj, yj, folds, **kw)
    b = pr.presto_pipeline(Xj, yj, folds, sequential_folds=True, **kw)
    assert int(a["lam_index"]) == int(b["lam_index"])
    for k in ("cv_table", "alpha", "B"):
        np.testing.assert_allclose(np.asarray(b[k]), np.asarray(a[k]), rtol=1e-10, atol=1e-12, err_msg=k)
    assert bool(np.all(np.asarray(b["path_converged"])))
