"""Rows for zoo.stats.presto (PRESTO, arXiv 2305.18700): every public function, tiny inputs."""

import jax
import numpy as np

from zoo.stats import presto as pr

from ._row import rows

_rng = np.random.default_rng(0)
_X = _rng.uniform(-1, 1, size=(12, 2)).astype(np.float32)
_y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2], np.int32)
_Xnan = _X.copy()
_Xnan[3, 1] = np.nan
_P = pr.PrestoParams(alpha=np.array([-0.5, 0.5], np.float32), psi=np.zeros((2, 2), np.float32))
_w_neg = np.ones(12, np.float32)
_w_neg[2] = -1.0
_y_out = _y.copy()
_y_out[4] = 3
_key = jax.random.key(0)
_lam = np.array([0.1, 0.01], np.float32)
_folds = (np.arange(12) % 3).astype(np.int32)

M = "zoo.stats.presto."
ROWS = [
    *rows(M + "betas", ("wrong type", lambda: pr.betas((1, 2)), "params", TypeError)),
    *rows(M + "from_betas", ("shape mismatch", lambda: pr.from_betas(np.zeros(2), np.zeros((2, 3))), "B")),
    *rows(M + "cumulative_logits", ("wrong type", lambda: pr.cumulative_logits("p", _X), "params", TypeError)),
    *rows(M + "class_log_probs", ("NaN", lambda: pr.class_log_probs(_P, _Xnan), "X: contains 1 non-finite")),
    *rows(M + "predict_proba",
          ("NaN", lambda: pr.predict_proba(_P, _Xnan), "X: contains 1 non-finite"),
          ("wrong width", lambda: pr.predict_proba(_P, _X[:, :1]), r"X: expected shape")),
    *rows(M + "rare_proba", ("NaN", lambda: pr.rare_proba(_P, _Xnan), "X: contains 1 non-finite")),
    *rows(M + "nll",
          ("label out of range", lambda: pr.nll(_P, _X, _y_out), r"y: expected ordinal labels in \[0, 3\)"),
          ("negative weight", lambda: pr.nll(_P, _X, _y, _w_neg), "w: sample weights must be >= 0"),
          ("NaN", lambda: pr.nll(_P, _Xnan, _y), "X: contains 1 non-finite"),
          ("float labels", lambda: pr.nll(_P, _X, _y.astype(np.float32)), "y: expected integer")),
    *rows(M + "nll_grad", ("label out of range", lambda: pr.nll_grad(_P, _X, _y_out), r"y: expected ordinal labels")),
    *rows(M + "penalty", ("negative lam", lambda: pr.penalty(_P, -1.0), "lam"),
          ("mix out of range", lambda: pr.penalty(_P, 0.1, mix=2.0), "mix")),
    *rows(M + "init_params", ("missing class", lambda: pr.init_params(_X, np.minimum(_y, 1), 3), r"y: .*missing \[2\]")),
    *rows(M + "fit",
          ("K < 3", lambda: pr.fit(_X, np.minimum(_y, 1), 0.1, n_classes=2), "n_classes"),
          ("NaN", lambda: pr.fit(_Xnan, _y, 0.1, n_classes=3), "X: contains 1 non-finite"),
          ("negative lam", lambda: pr.fit(_X, _y, -0.1, n_classes=3), "lam"),
          ("negative weight", lambda: pr.fit(_X, _y, 0.1, n_classes=3, w=_w_neg), "w: sample weights must be >= 0"),
          ("length mismatch", lambda: pr.fit(_X, _y[:-1], 0.1, n_classes=3), "X and y")),
    *rows(M + "standardize",
          ("NaN", lambda: pr.standardize(_Xnan), "X: contains 1 non-finite"),
          ("all-zero weights", lambda: pr.standardize(_X, np.zeros(12, np.float32)), "w: all sample weights are 0")),
    *rows(M + "unstandardize", ("zero sd", lambda: pr.unstandardize(_P, np.zeros(2), np.zeros(2)), "sd")),
    *rows(M + "lambda_max", ("mix out of range", lambda: pr.lambda_max(_X, _y, 3, mix=-0.5), "mix")),
    *rows(M + "lambda_grid", ("ratio out of range", lambda: pr.lambda_grid(1.0, 5, 1.5), "min_ratio"),
          ("n_lambda 0", lambda: pr.lambda_grid(1.0, 0), "n_lambda")),
    *rows(M + "fit_path", ("negative lambda", lambda: pr.fit_path(_X, _y, np.array([0.1, -1.0]), n_classes=3), "lam")),
    *rows(M + "brier_multiclass", ("label out of range", lambda: pr.brier_multiclass(np.full((12, 3), 1 / 3), _y_out),
                                   r"y: expected ordinal labels")),
    *rows(M + "cv_brier",
          ("fold out of range", lambda: pr.cv_brier(_X, _y, _lam, np.full(12, 7, np.int32), n_classes=3, n_folds=3),
           "fold_ids"),
          ("class missing in a training fold",
           lambda: pr.cv_brier(_X, _y, _lam, np.where(_y == 2, 0, 1 + np.arange(12) % 2).astype(np.int32),
                               n_classes=3, n_folds=3), r"fold_ids: training fold 0")),
    *rows(M + "fold_ids_from_key", ("n_folds > n", lambda: pr.fold_ids_from_key(_key, 3, 5), "n_folds")),
    *rows(M + "draw_fold_ids", ("n_folds > n", lambda: pr.draw_fold_ids(_key, _y, 20, 3), "n_folds")),
    *rows(M + "presto_pipeline", ("NaN", lambda: pr.presto_pipeline(_Xnan, _y, _folds, n_classes=3, n_folds=3),
                                  "X: contains 1 non-finite")),
    *rows(M + "fit_presto", ("n_folds > n", lambda: pr.fit_presto(_X[:3], _y[:3], _key, n_classes=3, n_folds=5),
                             "n_folds")),
    *rows(M + "fit_proportional_odds", ("NaN", lambda: pr.fit_proportional_odds(_Xnan, _y, 3), "X: contains 1 non-finite")),
    *rows(M + "fit_rare_logistic", ("no rare rows", lambda: pr.fit_rare_logistic(_X, _y, n_classes=4), "y")),
    *rows(M + "rare_prob_mse", ("length mismatch", lambda: pr.rare_prob_mse(np.zeros(3), np.zeros(4)), "p_true"),
          ("NaN", lambda: pr.rare_prob_mse(np.array([np.nan, 0.1]), np.zeros(2)), "p_hat")),
    *rows(M + "osce_equal_freq", ("length mismatch", lambda: pr.osce_equal_freq(np.zeros(3), np.zeros(4)), "actual")),
]
