"""float64 end to end (under ``jax.enable_x64``) for zoo.representation.ppp: the main numeric functions
return float64 for float64 inputs and agree with float64 numpy references (tolerance 1e-10 unless stated),
and float32 inputs still compute in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from zoo.representation import ppp
from zoo.representation.ppp import GMMParams, PPPConfig

F64 = np.float64


def _blobs(n_per=20, seed=0):
    """Two well separated 2-D blobs, float64: (x f64[2 n_per, 2], y i64[2 n_per])."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(size=(n_per, 2)) * 0.3, rng.normal(size=(n_per, 2)) * 0.3 + [4.0, 1.0]])
    return x.astype(F64), np.repeat([0, 1], n_per)


X, Y = _blobs()


def _np_lloyd(x, c, iters=50):
    for _ in range(iters):
        lab = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), 1)
        c = np.stack([x[lab == k].mean(0) for k in range(len(c))])
    return c, lab


def test_kmeans_assign_and_fit_float64():
    c0 = X[[0, 1]]  # a poor init (both in blob 0): Lloyd needs to move
    with jax.enable_x64(True):
        labels, d2 = ppp.kmeans_assign(X, c0)
        assert d2.dtype == jnp.float64
        ref = ((X[:, None] - c0[None]) ** 2).sum(-1)
        np.testing.assert_array_equal(labels, np.argmin(ref, 1))
        np.testing.assert_allclose(d2, ref.min(1), rtol=1e-10, atol=1e-12)
        r = ppp.kmeans_fit(None, X, 2, init=c0, tol=0.0)
        assert r.centers.dtype == jnp.float64 and r.inertia.dtype == jnp.float64
    c, lab = _np_lloyd(X, c0)
    np.testing.assert_array_equal(r.labels, lab)
    np.testing.assert_allclose(r.centers, c, rtol=1e-10)
    np.testing.assert_allclose(float(r.inertia), ((X - c[lab]) ** 2).sum(), rtol=1e-10)


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_gmm_estep_mstep_bic_float64(cov_type):
    w = np.array([0.3, 0.7])
    mu = np.array([[0.1, -0.2], [3.5, 1.2]])
    cov = np.array([[[0.5, 0.1], [0.1, 0.3]], [[1.0, -0.2], [-0.2, 0.6]]])
    if cov_type == "diag":
        cov = np.stack([np.diag(c) for c in cov])
    full = cov if cov_type == "full" else np.stack([np.diag(c) for c in cov])
    logp = np.stack([np.log(w[k]) + multivariate_normal(mu[k], full[k]).logpdf(X) for k in range(2)], 1)
    log_px = np.logaddexp(logp[:, 0], logp[:, 1])
    with jax.enable_x64(True):
        params = GMMParams(w, mu, cov)
        log_resp, lp = ppp.gmm_estep(X, params, cov_type)
        bic = ppp.gmm_bic(X, params, cov_type)
        new = ppp.gmm_mstep(X, np.exp(log_resp), cov_type=cov_type, reg=0.0)
        init = ppp.gmm_init_from_labels(X, Y, 2, cov_type=cov_type, reg=0.0)
    assert log_resp.dtype == lp.dtype == bic.dtype == jnp.float64
    assert all(a.dtype == jnp.float64 for a in (*new, *init))
    np.testing.assert_allclose(lp, log_px, rtol=1e-10)
    np.testing.assert_allclose(log_resp, logp - log_px[:, None], rtol=1e-10, atol=1e-10)
    n_par = 1 + 4 + (6 if cov_type == "full" else 4)
    np.testing.assert_allclose(float(bic), -2 * log_px.sum() + n_par * np.log(len(X)), rtol=1e-10)
    r = np.exp(logp - log_px[:, None])
    nk = r.sum(0)
    np.testing.assert_allclose(new.weights, nk / nk.sum(), rtol=1e-10)
    np.testing.assert_allclose(new.means, r.T @ X / nk[:, None], rtol=1e-10)
    m0 = X[Y == 0].mean(0)
    np.testing.assert_allclose(init.means[0], m0, rtol=1e-10)
    c0 = np.cov(X[Y == 0].T, bias=True)
    np.testing.assert_allclose(init.cov[0], c0 if cov_type == "full" else np.diag(c0), rtol=1e-9)


def test_label_comparisons_default_float():
    from sklearn.metrics import adjusted_rand_score

    a = np.array([0, 0, 1, 1, 2, 2, 2])
    b = np.array([1, 1, 0, 0, 0, 2, 2])
    with jax.enable_x64(True):
        got = ppp.ari(a, b)
        agree = ppp.agreement2(a % 2, b % 2)
    assert got.dtype == jnp.float64 and agree.dtype == jnp.float64
    assert float(got) == pytest.approx(adjusted_rand_score(a, b), abs=1e-14)
    assert float(agree) == pytest.approx(max(np.mean(a % 2 == b % 2), np.mean(a % 2 != b % 2)), abs=1e-15)


def test_split_test_and_fit_float64():
    cfg = PPPConfig(n_init=2, min_size=5)
    with jax.enable_x64(True):
        z = ppp.standardize(X)
        assert z.dtype == jnp.float64
        np.testing.assert_allclose(z, (X - X.mean(0)) / X.std(0), rtol=1e-12)
        r = ppp.ppp_split_test(jax.random.key(0), X, np.ones(len(X), bool), cfg)
        assert r.dbic.dtype == r.bic1.dtype == r.bic2.dtype == r.post_own.dtype == jnp.float64
        fit = ppp.ppp_fit(jax.random.key(0), X, cfg)
    assert bool(r.accept) and float(r.dbic) == pytest.approx(float(r.bic1) - float(r.bic2), rel=1e-12)
    assert fit.n_clusters == 2 and ppp.ari(fit.labels, Y) == 1.0


def test_float32_and_int_inputs_keep_the_policy():
    with jax.enable_x64(True):
        _, d2 = ppp.kmeans_assign(X.astype(np.float32), X[:2].astype(np.float32))
        assert d2.dtype == jnp.float32  # float32 in, float32 out, even under x64
        _, d2 = ppp.kmeans_assign(np.round(X).astype(np.int64), np.round(X[:2]).astype(np.int64))
        assert d2.dtype == jnp.float64  # integers -> JAX's default float
    _, d2 = ppp.kmeans_assign(np.round(X).astype(np.int32), np.round(X[:2]).astype(np.int32))
    assert d2.dtype == jnp.float32
