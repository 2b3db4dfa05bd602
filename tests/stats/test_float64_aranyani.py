"""Aranyani in float64: the forest against a numpy brute-force router and the aggregate fairness gradient
against the full-history gradient, both at 1e-10."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.stats import aranyani as ar


def test_float64_forest_and_fairness_gradient():
    with jax.enable_x64(True):
        forest = ar.init_forest(jax.random.key(3), 3, depth=2, num_trees=2, dtype=jnp.float64)
        assert forest.W.dtype == jnp.float64
        rng = np.random.default_rng(0)
        x = rng.standard_normal((40, 3))
        a = rng.integers(0, 2, 40)
        got = np.asarray(ar.forest_predict(forest, x))
        assert got.dtype == np.float64
        W, b, th = (np.asarray(v) for v in forest)
        s = 1 / (1 + np.exp(-(np.einsum("nd,tdi->nti", x, W) + b)))  # [n, T, 3]; leaves LL, LR, RL, RR
        mu = np.stack([s[..., 0] * s[..., 1], s[..., 0] * (1 - s[..., 1]), (1 - s[..., 0]) * s[..., 2],
                       (1 - s[..., 0]) * (1 - s[..., 2])], -1)
        phi = np.exp(th) / np.exp(th).sum(-1, keepdims=True)
        ref = np.einsum("ntl,tlc->nc", mu, phi) / 2
        np.testing.assert_allclose(got, ref, atol=1e-12)
        stats = ar.init_fair_stats(forest)
        for i in range(40):
            stats = ar.update_fair_stats(stats, forest, x[i], int(a[i]))
        agg = ar.fairness_grad(stats, lam=0.7, delta=0.01)
        # numpy: F, H'(F), and E[s(1-s)x] per group
        F = s[a == 1].mean(0) - s[a == 0].mean(0)
        hp = np.where(np.abs(F) < 0.01, F, np.sign(F))
        g = s * (1 - s)
        gw = np.einsum("nd,nti->ntdi", x, g)
        ref_w = 0.7 * hp[:, None, :] * (gw[a == 1].mean(0) - gw[a == 0].mean(0))
        ref_b = 0.7 * hp * (g[a == 1].mean(0) - g[a == 0].mean(0))
        np.testing.assert_allclose(np.asarray(agg.W), ref_w, atol=1e-10)
        np.testing.assert_allclose(np.asarray(agg.b), ref_b, atol=1e-10)
