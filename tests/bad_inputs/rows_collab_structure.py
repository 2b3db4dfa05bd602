"""Rows for zoo.stats.collab_structure (bad graphs, labels, samples)."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.stats import collab_structure as cs

from ._row import rows

_key = jax.random.PRNGKey(0)
_W = jnp.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], jnp.float32)


def _g(W, mask=None):
    n = W.shape[0]
    return cs.CoauthorGraph(W=jnp.asarray(W, jnp.float32), node_mask=jnp.ones(n, bool) if mask is None else mask,
                            n_papers=jnp.asarray(3.0), n_multi_papers=jnp.asarray(2.0))


LOOP = _g(_W.at[0, 0].set(1.0))
NEG = _g(_W.at[0, 1].set(-1.0).at[1, 0].set(-1.0))
ASYM = _g(_W.at[0, 1].set(2.0))
NANW = _g(_W.at[0, 1].set(jnp.nan).at[1, 0].set(jnp.nan))
PADEDGE = _g(_W, jnp.array([True, True, False]))
OK = _g(_W)
C = "zoo.stats.collab_structure."

ROWS = [
    *rows(C + "check_graph",
          ("self-loop", lambda: cs.check_graph(LOOP), r"g\.W.*self-loops"),
          ("negative weight", lambda: cs.check_graph(NEG), r"g\.W.*negative"),
          ("asymmetric", lambda: cs.check_graph(ASYM), r"g\.W.*symmetric"),
          ("NaN", lambda: cs.check_graph(NANW), r"g\.W"),
          ("edges on padding", lambda: cs.check_graph(PADEDGE), r"g\.W.*padding"),
          ("wrong type", lambda: cs.check_graph(np.eye(3)), "g", TypeError)),
    *rows(C + "from_papers",
          ("wrong type", lambda: cs.from_papers("abc"), "papers", TypeError),
          ("n_max too small", lambda: cs.from_papers([[0, 1, 2]], n_max=2), "n_max")),
    *rows(C + "collaboration_rate", ("self-loop", lambda: cs.collaboration_rate(LOOP), r"g\.W")),
    *rows(C + "repeated_collaboration_rate", ("negative weight", lambda: cs.repeated_collaboration_rate(NEG), r"g\.W")),
    *rows(C + "degree_centralization", ("self-loop", lambda: cs.degree_centralization(LOOP), r"g\.W")),
    *rows(C + "degree_assortativity", ("asymmetric", lambda: cs.degree_assortativity(ASYM), r"g\.W")),
    *rows(C + "modularity",
          ("label out of range", lambda: cs.modularity(OK, jnp.array([0, 1, 5])), "labels"),
          ("wrong length", lambda: cs.modularity(OK, jnp.array([0, 1])), "labels"),
          ("negative weight", lambda: cs.modularity(NEG, jnp.array([0, 0, 1])), r"g\.W")),
    *rows(C + "average_clustering", ("self-loop", lambda: cs.average_clustering(LOOP), r"g\.W")),
    *rows(C + "burt_constraint", ("self-loop", lambda: cs.burt_constraint(LOOP), r"g\.W")),
    *rows(C + "effective_size", ("negative weight", lambda: cs.effective_size(NEG), r"g\.W")),
    *rows(C + "core_numbers", ("self-loop", lambda: cs.core_numbers(LOOP), r"g\.W")),
    *rows(C + "coreness_ratio", ("asymmetric", lambda: cs.coreness_ratio(ASYM), r"g\.W")),
    *rows(C + "connected_components", ("self-loop", lambda: cs.connected_components(LOOP), r"g\.W")),
    *rows(C + "largest_component_mask", ("negative weight", lambda: cs.largest_component_mask(NEG), r"g\.W")),
    *rows(C + "all_pairs_hops", ("negative max_hops", lambda: cs.all_pairs_hops(OK, -1), "max_hops")),
    *rows(C + "small_world_sigma", ("self-loop", lambda: cs.small_world_sigma(LOOP), r"g\.W")),
    *rows(C + "robustness_ratio",
          ("frac out of range", lambda: cs.robustness_ratio(_key, OK, 1.5), "frac"),
          ("self-loop", lambda: cs.robustness_ratio(_key, LOOP), r"g\.W")),
    *rows(C + "all_measures", ("self-loop", lambda: cs.all_measures(_key, LOOP, jnp.zeros(3, jnp.int32)), r"g\.W")),
    *rows(C + "detect_communities",
          ("bad method", lambda: cs.detect_communities(OK, "spectral"), "method"),
          ("self-loop", lambda: cs.detect_communities(LOOP), r"g\.W")),
    *rows(C + "ols",
          ("row mismatch", lambda: cs.ols(np.ones(5), np.ones((4, 2))), "X"),
          ("NaN", lambda: cs.ols(np.array([1.0, np.nan, 2.0, 3.0]), np.ones((4, 2))), "y"),
          ("too few rows", lambda: cs.ols(np.ones(2), np.ones((2, 2))), "X")),
    *rows(C + "cliffs_delta", ("empty group", lambda: cs.cliffs_delta(np.zeros(0), np.ones(3)), "x")),
    *rows(C + "cohens_d", ("empty group", lambda: cs.cohens_d(np.ones(3), np.zeros(0)), "y")),
    *rows(C + "bootstrap_ci",
          ("empty group", lambda: cs.bootstrap_ci(_key, np.zeros(0), np.ones(3)), "x"),
          ("n_boot < 1", lambda: cs.bootstrap_ci(_key, np.ones(3), np.ones(3), n_boot=0), "n_boot")),
    *rows(C + "popular_niche_split",
          ("frac out of range", lambda: cs.popular_niche_split(np.arange(10.0), 0.7), "frac"),
          ("empty groups", lambda: cs.popular_niche_split(np.arange(3.0), 0.2), "frac")),
    *rows(C + "group_comparison", ("too few", lambda: cs.group_comparison(np.ones(2), np.ones(5)), "x, y")),
    *rows(C + "size_controlled_regression",
          ("length mismatch", lambda: cs.size_controlled_regression(np.ones(6), np.ones(5), np.ones(6)), "metric"),
          ("non-positive P", lambda: cs.size_controlled_regression(np.arange(6.0), np.zeros(6), np.ones(6)), "P")),
    *rows(C + "synth_topics",
          ("negative seed", lambda: cs.synth_topics(-1, 3, 0.0), "seed"),
          ("NaN beta", lambda: cs.synth_topics(0, 3, float("nan")), "beta"),
          ("bad p_range", lambda: cs.synth_topics(0, 3, 0.0, p_range=(50, 10)), "p_range")),
]
ROWS += rows(C + "size_controlled_regression",
             ("size_degree 0", lambda: cs.size_controlled_regression(np.arange(6.0), np.ones(6), np.ones(6), 0),
              "size_degree"))
