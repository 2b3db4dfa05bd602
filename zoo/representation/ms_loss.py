r"""Multi-Similarity loss and the General Pair Weighting (GPW) family, as pure JAX functions.

Paper: Xun Wang, Xintong Han, Weilin Huang, Dengke Dong, Matthew R. Scott, "Multi-Similarity Loss
with General Pair Weighting for Deep Metric Learning", CVPR 2019, arXiv 1904.06627.
Official code: ``MalongTech/research-ms-loss`` (PyTorch, CC BY-NC 4.0; read for understanding only).

Notation: ``E: f[B, D]`` L2-normalised embeddings, ``labels: i[B]``, ``S = E E^T``;
``P_i = {j != i : y_j = y_i}`` (index-based self-exclusion), ``N_i = {k : y_k != y_i}``.

Equations -> functions::

    e = z / ||z||                                                        l2_normalize
    S = E E^T, pos/neg masks                                             pair_masks
    GPW: dL/dtheta = sum_ij (dL/dS_ij) dS_ij/dtheta, i.e. L has the
         gradient of  L' = sum_ij sg(w_ij) S_ij  (paper Eq. 1-3)         gpw_weights, gpw_surrogate
    MS mining (P-similarity, Eq. 4-5):
         keep k in N_i  iff  S_ik + eps > min_{j in P_i} S_ij
         keep j in P_i  iff  S_ij - eps < max_{k in N_i} S_ik           ms_mine
    MS weighting (S- and N-similarity, Eq. 6-8); the loss (Eq. 9):
         L = 1/B sum_{i valid} [ 1/alpha log(1 + sum_{P^_i} e^{-alpha(S_ij - lam)})
                                + 1/beta log(1 + sum_{N^_i} e^{beta(S_ik - lam)}) ]   ms_loss, ms_loss_from_logits
         w-_ik = e^{beta(S_ik-lam)} / (1 + sum_{N^_i} e^{beta(S-lam)}),
         w+_ij = e^{-alpha(S_ij-lam)} / (1 + sum_{P^_i} e^{-alpha(S-lam)})   ms_pair_weights
    GPW baselines (similarity form, as the paper compares them):
         contrastive  1/B sum_i [sum_P (1 - S) + sum_N [S - lam]_+]      contrastive_loss
         triplet      [S_an - S_ap + m]_+ (all / semihard / batch-hard)  triplet_loss
         binomial     mean_P softplus(-alpha(S-lam)) + mean_N softplus(beta(S-lam))   binomial_deviance_loss
         lifted       1/B sum_i [lse_N S + lse_P (lam - S)]_+  (generalised) or
                      Song et al. 2016 over positive pairs              lifted_structure_loss
    Any of them on a similarity matrix                                   pair_loss_from_similarity
    Recall@K (self excluded by index)                                    recall_at_k
    P x K batches                                                        class_table, pk_batch_indices
    Embedder (MLP + L2 normalisation)                                    init_embedder, embed

Choices that are ours (or the official code's rather than the paper's):

* Defaults are the official code's hyperparameters (alpha 2, beta 40, lam 0.5, eps 0.1): they produced
  the released CUB R@1; ``PRESETS`` holds ``'code'``, ``'paper'`` (alpha 2, beta 50, lam 1, eps 0.1, as
  re-implementations quote the paper's Sec. 5; the spec could not verify it against the paper text)
  and ``'pml'`` (pytorch-metric-learning: alpha 2, beta 50, lam 0.5, eps 0.1).
* Self-pairs are excluded by index, not by value (official: ``S < 1 - 1e-5``, which also drops genuine
  duplicate positives). The loss is divided by the full batch size B, skipped anchors included
  (official ``sum(loss) / batch_size``). Mining uses strict inequalities on the unmined sets, and its
  masks carry no gradient (like the official autograd).
* An anchor with an empty mined positive or negative set contributes 0 (the official code crashes on a
  singleton class); an eager call whose labels are all one class raises (a pair loss needs negatives),
  and one without any positive pair warns (the loss is then 0 for MS).
* ``log(1 + sum e^x)`` is a log-sum-exp with an explicit 0 logit (no overflow at beta = 50).
* Triplet ``'semihard'`` keeps triplets with ``S_ap - m < S_an < S_ap`` (FaceNet's band, in
  similarities); ``'hard'`` is batch-hard (hardest positive and negative per anchor). Binomial deviance
  takes means over the batch's positive and negative pairs (optionally MS-mined: the ablation of the
  paper's Table 2 style). Song et al.'s lifted loss uses D = sqrt(max(2 - 2S, 1e-12)) and margin 1.
* Recall@K: a query with no same-class gallery item counts as a miss; ``ties='optimistic'`` (the
  official rule) ranks tied negatives after the best positive, ``'pessimistic'`` before it.
* GPW weights of any loss come from autodiff of its similarity form (``gpw_weights``); the closed form
  of the MS weights (``ms_pair_weights``) is checked against it in the tests.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced

__all__ = [
    "LOSSES",
    "PRESETS",
    "binomial_deviance_loss",
    "class_table",
    "contrastive_loss",
    "embed",
    "gpw_surrogate",
    "gpw_weights",
    "init_embedder",
    "l2_normalize",
    "lifted_structure_loss",
    "ms_loss",
    "ms_loss_from_logits",
    "ms_mine",
    "ms_pair_weights",
    "pair_loss_from_similarity",
    "pair_masks",
    "pk_batch_indices",
    "recall_at_k",
    "triplet_loss",
]

#: MS hyperparameter presets: the official code's (the default), the paper's Sec. 5 (second-hand), PML's.
PRESETS = {
    "code": {"alpha": 2.0, "beta": 40.0, "lam": 0.5, "eps": 0.1},
    "paper": {"alpha": 2.0, "beta": 50.0, "lam": 1.0, "eps": 0.1},
    "pml": {"alpha": 2.0, "beta": 50.0, "lam": 0.5, "eps": 0.1},
}

#: Loss names accepted by ``pair_loss_from_similarity`` and ``gpw_weights``.
LOSSES = ("ms", "contrastive", "triplet", "binomial", "lifted")


# ----------------------------------------------------------------------------------- validation


def _float(x):
    """x as a JAX array in its floating dtype (JAX's default float for integer inputs)."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jax.dtypes.canonicalize_dtype(float))


def _check_scalar(name: str, v, *, low=None, low_inclusive=True) -> None:
    if is_traced(v):
        return
    if isinstance(v, (bool, str)) or np.ndim(v) != 0:
        raise TypeError(f"{name}: expected a real scalar, got {v!r}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a real scalar, got {type(v).__name__}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name}: expected a finite value, got {v!r}")
    check_range(name, f, low=low, low_inclusive=low_inclusive)


def _check_labels(labels, b: int, *, need_two_classes: bool = True, name: str = "labels") -> None:
    check_array(name, labels, shape=(b,), kind="iu")
    if is_traced(labels) or not need_two_classes:
        return
    y = np.asarray(labels)
    if np.all(y == y[0]):
        raise ValueError(f"{name}: all {b} labels are the same class ({y[0]}); a pair loss needs at least two "
                         "classes in the batch (there are no negative pairs)")
    if np.unique(y).size == b:
        warnings.warn(f"{name}: no two items share a class, so there is no positive pair; the loss is 0 for MS",
                      stacklevel=3)


def _check_embeddings(E, labels, name: str = "E", *, min_rows: int = 2):
    check_array(name, E, ndim=2, min_size=min_rows, kind="fiu")
    _check_labels(labels, E.shape[0])
    return _float(E), jnp.asarray(labels)


def _check_ms_hparams(alpha, beta, lam, eps, mining) -> None:
    _check_scalar("alpha", alpha, low=0.0, low_inclusive=False)
    _check_scalar("beta", beta, low=0.0, low_inclusive=False)
    _check_scalar("lam", lam)
    _check_scalar("eps", eps, low=0.0)
    if not isinstance(mining, bool):
        raise TypeError(f"mining: expected a bool, got {type(mining).__name__}")


# ----------------------------------------------------------------------------------- basics


def l2_normalize(z: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``z: f[..., D] -> z / max(||z||, eps)`` along the last axis (rows on the unit sphere)."""
    check_array("z", z, ndim=range(1, 33), kind="fiu")
    _check_scalar("eps", eps, low=0.0, low_inclusive=False)
    z = _float(z)
    n = jnp.sqrt(jnp.sum(z * z, axis=-1, keepdims=True))
    return z / jnp.maximum(n, jnp.asarray(eps, z.dtype))


def pair_masks(labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``labels: i[B] -> (pos b[B, B], neg b[B, B])``: same class off the diagonal; different class."""
    check_array("labels", labels, ndim=1, min_size=1, kind="iu")
    y = jnp.asarray(labels)
    same = y[:, None] == y[None, :]
    eye = jnp.eye(y.shape[0], dtype=bool)
    return same & ~eye, ~same


def _masked_lse1(x, mask):
    """Row-wise log(1 + sum_{mask} e^x) = logsumexp over {0} u {x_j : mask_j} (stable, NaN-free grads)."""
    xm = jnp.where(mask, x, -jnp.inf)
    m = jax.lax.stop_gradient(jnp.maximum(jnp.max(xm, axis=-1), 0.0))
    s = jnp.exp(-m) + jnp.sum(jnp.exp(xm - m[..., None]), axis=-1)
    return m + jnp.log(s)


def _masked_lse(x, mask):
    """Row-wise log sum_{mask} e^x; -inf for an empty row (its gradient is 0)."""
    xm = jnp.where(mask, x, -jnp.inf)
    mx = jnp.max(xm, axis=-1)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(mx), mx, 0.0))
    s = jnp.sum(jnp.exp(xm - m[..., None]), axis=-1)
    return jnp.where(s > 0, m + jnp.log(jnp.where(s > 0, s, 1.0)), -jnp.inf)


