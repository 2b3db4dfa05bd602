"""zoo.choice.system_ranking against numpy/scipy loops and the paper's defining properties."""

import jax
import numpy as np
import pytest
import scipy.stats as ss

from zoo.choice import core
from zoo.choice import system_ranking as sr

N, T, K = 6, 3, 5
RNG = np.random.default_rng(0)
KEY = jax.random.key(0, impl="rbg")  # rbg keys: a third of threefry's CPU compile time


def _orders(key, reps, n):  # the curves' random orders: argsort of iid uniforms
    return np.argsort(np.asarray(jax.random.uniform(key, (reps, n))), axis=-1)


@pytest.fixture(scope="module")
def pl_table():
    """One Plackett–Luce table (phi = 1), shared by the generator and pipeline tests (one compile)."""
    return np.asarray(sr.plackett_luce_scores(KEY, N, 600, 1.0))


def _two_level_ref(S, mask):
    n, t, _ = S.shape
    B = np.zeros(n)
    for j in range(t):
        ks = np.flatnonzero(mask[j])
        if ks.size:
            B += ss.rankdata(sum(ss.rankdata(S[:, j, k]) for k in ks))
    return B


def _one_level_ref(S, mask):
    return sum(ss.rankdata(S[:, j, k]) for j in range(S.shape[1]) for k in range(S.shape[2]) if mask[j, k])


def test_mean_aggregate_and_scale_sensitivity():
    S = RNG.normal(size=(N, T)).astype(np.float32)
    mask = RNG.random((N, T)) < 0.7
    mask[:, 0] = True
    np.testing.assert_allclose(sr.mean_aggregate(S, mask=mask), [S[i, mask[i]].mean() for i in range(N)], rtol=1e-6)
    # the motivating example: one column at a huge scale dictates the mean, not Borda
    S2 = S.copy()
    S2[:, 1] *= 1000.0
    np.testing.assert_array_equal(core.scores_to_order(sr.mean_aggregate(S2)), core.scores_to_order(S2[:, 1]))
    np.testing.assert_allclose(core.borda_count(S2), core.borda_count(S))


def test_instance_level_against_loops():
    S = RNG.integers(0, 3, (N, T, K)).astype(np.float32)  # ties
    mask = np.ones((T, K), bool)
    mask[1, 2:] = False  # ragged: task 1 has 2 instances
    np.testing.assert_allclose(sr.one_level_borda(S, mask), _one_level_ref(S, mask))
    np.testing.assert_allclose(sr.two_level_borda(S, mask), _two_level_ref(S, mask))
    ref = np.mean([S[:, j, mask[j]].mean(1) for j in range(T)], 0)
    np.testing.assert_allclose(sr.mean_aggregate_instances(S, mask), ref, rtol=1e-6)


def test_one_vs_two_level_properties():
    S = RNG.normal(size=(N, T, K)).astype(np.float32)
    same = np.repeat(S[:, :, :1], K, 2)  # identical per-instance votes, equal counts
    np.testing.assert_array_equal(core.scores_to_order(sr.one_level_borda(same)),
                                  core.scores_to_order(sr.two_level_borda(same)))
    # duplicating every instance of task 0 (K=2 -> K=4 via the mask): two-level unchanged, one-level not
    base = np.zeros((N, T, K), np.float32)
    rev = np.arange(N, dtype=np.float32)  # reversed truth (system N-1 best)
    base[:, 0, :] = rev[:, None]
    base[:, 1:, :] = -rev[:, None, None]
    m1 = np.zeros((T, K), bool)
    m1[0, :1] = m1[1:, :1] = True
    m2 = m1.copy()
    m2[0, :] = True  # task 0 now casts K instance votes
    np.testing.assert_allclose(sr.two_level_borda(base, m1), sr.two_level_borda(base, m2))
    assert float(sr.ranking_error(sr.two_level_borda(base, m2))) == 0.0
    assert float(sr.ranking_error(sr.one_level_borda(base, m2))) == 1.0


def test_kemeny_ranking_exact_and_local():
    S = RNG.normal(size=(N, T + 2))
    W = np.asarray(core.pairwise_preferences(S.astype(np.float32)))
    np.testing.assert_array_equal(sr.kemeny_ranking(S), core.kemeny_brute_force(W))
    lo = sr.kemeny_ranking(S, method="local")
    assert float(core.kemeny_cost(lo, W)) >= float(core.kemeny_cost(sr.kemeny_ranking(S), W))


