"""Rows for zoo.stats.aranyani."""

import jax
import numpy as np

from zoo.stats import aranyani as ar

from ._row import rows

_M = "zoo.stats.aranyani"
_key = jax.random.key(0)
_forest = ar.init_forest(_key, 3, depth=2, num_trees=1)
_stats = ar.init_fair_stats(_forest)
_state = ar.init_online(_key, 3, depth=2, num_trees=1)
_x = np.zeros((4, 3), np.float32)
_nan = _x.copy()
_nan[1, 2] = np.nan
_y = np.array([0, 1, 0, 1])
_a = np.array([0, 1, 1, 0])
_a2 = np.array([0, 2, 1, 0])

ROWS = [
    *rows(f"{_M}.path_matrix", ("depth 0", lambda: ar.path_matrix(0), "depth")),
    *rows(f"{_M}.init_forest", ("depth 0", lambda: ar.init_forest(_key, 3, depth=0), "depth"),
          ("one class", lambda: ar.init_forest(_key, 3, num_classes=1), "num_classes")),
    *rows(f"{_M}.node_logits", ("NaN x", lambda: ar.node_logits(_forest, _nan), "x"),
          ("wrong width", lambda: ar.node_logits(_forest, np.zeros((2, 5))), "x: expected 3 features")),
    *rows(f"{_M}.leaf_log_probs", ("not a forest", lambda: ar.leaf_log_probs((1, 2, 3), _x), "forest", TypeError)),
    *rows(f"{_M}.forest_predict", ("NaN x", lambda: ar.forest_predict(_forest, _nan), "x")),
    *rows(f"{_M}.task_loss", ("label out of range", lambda: ar.task_loss(_forest, _x, np.array([0, 1, 2, 0])), "y")),
    *rows(f"{_M}.init_fair_stats", ("not a forest", lambda: ar.init_fair_stats("forest"), "forest", TypeError)),
    *rows(f"{_M}.update_fair_stats",
          ("group not binary", lambda: ar.update_fair_stats(_stats, _forest, _x[0], 2), "a"),
          ("NaN x", lambda: ar.update_fair_stats(_stats, _forest, _nan[1], 0), "x"),
          ("unknown mode", lambda: ar.update_fair_stats(_stats, _forest, _x[0], 0, mode="adam"), "mode")),
    *rows(f"{_M}.node_gaps", ("not stats", lambda: ar.node_gaps({}), "stats", TypeError)),
    *rows(f"{_M}.huber_grad", ("delta 0", lambda: ar.huber_grad(np.zeros(2, np.float32), delta=0.0), "delta")),
    *rows(f"{_M}.fairness_grad",
          ("lam < 0", lambda: ar.fairness_grad(_stats, lam=-1.0), "lam"),
          ("delta 0", lambda: ar.fairness_grad(_stats, lam=1.0, delta=0.0), "delta"),
          ("unknown huber", lambda: ar.fairness_grad(_stats, lam=1.0, huber="pseudo"), "huber")),
    *rows(f"{_M}.full_history_fairness_grad",
          ("one group", lambda: ar.full_history_fairness_grad(_forest, _x, np.zeros(4, int), lam=1.0), "a: both groups"),
          ("group not binary", lambda: ar.full_history_fairness_grad(_forest, _x, _a2, lam=1.0), "a")),
    *rows(f"{_M}.init_online", ("one class", lambda: ar.init_online(_key, 3, num_classes=1), "num_classes")),
    *rows(f"{_M}.online_step",
          ("group not binary", lambda: ar.online_step(_state, (_x[0], 1, 3)), "a"),
          ("lam < 0", lambda: ar.online_step(_state, (_x[0], 1, 0), lam=-0.1), "lam")),
    *rows(f"{_M}.online_steps",
          ("NaN x", lambda: ar.online_steps(_state, _nan, _y, _a), "x"),
          ("group not binary", lambda: ar.online_steps(_state, _x, _y, _a2), "a"),
          ("delta 0", lambda: ar.online_steps(_state, _x, _y, _a, delta=0.0), "delta")),
    *rows(f"{_M}.run_online",
          ("group not binary", lambda: ar.run_online(_key, _x, _y, _a2, depth=2, num_trees=1), "a"),
          ("depth 0", lambda: ar.run_online(_key, _x, _y, _a, depth=0), "depth")),
    *rows(f"{_M}.run_online_reservoir",
          ("reservoir 0", lambda: ar.run_online_reservoir(_key, _x, _y, _a, reservoir_size=0), "reservoir_size"),
          ("NaN x", lambda: ar.run_online_reservoir(_key, _nan, _y, _a), "x")),
    *rows(f"{_M}.demographic_parity",
          ("empty group", lambda: ar.demographic_parity(_y, np.zeros(4, int)), "a: both groups"),
          ("group not binary", lambda: ar.demographic_parity(_y, _a2), "a")),
    *rows(f"{_M}.prequential_metrics", ("length mismatch", lambda: ar.prequential_metrics(_y, _y[:3], _a), "y")),
    *rows(f"{_M}.majority_mix_curve",
          ("q out of range", lambda: ar.majority_mix_curve(_y, _y, _a, np.array([1.5], np.float32), 1), "qs"),
          ("bad majority", lambda: ar.majority_mix_curve(_y, _y, _a, np.array([0.5], np.float32), 2), "majority")),
    *rows(f"{_M}.make_fair_stream", ("n 0", lambda: ar.make_fair_stream(0, 0), "n"),
          ("kappa > 1", lambda: ar.make_fair_stream(0, 10, kappa=2.0), "kappa")),
    *rows(f"{_M}.load_adult", ("missing file", lambda: ar.load_adult("/nonexistent/adult.data"), "path")),
]
