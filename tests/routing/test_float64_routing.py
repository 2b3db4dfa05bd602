"""Float64: routing, the DBD ensemble and AdaptDHM's towers against numpy float64 references at ~1e-10."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from zoo.routing import adaptdhm as ad
from zoo.routing import capsule_dbd as cd
from zoo.routing import core

from .test_core import np_routing


def test_float64_routing_dbd_towers():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(4, 3, 2))
    x = rng.normal(size=(6, 3))
    C = rng.normal(size=(2, 3))
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    with jax.enable_x64(True):
        out = core.capsule_routing(jnp.asarray(u), 3)
        assert out.v.dtype == jnp.float64
        v, c, _ = np_routing(u, 3)
        np.testing.assert_allclose(out.v, v, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out.c, c, rtol=1e-10, atol=1e-12)
        _, coeff, newc = core.adaptdhm_route(jnp.asarray(x), jnp.asarray(C), 0.9, 3)
        v2, _, cf = np_routing(np.repeat(x[:, None], 2, 1), 3, b0=x @ C.T, phi="ema_l2", agreement="replace", prev=C)
        np.testing.assert_allclose(newc, v2, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(coeff, cf, rtol=1e-10, atol=1e-12)

        # gradient through the routing against central finite differences
        f = lambda uu: jnp.sum(core.capsule_routing(uu, 3).v ** 2 * jnp.arange(1.0, 4.0)[:, None])  # noqa: E731
        g = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(u)))
        h = 1e-6
        E = np.eye(u.size).reshape(u.size, *u.shape) * h  # every coordinate perturbation, one vmapped call
        fu = jax.jit(jax.vmap(f))
        fd = ((np.asarray(fu(jnp.asarray(u + E))) - np.asarray(fu(jnp.asarray(u - E)))) / (2 * h)).reshape(u.shape)
        np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-8)

        # DBD scores, weights and the mixture in float64
        tok = rng.integers(1, 9, (5, 4)).astype(np.int32)
        mask = np.ones_like(tok, bool)
        table = cd.fit_dbd(tok, mask, np.array([0, 1, 0, 1, 1]), 9, 2)
        sc = cd.dbd_scores(jnp.asarray(table), tok, mask)
        assert sc.dtype == jnp.float64
        ref = np.array([[table[t, d] for d in range(2)] for t in tok]).sum(-1)
        np.testing.assert_allclose(sc, ref, rtol=1e-12)
        lengths = rng.random((3, 2))
        y = np.array([0, 1, 1])
        T = np.eye(2)[y]
        want = np.mean(np.sum(T * np.maximum(0, 0.9 - lengths) ** 2 + 0.5 * (1 - T) * np.maximum(0, lengths - 0.1) ** 2, 1))
        np.testing.assert_allclose(cd.margin_loss(jnp.asarray(lengths), y), want, rtol=1e-12)

        # AdaptDHM towers in float64
        cfg = ad.CTRConfig(vocab_sizes=(5, 3), emb_dim=2, hidden=(3,), K=2)
        params, _ = ad.init(jax.random.key(0), cfg, dtype=jnp.float64)
        emb = rng.normal(size=(4, 4))
        logits = ad.towers_logits(params, jnp.asarray(emb))
        assert logits.dtype == jnp.float64
        for k in range(2):
            w = [np.asarray(s["w"]) * np.asarray(c["w"][k]) for s, c in zip(params["shared"], params["cluster"])]
            np.testing.assert_allclose(logits[:, k], (np.maximum(emb @ w[0], 0) @ w[1])[:, 0], rtol=1e-10)
