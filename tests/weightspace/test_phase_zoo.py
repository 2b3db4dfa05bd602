"""zoo.weightspace.phase_zoo: phase rule, components, connectivity signs, population equivalence."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from zoo.weightspace import phase_zoo as pz


def test_classify_phase_truth_table_and_boundaries():
    # columns: (train_loss, mc_err, cka) -> label
    table = [
        (0.5, -2.0, 0.99, 0),  # not trained, barrier -> I
        (0.5, 0.5, 0.10, 1),  # not trained, no barrier -> II
        (0.05, -2.0, 0.99, 2),  # trained, barrier -> III
        (0.05, 0.0, 0.50, 3),  # trained, connected, low CKA -> IV-A
        (0.05, 0.0, 0.95, 4),  # trained, connected, high CKA -> IV-B
        (0.1, -1.0, 0.9, 4),  # exactly at every threshold: trained, not a barrier, CKA >= tau
        (0.1000001, -1.0000001, 0.9, 0),  # just past them
    ]
    m = {k: np.array([r[i] for r in table]) for i, k in enumerate(("train_loss", "mc_err", "cka"))}
    got = np.asarray(pz.classify_phase(m, 0.1, 1.0, 0.9))
    np.testing.assert_array_equal(got, [r[3] for r in table])
    assert np.asarray(jax.jit(pz.classify_phase)(m)).tolist() == got.tolist()
    m["mc_err"][1] = np.nan
    with pytest.warns(UserWarning, match="undetermined"):
        lab = np.asarray(pz.classify_phase(m))
    assert lab[1] == -1 and (lab[[0, 2, 3, 4]] == got[[0, 2, 3, 4]]).all()


def test_phase_components():
    lab = np.array([[0, 0, 1], [2, 0, 1], [2, 1, 1], [0, 4, 4]])
    assert pz.phase_components(lab) == {0: 2, 1: 1, 2: 1, 4: 1}
    assert pz.phase_components(np.full((2, 2), -1)) == {}


def _quad(p):
    return jnp.sum(p["w"] ** 2)


def test_mode_connectivity_signs_linear_and_bezier():
    pa, pb = {"w": jnp.array([1.0, 0.0])}, {"w": jnp.array([0.0, 1.0])}
    # loss along the line dips in the middle (path better than the ends): mc > 0
    le = lambda p: (_quad(p), 100.0 * _quad(p))  # noqa: E731
    r = pz.mode_connectivity(le, pa, pb, curve="linear", n_ts=5)
    assert float(r["mc_loss"]) == pytest.approx(0.5, abs=1e-6) and float(r["mc_err"]) == pytest.approx(50.0, abs=1e-4)
    # a bump -> barrier -> mc < 0, equal to minus core's Frankle barrier when the deviation is positive
    bump = lambda p: (1.0 - _quad(p), 1.0 - _quad(p))  # noqa: E731
    r = pz.mode_connectivity(bump, pa, pb, curve="linear", n_ts=5)
    assert float(r["mc_loss"]) == pytest.approx(-0.5, abs=1e-6)
    # Bezier with a trained bend is at least as good as the line on a convex loss (zero-mean batches)
    bl = lambda p, b: _quad(p) * b  # noqa: E731
    rb = pz.mode_connectivity(le, pa, pb, curve="bezier", key=jax.random.key(0), batches=jnp.ones(20),
                              batch_loss_fn=bl, lr=0.05, weight_decay=0.0)
    r = pz.mode_connectivity(le, pa, pb, curve="linear", n_ts=5)
    assert float(rb["mc_loss"]) >= float(r["mc_loss"]) - 1e-6


@pytest.fixture(scope="module")
def small():
    d = pz.load_data()
    data = {"x_train": d["x_train"][:64], "y_train": d["y_train"][:64], "x_test": d["x_test"][:32],
            "y_test": d["y_test"][:32]}
    cfg = pz.ZooConfig(widths=(3,), lrs=(0.01, 0.05), n_seeds=2, epochs=2, batch=32)
    p, hp, hist = pz.train_group(cfg, 3, data, jax.random.key(0))
    return data, cfg, p, hp, hist


def test_train_group_population_equivalence(small):
    data, cfg, p, hp, hist = small
    assert hp["lr"].tolist() == pytest.approx([0.01, 0.01, 0.05, 0.05]) and hp["seed"].tolist() == [0, 1, 0, 1]
    assert hist["train_loss"].shape == (4, 2) and np.isfinite(hist["train_loss"]).all()
    one = pz.ZooConfig(widths=(3,), lrs=(0.05,), n_seeds=2, epochs=2, batch=32)
    q, _, _ = pz.train_group(one, 3, data, jax.random.key(0))
    member = jax.tree.map(lambda v: v[2], p)  # (lr 0.05, seed 0)
    for a, b in zip(jax.tree.leaves(member), jax.tree.leaves(jax.tree.map(lambda v: v[0], q))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    flat = [ravel_pytree(jax.tree.map(lambda v, i=i: v[i], p))[0] for i in range(4)]
    assert not np.allclose(flat[0], flat[1])  # different seeds differ
    assert not np.allclose(flat[0], flat[2])  # different lrs differ (same init)


def test_performance_and_cka(small):
    data, cfg, p, _, _ = small
    _, apply_fn = pz.make_mlp(3, 2, 64, 10)
    m0 = jax.tree.map(lambda v: v[0], p)
    perf = pz.performance(apply_fn, m0, data)
    logits = np.asarray(apply_fn(m0, data["x_test"]))
    assert float(perf["test_acc"]) == pytest.approx(np.mean(logits.argmax(1) == data["y_test"]))
    assert float(perf["ggap"]) == pytest.approx(float(perf["train_acc"] - perf["test_acc"]))
    xb = jnp.asarray(data["x_test"]).reshape(4, 8, -1)
    assert float(pz.cka_logits(apply_fn, m0, m0, xb)) == pytest.approx(1.0, abs=1e-5)


def test_hessian_metrics_on_known_spectrum():
    loss = lambda p: 0.5 * jnp.sum(jnp.array([3.0, -1.0, 0.5]) * p["w"] ** 2)  # noqa: E731  H = diag(3, -1, .5)
    h = jax.jit(lambda q, k: pz.hessian_metrics(loss, q, k, max_iter=200, tol=1e-7))({"w": jnp.ones(3)},
                                                                                     jax.random.key(0))
    assert float(h["top_ev"]) == pytest.approx(3.0, rel=1e-4) and float(h["log_top_ev"]) == pytest.approx(np.log(3.0))
    assert float(h["trace"]) == pytest.approx(2.5, rel=1e-6) and float(h["trace_stderr"]) == pytest.approx(0, abs=1e-6)
    assert int(h["n_iter"]) < 200
    neg = lambda p: -loss(p)  # noqa: E731  largest magnitude is -3: the log is NaN (flagged, never clipped)
    h = pz.hessian_metrics(neg, {"w": jnp.ones(3)}, jax.random.key(0), max_iter=200, tol=1e-7, max_probes=4)
    assert float(h["top_ev"]) == pytest.approx(-3.0, rel=1e-4) and np.isnan(float(h["log_top_ev"]))
    assert np.isnan(float(h["log_trace"]))


def test_config_validation():
    with pytest.raises(ValueError, match="n_seeds"):
        pz.ZooConfig(n_seeds=1)
    with pytest.raises(ValueError, match="lrs"):
        pz.ZooConfig(lrs=(0.1, 0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pz.ZooConfig()
