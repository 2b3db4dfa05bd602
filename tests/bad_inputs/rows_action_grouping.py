"""Rows for zoo.rl.action_grouping (bad MDPs, groupings, budgets)."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.rl import action_grouping as ag

from ._row import rows

_key = jax.random.PRNGKey(0)
_P = jnp.full((2, 4, 2), 0.5)
_R = jnp.ones((2, 4)) * 0.5
MDP = ag.TabularMDP(P=_P, R=_R, gamma=0.9)
BAD_ROWS = ag.TabularMDP(P=_P.at[0, 0, 0].set(0.7), R=_R, gamma=0.9)
NEG = ag.TabularMDP(P=_P.at[0, 0].set(jnp.array([1.5, -0.5])), R=_R, gamma=0.9)
NANR = ag.TabularMDP(P=_P, R=_R.at[0, 0].set(jnp.nan), gamma=0.9)
GAMMA1 = ag.TabularMDP(P=_P, R=_R, gamma=1.0)
G2 = ag.Grouping(assign=jnp.array([0, 0, 1, 1], jnp.int32), num_groups=2)
EMPTY = ag.Grouping(assign=jnp.array([0, 0, 2, 2], jnp.int32), num_groups=3)
OUT = ag.Grouping(assign=jnp.array([0, 0, 1, 5], jnp.int32), num_groups=2)
M = "zoo.rl.action_grouping."

ROWS = [
    *rows(M + "check_mdp",
          ("rows not summing to 1", lambda: ag.check_mdp(BAD_ROWS), r"mdp\.P.*sum to 1"),
          ("negative", lambda: ag.check_mdp(NEG), r"mdp\.P.*non-negative"),
          ("NaN", lambda: ag.check_mdp(NANR), r"mdp\.R"),
          ("gamma = 1", lambda: ag.check_mdp(GAMMA1), r"mdp\.gamma"),
          ("wrong type", lambda: ag.check_mdp("mdp"), "mdp", TypeError)),
    *rows(M + "check_grouping",
          ("empty group", lambda: ag.check_grouping(EMPTY, 4), r"grouping\.assign.*no action"),
          ("out of range", lambda: ag.check_grouping(OUT, 4), r"grouping\.assign"),
          ("wrong length", lambda: ag.check_grouping(G2, 5), r"grouping\.assign")),
    *rows(M + "make_hierarchical_mdp",
          ("S < 1", lambda: ag.make_hierarchical_mdp(_key, 0, 2), "S"),
          ("gamma out of range", lambda: ag.make_hierarchical_mdp(_key, 3, 2, gamma=1.5), "gamma"),
          ("negative sigma0", lambda: ag.make_hierarchical_mdp(_key, 3, 2, sigma0=-1.0), "sigma0")),
    *rows(M + "tree_grouping",
          ("G not a power of 2", lambda: ag.tree_grouping(8, 3), "G"),
          ("G > A", lambda: ag.tree_grouping(4, 8), "G")),
    *rows(M + "random_grouping", ("G > A", lambda: ag.random_grouping(_key, 4, 5), "G")),
    *rows(M + "lift",
          ("bad rows", lambda: ag.lift(BAD_ROWS, G2), r"mdp\.P"),
          ("empty group", lambda: ag.lift(MDP, EMPTY), "grouping"),
          ("negative mu", lambda: ag.lift(MDP, G2, -jnp.ones((2, 4))), "mu")),
    *rows(M + "decompose", ("out of range", lambda: ag.decompose(MDP, OUT), "grouping")),
    *rows(M + "heterogeneity", ("NaN", lambda: ag.heterogeneity(NANR, G2), r"mdp\.R")),
    *rows(M + "value_iteration",
          ("T < 0", lambda: ag.value_iteration(MDP, -1), "num_iters"),
          ("wrong v0", lambda: ag.value_iteration(MDP, 3, jnp.zeros(5)), "v0")),
    *rows(M + "policy_iteration", ("gamma = 1", lambda: ag.policy_iteration(GAMMA1), "gamma")),
    *rows(M + "policy_evaluation",
          ("rows not summing to 1", lambda: ag.policy_evaluation(MDP, jnp.ones((2, 4))), "pi"),
          ("wrong shape", lambda: ag.policy_evaluation(MDP, jnp.ones((2, 3)) / 3), "pi")),
    *rows(M + "flat_policy",
          ("group id out of range", lambda: ag.flat_policy(jnp.array([0, 2]), G2), "h_star"),
          ("float ids", lambda: ag.flat_policy(jnp.array([0.0, 1.0]), G2), "h_star")),
    *rows(M + "sample_lifted_model",
          ("N < 1", lambda: ag.sample_lifted_model(_key, MDP, G2, 0), "n_per_pair"),
          ("negative noise", lambda: ag.sample_lifted_model(_key, MDP, G2, 2, reward_noise=-1.0), "reward_noise"),
          ("bad rows", lambda: ag.sample_lifted_model(_key, BAD_ROWS, G2, 2), r"mdp\.P")),
    *rows(M + "grouped_rl",
          ("N < 1", lambda: ag.grouped_rl(_key, MDP, G2, 0), "n_per_pair"),
          ("T < 0", lambda: ag.grouped_rl(_key, MDP, G2, 2, -1), "num_iters"),
          ("empty group", lambda: ag.grouped_rl(_key, MDP, EMPTY, 2), "grouping")),
    *rows(M + "loss_bound",
          ("N < 1", lambda: ag.loss_bound(0.1, 0.1, 2, 1, 0), "N"),
          ("negative eps", lambda: ag.loss_bound(-0.1, 0.1, 2, 1, 1), "eps_P"),
          ("gamma = 1", lambda: ag.loss_bound(0.1, 0.1, 2, 1, 1, gamma=1.0), "gamma"),
          ("T < 0", lambda: ag.loss_bound(0.1, 0.1, 2, 1, 1, -2), "T")),
    *rows(M + "select_num_groups",
          ("empty candidates", lambda: ag.select_num_groups(np.zeros(0), np.zeros(0), [], S=2, budget=10),
           "candidates"),
          ("eps length", lambda: ag.select_num_groups(np.zeros(3), np.zeros(2), [1, 2], S=2, budget=10), "eps_P"),
          ("budget < 1", lambda: ag.select_num_groups(np.zeros(2), np.zeros(2), [1, 2], S=2, budget=0), "budget")),
    *rows(M + "action_signatures", ("rows not summing to 1", lambda: ag.action_signatures(BAD_ROWS), r"mdp\.P")),
    *rows(M + "cluster_actions",
          ("too many groups", lambda: ag.cluster_actions(np.ones((4, 3)), 5), "num_groups"),
          ("NaN", lambda: ag.cluster_actions(np.full((4, 3), np.nan), 2), "signatures"),
          ("1-D", lambda: ag.cluster_actions(np.ones(4), 2), "signatures")),
    *rows(M + "sample_budget_sweep",
          ("G > A", lambda: ag.sample_budget_sweep(_key, MDP, (1, 8), (10,)), "Gs"),
          ("budget < 1", lambda: ag.sample_budget_sweep(_key, MDP, (1, 2), (0,)), "budgets"),
          ("groupings length", lambda: ag.sample_budget_sweep(_key, MDP, (1, 2), (10,), groupings=[G2]),
           "groupings")),
]