# ----------------------------------------------------------------------------------- MS loss


def ms_mine(S: jax.Array, pos: jax.Array, neg: jax.Array, eps=0.1):
    """MS pair mining (the P-similarity step) on a similarity matrix.

    Args:
      S: f[B, B] similarities (row i = anchor i).  pos, neg: b[B, B] unmined positive / negative masks.
      eps: the mining margin (>= 0).
    Returns:
      ``(pos_m b[B, B], neg_m b[B, B], valid b[B])``: negatives with ``S_ik + eps > min_P S_ij``,
      positives with ``S_ij - eps < max_N S_ik`` (thresholds from the unmined sets; no gradient), and
      whether anchor i keeps at least one of each.
    """
    check_array("S", S, ndim=2, kind="f")
    check_array("pos", pos, shape=S.shape, kind="b")
    check_array("neg", neg, shape=S.shape, kind="b")
    _check_scalar("eps", eps, low=0.0)
    return _mine(S, pos, neg, eps)


def _mine(S, pos, neg, eps):
    Sd = jax.lax.stop_gradient(S)
    eps = jnp.asarray(eps, S.dtype)
    min_pos = jnp.min(jnp.where(pos, Sd, jnp.inf), axis=1, keepdims=True)
    max_neg = jnp.max(jnp.where(neg, Sd, -jnp.inf), axis=1, keepdims=True)
    neg_m = neg & (Sd + eps > min_pos)
    pos_m = pos & (Sd - eps < max_neg)
    return pos_m, neg_m, jnp.any(pos_m, axis=1) & jnp.any(neg_m, axis=1)