def test_ranking_error_and_agreement():
    x = -np.arange(N, dtype=np.float32)
    assert float(sr.ranking_error(x)) == 0.0 and float(sr.ranking_error(-x)) == 1.0
    assert float(sr.ranking_error(np.zeros(N, np.float32))) == 0.5  # all tied: half of every pair
    a = sr.agreement(x, x[::-1].copy(), ks=(1, 3, 99))
    assert set(a) == {"tau_b", "top1", "top3"} and float(a["tau_b"]) == -1.0 and int(a["top3"]) == 0


def _curve_ref(key, S, n_perms, agg):
    n, t = S.shape
    aggf = (lambda X: X.mean(1)) if agg == "mean" else (lambda X: sum(ss.rankdata(c) for c in X.T))
    full = aggf(S)
    out = np.zeros((n_perms, t))
    for i, perm in enumerate(_orders(key, n_perms, t)):
        for j in range(1, t + 1):
            out[i, j - 1] = ss.kendalltau(aggf(S[:, perm[:j]]), full).statistic
    return out


def test_task_removal_curve_matches_loop():  # "mean" is checked in the float64 test
    S = RNG.integers(0, 4, (N, N)).astype(np.float32)
    c = np.asarray(sr.task_removal_curve(KEY, S, 2, "borda"))
    np.testing.assert_allclose(c, _curve_ref(KEY, S, 2, "borda"), atol=1e-5)
    assert np.allclose(c[:, -1], 1.0)


def test_system_addition_curve():
    S = RNG.normal(size=(N, N)).astype(np.float32)
    np.testing.assert_allclose(sr.system_addition_curve(KEY, S, 2, "mean"), 1.0)  # the mean is IIA
    c = np.asarray(sr.system_addition_curve(KEY, S, 2, "borda"))
    full = sum(ss.rankdata(col) for col in S.T)
    ref = np.zeros_like(c)
    for i, perm in enumerate(_orders(KEY, 2, N)):
        for m in range(2, N + 1):
            sub = perm[:m]
            ref[i, m - 2] = ss.kendalltau(sum(ss.rankdata(col) for col in S[sub].T), full[sub]).statistic
    np.testing.assert_allclose(c, ref, atol=1e-5)  # NaN (a tied pair) where scipy says NaN


def test_generators_corrupt_and_drop(pl_table):
    freq = np.bincount(pl_table.argmax(0), minlength=N) / pl_table.shape[1]  # column winners ~ PL first place
    w = np.exp(-np.arange(N))
    np.testing.assert_allclose(freq, w / w.sum(), atol=0.05)
    S = pl_table[:, : T + 1]
    C = np.asarray(sr.corrupt(S, KEY, 2))
    changed = ~np.isclose(C, np.asarray(S)).all(0)
    assert changed.sum() == 2 and np.allclose(C[:, changed], 1000.0 * np.arange(N)[:, None])
    assert float(sr.ranking_error(sr.mean_aggregate(C))) == 1.0
    Cr = np.asarray(sr.corrupt(S, KEY, 1, mode="random", scale=2.0))
    col = Cr[:, ~np.isclose(Cr, np.asarray(S)).all(0)][:, 0]
    np.testing.assert_array_equal(np.sort(col), 2.0 * np.arange(N))
    m = np.asarray(sr.drop_scores(KEY, S, 0.9))
    assert m.any(1).all() and 0.05 < m.mean() < 0.5
    # the instance generator is the same Gumbel-max construction, one more axis
    I = np.asarray(sr.plackett_luce_instances(KEY, N, 1, 600, 1.0))
    np.testing.assert_allclose(I[:, 0], pl_table)


def test_vmapped_pipeline_and_jit(pl_table):
    tables = pl_table[:, :60].reshape(N, 6, 10).transpose(1, 0, 2).copy()
    tables[:, :, 0] = 1000.0 * np.arange(N)  # one corrupted task per table

    def errors(S):
        return sr.ranking_error(sr.mean_aggregate(S)), sr.ranking_error(core.borda_count(S))

    em, eb = jax.jit(jax.vmap(errors))(tables)
    np.testing.assert_allclose(eb, [float(errors(t)[1]) for t in tables], rtol=1e-6)
    assert np.allclose(em, 1.0) and float(eb.mean()) < 0.5
