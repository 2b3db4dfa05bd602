"""Rows for the routing family: zoo.routing.core, capsule_dbd, adaptdhm, and their data generators."""

import jax.numpy as jnp
import numpy as np

from zoo.data import ctr, sentiment
from zoo.routing import adaptdhm as ad
from zoo.routing import capsule_dbd as cd
from zoo.routing import core

from ._row import rows

_u = np.ones((3, 2, 2), np.float32)
_x = np.ones((4, 3), np.float32)
_C = np.eye(2, 3, dtype=np.float32)
_nan = np.full((4, 3), np.nan, np.float32)
_model = cd.CapsNetText(vocab_size=10, embed_dim=2, hidden=2, caps_dim=2)
_tok = np.array([[1, 2, 0]], np.int32)
_mask = _tok > 0
_cfg = ad.CTRConfig(vocab_sizes=(5, 3), emb_dim=2, hidden=(2,), K=2)
_xi = np.array([[1, 2], [5, 0]], np.int32)
_params, _state = {"emb": [jnp.zeros((5, 2)), jnp.zeros((3, 2))]}, {"centers": jnp.eye(2, 4)}
_towers = {"shared": [{"w": jnp.ones((4, 1))}], "cluster": [{"w": jnp.ones((2, 4, 1))}]}

