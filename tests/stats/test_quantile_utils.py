"""zoo.stats.quantile_utils: check losses, WIS, monotonizers, crossing penalty and CQR (spec section 6)."""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.stats import quantile_utils as qu

TAUS5 = jnp.array([0.1, 0.25, 0.5, 0.75, 0.9], jnp.float32)


def _rho_np(e, taus):
    return np.maximum(taus * e, (taus - 1.0) * e)


# ----------------------------------------------------------------------------- 1. pinball


def test_pinball_hand_example():
    # y = 1; q = (0, 1, 3) at taus (0.25, 0.5, 0.75): e = (1, 0, -2) -> (0.25, 0, 0.5)
    q = jnp.array([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    y = jnp.array([1.0, 0.0])
    taus = jnp.array([0.25, 0.5, 0.75])
    # row 2: e = -2 everywhere -> (1 - tau) * 2 = (1.5, 1.0, 0.5)
    np.testing.assert_allclose(qu.pinball(q, y, taus), [(0.25 + 1.5) / 2, (0 + 1.0) / 2, (0.5 + 0.5) / 2])
    np.testing.assert_allclose(qu.pinball_per_row(q, y, taus), [0.75, 3.0])
    np.testing.assert_allclose(qu.wis_from_pinball(q, y, taus), 2 * np.mean([0.875, 0.5, 0.5]), rtol=1e-6)


def test_pinball_gradient_is_minus_tau_or_one_minus_tau():
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(7, 5)), jnp.float32)
    y = jnp.asarray(rng.normal(size=7), jnp.float32)
    g = jax.grad(lambda q: jnp.sum(qu.pinball_per_row(q, y, TAUS5)))(q)
    want = np.where(np.asarray(y)[:, None] > np.asarray(q), -np.asarray(TAUS5), 1.0 - np.asarray(TAUS5))
    np.testing.assert_allclose(g, want, atol=1e-7)


def test_huber_pinball_tends_to_pinball():
    rng = np.random.default_rng(1)
    q = jnp.asarray(rng.normal(size=(30, 5)), jnp.float32)
    y = jnp.asarray(rng.normal(size=30), jnp.float32)
    want = jnp.mean(qu.pinball(q, y, TAUS5))
    assert abs(float(qu.huber_pinball(q, y, TAUS5, 1e-8)) - float(want)) < 1e-6
    assert float(qu.huber_pinball(q, y, TAUS5, 0.0)) == pytest.approx(float(want), abs=1e-7)
    # a large delta is quadratic: strictly below the pinball loss
    assert float(qu.huber_pinball(q, y, TAUS5, 10.0)) < float(want)


# ----------------------------------------------------------------------------- 2. WIS


def test_wis_interval_form_equals_twice_mean_pinball_f64():
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        m = 9
        taus = jnp.asarray(np.arange(1, m + 1) / (m + 1), jnp.float64)
        both = jax.jit(lambda q, y: jnp.stack([qu.wis(q, y, taus), qu.wis_from_pinball(q, y, taus)]))
        for _ in range(20):
            q = jnp.asarray(rng.normal(size=(40, m)) * rng.uniform(0.1, 3))
            y = jnp.asarray(rng.standard_t(3, size=40) * 2)
            a, b = np.asarray(both(q, y))
            assert abs(a - b) < 1e-10, (a, b)
        # the interval score pieces: IS of one pair equals its own formula
        l, u, yy = jnp.array([0.0, 0.0, 0.0]), jnp.array([1.0, 1.0, 1.0]), jnp.array([0.5, -1.0, 3.0])
        np.testing.assert_allclose(qu.interval_score(l, u, yy, 0.2), [1.0, 1.0 + 10.0, 1.0 + 20.0])


