"""Tests for zoo.representation.ppp (spec papers/ppp.md section 6).

Tolerances (stated per test):
* against scikit-learn in float64: k-means labels exact, centres and inertia 1e-10; GMM weights,
  means, covariances 1e-8; score_samples / scipy log-densities 1e-10; BIC 1e-10 (relative).
* PPP properties run in float32 and compare partitions exactly (ARI == 1 or equal label arrays).
* monotonicity: inertia / log-likelihood steps allowed to move the wrong way by 1e-9 relative (float64).

Shapes are shared across tests so each jitted node function compiles a handful of times only.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import make_blobs

from zoo.kernels import kmeans as kk
from zoo.representation import ppp
from zoo.representation.ppp import GMMParams, PPPConfig

KEY = jax.random.key(0)


# ----------------------------------------------------------------------------- data (module scope)


@pytest.fixture(scope="module")
def blobs4():
    """Four blobs of sizes 200/150/100/50 in 3-D (float32): the shared (500, 3) shape."""
    x, y = make_blobs(
        n_samples=[200, 150, 100, 50], centers=None, n_features=3, cluster_std=0.5, random_state=2, center_box=(-8, 8)
    )
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def blobs4_fit(blobs4):
    x, _ = blobs4
    return ppp.ppp_fit(KEY, x, PPPConfig())


@pytest.fixture(scope="module")
def quick_data():
    x, y = make_blobs(n_samples=4000, centers=8, n_features=10, cluster_std=2.0, random_state=0)
    return x.astype(np.float32), y


def _kmeans_data():
    x, _ = make_blobs(n_samples=200, centers=4, n_features=3, cluster_std=3.5, random_state=5)
    return x, x[:4].copy()  # first rows as a poor init: Lloyd needs several iterations


def _gmm_data(cov_type):
    x, _ = make_blobs(n_samples=150, centers=3, n_features=2, cluster_std=1.0, random_state=5)
    rng = np.random.default_rng(0)
    w0 = np.array([0.2, 0.3, 0.5])
    mu0 = x[rng.choice(150, 3, replace=False)]
    if cov_type == "full":
        a = rng.normal(size=(3, 2, 2))
        cov0 = a @ np.transpose(a, (0, 2, 1)) + np.eye(2)
        prec0 = np.linalg.inv(cov0)
    else:
        cov0 = rng.uniform(0.5, 2.0, size=(3, 2))
        prec0 = 1.0 / cov0
    return x, w0, mu0, cov0, prec0


def _sk_gmm(cov_type, w0, mu0, prec0, n_iter):
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(
        3,
        covariance_type=cov_type,
        weights_init=w0,
        means_init=mu0,
        precisions_init=prec0,
        reg_covar=1e-6,
        max_iter=n_iter,
        tol=0.0,
        init_params="random",
        random_state=0,
    )


def _fit_quiet(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is reached on purpose
        return model.fit(x)


# ----------------------------------------------------------------------------- against scikit-learn (float64)


@pytest.mark.parametrize("max_iter", [1, 300])
def test_kmeans_matches_sklearn(max_iter):
    from sklearn.cluster import KMeans

    x, c0 = _kmeans_data()
    sk = KMeans(4, init=c0, n_init=1, algorithm="lloyd", max_iter=max_iter, tol=1e-4).fit(x)
    with jax.enable_x64(True):
        r = ppp.kmeans_fit(None, x, 4, init=c0, max_iter=max_iter, tol=1e-4)
        assert r.centers.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(r.labels), sk.labels_)
        np.testing.assert_allclose(np.asarray(r.centers), sk.cluster_centers_, rtol=0, atol=1e-10)
        np.testing.assert_allclose(float(r.inertia), sk.inertia_, rtol=1e-10)
        assert int(r.n_iter) == sk.n_iter_
    if max_iter > 1:
        assert sk.n_iter_ >= 5  # the convergence case really iterates


def test_kmeans_inertia_never_increases():
    x, c0 = _kmeans_data()
    with jax.enable_x64(True):
        inertia = [float(ppp.kmeans_fit(None, x, 4, init=c0, max_iter=m, tol=0.0).inertia) for m in range(1, 9)]
    steps = np.diff(inertia)
    assert np.all(steps <= 1e-9 * abs(inertia[0])), inertia
    assert inertia[-1] < inertia[0]  # it did move


@pytest.mark.parametrize("cov_type", ["full", "diag"])
@pytest.mark.parametrize("n_iter", [1, 5])
def test_gmm_fit_matches_sklearn(cov_type, n_iter):
    x, w0, mu0, cov0, prec0 = _gmm_data(cov_type)
    sk = _fit_quiet(_sk_gmm(cov_type, w0, mu0, prec0, n_iter), x)
    with jax.enable_x64(True):
        params, _, it = ppp.gmm_fit(x, GMMParams(w0, mu0, cov0), cov_type=cov_type, reg=1e-6, max_iter=n_iter, tol=0.0)
        assert int(it) == sk.n_iter_ == n_iter
        np.testing.assert_allclose(np.asarray(params.weights), sk.weights_, rtol=0, atol=1e-8)
        np.testing.assert_allclose(np.asarray(params.means), sk.means_, rtol=0, atol=1e-8)
        np.testing.assert_allclose(np.asarray(params.cov), sk.covariances_, rtol=0, atol=1e-8)


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_estep_and_bic_match_sklearn_and_scipy(cov_type):
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    x, w0, mu0, cov0, prec0 = _gmm_data(cov_type)
    sk = _fit_quiet(_sk_gmm(cov_type, w0, mu0, prec0, 3), x)
    with jax.enable_x64(True):
        params = GMMParams(sk.weights_, sk.means_, sk.covariances_)
        log_resp, log_px = ppp.gmm_estep(x, params, cov_type)
        np.testing.assert_allclose(np.asarray(log_px), sk.score_samples(x), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(np.exp(np.asarray(log_resp)), sk.predict_proba(x), rtol=0, atol=1e-10)
        covs = sk.covariances_ if cov_type == "full" else [np.diag(c) for c in sk.covariances_]
        ref = logsumexp(
            [np.log(w) + multivariate_normal(m, c).logpdf(x) for w, m, c in zip(sk.weights_, sk.means_, covs)], axis=0
        )
        np.testing.assert_allclose(np.asarray(log_px), ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(float(ppp.gmm_bic(x, params, cov_type)), sk.bic(x), rtol=1e-10)


def test_em_loglik_never_decreases():
    x, w0, mu0, cov0, _ = _gmm_data("full")
    with jax.enable_x64(True):
        ll = [
            float(ppp.gmm_fit(x, GMMParams(w0, mu0, cov0), reg=1e-6, max_iter=n, tol=0.0)[1]) for n in range(1, 9)
        ]
    steps = np.diff(ll)
    assert np.all(steps >= -1e-9 * abs(ll[0])), ll
    assert ll[-1] > ll[0] + 1e-3  # EM really improved


def test_ari_matches_sklearn():
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, 300)
    b = np.where(rng.random(300) < 0.7, a, rng.integers(0, 5, 300)) * 7 - 3  # arbitrary label values
    assert float(ppp.ari(a, b)) == pytest.approx(adjusted_rand_score(a, b), abs=1e-6)
    assert float(ppp.ari(a, a)) == 1.0
    assert float(ppp.ari(np.zeros(300, int), np.zeros(300, int))) == 1.0  # both trivial
    mask = rng.random(300) < 0.6
    assert float(ppp.ari(a, b, mask)) == pytest.approx(adjusted_rand_score(a[mask], b[mask]), abs=1e-6)


def test_silhouette_matches_sklearn(blobs4):
    from sklearn.metrics import silhouette_score

    x, y = blobs4
    mask = np.arange(500) % 3 != 0
    assert ppp.silhouette_score(x, y, block=128) == pytest.approx(silhouette_score(x, y), abs=1e-5)
    assert ppp.silhouette_score(x, y, mask) == pytest.approx(silhouette_score(x[mask], y[mask]), abs=1e-5)


def test_agreement2_takes_the_better_matching():
    l = jnp.array([0, 0, 1, 1, 1])
    assert float(ppp.agreement2(l, 1 - l)) == 1.0
    assert float(ppp.agreement2(l, jnp.array([0, 1, 1, 1, 1]))) == pytest.approx(0.8)
    assert float(ppp.agreement2(l, jnp.array([1, 0, 0, 0, 0]))) == pytest.approx(0.8)
    mask = jnp.array([True, False, True, True, True])
    assert float(ppp.agreement2(l, jnp.array([0, 1, 1, 1, 1]), mask)) == 1.0


def test_kmeans_assign_delegates_to_reference():
    x = jnp.array([[0.0], [1.0], [2.0], [3.0]])
    c = jnp.array([[0.5], [1.5], [3.0]])  # x = 1.0 is a tie between centres 0 and 1 -> 0
    labels, d2 = ppp.kmeans_assign(x, c, jnp.array([True, True, True, False]))
    np.testing.assert_array_equal(np.asarray(labels), [0, 0, 1, -1])
    np.testing.assert_allclose(np.asarray(d2), [0.25, 0.25, 0.25, 0.0])
    ref = kk.assign_reference(x, c)
    np.testing.assert_array_equal(np.asarray(ppp.kmeans_assign(x, c)[0]), np.asarray(ref[0]))


# ----------------------------------------------------------------------------- PPP properties (float32)


def test_two_far_gaussians_give_the_exact_split():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.0, 1.0, 200), rng.normal(20.0, 1.0, 200)])[:, None].astype(np.float32)
    r = ppp.ppp_fit(KEY, x, PPPConfig())
    assert r.n_clusters == 2
    # equal sizes -> ties broken by the mean: the cluster near 0 is label 0
    np.testing.assert_array_equal(r.labels, np.repeat([0, 1], 200))
    assert r.most_separable == 0 and r.tree[0].accept
    np.testing.assert_array_equal(r.most_separable_labels >= 0, True)


def test_single_gaussian_gives_one_cluster():
    x = np.random.default_rng(1).normal(size=(500, 3)).astype(np.float32)
    r = ppp.ppp_fit(KEY, x, PPPConfig())
    assert r.n_clusters == 1 and r.tree[0].dbic < 0 and r.tree[0].reason == "bic"
    assert r.most_separable == -1
    np.testing.assert_array_equal(r.labels, 0)


def test_blobs_recovered(blobs4, blobs4_fit):
    _, y = blobs4
    assert blobs4_fit.n_clusters == 4
    assert blobs4_fit.leaf_sizes == (200, 150, 100, 50)
    assert float(ppp.ari(blobs4_fit.labels, y)) == 1.0
    assert blobs4_fit.core_fraction > 0.95
    assert sum(rec.accept for rec in blobs4_fit.tree) == 3  # a tree with K leaves has K - 1 splits


def test_invariant_to_row_permutation(blobs4, blobs4_fit):
    x, _ = blobs4
    perm = np.random.default_rng(3).permutation(len(x))
    r = ppp.ppp_fit(KEY, x[perm], PPPConfig())
    np.testing.assert_array_equal(r.labels, blobs4_fit.labels[perm])  # canonical labels: exact


def test_invariant_to_rotation_and_translation(blobs4, blobs4_fit):
    x, _ = blobs4
    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))
    r = ppp.ppp_fit(KEY, (x @ q + np.array([5.0, -30.0, 12.0])).astype(np.float32), PPPConfig())
    assert r.n_clusters == blobs4_fit.n_clusters
    assert float(ppp.ari(r.labels, blobs4_fit.labels)) == 1.0


@pytest.mark.parametrize("scale", [0.01, 2.0, 37.0])
def test_invariant_to_positive_scaling(blobs4, blobs4_fit, scale):
    x, _ = blobs4
    r = ppp.ppp_fit(KEY, x * np.float32(scale), PPPConfig())
    np.testing.assert_array_equal(r.labels, blobs4_fit.labels)


def test_diag_is_axis_permutation_invariant_but_not_rotation_invariant(blobs4):
    x, _ = blobs4
    cfg = PPPConfig(cov_type="diag")
    base = ppp.ppp_fit(KEY, x, cfg)
    r = ppp.ppp_fit(KEY, x[:, [2, 0, 1]], cfg)
    assert base.n_clusters == 4 and float(ppp.ari(r.labels, base.labels)) == 1.0
    # one elongated Gaussian: axis-aligned -> 1 cluster; rotated 45 degrees -> diag over-splits, full does not
    z = np.random.default_rng(0).normal(size=(500, 3)) * np.array([3.0, 0.3, 1.0])
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    zr = z @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T
    assert ppp.ppp_fit(KEY, z.astype(np.float32), cfg).n_clusters == 1
    assert ppp.ppp_fit(KEY, zr.astype(np.float32), cfg).n_clusters > 1
    assert ppp.ppp_fit(KEY, zr.astype(np.float32), PPPConfig()).n_clusters == 1


def test_deterministic_for_a_key(blobs4, blobs4_fit):
    x, _ = blobs4
    again = ppp.ppp_fit(KEY, x, PPPConfig())
    np.testing.assert_array_equal(again.labels, blobs4_fit.labels)
    assert [r.dbic for r in again.tree] == [r.dbic for r in blobs4_fit.tree]  # bitwise


def test_repeatable_across_keys_on_quick_data(quick_data):
    x, y = quick_data
    labels = [ppp.ppp_fit(jax.random.key(s), x, PPPConfig()).labels for s in (0, 1, 2)]
    assert all(len(np.unique(l)) == 8 for l in labels)
    pair = [float(ppp.ari(labels[i], labels[j])) for i in range(3) for j in range(i + 1, 3)]
    assert min(pair) >= 0.99
    assert float(ppp.ari(labels[0], y)) >= 0.99


def test_larger_min_size_never_increases_k(blobs4):
    x, _ = blobs4
    ks = [ppp.ppp_fit(KEY, x, PPPConfig(min_size=m)).n_clusters for m in (5, 30, 60, 120, 200, 260)]
    assert all(a >= b for a, b in zip(ks, ks[1:])), ks
    assert ks[0] == 4 and ks[-1] == 1  # the knob really acts


def test_tau_agree_one_accepts_only_perfect_agreement(blobs4):
    # two overlapping blobs: BIC favours the split, but k-means and the GMM disagree on a few points
    x, _ = make_blobs(n_samples=500, centers=[[0, 0, 0], [3.0, 0, 0]], cluster_std=1.0, random_state=0)
    mask = np.ones(500, bool)
    loose = ppp.ppp_split_test(KEY, x.astype(np.float32), mask, PPPConfig())
    strict = ppp.ppp_split_test(KEY, x.astype(np.float32), mask, PPPConfig(tau_agree=1.0))
    assert float(loose.dbic) > 0 and 0.9 < float(loose.agree) < 1.0
    assert bool(loose.accept) and not bool(strict.accept)
    r = ppp.ppp_fit(KEY, blobs4[0], PPPConfig(tau_agree=1.0))
    assert all(rec.agree == 1.0 for rec in r.tree if rec.accept)


def test_max_leaves_caps_k(blobs4):
    x, _ = blobs4
    assert ppp.ppp_fit(KEY, x, PPPConfig(max_leaves=2)).n_clusters == 2
    assert ppp.ppp_fit(KEY, x, PPPConfig(max_leaves=1)).n_clusters == 1


def test_fewer_than_two_min_size_points_is_one_cluster():
    r = ppp.ppp_fit(KEY, np.arange(15.0).reshape(5, 3), PPPConfig())
    assert r.n_clusters == 1 and r.tree[0].reason == "too_small"


def test_standardize_option():
    # two blobs separated along a small-scale feature, hidden by a huge-scale noise feature
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 3)) * np.array([1.0, 1000.0, 1.0])
    x[:250, 0] += 12.0
    np.testing.assert_allclose(np.asarray(jnp.std(ppp.standardize(x), 0)), 1.0, rtol=1e-5)
    assert ppp.ppp_fit(KEY, x, PPPConfig(standardize=True)).n_clusters == 2


def test_flat_mode_finds_two():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.0, 1.0, 200), rng.normal(20.0, 1.0, 200)])[:, None].astype(np.float32)
    r = ppp.ppp_fit(KEY, x, PPPConfig(mode="flat", k_max=3, n_init=4))
    assert r.n_clusters == 2 and [s[0] for s in r.flat_scores] == [2, 3]
    np.testing.assert_array_equal(r.labels, np.repeat([0, 1], 200))


# ----------------------------------------------------------------------------- jit / vmap / grad


def test_kmeans_fit_vmaps_over_keys(blobs4):
    x, y = blobs4
    keys = jax.random.split(KEY, 3)
    batched = jax.vmap(lambda k: ppp.kmeans_fit(k, x, 4, n_init=2))(keys)
    assert batched.centers.shape == (3, 4, 3) and batched.labels.shape == (3, 500)
    for i in range(3):
        one = ppp.kmeans_fit(keys[i], x, 4, n_init=2)
        np.testing.assert_array_equal(np.asarray(batched.labels[i]), np.asarray(one.labels))
        np.testing.assert_allclose(np.asarray(batched.centers[i]), np.asarray(one.centers), rtol=1e-5, atol=1e-5)
    assert float(jnp.min(batched.inertia)) <= float(jnp.max(batched.inertia))
    assert float(ppp.ari(batched.labels[0], y)) > 0.9


def test_kmeans_fit_under_jit(blobs4):
    x, _ = blobs4
    c0 = x[:4]
    f = jax.jit(lambda xx: ppp.kmeans_fit(None, xx, 4, init=c0).inertia)
    assert float(f(x)) == pytest.approx(float(ppp.kmeans_fit(None, x, 4, init=c0).inertia), rel=1e-5)


def test_split_test_compiled_once_for_all_masks(blobs4, blobs4_fit):
    x, _ = blobs4
    cfg = PPPConfig()
    ppp.ppp_split_test(KEY, x, np.ones(500, bool), cfg)  # warm (shape already compiled by blobs4_fit)
    before = dict(ppp.TRACE_COUNTS)
    for n_in in (37, 250, 499):
        r = ppp.ppp_split_test(jax.random.key(n_in), x, np.arange(500) < n_in, cfg)
        assert int(np.sum(np.asarray(r.labels) >= 0)) == n_in
    ppp.ppp_fit(jax.random.key(9), x, PPPConfig(min_size=7, tau_agree=0.1))  # traced knobs: no recompile
    assert ppp.TRACE_COUNTS == before


def test_grad_of_gmm_loglik_matches_analytic(blobs4):
    x, _ = blobs4
    params = ppp.gmm_init_from_labels(x, np.arange(500) % 2, 2)

    def mean_ll(mu):
        _, log_px = ppp.gmm_estep(x, params._replace(means=mu))
        return jnp.mean(log_px)

    g = jax.grad(mean_ll)(params.means)
    log_resp, _ = ppp.gmm_estep(x, params)
    r = np.exp(np.asarray(log_resp, np.float64))
    xd, mu, cov = (np.asarray(a, np.float64) for a in (x, params.means, params.cov))
    want = np.stack([np.linalg.solve(cov[k], (r[:, k : k + 1] * (xd - mu[k])).sum(0)) for k in range(2)]) / 500
    np.testing.assert_allclose(np.asarray(g), want, rtol=2e-3, atol=1e-5)


@pytest.mark.skipif(not hasattr(kk, "assign"), reason="zoo.kernels.kmeans.assign (Pallas) not written yet")
def test_use_kernel_matches_reference(blobs4, blobs4_fit):
    x, _ = blobs4
    mask = np.arange(500) % 5 != 0
    c = x[:6]
    ref = ppp.kmeans_assign(x, c, mask)
    got = ppp.kmeans_assign(x, c, mask, use_kernel=True)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(ref[0]))
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(ref[1]), rtol=1e-5, atol=1e-4)
    # the config switch reaches every node: kmeans_fit's Lloyd loop runs the Pallas assign_accumulate
    ker = ppp.ppp_fit(KEY, x, PPPConfig(use_kernel=True))
    np.testing.assert_array_equal(ker.labels, blobs4_fit.labels)
    np.testing.assert_allclose([r.dbic for r in ker.tree], [r.dbic for r in blobs4_fit.tree], rtol=1e-4)


# ----------------------------------------------------------------------------- bad inputs

_X = np.zeros((6, 2), np.float32)
_P = GMMParams(np.ones(1), np.zeros((1, 2)), np.eye(2)[None])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ppp.ppp_fit(KEY, np.zeros(6)), r"X: expected a 2-D array"),
        (lambda: ppp.ppp_fit(KEY, np.zeros((0, 2))), r"X: expected at least 1 rows"),
        (
            lambda: ppp.ppp_fit(KEY, np.array([[0.0, np.nan]] * 3)),
            r"X: contains 3 non-finite value\(s\) \(NaN or inf\), first at index \(0, 1\)",
        ),
        (lambda: ppp.kmeans_fit(KEY, np.array([[np.inf, 0.0]] * 3), 1), r"X: contains 3 non-finite"),
        (lambda: ppp.kmeans_fit(KEY, _X, 0), r"k: expected a value in \[1"),
        (lambda: ppp.kmeans_fit(KEY, _X, 7), r"k \(at most the number of masked-in points\).*\[1, 6\].*7"),
        (lambda: ppp.kmeans_fit(KEY, _X, 3, mask=np.arange(6) < 2), r"masked-in points.*\[1, 2\]"),
        (lambda: ppp.kmeans_plusplus(KEY, _X, 9), r"k \(at most"),
        (lambda: ppp.kmeans_fit(KEY, _X, 2, init="kmeans"), r"init: expected one of"),
        (lambda: ppp.kmeans_fit(KEY, _X, 2, mask=np.ones(5, bool)), r"mask: expected shape \(6\)"),
        (lambda: PPPConfig(reg_covar=-1e-3), r"reg_covar: expected a value in \[0"),
        (lambda: ppp.gmm_fit(_X, _P, reg=-1.0), r"reg_covar: expected a value in \[0"),
        (lambda: PPPConfig(min_size=0), r"min_size: expected a value in \[1, inf\), got 0"),
        (lambda: PPPConfig(cov_type="spherical"), r"cov_type: expected one of 'full', 'diag'; got 'spherical'"),
        (lambda: ppp.gmm_estep(_X, _P, "tied"), r"cov_type: expected one of"),
        (lambda: ppp.gmm_estep(_X, _P._replace(means=np.zeros((1, 3)))), r"params.means: expected shape"),
        (lambda: PPPConfig(max_leaves=0), r"max_leaves: expected a value in \[1"),
        (lambda: PPPConfig(tau_agree=1.5), r"tau_agree: expected a value in \[0.0, 1.0\]"),
        (lambda: PPPConfig(mode="tree"), r"mode: expected one of"),
        (lambda: ppp.ppp_fit(KEY, _X, cfg={"min_size": 3}), r"cfg: expected a PPPConfig"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_config_is_hashable_and_frozen():
    cfg = PPPConfig()
    assert hash(cfg) == hash(PPPConfig())
    with pytest.raises(AttributeError):
        cfg.min_size = 3  # type: ignore[misc]
    assert ppp.effective_min_size(cfg, 20) == 21 and ppp.effective_min_size(PPPConfig(cov_type="diag"), 20) == 10
    assert math.isclose(cfg.reg_covar, 1e-6)
