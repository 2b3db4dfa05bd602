"""Aranyani: the soft oblique forest against a brute-force router, its symmetries, and the exactness of the
aggregate-statistics fairness gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.stats import aranyani as ar


def _router(W, b, theta, x):
    """Brute-force recursive soft routing (numpy): f(x) averaged over trees. Left child of heap node j is 2j."""
    T, d, I = W.shape
    out = np.zeros(theta.shape[-1])
    for t in range(T):
        def visit(node, prob):
            if node > I:  # a leaf: heap index I + 1 + l
                phi = np.exp(theta[t, node - I - 1]) / np.exp(theta[t, node - I - 1]).sum()
                return prob * phi
            s = 1 / (1 + np.exp(-(x @ W[t, :, node - 1] + b[t, node - 1])))
            return visit(2 * node, prob * s) + visit(2 * node + 1, prob * (1 - s))
        out += visit(1, 1.0)
    return out / T


@pytest.fixture(scope="module")
def forest():
    return ar.init_forest(jax.random.key(0), 4, depth=3, num_trees=2)


def test_path_matrix():
    r = ar.path_matrix(2)
    np.testing.assert_array_equal(r, [[1, 1, -1, -1], [1, -1, 0, 0], [0, 0, 1, -1]])
    r4 = ar.path_matrix(4)
    assert (np.abs(r4).sum(0) == 4).all() and r4.shape == (15, 16)


def test_forest_matches_brute_force_router_and_leaf_probs(forest):
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    got = np.asarray(ar.forest_predict(forest, x))
    W, b, th = (np.asarray(v, np.float64) for v in forest)
    ref = np.stack([_router(W, b, th, xi.astype(np.float64)) for xi in x])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    mu = np.exp(np.asarray(ar.leaf_log_probs(forest, x)))
    np.testing.assert_allclose(mu.sum(-1), 1, atol=1e-5)
    # mirror symmetry: negate the root and swap its subtrees (left half of leaves <-> right half)
    r = ar.path_matrix(3)
    sub = np.flatnonzero(r[:, :4].any(1) & ~r[:, 4:].any(1)), np.flatnonzero(r[:, 4:].any(1) & ~r[:, :4].any(1))
    W2, b2, th2 = W.copy(), b.copy(), th.copy()
    W2[:, :, 0], b2[:, 0] = -W[:, :, 0], -b[:, 0]
    W2[:, :, sub[0]], W2[:, :, sub[1]] = W[:, :, sub[1]], W[:, :, sub[0]]
    b2[:, sub[0]], b2[:, sub[1]] = b[:, sub[1]], b[:, sub[0]]
    th2[:, :4], th2[:, 4:] = th[:, 4:], th[:, :4]
    mirrored = ar.Forest(*(jnp.asarray(v, jnp.float32) for v in (W2, b2, th2)))
    np.testing.assert_allclose(np.asarray(ar.forest_predict(mirrored, x)), got, atol=1e-5)


def test_parameter_isolation(forest):
    x = jnp.asarray(np.random.default_rng(1).standard_normal(4), jnp.float32)
    jac = jax.jacfwd(lambda W: jax.nn.sigmoid(ar.node_logits(forest._replace(W=W), x[None])[0]))(forest.W)
    jac = np.asarray(jac)  # [T, I, T, d, I]
    s = np.asarray(jax.nn.sigmoid(ar.node_logits(forest, x[None])[0]))
    for t in range(2):
        for j in range(7):
            expect = np.zeros((2, 4, 7))
            expect[t, :, j] = s[t, j] * (1 - s[t, j]) * np.asarray(x)
            np.testing.assert_allclose(jac[t, j], expect, atol=1e-6)


def test_aggregate_gradient_equals_full_history_and_group_relabelling(forest):
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((60, 4)), jnp.float32)
    a = jnp.asarray(rng.integers(0, 2, 60), jnp.int32)

    @jax.jit
    def stream(a):
        stats = jax.lax.fori_loop(0, 60, lambda i, s: ar.update_fair_stats(s, forest, x[i], a[i]),
                                  ar.init_fair_stats(forest))
        return stats, ar.fairness_grad(stats, lam=2.0, delta=0.01)

    stats, agg = stream(a)
    full = ar.full_history_fairness_grad(forest, x, a, lam=2.0, delta=0.01)
    np.testing.assert_allclose(np.asarray(agg.W), np.asarray(full.W), atol=1e-6)
    np.testing.assert_allclose(np.asarray(agg.b), np.asarray(full.b), atol=1e-6)
    assert not np.asarray(agg.theta).any()
    # running means equal batch means; relabelling a -> 1 - a flips F, keeps g_fair
    sig = np.asarray(jax.nn.sigmoid(ar.node_logits(forest, x)))
    an = np.asarray(a)
    np.testing.assert_allclose(np.asarray(ar.node_gaps(stats)), sig[an == 1].mean(0) - sig[an == 0].mean(0), atol=1e-6)
    stats2, agg2 = stream(1 - a)
    np.testing.assert_allclose(np.asarray(ar.node_gaps(stats2)), -np.asarray(ar.node_gaps(stats)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(agg2.W), np.asarray(agg.W), atol=1e-6)


def test_online_skip_rule_lam_zero_and_metrics():
    s = ar.make_fair_stream(0, 64, 4)
    st0 = ar.init_online(jax.random.key(1), 4, depth=2, num_trees=2)
    one_group = np.zeros(64, np.int32)
    st, preds = ar.online_steps(st0, s["x"], s["y"], one_group, lam=1.0)
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), st.forest, st0.forest)
    assert float(st.stats.count[0]) == 64
    # lam = 0 ignores the statistics: same forest whatever the group labels (both groups present)
    a1 = np.r_[0, 1, s["a"][2:]].astype(np.int32)
    a2 = np.r_[0, 1, 1 - s["a"][2:]].astype(np.int32)
    st_a, _ = ar.online_steps(st0, s["x"], s["y"], a1, lam=0.0)
    st_b, _ = ar.online_steps(st0, s["x"], s["y"], a2, lam=0.0)
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), st_a.forest, st_b.forest)
    st_c, _ = ar.online_steps(st0, s["x"], s["y"], a1, lam=5.0)
    assert not np.allclose(np.asarray(st_c.forest.W), np.asarray(st_a.forest.W))
    preds, y, a = np.asarray(preds), s["y"], s["a"]
    dp = abs(preds[a == 1].mean() - preds[a == 0].mean())
    assert float(ar.demographic_parity(preds, a)) == pytest.approx(dp, abs=1e-6)
    m = ar.prequential_metrics(preds, y, a)
    assert float(m["accuracy"]) == pytest.approx(np.mean(preds == y), abs=1e-6)
    assert float(m["dp_curve"][-1]) == pytest.approx(dp, abs=1e-6)
    acc, dps = ar.majority_mix_curve(preds, y, a, np.asarray([0.0, 0.5, 1.0], np.float32), 1)
    np.testing.assert_allclose(np.asarray(acc), [np.mean(y == 1), 0.5 * (np.mean(preds == y) + np.mean(y == 1)),
                                                 np.mean(preds == y)], atol=1e-6)
    np.testing.assert_allclose(np.asarray(dps), [0, dp / 2, dp], atol=1e-6)
    with pytest.raises(ValueError, match="a: both groups"):
        ar.demographic_parity(preds, one_group)


def test_huber_grad_and_load_adult(tmp_path):
    f = jnp.asarray([-0.5, -0.005, 0.0, 0.003, 0.2])
    np.testing.assert_allclose(np.asarray(ar.huber_grad(f, delta=0.01)), [-1, -0.005, 0, 0.003, 1], atol=1e-7)
    np.testing.assert_allclose(np.asarray(ar.huber_grad(f, delta=0.01, huber="standard")),
                               [-0.01, -0.005, 0, 0.003, 0.01], atol=1e-7)
    rows = ["39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, "
            "United-States, <=50K",
            "50, Self-emp, 83311, Bachelors, 13, Married, Exec, Husband, White, Female, 0, 0, 13, United-States, >50K",
            "38, ?, 215646, HS-grad, 9, Divorced, ?, Not-in-family, Black, Male, 0, 0, 40, Cuba, >50K"]
    p = tmp_path / "adult.data"
    p.write_text("\n".join(rows) + "\n")
    d = ar.load_adult(str(p))
    np.testing.assert_array_equal(d["y"], [0, 1, 1])
    np.testing.assert_array_equal(d["a"], [1, 0, 1])
    np.testing.assert_allclose(d["x"].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(d["x"][:, 0], (np.array([39, 50, 38]) - 127 / 3) / np.std([39, 50, 38], ddof=1),
                               rtol=1e-5)
