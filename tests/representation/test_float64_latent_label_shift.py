"""Latent label shift in float64: the combine step and the anchor factorizer are exact (1e-10) on a discrete
LLS model with anchors, against numpy's Bayes rule."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.representation import latent_label_shift as lls


def test_float64_combine_and_anchor_exact():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        k, r, n_x = 3, 5, 10
        pxy = rng.random((n_x, k))
        pxy[:k] = 0.0
        pxy[np.arange(k), np.arange(k)] = 1.0
        pxy /= pxy.sum(0)
        q = rng.dirichlet(np.ones(k), size=r)  # [r, k] rows p(y|d)
        pi = rng.dirichlet(np.ones(r))  # non-uniform domain prior
        joint = pxy @ (q.T * pi)  # p(x, d)
        f = joint / joint.sum(1, keepdims=True)  # p(d|x)
        xs, ds = np.repeat(np.arange(n_x), r), np.tile(np.arange(r), n_x)
        got = np.asarray(lls.combine(jnp.asarray(f[xs]), jnp.asarray(q.T), ds, domain_prior=jnp.asarray(pi)))
        assert got.dtype == np.float64
        bayes = pxy[xs] * q[ds]
        np.testing.assert_allclose(got, bayes / bayes.sum(1, keepdims=True), atol=1e-10)
        ids, qhat, pdy = lls.anchor_factorize(jnp.asarray(joint), k)
        perm = np.asarray(ids)
        np.testing.assert_allclose(np.asarray(qhat), q.T[perm], atol=1e-10)
        pdy_ref = q * pi[:, None] / (q * pi[:, None]).sum(0)
        np.testing.assert_allclose(np.asarray(pdy), pdy_ref[:, perm], atol=1e-10)