def test_coverage_mace_crossing_rate():
    q = jnp.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [2.0, 1.0, 3.0], [0.0, 1.0, 2.0]])
    y = jnp.array([0.5, 1.5, -1.0, 5.0])
    taus = jnp.array([0.25, 0.5, 0.75])
    np.testing.assert_allclose(qu.coverage(q, y, taus), [0.25, 0.5, 0.75])
    assert float(qu.mace(q, y, taus)) == pytest.approx(0.0)
    np.testing.assert_allclose(qu.interval_coverage(q, y, taus), [0.5])
    assert float(qu.crossing_rate(q)) == pytest.approx(0.25)


# ----------------------------------------------------------------------------- 3. monotonizers


def test_isotonic_matches_sklearn():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(3)
    q = rng.normal(size=(200, 11)) + np.linspace(-1, 1, 11)
    with jax.enable_x64(True):
        got = np.asarray(qu.isotonic(jnp.asarray(q)))
    ref = np.stack([IsotonicRegression().fit_transform(np.arange(11), r) for r in q])
    assert np.abs(got - ref).max() < 1e-10


@pytest.fixture(scope="module")
def random_rows():
    """10^4 random rows (q, y) with sorted random level sets of size 9."""
    rng = np.random.default_rng(4)
    n, m = 10_000, 9
    taus = np.sort(rng.uniform(0.01, 0.99, size=(n, m)), axis=1)
    q = rng.normal(size=(n, m)) * rng.uniform(0.1, 3, size=(n, 1))
    y = rng.normal(size=n) * 2
    return taus, q, y


def test_sort_and_iso_never_increase_row_pinball(random_rows):
    taus, q, y = random_rows
    with jax.enable_x64(True):
        qj = jnp.asarray(q)
        outs = {"sort": np.asarray(qu.sort_quantiles(qj)), "iso": np.asarray(qu.isotonic(qj))}
    base = _rho_np(y[:, None] - q, taus).sum(1)
    for name, out in outs.items():
        assert np.all(np.diff(out, axis=1) >= 0), name
        new = _rho_np(y[:, None] - out, taus).sum(1)
        assert np.all(new <= base + 1e-12), (name, float((new - base).max()))
        assert np.mean(new < base - 1e-9) > 0.3, name  # and it really changes things
    np.testing.assert_allclose(outs["iso"].mean(1), q.mean(1), atol=1e-12)  # PAV keeps the mean


def test_monotonizers_idempotent_and_identity_on_sorted():
    rng = np.random.default_rng(5)
    q = jnp.asarray(rng.normal(size=(50, 7)), jnp.float32)
    s = jnp.sort(q, axis=1)
    for f in (qu.sort_quantiles, qu.isotonic, qu.fix_crossing_median):
        np.testing.assert_array_equal(f(s), s)
        once = f(q)
        np.testing.assert_allclose(f(once), once, atol=1e-6)
    # soft sort: -> sort for a small strength; keeps the mean; shrinks for a large one
    np.testing.assert_allclose(qu.soft_sort(q, 1e-4), s, atol=1e-5)
    np.testing.assert_allclose(qu.soft_sort(q, 1.0).mean(1), q.mean(1), atol=1e-5)
    spread = lambda a: float(jnp.mean(a.max(1) - a.min(1)))  # noqa: E731
    assert spread(qu.soft_sort(q, 10.0)) < 0.5 * spread(s)


def test_official_mono_fix_can_increase_pinball():
    # the spec's pitfall: the median-outward fix is not pinball-safe, sort is
    q = jnp.array([[0.0, 1.0, -1.0]])
    y = jnp.array([-1.0])
    taus = jnp.array([0.25, 0.5, 0.75])
    base = float(qu.pinball_per_row(q, y, taus)[0])
    mono = float(qu.pinball_per_row(qu.fix_crossing_median(q), y, taus)[0])
    srt = float(qu.pinball_per_row(qu.sort_quantiles(q), y, taus)[0])
    np.testing.assert_array_equal(qu.fix_crossing_median(q), [[0.0, 1.0, 1.0]])
    assert (base, mono, srt) == pytest.approx((1.75, 2.25, 1.0))


