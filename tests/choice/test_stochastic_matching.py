"""zoo.choice.stochastic_matching against independent references: a numpy brute-force clairvoyant
recursion, subset enumeration of the LPs, scipy's maximum bipartite matching, closed forms; plus the
chain OPT_GU <= B3 <= B1, reductions, invariances and the scan semantics."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.choice import stochastic_matching as sm

GREEDY = sm.AlgParams(kind="greedy")
SB = sm.AlgParams(kind="balance")
SB_INV = sm.AlgParams(kind="balance", psi="inverse", psi_param=2.0)
RANKING = sm.AlgParams(kind="ranking")
RANDOM = sm.AlgParams(kind="random")
SB_RT = sm.AlgParams(kind="balance", tie_break="random")
R = 2000  # one batch size everywhere: one compile of run_many per instance shape (3 x 6)


def _opt_reference(adj, p, w):
    """Clairvoyant optimum by plain recursion over (t, matched set) — independent of the jnp DP."""
    adj, p, w = np.asarray(adj), np.asarray(p, np.float64), np.asarray(w, np.float64)
    n, T = adj.shape

    @functools.lru_cache(maxsize=None)
    def V(t, M):
        if t == T:
            return 0.0
        best = V(t + 1, M)
        for u in range(n):
            if adj[u, t] and not (M >> u) & 1:
                best = max(best, p[u, t] * (w[u] + V(t + 1, M | (1 << u))) + (1 - p[u, t]) * V(t + 1, M))
        return best

    return V(0, 0)


@pytest.fixture(scope="module")
def tiny():
    """12 random instances with n_off = 3, 3 types x 2 copies (T = 6), r in [0.3, 1.5] (p in [0.15, 0.75])."""
    keys = jax.random.split(jax.random.PRNGKey(0), 12)
    batch = jax.vmap(lambda k: sm.make_random(k, 3, 3, 2, density=0.6))(keys)
    return batch, [jax.tree.map(lambda x: x[i], batch) for i in range(12)]


def test_h1_closed_form():
    inst = sm.make_instance(np.ones((1, 2), bool), 0.5)
    assert float(sm.clairvoyant_opt(inst)) == pytest.approx(0.75)
    assert sm.stochastic_config_lp(inst, "enumerate")[0] == pytest.approx(0.75)
    assert sm.config_lp(inst) == pytest.approx(1.0) and sm.budget_lp(inst) == pytest.approx(1.0)
    for alg in (GREEDY, SB, RANDOM):
        assert sm.exact_expected_value(inst, alg) == pytest.approx(0.75)


def test_chain_and_lp_methods_agree(tiny):
    _, insts = tiny
    for inst in insts:
        opt = float(sm.clairvoyant_opt(inst))
        assert opt == pytest.approx(_opt_reference(*inst), abs=1e-5)
        b3e = sm.stochastic_config_lp(inst, "enumerate")[0]
        b3c = sm.stochastic_config_lp(inst)[0]
        lo, hi, hist = sm.stochastic_config_lp(inst, "colgen", tol=1e-8, return_history=True)
        b1, b2 = sm.budget_lp(inst), sm.config_lp(inst)
        assert b3c == pytest.approx(b3e, abs=1e-7) and lo == pytest.approx(b3e, abs=1e-7)
        assert all(u >= b3e - 1e-7 for _, u in hist) and hi - lo <= 1e-8  # Lagrangian bound valid throughout
        assert opt <= b3e + 1e-5 and b3e <= b1 + 1e-7 and b2 <= b1 + 1e-7
        for alg in (GREEDY, SB):
            assert sm.exact_expected_value(inst, alg) <= opt + 1e-5


def test_simulation_matches_exact_value(tiny):
    _, insts = tiny
    inst = insts[1]
    for alg in (GREEDY, SB_RT, RANDOM):
        mean, se = sm.simulate_many(jax.random.PRNGKey(3), inst, alg, R)
        assert abs(mean - sm.exact_expected_value(inst, alg)) <= 4 * se + 1e-6


def test_sclp_pricing_matches_brute_force():
    rng = np.random.default_rng(1)
    T = 7
    p, adj, beta = rng.uniform(0.1, 0.9, T), rng.random(T) < 0.7, rng.uniform(0, 0.4, T)
    G, take = sm.sclp_pricing(jnp.asarray(p, jnp.float32), adj, 1.5, jnp.asarray(beta, jnp.float32))
    best = 0.0
    nb = np.flatnonzero(adj)
    for r in range(1, nb.size + 1):
        for S in itertools.combinations(nb, r):
            q = np.cumprod(np.r_[1.0, 1 - p[list(S)][:-1]])
            best = max(best, float(q @ (1.5 * p[list(S)] - beta[list(S)])))
    assert float(G) == pytest.approx(best, abs=1e-5)
    S = np.flatnonzero(np.asarray(take))
    q = np.cumprod(np.r_[1.0, 1 - p[S][:-1]]) if S.size else np.zeros(0)
    assert float(q @ (1.5 * p[S] - beta[S])) == pytest.approx(best, abs=1e-5)


def test_deterministic_reduction_p_equal_one():
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    rng = np.random.default_rng(2)
    for _ in range(4):
        adj = rng.random((3, 6)) < 0.5
        inst = sm.make_instance(adj, 1.0)
        mm = int((maximum_bipartite_matching(csr_matrix(adj.astype(int)), perm_type="column") >= 0).sum())
        assert float(sm.clairvoyant_opt(inst)) == pytest.approx(mm)
        for alg in (GREEDY, SB, RANKING):
            g = np.asarray(sm.run_many(jax.random.split(jax.random.PRNGKey(0), R), inst, alg)["gain"])
            assert g.min() >= mm / 2 and g.max() <= mm  # a maximal matching is a 1/2-approximation


def test_equal_p_balance_ignores_psi_and_single_vertex_formula():
    inst = sm.make_rev_ut(3, 2)  # equal p = 1/2 (same shape as `tiny`: no new compile)
    ks = jax.random.split(jax.random.PRNGKey(5), R)
    ca, cb = sm.run_many(ks, inst, SB)["choice"], sm.run_many(ks, inst, SB_INV)["choice"]
    np.testing.assert_array_equal(ca, cb)
    assert not np.array_equal(ca, sm.run_many(ks, inst, RANKING)["choice"])
    p = np.array([[0.3, 0.5, 0.2, 0.6]])
    one = sm.make_instance(np.ones((1, 4), bool), p)
    for alg in (GREEDY, SB, RANDOM):
        assert sm.exact_expected_value(one, alg) == pytest.approx(1 - np.prod(1 - p))


def test_monotone_and_relabelling_invariant(tiny):
    _, insts = tiny
    inst = insts[2]
    base = (float(sm.clairvoyant_opt(inst)), sm.stochastic_config_lp(inst)[0], sm.budget_lp(inst))
    more_p = sm.Instance(inst.adj, jnp.minimum(1.0, inst.p * 1.3), inst.w)
    adj2 = inst.adj.at[0].set(True)
    more_e = sm.Instance(adj2, jnp.where(adj2, jnp.where(inst.adj, inst.p, 0.3), 0), inst.w)
    for bigger in (more_p, more_e):
        assert float(sm.clairvoyant_opt(bigger)) >= base[0] - 1e-6
        assert sm.stochastic_config_lp(bigger)[0] >= base[1] - 1e-7
    sh = sm.shuffle_offline(jax.random.PRNGKey(9), inst)
    got = (float(sm.clairvoyant_opt(sh)), sm.stochastic_config_lp(sh)[0], sm.budget_lp(sh))
    np.testing.assert_allclose(got, base, atol=1e-6)


def test_scan_semantics_vmap_and_jit(tiny):
    batch, insts = tiny
    ks = jax.random.split(jax.random.PRNGKey(7), 12)
    out = jax.vmap(lambda k, i: sm.run_online(k, i, SB))(ks, batch)  # many instances x coin flips at once
    out = jax.tree.map(np.asarray, out)
    adjs, ps = np.asarray(batch.adj), np.asarray(batch.p)
    for r in range(12):
        ch, su = np.asarray(out["choice"][r]), np.asarray(out["success"][r])
        won = ch[su]
        assert len(set(won.tolist())) == won.size  # each vertex matched at most once
        for t in np.flatnonzero(su):
            assert ch[t] not in ch[t + 1:]  # a matched vertex is never attempted again
        p = ps[r]
        load = np.zeros(3)
        for t, u in enumerate(ch):
            if u >= 0:
                assert adjs[r, u, t]
                load[u] += p[u, t]
        np.testing.assert_allclose(out["load"][r], load, rtol=1e-5)
        g = float(out["gain"][r])
        assert g == su.sum() and g <= 3 and g <= float(out["attempts"][r])


    for r in (0, 1):  # the instance-vmapped runs equal the per-instance runs with the same key
        one = sm.run_many(jnp.tile(ks[r], (R, 1)), insts[r], SB)
        np.testing.assert_array_equal(np.asarray(one["choice"][0]), out["choice"][r])


def test_generators(tiny):
    ut, rev = sm.make_ut(3, 2), sm.make_rev_ut(3, 2)
    assert ut.adj.shape == (3, 6) and np.allclose(ut.p[ut.adj], 0.5)
    np.testing.assert_array_equal(np.asarray(ut.adj)[:, ::2], np.tril(np.ones((3, 3), bool)))
    i = np.arange(3)
    np.testing.assert_array_equal(np.asarray(rev.adj)[:, ::2], i[:, None] + i[None, :] <= 2)  # u <= n-1-j
    batch, _ = tiny
    adj = np.asarray(batch.adj)
    assert adj.reshape(12, 3, 3, 2).any(1).all()  # every type has a neighbour
    assert (adj[..., ::2] == adj[..., 1::2]).all()  # K = 2 consecutive copies of each type
    rs = np.asarray(batch.p)[adj] * 2
    assert rs.min() >= 0.3 - 1e-6 and rs.max() <= 1.5 + 1e-6


def test_competitive_ratios_on_rev_ut():
    res = sm.competitive_ratios(jax.random.PRNGKey(0), sm.make_rev_ut(3, 2), {"greedy": GREEDY, "sb": SB}, R)
    b = res["_benchmarks"]
    assert b["opt"] <= b["sclp"] + 1e-6 <= b["budget_lp"] + 2e-6
    assert res["sb"]["vs_sclp"] <= res["sb"]["vs_opt"] and 0.4 < res["sb"]["vs_sclp"] < 1.0