def _ms_masks(S, labels, eps, mining):
    pos, neg = pair_masks(labels)
    if mining:
        return _mine(S, pos, neg, eps)
    return pos, neg, jnp.any(pos, axis=1) & jnp.any(neg, axis=1)


def _ms_from_sim(S, labels, *, alpha=2.0, beta=40.0, lam=0.5, eps=0.1, mining=True):
    dt = S.dtype
    alpha, beta, lam = (jnp.asarray(v, dt) for v in (alpha, beta, lam))
    pos_m, neg_m, valid = _ms_masks(S, labels, eps, mining)
    lp = _masked_lse1(-alpha * (S - lam), pos_m) / alpha
    ln = _masked_lse1(beta * (S - lam), neg_m) / beta
    return jnp.sum(jnp.where(valid, lp + ln, 0.0)) / S.shape[0]


def ms_loss(E: jax.Array, labels: jax.Array, *, alpha=2.0, beta=40.0, lam=0.5, eps=0.1, mining: bool = True):
    """The Multi-Similarity loss (paper Eq. 9) of L2-normalised embeddings.

    Args:
      E: f[B, D] embeddings, rows of unit norm (use ``ms_loss_from_logits`` otherwise); B >= 2.
      labels: i[B] class labels (at least two classes).
      alpha, beta: positive / negative scales (> 0).  lam: similarity offset.  eps: mining margin (>= 0).
      mining: False skips the mining step (weighting only: the paper's ablation).
    Returns:
      f[] the loss, ``1/B sum_{valid i} (positive term + negative term)``.
    """
    E, labels = _check_embeddings(E, labels)
    _check_ms_hparams(alpha, beta, lam, eps, mining)
    return _ms_from_sim(E @ E.T, labels, alpha=alpha, beta=beta, lam=lam, eps=eps, mining=mining)


