"""Float64 end to end for zoo.rl.action_grouping: planning, lifting and policy evaluation vs numpy float64."""

import jax
import numpy as np

from zoo.rl import action_grouping as ag


def test_float64_planning_and_lifting_match_numpy():
    with jax.enable_x64(True):
        mdp = ag.make_hierarchical_mdp(jax.random.key(0), 4, 3, dtype=np.float64)
        assert mdp.P.dtype == np.float64
        P, R = np.asarray(mdp.P), np.asarray(mdp.R)
        g = ag.tree_grouping(8, 2)
        lg = ag.lift(mdp, g)
        M = np.eye(2)[np.asarray(g.assign)]
        np.testing.assert_allclose(lg.P, np.einsum("sat,ah->sht", P, M) / 4, rtol=0, atol=1e-12)
        V, pi = ag.policy_iteration(mdp)
        assert V.dtype == np.float64
        idx = np.arange(4)
        ref = np.linalg.solve(np.eye(4) - 0.9 * P[idx, np.asarray(pi)], R[idx, np.asarray(pi)])
        np.testing.assert_allclose(V, ref, rtol=0, atol=1e-10)
        Q = R + 0.9 * P @ ref  # optimality: the Bellman residual vanishes
        np.testing.assert_allclose(Q.max(1), ref, rtol=0, atol=1e-10)
        flat = ag.flat_policy(np.array([0, 1, 1, 0]), g, np.ones((4, 8)))
        Ppi = np.einsum("sa,sat->st", np.asarray(flat), P)
        np.testing.assert_allclose(ag.policy_evaluation(mdp, flat),
                                   np.linalg.solve(np.eye(4) - 0.9 * Ppi, (np.asarray(flat) * R).sum(1)), atol=1e-10)
        VT, _ = ag.value_iteration(mdp, 400)
        np.testing.assert_allclose(VT, ref, rtol=0, atol=1e-10)
