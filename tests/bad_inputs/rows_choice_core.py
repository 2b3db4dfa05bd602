"""Rows for zoo.choice.core (the family's ranking and voting utilities)."""

import jax
import numpy as np

from zoo.choice import core as c

from ._row import rows

_k = jax.random.PRNGKey(0)
_S = np.arange(12.0).reshape(4, 3)
_nan = _S.copy()
_nan[1, 2] = np.nan
_W = np.ones((4, 4))

ROWS = [
    *rows("zoo.choice.core.rank_data",
          ("NaN", lambda: c.rank_data(np.array([1.0, np.nan])), r"^x: .*non-finite"),
          ("bad ties", lambda: c.rank_data(np.arange(3.0), ties="random"), r"^ties: "),
          ("wrong mask shape", lambda: c.rank_data(np.arange(3.0), mask=np.ones(2, bool)), r"^mask: .*shape"),
          ("scalar", lambda: c.rank_data(np.float32(1.0)), r"^x: "),
          ("wrong type", lambda: c.rank_data("abc"), r"^x: ", TypeError)),
    *rows("zoo.choice.core.scores_to_order",
          ("NaN", lambda: c.scores_to_order(np.array([np.nan, 1.0])), r"^scores: ")),
    *rows("zoo.choice.core.invert_permutation",
          ("not a permutation", lambda: c.invert_permutation(np.array([0, 0, 2])), r"^p: .*permutation"),
          ("float", lambda: c.invert_permutation(np.array([0.0, 1.0])), r"^p: .*dtype")),
    *rows("zoo.choice.core.order_to_ranks",
          ("not a permutation", lambda: c.order_to_ranks(np.array([1, 2, 3])), r"^order: .*permutation"),
          ("bad dtype", lambda: c.order_to_ranks(np.array([1, 0]), dtype=np.int32), r"^dtype: ")),
    *rows("zoo.choice.core.borda_count",
          ("NaN", lambda: c.borda_count(_nan), r"^S: .*non-finite"),
          ("1-D", lambda: c.borda_count(np.arange(3.0)), r"^S: .*2-D"),
          ("one system", lambda: c.borda_count(np.ones((1, 3))), r"^S: .*at least 2"),
          ("all masked", lambda: c.borda_count(_S, mask=np.zeros_like(_S, bool)), r"^mask: .*every entry"),
          ("bad ties", lambda: c.borda_count(_S, ties="first"), r"^ties: ")),
    *rows("zoo.choice.core.pairwise_preferences",
          ("3-D", lambda: c.pairwise_preferences(np.ones((2, 2, 2))), r"^S: .*2-D"),
          ("wrong mask shape", lambda: c.pairwise_preferences(_S, mask=np.ones((3, 4), bool)), r"^mask: ")),
    *rows("zoo.choice.core.condorcet_winner",
          ("not square", lambda: c.condorcet_winner(np.ones((3, 4))), r"^W: .*square")),
    *rows("zoo.choice.core.kendall_distance",
          ("length mismatch", lambda: c.kendall_distance(np.arange(3.0), np.arange(4.0)), r"^r2: "),
          ("one item", lambda: c.kendall_distance(np.ones(1), np.ones(1)), r"^r: .*at least 2")),
    *rows("zoo.choice.core.kendall_tau_b",
          ("NaN", lambda: c.kendall_tau_b(np.array([1.0, np.nan, 2.0]), np.arange(3.0)), r"^x: .*non-finite"),
          ("wrong mask", lambda: c.kendall_tau_b(np.arange(3.0), np.arange(3.0), mask=np.ones(2, bool)), r"^mask: ")),
    *rows("zoo.choice.core.topk_overlap",
          ("k too large", lambda: c.topk_overlap(np.arange(3.0), np.arange(3.0), 4), r"^k: "),
          ("k not int", lambda: c.topk_overlap(np.arange(3.0), np.arange(3.0), 1.5), r"^k: ", TypeError)),
    *rows("zoo.choice.core.kemeny_cost",
          ("not a permutation", lambda: c.kemeny_cost(np.array([0, 1, 1, 2]), _W), r"^order: .*permutation"),
          ("length mismatch", lambda: c.kemeny_cost(np.arange(3), _W), r"^order: .*length 4")),
    *rows("zoo.choice.core.kemeny_exact",
          ("too many items", lambda: c.kemeny_exact(np.ones((17, 17))), r"^W: .*N <= 16"),
          ("NaN", lambda: c.kemeny_exact(np.full((3, 3), np.nan)), r"^W: .*non-finite"),
          ("inside jit", lambda: jax.jit(c.kemeny_exact)(_W), r"^W: .*jit", TypeError)),
    *rows("zoo.choice.core.kemeny_brute_force",
          ("too many items", lambda: c.kemeny_brute_force(np.ones((9, 9))), r"^W: .*N <= 8")),
    *rows("zoo.choice.core.kemeny_local_search",
          ("bad start", lambda: c.kemeny_local_search(_W, np.array([3, 2, 1, 1])), r"^init_order: "),
          ("negative sweeps", lambda: c.kemeny_local_search(_W, np.arange(4), n_sweeps=-1), r"^n_sweeps: ")),
    *rows("zoo.choice.core.sample_plackett_luce",
          ("zero samples", lambda: c.sample_plackett_luce(_k, np.zeros(3), 0), r"^num: "),
          ("2-D weights", lambda: c.sample_plackett_luce(_k, np.zeros((2, 3)), 1), r"^log_weights: ")),
]