def ms_loss_from_logits(z: jax.Array, labels: jax.Array, *, alpha=2.0, beta=40.0, lam=0.5, eps=0.1,
                        mining: bool = True):
    """``ms_loss(l2_normalize(z), labels, ...)`` for raw (unnormalised) features ``z: f[B, D]``."""
    check_array("z", z, ndim=2, min_size=2, kind="fiu")
    return ms_loss(l2_normalize(z), labels, alpha=alpha, beta=beta, lam=lam, eps=eps, mining=mining)


def ms_pair_weights(S: jax.Array, labels: jax.Array, *, alpha=2.0, beta=40.0, lam=0.5, eps=0.1,
                    mining: bool = True):
    """The MS loss's pair weights in closed form (paper Eq. 7-8): the GPW view.

    Args:
      S: f[B, B] similarities; labels: i[B]; the rest as ``ms_loss``.
    Returns:
      ``(w_pos f[B, B], w_neg f[B, B])``, zero off the mined sets and on invalid anchors, with
      ``dL/dS = (w_neg - w_pos) / B``. Each lies in [0, 1) and each row of either sums to < 1.
    """
    check_array("S", S, ndim=2, kind="f")
    check_array("S", S, shape=(S.shape[0], S.shape[0]))
    _check_labels(labels, S.shape[0])
    _check_ms_hparams(alpha, beta, lam, eps, mining)
    S = jnp.asarray(S)
    dt = S.dtype
    alpha, beta, lam = (jnp.asarray(v, dt) for v in (alpha, beta, lam))
    pos_m, neg_m, valid = _ms_masks(S, jnp.asarray(labels), eps, mining)
    xp, xn = -alpha * (S - lam), beta * (S - lam)
    wp = jnp.where(pos_m, jnp.exp(xp - _masked_lse1(xp, pos_m)[:, None]), 0.0)
    wn = jnp.where(neg_m, jnp.exp(xn - _masked_lse1(xn, neg_m)[:, None]), 0.0)
    return jnp.where(valid[:, None], wp, 0.0), jnp.where(valid[:, None], wn, 0.0)


# ----------------------------------------------------------------------------------- GPW baselines


def _contrastive_from_sim(S, labels, *, lam=0.5):
    pos, neg = pair_masks(labels)
    lam = jnp.asarray(lam, S.dtype)
    per = jnp.sum(jnp.where(pos, 1.0 - S, 0.0), 1) + jnp.sum(jnp.where(neg, jax.nn.relu(S - lam), 0.0), 1)
    return jnp.sum(per) / S.shape[0]


