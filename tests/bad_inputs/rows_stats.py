"""Rows for the statistics family (zoo.stats), except PRESTO (rows_presto.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.stats import glm
from zoo.stats import predictive_multiplicity as pm
from zoo.stats import quantile_aggregation as qa
from zoo.stats import quantile_base as qb
from zoo.stats import quantile_utils as qu
from zoo.stats import universality_lens as ul

from ._row import rows

NAN = float("nan")
_key = jax.random.PRNGKey(0)

# ----------------------------------------------------------------------------- quantile_utils

T3 = np.array([0.1, 0.5, 0.9], np.float32)  # symmetric, with the median
T2 = np.array([0.25, 0.75], np.float32)
Q = np.array([[0.0, 1.0, 2.0], [1.0, 0.5, 3.0]], np.float32)
Y = np.array([0.5, 1.0], np.float32)
Q_NAN = np.array([[0.0, NAN, 2.0], [1.0, 0.5, 3.0]], np.float32)
Y_NAN = np.array([0.5, NAN], np.float32)
Q0 = np.zeros((0, 3), np.float32)
Y0 = np.zeros((0,), np.float32)

QU = "zoo.stats.quantile_utils."
ROWS = [
    *rows(QU + "check_taus",
          ("NaN", lambda: qu.check_taus([0.1, NAN]), "taus"),
          ("out of range", lambda: qu.check_taus([0.0, 0.5]), r"taus\[0\]"),
          ("not increasing", lambda: qu.check_taus([0.5, 0.5]), "taus"),
          ("wrong shape", lambda: qu.check_taus(np.ones((2, 2)) / 3), "taus"),
          ("empty", lambda: qu.check_taus([]), "taus")),
    *rows(QU + "symmetric_pairs",
          ("not symmetric", lambda: qu.symmetric_pairs([0.1, 0.5, 0.8]), "taus"),
          ("no median", lambda: qu.symmetric_pairs(T2, require_median=True), "taus")),
    *rows(QU + "check_loss",
          ("wrong shape", lambda: qu.check_loss(np.zeros((2, 4)), T3), "e"),
          ("NaN", lambda: qu.check_loss(Q_NAN, T3), "e"),
          ("bad taus", lambda: qu.check_loss(Q, [0.1, 0.5, 1.5]), r"taus\[2\]")),
    *rows(QU + "huber_check_loss",
          ("out of range", lambda: qu.huber_check_loss(Q, T3, -1.0), "delta"),
          ("NaN", lambda: qu.huber_check_loss(Q, T3, NAN), "delta"),
          ("wrong shape", lambda: qu.huber_check_loss(np.zeros(4), T3, 0.1), "e")),
    *rows(QU + "pinball",
          ("empty", lambda: qu.pinball(Q0, Y0, T3), "q"),
          ("NaN", lambda: qu.pinball(Q_NAN, Y, T3), "q"),
          ("wrong shape", lambda: qu.pinball(Q, Y[:1], T3), "y"),
          ("levels", lambda: qu.pinball(Q, Y, T2), "q")),
    *rows(QU + "pinball_per_row",
          ("NaN", lambda: qu.pinball_per_row(Q, Y_NAN, T3), "y"),
          ("empty", lambda: qu.pinball_per_row(Q0, Y0, T3), "q")),
    *rows(QU + "huber_pinball",
          ("out of range", lambda: qu.huber_pinball(Q, Y, T3, -0.5), "delta"),
          ("empty", lambda: qu.huber_pinball(Q0, Y0, T3, 0.1), "q")),
    *rows(QU + "interval_score",
          ("out of range", lambda: qu.interval_score(Y, Y + 1, Y, 1.0), "alpha"),
          ("NaN", lambda: qu.interval_score(Y, Y + 1, Y_NAN, 0.1), "y"),
          ("wrong shape", lambda: qu.interval_score(Y, np.ones(3), Y, 0.1), "u")),
    *rows(QU + "wis",
          ("no median", lambda: qu.wis(Q[:, :2], Y, T2), "taus"),
          ("empty", lambda: qu.wis(Q0, Y0, T3), "q"),
          ("NaN", lambda: qu.wis(Q_NAN, Y, T3), "q")),
    *rows(QU + "wis_from_pinball",
          ("empty", lambda: qu.wis_from_pinball(Q0, Y0, T3), "q")),
    *rows(QU + "coverage",
          ("empty", lambda: qu.coverage(Q0, Y0, T3), "q"),
          ("NaN", lambda: qu.coverage(Q, Y_NAN, T3), "y")),
    *rows(QU + "interval_coverage",
          ("not symmetric", lambda: qu.interval_coverage(Q, Y, [0.1, 0.5, 0.8]), "taus"),
          ("empty", lambda: qu.interval_coverage(Q0, Y0, T3), "q")),
    *rows(QU + "mace",
          ("empty", lambda: qu.mace(Q0, Y0, T3), "q"),
          ("NaN", lambda: qu.mace(Q_NAN, Y, T3), "q")),
    *rows(QU + "crossing_rate",
          ("empty", lambda: qu.crossing_rate(Q0), "q"),
          ("NaN", lambda: qu.crossing_rate(Q_NAN), "q"),
          ("wrong shape", lambda: qu.crossing_rate(Y), "q")),
    *rows(QU + "sort_quantiles",
          ("NaN", lambda: qu.sort_quantiles(Q_NAN), "q"),
          ("scalar", lambda: qu.sort_quantiles(1.0), "q"),
          ("no levels", lambda: qu.sort_quantiles(np.zeros((2, 0))), "q")),
    *rows(QU + "isotonic",
          ("NaN", lambda: qu.isotonic(Q_NAN), "q"),
          ("inf", lambda: qu.isotonic(np.array([0.0, np.inf, 1.0])), "q"),
          ("no levels", lambda: qu.isotonic(np.zeros((2, 0))), "q")),
    *rows(QU + "fix_crossing_median",
          ("NaN", lambda: qu.fix_crossing_median(Q_NAN), "q"),
          ("no levels", lambda: qu.fix_crossing_median(np.zeros((2, 0))), "q")),
    *rows(QU + "soft_sort",
          ("out of range", lambda: qu.soft_sort(Q, 0.0), "strength"),
          ("NaN", lambda: qu.soft_sort(Q_NAN), "q"),
          ("NaN strength", lambda: qu.soft_sort(Q, NAN), "strength")),
    *rows(QU + "monotonize",
          ("bad choice", lambda: qu.monotonize(Q, "cummax"), "how"),
          ("NaN", lambda: qu.monotonize(Q_NAN, "iso"), "q")),
    *rows(QU + "crossing_penalty",
          ("empty", lambda: qu.crossing_penalty(Q0), "q"),
          ("NaN delta", lambda: qu.crossing_penalty(Q, NAN), "delta"),
          ("wrong shape", lambda: qu.crossing_penalty(Q, np.zeros((2, 2))), "delta")),
    *rows(QU + "margin_vec",
          ("bad taus", lambda: qu.margin_vec([0.5, 0.1]), "taus"),
          ("NaN", lambda: qu.margin_vec(T3, NAN), "scale")),
    *rows(QU + "margin_adapt",
          ("NaN", lambda: qu.margin_adapt(Y_NAN, T3, 0.1), "residuals"),
          ("empty", lambda: qu.margin_adapt(Y0, T3, 0.1), "residuals"),
          ("NaN scale", lambda: qu.margin_adapt(Y, T3, NAN), "scale")),
    *rows(QU + "cqr_index",
          ("out of range", lambda: qu.cqr_index(0, 0.1), "n"),
          ("out of range alpha", lambda: qu.cqr_index(10, 1.0), "alpha"),
          ("NaN", lambda: qu.cqr_index(10, NAN), "alpha"),
          ("wrong type", lambda: qu.cqr_index(2.5, 0.1), "n")),
    *rows(QU + "cqr_scores",
          ("not symmetric", lambda: qu.cqr_scores(Q, Y, [0.1, 0.5, 0.8]), "taus"),
          ("NaN", lambda: qu.cqr_scores(Q, Y_NAN, T3), "y")),
    *rows(QU + "cqr_calibrate",
          ("empty", lambda: qu.cqr_calibrate(Q0, Y0, T3), "q"),
          ("NaN", lambda: qu.cqr_calibrate(Q_NAN, Y, T3), "q")),
    *rows(QU + "cqr_apply",
          ("wrong shape", lambda: qu.cqr_apply(Q, np.zeros(2), T3), "qhat"),
          ("NaN", lambda: qu.cqr_apply(Q, np.array([NAN]), T3), "qhat"),
          ("NaN q", lambda: qu.cqr_apply(Q_NAN, np.zeros(1), T3), "q")),
]

# ----------------------------------------------------------------------------- glm

GX = np.array([[0.0, 1.0], [1.0, -1.0], [2.0, 0.5], [-1.0, 0.3], [0.5, 2.0], [-0.7, -0.2]])
GY = np.array([0, 1, 1, 0, 1, 0])
GXt = np.concatenate([GX, np.ones((6, 1))], axis=1).astype(np.float32)
GYs = (2.0 * GY - 1.0).astype(np.float32)
GW = np.zeros(3, np.float32)
GM = np.array([1.0, 1.0, 0.0], np.float32)
GXt_NAN = GXt.copy()
GXt_NAN[1, 0] = NAN

G = "zoo.stats.glm."
ROWS += [
    *rows(G + "add_intercept",
          ("wrong shape", lambda: glm.add_intercept(np.ones(3)), "X")),
    *rows(G + "penalty_mask",
          ("out of range", lambda: glm.penalty_mask(-1), "d"),
          ("wrong type", lambda: glm.penalty_mask("3"), "d", TypeError)),
    *rows(G + "logistic_objective",
          ("wrong shape", lambda: glm.logistic_objective(np.zeros(4), GXt, GYs, 0.1, GM), "w"),
          ("out of range", lambda: glm.logistic_objective(GW, GXt, GYs, -0.1, GM), "lam"),
          ("NaN", lambda: glm.logistic_objective(GW, GXt_NAN, GYs, 0.1, GM), "Xt")),
    *rows(G + "logistic_grad",
          ("wrong shape", lambda: glm.logistic_grad(GW, GXt, GYs[:4], 0.1, GM), "ys"),
          ("wrong shape mask", lambda: glm.logistic_grad(GW, GXt, GYs, 0.1, GM[:2]), "pen_mask")),
    *rows(G + "logistic_hess",
          ("wrong shape", lambda: glm.logistic_hess(GW, GXt, GYs, 0.1, GM, sw=np.ones(5)), "sw"),
          ("NaN", lambda: glm.logistic_hess(GW, GXt_NAN, GYs, 0.1, GM), "Xt")),
    *rows(G + "newton_logistic",
          ("out of range", lambda: glm.newton_logistic(GXt, GYs, 0.1, GM, max_iter=0), "max_iter"),
          ("wrong shape", lambda: glm.newton_logistic(GXt, GYs, 0.1, GM, tilt=np.zeros(2)), "tilt"),
          ("out of range shrink", lambda: glm.newton_logistic(GXt, GYs, 0.1, GM, shrink=1.5), "shrink"),
          ("NaN", lambda: glm.newton_logistic(GXt_NAN, GYs, 0.1, GM), "Xt")),
    *rows(G + "fit_logistic",
          ("NaN", lambda: glm.fit_logistic(np.where(GX == 0.0, NAN, GX), GY), "X"),
          ("labels", lambda: glm.fit_logistic(GX, GY + 1), "y"),
          ("out of range", lambda: glm.fit_logistic(GX, GY, lam=-1.0), "lam"),
          ("wrong shape", lambda: glm.fit_logistic(GX, GY[:5]), "X and y"),
          ("wrong type", lambda: glm.fit_logistic(GX.tolist(), GY.tolist(), sample_weight=[-1.0] * 6),
           "sample_weight")),
]

# ----------------------------------------------------------------------------- predictive_multiplicity

PROB = pm.make_problem(GX, GY, lam=0.1)
PW = jnp.zeros(3, PROB.Xt.dtype)
FAKE_VPR = {"hi": jnp.ones(2), "lo": jnp.zeros(2), "p0": jnp.full(2, 0.5)}
H3 = jnp.eye(3)

PM = "zoo.stats.predictive_multiplicity."
ROWS += [
    *rows(PM + "make_problem",
          ("NaN", lambda: pm.make_problem(np.where(GX == 0.0, NAN, GX), GY), "X"),
          ("labels", lambda: pm.make_problem(GX, GY * 2), "y"),
          ("out of range", lambda: pm.make_problem(GX, GY, lam=-1.0), "lam")),
    *rows(PM + "objective",
          ("wrong shape", lambda: pm.objective(jnp.zeros(4), PROB), "w"),
          ("wrong type", lambda: pm.objective(PW, {"Xt": PROB.Xt}), "prob", TypeError),
          ("NaN", lambda: pm.objective(jnp.array([NAN, 0.0, 0.0]), PROB), "w")),
    *rows(PM + "grad",
          ("wrong shape", lambda: pm.grad(jnp.zeros((3, 1)), PROB), "w")),
    *rows(PM + "hess",
          ("wrong shape", lambda: pm.hess(jnp.zeros(2), PROB), "w")),
    *rows(PM + "fit_baseline",
          ("wrong type", lambda: pm.fit_baseline((GX, GY)), "prob", TypeError),
          ("out of range", lambda: pm.fit_baseline(PROB, max_iter=0), "max_iter")),
    *rows(PM + "tilted_solve",
          ("wrong shape", lambda: pm.tilted_solve(PROB, jnp.ones(2), 1.0, PW), "x"),
          ("wrong shape nu", lambda: pm.tilted_solve(PROB, PROB.Xt[0], jnp.ones(2), PW), "nu")),
    *rows(PM + "leverage",
          ("wrong shape", lambda: pm.leverage(PROB, PW, jnp.ones((2, 5))), "eval_x"),
          ("wrong shape w0", lambda: pm.leverage(PROB, jnp.zeros(5), PROB.Xt), "w0"),
          ("wrong type", lambda: pm.leverage(None, PW, PROB.Xt), "prob", TypeError)),
    *rows(PM + "extreme_score",
          ("out of range", lambda: pm.extreme_score(PROB, PW, 0.5, H3, PROB.Xt[0], 0.1, 2.0), "sign"),
          ("out of range eps", lambda: pm.extreme_score(PROB, PW, 0.5, H3, PROB.Xt[0], -0.1, 1.0), "eps"),
          ("wrong shape", lambda: pm.extreme_score(PROB, PW, 0.5, jnp.eye(2), PROB.Xt[0], 0.1, 1.0), "H0inv")),
    *rows(PM + "viable_prediction_range",
          ("out of range", lambda: pm.viable_prediction_range(PROB, -0.1), "eps"),
          ("NaN", lambda: pm.viable_prediction_range(PROB, NAN), "eps"),
          ("wrong shape", lambda: pm.viable_prediction_range(PROB, 0.1, eval_x=np.ones((2, 4))), "eval_x"),
          ("wrong type", lambda: pm.viable_prediction_range(PROB, 0.1, baseline=PW), "baseline")),
    *rows(PM + "ambiguity_mask",
          ("out of range", lambda: pm.ambiguity_mask(FAKE_VPR, 0.0), "delta"),
          ("wrong type", lambda: pm.ambiguity_mask([1.0], 0.1), "vpr")),
    *rows(PM + "ambiguity",
          ("out of range", lambda: pm.ambiguity(FAKE_VPR, 1.5), "delta"),
          ("NaN", lambda: pm.ambiguity(FAKE_VPR, NAN), "delta")),
    *rows(PM + "discrepancy_bounds",
          ("missing keys", lambda: pm.discrepancy_bounds(PROB, FAKE_VPR, 0.1), "vpr"),
          ("wrong type", lambda: pm.discrepancy_bounds("prob", FAKE_VPR, 0.1), "prob", TypeError)),
    *rows(PM + "quadratic_vpr",
          ("out of range", lambda: pm.quadratic_vpr(PROB, PW, -0.1, PROB.Xt), "eps"),
          ("wrong shape", lambda: pm.quadratic_vpr(PROB, PW, 0.1, jnp.ones((2, 5))), "eval_x"),
          ("wrong shape w0", lambda: pm.quadratic_vpr(PROB, jnp.zeros(2), 0.1, PROB.Xt), "w0")),
    *rows(PM + "score_constrained_vpr",
          ("out of range", lambda: pm.score_constrained_vpr(PROB, PW, 0.5, -1.0, PROB.Xt), "eps"),
          ("wrong shape", lambda: pm.score_constrained_vpr(PROB, PW, 0.5, 0.1, PROB.Xt[0]), "eval_x"),
          ("out of range n_bisect", lambda: pm.score_constrained_vpr(PROB, PW, 0.5, 0.1, PROB.Xt, 0), "n_bisect")),
    *rows(PM + "load_breast_cancer_problem",
          ("out of range", lambda: pm.load_breast_cancer_problem(lam=-1.0), "lam")),
    *rows(PM + "make_two_groups",
          ("out of range", lambda: pm.make_two_groups(0, n_maj=0), "n_maj"),
          ("wrong shape", lambda: pm.make_two_groups(0, beta_min=(1.0,)), "beta_min")),
    *rows(PM + "add_outliers",
          ("wrong shape", lambda: pm.add_outliers(0, GX[:, 0], GY), "X"),
          ("out of range", lambda: pm.add_outliers(0, GX, GY, k=-1), "k"),
          ("NaN", lambda: pm.add_outliers(0, GX, GY, scale=NAN), "scale")),
    *rows(PM + "make_separable",
          ("out of range", lambda: pm.make_separable(0, n=0), "n"),
          ("out of range margin", lambda: pm.make_separable(0, margin=-1.0), "margin")),
]

# ----------------------------------------------------------------------------- quantile_base

BX = np.arange(12, dtype=np.float32).reshape(6, 2)
BY = np.arange(6, dtype=np.float32)
BX_NAN = BX.copy()
BX_NAN[2, 1] = NAN

QB = "zoo.stats.quantile_base."
ROWS += [
    *rows(QB + "make_hetero_skew",
          ("out of range", lambda: qb.make_hetero_skew(0, n=0), "n"),
          ("out of range d", lambda: qb.make_hetero_skew(0, d=2), "d")),
    *rows(QB + "load_regression",
          ("bad choice", lambda: qb.load_regression("mnist"), "name")),
    *rows(QB + "linear_qr",
          ("out of range", lambda: qb.linear_qr(lr=-1.0), "lr"),
          ("unknown field", lambda: qb.linear_qr(depth=3), "depth", TypeError)),
    *rows(QB + "knn_quantile",
          ("out of range", lambda: qb.knn_quantile(0), "k"),
          ("wrong type", lambda: qb.knn_quantile(2.5), "k")),
    *rows(QB + "gaussian_knn",
          ("out of range", lambda: qb.gaussian_knn(-1), "k")),
    *rows(QB + "mlp_joint_qr",
          ("out of range", lambda: qb.mlp_joint_qr(hidden=0), "hidden")),
    *rows(QB + "mlp_single_qr",
          ("out of range", lambda: qb.mlp_single_qr(layers=0), "layers")),
    *rows(QB + "gaussian_mlp",
          ("out of range", lambda: qb.gaussian_mlp(num_steps=0), "num_steps"),
          ("NaN", lambda: qb.gaussian_mlp(huber=NAN), "huber")),
    *rows(QB + "hgb_quantile",
          ("out of range", lambda: qb.hgb_quantile(max_iter=0), "max_iter"),
          ("out of range lr", lambda: qb.hgb_quantile(learning_rate=0.0), "learning_rate")),
    *rows(QB + "kfold_ids",
          ("out of range", lambda: qb.kfold_ids(_key, 5, 1), "n_folds"),
          ("out of range n", lambda: qb.kfold_ids(_key, 0), "n"),
          ("wrong type", lambda: qb.kfold_ids("key", 5, 2), "key")),
    *rows(QB + "oof_predictions",
          ("wrong type", lambda: qb.oof_predictions("knn", BX, BY, T3, key=_key), "model"),
          ("NaN", lambda: qb.oof_predictions(qb.knn_quantile(2), BX_NAN, BY, T3, key=_key), "X"),
          ("wrong shape", lambda: qb.oof_predictions(qb.knn_quantile(2), BX, BY[:4], T3, key=_key), "y"),
          ("bad folds", lambda: qb.oof_predictions(qb.knn_quantile(2), BX, BY, T3, key=_key, folds=np.zeros(6, int)),
           "folds"),
          ("wrong shape X_test", lambda: qb.oof_predictions(qb.knn_quantile(2), BX, BY, T3, key=_key,
                                                            X_test=np.ones((2, 3))), "X_test")),
]

# ----------------------------------------------------------------------------- quantile_aggregation

AZ = np.sort(np.arange(24, dtype=np.float32).reshape(4, 2, 3) % 5, axis=-1)  # n=4, M=2, m=3
AY = np.arange(4, dtype=np.float32)
AX = np.ones((4, 2), np.float32)
AZ_NAN = AZ.copy()
AZ_NAN[0, 1, 2] = NAN
GP = {"logits": jnp.zeros((2, 3))}  # a Global-Medium aggregator for (M, m) = (2, 3)
CFG = qa.AggregatorConfig(num_steps=2, eval_every=1)
LP = qa.init_local(_key, 2, 2, 3, "coarse", hidden=4, layers=1)
_apply = qa.global_apply_fn("medium")

QA = "zoo.stats.quantile_aggregation."
ROWS += [
    *rows(QA + "n_logits",
          ("bad choice", lambda: qa.n_logits(2, 3, "huge"), "kind"),
          ("out of range", lambda: qa.n_logits(0, 3, "fine"), "M")),
    *rows(QA + "weights_from_logits",
          ("bad choice", lambda: qa.weights_from_logits(jnp.zeros(2), kind="global"), "kind"),
          ("wrong shape", lambda: qa.weights_from_logits(jnp.zeros(2), kind="medium"), "logits"),
          ("NaN", lambda: qa.weights_from_logits(jnp.array([0.0, NAN]), kind="coarse"), "logits")),
    *rows(QA + "mix",
          ("wrong shape", lambda: qa.mix(jnp.ones(3) / 3, AZ, kind="coarse"), "weights"),
          ("wrong shape Z", lambda: qa.mix(jnp.ones(2) / 2, AZ[0], kind="coarse"), "Z"),
          ("NaN", lambda: qa.mix(jnp.ones(2) / 2, AZ_NAN, kind="coarse"), "Z")),
    *rows(QA + "init_global",
          ("out of range", lambda: qa.init_global(_key, 0, 3, "coarse"), "M"),
          ("wrong type", lambda: qa.init_global(_key, 2.0, 3, "coarse"), "M")),
    *rows(QA + "global_weights",
          ("wrong type", lambda: qa.global_weights(jnp.zeros(2), kind="coarse"), "params"),
          ("bad choice", lambda: qa.global_weights(GP, kind="local"), "kind")),
    *rows(QA + "apply_global",
          ("wrong shape", lambda: qa.apply_global({"logits": jnp.zeros(3)}, AZ, kind="coarse"), "logits"),
          ("NaN", lambda: qa.apply_global(GP, AZ_NAN, kind="medium"), "Z")),
    *rows(QA + "init_local",
          ("out of range", lambda: qa.init_local(_key, 2, 2, 3, "coarse", hidden=0), "hidden"),
          ("out of range dropout", lambda: qa.init_local(_key, 2, 2, 3, "coarse", dropout=1.0), "dropout"),
          ("out of range d", lambda: qa.init_local(_key, 0, 2, 3, "coarse"), "d")),
    *rows(QA + "local_weights",
          ("wrong type", lambda: qa.local_weights(GP, AX, 2, 3, kind="coarse"), "params"),
          ("wrong shape", lambda: qa.local_weights(LP, AX[0], 2, 3, kind="coarse"), "x"),
          ("mismatch", lambda: qa.local_weights(LP, AX, 2, 3, kind="medium"), "params"),
          ("no rng", lambda: qa.local_weights(LP, AX, 2, 3, kind="coarse", train=True, dropout=0.5), "rng")),
    *rows(QA + "apply_local",
          ("wrong shape", lambda: qa.apply_local(LP, AX[:3], AZ, kind="coarse"), "x"),
          ("NaN", lambda: qa.apply_local(LP, AX, AZ_NAN, kind="coarse"), "Z")),
    *rows(QA + "average_quantiles",
          ("wrong shape", lambda: qa.average_quantiles(AZ[0]), "Z"),
          ("NaN", lambda: qa.average_quantiles(AZ_NAN), "Z")),
    *rows(QA + "median_quantiles",
          ("NaN", lambda: qa.median_quantiles(AZ_NAN), "Z"),
          ("no models", lambda: qa.median_quantiles(np.zeros((4, 0, 3))), "Z")),
    *rows(QA + "best_single",
          ("wrong shape", lambda: qa.best_single(AZ, AY[:3], T3), "y"),
          ("levels", lambda: qa.best_single(AZ, AY, T2), "Z")),
    *rows(QA + "aggregator_loss",
          ("bad choice", lambda: qa.aggregator_loss(GP, {"Z": AZ, "y": AY}, apply_fn=_apply, taus=T3,
                                                    monotone="cummax"), "monotone"),
          ("not callable", lambda: qa.aggregator_loss(GP, {"Z": AZ, "y": AY}, apply_fn=None, taus=T3), "apply_fn"),
          ("bad taus", lambda: qa.aggregator_loss(GP, {"Z": AZ, "y": AY}, apply_fn=_apply, taus=[0.5, 0.1, 0.9]),
           "taus")),
    *rows(QA + "make_loss_fn",
          ("not callable", lambda: qa.make_loss_fn("medium"), "apply_fn")),
    *rows(QA + "global_apply_fn",
          ("bad choice", lambda: qa.global_apply_fn("big"), "kind")),
    *rows(QA + "local_apply_fn",
          ("bad choice", lambda: qa.local_apply_fn("big"), "kind"),
          ("out of range", lambda: qa.local_apply_fn("coarse", dropout=-0.1), "dropout")),
    *rows(QA + "predict",
          ("bad choice", lambda: qa.predict(GP, None, AZ, kind="medium", post="round"), "post"),
          ("no x", lambda: qa.predict(LP, None, AZ, kind="coarse"), "x"),
          ("wrong type", lambda: qa.predict([0.0], None, AZ, kind="medium"), "params"),
          ("NaN", lambda: qa.predict(GP, None, AZ_NAN, kind="medium"), "Z")),
    *rows(QA + "padded_size",
          ("out of range", lambda: qa.padded_size(0), "n"),
          ("wrong type", lambda: qa.padded_size(3.5), "n")),
    *rows(QA + "pack_data",
          ("NaN", lambda: qa.pack_data(None, AZ_NAN, AY, T3), "Z"),
          ("wrong shape", lambda: qa.pack_data(AX[:3], AZ, AY, T3), "x"),
          ("negative", lambda: qa.pack_data(None, AZ, AY, T3, w=-np.ones(4)), "w"),
          ("out of range", lambda: qa.pack_data(None, AZ, AY, T3, pad_to=2), "pad_to")),
    *rows(QA + "make_aggregator_run",
          ("wrong type", lambda: qa.make_aggregator_run({"kind": "medium"}), "cfg")),
    *rows(QA + "fit_aggregator",
          ("wrong type", lambda: qa.fit_aggregator(_key, None, AZ, AY, T3, cfg="medium"), "cfg"),
          ("NaN", lambda: qa.fit_aggregator(_key, None, AZ_NAN, AY, T3, CFG), "Z"),
          ("no x", lambda: qa.fit_aggregator(_key, None, AZ, AY, T3, qa.AggregatorConfig(local=True)), "x")),
    *rows(QA + "fit_aggregator_population",
          ("wrong type", lambda: qa.fit_aggregator_population(_key, {}, "medium"), "cfg"),
          ("not stacked", lambda: qa.fit_aggregator_population(_key, qa.pack_data(None, AZ, AY, T3), CFG), "data")),
    *rows(QA + "fit_global_lp",
          ("bad choice", lambda: qa.fit_global_lp(AZ, AY, T3, kind="any"), "kind"),
          ("NaN", lambda: qa.fit_global_lp(AZ, np.where(AY > 1, NAN, AY), T3), "y")),
]

# ----------------------------------------------------------------------------- universality_lens

GRID = (2 * np.arange(4) + 1) / 8
LPRIOR = np.full(4, -math.log(4))
UP = {"w": jnp.zeros(3)}
MLP = ul.mlp_init(_key, 2, 3, 1)
XB = jnp.ones((4, 2))
P2 = jnp.array([[0.3, 0.7], [0.5, 0.5]])


def _pot(p, b):
    return jnp.sum(p["w"] ** 2)


UL = "zoo.stats.universality_lens."
ROWS += [
    *rows(UL + "kl_bernoulli",
          ("out of range", lambda: ul.kl_bernoulli(1.5, 0.5), "p"),
          ("NaN", lambda: ul.kl_bernoulli(0.5, NAN), "q"),
          ("out of range base", lambda: ul.kl_bernoulli(0.5, 0.5, base=1.0), "base")),
    *rows(UL + "kl_categorical",
          ("not a distribution", lambda: ul.kl_categorical(jnp.array([0.5, 0.2]), jnp.array([0.5, 0.5])), "p"),
          ("not a distribution q", lambda: ul.kl_categorical(P2, 2 * P2), "q"),
          ("wrong shape", lambda: ul.kl_categorical(P2, P2[0]), "q"),
          ("NaN", lambda: ul.kl_categorical(jnp.array([NAN, 1.0]), jnp.array([0.5, 0.5])), "p")),
    *rows(UL + "finite_mixture_online_regret",
          ("not normalised", lambda: ul.finite_mixture_online_regret(0.3, GRID, LPRIOR + 0.1, 10), "log_prior"),
          ("out of range", lambda: ul.finite_mixture_online_regret(1.0, GRID, LPRIOR, 10), "theta0"),
          ("out of range n", lambda: ul.finite_mixture_online_regret(0.3, GRID, LPRIOR, 0), "n"),
          ("NaN", lambda: ul.finite_mixture_online_regret(0.3, np.r_[GRID[:3], NAN], LPRIOR, 10), "grid")),
    *rows(UL + "batch_regret",
          ("out of range", lambda: ul.batch_regret(0.3, GRID, LPRIOR, 0), "t"),
          ("wrong shape", lambda: ul.batch_regret(0.3, GRID, LPRIOR[:3], 2), "log_prior")),
    *rows(UL + "hypothesis_weight",
          ("out of range", lambda: ul.hypothesis_weight(np.ones(4), LPRIOR, -0.1), "eps"),
          ("negative", lambda: ul.hypothesis_weight(-np.ones(4), LPRIOR, 0.1), "div"),
          ("empty", lambda: ul.hypothesis_weight(np.ones(0), LPRIOR[:0], 0.1), "div")),
    *rows(UL + "regret_bound",
          ("out of range", lambda: ul.regret_bound(np.ones(4), LPRIOR, 0), "n"),
          ("NaN", lambda: ul.regret_bound(np.r_[1.0, NAN, 1.0, 1.0], LPRIOR, 5), "div")),
    *rows(UL + "bates_pushforward_prior",
          ("out of range", lambda: ul.bates_pushforward_prior(0), "D"),
          ("out of range num_points", lambda: ul.bates_pushforward_prior(2, 1), "num_points"),
          ("wrong type", lambda: ul.bates_pushforward_prior(2.5), "D")),
    *rows(UL + "set_chain_key",
          ("wrong type", lambda: ul.set_chain_key({}, jnp.ones(3)), "key")),
    *rows(UL + "init_with_key",
          ("wrong type", lambda: ul.init_with_key("sgld", UP, _key), "optimizer"),
          ("bad key", lambda: ul.init_with_key(ul.sgld(0.1), UP, 3), "key")),
    *rows(UL + "sgld",
          ("out of range", lambda: ul.sgld(0.1, -1.0), "temperature"),
          ("NaN", lambda: ul.sgld(0.1, NAN), "temperature"),
          ("out of range lr", lambda: ul.sgld(0.0), "learning_rate"),
          ("out of range eps", lambda: ul.sgld(0.1, preconditioner="rmsprop", precond_eps=0.0), "precond_eps"),
          ("bad choice", lambda: ul.sgld(0.1, preconditioner="adam"), "preconditioner")),
    *rows(UL + "polynomial_schedule",
          ("out of range", lambda: ul.polynomial_schedule(0.1, 1.0, 0.5), "gamma"),
          ("NaN", lambda: ul.polynomial_schedule(NAN, 1.0), "a")),
    *rows(UL + "cyclical_schedule",
          ("out of range", lambda: ul.cyclical_schedule(0.1, 0), "cycle_len"),
          ("out of range a0", lambda: ul.cyclical_schedule(-0.1, 5), "a0")),
    *rows(UL + "gaussian_log_prior",
          ("out of range", lambda: ul.gaussian_log_prior(0.0), "prior_std"),
          ("NaN", lambda: ul.gaussian_log_prior(NAN), "prior_std")),
    *rows(UL + "posterior_potential",
          ("out of range", lambda: ul.posterior_potential(lambda p, b: 0.0, None, 0), "n_data"),
          ("not callable", lambda: ul.posterior_potential("nll", None, 4), "loglik_fn")),
    *rows(UL + "run_chains",
          ("out of range", lambda: ul.run_chains(_key, lambda k: UP, _pot, {"y": jnp.ones(4)}, num_chains=1, steps=10,
                                                 burn_in=2, thin=0, optimizer=ul.sgld(0.1)), "thin"),
          ("out of range burn_in", lambda: ul.run_chains(_key, lambda k: UP, _pot, {"y": jnp.ones(4)}, num_chains=1,
                                                         steps=10, burn_in=10, thin=1, optimizer=ul.sgld(0.1)),
           "burn_in"),
          ("wrong shape", lambda: ul.run_chains(_key, lambda k: UP, _pot, {"y": jnp.ones(4), "x": jnp.ones(3)},
                                                num_chains=1, steps=10, burn_in=2, thin=2, optimizer=ul.sgld(0.1)),
           "data")),
    *rows(UL + "logits_to_log_probs",
          ("wrong type", lambda: ul.logits_to_log_probs("x"), "logits"),
          ("NaN", lambda: ul.logits_to_log_probs(jnp.array([[NAN, 0.0]])), "logits"),
          ("scalar", lambda: ul.logits_to_log_probs(jnp.asarray(1.0)), "logits")),
    *rows(UL + "sample_log_probs",
          ("not callable", lambda: ul.sample_log_probs(None, MLP, XB), "apply_fn"),
          ("NaN", lambda: ul.sample_log_probs(ul.mlp_apply, MLP, jnp.full((2, 2), NAN)), "x")),
    *rows(UL + "ensemble_log_predictive",
          ("empty", lambda: ul.ensemble_log_predictive(ul.mlp_apply, {"layers": []}, XB), "samples"),
          ("out of range", lambda: ul.ensemble_log_predictive(ul.mlp_apply, MLP, XB, sample_axes=0), "sample_axes")),
    *rows(UL + "mixture_regret",
          ("wrong shape", lambda: ul.mixture_regret(P2, jnp.zeros((2, 3))), "log_q"),
          ("not a distribution", lambda: ul.mixture_regret(jnp.full((2, 2), 0.2), jnp.zeros((2, 2))), "p_true"),
          ("NaN", lambda: ul.mixture_regret(jnp.full((2, 2), NAN), jnp.zeros((2, 2))), "p_true")),
    *rows(UL + "make_teacher_student",
          ("out of range", lambda: ul.make_teacher_student(_key, d=0), "d"),
          ("bad key", lambda: ul.make_teacher_student(jnp.ones(3)), "key"),
          ("bad dtype", lambda: ul.make_teacher_student(_key, n_test=2, dtype=jnp.int32), "dtype", TypeError)),
    *rows(UL + "mlp_init",
          ("out of range", lambda: ul.mlp_init(_key, 4, 0, 1), "width"),
          ("wrong type", lambda: ul.mlp_init(_key, 4.0, 3, 1), "d"),
          ("bad key", lambda: ul.mlp_init(0, 4, 3, 1), "key")),
    *rows(UL + "mlp_apply",
          ("wrong shape", lambda: ul.mlp_apply(MLP, jnp.ones((2, 5))), "x"),
          ("NaN", lambda: ul.mlp_apply(MLP, jnp.full((2, 2), NAN)), "x"),
          ("wrong type", lambda: ul.mlp_apply({"w": 1}, XB), "params")),
    *rows(UL + "mlp_log_likelihood",
          ("missing y", lambda: ul.mlp_log_likelihood(MLP, {"x": XB}), "batch"),
          ("wrong shape", lambda: ul.mlp_log_likelihood(MLP, {"x": XB, "y": jnp.zeros(3, jnp.int32)}), r"batch\['y'\]"),
          ("out of range", lambda: ul.mlp_log_likelihood(MLP, {"x": XB, "y": jnp.full(4, 2)}), r"batch\['y'\]"),
          ("wrong type", lambda: ul.mlp_log_likelihood(MLP, {"x": XB, "y": jnp.zeros(4)}), r"batch\['y'\]")),
    *rows(UL + "max_hessian_eigenvalue",
          ("out of range", lambda: ul.max_hessian_eigenvalue(lambda p: 0.0, UP, _key, num_iters=0), "num_iters"),
          ("not callable", lambda: ul.max_hessian_eigenvalue(None, UP, _key), "fn"),
          ("bad key", lambda: ul.max_hessian_eigenvalue(lambda p: 0.0, UP, 0), "key")),
]
