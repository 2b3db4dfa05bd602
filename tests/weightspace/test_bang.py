"""zoo.weightspace.bang: WiSE-FT, output ensembles, outcome tables, label smoothing, mixup, BANG loss, theory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.weightspace import bang


@pytest.fixture(scope="module")
def trees():
    a = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    return a, jax.tree.map(lambda x: -2 * x + 1, a)


def test_wise_ft(trees):
    a, b = trees
    assert jax.tree.all(jax.tree.map(lambda x, y: bool((x == y).all()), bang.wise_ft(a, b, 0.0), a))
    assert jax.tree.all(jax.tree.map(lambda x, y: bool((x == y).all()), bang.wise_ft(a, b, 1.0), b))
    m = jax.vmap(lambda al: bang.wise_ft(a, b, al))(jnp.array([0.25, 0.5]))
    np.testing.assert_allclose(m["w"][1], 0.5 * (a["w"] + b["w"]))
    with pytest.raises(ValueError, match="alpha"):
        bang.wise_ft(a, b, 1.5)
    with pytest.raises(ValueError, match="alpha"):
        bang.wise_ft(a, b, float("nan"))
    assert bang.wise_ft(a, b, 1.5, allow_extrapolation=True)["b"][0] == pytest.approx(-1.0 * 1.5 + 1 * -0.5)
    with pytest.raises(ValueError, match="theta1"):
        bang.wise_ft(a, {"w": b["w"]}, 0.5)


def test_outcome_table_and_ose_ttf_zero():
    key = jax.random.key(0)
    l0, l1 = jax.random.normal(key, (2, 1000, 5))
    y = jax.random.randint(jax.random.key(1), (1000,), 0, 5)
    for a in (0.2, 0.5, 0.9):
        pe = bang.output_ensemble(l0, l1, a).argmax(-1)
        t = bang.outcome_table(y, l0.argmax(-1), l1.argmax(-1), pe)
        assert float(t["TTF"]) == 0.0
        assert sum(float(v) for v in t.values()) == pytest.approx(1.0, abs=1e-6)
        ref = np.mean((np.asarray(l0.argmax(-1)) != np.asarray(y)) & (np.asarray(l1.argmax(-1)) != np.asarray(y)) & (np.asarray(pe) == np.asarray(y)))
        assert float(t["FFT"]) == pytest.approx(ref, abs=1e-7)
    r = bang.fft_ratio(y, l0.argmax(-1), l1.argmax(-1), pe)
    assert 0 <= float(r) <= 1


def test_linear_model_wise_ft_equals_ose(trees):
    a, b = trees
    x = jax.random.normal(jax.random.key(2), (7, 2))
    f = lambda p: x @ p["w"] + p["b"]  # noqa: E731
    np.testing.assert_allclose(f(bang.wise_ft(a, b, 0.3)), bang.output_ensemble(f(a), f(b), 0.3), rtol=1e-5, atol=1e-5)


def test_smooth_labels_and_ce_identity():
    y = jnp.array([0, 2, 1])
    np.testing.assert_array_equal(bang.smooth_labels(y, 3, 0.0), jax.nn.one_hot(y, 3))
    t = bang.smooth_labels(y, 3, 0.3)
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
    assert float(t.min()) == pytest.approx(0.1)
    logp = jax.nn.log_softmax(jax.random.normal(jax.random.key(0), (3, 3)))
    ce = -jnp.sum(t * logp, 1)
    ref = 0.7 * -jnp.take_along_axis(logp, y[:, None], 1)[:, 0] + 0.3 * -logp.mean(1)
    np.testing.assert_allclose(ce, ref, rtol=1e-5)


def test_mixup():
    x = jax.random.normal(jax.random.key(0), (6, 3))
    t = jax.nn.one_hot(jnp.arange(6) % 3, 3)
    xm, tm, lam = bang.mixup(jax.random.key(1), x, t, 0.0)
    assert float(lam) == 1.0 and np.array_equal(xm, x) and np.array_equal(tm, t)
    xm, tm, lam = bang.mixup(jax.random.key(1), x, t, 0.4)
    perm = jax.random.permutation(jax.random.split(jax.random.key(1))[1], 6)
    np.testing.assert_allclose(xm, lam * x + (1 - lam) * x[perm], rtol=1e-5)
    np.testing.assert_allclose(tm.sum(1), 1.0, rtol=1e-5)
    lams = jax.vmap(lambda k: bang.mixup(k, x, t, 0.2)[2])(jax.random.split(jax.random.key(2), 2000))
    assert float(lams.min()) >= 0 and float(lams.max()) <= 1 and abs(float(lams.mean()) - 0.5) < 0.05


def test_bang_loss_reduces_to_ce_and_temperature():
    w = jax.random.normal(jax.random.key(0), (4, 3))
    apply = lambda p, x: x @ p  # noqa: E731
    x = jax.random.normal(jax.random.key(1), (8, 4))
    y = jnp.arange(8) % 3
    ce = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(x @ w), y[:, None], 1))
    got = bang.bang_loss(apply, w, jax.random.key(2), x, y, num_classes=3, eta=0.0, mixup_a=0.0)
    assert float(got) == pytest.approx(float(ce), rel=1e-6)
    g = jax.grad(lambda p: bang.bang_loss(apply, p, jax.random.key(2), x, y, num_classes=3))(w)
    assert np.isfinite(np.asarray(g)).all()
    # fit_temperature recovers T: labels drawn from softmax(z), logits shown as T * z
    z = 3 * jax.random.normal(jax.random.key(3), (4000, 5))
    yy = jax.random.categorical(jax.random.key(4), z)
    assert float(bang.fit_temperature(2.5 * z, yy)) == pytest.approx(2.5, rel=0.05)
    p = {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, "Dense_1": {"kernel": jnp.ones((2, 2))}}
    s = bang.temperature_scale_head(p, "Dense_1", 2.0)
    assert float(s["Dense_1"]["kernel"][0, 0]) == 0.5 and float(s["Dense_0"]["bias"][0]) == 1.0


def test_theory_sim_exact_properties():
    f = jax.jit(lambda k, o, lam: bang.theory_sim(k, 3000, overlap=o, lam=lam))
    full = f(jax.random.key(0), 6, 1.0)
    assert float(full["acc_ens"]) == float(full["acc_a"]) == float(full["acc_b"])
    zero = f(jax.random.key(0), 0, 0.0)
    assert float(zero["acc_ens"]) == float(zero["acc_a"]) and float(zero["ttf"]) == 0.0
    div = f(jax.random.key(0), 0, 1.0)
    assert float(div["acc_ens"]) > float(div["acc_a"]) and float(div["ttf"]) == 0.0