def _safe_mean(x, mask):
    return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def _triplet_from_sim(S, labels, *, margin=0.1, mining="all", reduction="mean_all"):
    pos, neg = pair_masks(labels)
    m = jnp.asarray(margin, S.dtype)
    if mining == "hard":
        sd = jax.lax.stop_gradient(S)
        jp = jnp.argmin(jnp.where(pos, sd, jnp.inf), axis=1)
        kn = jnp.argmax(jnp.where(neg, sd, -jnp.inf), axis=1)
        r = jnp.arange(S.shape[0])
        loss = jax.nn.relu(S[r, kn] - S[r, jp] + m)
        ok = jnp.any(pos, 1) & jnp.any(neg, 1)
    else:
        loss = jax.nn.relu(S[:, None, :] - S[:, :, None] + m)  # [a, p, n]
        ok = pos[:, :, None] & neg[:, None, :]
        if mining == "semihard":
            sd = jax.lax.stop_gradient(S)
            san, sap = sd[:, None, :], sd[:, :, None]
            ok = ok & (san < sap) & (san > sap - m)
    if reduction == "mean_active":
        ok = ok & (jax.lax.stop_gradient(loss) > 0)
    return _safe_mean(loss, ok)


def _binomial_from_sim(S, labels, *, alpha=2.0, beta=50.0, lam=0.5, mining=False, eps=0.1):
    pos, neg = pair_masks(labels)
    if mining:
        pos, neg, _ = _mine(S, pos, neg, eps)
    alpha, beta, lam = (jnp.asarray(v, S.dtype) for v in (alpha, beta, lam))
    return _safe_mean(jax.nn.softplus(-alpha * (S - lam)), pos) + _safe_mean(jax.nn.softplus(beta * (S - lam)), neg)


def _lifted_from_sim(S, labels, *, lam=0.5, form="generalized"):
    pos, neg = pair_masks(labels)
    if form == "generalized":
        per = _masked_lse(S, neg) + _masked_lse(jnp.asarray(lam, S.dtype) - S, pos)
        ok = jnp.any(pos, 1) & jnp.any(neg, 1)
        return jnp.sum(jnp.where(ok, jax.nn.relu(jnp.where(ok, per, 0.0)), 0.0)) / S.shape[0]
    D = jnp.sqrt(jnp.maximum(2.0 - 2.0 * S, 1e-12))
    a = _masked_lse(1.0 - D, neg)  # per anchor: log sum_{k in N_i} e^{1 - D_ik}
    has = jnp.isfinite(a)
    a = jnp.where(has, a, 0.0)  # anchors without negatives are masked below (keeps gradients NaN-free)
    J = jnp.logaddexp(a[:, None], a[None, :]) + D
    ok = pos & has[:, None] & has[None, :]
    return jnp.sum(jnp.where(ok, jax.nn.relu(jnp.where(ok, J, 0.0)) ** 2, 0.0)) / (2 * jnp.maximum(jnp.sum(ok), 1))


_FROM_SIM = {"ms": _ms_from_sim, "contrastive": _contrastive_from_sim, "triplet": _triplet_from_sim,
             "binomial": _binomial_from_sim, "lifted": _lifted_from_sim}
_HPARAMS = {"ms": ("alpha", "beta", "lam", "eps", "mining"), "contrastive": ("lam",),
            "triplet": ("margin", "mining", "reduction"), "binomial": ("alpha", "beta", "lam", "mining", "eps"),
            "lifted": ("lam", "form")}


def _check_hparams(loss: str, hp: dict) -> None:
    bad = sorted(set(hp) - set(_HPARAMS[loss]))
    if bad:
        raise ValueError(f"hparams: {bad} are not hyperparameters of loss {loss!r}; expected a subset of "
                         f"{list(_HPARAMS[loss])}")
    for k in ("alpha", "beta"):
        if k in hp:
            _check_scalar(k, hp[k], low=0.0, low_inclusive=False)
    for k in ("eps", "margin"):
        if k in hp:
            _check_scalar(k, hp[k], low=0.0)
    if "lam" in hp:
        _check_scalar("lam", hp["lam"])
    if "mining" in hp:
        if loss == "triplet":
            check_choice("mining", hp["mining"], ("all", "semihard", "hard"))
        elif not isinstance(hp["mining"], bool):
            raise TypeError(f"mining: expected a bool, got {type(hp['mining']).__name__}")
    if "reduction" in hp:
        check_choice("reduction", hp["reduction"], ("mean_all", "mean_active"))
    if "form" in hp:
        check_choice("form", hp["form"], ("generalized", "song2016"))


