"""Float64 end to end for zoo.stats.collab_structure: measures and OLS/HC3 vs numpy float64 references."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.stats import collab_structure as cs


def test_float64_measures_and_ols_match_numpy():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        papers = [list(rng.choice(12, size=rng.integers(2, 4), replace=False)) for _ in range(20)]
        g = cs.from_papers(papers, dtype=np.float64)
        assert g.W.dtype == np.float64
        A = (np.asarray(g.W) > 0).astype(np.float64)
        k = A.sum(1)
        n = A.shape[0]
        np.testing.assert_allclose(cs.degree_centralization(g), (k.max() - k).sum() / ((n - 1) * (n - 2)),
                                   rtol=0, atol=1e-12)
        P = A / k[:, None]
        np.testing.assert_allclose(cs.burt_constraint(g), (A * (P + P @ P) ** 2).sum(1), rtol=0, atol=1e-12)
        t = np.diag(A @ A @ A) / 2
        np.testing.assert_allclose(cs.effective_size(g), k - 2 * t / k, rtol=0, atol=1e-12)
        lab = np.arange(n) % 3
        C = np.eye(3)[lab]
        Wm = np.asarray(g.W)
        Q = np.trace(C.T @ Wm @ C) / Wm.sum() - (((C.T @ Wm.sum(1)) / Wm.sum()) ** 2).sum()
        np.testing.assert_allclose(cs.modularity(g, jnp.asarray(lab)), Q, rtol=0, atol=1e-12)
        X = np.c_[np.ones(30), rng.normal(size=(30, 2))]
        y = rng.normal(size=30)
        beta, _, hc3 = cs.ols(jnp.asarray(y), jnp.asarray(X))
        b = np.linalg.lstsq(X, y, rcond=None)[0]
        e = y - X @ b
        XtXi = np.linalg.inv(X.T @ X)
        h = np.einsum("ij,jk,ik->i", X, XtXi, X)
        np.testing.assert_allclose(beta, b, rtol=0, atol=1e-10)
        np.testing.assert_allclose(hc3, np.sqrt(np.diag(XtXi @ (X.T * (e / (1 - h)) ** 2) @ X @ XtXi)), atol=1e-10)
