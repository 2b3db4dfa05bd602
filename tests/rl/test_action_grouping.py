"""zoo.rl.action_grouping against numpy references and its defining properties (spec §6)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.rl import action_grouping as ag

S, DEPTH, A = 5, 3, 8
GS, BUDGETS = (1, 2, 4, 8), (40, 640, 10240)


@pytest.fixture(scope="module")
def mdp():
    return ag.make_hierarchical_mdp(jax.random.key(3), S, DEPTH)


@pytest.fixture(scope="module")
def sweep(mdp):
    """One compiled sweep (3 budgets x 4 tree cuts), shared by several tests."""
    return jax.tree.map(np.asarray, ag.sample_budget_sweep(jax.random.key(7), mdp, GS, BUDGETS))


def _np_optimal(P, R, gamma):
    """Numpy reference: value iteration to convergence, then the exact value of its greedy policy."""
    V = np.zeros(P.shape[0])
    for _ in range(2000):
        V = (R + gamma * P @ V).max(1)
    pi = (R + gamma * P @ V).argmax(1)
    idx = np.arange(P.shape[0])
    return np.linalg.solve(np.eye(P.shape[0]) - gamma * P[idx, pi], R[idx, pi])


def test_generator_is_a_valid_mdp_with_tree_structure(mdp):
    P, R = np.asarray(mdp.P), np.asarray(mdp.R)
    assert P.shape == (S, A, S) and R.shape == (S, A)
    np.testing.assert_allclose(P.sum(-1), 1, atol=1e-5)
    assert (R > 0).all() and (R < 1).all()
    ag.check_mdp(mdp)
    # heterogeneity of nested tree cuts: 0 at G = A, non-increasing in G
    eps = [float(ag.heterogeneity(mdp, ag.tree_grouping(A, G))["eps_P"]) for G in GS]
    assert eps[-1] == pytest.approx(0, abs=1e-6)
    assert all(b <= a + 1e-6 for a, b in zip(eps, eps[1:]))


def test_closed_form_toy():
    # 2 absorbing states, rewards [1, .6, .1, .1]: V* = 10, V*_g = 8 (G = 2), 4.5 (G = 1)
    P = jnp.broadcast_to(jnp.eye(2)[:, None, :], (2, 4, 2))
    R = jnp.tile(jnp.array([1.0, 0.6, 0.1, 0.1]), (2, 1))
    m = ag.TabularMDP(P=P, R=R, gamma=0.9)
    V, pi = ag.policy_iteration(m)
    np.testing.assert_allclose(V, 10, rtol=1e-5)
    assert (np.asarray(pi) == 0).all()
    for G, want in ((2, 8.0), (1, 4.5)):
        Vg, _ = ag.policy_iteration(ag.lift(m, ag.tree_grouping(4, G)))
        np.testing.assert_allclose(Vg, want, rtol=1e-5)


def test_lift_identity_average_and_decomposition(mdp):
    same = ag.lift(mdp, ag.tree_grouping(A, A))
    np.testing.assert_allclose(same.P, mdp.P, atol=1e-6)
    np.testing.assert_allclose(same.R, mdp.R, atol=1e-6)
    one = ag.lift(mdp, ag.tree_grouping(A, 1))
    np.testing.assert_allclose(one.P[:, 0], np.asarray(mdp.P).mean(1), atol=1e-6)
    g = ag.tree_grouping(A, 2)
    lg = ag.lift(mdp, g)
    np.testing.assert_allclose(lg.P.sum(-1), 1, atol=1e-5)
    assert float(lg.R.min()) >= float(mdp.R.min()) - 1e-6 and float(lg.R.max()) <= float(mdp.R.max()) + 1e-6
    # non-uniform mu: Σ_{a∈h} μn(a|s) Δ(.|s,a) = 0
    mu = jax.random.uniform(jax.random.key(1), (S, A)) + 0.1
    dP, dR = ag.decompose(mdp, g, mu)
    M = np.asarray(jax.nn.one_hot(g.assign, 2))
    mun = np.asarray(mu) / (np.asarray(mu) @ M @ M.T)
    np.testing.assert_allclose(np.einsum("sa,sat,ah->sht", mun, dP, M), 0, atol=1e-6)
    np.testing.assert_allclose((mun * np.asarray(dR)) @ M, 0, atol=1e-6)


def test_lifting_identity_values_coincide(mdp):
    # a deterministic high-level policy evaluated in M_g equals its flat policy π_H∘μ evaluated in M
    g = ag.tree_grouping(A, 4)
    mu = jax.random.uniform(jax.random.key(2), (S, A)) + 0.1
    h = jnp.array([0, 3, 1, 2, 3])
    flat = ag.flat_policy(h, g, mu)
    np.testing.assert_allclose(flat.sum(-1), 1, atol=1e-6)
    v_flat = ag.policy_evaluation(mdp, flat)
    v_lift = ag.policy_evaluation(ag.lift(mdp, g, mu), jax.nn.one_hot(h, 4))
    np.testing.assert_allclose(v_flat, v_lift, atol=1e-5)


def test_planning_matches_numpy(mdp):
    P, R = np.asarray(mdp.P, np.float64), np.asarray(mdp.R, np.float64)
    ref = _np_optimal(P, R, 0.9)
    V, pi = ag.policy_iteration(mdp)
    np.testing.assert_allclose(V, ref, atol=1e-4)
    for T in (0, 5, 30):
        VT, Q = ag.value_iteration(mdp, T)
        assert np.abs(np.asarray(VT) - ref).max() <= 0.9 ** T * 1.0 / 0.1 + 1e-5
        assert Q.shape == (S, A)
    VT, _ = ag.value_iteration(mdp, 300)
    np.testing.assert_allclose(VT, ref, atol=1e-4)
    # jit and vmap over MDPs
    Vs, _ = jax.jit(jax.vmap(lambda m: ag.policy_iteration(m)))(jax.tree.map(lambda x: jnp.stack([x, x]), mdp))
    np.testing.assert_allclose(Vs[1], ref, atol=1e-4)


def test_sample_lifted_model_is_an_unbiased_empirical_model(mdp):
    g = ag.tree_grouping(A, 2)
    f = jax.jit(jax.vmap(lambda k: ag.sample_lifted_model(k, mdp, g, 50, reward_noise=0.0)))
    est = f(jax.random.split(jax.random.key(0), 400))
    true = ag.lift(mdp, g)
    np.testing.assert_allclose(est.P.sum(-1), 1, atol=1e-5)
    c = np.asarray(est.P) * 50
    assert np.abs(c - np.round(c)).max() < 1e-3  # counts / N
    # mean of 400 x 50 draws per (s, h) within 5 s.e. of P_g and R_g
    se = np.sqrt(np.asarray(true.P) * (1 - np.asarray(true.P)) / 20000) + 1e-4
    assert (np.abs(np.asarray(est.P).mean(0) - np.asarray(true.P)) < 5 * se).all()
    rs = np.asarray(est.R)
    assert (np.abs(rs.mean(0) - np.asarray(true.R)) < 5 * rs.std(0) / np.sqrt(400) + 1e-4).all()


def test_sweep_shapes_loss_split_and_estimation_rate(mdp, sweep):
    assert sweep["loss_mean"].shape == (len(BUDGETS), len(GS))
    np.testing.assert_array_equal(sweep["N"], [[max(1, B // (S * G)) for G in GS] for B in BUDGETS])
    np.testing.assert_allclose(sweep["loss_mean"], sweep["approx_mean"] + sweep["estim_mean"], atol=1e-5)
    assert (sweep["loss_mean"] >= -1e-5).all() and (sweep["approx_mean"] >= -1e-5).all()
    # the approximation part is deterministic (no sampling), V* - V*_g, and 0 at G = A
    assert np.ptp(sweep["approx_mean"], axis=0).max() < 1e-5 and abs(sweep["approx_mean"][0, -1]) < 1e-5
    ref = [float((_np_optimal(*(np.asarray(x, np.float64) for x in (mdp.P, mdp.R)), 0.9)
                  - _np_optimal(*(np.asarray(x, np.float64) for x in (lg.P, lg.R)), 0.9)).mean())
           for lg in (ag.lift(mdp, ag.tree_grouping(A, G)) for G in GS)]
    np.testing.assert_allclose(sweep["approx_mean"][0], ref, atol=1e-4)
    # estimation error of P̂_g shrinks like N^(-1/2): log-log slope over N = 8 -> 2048 (G = 1)
    N, err = sweep["N"][:, 0], sweep["est_err_P"][:, 0]
    slope = np.polyfit(np.log(N), np.log(err), 1)[0]
    assert -0.65 <= slope <= -0.35, slope


def test_bound_holds_and_selector_is_monotone(mdp, sweep):
    het = [ag.heterogeneity(mdp, ag.tree_grouping(A, G)) for G in GS]
    eP = jnp.array([float(h["eps_P"]) for h in het])
    eR = jnp.array([float(h["eps_R"]) for h in het])
    b = ag.loss_bound(eP, eR, S, jnp.array(GS), sweep["N"], gamma=0.9, r_max=1.0)
    assert (sweep["loss_inf"] <= b["total"]).all()
    assert (np.diff(np.asarray(b["A"][0])) <= 1e-6).all() and (np.diff(np.asarray(b["E"]), axis=1) > 0).all()
    picks = [int(ag.select_num_groups(eP, eR, GS, S=S, budget=B)["G"]) for B in (10, 10**3, 10**5, 10**7, 10**9)]
    assert picks == sorted(picks) and picks[0] == 1 and picks[-1] == A
    # O(T) decreases with T and vanishes for exact planning; the bound is differentiable in eps
    assert float(ag.loss_bound(0.1, 0.1, S, 2, 10, 5)["O"]) > float(ag.loss_bound(0.1, 0.1, S, 2, 10, 50)["O"]) > 0
    g = jax.grad(lambda e: ag.loss_bound(e, 0.1, S, 2, 10)["total"])(0.2)
    assert float(g) == pytest.approx(0.9 / 0.1 / 0.1, rel=1e-5)


def test_cluster_actions_recovers_the_tree_and_random_grouping_is_balanced(mdp):
    strong = ag.make_hierarchical_mdp(jax.random.key(5), S, DEPTH, sigma0=3.0, kappa=0.1, tau0=1.0, kappa_r=0.1)
    sig = ag.action_signatures(strong)
    assert sig.shape == (A, S * (S + 1))
    for G in (2, 4):
        got = np.asarray(ag.cluster_actions(sig, G).assign)
        np.testing.assert_array_equal(got, np.asarray(ag.tree_grouping(A, G).assign))
    r = ag.random_grouping(jax.random.key(0), A, 3)
    assert sorted(np.bincount(np.asarray(r.assign)).tolist()) == [2, 3, 3]