def pair_loss_from_similarity(S: jax.Array, labels: jax.Array, loss: str = "ms", **hparams):
    """Any loss of ``LOSSES`` as a function of a similarity matrix ``S: f[B, B]`` (row i = anchor i).

    ``hparams`` are the loss's keyword arguments (e.g. ``alpha=2.0`` for ``'ms'``). The E-form
    functions (``ms_loss``, ``contrastive_loss``, ...) are this with ``S = E E^T``.
    """
    check_choice("loss", loss, LOSSES)
    check_array("S", S, ndim=2, kind="f")
    check_array("S", S, shape=(S.shape[0], S.shape[0]))
    check_range("S.shape[0] (B)", S.shape[0], low=2)
    _check_labels(labels, S.shape[0])
    _check_hparams(loss, hparams)
    return _FROM_SIM[loss](jnp.asarray(S), jnp.asarray(labels), **hparams)


def gpw_weights(S: jax.Array, labels: jax.Array, loss: str = "ms", **hparams) -> jax.Array:
    """GPW pair weights ``G = dL/dS: f[B, B]`` of a loss (autodiff of its similarity form).

    Positive entries weight negatives (pushed apart), negative entries weight positives (pulled
    together); ``dL/dE = (G + G^T) E``. For MS, ``G = (w_neg - w_pos) / B`` (``ms_pair_weights``).
    """
    pair_loss_from_similarity(S, labels, loss, **hparams)  # validation (cheap at these sizes)
    return jax.grad(lambda s: _FROM_SIM[loss](s, jnp.asarray(labels), **hparams))(jnp.asarray(S))


def gpw_surrogate(S: jax.Array, G: jax.Array) -> jax.Array:
    """The GPW linear objective ``L' = sum_ij sg(G_ij) S_ij`` (paper Eq. 3): same gradient as the loss."""
    check_array("S", S, ndim=2, kind="f", finite=False)
    check_array("G", G, shape=S.shape, kind="f", finite=False)
    return jnp.sum(jax.lax.stop_gradient(G) * S)


def contrastive_loss(E: jax.Array, labels: jax.Array, *, lam=0.5):
    """Contrastive loss in similarity form: ``1/B sum_i [sum_{P_i} (1 - S) + sum_{N_i} [S - lam]_+]``."""
    E, labels = _check_embeddings(E, labels)
    _check_hparams("contrastive", {"lam": lam})
    return _contrastive_from_sim(E @ E.T, labels, lam=lam)


def triplet_loss(E: jax.Array, labels: jax.Array, *, margin=0.1, mining: str = "all", reduction: str = "mean_all"):
    """Triplet loss ``[S_an - S_ap + margin]_+`` over valid triplets.

    mining: ``'all'`` (every (a, p, n)), ``'semihard'`` (``S_ap - m < S_an < S_ap``) or ``'hard'``
    (batch-hard: per anchor its least similar positive and most similar negative).
    reduction: ``'mean_all'`` over the selected triplets or ``'mean_active'`` over those with loss > 0.
    """
    E, labels = _check_embeddings(E, labels)
    _check_hparams("triplet", {"margin": margin, "mining": mining, "reduction": reduction})
    return _triplet_from_sim(E @ E.T, labels, margin=margin, mining=mining, reduction=reduction)


def binomial_deviance_loss(E: jax.Array, labels: jax.Array, *, alpha=2.0, beta=50.0, lam=0.5,
                           mining: bool = False, eps=0.1):
    """Binomial deviance (Yi et al. 2014): ``mean_P log(1+e^{-alpha(S-lam)}) + mean_N log(1+e^{beta(S-lam)})``.

    ``mining=True`` first applies MS mining with margin ``eps`` (the "binomial + MS mining" ablation).
    """
    E, labels = _check_embeddings(E, labels)
    _check_hparams("binomial", {"alpha": alpha, "beta": beta, "lam": lam, "mining": mining, "eps": eps})
    return _binomial_from_sim(E @ E.T, labels, alpha=alpha, beta=beta, lam=lam, mining=mining, eps=eps)


