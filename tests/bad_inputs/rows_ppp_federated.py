"""Rows for zoo.representation.ppp and the federated family (zoo.federated.core / fedau / fedamd)."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.federated import core, fedamd, fedau
from zoo.representation import ppp
from zoo.representation.ppp import GMMParams, PPPConfig

from ._row import rows

_key = jax.random.key(0)

# ------------------------------------------------------------------------------------------- PPP

_X = np.arange(12, dtype=np.float32).reshape(6, 2)
_XNAN = _X.copy()
_XNAN[2, 1] = np.nan
_C = _X[:2].copy()
_P1 = GMMParams(np.ones(1, np.float32), np.zeros((1, 2), np.float32), np.eye(2, dtype=np.float32)[None])
_P2 = GMMParams(np.array([0.5, 0.5], np.float32), np.zeros((2, 2), np.float32),
                np.stack([np.eye(2, dtype=np.float32)] * 2))  # fmt: skip
_L = np.array([0, 0, 1, 1, 0, 1])
_RESP = np.full((6, 2), 0.5, np.float32)

ROWS = [
    *rows("zoo.representation.ppp.kmeans_assign",
          ("NaN", lambda: ppp.kmeans_assign(_XNAN, _C), r"x: contains 1 non-finite"),
          ("NaN centres", lambda: ppp.kmeans_assign(_X, np.array([[0.0, np.inf]])), r"c: contains 1 non-finite"),
          ("wrong shape", lambda: ppp.kmeans_assign(_X, np.zeros((2, 3))), r"c: expected shape \(\*, 2\)"),
          ("wrong mask", lambda: ppp.kmeans_assign(_X, _C, np.ones(5, bool)), r"mask: expected shape \(6\)")),
    *rows("zoo.representation.ppp.kmeans_plusplus",
          ("out of range", lambda: ppp.kmeans_plusplus(_key, _X, 0), r"k: expected a value in \[1"),
          ("wrong type", lambda: ppp.kmeans_plusplus(_key, _X, 2.0), r"k: expected a Python int")),
    *rows("zoo.representation.ppp.kmeans_fit",
          ("out of range", lambda: ppp.kmeans_fit(_key, _X, 7), r"k \(at most the number of masked-in points\)"),
          ("NaN", lambda: ppp.kmeans_fit(_key, _XNAN, 2), r"X: contains 1 non-finite"),
          ("bad init", lambda: ppp.kmeans_fit(_key, _X, 2, init=np.zeros((3, 2))), r"init: expected shape \(2, 2\)")),
    *rows("zoo.representation.ppp.gmm_estep",
          ("negative weight", lambda: ppp.gmm_estep(_X, _P2._replace(weights=np.array([1.5, -0.5]))),
           r"params.weights: expected mixing proportions >= 0"),
          ("not normalised", lambda: ppp.gmm_estep(_X, _P2._replace(weights=np.array([0.5, 0.7]))),
           r"params.weights: expected mixing proportions summing to 1"),
          ("not positive definite", lambda: ppp.gmm_estep(_X, _P1._replace(cov=np.array([[[1.0, 2.0], [2.0, 1.0]]]))),
           r"params.cov \('full' covariance\): expected positive definite"),
          ("not symmetric", lambda: ppp.gmm_estep(_X, _P1._replace(cov=np.array([[[1.0, 0.5], [0.0, 1.0]]]))),
           r"params.cov \('full' covariance\): expected symmetric"),
          ("zero variance", lambda: ppp.gmm_estep(_X, _P1._replace(cov=np.array([[1.0, 0.0]])), "diag"),
           r"params.cov \('diag' covariance\): expected variances > 0"),
          ("NaN mean", lambda: ppp.gmm_estep(_X, _P1._replace(means=np.array([[np.nan, 0.0]]))),
           r"params.means: contains 1 non-finite"),
          ("wrong type", lambda: ppp.gmm_estep(_X, {"weights": 1}), r"params: expected GMMParams")),
    *rows("zoo.representation.ppp.gmm_mstep",
          ("wrong shape", lambda: ppp.gmm_mstep(_X, _RESP[:5]), r"resp: expected shape \(6, \*\)"),
          ("negative", lambda: ppp.gmm_mstep(_X, _RESP - 0.6), r"resp: expected responsibilities >= 0"),
          ("not normalised", lambda: ppp.gmm_mstep(_X, _RESP * 0.5), r"resp: expected rows summing to 1")),
    *rows("zoo.representation.ppp.gmm_init_from_labels",
          ("label >= k", lambda: ppp.gmm_init_from_labels(_X, np.array([0, 1, 2, 0, 1, 0]), 2),
           r"labels: expected values in \[-1, 1\].*got 2 at index 2"),
          ("label < -1", lambda: ppp.gmm_init_from_labels(_X, np.array([0, 1, -2, 0, 1, 0]), 2), r"labels: expected"),
          ("float labels", lambda: ppp.gmm_init_from_labels(_X, _L.astype(float), 2), r"labels: expected dtype kind")),
    *rows("zoo.representation.ppp.gmm_fit",
          ("out of range", lambda: ppp.gmm_fit(_X, _P1, max_iter=0), r"max_iter: expected a value in \[1"),
          ("negative reg", lambda: ppp.gmm_fit(_X, _P1, reg=-1.0), r"reg_covar: expected a value in \[0"),
          ("bad params", lambda: ppp.gmm_fit(_X, _P2._replace(weights=np.array([2.0, -1.0]))), r"params.weights")),
    *rows("zoo.representation.ppp.gmm_bic",
          ("NaN", lambda: ppp.gmm_bic(_XNAN, _P1), r"X: contains 1 non-finite"),
          ("bad cov", lambda: ppp.gmm_bic(_X, _P1._replace(cov=-np.eye(2)[None])), r"params.cov")),
    *rows("zoo.representation.ppp.agreement2",
          ("mismatched", lambda: ppp.agreement2(_L, _L[:5]), r"m: expected shape \(6\)"),
          ("empty", lambda: ppp.agreement2(np.zeros(0, int), np.zeros(0, int)), r"l: expected at least 1 rows"),
          ("float labels", lambda: ppp.agreement2(_L * 1.0, _L), r"l: expected dtype kind"),
          ("wrong mask", lambda: ppp.agreement2(_L, _L, np.ones(6)), r"mask: expected dtype kind")),
    *rows("zoo.representation.ppp.ari",
          ("mismatched", lambda: ppp.ari(_L, _L[:4]), r"b: expected shape \(6\)"),
          ("empty", lambda: ppp.ari([], []), r"a: expected"),
          ("2-D", lambda: ppp.ari(_L[None], _L[None]), r"a: expected a 1-D array")),
    *rows("zoo.representation.ppp.canonical_labels",
          ("mismatched", lambda: ppp.canonical_labels(_X, _L[:5]), r"labels: expected shape \(6\)"),
          ("empty", lambda: ppp.canonical_labels(np.zeros((0, 2)), np.zeros(0, int)), r"x: expected at least 1 rows"),
          ("NaN", lambda: ppp.canonical_labels(_XNAN, _L), r"x: contains 1 non-finite")),
    *rows("zoo.representation.ppp.silhouette_score",
          ("wrong shape", lambda: ppp.silhouette_score(_X, _L[:5]), r"labels: expected shape \(6\)"),
          ("negative label", lambda: ppp.silhouette_score(_X, _L - 1), r"labels: expected cluster ids >= 0"),
          ("out of range", lambda: ppp.silhouette_score(_X, _L, block=0), r"block: expected a positive int")),
    *rows("zoo.representation.ppp.standardize",
          ("wrong shape", lambda: ppp.standardize(np.zeros(6)), r"X: expected a 2-D array"),
          ("empty", lambda: ppp.standardize(np.zeros((0, 2))), r"X: expected at least 1 rows")),
    *rows("zoo.representation.ppp.effective_min_size",
          ("wrong type", lambda: ppp.effective_min_size({"min_size": 3}, 2), r"cfg: expected a PPPConfig"),
          ("out of range", lambda: ppp.effective_min_size(PPPConfig(), 0), r"n_features: expected a value in \[1")),
    *rows("zoo.representation.ppp.ppp_split_test",
          ("too few points", lambda: ppp.ppp_split_test(_key, _X, np.arange(6) < 1),
           r"mask \(number of masked-in points\)"),
          ("wrong type", lambda: ppp.ppp_split_test(_key, _X, None, cfg="full"), r"cfg: expected a PPPConfig")),
    *rows("zoo.representation.ppp.ppp_fit",
          ("NaN", lambda: ppp.ppp_fit(_key, _XNAN), r"X: contains 1 non-finite"),
          ("wrong shape", lambda: ppp.ppp_fit(_key, np.zeros((6, 0))), r"X.shape\[1\] \(number of features\)")),
]

# ------------------------------------------------------------------------------------ federated core

_Y = np.array([0, 1, 0, 1, 2, 2, 0, 1], np.int32)
_HIST = np.array([[2, 1, 0], [1, 2, 2], [0, 0, 0]])
_INDEX = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 0]], np.int32)
_COUNT = np.array([3, 3, 2], np.int32)
_XF = np.arange(16, dtype=np.float32).reshape(8, 2)
_DATA = core.federated_data(_XF, _Y, _INDEX, _COUNT, _XF[:2], _Y[:2], num_classes=3)
_PROBS = np.array([0.5, 0.25, 1.0])
_PCFG = core.ParticipationConfig()


def _lin_loss(params, batch):
    return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)


_PARAMS = {"w": jnp.zeros(2)}
_ALG = fedau.make_algorithm(_lin_loss, weighting="average_all", local_lr=0.1, local_steps=1, batch_size=2)
_GRAD = jax.grad(_lin_loss)


def _one_device_mesh(axis):
    return jax.sharding.Mesh(np.array(jax.devices()[:1]), (axis,))


ROWS += [
    *rows("zoo.federated.core.dirichlet_client_major",
          ("out of range", lambda: core.dirichlet_client_major(_Y, 2, 0.0, 0), r"alpha: expected a value in \(0"),
          ("bad labels", lambda: core.dirichlet_client_major(_Y - 1, 2, 0.5, 0), r"y: expected integer labels")),
    *rows("zoo.federated.core.dirichlet_label_major",
          ("out of range", lambda: core.dirichlet_label_major(_Y, 2, -1.0, 0), r"alpha: expected a value in \(0"),
          ("too many clients", lambda: core.dirichlet_label_major(_Y, 9, 0.5, 0), r"num_clients: expected a value")),
    *rows("zoo.federated.core.pathological",
          ("out of range", lambda: core.pathological(_Y, 2, 4, 0),
           r"classes_per_client: expected a value in \[1, 3\]")),
    *rows("zoo.federated.core.iid",
          ("out of range", lambda: core.iid(_Y, 9, 0), r"num_clients: expected a value in \[1, 8\]"),
          ("empty", lambda: core.iid(np.zeros(0, int), 1, 0), r"y: expected at least 1 rows")),
    *rows("zoo.federated.core.federated_data",
          ("wrong shape", lambda: core.federated_data(_XF, _Y, _INDEX, _COUNT[:2], _XF, _Y, num_classes=3),
           r"count: expected shape \(3\)"),
          ("index out of range", lambda: core.federated_data(_XF, _Y, _INDEX + 6, _COUNT, _XF, _Y, num_classes=3),
           r"index: expected row ids in \[0, 8\)"),
          ("NaN", lambda: core.federated_data(np.where(_XF > 3, np.nan, _XF), _Y, _INDEX, _COUNT, _XF, _Y,
                                              num_classes=3), r"x: contains"),  # fmt: skip
          ("mismatched test", lambda: core.federated_data(_XF, _Y, _INDEX, _COUNT, _XF, _Y[:3], num_classes=3),
           r"y_test: expected 8 labels")),
    *rows("zoo.federated.core.probs_from_multiplier",
          ("out of range", lambda: core.probs_from_multiplier(_HIST, np.ones(3) / 3, p_mean=0.0, p_min=0.0),
           r"p_mean: expected a value in \(0"),
          ("wrong shape", lambda: core.probs_from_multiplier(_HIST, np.ones(2) / 2, p_mean=0.5, p_min=0.0),
           r"m: expected shape \(3\)"),
          ("negative m", lambda: core.probs_from_multiplier(_HIST, np.array([1.5, -0.5, 0.0]), p_mean=0.5, p_min=0.0),
           r"m: expected a point of the simplex")),
    *rows("zoo.federated.core.label_correlated_probs",
          ("out of range", lambda: core.label_correlated_probs(_HIST, alpha_p=0.0),
           r"alpha_p: expected a value in \(0"),
          ("wrong shape", lambda: core.label_correlated_probs(np.zeros(3)), r"label_hist: expected a 2-D array")),
    *rows("zoo.federated.core.check_probs",
          ("out of range", lambda: core.check_probs(np.array([0.5, 1.5])), r"probs: expected participation"),
          ("NaN", lambda: core.check_probs(np.array([0.5, np.nan])), r"probs: contains 1 non-finite"),
          ("zero on data", lambda: core.check_probs(np.array([0.5, 0.0]), np.array([1, 1])),
           r"probs: expected participation probabilities in \(0, 1\] on clients with data")),
    *rows("zoo.federated.core.participation_init",
          ("out of range", lambda: core.participation_init(_PCFG, _key, np.array([0.5, 2.0, 0.5]), _COUNT),
           r"probs: expected participation"),
          ("wrong type", lambda: core.participation_init("bernoulli", _key, _PROBS, _COUNT),
           r"cfg: expected a ParticipationConfig")),
    *rows("zoo.federated.core.participation_step",
          ("wrong type", lambda: core.participation_step("bernoulli", {}, _key, 0),
           r"cfg: expected a ParticipationConfig"),
          ("bad state", lambda: core.participation_step(_PCFG, {"probs": _PROBS}, _key, 0), r"pstate: expected")),
    *rows("zoo.federated.core.stationary_mean",
          ("NaN", lambda: core.stationary_mean(_PCFG, np.array([0.5, np.nan])), r"probs: contains 1 non-finite"),
          ("out of range", lambda: core.stationary_mean(_PCFG, np.array([-0.5])), r"probs: expected participation")),
    *rows("zoo.federated.core.client_batch",
          ("out of range", lambda: core.client_batch(_DATA.x, _DATA.y, _DATA.index[0], _DATA.count[0], _key, 0),
           r"batch_size: expected a value in \[1, inf\), got 0"),
          ("wrong shape", lambda: core.client_batch(_DATA.x, _DATA.y, _DATA.index, _DATA.count[0], _key, 2),
           r"index_row: expected a 1-D array")),
    *rows("zoo.federated.core.local_sgd",
          ("out of range", lambda: core.local_sgd(_lin_loss, _PARAMS, _DATA.index[0], _DATA.count[0], _DATA.x, _DATA.y,
                                                  _key, lr=0.1, num_steps=0, batch_size=2),
           r"num_steps: expected a value in \[1, inf\), got 0"),  # fmt: skip
          ("NaN", lambda: core.local_sgd(_lin_loss, _PARAMS, _DATA.index[0], _DATA.count[0], _DATA.x, _DATA.y,
                                         _key, lr=np.nan, num_steps=1, batch_size=2),
           r"lr: contains 1 non-finite")),  # fmt: skip
    *rows("zoo.federated.core.weighted_sum",
          ("wrong shape", lambda: core.weighted_sum(jnp.ones(3), {"w": jnp.ones((2, 4))}),
           r"tree\['w'\]: expected leading dim 3"),
          ("NaN", lambda: core.weighted_sum(np.array([1.0, np.nan]), {"w": jnp.ones((2, 4))}),
           r"w: contains 1 non-finite")),
    *rows("zoo.federated.core.init_sim",
          ("wrong shape", lambda: core.init_sim(_ALG, _PCFG, _PARAMS, _DATA, _PROBS[:2], _key),
           r"probs: expected shape \(3\)"),
          ("wrong type", lambda: core.init_sim(_ALG, _PCFG, _PARAMS, {"x": _XF}, _PROBS, _key),
           r"data: expected a FederatedData")),
    *rows("zoo.federated.core.make_round_fn",
          ("out of range", lambda: core.make_round_fn(_ALG, _PCFG, capacity=0), r"capacity: expected a value in \[1"),
          ("wrong type", lambda: core.make_round_fn(_ALG, "bernoulli"), r"cfg: expected a ParticipationConfig")),
    *rows("zoo.federated.core.shard_clients",
          ("wrong mesh", lambda: core.shard_clients(None, _DATA, _one_device_mesh("x")),
           r"mesh: expected a jax.sharding.Mesh with an axis named 'clients'")),
    *rows("zoo.federated.core.simulate",
          ("out of range", lambda: core.simulate(lambda s, d, k: (s, {}), None, _DATA, _key, num_rounds=0),
           r"num_rounds: expected a value in \[1, inf\), got 0"),
          ("not a divisor",
           lambda: core.simulate(lambda s, d, k: (s, {}), None, _DATA, _key, num_rounds=4, eval_every=3),
           r"eval_every: expected a divisor"),
          ("wrong type", lambda: core.simulate("round", None, _DATA, _key, num_rounds=1),
           r"round_fn: expected a callable")),
]

# ------------------------------------------------------------------------------------------- FedAU

_ACT = jnp.array([True, False, True])
_TABLE = {"w": jnp.zeros((3, 2))}
_HP = {"local_lr": 0.1, "local_steps": 1, "batch_size": 1}

ROWS += [
    *rows("zoo.federated.fedau.init_weights",
          ("out of range", lambda: fedau.init_weights(0), r"num_clients: expected a value in \[1, inf\), got 0"),
          ("wrong type", lambda: fedau.init_weights(2.5), r"num_clients: expected an int"),
          ("int dtype", lambda: fedau.init_weights(2, jnp.int32), r"dtype: expected a float dtype")),
    *rows("zoo.federated.fedau.update_weights",
          ("wrong type", lambda: fedau.update_weights(fedau.init_weights(3), jnp.ones(3)),
           r"active: expected a bool array"),
          ("wrong shape", lambda: fedau.update_weights(fedau.init_weights(3), _ACT[:2]),
           r"active: expected shape \(3,\)"),
          ("bad state", lambda: fedau.update_weights({"omega": 1}, _ACT), r"state: expected FedAUWeights")),
    *rows("zoo.federated.fedau.expected_interval",
          ("p = 0", lambda: fedau.expected_interval(jnp.array([0.5, 0.0])),
           r"p: expected participation probabilities in \(0, 1\]"),
          ("p > 1", lambda: fedau.expected_interval(1.5, cutoff=3),
           r"p: expected participation probabilities in \(0, 1\]"),
          ("NaN", lambda: fedau.expected_interval(np.array([np.nan])), r"p: contains 1 non-finite"),
          ("bad cutoff", lambda: fedau.expected_interval(0.5, cutoff=0), r"cutoff: expected a value in \[1")),
    *rows("zoo.federated.fedau.aggregation_weights",
          ("p = 0 active", lambda: fedau.aggregation_weights("known_prob", _ACT, probs=jnp.array([0.0, 0.5, 0.5])),
           r"probs: expected participation probabilities in \[0, 1\], > 0 on active clients, got 0.0 at client 0"),
          ("p > 1", lambda: fedau.aggregation_weights("known_prob", _ACT, probs=jnp.array([0.5, 1.5, 0.5])),
           r"probs: expected participation probabilities in \[0, 1\]"),
          ("NaN", lambda: fedau.aggregation_weights("known_prob", _ACT, probs=jnp.array([0.5, np.nan, 0.5])),
           r"probs: contains 1 non-finite"),
          ("bad method", lambda: fedau.aggregation_weights("fedvarp", _ACT), r"method: expected one of"),
          ("negative weight",
           lambda: fedau.aggregation_weights("fedau", _ACT, fedau_weights=jnp.array([1.0, -1.0, 1.0])),
           r"fedau_weights: expected interval estimates > 0")),
    *rows("zoo.federated.fedau.fedvarp_aggregate",
          ("wrong type", lambda: fedau.fedvarp_aggregate(_TABLE, _TABLE, jnp.ones(3)),
           r"active: expected a 1-D bool array"),
          ("mismatched", lambda: fedau.fedvarp_aggregate(_TABLE, {"w": jnp.zeros((3, 3))}, _ACT),
           r"deltas\['w'\]: expected shape \(3, 2\)")),
    *rows("zoo.federated.fedau.mifa_aggregate",
          ("wrong shape", lambda: fedau.mifa_aggregate(_TABLE, {"w": jnp.zeros((2, 2))}, _ACT),
           r"deltas\['w'\]: expected leading dim 3"),
          ("mismatched tree", lambda: fedau.mifa_aggregate(_TABLE, {"v": jnp.zeros((3, 2))}, _ACT),
           r"deltas: expected the pytree structure of table")),
    *rows("zoo.federated.fedau.memory_floats",
          ("bad choice", lambda: fedau.memory_floats("fedprox", _PARAMS, 3), r"weighting: expected one of"),
          ("out of range", lambda: fedau.memory_floats("fedau", _PARAMS, 0),
           r"num_clients: expected a value in \[1, inf\), got 0")),
    *rows("zoo.federated.fedau.make_algorithm",
          ("p > 1", lambda: fedau.make_algorithm(_lin_loss, weighting="known_prob", probs=np.array([0.5, 1.5]), **_HP),
           r"probs: expected values in \[0, 1\]"),
          ("p = 0 with data",
           lambda: fedau.make_algorithm(_lin_loss, weighting="known_prob", probs=np.array([0.5, 0.0]),
                                        count=np.array([2, 1]), **_HP),
           r"probs: expected participation probabilities in \(0, 1\] on clients with data"),  # fmt: skip
          ("out of range", lambda: fedau.make_algorithm(_lin_loss, weighting="fedau", **{**_HP, "local_steps": 0}),
           r"local_steps: expected a value in \[1, inf\), got 0"),
          ("wrong type", lambda: fedau.make_algorithm("loss", weighting="fedau", **_HP),
           r"loss_fn: expected a callable")),
]

# ------------------------------------------------------------------------------------------ FedAMD

_CLIENT0 = (_DATA.index[0], _DATA.count[0], _DATA.x, _DATA.y, _key)
_SERVER = {"params": {"w": jnp.zeros(2)}, "v": {"w": jnp.zeros(2)}, "t": jnp.int32(0), "global_lr": jnp.float32(1.0)}

ROWS += [
    *rows("zoo.federated.fedamd.sample_roles",
          ("wrong type", lambda: fedamd.sample_roles(_key, jnp.ones(3), p=0.2), r"sampled: expected a 1-D bool array"),
          ("out of range", lambda: fedamd.sample_roles(_key, _ACT, p=1.5), r"p: expected a value in \[0.0, 1.0\]"),
          ("both modes", lambda: fedamd.sample_roles(_key, _ACT, p=0.2, period=2), r"p, period: expected exactly one")),
    *rows("zoo.federated.fedamd.miner_update",
          ("local_steps = 0", lambda: fedamd.miner_update(_GRAD, _PARAMS, _PARAMS, *_CLIENT0, lr=0.1, local_steps=0,
                                                          batch_size=2),
           r"local_steps: expected a value in \[1, inf\), got 0"),  # fmt: skip
          ("mismatched v", lambda: fedamd.miner_update(_GRAD, _PARAMS, {"w": jnp.zeros(3)}, *_CLIENT0, lr=0.1,
                                                       local_steps=1, batch_size=2),
           r"v\['w'\]: expected shape \(2,\) \(as x\)")),  # fmt: skip
    *rows("zoo.federated.fedamd.anchor_update",
          ("count = 0", lambda: fedamd.anchor_update(_GRAD, _PARAMS, _DATA.index[0], 0, _DATA.x, _DATA.y),
           r"count \(the client's number of rows.*\[1, 3\], got 0"),
          ("count > n_max", lambda: fedamd.anchor_update(_GRAD, _PARAMS, _DATA.index[0], 4, _DATA.x, _DATA.y),
           r"count"),
          ("wrong shape", lambda: fedamd.anchor_update(_GRAD, _PARAMS, _DATA.index, 2, _DATA.x, _DATA.y),
           r"index_row: expected a 1-D array")),
    *rows("zoo.federated.fedamd.server_step",
          ("broadcast delta", lambda: fedamd.server_step(_SERVER, {"w": jnp.ones((3, 2))}, 1, {"w": jnp.zeros(2)}, 3),
           r"delta_sum\['w'\]: expected shape \(2,\)"),
          ("mismatched dv", lambda: fedamd.server_step(_SERVER, {"w": jnp.ones(2)}, 1, {"b": jnp.zeros(2)}, 3),
           r"dv_sum: expected the pytree structure"),
          ("out of range", lambda: fedamd.server_step(_SERVER, {"w": jnp.ones(2)}, 1, {"w": jnp.zeros(2)}, 0),
           r"num_clients: expected a value in \[1"),
          ("bad server", lambda: fedamd.server_step({"params": {}}, {}, 1, {}, 3),
           r"server: expected the FedAMD server")),
    *rows("zoo.federated.fedamd.optimal_anchor_prob",
          ("out of range", lambda: fedamd.optimal_anchor_prob(5, 6), r"num_sampled: expected a value in \[1, 5\]"),
          ("bad choice", lambda: fedamd.optimal_anchor_prob(5, 2, "optd"), r"rule: expected one of")),
    *rows("zoo.federated.fedamd.make_algorithm",
          ("both modes", lambda: fedamd.make_algorithm(_lin_loss, p=0.2, period=3, local_lr=0.1, local_steps=1,
                                                       batch_size=1), r"p, period: expected exactly one"),  # fmt: skip
          ("out of range", lambda: fedamd.make_algorithm(_lin_loss, local_lr=0.1, local_steps=0, batch_size=1),
           r"local_steps: expected a value in \[1, inf\), got 0")),
    *rows("zoo.federated.fedamd.init_bullseyes",
          ("wrong type", lambda: fedamd.init_bullseyes({"server": {}}, _lin_loss, _DATA),
           r"state: expected a core.SimState")),
    *rows("zoo.federated.fedamd.check_params",
          ("NaN", lambda: fedamd.check_params({"w": jnp.array([0.0, jnp.nan])}),
           r"params\['w'\]: contains 1 non-finite")),
]
