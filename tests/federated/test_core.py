"""zoo.federated.core: partitioners, participation processes, local SGD, round driver, sharding."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.federated import core, fedau

from ._fed_problem import loss_fn, small_data, zero_params

# ------------------------------------------------------------------------------- partitioners

Y = np.random.default_rng(0).integers(0, 10, size=600).astype(np.int32)


def _entropy_gap(hist):
    p = hist / np.maximum(hist.sum(1, keepdims=True), 1)
    ent = -(p * np.log(np.where(p > 0, p, 1))).sum(1)
    return np.log(10) - ent[hist.sum(1) > 0].mean()


@pytest.mark.parametrize(
    "split",
    [
        lambda s: core.dirichlet_client_major(Y, 20, 0.3, s),
        lambda s: core.pathological(Y, 20, 2, s),
        lambda s: core.dirichlet_label_major(Y, 20, 0.3, s, min_partition_size=5),
        lambda s: core.iid(Y, 20, s),
    ],
    ids=["dirichlet", "pathological", "label_major", "iid"],
)
def test_partition_is_disjoint_complete_and_deterministic(split):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index, count, hist = split(3)
        again = split(3)
    rows = np.concatenate([index[n, : count[n]] for n in range(len(count))])
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(Y)))
    for n in range(len(count)):
        np.testing.assert_array_equal(hist[n], np.bincount(Y[index[n, : count[n]]], minlength=10))
    for a, b in zip((index, count, hist), again):
        np.testing.assert_array_equal(a, b)


def test_dirichlet_alpha_controls_heterogeneity():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skew = _entropy_gap(core.dirichlet_client_major(Y, 20, 0.05, 0)[2])
        flat = _entropy_gap(core.dirichlet_client_major(Y, 20, 1e3, 0)[2])
    assert flat < 0.15 < 1.0 < skew


def test_label_major_min_size_and_max_tries():
    index, count, _ = core.dirichlet_label_major(Y, 20, 0.1, 0, min_partition_size=10)
    assert count.min() >= 10
    with pytest.raises(ValueError, match="min_partition_size: no split .* after max_tries=5"):
        core.dirichlet_label_major(Y, 20, 0.1, 0, min_partition_size=31, max_tries=5)  # 20 * 31 > 600 rows


def test_empty_clients_warn_and_get_zero_probability():
    with pytest.warns(UserWarning, match="empty client"):
        index, count, hist = core.dirichlet_client_major(Y[:40], 30, 0.01, 0)
    assert (count == 0).any()
    p = core.label_correlated_probs(hist, seed=0)
    assert np.all(p[count == 0] == 0) and np.all((p[count > 0] >= 0.02) & (p[count > 0] <= 1))


def test_probs_formula_and_clip():
    hist = np.array([[3, 1], [0, 4], [0, 0]])
    p = core.probs_from_multiplier(hist, np.array([0.9, 0.1]), p_mean=0.6, p_min=0.05)
    # C p_mean <a, m> = 1.2 * (0.75*0.9 + 0.25*0.1) = 0.84 ; 1.2 * 0.1 = 0.12 ; empty -> 0
    np.testing.assert_allclose(p, [0.84, 0.12, 0.0])
    p = core.probs_from_multiplier(hist, np.array([0.9, 0.1]), p_mean=0.9, p_min=0.05)
    assert p[0] == 1.0  # 1.8 * 0.7 = 1.26, clipped


# ------------------------------------------------------------------------------ participation

PROBS = np.array([0.05, 0.2, 0.5, 0.9, 1.0, 0.3], np.float32)
COUNT = np.array([5, 5, 5, 5, 5, 0], np.int32)  # the last client is empty


def _masks(kind, rounds, **kw):
    cfg = core.ParticipationConfig(kind=kind, **kw)

    @jax.jit
    def run(key):
        ps = core.participation_init(cfg, key, PROBS, COUNT)
        return jax.lax.scan(lambda s, t: core.participation_step(cfg, s, jax.random.fold_in(key, t), t),
                            ps, jnp.arange(rounds))[1]  # fmt: skip

    return np.asarray(run(jax.random.key(0))), cfg


@pytest.mark.parametrize("kind", ["bernoulli", "markov"])
def test_participation_long_run_mean(kind):
    t = 20_000
    masks, cfg = _masks(kind, t, q_max=0.2)
    mean = np.asarray(core.stationary_mean(cfg, PROBS))
    emp = masks.mean(0)
    assert not masks[:, 5].any()  # the empty client never participates
    # Markov samples are correlated: widen sigma by sqrt((1 + r)/(1 - r)), r = 1 - a - b the chain's autocorrelation
    a, b = (np.asarray(v) for v in core._markov_rates(jnp.asarray(PROBS), cfg.q_max))
    r = 1 - a - b if kind == "markov" else np.zeros_like(a)
    sigma = np.sqrt(mean * (1 - mean) / t * (1 + r) / np.maximum(1 - r, 1e-9))
    ok = np.abs(emp - mean)[:5] <= 3 * sigma[:5] + 1e-9
    assert ok.all(), (emp, mean, sigma)


def test_cyclic_is_exact_over_whole_periods():
    period = 10
    masks, cfg = _masks("cyclic", 3 * period, period=period)
    a = np.maximum(1, np.round(period * PROBS)).astype(int)
    b = np.maximum(1, period - a)
    cyc = a + b
    for n in range(5):
        assert masks[: 2 * cyc[n], n].sum() == 2 * a[n], n
    assert not masks[:, 5].any()


def test_uniform_fixed_picks_exactly_s_eligible():
    masks, _ = _masks("uniform_fixed", 200, num_active=3)
    assert (masks.sum(1) == 3).all() and not masks[:, 5].any()
    assert (masks[:, :5].mean(0) > 0.4).all()  # every eligible client gets picked (mean 3/5)


# ------------------------------------------------------------------------------ the round driver

DATA, P8, _ = small_data()
PCFG = core.ParticipationConfig(kind="bernoulli")
ALG = fedau.make_algorithm(loss_fn, weighting="average_participating", local_lr=0.1, local_steps=2, batch_size=4)
ROUND = core.make_round_fn(ALG, PCFG)


def _run(key, rounds=2, capacity=None):
    state = core.init_sim(ALG, PCFG, zero_params(), DATA, P8, jax.random.fold_in(key, 1))
    rf = ROUND if capacity is None else core.make_round_fn(ALG, PCFG, capacity=capacity)
    return core.simulate(rf, state, DATA, key, num_rounds=rounds, eval_every=1,
                         eval_fn=lambda s, d: {"w_norm": jnp.linalg.norm(s.server["params"]["w"])})  # fmt: skip


RUN = jax.jit(_run, static_argnames=("rounds", "capacity"))


def test_single_client_round_equals_centralized_sgd():
    data, _, _ = small_data(num_clients=1)
    alg = fedau.make_algorithm(loss_fn, weighting="average_participating", local_lr=0.2, local_steps=4, batch_size=5)
    state = core.init_sim(alg, PCFG, zero_params(), data, np.ones(1), jax.random.key(0))
    key = jax.random.key(7)
    new, _ = jax.jit(core.make_round_fn(alg, PCFG))(state, data, key)
    # centralized: the same batches (client 0's key is fold_in(k_local, 0)) and plain SGD
    k_local = jax.random.fold_in(jax.random.split(key)[1], 0)
    p = zero_params()

    @jax.jit
    def sgd(p, q):
        batch = core.client_batch(data.x, data.y, data.index[0], data.count[0], jax.random.fold_in(k_local, q), 5)
        return jax.tree.map(lambda a, b: a - 0.2 * b, p, jax.grad(loss_fn)(p, batch))

    for q in range(4):
        p = sgd(p, q)
    for a, b in zip(jax.tree.leaves(new.server["params"]), jax.tree.leaves(p)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert float(jnp.abs(p["w"]).sum()) > 0


def test_batches_only_read_the_clients_rows():
    n = int(np.argmax(np.asarray(DATA.count)))
    b = core.client_batch(DATA.x, DATA.y, DATA.index[n], DATA.count[n], jax.random.key(3), 64)
    rows = set(np.asarray(DATA.index[n, : DATA.count[n]]).tolist())
    own = np.asarray(DATA.x)[sorted(rows)]
    assert all((own == r).all(1).any() for r in np.asarray(b["x"]))


def test_vmap_over_seeds_equals_separate_runs():
    keys = jax.random.split(jax.random.key(0), 3)
    pop = jax.jit(jax.vmap(lambda k: _run(k)))(keys)
    for i in range(3):
        one = RUN(keys[i])
        for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(pop)):
            np.testing.assert_allclose(np.asarray(b)[i], a, atol=1e-6)
    assert pop[1]["num_active"].shape == (3, 2) and pop[2]["w_norm"].shape == (3, 2)
    assert float(jnp.abs(pop[2]["w_norm"][0] - pop[2]["w_norm"][1]).max()) > 0  # seeds differ


def test_compaction_equals_computing_every_client():
    key = jax.random.key(5)
    ref, compact = RUN(key), RUN(key, capacity=1)  # capacity 1: one chunk per active client
    assert int(ref[1]["num_active"].max()) >= 2  # a round with several participants (several chunks)
    np.testing.assert_array_equal(ref[1]["num_active"], compact[1]["num_active"])
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(compact)):
        np.testing.assert_allclose(a, b, atol=1e-6)


_SHARD_SCRIPT = r"""
import jax, jax.numpy as jnp, numpy as np
assert jax.device_count() == 4
from zoo.federated import core, fedau
import sys; sys.path.insert(0, "tests/federated"); from _fed_problem import loss_fn, small_data, zero_params
data, probs, _ = small_data()
for weighting in ("fedvarp",):
    alg = fedau.make_algorithm(loss_fn, weighting=weighting, local_lr=0.1, local_steps=2, batch_size=4)
    pcfg = core.ParticipationConfig(kind="markov", q_max=0.3)
    state = core.init_sim(alg, pcfg, zero_params(), data, probs, jax.random.key(1))
    run = lambda rf: jax.jit(lambda s, d, k: core.simulate(rf, s, d, k, num_rounds=2))
    ref = run(core.make_round_fn(alg, pcfg))(state, data, jax.random.key(2))
    mesh = jax.make_mesh((4,), ("clients",))
    s4, d4 = core.shard_clients(state, data, mesh)
    out = run(core.make_round_fn(alg, pcfg, mesh=mesh, capacity=1))(s4, d4, jax.random.key(2))  # + compaction
    assert len(out[0].participation["on"].sharding.device_set) == 4
    np.testing.assert_array_equal(ref[1]["num_active"], out[1]["num_active"])
    np.testing.assert_array_equal(ref[0].participation["on"], out[0].participation["on"])
    for a, b in zip(jax.tree.leaves(ref[0]), jax.tree.leaves(out[0])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    assert int(ref[1]["num_active"].sum()) > 0
print("SHARDED-OK")
"""


def test_four_device_shard_map_equals_single_device():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", _SHARD_SCRIPT], env=env, cwd=root, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    assert "SHARDED-OK" in out.stdout


# --------------------------------------------------------------------------------- bad inputs


def test_bad_inputs():
    with pytest.raises(ValueError, match="probs: expected participation probabilities in"):
        core.participation_init(PCFG, jax.random.key(0), np.array([0.5, 1.5]), np.array([1, 1]))
    with pytest.raises(ValueError, match="probs: expected participation probabilities in"):
        core.participation_init(PCFG, jax.random.key(0), np.array([0.5, 0.0]), np.array([1, 1]))
    core.participation_init(PCFG, jax.random.key(0), np.array([0.5, 0.0]), np.array([1, 0]))  # empty: fine
    with pytest.raises(ValueError, match="probs: contains 1 non-finite"):
        core.participation_init(PCFG, jax.random.key(0), np.array([0.5, np.nan]), np.array([1, 1]))
    with pytest.raises(ValueError, match="num_active: expected at most the 1 clients"):
        core.participation_init(core.ParticipationConfig(kind="uniform_fixed", num_active=2), jax.random.key(0),
                                np.array([0.5, 0.5]), np.array([1, 0]))  # fmt: skip
    with pytest.raises(ValueError, match="kind: expected one of"):
        core.ParticipationConfig(kind="poisson")
    with pytest.raises(ValueError, match="q_max"):
        core.ParticipationConfig(kind="markov", q_max=0.0)
    with pytest.raises(ValueError, match="y: expected dtype kind"):
        core.dirichlet_client_major(Y.astype(np.float32), 5, 0.1, 0)
    with pytest.raises(ValueError, match="alpha"):
        core.dirichlet_client_major(Y, 5, 0.0, 0)
    with pytest.raises(ValueError, match="num_clients"):
        core.iid(Y, 0, 0)
    with pytest.raises(ValueError, match="count: every client is empty"):
        core.federated_data(np.ones((4, 2)), np.zeros(4, int), np.zeros((2, 1), int), np.zeros(2, int),
                            np.ones((1, 2)), np.zeros(1, int), num_classes=2)  # fmt: skip
    with pytest.raises(ValueError, match=r"client_states\['t'\]: expected a leading axis of 8"):
        bad = ALG._replace(client_init=lambda p, n: {"t": jnp.zeros(n + 1)})
        core.init_sim(bad, PCFG, zero_params(), DATA, P8, jax.random.key(0))
    with pytest.raises(ValueError, match="eval_every: expected a divisor"):
        core.simulate(ROUND, None, DATA, jax.random.key(0), num_rounds=5, eval_every=2)
    with pytest.raises(ValueError, match="capacity: expected a value in"):
        core.make_round_fn(ALG, PCFG, capacity=0)
    with pytest.raises(ValueError, match="mesh: expected a mesh axis named 'clients'"):
        core.make_round_fn(ALG, PCFG, mesh=jax.make_mesh((1,), ("data",)))
