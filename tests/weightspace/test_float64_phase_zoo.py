"""float64: landscape metrics vs numpy references at ~1e-10 (dense Hessian from jax.hessian, numpy eigvalsh/CKA)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from zoo.weightspace import landscape as ls
from zoo.weightspace import phase_zoo as pz


def test_float64_landscape_and_phase_zoo():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        x = jnp.asarray(rng.normal(size=(12, 4)))
        y = jnp.asarray(rng.integers(0, 3, 12))
        init, apply = pz.make_mlp(3, 1, 4, 3, dtype=jnp.float64)
        p = init(jax.random.key(0))
        assert jax.tree.leaves(p)[0].dtype == jnp.float64

        def loss(q):
            lo = apply(q, x)
            return jnp.mean(jax.nn.logsumexp(lo, -1) - jnp.take_along_axis(lo, y[:, None], 1)[:, 0])

        flat, unravel = ravel_pytree(p)
        H = np.asarray(jax.jit(jax.hessian(lambda f: loss(unravel(f))))(flat))
        v = rng.normal(size=flat.shape)
        hv = ravel_pytree(jax.jit(lambda q, u: ls.hvp(loss, q, u))(p, unravel(jnp.asarray(v))))[0]
        np.testing.assert_allclose(hv, H @ v, rtol=1e-10, atol=1e-12)
        ev = np.linalg.eigvalsh(0.5 * (H + H.T))
        ritz = jax.jit(lambda q, k: ls.lanczos_eigenvalues(loss, q, k, m=flat.size))(p, jax.random.key(1))
        assert float(ritz[-1]) == pytest.approx(ev[-1], rel=1e-8)
        top = jax.jit(lambda q, k: ls.top_eigenvalue(loss, q, k, max_iter=2000, tol=1e-14))(p, jax.random.key(2))
        assert float(top["eigenvalue"]) == pytest.approx(ev[np.argmax(np.abs(ev))], rel=1e-6)
        tr = jax.jit(lambda q, k: ls.hutchinson_trace(loss, q, k, max_probes=400, tol=0.0))(p, jax.random.key(3))
        assert tr["trace"].dtype == jnp.float64
        assert abs(float(tr["trace"]) - np.trace(H)) < 4 * float(tr["stderr"])
        a, b = rng.normal(size=(10, 3)), rng.normal(size=(10, 5))
        ac, bc = a - a.mean(0), b - b.mean(0)
        ref = np.linalg.norm(ac.T @ bc) ** 2 / (np.linalg.norm(ac.T @ ac) * np.linalg.norm(bc.T @ bc))
        got = ls.linear_cka(jnp.asarray(a), jnp.asarray(b))
        assert got.dtype == jnp.float64 and float(got) == pytest.approx(ref, rel=1e-10)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # invariant to rotation, scaling and translation
        assert float(ls.linear_cka(jnp.asarray(2.0 * a @ q + 1.0), jnp.asarray(b))) == pytest.approx(ref, rel=1e-10)
