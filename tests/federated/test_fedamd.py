"""zoo.federated.fedamd (spec papers/fedamd.md §6): miner recursion, anchors, bullseye table, roles, p rules."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.federated import core, fedamd

A = jnp.array([1.0, 3.0, 0.5])  # diagonal curvature of the quadratic clients


def qloss(params, batch):
    """F(x) = mean_b ½ Σ_d A_d (x_d - b_d)²: exact gradient A (x - c) when every row equals c."""
    return jnp.mean(0.5 * jnp.sum(A * (params["x"] - batch["x"]) ** 2, axis=-1))


QGRAD = jax.grad(qloss)
C2 = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]], np.float32)
QX = np.repeat(C2, 3, axis=0)  # client n holds 3 copies of c_n
QDATA = core.federated_data(QX, np.zeros(6, int), np.arange(6).reshape(2, 3), np.array([3, 3]), QX[:1],
                            np.zeros(1, int), num_classes=1)  # fmt: skip
X0 = {"x": jnp.array([0.2, 0.1, -0.3])}


def _miner(v, lr=0.1, steps=4):
    return fedamd.miner_update(QGRAD, X0, v, QDATA.index[0], QDATA.count[0], QDATA.x, QDATA.y, jax.random.key(0),
                               lr=lr, local_steps=steps, batch_size=2)  # fmt: skip


def _g(x, c):
    return {"x": A * (x["x"] - c)}


def test_miner_telescopes():
    v = {"x": jnp.array([0.3, -0.7, 1.1])}
    delta, u = _miner(v)
    y = jax.tree.map(jnp.subtract, X0, delta)
    want = v["x"] + _g(y, C2[0])["x"] - _g(X0, C2[0])["x"]
    np.testing.assert_allclose(u["x"], want, atol=1e-6)
    # and the hand recursion
    yy, uu = X0["x"], v["x"]
    for _ in range(4):
        y_new = yy - 0.1 * uu
        uu, yy = uu + A * (y_new - C2[0]) - A * (yy - C2[0]), y_new
    np.testing.assert_allclose(delta["x"], X0["x"] - yy, atol=1e-6)


def test_miner_with_fresh_bullseye_is_gradient_descent():
    delta, _ = _miner(_g(X0, C2[0]), lr=0.2, steps=5)
    x = X0["x"]
    for _ in range(5):
        x = x - 0.2 * A * (x - C2[0])
    np.testing.assert_allclose(X0["x"] - delta["x"], x, atol=1e-6)


def test_miner_is_differentiable_in_lr():
    f = jax.jit(lambda lr: jnp.sum(_miner({"x": jnp.ones(3)}, lr=lr)[0]["x"] ** 2))
    g = jax.grad(f)(0.1)
    fd = (f(0.1 + 1e-3) - f(0.1 - 1e-3)) / 2e-3
    assert float(g) == pytest.approx(float(fd), rel=1e-3)


def test_anchor_is_exact_mean_over_real_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3)).astype(np.float32)
    index = np.array([[0, 1, 2, 3, 4], [5, 6, 0, 0, 0]])
    for n, cnt in enumerate((5, 2)):
        g = fedamd.anchor_update(QGRAD, X0, jnp.asarray(index[n]), cnt, jnp.asarray(x), jnp.zeros(7, jnp.int32))
        want = np.mean([A * (X0["x"] - x[j]) for j in index[n, :cnt]], axis=0)
        np.testing.assert_allclose(g["x"], want, atol=1e-6)


def test_roles():
    sampled = jnp.arange(20_000) % 4 != 0
    roles = np.asarray(fedamd.sample_roles(jax.random.key(1), sampled, p=0.3))
    assert (roles[~np.asarray(sampled)] == fedamd.IDLE).all()
    frac = (roles[np.asarray(sampled)] == fedamd.ANCHOR).mean()
    n = int(sampled.sum())
    assert abs(frac - 0.3) <= 3 * math.sqrt(0.3 * 0.7 / n)
    for t in range(6):
        r = np.asarray(fedamd.sample_roles(jax.random.key(t), sampled[:8], period=3, t=t))
        want = fedamd.ANCHOR if t % 3 == 0 else fedamd.MINER
        assert (r[np.asarray(sampled[:8])] == want).all() and (r[~np.asarray(sampled[:8])] == 0).all()


def test_anchor_probability_rules():
    m, a = 20, 10
    pa, pb, pc = (fedamd.optimal_anchor_prob(m, a, r) for r in ("opta", "optb", "optc"))
    assert pb == pytest.approx(math.sqrt(4 * 4 + 2 * 2) - 4, abs=1e-12)
    assert pc == pytest.approx((2 / 12) ** 0.1, abs=1e-12)

    def j(p):
        return 1 / (1 - p**a) + 2 * m / (a * p * math.sqrt(1 - p**a))

    assert j(pa) <= min(j(pa - 1e-3), j(pa + 1e-3)) and abs(pa - pc) < 0.05


# ------------------------------------------------------------------- rounds through the simulator


def _small():
    from ._fed_problem import loss_fn, small_data, zero_params

    data, _, _ = small_data()
    alg = fedamd.make_algorithm(loss_fn, p=0.5, local_lr=0.1, local_steps=2, batch_size=4)
    pcfg = core.ParticipationConfig(kind="uniform_fixed", num_active=3)
    state = core.init_sim(alg, pcfg, zero_params(), data, np.full(8, 0.5), jax.random.key(0))
    state = fedamd.init_bullseyes(state, loss_fn, data)
    run = jax.jit(lambda s, k: core.simulate(core.make_round_fn(alg, pcfg), s, data, k, num_rounds=4))
    return state, run


STATE, RUN = None, None


def _rounds(p):
    """Four rounds from x_0 with anchor probability p (a traced server-state leaf: one compilation)."""
    global STATE, RUN
    if RUN is None:
        STATE, RUN = _small()
    state = STATE._replace(server={**STATE.server, "p": jnp.float32(p)})
    return state, RUN(state, jax.random.key(1))


def test_bullseye_bookkeeping_and_progress():
    state, (final, metrics, _) = _rounds(0.5)
    for v, t in zip(jax.tree.leaves(final.server["v"]), jax.tree.leaves(final.clients["table"])):
        np.testing.assert_allclose(v, t.mean(0), atol=1e-6)
    assert int(metrics["anchors"].sum()) > 0 and int(metrics["miners"].sum()) > 0
    assert (np.asarray(metrics["anchors"] + metrics["miners"]) == 3).all()
    assert float(jnp.abs(final.server["params"]["w"] - state.server["params"]["w"]).max()) > 0


def test_all_anchor_rounds_never_move_the_model():
    state, (final, metrics, _) = _rounds(1.0)
    for a, b in zip(jax.tree.leaves(final.server["params"]), jax.tree.leaves(state.server["params"])):
        np.testing.assert_array_equal(a, b)
    assert int(metrics["miners"].sum()) == 0 and int(metrics["anchors"].sum()) == 12
    # every refreshed row is the client's gradient at x (= x_0 here): the table is unchanged too
    for a, b in zip(jax.tree.leaves(final.clients["table"]), jax.tree.leaves(state.clients["table"])):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_anchor_probability_zero_freezes_the_bullseyes():
    """p = 0: every sampled client is a miner, the table and v stay at their x_0 values, the model moves."""
    state, (final, metrics, _) = _rounds(0.0)
    assert int(metrics["anchors"].sum()) == 0 and int(metrics["miners"].sum()) == 12
    for a, b in zip(jax.tree.leaves(final.clients["table"]), jax.tree.leaves(state.clients["table"])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(final.server["v"]), jax.tree.leaves(state.server["v"])):
        np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(final.server["params"]["w"] - state.server["params"]["w"]).max()) > 0


def test_anchor_probability_zero_is_not_plain_local_sgd():
    """With p = 0 a miner runs GD corrected by the frozen x_0 bullseye, ``u_k = v_0 + ∇F_i(y_k) - ∇F_i(x_t)``
    (telescoped), not plain local GD: the two differ once ``x_t != x_0``. This is why FedAMD at p = 0 is
    *not* its local-SGD baseline (the issue's proposed reduction); the exact reduction is a fresh bullseye."""
    x_t = {"x": X0["x"] + jnp.array([0.5, -0.4, 0.3])}
    v0 = {"x": jnp.mean(jnp.stack([_g(X0, c)["x"] for c in C2]), 0)}  # bullseye mean at x_0
    delta, _ = fedamd.miner_update(QGRAD, x_t, v0, QDATA.index[0], QDATA.count[0], QDATA.x, QDATA.y,
                                   jax.random.key(0), lr=0.1, local_steps=4, batch_size=2)  # fmt: skip
    y = np.asarray(x_t["x"])
    for _ in range(4):  # corrected GD, by hand
        y = y - 0.1 * (np.asarray(v0["x"]) + A * (y - C2[0]) - A * (x_t["x"] - C2[0]))
    np.testing.assert_allclose(x_t["x"] - delta["x"], y, atol=1e-6)
    plain, _ = core.local_sgd(qloss, x_t, QDATA.index[0], QDATA.count[0], QDATA.x, QDATA.y, jax.random.key(0),
                              lr=0.1, num_steps=4, batch_size=2)  # fmt: skip
    assert float(jnp.abs((x_t["x"] - delta["x"]) - (x_t["x"] + plain["x"])).max()) > 1e-2


def test_bad_inputs():
    from ._fed_problem import loss_fn

    kw = dict(local_lr=0.1, local_steps=2, batch_size=4)
    with pytest.raises(ValueError, match=r"p: expected a value in \[0.0, 1.0\]"):
        fedamd.make_algorithm(loss_fn, p=1.5, **kw)
    with pytest.raises(ValueError, match="p, period: expected exactly one"):
        fedamd.make_algorithm(loss_fn, p=0.5, period=3, **kw)
    with pytest.raises(ValueError, match="period"):
        fedamd.make_algorithm(loss_fn, period=0, **kw)
    with pytest.raises(ValueError, match="local_steps"):
        fedamd.make_algorithm(loss_fn, p=0.5, local_lr=0.1, local_steps=0, batch_size=4)
    with pytest.raises(ValueError, match="num_active: expected at most"):
        core.participation_init(core.ParticipationConfig(kind="uniform_fixed", num_active=3), jax.random.key(0),
                                np.full(3, 0.5), np.array([1, 0, 1]))  # fmt: skip
    with pytest.raises(ValueError, match="rule: expected one of"):
        fedamd.optimal_anchor_prob(20, 10, "optd")
    with pytest.raises(ValueError, match=r"params\['w'\]: contains 1 non-finite"):
        fedamd.check_params({"w": jnp.array([1.0, jnp.nan])})
