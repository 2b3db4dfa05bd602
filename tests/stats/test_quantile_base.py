"""zoo.stats.quantile_base: base models against numpy references, out-of-fold predictions, data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from zoo.stats import quantile_base as qb
from zoo.stats import quantile_utils as qu

TAUS = jnp.array([0.1, 0.5, 0.9], jnp.float32)


@pytest.fixture(scope="module")
def data():
    d = qb.make_hetero_skew(0, n=120, d=3)
    return d["x"], d["y"]


def test_make_hetero_skew_is_a_pure_generator():
    a, b = qb.make_hetero_skew(3, n=4000, d=4), qb.make_hetero_skew(3, n=4000, d=4)
    np.testing.assert_array_equal(a["y"], b["y"])
    assert a["x"].shape == (4000, 4) and a["x"].dtype == np.float32 and a["y"].shape == (4000,)
    assert not np.array_equal(a["y"], qb.make_hetero_skew(4, n=4000, d=4)["y"])
    assert np.abs(a["x"]).max() <= 1.0
    # residual of the known mean: mean 0, skewed right (Gamma noise)
    x, y = a["x"].astype(np.float64), a["y"].astype(np.float64)
    r = y - np.sin(3 * x[:, 0]) - x[:, 1] ** 2
    assert abs(r.mean()) < 0.05 and np.mean(r**3) > 0.05
    with pytest.raises(ValueError, match="d: expected a value in"):
        qb.make_hetero_skew(0, n=10, d=2)


def test_load_regression():
    d = qb.load_regression("diabetes")
    assert d["x"].shape == (442, 10) and d["y"].shape == (442,)
    with pytest.raises(ValueError, match="name: expected one of"):
        qb.load_regression("yacht")
    for name, (module, pip, _) in qb.REGRESSION_SETS.items():
        try:
            __import__(module)
        except ImportError:
            with pytest.raises(ImportError, match=pip):
                qb.load_regression(name)


def test_knn_and_gaussian_knn_match_numpy(data):
    x, y = data
    k = 7
    w = np.ones(len(y), np.float32)
    w[:20] = 0.0  # those rows are not neighbours
    xq = x[:5]
    d2 = ((xq[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    d2[:, :20] = np.inf
    nb = y[np.argsort(d2, axis=1)[:, :k]].astype(np.float64)
    m = qb.knn_quantile(k)
    got = m.predict(m.fit(jax.random.key(0), x, y, TAUS, w), xq, TAUS)
    np.testing.assert_allclose(got, np.quantile(nb, np.asarray(TAUS), axis=1).T, atol=1e-5)
    g = qb.gaussian_knn(k)
    got = g.predict(g.fit(jax.random.key(0), x, y, TAUS, w), xq, TAUS)
    want = nb.mean(1)[:, None] + nb.std(1, ddof=1)[:, None] * norm.ppf(np.asarray(TAUS))[None]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_linear_qr_recovers_linear_quantiles_and_vmapped_folds_equal_weighted_fits():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(800, 1)).astype(np.float32)
    y = (2.0 * x[:, 0] + rng.uniform(-1, 1, size=800)).astype(np.float32)  # q_tau = 2x + (2 tau - 1)
    m = qb.linear_qr(num_steps=400)
    p = m.fit(jax.random.key(0), x, y, TAUS)
    np.testing.assert_allclose(np.asarray(p["W"])[0], [2.0, 2.0, 2.0], atol=0.15)
    np.testing.assert_allclose(p["b"], 2 * np.asarray(TAUS) - 1, atol=0.1)
    # the K fold fits run as one vmapped program over row weights; fold 1 equals its own weighted fit
    folds = np.arange(len(y)) % 3
    r = qb.oof_predictions(m, x, y, TAUS, key=jax.random.key(2), folds=folds)
    keys = jax.random.split(jax.random.split(jax.random.key(2))[1], 4)
    p1 = m.fit(keys[1], x, y, TAUS, (folds != 1).astype(np.float32))
    np.testing.assert_allclose(r["oof"][folds == 1], m.predict(p1, x[folds == 1], TAUS), atol=1e-4)


def test_oof_predictions_are_out_of_fold(data):
    x, y = data
    m = qb.knn_quantile(5)
    folds = np.arange(len(y)) % 4
    r = qb.oof_predictions(m, x, y, TAUS, key=jax.random.key(0), folds=folds, X_test=x[:3])
    assert r["oof"].shape == (len(y), 3) and r["test"].shape == (3, 3)
    for k in (0, 3):  # a fit on the other folds only (numpy reference), predicting fold k
        keep = folds != k
        xq = x[folds == k]
        d2 = ((xq[:, None, :] - x[keep][None, :, :]) ** 2).sum(-1)
        nb = y[keep][np.argsort(d2, axis=1)[:, :5]].astype(np.float64)
        np.testing.assert_allclose(r["oof"][folds == k], np.quantile(nb, np.asarray(TAUS), axis=1).T, atol=1e-5)
    # the test predictions come from the full fit (kNN includes the row itself)
    np.testing.assert_allclose(r["test"], m.predict(m.fit(jax.random.key(0), x, y, TAUS), x[:3], TAUS), atol=1e-6)
    # a random split from a key: K folds of near-equal size
    ids = qb.kfold_ids(jax.random.key(1), 122, 5)
    assert sorted(np.bincount(ids).tolist()) == [24, 24, 24, 25, 25]
    assert not np.array_equal(ids, qb.kfold_ids(jax.random.key(2), 122, 5))


@pytest.mark.parametrize(
    "factory, kw",
    [
        (qb.mlp_joint_qr, {"monotone": True, "batch_size": 32}),  # minibatches and the non-crossing head
        (qb.mlp_single_qr, {}),
        (qb.gaussian_mlp, {}),
    ],
    ids=["joint_monotone", "single", "gaussian"],
)
def test_mlp_base_models_fit_and_predict(data, factory, kw):
    x, y = data
    m = factory(hidden=8, layers=1, num_steps=100, lr=2e-2, **kw)
    p = m.fit(jax.random.key(0), x, y, TAUS)
    q = np.asarray(m.predict(p, x, TAUS))
    assert q.shape == (len(y), 3) and np.isfinite(q).all()
    loss = float(jnp.mean(qu.pinball(q, y, TAUS)))
    const = float(jnp.mean(qu.pinball(jnp.tile(jnp.quantile(y, TAUS), (len(y), 1)), y, TAUS)))
    assert loss < const  # beats the unconditional quantiles on the training data
    if kw.get("monotone"):
        far = np.asarray(m.predict(p, x * 5, TAUS))  # even far from the data
        assert np.all(np.diff(far, axis=1) > 0)


def test_external_hgb_adapter(data):
    x, y = data
    m = qb.hgb_quantile(max_iter=5, min_samples_leaf=5)
    assert not m.vectorizable
    r = qb.oof_predictions(m, x, y, TAUS, key=jax.random.key(0), n_folds=2, X_test=x[:4])
    assert r["oof"].shape == (len(y), 3) and r["test"].shape == (4, 3) and np.isfinite(r["oof"]).all()


def test_bad_inputs(data):
    x, y = data
    with pytest.raises(ValueError, match="k: expected a positive int"):
        qb.knn_quantile(0)
    with pytest.raises(ValueError, match="lr"):
        qb.mlp_joint_qr(lr=-1.0)
    with pytest.raises(ValueError, match="name: expected one of"):
        qb.BaseModel("forest", qb.KNNConfig())
    with pytest.raises(ValueError, match="cfg: expected a KNNConfig"):
        qb.BaseModel("knn_quantile", qb.SGDConfig())
    m = qb.knn_quantile(3)
    with pytest.raises(ValueError, match="strictly increasing"):
        m.fit(jax.random.key(0), x, y, jnp.array([0.5, 0.1]))
    with pytest.raises(ValueError, match=r"taus\[1\]: expected a value in \(0.0, 1.0\)"):
        m.fit(jax.random.key(0), x, y, jnp.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="y: expected shape"):
        m.fit(jax.random.key(0), x, y[:-1], TAUS)
    with pytest.raises(ValueError, match="X: contains 1 non-finite"):
        m.fit(jax.random.key(0), np.where(np.arange(x.size).reshape(x.shape) == 0, np.nan, x), y, TAUS)
    with pytest.raises(ValueError, match="w: expected at least one"):
        m.fit(jax.random.key(0), x, y, TAUS, np.zeros(len(y)))
    with pytest.raises(ValueError, match="n_folds"):
        qb.oof_predictions(m, x, y, TAUS, key=jax.random.key(0), n_folds=1)
    with pytest.raises(ValueError, match="X_test: expected 3 columns"):
        qb.oof_predictions(m, x, y, TAUS, key=jax.random.key(0), X_test=x[:, :2])
    with pytest.raises(ValueError, match="model: expected a BaseModel"):
        qb.oof_predictions(lambda: 0, x, y, TAUS, key=jax.random.key(0))