def test_monotonizers_jit_vmap_grad():
    rng = np.random.default_rng(6)
    q = jnp.asarray(rng.normal(size=(4, 6, 5)), jnp.float32)  # extra leading axis
    iso_v = jax.jit(jax.vmap(qu.isotonic))(q)
    np.testing.assert_allclose(iso_v, jax.jit(qu.isotonic)(q), atol=1e-6)
    assert np.all(np.diff(np.asarray(iso_v), axis=-1) >= -1e-6)
    # the PAV Jacobian is block averaging (rows sum to 1): the gradient of sum(iso(q)) is all ones,
    # and that of sum(iso(q)^2) is 2 iso(q) (the block means)
    g1, g2 = jax.jit(lambda a: (jax.grad(lambda b: jnp.sum(qu.isotonic(b)))(a),
                                jax.grad(lambda b: jnp.sum(qu.isotonic(b) ** 2))(a)))(q[0])  # fmt: skip
    np.testing.assert_allclose(g1, np.ones((6, 5)), atol=1e-5)
    np.testing.assert_allclose(g2, 2 * iso_v[0], atol=1e-5)


# ----------------------------------------------------------------------------- crossing penalty


def test_crossing_penalty():
    q = jnp.array([[0.0, 2.0, 1.0]])  # one crossing pair (1, 2) of size 1
    assert float(qu.crossing_penalty(q)) == pytest.approx(1.0 / 3.0)
    assert float(qu.crossing_penalty(jnp.sort(q, axis=1))) == 0.0
    taus = jnp.array([0.25, 0.5, 0.75])
    delta = qu.margin_vec(taus)  # 0.01 (tau_t - tau_s)
    np.testing.assert_allclose(delta[0, 2], 0.005)
    # a margin penalizes pairs that are sorted but closer than delta
    assert float(qu.crossing_penalty(jnp.array([[0.0, 0.001, 0.002]]), delta)) > 0.0
    with pytest.raises(ValueError, match="delta"):
        qu.crossing_penalty(q, jnp.zeros((2, 2)))
    adapt = qu.margin_adapt(jnp.linspace(-1, 1, 101), taus, 0.1)
    np.testing.assert_allclose(adapt[0, 2], 0.1, atol=1e-6)


# ----------------------------------------------------------------------------- 6. CQR


def test_cqr_index_holdout_examples():
    assert qu.cqr_index(100, 0.2) == 81  # ceil(0.8 * 101 = 80.8)
    assert qu.cqr_index(99, 0.2) == 80  # 0.8 * 100 = 80 exactly (float noise guarded)
    assert qu.cqr_index(9, 0.1) == 9
    assert qu.cqr_index(8, 0.1) == 9  # > n: Qhat = inf


def test_cqr_calibrate_picks_the_right_order_statistic_and_apply():
    taus = jnp.array([0.1, 0.5, 0.9])
    n = 9
    y = jnp.arange(n, dtype=jnp.float32)  # scores E = max(l - y, y - u) with l = u = 0 -> y
    q = jnp.zeros((n, 3))
    qhat = qu.cqr_calibrate(q, y, taus)  # alpha = 0.2: rank ceil(0.8 * 10) = 8 -> 8th smallest = 7
    np.testing.assert_allclose(qhat, [7.0])
    out = qu.cqr_apply(jnp.array([[0.0, 1.0, 2.0]]), qhat, taus)
    np.testing.assert_allclose(out, [[-7.0, 1.0, 9.0]])
    # re-sorting: a negative Qhat can make the pair cross the median
    crossed = qu.cqr_apply(jnp.array([[0.0, 1.0, 2.0]]), jnp.array([-1.5]), taus, resort=False)
    np.testing.assert_allclose(crossed, [[1.5, 1.0, 0.5]])
    np.testing.assert_allclose(qu.cqr_apply(jnp.array([[0.0, 1.0, 2.0]]), jnp.array([-1.5]), taus), [[0.5, 1.0, 1.5]])