ROWS = [
    *rows("zoo.routing.core.dynamic_routing",
          ("out of range", lambda: core.dynamic_routing(_u, 0), "num_iters"),
          ("unknown choice", lambda: core.dynamic_routing(_u, 3, nonlinearity="relu"), "nonlinearity"),
          ("unknown choice", lambda: core.dynamic_routing(_u, 3, agreement="sum"), "agreement"),
          ("missing", lambda: core.dynamic_routing(_u, 3, nonlinearity="ema_l2"), "prev_outputs"),
          ("missing", lambda: core.dynamic_routing(_u[:, :1], 3), "num_outputs"),
          ("wrong shape", lambda: core.dynamic_routing(_u, 3, input_mask=np.ones(4, bool)), "input_mask"),
          ("NaN", lambda: core.dynamic_routing(np.full((3, 2, 2), np.nan), 3), "u_hat")),
    *rows("zoo.routing.core.squash", ("unknown choice", lambda: core.squash(_x, kind="tanh"), "kind")),
    *rows("zoo.routing.core.l2_normalize", ("out of range", lambda: core.l2_normalize(_x, eps=0.0), "eps")),
    *rows("zoo.routing.core.capsule_routing", ("out of range", lambda: core.capsule_routing(_u, 0), "num_iters")),
    *rows("zoo.routing.core.keras_text_capsule_routing",
          ("wrong shape", lambda: core.keras_text_capsule_routing(np.ones((2, 2)), 3), "u_hat")),
    *rows("zoo.routing.core.adaptdhm_route",
          ("out of range", lambda: core.adaptdhm_route(_x, _C, beta=1.5), "beta"),
          ("NaN features", lambda: core.adaptdhm_route(_nan, _C), "x"),
          ("empty", lambda: core.adaptdhm_route(np.ones((0, 3), np.float32), _C), "x"),
          ("wrong shape", lambda: core.adaptdhm_route(_x, np.eye(2, 4, dtype=np.float32)), "centers")),
    *rows("zoo.routing.capsule_dbd.init_ensemble",
          ("out of range", lambda: cd.init_ensemble(_model, None, 0), "num_domains"),
          ("wrong type", lambda: cd.init_ensemble("net", None, 2), "model", TypeError)),
    *rows("zoo.routing.capsule_dbd.ensemble_apply",
          ("token id >= vocab", lambda: cd.ensemble_apply(_model, None, _tok + 20, _mask), "tokens"),
          ("leading padding", lambda: cd.ensemble_apply(_model, None, _tok, _mask[:, ::-1]), "mask")),
    *rows("zoo.routing.capsule_dbd.class_probs",
          ("one class", lambda: cd.class_probs(np.ones((2, 1), np.float32)), "lengths"),
          ("unknown choice", lambda: cd.class_probs(np.ones((2, 2), np.float32), "max"), "readout")),
    *rows("zoo.routing.capsule_dbd.margin_loss",
          ("label out of range", lambda: cd.margin_loss(np.ones((2, 2), np.float32), np.array([0, 2])), "y"),
          ("NaN", lambda: cd.margin_loss(np.full((2, 2), np.nan, np.float32), np.array([0, 1])), "lengths")),
    *rows("zoo.routing.capsule_dbd.class_weights",
          ("C < 2", lambda: cd.class_weights([0, 0], 1), "num_classes"),
          ("empty", lambda: cd.class_weights([], 2), "y")),
    *rows("zoo.routing.capsule_dbd.net_loss",
          ("unknown choice", lambda: cd.net_loss(_model, None, _tok, _mask, np.array([0]), loss="hinge"), "loss")),
    *rows("zoo.routing.capsule_dbd.domain_loss",
          ("missing key", lambda: cd.domain_loss(_model, None, {"tokens": _tok[None]}), "batch")),
    *rows("zoo.routing.capsule_dbd.fit_dbd",
          ("empty domain", lambda: cd.fit_dbd(_tok, _mask, np.array([0]), 10, 2), "domains"),
          ("unknown domain", lambda: cd.fit_dbd(_tok, _mask, np.array([3]), 10, 2), "domains"),
          ("token id >= vocab", lambda: cd.fit_dbd(_tok, _mask, np.array([0]), 2, 1), "tokens"),
          ("empty documents", lambda: cd.fit_dbd(np.zeros((0, 3), np.int32), np.zeros((0, 3), bool),
                                                 np.zeros(0, np.int32), 10, 1), "tokens")),
    *rows("zoo.routing.capsule_dbd.dbd_scores",
          ("token id >= vocab", lambda: cd.dbd_scores(np.ones((2, 2)), _tok, _mask), "tokens")),
    *rows("zoo.routing.capsule_dbd.dbd_weights",
          ("negative", lambda: cd.dbd_weights(-np.ones((2, 2))), "scores")),
    *rows("zoo.routing.capsule_dbd.ensemble_combine",
          ("wrong shape", lambda: cd.ensemble_combine(np.ones((2, 3, 2)), np.ones((3, 3))), "weights")),
    *rows("zoo.routing.capsule_dbd.wcapsule_predict",
          ("unknown domains", lambda: cd.wcapsule_predict(_model, {"w": jnp.ones((2, 1))}, np.ones((10, 3)), _tok,
                                                          _mask), "table")),
    *rows("zoo.routing.capsule_dbd.binary_metrics",
          ("not binary", lambda: cd.binary_metrics([0, 2], [0, 1]), "y")),
    *rows("zoo.routing.adaptdhm.init",
          ("wrong type", lambda: ad.init(None, {"K": 3}), "cfg", TypeError)),
    *rows("zoo.routing.adaptdhm.embed",
          ("field id >= vocab", lambda: ad.embed(_params, _xi, _cfg), "x"),
          ("unknown domain", lambda: ad.embed(_params, np.array([[1, 3]], np.int32), _cfg), "domain id"),
          ("empty batch", lambda: ad.embed(_params, np.zeros((0, 2), np.int32), _cfg), "x")),
    *rows("zoo.routing.adaptdhm.route",
          ("NaN features", lambda: ad.route(_state, np.full((2, 4), np.nan, np.float32), _cfg, train=True), "x_emb"),
          ("missing state", lambda: ad.route({}, np.ones((2, 4), np.float32), _cfg, train=True), "state")),
    *rows("zoo.routing.adaptdhm.towers_logits",
          ("wrong shape", lambda: ad.towers_logits(_towers, np.ones((2, 5), np.float32)), "x_emb")),
    *rows("zoo.routing.adaptdhm.towers_logits_ragged",
          ("wrong shape", lambda: ad.towers_logits_ragged(_towers, np.ones((2, 4), np.float32), np.zeros(3, np.int32)),
           "assign")),
    *rows("zoo.routing.adaptdhm.apply",
          ("missing", lambda: ad.apply(_params, _state, np.array([[1, 2]], np.int32),
                                       ad.CTRConfig(vocab_sizes=(5, 3), model="oracle", emb_dim=2, hidden=(2,))),
           "cluster")),
    *rows("zoo.routing.adaptdhm.loss_fn",
          ("labels not 0/1", lambda: ad.loss_fn(_params, _state, {"x": np.array([[1, 2]], np.int32),
                                                                   "y": np.array([2])}, _cfg), "y"),
          ("missing key", lambda: ad.loss_fn(_params, _state, {"x": _xi}, _cfg), "batch")),
    *rows("zoo.routing.adaptdhm.auc",
          ("one class", lambda: ad.auc([1, 1], [0.2, 0.3]), "y"),
          ("NaN", lambda: ad.auc([0, 1], [np.nan, 0.3]), "p")),
    *rows("zoo.routing.adaptdhm.grouped_auc",
          ("wrong shape", lambda: ad.grouped_auc([0, 1], [0.1, 0.2], [0]), "group")),
    *rows("zoo.routing.adaptdhm.nmi", ("empty", lambda: ad.nmi([], []), "a")),
    *rows("zoo.routing.adaptdhm.adjusted_rand_index",
          ("wrong shape", lambda: ad.adjusted_rand_index([0, 1], [0]), "b")),
    *rows("zoo.data.sentiment.synth_multidomain_sentiment",
          ("out of range", lambda: sentiment.synth_multidomain_sentiment(0, num_domains=0), "num_domains"),
          ("bad probability", lambda: sentiment.synth_multidomain_sentiment(0, agree=1.5), "agree")),
    *rows("zoo.data.sentiment.load_vader_multidomain",
          ("missing path", lambda: sentiment.load_vader_multidomain("/nonexistent/vader"), "path", FileNotFoundError)),
    *rows("zoo.data.sentiment.simple_tokenize", ("wrong type", lambda: sentiment.simple_tokenize(3), "text", TypeError)),
    *rows("zoo.data.sentiment.build_vocab", ("out of range", lambda: sentiment.build_vocab([["a"]], max_size=1), "max_size")),
    *rows("zoo.data.sentiment.encode_texts", ("wrong type", lambda: sentiment.encode_texts([["a"]], {"a": 1}, 3), "vocab")),
    *rows("zoo.data.ctr.synth_multidomain_ctr",
          ("out of range", lambda: ad_ctr_bad(), "num_clusters"),
          ("out of range", lambda: ctr.synth_multidomain_ctr(0, 10, rho=2.0), "rho")),
]


def ad_ctr_bad():
    return ctr.synth_multidomain_ctr(0, 10, num_clusters=0)
