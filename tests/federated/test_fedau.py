"""zoo.federated.fedau: the interval estimator, the weightings, the memory baselines, reductions and fixed points."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.federated import core, fedau

# ----------------------------------------------------------------------------------- estimator


@functools.partial(jax.jit, static_argnames="cutoff")
def _trace(active, cutoff):
    """Scan `update_weights` over active: bool[T, N] -> (used f32[T, N], final state)."""
    state = fedau.init_weights(active.shape[1])

    def step(s, a):
        used, s = fedau.update_weights(s, a, cutoff=cutoff)
        return s, used

    final, used = jax.lax.scan(step, state, active)
    return used, final


SEQ = np.array([0, 0, 1, 0, 1, 1, 0, 0, 0, 0], bool)[:, None]


@pytest.mark.parametrize(
    "cutoff, used, omega, m, s",
    [
        (None, [1, 1, 1, 3, 3, 2.5, 2, 2, 2, 2], 2.0, 3, 4),  # intervals 3, 2, 1
        (3, [1, 1, 1, 3, 3, 2.5, 2, 2, 2, 2.25], 2.25, 4, 1),  # intervals 3, 2, 1, 3 (cut at K)
        (1, [1] * 10, 1.0, 10, 0),  # every round closes an interval of length 1
    ],
)
def test_hand_computed_sequence(cutoff, used, omega, m, s):
    u, final = _trace(SEQ, cutoff)
    np.testing.assert_allclose(u[:, 0], used, rtol=1e-6)
    assert float(final.omega[0]) == pytest.approx(omega) and int(final.num_intervals[0]) == m
    assert int(final.since[0]) == s


def _reference(seq, cutoff):
    """The list-of-intervals definition (IBM/fedau main.py): weight = mean of completed intervals, else 1."""
    intervals, count, used = [], 0, []
    for a in seq:
        used.append(np.mean(intervals) if intervals else 1.0)
        if a:
            intervals.append(count + 1)
            count = 0
        else:
            count += 1
            if cutoff is not None and count >= cutoff:
                intervals.append(count)
                count = 0
    return np.array(used), (np.mean(intervals) if intervals else 1.0)


@pytest.mark.parametrize("cutoff", [None, 4])
def test_estimator_equals_list_of_intervals(cutoff):
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, size=1000)
    seqs = rng.random((60, 1000)) < p
    used, final = _trace(seqs, cutoff)
    for n in range(1000):
        ref_used, ref_omega = _reference(seqs[:, n], cutoff)
        np.testing.assert_allclose(used[:, n], ref_used, rtol=1e-5)
        assert float(final.omega[n]) == pytest.approx(ref_omega, rel=1e-5)


@pytest.mark.parametrize("cutoff", [None, 5, 50])
def test_long_run_mean_matches_expected_interval(cutoff):
    p = np.array([0.2, 0.7, 0.05])
    seqs = np.random.default_rng(2).random((200_000, 3)) < p
    _, final = _trace(seqs, cutoff)
    want = np.asarray(fedau.expected_interval(p, cutoff))
    np.testing.assert_allclose(np.asarray(final.omega)[:2], want[:2], rtol=0.01)
    np.testing.assert_allclose(float(final.omega[2]), want[2], rtol=0.04)
    if cutoff == 5:  # the cutoff's bias is visible at p = 0.05: (1 - 0.95^5)/0.05 = 4.52 vs 1/p = 20
        assert float(final.omega[2]) < 5


# ------------------------------------------------------------- scalar quadratics: F_n = ½(x - c_n)²

C = np.array([4.0, -1.0, 2.0, 0.5], np.float32)
PQ = np.array([0.1, 0.3, 0.6, 0.9], np.float32)


def _qloss(params, batch):  # each client holds one row c_n, so the gradient is exact: x - c_n
    return 0.5 * jnp.mean((params["x"] - batch["x"][:, 0]) ** 2)


def _qdata():
    return core.federated_data(C[:, None], np.arange(4), np.arange(4)[:, None], np.ones(4, int), C[:1, None],
                               np.zeros(1, int), num_classes=4)  # fmt: skip


QDATA = _qdata()
ROUNDS = 20_000  # one length for every trajectory, so each method compiles once
BERN = core.ParticipationConfig(kind="bernoulli")


def _alg(weighting, probs=PQ, cutoff=None, global_lr=0.1):
    return fedau.make_algorithm(_qloss, weighting=weighting, local_lr=0.1, local_steps=1, batch_size=1,
                                global_lr=global_lr, cutoff=cutoff, probs=probs)  # fmt: skip


@functools.lru_cache(maxsize=None)
def _runner(weighting, cutoff, rounds):
    rf = core.make_round_fn(_alg(weighting, cutoff=cutoff), BERN)
    eval_fn = lambda s, d: s.server["params"]["x"]  # noqa: E731
    return jax.jit(lambda s, k: core.simulate(rf, s, QDATA, k, num_rounds=rounds, eval_every=1, eval_fn=eval_fn)[2])


def _trajectory(weighting, probs, cutoff=None, rounds=ROUNDS, key=0):
    state = core.init_sim(_alg(weighting, probs, cutoff), BERN, {"x": jnp.float32(0.0)}, QDATA, probs,
                          jax.random.key(100 + key))  # fmt: skip
    return np.asarray(_runner(weighting, cutoff, rounds)(state, jax.random.key(key)))


def test_full_participation_every_method_is_fedavg():
    ones = np.ones(4, np.float32)
    ref = _trajectory("average_participating", ones)
    assert abs(ref[-1] - C.mean()) < abs(C.mean())  # it moves towards mean(c)
    for w in ("fedau", "known_prob", "average_all", "fedvarp", "mifa"):
        np.testing.assert_allclose(_trajectory(w, ones), ref, rtol=1e-5, atol=1e-6, err_msg=w)


def test_cutoff_one_is_average_all():
    np.testing.assert_allclose(_trajectory("fedau", PQ, cutoff=1), _trajectory("average_all", PQ), atol=1e-6)
    assert not np.allclose(_trajectory("fedau", PQ), _trajectory("average_all", PQ))  # K = ∞ differs


def _q_participating():
    """q_n = E[I_n / |S| ; |S| > 0] by enumerating the 2^4 participation sets."""
    q = np.zeros(4)
    for s in itertools.product([0, 1], repeat=4):
        s = np.array(s)
        if s.sum():
            q += np.prod(np.where(s, PQ, 1 - PQ)) * s / s.sum()
    return q


@pytest.mark.parametrize(
    "weighting, target",
    [
        ("fedau", float(C.mean())),
        ("known_prob", float(C.mean())),
        ("average_all", float((PQ * C).sum() / PQ.sum())),
        ("average_participating", float((_q_participating() * C).sum() / _q_participating().sum())),
    ],
)
def test_quadratic_fixed_points(weighting, target):
    x = _trajectory(weighting, PQ)
    assert x[10_000:].mean() == pytest.approx(target, abs=0.06)


def test_grad_wrt_global_lr_is_finite_and_matches_finite_differences():
    alg = _alg("fedau", global_lr=0.5)
    rf = core.make_round_fn(alg, BERN)
    state = core.init_sim(alg, BERN, {"x": jnp.float32(0.0)}, QDATA, np.ones(4, np.float32), jax.random.key(0))

    def final_x(lr):
        s = state._replace(server={**state.server, "global_lr": lr})
        return core.simulate(rf, s, QDATA, jax.random.key(1), num_rounds=3)[0].server["params"]["x"]

    vg = jax.jit(jax.value_and_grad(final_x))
    g = vg(jnp.float32(0.5))[1]
    fd = (vg(jnp.float32(0.51))[0] - vg(jnp.float32(0.49))[0]) / 0.02
    assert np.isfinite(g) and g != 0 and float(g) == pytest.approx(float(fd), rel=1e-2)


def test_memory_baselines_directly():
    table = {"w": jnp.arange(6.0).reshape(3, 2)}
    deltas = {"w": jnp.ones((3, 2))}
    active = jnp.array([True, False, True])
    v, t = fedau.fedvarp_aggregate(table, deltas, active)
    # mean over S of (Δ - y) = mean([1-0, 1-1], [1-4, 1-5]) = [-1, -2]; + mean_all(y) = [2, 3]
    np.testing.assert_allclose(v["w"], [1.0, 1.0])
    np.testing.assert_allclose(t["w"], [[1, 1], [2, 3], [1, 1]])
    v, t = fedau.mifa_aggregate(table, deltas, active)
    np.testing.assert_allclose(v["w"], [4 / 3, 5 / 3])
    v, _ = fedau.fedvarp_aggregate(table, deltas, jnp.zeros(3, bool))
    np.testing.assert_allclose(v["w"], 0.0)  # no participant: no update
    w, z = fedau.aggregation_weights("known_prob", active, probs=jnp.array([0.5, 0.0, 0.25]))
    np.testing.assert_allclose(w, [2, 0, 4]) and float(z) == 3.0
    w, z = fedau.aggregation_weights("average_participating", active)
    assert float(z) == 2.0
    assert fedau.memory_floats("fedau", table, 10) == 30 and fedau.memory_floats("mifa", table, 10) == 60


def test_bad_inputs():
    with pytest.raises(ValueError, match="cutoff: expected a value in"):
        _alg("fedau", cutoff=0)
    with pytest.raises(ValueError, match="cutoff: expected a positive int"):
        fedau.update_weights(fedau.init_weights(2), jnp.ones(2, bool), cutoff=2.5)
    with pytest.raises(ValueError, match="weighting: expected one of"):
        _alg("fedprox")
    with pytest.raises(ValueError, match="probs: weighting='known_prob' needs"):
        _alg("known_prob", probs=None)
    with pytest.raises(ValueError, match=r"probs: expected values in \[0, 1\]"):
        _alg("known_prob", probs=np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"probs: expected participation probabilities in \(0, 1\] on clients"):
        fedau.make_algorithm(_qloss, weighting="known_prob", local_lr=0.1, local_steps=1, batch_size=1,
                             probs=np.array([0.5, 0.0]), count=np.array([3, 2]))  # fmt: skip
    _alg("known_prob", probs=np.array([0.5, 0.0]))  # p = 0 is a client that never participates (empty)
    with pytest.raises(ValueError, match=r"probs: expected participation probabilities in \[0, 1\], > 0 on active"):
        fedau.aggregation_weights("known_prob", jnp.array([True, True]), probs=jnp.array([0.5, 0.0]))
    with pytest.raises(ValueError, match=r"p: expected participation probabilities in \(0, 1\], got 0.0"):
        fedau.expected_interval(jnp.array([0.5, 0.0]))
    with pytest.raises(ValueError, match="probs: contains 1 non-finite"):
        _alg("known_prob", probs=np.array([0.5, np.nan]))
    with pytest.raises(ValueError, match="global_lr"):
        _alg("fedau", global_lr=0.0)
    with pytest.raises(ValueError, match="active: expected shape"):
        fedau.update_weights(fedau.init_weights(3), jnp.ones(2, bool))
    with pytest.raises(ValueError, match="active: expected a bool array"):
        fedau.update_weights(fedau.init_weights(2), jnp.ones(2))
    with pytest.raises(ValueError, match=r"deltas\['w'\]: expected leading dim 3"):
        fedau.mifa_aggregate({"w": jnp.zeros((3, 2))}, {"w": jnp.zeros((2, 2))}, jnp.ones(3, bool))
    with pytest.raises(ValueError, match="fedau_weights: required"):
        fedau.aggregation_weights("fedau", jnp.ones(3, bool))


def test_known_prob_builds_and_runs_with_an_empty_client():
    """probs_from_multiplier gives p = 0 to an empty client; known_prob must accept it and weight it 0
    (1/p = inf there used to turn 0 * inf into NaN in the round's sum)."""
    hist = np.array([[1, 0], [0, 1], [0, 0], [1, 0]])  # client 2 is empty
    probs = core.probs_from_multiplier(hist, np.array([0.5, 0.5]), p_mean=0.5, p_min=0.1)
    assert probs[2] == 0.0 and (probs[[0, 1, 3]] > 0).all()
    data = core.federated_data(C[:, None], np.arange(4), np.array([[0], [1], [0], [3]]), np.array([1, 1, 0, 1]),
                               C[:1, None], np.zeros(1, int), num_classes=4)  # fmt: skip
    alg = fedau.make_algorithm(_qloss, weighting="known_prob", local_lr=0.1, local_steps=1, batch_size=1,
                               probs=probs, count=np.asarray(data.count))  # fmt: skip
    state = core.init_sim(alg, BERN, {"x": jnp.float32(0.0)}, data, probs, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(state.clients["inv_p"]) == 0, [False, False, True, False])
    state, _, _ = core.simulate(core.make_round_fn(alg, BERN), state, data, jax.random.key(1), num_rounds=5)
    assert np.isfinite(float(state.server["params"]["x"]))
    w, _ = fedau.aggregation_weights("known_prob", jnp.array([True, True, False, False]), probs=probs)
    np.testing.assert_allclose(w, [1 / probs[0], 1 / probs[1], 0.0, 0.0], rtol=1e-6)
