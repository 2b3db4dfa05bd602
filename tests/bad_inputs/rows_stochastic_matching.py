"""Rows for zoo.choice.stochastic_matching."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.choice import stochastic_matching as sm

from ._row import rows

_key = jax.random.PRNGKey(0)
_ok = sm.Instance(jnp.ones((2, 3), bool), jnp.full((2, 3), 0.5), jnp.ones(2))
_bad_p = sm.Instance(_ok.adj, _ok.p.at[0, 1].set(1.5), _ok.w)
_nan_p = sm.Instance(_ok.adj, _ok.p.at[0, 1].set(jnp.nan), _ok.w)
_neg_w = sm.Instance(_ok.adj, _ok.p, jnp.array([1.0, -1.0]))
_shape = sm.Instance(_ok.adj, jnp.full((2, 4), 0.5), _ok.w)
_big = sm.Instance(jnp.ones((21, 1), bool), jnp.full((21, 1), 0.5), jnp.ones(21))
_wide = sm.Instance(jnp.ones((2, 17), bool), jnp.full((2, 17), 0.5), jnp.ones(2))
_G = sm.AlgParams(kind="greedy")

ROWS = [
    *rows("zoo.choice.stochastic_matching.make_instance",
          ("p > 1", lambda: sm.make_instance(np.ones((2, 2), bool), 1.5), r"p: edge probabilities"),
          ("shape mismatch", lambda: sm.make_instance(np.ones((2, 2), bool), np.ones((2, 3)) * 0.5), r"p: expected shape"),
          ("negative weight", lambda: sm.make_instance(np.ones((2, 2), bool), 0.5, [1.0, -2.0]), r"w: offline weights")),
    *rows("zoo.choice.stochastic_matching.expand_types",
          ("K < 1", lambda: sm.expand_types(np.ones((2, 2), bool), 0.5, 0), r"K: expected"),
          ("rate > K", lambda: sm.expand_types(np.ones((2, 2), bool), 3.0, 2), r"r: edge rates")),
    *rows("zoo.choice.stochastic_matching.make_ut", ("K < 1", lambda: sm.make_ut(3, 0), r"K: expected")),
    *rows("zoo.choice.stochastic_matching.make_rev_ut", ("n < 1", lambda: sm.make_rev_ut(0, 3), r"n: expected")),
    *rows("zoo.choice.stochastic_matching.make_random",
          ("density > 1", lambda: sm.make_random(_key, 3, 3, 2, density=1.5), r"density"),
          ("bad r_range", lambda: sm.make_random(_key, 3, 3, 2, r_range=(0.0, 1.0)), r"r_range")),
    *rows("zoo.choice.stochastic_matching.shuffle_offline",
          ("wrong type", lambda: sm.shuffle_offline(_key, (1, 2, 3)), r"inst: expected", TypeError)),
    *rows("zoo.choice.stochastic_matching.run_online",
          ("p outside (0, 1]", lambda: sm.run_online(_key, _bad_p, _G), r"inst\.p: edge probabilities"),
          ("NaN p", lambda: sm.run_online(_key, _nan_p, _G), r"inst\.p: contains"),
          ("alg wrong type", lambda: sm.run_online(_key, _ok, "greedy"), r"alg: expected", TypeError)),
    *rows("zoo.choice.stochastic_matching.run_many",
          ("single key", lambda: sm.run_many(_key, _ok, _G), r"keys: expected")),
    *rows("zoo.choice.stochastic_matching.simulate",
          ("adj/p shape mismatch", lambda: sm.simulate(_key, _shape, _G), r"inst\.p: expected shape"),
          ("bad key", lambda: sm.simulate(jnp.zeros(3), _ok, _G), r"key: expected")),
    *rows("zoo.choice.stochastic_matching.simulate_many",
          ("R < 2", lambda: sm.simulate_many(_key, _ok, _G, 1), r"R: expected")),
    *rows("zoo.choice.stochastic_matching.exact_expected_value",
          ("ranking", lambda: sm.exact_expected_value(_ok, sm.AlgParams(kind="ranking")), r"alg: exact_expected_value"),
          ("negative weight", lambda: sm.exact_expected_value(_neg_w, _G), r"inst\.w: offline weights")),
    *rows("zoo.choice.stochastic_matching.clairvoyant_opt",
          ("n_off > 20", lambda: sm.clairvoyant_opt(_big), r"inst: clairvoyant_opt .* n_off <= 20")),
    *rows("zoo.choice.stochastic_matching.budget_lp",
          ("p outside (0, 1]", lambda: sm.budget_lp(_bad_p), r"inst\.p")),
    *rows("zoo.choice.stochastic_matching.config_lp",
          ("too many subsets", lambda: sm.config_lp(_wide), r"method: enumeration .* 2\^16"),
          ("unknown method", lambda: sm.config_lp(_ok, "magic"), r"method: expected")),
    *rows("zoo.choice.stochastic_matching.stochastic_config_lp",
          ("too many subsets", lambda: sm.stochastic_config_lp(_wide, "enumerate"), r"method: enumeration"),
          ("tol <= 0", lambda: sm.stochastic_config_lp(_ok, tol=0.0), r"tol: expected"),
          ("unknown method", lambda: sm.stochastic_config_lp(_ok, "simplex"), r"method: expected")),
    *rows("zoo.choice.stochastic_matching.sclp_pricing",
          ("beta shape", lambda: sm.sclp_pricing(jnp.ones(3) * 0.5, jnp.ones(3, bool), 1.0, jnp.zeros(4)), r"beta: expected shape")),
    *rows("zoo.choice.stochastic_matching.competitive_ratios",
          ("empty algs", lambda: sm.competitive_ratios(_key, _ok, {}, 10), r"algs: expected")),
    *rows("zoo.choice.stochastic_matching.AlgParams",
          ("unknown kind", lambda: sm.AlgParams(kind="balanced"), r"kind: expected"),
          ("psi_param <= 0", lambda: sm.AlgParams(psi_param=0.0), r"psi_param")),
]
