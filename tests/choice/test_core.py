"""zoo.choice.core against scipy / brute-force references and the defining properties of each rule."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as ss

from zoo.choice import core

RNG = np.random.default_rng(0)


N, T = 6, 4  # one shape for most tests: one compile per function


def _ties_table(n=N, t=T, levels=4, rng=RNG):
    return rng.integers(0, levels, (n, t)).astype(np.float32)


# ----------------------------------------------------------------------------- ranks / orders


@pytest.mark.parametrize("ties", core.TIES)
def test_rank_data_matches_scipy_with_ties_and_batch(ties):
    x = RNG.integers(0, 4, (3, 9)).astype(np.float32)
    np.testing.assert_allclose(core.rank_data(x, ties=ties), ss.rankdata(x, method=ties, axis=-1))


def test_rank_data_mask_permutation_and_dtype():
    x = RNG.integers(0, 5, (3, 9)).astype(np.float32)
    mask = RNG.random((3, 9)) < 0.7
    r = np.asarray(core.rank_data(x, mask=mask))
    assert np.isnan(r[~mask]).all()
    for i in range(3):
        np.testing.assert_allclose(r[i][mask[i]], ss.rankdata(x[i][mask[i]]))
    p = RNG.permutation(9)
    np.testing.assert_allclose(core.rank_data(x[:, p]), np.asarray(core.rank_data(x))[:, p])
    ri = core.rank_data(np.array([3, 1, 2]))  # int input -> JAX default float
    assert ri.dtype == jnp.zeros(()).dtype and np.allclose(ri, [3, 1, 2])
    # NaN under jit gives NaN at that entry only; eagerly it raises
    out = jax.jit(lambda v: core.rank_data(v))(jnp.array([1.0, jnp.nan, 0.0]))
    out = np.asarray(out)
    assert np.isnan(out[1]) and np.allclose(out[[0, 2]], [2, 1])


def test_orders_positions_ranks_roundtrip():
    x = np.array([0.3, 2.0, 2.0, -1.0, 5.0, 0.0], np.float32)
    o = np.asarray(core.scores_to_order(x))
    np.testing.assert_array_equal(o, [4, 1, 2, 0, 5, 3])  # tie 1 vs 2: lower index first
    pos = np.asarray(core.invert_permutation(o))
    np.testing.assert_array_equal(o[pos], np.arange(6))
    np.testing.assert_array_equal(core.invert_permutation(pos), o)
    y = RNG.permutation(6).astype(np.float32)  # no ties: ranks of the order = rank_data
    np.testing.assert_allclose(core.order_to_ranks(core.scores_to_order(y)), ss.rankdata(y))


# ----------------------------------------------------------------------------- Borda / pairwise


def _borda_ref(S, mask=None):
    n, t = S.shape
    mask = np.ones_like(S, bool) if mask is None else mask
    B = np.zeros(n)
    for j in range(t):
        m = mask[:, j]
        if not m.any():
            continue
        col = np.full(n, (m.sum() + 1) / 2)
        col[m] = ss.rankdata(S[m, j])
        B += col
    return B


def test_borda_matches_reference_and_mask():
    S = _ties_table()
    np.testing.assert_allclose(core.borda_count(S), _borda_ref(S))
    mask = RNG.random(S.shape) < 0.7
    mask[:, 1] = False
    with pytest.warns(UserWarning, match="no observed score"):
        B = core.borda_count(S, mask=mask)
    np.testing.assert_allclose(B, _borda_ref(S, mask))
    np.testing.assert_allclose(core.borda_count(S, ties="min"),
                               sum(ss.rankdata(S[:, j], method="min") for j in range(S.shape[1])))


def test_borda_invariances_and_unanimity():
    S = RNG.normal(size=(N, T)).astype(np.float32)
    S2 = S.copy()
    S2[:, 2] = 1000 * S2[:, 2] ** 3 + 7  # strictly increasing map of one column
    np.testing.assert_allclose(core.borda_count(S2), core.borda_count(S))
    p = RNG.permutation(T)
    np.testing.assert_allclose(core.borda_count(S[:, p]), core.borda_count(S))  # neutrality in tasks
    q = RNG.permutation(N)
    np.testing.assert_allclose(core.borda_count(S[q]), np.asarray(core.borda_count(S))[q])
    U = np.repeat(RNG.normal(size=(N, 1)), T, 1).astype(np.float32)  # unanimous columns
    np.testing.assert_array_equal(core.scores_to_order(core.borda_count(U)), core.scores_to_order(U[:, 0]))
    np.testing.assert_array_equal(core.kemeny_exact(core.pairwise_preferences(U)), core.scores_to_order(U[:, 0]))


def test_pairwise_preferences_matches_loops():
    S = _ties_table()
    n, t = S.shape
    ref = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                ref[i, j] = sum((S[i, c] > S[j, c]) + 0.5 * (S[i, c] == S[j, c]) for c in range(t))
    W = np.asarray(core.pairwise_preferences(S))
    np.testing.assert_allclose(W, ref)
    np.testing.assert_allclose((W + W.T)[~np.eye(n, dtype=bool)], t)
    mask = RNG.random(S.shape) < 0.6
    Wm = np.asarray(core.pairwise_preferences(S, mask=mask))
    both = mask[:, None, :] & mask[None, :, :]
    np.testing.assert_allclose((Wm + Wm.T)[~np.eye(n, dtype=bool)], both.sum(-1)[~np.eye(n, dtype=bool)])


def test_vmap_and_jit_of_borda():
    batch = RNG.normal(size=(4, N, T)).astype(np.float32)
    out = jax.vmap(core.borda_count)(batch)
    np.testing.assert_allclose(out, np.stack([_borda_ref(b) for b in batch]))
    np.testing.assert_allclose(jax.jit(core.borda_count)(batch[0]), out[0])


# ----------------------------------------------------------------------------- agreement measures


def test_kendall_tau_b_matches_scipy_with_ties_and_mask():
    X = RNG.integers(0, 3, (5, 9)).astype(np.float32)
    Y = RNG.integers(0, 4, (5, 9)).astype(np.float32)
    Y[4] = 1.0  # constant -> NaN
    ref = [ss.kendalltau(a, b).statistic for a, b in zip(X, Y)]
    np.testing.assert_allclose(core.kendall_tau_b(X, Y), ref, atol=1e-6)
    m = RNG.random((5, 9)) < 0.7
    ref = [ss.kendalltau(a[k], b[k]).statistic for a, b, k in zip(X, Y, m)]
    np.testing.assert_allclose(core.kendall_tau_b(X, Y, mask=m), ref, atol=1e-6)


def test_kendall_distance_matches_official_loop():
    def loop(a, b):  # the official utils.kendallTau
        return sum((a[i] - a[j]) * (b[i] - b[j]) < 0 for i, j in itertools.combinations(range(len(a)), 2))

    a, b = RNG.integers(0, 4, (2, N)).astype(np.float32)
    assert int(core.kendall_distance(a, b)) == loop(a, b)
    r = np.arange(N, dtype=np.float32)
    assert int(core.kendall_distance(r, r[::-1].copy())) == N * (N - 1) // 2
    assert float(core.kendall_distance(r, r[::-1].copy(), normalized=True)) == 1.0


def test_topk_overlap():
    a, b = RNG.normal(size=(2, N)).astype(np.float32)
    for k in (3, N):
        ref = len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k]))
        assert int(core.topk_overlap(a, b, k)) == ref


# ----------------------------------------------------------------------------- Kemeny


def _random_W(n, t, rng):
    S = rng.normal(size=(n, t))
    return np.asarray(core.pairwise_preferences(S.astype(np.float32))), S


def test_kemeny_exact_equals_brute_force():
    rng = np.random.default_rng(1)
    for case in range(50):
        n = 2 + case % 6
        W = rng.integers(0, 4, (n, n)).astype(float)  # many ties between optimal orders
        o = core.kemeny_exact(W)
        ob = core.kemeny_brute_force(W)
        np.testing.assert_array_equal(o, ob)
    # all-equal W: every order is optimal -> the lexicographically smallest (identity)
    np.testing.assert_array_equal(core.kemeny_exact(np.ones((5, 5))), np.arange(5))


def test_kemeny_cost_is_sum_of_kendall_distances_and_linear():
    rng = np.random.default_rng(2)
    W, S = _random_W(N, T, rng)
    o = rng.permutation(N)
    r = core.order_to_ranks(o)
    ref = sum(int(core.kendall_distance(r, S[:, t].astype(np.float32))) for t in range(T))
    assert float(core.kemeny_cost(o, W)) == ref
    g = jax.grad(lambda w: core.kemeny_cost(jnp.asarray(o), w))(jnp.asarray(W))
    pos = np.argsort(o)
    np.testing.assert_array_equal(g, (pos[None, :] < pos[:, None]).astype(float))  # g[b, a] = 1[a before b]


def test_kemeny_condorcet_borda_bounds_and_local_search():
    rng = np.random.default_rng(3)
    found = 0
    for _ in range(20):
        W, S = _random_W(N, T + 1, rng)
        ko = core.kemeny_exact(W)
        cw = int(core.condorcet_winner(W))
        beats = (W > W.T).sum(1) == N - 1
        assert cw == (int(np.flatnonzero(beats)[0]) if beats.any() else -1)
        if cw >= 0:
            found += 1
            assert ko[0] == cw
        bo = core.scores_to_order(core.borda_count(S.astype(np.float32)))
        ck, cb = float(core.kemeny_cost(ko, W)), float(core.kemeny_cost(bo, W))
        ls = core.kemeny_local_search(W, bo)
        cl = float(core.kemeny_cost(ls, W))
        assert ck <= cl <= cb <= 5 * ck + 1e-9
        ls = np.asarray(ls)
        assert all(W[ls[k + 1], ls[k]] <= W[ls[k], ls[k + 1]] for k in range(N - 1))  # locally optimal
    assert found >= 5


def test_sample_plackett_luce_first_place_frequencies():
    logw = jnp.log(jnp.array([4.0, 2.0, 1.0, 1.0]))
    o = np.asarray(core.sample_plackett_luce(jax.random.key(0, impl="rbg"), logw, 4000))
    assert (np.sort(o, 1) == np.arange(4)).all()
    freq = np.bincount(o[:, 0], minlength=4) / 4000
    np.testing.assert_allclose(freq, [0.5, 0.25, 0.125, 0.125], atol=0.03)
    # second place given item 0 first: w_j / (w - w_0)
    sec = np.bincount(o[o[:, 0] == 0, 1], minlength=4) / (o[:, 0] == 0).sum()
    np.testing.assert_allclose(sec, [0, 0.5, 0.25, 0.25], atol=0.04)
