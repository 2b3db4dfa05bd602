"""float64 end to end (under ``jax.enable_x64``) for the federated family: FedAU's weights and aggregation,
FedAMD's steps, the core's local SGD and whole simulated rounds return float64 for float64 inputs and agree
with float64 numpy references (closed forms; tolerance 1e-12 unless stated)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.federated import core, fedamd, fedau

A = 0.7  # curvature of the data-free quadratic loss


def _qloss(params, batch):
    """0.5 A ||w||^2: its gradient A w does not depend on the batch."""
    del batch
    return 0.5 * A * jnp.sum(params["w"] ** 2)


def _row_loss(params, batch):
    """0.5 ||w - x_j||^2 averaged over the batch: gradient w - mean_j x_j."""
    return 0.5 * jnp.mean(jnp.sum((params["w"] - batch["x"]) ** 2, -1))


def _one_row_clients(n=3, d=2, seed=0):
    """n clients holding one row each (so every minibatch is that row): FederatedData in float64 when
    called under x64."""
    x = np.random.default_rng(seed).normal(size=(n, d))
    y = np.arange(n) % 2
    idx, cnt = np.arange(n, dtype=np.int32)[:, None], np.ones(n, np.int32)
    return core.federated_data(x, y, idx, cnt, x, y, num_classes=2), x


def test_fedau_estimator_weights_and_memory_float64():
    seq = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1]], bool)  # rounds x clients
    with jax.enable_x64(True):
        s = fedau.init_weights(3, jnp.float64)
        for a in seq:
            used, s = fedau.update_weights(s, jnp.asarray(a), cutoff=None)
        assert used.dtype == s.omega.dtype == jnp.float64
        p = np.array([0.3, 1.0 / 3.0, 0.9])
        e_inf, e_k = fedau.expected_interval(p), fedau.expected_interval(p, cutoff=4)
        w, den = fedau.aggregation_weights("known_prob", jnp.asarray(seq[0]), probs=p)
        wf, _ = fedau.aggregation_weights("fedau", jnp.asarray(seq[0]), fedau_weights=s.omega)
        table = {"w": jnp.asarray(np.arange(6.0).reshape(3, 2) / 3.0)}
        deltas = {"w": jnp.asarray(np.ones((3, 2)) / 7.0)}
        v, _ = fedau.fedvarp_aggregate(table, deltas, jnp.asarray(seq[0]))
        vm, _ = fedau.mifa_aggregate(table, deltas, jnp.asarray(seq[0]))
    # intervals: client 0 -> [1, 2], client 1 -> [3, 1], client 2 -> [1, 1, 2]
    np.testing.assert_allclose(s.omega, [1.5, 2.0, 4.0 / 3.0], rtol=0, atol=1e-15)
    for arr in (e_inf, e_k, w, den, wf, v["w"], vm["w"]):
        assert arr.dtype == jnp.float64
    np.testing.assert_allclose(e_inf, 1 / p, rtol=1e-15)
    np.testing.assert_allclose(e_k, (1 - (1 - p) ** 4) / p, rtol=1e-14)
    np.testing.assert_allclose(w, [1 / 0.3, 0.0, 1 / 0.9], rtol=1e-15)
    t, dl, act = np.arange(6.0).reshape(3, 2) / 3.0, np.ones((3, 2)) / 7.0, seq[0]
    np.testing.assert_allclose(v["w"], (dl - t)[act].mean(0) + t.mean(0), rtol=1e-14)
    np.testing.assert_allclose(vm["w"], np.where(act[:, None], dl, t).mean(0), rtol=1e-14)


def test_local_sgd_and_fedamd_steps_float64():
    lr, q = 0.1, 5
    with jax.enable_x64(True):
        data, x = _one_row_clients()
        w0 = {"w": jnp.asarray(np.array([0.3, -1.1]))}
        delta, loss = core.local_sgd(_qloss, w0, data.index[0], data.count[0], data.x, data.y, jax.random.key(0),
                                     lr=lr, num_steps=q, batch_size=2)  # fmt: skip
        v = {"w": jnp.asarray(np.array([0.2, 0.5]))}
        dm, u = fedamd.miner_update(jax.grad(_qloss), w0, v, data.index[0], data.count[0], data.x, data.y,
                                    jax.random.key(0), lr=lr, local_steps=q, batch_size=2)  # fmt: skip
        g = fedamd.anchor_update(jax.grad(_row_loss), w0, data.index[1], data.count[1], data.x, data.y)
        server = {"params": w0, "v": v, "t": jnp.int32(0), "global_lr": jnp.float64(0.5)}
        new = fedamd.server_step(server, {"w": jnp.asarray([0.3, 0.6])}, 3, {"w": jnp.asarray([0.9, -0.3])}, 7)
    w0n, vn = np.array([0.3, -1.1]), np.array([0.2, 0.5])
    for arr in (delta["w"], loss, dm["w"], u["w"], g["w"], new["params"]["w"], new["v"]["w"]):
        assert arr.dtype == jnp.float64
    np.testing.assert_allclose(delta["w"], ((1 - lr * A) ** q - 1) * w0n, rtol=1e-12)
    # SARAH with a linear gradient: u_k = (1 - lr A)^k v, delta = lr sum_{k<q} u_k
    np.testing.assert_allclose(u["w"], (1 - lr * A) ** q * vn, rtol=1e-12)
    np.testing.assert_allclose(dm["w"], vn * (1 - (1 - lr * A) ** q) / A, rtol=1e-12)
    np.testing.assert_allclose(g["w"], w0n - x[1], rtol=1e-14)
    np.testing.assert_allclose(new["params"]["w"], w0n - 0.5 * np.array([0.3, 0.6]) / 3, rtol=1e-15)
    np.testing.assert_allclose(new["v"]["w"], vn + np.array([0.9, -0.3]) / 7, rtol=1e-15)


@pytest.mark.parametrize("weighting", ["fedau", "known_prob"])
def test_fedau_round_float64(weighting):
    """Full participation, one-row clients: Δ_n = (x_n - w)(1 - (1 - lr)^Q), w += η mean_n Δ_n each round."""
    lr, q, eta, rounds = 0.3, 2, 0.9, 2
    with jax.enable_x64(True):
        data, x = _one_row_clients()
        probs = np.ones(3)
        alg = fedau.make_algorithm(_row_loss, weighting=weighting, local_lr=lr, local_steps=q, batch_size=1,
                                   global_lr=eta, probs=probs if weighting == "known_prob" else None)  # fmt: skip
        pcfg = core.ParticipationConfig(kind="bernoulli")
        params = {"w": jnp.asarray(np.array([0.5, -0.25]))}
        state = core.init_sim(alg, pcfg, params, data, probs, jax.random.key(1))
        state, metrics, _ = core.simulate(core.make_round_fn(alg, pcfg), state, data, jax.random.key(2),
                                          num_rounds=rounds)  # fmt: skip
    assert data.x.dtype == jnp.float64 and state.participation["probs"].dtype == jnp.float64
    assert state.server["params"]["w"].dtype == state.server["global_lr"].dtype == jnp.float64
    assert metrics["train_loss"].dtype == jnp.float64
    w = np.array([0.5, -0.25])
    for _ in range(rounds):
        w = w + eta * np.mean((x - w) * (1 - (1 - lr) ** q), axis=0)
    np.testing.assert_allclose(state.server["params"]["w"], w, rtol=1e-12)


def test_fedamd_round_float64():
    """All 3 clients sampled, period 2: round 0 all anchors (x unchanged), round 1 all miners with the
    one-row SARAH closed form x_2 = x_0 - η v (1 - (1 - lr)^K), v = mean_n (x_0 - x_n)."""
    lr, k, eta = 0.2, 3, 0.8
    with jax.enable_x64(True):
        data, x = _one_row_clients()
        alg = fedamd.make_algorithm(_row_loss, period=2, local_lr=lr, local_steps=k, batch_size=1, global_lr=eta)
        pcfg = core.ParticipationConfig(kind="uniform_fixed", num_active=3)
        params = {"w": jnp.asarray(np.array([0.5, -0.25]))}
        state = core.init_sim(alg, pcfg, params, data, np.ones(3), jax.random.key(1))
        state = fedamd.init_bullseyes(state, _row_loss, data)
        state, metrics, _ = core.simulate(core.make_round_fn(alg, pcfg), state, data, jax.random.key(2), num_rounds=2)
    assert state.server["params"]["w"].dtype == state.server["v"]["w"].dtype == jnp.float64
    np.testing.assert_array_equal(metrics["miners"], [0, 3])
    w0 = np.array([0.5, -0.25])
    v = np.mean(w0 - x, axis=0)
    np.testing.assert_allclose(state.server["v"]["w"], v, rtol=1e-13)
    np.testing.assert_allclose(state.server["params"]["w"], w0 - eta * v * (1 - (1 - lr) ** k), rtol=1e-12)


def test_float32_params_stay_float32_under_x64():
    """The dtype policy keeps a float32 model in float32 even when x64 is on (no silent promotion)."""
    with jax.enable_x64(True):
        data, _ = _one_row_clients()
        alg = fedau.make_algorithm(_row_loss, weighting="fedau", local_lr=0.1, local_steps=1, batch_size=1)
        pcfg = core.ParticipationConfig(kind="bernoulli")
        params = {"w": jnp.zeros(2, jnp.float32)}
        state = core.init_sim(alg, pcfg, params, data, np.ones(3), jax.random.key(1))
        state, _, _ = core.simulate(core.make_round_fn(alg, pcfg), state, data, jax.random.key(2), num_rounds=1)
    assert state.server["params"]["w"].dtype == jnp.float32 and state.clients.omega.dtype == jnp.float32
