"""Dtype policy for the geometric family: float64 end to end under ``jax.enable_x64`` (``jax.experimental.enable_x64``
in older JAX) — invariants, PONITA and EGNN forward passes, and rotation equivariance to ~1e-10."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.geometric import egnn as G
from zoo.geometric import ponita as P
from zoo.geometric.graph import batch_complete

CFG = P.PonitaConfig(dim=3, in_scalar=1, in_vector=1, out_scalar=1, out_vector=1, hidden_dim=8, basis_dim=8,
                     num_layers=2, num_ori=6, layer_scale=0.5)  # fmt: skip
ECFG = G.EGNNConfig(hidden_dim=8, num_layers=2)
_rng = np.random.default_rng(11)
POS = _rng.standard_normal((1, 4, 3))
VEL = _rng.standard_normal((1, 4, 3))
CHARGES = np.sign(_rng.standard_normal((1, 4, 1)))


def _rot(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else q[:, ::-1]


def test_defaults_follow_x64():
    with jax.enable_x64(True):
        assert P.random_rotation(jax.random.key(0)).dtype == jnp.float64
        assert P.make_grid(CFG).dtype == jnp.float64
        assert P.init(jax.random.key(0), CFG)["layers"]["A"].dtype == jnp.float64
        assert G.init(jax.random.key(0), ECFG)["layers"]["e1"]["w"].dtype == jnp.float64
    assert P.random_rotation(jax.random.key(0)).dtype == jnp.float32
    assert G.init(jax.random.key(0), ECFG)["layers"]["e1"]["w"].dtype == jnp.float32


def test_invariants_float64_and_exactly_invariant():
    with jax.enable_x64(True):
        pos, grid = jnp.asarray(POS[0]), P.make_grid(CFG)
        s, r = np.repeat(np.arange(4), 4).astype(np.int32), np.tile(np.arange(4), 4).astype(np.int32)
        spatial, fiber, dist = P.invariants(pos, grid, s, r)
        assert spatial.dtype == fiber.dtype == dist.dtype == jnp.float64
        rot = jnp.asarray(_rot(3))
        spatial2, fiber2, dist2 = P.invariants(pos @ rot.T + 1.5, grid @ rot.T, s, r)
        np.testing.assert_allclose(spatial2, spatial, atol=1e-12)
        np.testing.assert_allclose(fiber2, fiber, atol=1e-12)
        np.testing.assert_allclose(dist2, dist, atol=1e-12)
        pc = P.invariants_pointcloud(pos, grid[:4], s, r)
        assert pc.dtype == jnp.float64
        np.testing.assert_allclose(P.invariants_pointcloud(pos @ rot.T, grid[:4] @ rot.T, s, r), pc, atol=1e-12)
        cut = P.polynomial_cutoff(dist, 2.0)
        assert cut.dtype == jnp.float64


@pytest.fixture(scope="module")
def ponita64():
    with jax.enable_x64(True):
        g = batch_complete(jnp.asarray(POS), jnp.asarray(CHARGES), jnp.asarray(VEL[:, :, None]))
        params = P.init(jax.random.key(0), CFG, g)
        yield g, params, jax.jit(P.apply, static_argnums=1)


def test_ponita_forward_float64_and_equivariant(ponita64):
    g, params, apply = ponita64
    with jax.enable_x64(True):
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(params))
        s0, v0 = apply(params, CFG, g)
        assert s0.dtype == v0.dtype == jnp.float64
        rot = jnp.asarray(_rot(5))
        g2 = g._replace(pos=g.pos @ rot.T + jnp.array([0.5, -1.0, 2.0]), vectors=g.vectors @ rot.T)
        p2 = {**params, "consts": {"grid": params["consts"]["grid"] @ rot.T}}
        s1, v1 = apply(p2, CFG, g2)
        scale = float(jnp.abs(v0).max())
        assert float(jnp.abs(s1 - s0).max()) < 1e-10
        assert float(jnp.abs(v1 - v0 @ rot.T).max()) / scale < 1e-10


def test_ponita_nbody_head_float64(ponita64):
    _, params, _ = ponita64
    with jax.enable_x64(True):
        batch = {"pos": jnp.asarray(POS), "vel": jnp.asarray(VEL), "charges": jnp.asarray(CHARGES),
                 "target": jnp.asarray(POS + 0.1)}  # fmt: skip
        loss, _ = jax.jit(P.nbody_loss, static_argnums=1)(params, CFG, batch, jax.random.key(1))
        assert loss.dtype == jnp.float64 and np.isfinite(float(loss))


def test_egnn_float64_and_equivariant():
    with jax.enable_x64(True):
        params = G.init(jax.random.key(0), ECFG)
        params["layers"]["x2"]["w"] = params["layers"]["x2"]["w"] * 500  # non-negligible coordinate updates
        batch = {"pos": jnp.asarray(POS), "vel": jnp.asarray(VEL), "charges": jnp.asarray(CHARGES)}
        predict = jax.jit(G.nbody_predict, static_argnums=1)
        x0 = predict(params, ECFG, batch)
        assert x0.dtype == jnp.float64
        assert float(jnp.abs(x0 - batch["pos"]).max()) > 1e-3
        rot, t = jnp.asarray(_rot(9)), jnp.array([1.0, -2.0, 0.5])
        x1 = predict(params, ECFG, {**batch, "pos": batch["pos"] @ rot.T + t, "vel": batch["vel"] @ rot.T})
        np.testing.assert_allclose(x1, x0 @ rot.T + t, atol=1e-10)
