"""Rows for zoo.choice.system_ranking (benchmark ranking aggregation)."""

import jax
import numpy as np

from zoo.choice import system_ranking as sr

from ._row import rows

_k = jax.random.PRNGKey(0)
_S = np.arange(12.0).reshape(4, 3)
_I = np.arange(24.0).reshape(4, 3, 2)
_nan = _S.copy()
_nan[0, 0] = np.nan

ROWS = [
    *rows("zoo.choice.system_ranking.mean_aggregate",
          ("NaN", lambda: sr.mean_aggregate(_nan), r"^S: .*non-finite"),
          ("system without scores", lambda: sr.mean_aggregate(_S, mask=np.array([[1, 1, 1], [0, 0, 0]] * 2, bool)),
           r"^mask: system 1"),
          ("one system", lambda: sr.mean_aggregate(np.ones((1, 3))), r"^S: .*at least 2")),
    *rows("zoo.choice.system_ranking.kemeny_ranking",
          ("bad method", lambda: sr.kemeny_ranking(_S, method="ilp"), r"^method: "),
          ("too many for exact", lambda: sr.kemeny_ranking(np.ones((17, 2)), method="exact"), r"^W: .*N <= 16")),
    *rows("zoo.choice.system_ranking.one_level_borda",
          ("2-D scores", lambda: sr.one_level_borda(_S), r"^S: .*3-D"),
          ("wrong mask shape", lambda: sr.one_level_borda(_I, np.ones((2, 3), bool)), r"^mask: "),
          ("all masked", lambda: sr.one_level_borda(_I, np.zeros((3, 2), bool)), r"^mask: .*every entry")),
    *rows("zoo.choice.system_ranking.two_level_borda",
          ("NaN", lambda: sr.two_level_borda(np.full((4, 3, 2), np.nan)), r"^S: .*non-finite"),
          ("bad ties", lambda: sr.two_level_borda(_I, ties="x"), r"^ties: ")),
    *rows("zoo.choice.system_ranking.mean_aggregate_instances",
          ("one system", lambda: sr.mean_aggregate_instances(np.ones((1, 3, 2))), r"^S: ")),
    *rows("zoo.choice.system_ranking.ranking_error",
          ("truth length", lambda: sr.ranking_error(np.arange(3.0), np.arange(4.0)), r"^truth: "),
          ("one system", lambda: sr.ranking_error(np.ones(1)), r"^scores: .*at least 2")),
    *rows("zoo.choice.system_ranking.agreement",
          ("bad ks", lambda: sr.agreement(np.arange(3.0), np.arange(3.0), ks=(0,)), r"^ks: "),
          ("length mismatch", lambda: sr.agreement(np.arange(3.0), np.arange(4.0)), r"^b: ")),
    *rows("zoo.choice.system_ranking.task_removal_curve",
          ("bad agg", lambda: sr.task_removal_curve(_k, _S, 2, "median"), r"^agg: "),
          ("zero orders", lambda: sr.task_removal_curve(_k, _S, 0), r"^n_perms: ")),
    *rows("zoo.choice.system_ranking.system_addition_curve",
          ("zero reps", lambda: sr.system_addition_curve(_k, _S, 0), r"^n_reps: "),
          ("NaN", lambda: sr.system_addition_curve(_k, _nan, 2), r"^S: ")),
    *rows("zoo.choice.system_ranking.plackett_luce_scores",
          ("one system", lambda: sr.plackett_luce_scores(_k, 1, 3, 0.5), r"^n: "),
          ("inf phi", lambda: sr.plackett_luce_scores(_k, 3, 3, float("inf")), r"^phi: "),
          ("int dtype", lambda: sr.plackett_luce_scores(_k, 3, 3, 0.5, dtype=np.int32), r"^dtype: ")),
    *rows("zoo.choice.system_ranking.plackett_luce_instances",
          ("zero instances", lambda: sr.plackett_luce_instances(_k, 3, 2, 0, 0.5), r"^n_instances: ")),
    *rows("zoo.choice.system_ranking.corrupt",
          ("too many columns", lambda: sr.corrupt(_S, _k, 4), r"^n_corrupt: "),
          ("bad scale", lambda: sr.corrupt(_S, _k, 1, scale=0.0), r"^scale: "),
          ("bad mode", lambda: sr.corrupt(_S, _k, 1, mode="flip"), r"^mode: ")),
    *rows("zoo.choice.system_ranking.drop_scores",
          ("frac 1", lambda: sr.drop_scores(_k, _S, 1.0), r"^frac: ")),
]
