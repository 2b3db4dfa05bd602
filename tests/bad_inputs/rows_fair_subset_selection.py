"""Rows for zoo.choice.fair_subset_selection: k > m, infeasible bounds, non-permutation positions, NaN weights,
OWA length != k, negative Delta, t outside [1, m], Mallows phi outside (0, 1]."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.choice import fair_subset_selection as fs

from ._row import rows

_F = "zoo.choice.fair_subset_selection."
K = jax.random.key(0)
POS = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2]], np.int32)
BADPOS = np.array([[0, 1, 1, 3], [3, 2, 1, 0], [1, 0, 3, 2]], np.int32)  # row 0 repeats a position
C2 = fs.enumerate_committees(4, 2)
G = np.array([0, 0, 1, 1])
INST = fs.init_instance(4)
NANINST = fs.Instance(jnp.asarray([0.1, jnp.nan, 0.0, 0.2]), jnp.asarray(G, jnp.int32))
FEAS = np.ones(len(C2), bool)
Q = np.ones(len(C2), np.float32)

ROWS = [
    *rows(_F + "init_instance", ("bad sizes", lambda: fs.init_instance(4, (3, 3)), "group_sizes"),
          ("m < 2", lambda: fs.init_instance(1), "m:"), ("unknown profile", lambda: fs.init_instance(4, profile="x"), "profile")),
    *rows(_F + "biased_log_weights", ("negative delta", lambda: fs.biased_log_weights(INST, -1.0), "delta"),
          ("NaN in w", lambda: fs.biased_log_weights(NANINST, 1.0), r"inst\.w"),
          ("wrong type", lambda: fs.biased_log_weights((1, 2), 1.0), "inst", TypeError)),
    *rows(_F + "sample_positions", ("phi out of range", lambda: fs.sample_positions(K, INST.w, 3, "mallows", phi=1.5), "phi"),
          ("phi missing", lambda: fs.sample_positions(K, INST.w, 3, "mallows"), "phi"),
          ("unknown model", lambda: fs.sample_positions(K, INST.w, 3, "thurstone"), "model"),
          ("NaN", lambda: fs.sample_positions(K, jnp.asarray([0.0, jnp.nan]), 3), "log_w"),
          ("not a key", lambda: fs.sample_positions(3, INST.w, 3), "key", TypeError)),
    *rows(_F + "sntv", ("k < 1", lambda: fs.sntv(0), "k:")),
    *rows(_F + "bloc", ("wrong type", lambda: fs.bloc(2.0), "k:", TypeError)),
    *rows(_F + "k_borda", ("k < 1", lambda: fs.k_borda(-1), "k:")),
    *rows(_F + "borda_cc", ("k < 1", lambda: fs.borda_cc(0), "k:")),
    *rows(_F + "approval_cc", ("t < 1", lambda: fs.approval_cc(2, 0), "t:")),
    *rows(_F + "pav", ("t < 1", lambda: fs.pav(2, 0), "t:")),
    *rows(_F + "geometric_owa", ("r out of range", lambda: fs.geometric_owa(2, 1.5), "r:")),
    *rows(_F + "item_utilities", ("not a permutation", lambda: fs.item_utilities(BADPOS, fs.k_borda(2)), "pos:.*permutation"),
          ("t > m", lambda: fs.item_utilities(POS, fs.approval_cc(2, 9)), r"rule: approval threshold t.*\[1, m = 4\]"),
          ("float positions", lambda: fs.item_utilities(POS.astype(float), fs.k_borda(2)), "pos:"),
          ("not a rule", lambda: fs.item_utilities(POS, "borda"), "rule", TypeError)),
    *rows(_F + "committee_score", ("owa length != k", lambda: fs.committee_score(POS, C2, fs.k_borda(3)), "rule: owa has length 3"),
          ("item out of range", lambda: fs.committee_score(POS, C2 + 3, fs.k_borda(2)), "committees:"),
          ("bad chunk", lambda: fs.committee_score(POS, C2, fs.k_borda(2), chunk=0), "chunk")),
    *rows(_F + "prefix_committee_scores",
          ("grid beyond n", lambda: fs.prefix_committee_scores(POS, C2, fs.k_borda(2), (1, 9)), "n_grid"),
          ("not increasing", lambda: fs.prefix_committee_scores(POS, C2, fs.k_borda(2), (3, 1)), "n_grid")),
    *rows(_F + "marginal_gains", ("wrong shape", lambda: fs.marginal_gains(POS, np.zeros(3, bool), fs.k_borda(2)), "current"),
          ("committee full", lambda: fs.marginal_gains(POS, np.array([1, 1, 0, 0], bool), fs.k_borda(2)), "current")),
    *rows(_F + "enumerate_committees", ("k > m", lambda: fs.enumerate_committees(3, 4), "k:.*exceeds"),
          ("too many", lambda: fs.enumerate_committees(60, 30), "too many")),
    *rows(_F + "feasibility_mask", ("sum(lower) > k", lambda: fs.feasibility_mask(C2, G, [2, 1], [2, 2]), "lower: infeasible"),
          ("lower > group size", lambda: fs.feasibility_mask(C2, G, [3, 0], [3, 2]), "lower: infeasible"),
          ("sum(upper) < k", lambda: fs.feasibility_mask(C2, G, [0, 0], [1, 0]), "upper: infeasible"),
          ("label out of range", lambda: fs.feasibility_mask(C2, np.array([0, 0, 1, 2]), [1, 1], [1, 1]), "groups:")),
    *rows(_F + "best_committee", ("none feasible", lambda: fs.best_committee(K, Q, np.zeros(len(C2), bool)), "feasible"),
          ("NaN", lambda: fs.best_committee(K, np.array([np.nan, 1.0]), None), "scores")),
    *rows(_F + "exact_select", ("not a permutation", lambda: fs.exact_select(BADPOS, fs.k_borda(2), C2, FEAS, K), "pos:")),
    *rows(_F + "greedy_select", ("k > m", lambda: fs.greedy_select(K, POS, fs.k_borda(5), G, [1, 1], [5, 5], 5), "k:"),
          ("infeasible", lambda: fs.greedy_select(K, POS, fs.k_borda(2), G, [2, 1], [2, 2], 2), "lower: infeasible"),
          ("owa length != k", lambda: fs.greedy_select(K, POS, fs.k_borda(3), G, [1, 1], [1, 1], 2), "rule: owa")),
    *rows(_F + "additive_select", ("sum(upper) < k", lambda: fs.additive_select(Q[:4], G, [0, 0], [1, 0], 2), "upper: infeasible"),
          ("NaN", lambda: fs.additive_select(np.array([np.nan, 1, 1, 1], np.float32), G, [1, 1], [1, 1], 2), "scores")),
    *rows(_F + "true_quality", ("n_eval < 1", lambda: fs.true_quality(K, INST, fs.k_borda(2), C2, 0), "n_eval"),
          ("NaN in w", lambda: fs.true_quality(K, NANINST, fs.k_borda(2), C2, 5), r"inst\.w")),
    *rows(_F + "selection_ratio", ("negative delta", lambda: fs.selection_ratio(K, INST, fs.k_borda(2), -0.5, 4, C2, FEAS, Q), "delta"),
          ("wrong quality", lambda: fs.selection_ratio(K, INST, fs.k_borda(2), 1.0, 4, C2, FEAS, Q[:3]), "quality")),
    *rows(_F + "prefix_selection_ratios",
          ("bad grid", lambda: fs.prefix_selection_ratios(K, INST, fs.k_borda(2), 1.0, (4, 2), C2, FEAS, Q), "n_grid"),
          ("wrong feasible", lambda: fs.prefix_selection_ratios(K, INST, fs.k_borda(2), 1.0, (2,), C2, FEAS[:2], Q), "feasible")),
    *rows(_F + "rankings_needed", ("length mismatch", lambda: fs.rankings_needed(np.ones(3), (1, 2)), "mean_ratio"),
          ("target out of range", lambda: fs.rankings_needed(np.ones(2), (1, 2), target=1.5), "target")),
    *rows(_F + "empirical_smoothness",
          ("negative delta", lambda: fs.empirical_smoothness(K, INST, fs.k_borda(2), -1.0, np.array([0])), "delta"),
          ("ref too large", lambda: fs.empirical_smoothness(K, INST, fs.k_borda(2), 1.0, np.array([0, 1])), "ref"),
          ("conf out of range", lambda: fs.empirical_smoothness(K, INST, fs.k_borda(2), 1.0, np.array([0]), conf=2.0), "conf")),
]