def lifted_structure_loss(E: jax.Array, labels: jax.Array, *, lam=0.5, form: str = "generalized"):
    """Lifted structure loss.

    ``'generalized'`` (the MS paper's similarity form): ``1/B sum_i [log sum_{N_i} e^{S} + log sum_{P_i}
    e^{lam - S}]_+``. ``'song2016'``: ``1/(2|P|) sum_{(i,j) in P} [log(sum_{N_i} e^{1-D_ik} + sum_{N_j}
    e^{1-D_jl}) + D_ij]_+^2`` with ``D = sqrt(2 - 2S)`` (``lam`` unused).
    """
    E, labels = _check_embeddings(E, labels)
    _check_hparams("lifted", {"lam": lam, "form": form})
    return _lifted_from_sim(E @ E.T, labels, lam=lam, form=form)


# ----------------------------------------------------------------------------------- Recall@K


def recall_at_k(Eq: jax.Array, yq: jax.Array, Eg: jax.Array | None = None, yg: jax.Array | None = None, *,
                ks: tuple[int, ...] = (1, 2, 4, 8), ties: str = "optimistic", chunk: int = 1024) -> dict:
    """Recall@K by cosine similarity: the fraction of queries with a same-class item among the top K.

    Args:
      Eq: f[Q, D] query embeddings (normalised); yq: i[Q].
      Eg, yg: gallery f[G, D], i[G]; None: the queries themselves, each query excluded by index.
      ks: the K values (each in [1, gallery size]; minus one when the queries are the gallery).
      ties: ``'optimistic'`` (negatives tied with the best positive rank after it, the official rule)
        or ``'pessimistic'``.
      chunk: queries per block (bounds memory at chunk x G similarities).
    Returns:
      ``{K: f[]}``. A query without any same-class gallery item is a miss.
    """
    check_array("Eq", Eq, ndim=2, min_size=1, kind="fiu")
    check_array("yq", yq, shape=(Eq.shape[0],), kind="iu")
    if (Eg is None) != (yg is None):
        raise ValueError("Eg, yg: give both (a separate gallery) or neither (queries are the gallery)")
    self_gallery = Eg is None
    if not self_gallery:
        check_array("Eg", Eg, ndim=2, min_size=1, kind="fiu")
        check_array("Eg", Eg, shape=(None, Eq.shape[1]))
        check_array("yg", yg, shape=(Eg.shape[0],), kind="iu")
    check_choice("ties", ties, ("optimistic", "pessimistic"))
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected a positive int, got {chunk!r}")
    n_gal = Eq.shape[0] - 1 if self_gallery else Eg.shape[0]
    ks = tuple(ks) if isinstance(ks, (tuple, list)) else (ks,)
    if not ks:
        raise ValueError("ks: expected at least one K")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_gal:
            raise ValueError(f"ks: each K must be an int in [1, {n_gal}] (the gallery size"
                             f"{' minus the query itself' if self_gallery else ''}), got {k!r}")
    Eq, yq = _float(Eq), jnp.asarray(yq)
    Eg, yg = (Eq, yq) if self_gallery else (_float(Eg), jnp.asarray(yg))
    Q = Eq.shape[0]
    c = min(chunk, Q)
    nq = -(-Q // c) * c
    qi = jnp.arange(nq)
    Eqp = jnp.pad(Eq, ((0, nq - Q), (0, 0)))
    yqp = jnp.pad(yq, (0, nq - Q))
    gi = jnp.arange(Eg.shape[0])

    def block(args):
        e, y, idx = args
        s = e @ Eg.T  # [c, G]
        same = y[:, None] == yg[None, :]
        if self_gallery:
            same = same & (idx[:, None] != gi[None, :])
        other = y[:, None] != yg[None, :]
        best = jnp.max(jnp.where(same, s, -jnp.inf), axis=1, keepdims=True)
        before = (s > best) if ties == "optimistic" else (s >= best)
        n_before = jnp.sum(other & before, axis=1)
        return n_before, jnp.any(same, axis=1)

    nb, has = jax.lax.map(block, (Eqp.reshape(-1, c, Eq.shape[1]), yqp.reshape(-1, c), qi.reshape(-1, c)))
    nb, has = nb.reshape(-1)[:Q], has.reshape(-1)[:Q]
    return {int(k): jnp.mean((has & (nb < k)).astype(Eq.dtype)) for k in ks}


# ----------------------------------------------------------------------------------- batches, model


def class_table(labels) -> tuple[np.ndarray, np.ndarray]:
    """Host-side index of a labelled set for P x K sampling.

    Args:
      labels: i[N] with values 0..C-1 (every class present).
    Returns:
      ``(table i32[C, M], counts i32[C])``: ``table[c, :counts[c]]`` are the indices of class c
      (M = the largest class size; the rest is padding).
    """
    check_array("labels", labels, ndim=1, min_size=1, kind="iu")
    y = np.asarray(labels).astype(np.int64)
    if y.min() < 0:
        raise ValueError(f"labels: expected values >= 0, got min {y.min()}")
    C = int(y.max()) + 1
    counts = np.bincount(y, minlength=C)
    if (counts == 0).any():
        raise ValueError(f"labels: expected every class 0..{C - 1} to occur; missing {np.flatnonzero(counts == 0)[:5]}")
    table = np.zeros((C, counts.max()), np.int32)
    order = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for c in range(C):
        table[c, : counts[c]] = order[starts[c] : starts[c] + counts[c]]
    return table, counts.astype(np.int32)


def pk_batch_indices(key: jax.Array, table: jax.Array, counts: jax.Array, *, n_classes: int, n_instances: int):
    """A P x K batch (pure JAX): ``n_classes`` distinct classes, ``n_instances`` items of each.

    Items are drawn without replacement within a class, with replacement for classes smaller than
    ``n_instances`` (the official sampler's rule). Returns i32[n_classes * n_instances], class-major.
    """
    check_array("table", table, ndim=2, min_size=1, kind="iu")
    check_array("counts", counts, shape=(table.shape[0],), kind="iu")
    for name, v, hi in (("n_classes", n_classes, table.shape[0]), ("n_instances", n_instances, None)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
        check_range(name, v, low=1, high=hi)
    table, counts = jnp.asarray(table), jnp.asarray(counts)
    C, M = table.shape
    kc, ku, kv = jax.random.split(key, 3)
    classes = jax.lax.top_k(jax.random.uniform(kc, (C,)), n_classes)[1]  # a uniform random subset
    cnt = counts[classes][:, None]  # [P, 1]
    if M >= n_instances:  # without replacement: the K largest of uniforms over the class's valid slots
        u = jax.random.uniform(ku, (n_classes, M))
        without = jax.lax.top_k(jnp.where(jnp.arange(M)[None, :] < cnt, u, -1.0), n_instances)[1]
    else:
        without = jnp.zeros((n_classes, n_instances), jnp.int32)
    v = jax.random.uniform(kv, (n_classes, n_instances))
    with_ = jnp.minimum(jnp.floor(v * cnt).astype(jnp.int32), jnp.maximum(cnt - 1, 0))
    slots = jnp.where(cnt >= n_instances, without, with_)
    return table[classes[:, None], slots].reshape(-1).astype(jnp.int32)


def init_embedder(key: jax.Array, in_dim: int, *, hidden: tuple[int, ...] = (256,), emb_dim: int = 64):
    """Params of the embedder ``x -> l2_normalize(MLP(x))`` (``zoo.nn.MLP``, ReLU, widths hidden + (emb_dim,))."""
    from zoo.nn import MLP

    for name, v in (("in_dim", in_dim), ("emb_dim", emb_dim)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return MLP(features=(*tuple(hidden), emb_dim)).init(key, jnp.zeros((1, in_dim)))


def embed(params, x: jax.Array, *, hidden: tuple[int, ...] = (256,), emb_dim: int = 64) -> jax.Array:
    """``x: f[N, in_dim] -> f[N, emb_dim]`` unit-norm embeddings of ``init_embedder``'s params."""
    from zoo.nn import MLP

    check_array("x", x, ndim=2, kind="fiu", finite=False)
    return l2_normalize(MLP(features=(*tuple(hidden), emb_dim)).apply(params, _float(x)))
