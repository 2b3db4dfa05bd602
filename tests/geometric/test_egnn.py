"""EGNN_vel baseline (zoo.geometric.egnn): E(3) equivariance, permutation, training signal, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.geometric import egnn as G

CFG = G.EGNNConfig(hidden_dim=8, num_layers=2)
_predict = jax.jit(G.nbody_predict, static_argnums=1)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    batch = {"pos": jnp.asarray(rng.standard_normal((2, 5, 3)), jnp.float32),
             "vel": jnp.asarray(rng.standard_normal((2, 5, 3)), jnp.float32),
             "charges": jnp.asarray(np.sign(rng.standard_normal((2, 5, 1))), jnp.float32),
             "target": jnp.asarray(rng.standard_normal((2, 5, 3)), jnp.float32)}  # fmt: skip
    params = G.init(jax.random.key(0), CFG)
    # make the coordinate MLP non-negligible so the test can fail
    params["layers"]["x2"]["w"] = params["layers"]["x2"]["w"] * 500
    return batch, params


def test_e3_equivariance_and_translation(setup):
    batch, params = setup
    q, r = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))
    rot = jnp.asarray(q * np.sign(np.diag(r)), jnp.float32)  # any orthogonal matrix (reflections included)
    t = jnp.array([1.0, -2.0, 0.5])
    x0 = _predict(params, CFG, batch)
    x1 = _predict(params, CFG, {**batch, "pos": batch["pos"] @ rot.T + t, "vel": batch["vel"] @ rot.T})
    np.testing.assert_allclose(x1, x0 @ rot.T + t, atol=1e-4)
    assert float(jnp.abs(x0 - batch["pos"]).max()) > 1e-2  # the model moves the particles


def test_node_permutation(setup):
    batch, params = setup
    perm = jnp.array([3, 1, 4, 0, 2])
    x0 = _predict(params, CFG, batch)
    x1 = _predict(params, CFG, {k: v[:, perm] for k, v in batch.items()})
    np.testing.assert_allclose(x1, x0[:, perm], atol=1e-5)


def test_training_lowers_loss(setup):
    batch, params = setup
    import optax

    opt = optax.adam(1e-2)

    @jax.jit
    def step(p, s):
        (loss, _), g = jax.value_and_grad(G.nbody_loss, has_aux=True)(p, CFG, batch)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    p, s = params, opt.init(params)
    losses = []
    for _ in range(15):
        p, s, loss = step(p, s)
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0] and np.isfinite(losses).all()


def test_bad_input(setup):
    batch, params = setup
    with pytest.raises(ValueError, match="hidden_dim"):
        G.EGNNConfig(hidden_dim=0)
    with pytest.raises(ValueError, match="vel: expected shape"):
        G.apply(params, CFG, jnp.ones((5, 1)), jnp.ones((5, 3)), jnp.ones((4, 3)), jnp.ones((2, 2)),
                jnp.array([0, 1]), jnp.array([1, 0]))  # fmt: skip
    with pytest.raises(ValueError, match="edge_attr: expected shape"):
        G.apply(params, CFG, jnp.ones((5, 1)), jnp.ones((5, 3)), jnp.ones((5, 3)), jnp.ones((3, 2)),
                jnp.array([0, 1]), jnp.array([1, 0]))  # fmt: skip
