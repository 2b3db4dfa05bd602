"""Rows for zoo.representation.ms_loss (MS loss, arXiv 1904.06627) and its kernel zoo.kernels.pair_loss."""

import jax
import numpy as np

from zoo.kernels import pair_loss as pk
from zoo.representation import ms_loss as ms

from ._row import rows

_y = np.array([0, 0, 1, 1, 2, 2], np.int32)
_E = np.eye(6, 3, dtype=np.float32)[[0, 0, 1, 1, 2, 2]]
_Enan = _E.copy()
_Enan[2, 1] = np.nan
_S = _E @ _E.T
_same = np.zeros(6, np.int32)
_key = jax.random.key(0)
_table, _counts = ms.class_table(_y)
_pos, _neg = ms.pair_masks(_y)

M = "zoo.representation.ms_loss."
K = "zoo.kernels.pair_loss."
ROWS = [
    *rows(M + "ms_loss",
          ("NaN", lambda: ms.ms_loss(_Enan, _y), "E: contains 1 non-finite"),
          ("single class", lambda: ms.ms_loss(_E, _same), "labels: all 6 labels are the same class"),
          ("wrong length", lambda: ms.ms_loss(_E, _y[:5]), r"labels: expected shape \(6\)"),
          ("not 2-D", lambda: ms.ms_loss(_E[0], _y), "E: expected a 2-D array"),
          ("out of range", lambda: ms.ms_loss(_E, _y, alpha=0.0), "alpha: expected a value in"),
          ("out of range", lambda: ms.ms_loss(_E, _y, eps=-0.1), "eps: expected a value in"),
          ("wrong type", lambda: ms.ms_loss(_E, _y, mining="yes"), "mining: expected a bool", TypeError),
          ("one row", lambda: ms.ms_loss(_E[:1], _y[:1]), "E: expected at least 2 rows")),
    *rows(M + "ms_loss_from_logits",
          ("NaN", lambda: ms.ms_loss_from_logits(_Enan, _y), "z: contains 1 non-finite"),
          ("out of range", lambda: ms.ms_loss_from_logits(_E, _y, beta=-1.0), "beta: expected a value in")),
    *rows(M + "ms_mine",
          ("shape mismatch", lambda: ms.ms_mine(_S, _pos[:5], _neg, 0.1), "pos: expected shape"),
          ("out of range", lambda: ms.ms_mine(_S, _pos, _neg, -1.0), "eps: expected a value in")),
    *rows(M + "ms_pair_weights",
          ("not square", lambda: ms.ms_pair_weights(_S[:5], _y), r"S: expected shape"),
          ("wrong type", lambda: ms.ms_pair_weights(_S, _y, lam="0.5"), "lam: expected a real scalar", TypeError)),
    *rows(M + "pair_masks", ("wrong dtype", lambda: ms.pair_masks(_y.astype(np.float32)), "labels: expected dtype")),
    *rows(M + "l2_normalize", ("NaN", lambda: ms.l2_normalize(_Enan), "z: contains 1 non-finite")),
    *rows(M + "pair_loss_from_similarity",
          ("unknown loss", lambda: ms.pair_loss_from_similarity(_S, _y, "npair"), "loss: expected one of"),
          ("unknown hparam", lambda: ms.pair_loss_from_similarity(_S, _y, "contrastive", alpha=2.0), "hparams")),
    *rows(M + "gpw_weights", ("NaN", lambda: ms.gpw_weights(_S * np.nan, _y), "S: contains")),
    *rows(M + "gpw_surrogate", ("shape mismatch", lambda: ms.gpw_surrogate(_S, _S[:3]), "G: expected shape")),
    *rows(M + "contrastive_loss", ("NaN", lambda: ms.contrastive_loss(_Enan, _y), "E: contains")),
    *rows(M + "triplet_loss",
          ("unknown mining", lambda: ms.triplet_loss(_E, _y, mining="easy"), "mining: expected one of"),
          ("unknown reduction", lambda: ms.triplet_loss(_E, _y, reduction="sum"), "reduction: expected one of"),
          ("out of range", lambda: ms.triplet_loss(_E, _y, margin=-0.1), "margin: expected a value in")),
    *rows(M + "binomial_deviance_loss",
          ("single class", lambda: ms.binomial_deviance_loss(_E, _same), "labels: all 6 labels")),
    *rows(M + "lifted_structure_loss",
          ("unknown form", lambda: ms.lifted_structure_loss(_E, _y, form="song"), "form: expected one of")),
    *rows(M + "recall_at_k",
          ("K too large", lambda: ms.recall_at_k(_E, _y, ks=(6,)), r"ks: each K must be an int in \[1, 5\]"),
          ("gallery half given", lambda: ms.recall_at_k(_E, _y, _E), "Eg, yg: give both"),
          ("NaN", lambda: ms.recall_at_k(_Enan, _y), "Eq: contains"),
          ("unknown ties", lambda: ms.recall_at_k(_E, _y, ties="random"), "ties: expected one of")),
    *rows(M + "class_table",
          ("missing class", lambda: ms.class_table(np.array([0, 2, 2])), "labels: expected every class"),
          ("negative", lambda: ms.class_table(np.array([-1, 0])), "labels: expected values >= 0")),
    *rows(M + "pk_batch_indices",
          ("too many classes", lambda: ms.pk_batch_indices(_key, _table, _counts, n_classes=4, n_instances=2),
           "n_classes: expected a value in"),
          ("wrong type", lambda: ms.pk_batch_indices(_key, _table, _counts, n_classes=2, n_instances=2.0),
           "n_instances: expected an int", TypeError)),
    *rows(M + "init_embedder", ("out of range", lambda: ms.init_embedder(_key, 0), "in_dim: expected a positive")),
    *rows(M + "embed", ("not 2-D", lambda: ms.embed({}, np.ones(3)), "x: expected a 2-D array")),
    # the fused kernel shares the reference's boundary checks
    *rows(K + "ms_loss",
          ("NaN", lambda: pk.ms_loss(_Enan, _y), "E: contains 1 non-finite"),
          ("single class", lambda: pk.ms_loss(_E, _same), "labels: all 6 labels are the same class"),
          ("out of range", lambda: pk.ms_loss(_E, _y, block_m=0), "block_m: expected a value in"),
          ("bad interpret", lambda: pk.ms_loss(_E, _y, interpret="yes"), "interpret: expected one of")),
    *rows(K + "ms_loss_reference", ("NaN", lambda: pk.ms_loss_reference(_Enan, _y), "E: contains")),
    *rows(K + "ms_loss_stats", ("out of range", lambda: pk.ms_loss_stats(_E, _y, alpha=-2.0), "alpha: expected")),
    *rows(K + "plan", ("unknown target", lambda: pk.plan(8, 4, target="cuda"), "target: expected one of")),
]