def test_cqr_qhat_is_inf_when_n_cal_is_too_small():
    taus = jnp.array([0.05, 0.25, 0.5, 0.75, 0.95])  # alphas 0.1 and 0.5
    q = jnp.zeros((10, 5))
    y = jnp.linspace(-1, 1, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # n = 10 >= ceil(1/0.1) - 1 = 9: no warning
        assert np.isfinite(np.asarray(qu.cqr_calibrate(q, y, taus))).all()
    with pytest.warns(UserWarning, match="too small"):
        qhat = qu.cqr_calibrate(q[:5], y[:5], taus)  # rank ceil(0.9 * 6) = 6 > 5
    assert math.isinf(float(qhat[0])) and math.isfinite(float(qhat[1]))
    out = qu.cqr_apply(jnp.zeros((1, 5)), qhat, taus)
    assert float(out[0, 0]) == -np.inf and float(out[0, -1]) == np.inf


def test_cqr_coverage_on_exchangeable_replications():
    taus = jnp.array([0.1, 0.5, 0.9])
    rng = np.random.default_rng(7)
    q_fixed = jnp.tile(jnp.array([[-0.3, 0.0, 0.3]]), (60, 1))  # a badly too narrow model
    covs = []
    for _ in range(200):
        y = rng.standard_t(4, size=120).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            qhat = qu.cqr_calibrate(q_fixed, jnp.asarray(y[:60]), taus)
        adj = np.asarray(qu.cqr_apply(q_fixed, qhat, taus))
        covs.append(np.mean((adj[:, 0] <= y[60:]) & (y[60:] <= adj[:, 2])))
    mean = float(np.mean(covs))
    assert mean >= 0.8 - 0.02, mean
    assert mean <= 0.8 + 1 / 61 + 0.02, mean  # and not trivially wide


# ----------------------------------------------------------------------------- 8. bad inputs


@pytest.mark.parametrize(
    "taus, match",
    [
        ([0.0, 0.5], r"taus\[0\].*\(0.0, 1.0\)"),
        ([0.5, 1.0], r"taus\[1\]"),
        ([0.5, 0.25], "strictly increasing"),
        ([0.25, 0.25], "strictly increasing"),
        ([[0.5]], "1-D"),
        ([float("nan")], "non-finite"),
    ],
)
def test_bad_taus(taus, match):
    with pytest.raises(ValueError, match=match):
        qu.pinball(jnp.zeros((3, np.size(taus))), jnp.zeros(3), jnp.asarray(taus))


def test_bad_shapes_and_values():
    taus = jnp.array([0.25, 0.5, 0.75])
    with pytest.raises(ValueError, match="q: expected 3 levels"):
        qu.pinball(jnp.zeros((4, 2)), jnp.zeros(4), taus)
    with pytest.raises(ValueError, match="y: expected shape"):
        qu.pinball(jnp.zeros((4, 3)), jnp.zeros(5), taus)
    with pytest.raises(ValueError, match="y: contains 1 non-finite"):
        qu.pinball(jnp.zeros((2, 3)), jnp.array([0.0, jnp.nan]), taus)
    with pytest.raises(ValueError, match="symmetric"):
        qu.wis(jnp.zeros((2, 3)), jnp.zeros(2), jnp.array([0.2, 0.5, 0.7]))
    with pytest.raises(ValueError, match="median"):
        qu.wis(jnp.zeros((2, 2)), jnp.zeros(2), jnp.array([0.25, 0.75]))
    with pytest.raises(ValueError, match="alpha"):
        qu.interval_score(jnp.zeros(2), jnp.ones(2), jnp.zeros(2), 1.5)
    with pytest.raises(ValueError, match="delta"):
        qu.huber_pinball(jnp.zeros((2, 3)), jnp.zeros(2), taus, -1.0)
    with pytest.raises(ValueError, match="strength"):
        qu.soft_sort(jnp.zeros((2, 3)), 0.0)
    with pytest.raises(ValueError, match="how"):
        qu.monotonize(jnp.zeros((2, 3)), "cummax")
    with pytest.raises(ValueError, match="qhat"):
        qu.cqr_apply(jnp.zeros((2, 3)), jnp.zeros(2), taus)
