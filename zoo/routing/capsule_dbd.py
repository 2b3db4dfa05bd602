"""WcapsuleE: a weighted ensemble of per-domain capsule networks with a TF-IDF "domain belonging degree".

Paper: Mahboobeh Sadat Kobari, Nima Karimi, Benyamin Pourhosseini, Ramin Mousa, "weighted CapsuleNet
networks for Persian multi-domain sentiment analysis", arXiv 2306.17068 (2023). Spec:
``papers/capsule_dbd.md``; the routing is `zoo.routing.core` (``papers/_routing_family.md``).

Equations -> functions:
- §2.1 per-domain capsule text classifier (embedding, BiGRU, class-capsule prediction vectors
  ``û_{j|l} = W_j h_l``, Sabour routing with padded positions masked, lengths ``‖v_j‖``) -> `CapsNetText`;
  D of them as one pytree stacked on a leading domain axis -> `init_ensemble`, `ensemble_apply`.
- class probability ``p_d(y=j|x) = ‖v_j‖ / Σ_k ‖v_k‖`` (or ``softmax(‖v‖/T)``) -> `class_probs`.
- capsule margin loss ``Σ_j T_j max(0, m⁺−‖v_j‖)² + λ (1−T_j) max(0, ‖v_j‖−m⁻)²`` -> `margin_loss`;
  cross-entropy on ``p_d`` (``loss="ce"``) -> `net_loss`; all D nets at once -> `domain_loss`.
- §2.2 DBD: ``TF(w,d) = c(w,d)/N_d``, ``IDF(w) = ln(D/df(w))`` (domains are the documents),
  ``DBD(x,d) = Σ_l TF(x_l,d) IDF(x_l)`` -> `fit_dbd` (the table M[w,d]), `dbd_scores`; weights
  ``ω_d = DBD_d / Σ DBD`` (uniform when the sum is 0) -> `dbd_weights`; ``d̂ = argmax_d DBD``.
- §2.3 ``p(y|x) = Σ_d ω_d(x) p_d(y|x)`` -> `ensemble_combine`, `wcapsule_predict`.
- §2.4 cost-sensitive weights ``w_c = N/(C N_c)`` -> `class_weights`; loss ``w_y ℓ(x, y)`` averaged.
- §2.5 metrics: accuracy, precision, recall, F1, G-mean = sqrt(TPR·TNR) -> `binary_metrics`.

Choices that are ours (the paper's body was not readable): E = 64/300, H = 64 per GRU direction,
capsule dim 16, r = 3, dropout 0.2 on embeddings, ``W_j`` shared across positions and without bias;
the length read-out and margin-loss constants (m⁺ = 0.9, m⁻ = 0.1, λ = 0.5); the DBD variants
(``tfidf`` | ``tfidf_smooth`` ``ln((1+D)/(1+df)) + 1`` | ``freq_uniq`` Dragoni's FREQ × UNIQ); a class
absent from a domain's training labels gets weight ``cap × max observed weight`` (with a warning);
an empty text routes to zero capsules and gets uniform class probabilities. Padding must be trailing
(the BiGRU's reverse direction uses the sequence lengths ``mask.sum(-1)``).
"""

from __future__ import annotations

import functools
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced

from .core import capsule_routing

__all__ = [
    "BiGRU",
    "CapsNetText",
    "binary_metrics",
    "class_probs",
    "class_weights",
    "dbd_scores",
    "dbd_weights",
    "domain_loss",
    "ensemble_apply",
    "ensemble_combine",
    "fit_dbd",
    "init_ensemble",
    "margin_loss",
    "net_loss",
    "wcapsule_predict",
]

DBD_VARIANTS = ("tfidf", "tfidf_smooth", "freq_uniq")


def _safe_norm(v: jax.Array) -> jax.Array:
    """``‖v‖`` over the last axis with a zero (not NaN) gradient at v = 0."""
    sq = jnp.sum(v * v, -1)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _reverse_index(mask: jax.Array) -> jax.Array:
    """Per row, position l -> len-1-l inside the sequence, l on the (trailing) padding (an involution)."""
    L = mask.shape[-1]
    n = jnp.sum(mask, -1, keepdims=True).astype(jnp.int32)
    pos = jnp.arange(L, dtype=jnp.int32)
    return jnp.where(pos < n, n - 1 - pos, pos)


class BiGRU(nn.Module):
    """A bidirectional GRU over trailing-padded sequences: f[B, L, E], mask -> f[B, L, 2H].

    One ``lax.scan`` runs both directions; the backward one reads each sequence reversed within its
    length, so padding never reaches a real position. Gates as in torch/flax:
    ``r = σ(W_ir x + b_ir + W_hr h)``, ``z = σ(W_iz x + b_iz + W_hz h)``,
    ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``, ``h' = (1−z) ⊙ n + z ⊙ h``.
    """

    hidden: int

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        H, E = self.hidden, x.shape[-1]
        dt = x.dtype
        init = nn.initializers.uniform(2.0 / H**0.5)  # torch's GRU default U(-1/sqrt(H), 1/sqrt(H))
        shifted = lambda k, shape, d: init(k, shape, d) - jnp.asarray(1.0 / H**0.5, d)  # noqa: E731
        w_i = self.param("w_i", shifted, (2, E, 3 * H), dt)
        w_h = self.param("w_h", shifted, (2, H, 3 * H), dt)
        b_i = self.param("b_i", shifted, (2, 3 * H), dt)
        b_h = self.param("b_h", shifted, (2, 3 * H), dt)
        rev = _reverse_index(mask)
        xb = jnp.take_along_axis(x, rev[..., None], axis=-2)
        gi = jnp.einsum("sble,seg->lsbg", jnp.stack([x, xb]), w_i) + b_i[None, :, None]  # [L, 2, B, 3H]

        def cell(h, g):
            gh = jnp.einsum("sbh,shg->sbg", h, w_h) + b_h[:, None]
            r = jax.nn.sigmoid(g[..., :H] + gh[..., :H])
            z = jax.nn.sigmoid(g[..., H:2 * H] + gh[..., H:2 * H])
            n = jnp.tanh(g[..., 2 * H:] + r * gh[..., 2 * H:])
            h = (1 - z) * n + z * h
            return h, h

        h0 = jnp.zeros((2, x.shape[0], H), dt)
        _, hs = jax.lax.scan(cell, h0, gi)  # [L, 2, B, H]
        hf = jnp.moveaxis(hs[:, 0], 0, 1)
        hb = jnp.take_along_axis(jnp.moveaxis(hs[:, 1], 0, 1), rev[..., None], axis=-2)
        return jnp.concatenate([hf, hb], -1)


class CapsNetText(nn.Module):
    """Embedding -> BiGRU -> class capsules by dynamic routing; returns ``(‖v‖ f[B, C], v f[B, C, Dc])``.

    Call: ``apply(params, tokens i32[B, L], mask bool[B, L], train=False, rngs={"dropout": k})``.
    Padding must be trailing; masked positions take no part in the routing. ``param_dtype`` sets the
    dtype of the weights (and so of the computation).
    """

    vocab_size: int
    embed_dim: int = 64
    hidden: int = 64
    num_classes: int = 2
    caps_dim: int = 16
    num_iters: int = 3
    dropout: float = 0.2
    param_dtype: type = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array, mask: jax.Array, train: bool = False):
        e = nn.Embed(self.vocab_size, self.embed_dim, param_dtype=self.param_dtype, dtype=self.param_dtype,
                     embedding_init=nn.initializers.normal(self.embed_dim**-0.5), name="embed")(tokens)
        e = nn.Dropout(self.dropout, deterministic=not train)(e)
        h = BiGRU(self.hidden, name="bigru")(e, mask)
        u_hat = nn.DenseGeneral((self.num_classes, self.caps_dim), use_bias=False, param_dtype=self.param_dtype,
                                dtype=self.param_dtype, kernel_init=nn.initializers.variance_scaling(
                                    1.0, "fan_in", "uniform"), name="W")(h)  # [B, L, C, Dc]
        v = capsule_routing(u_hat, self.num_iters, input_mask=mask).v
        return _safe_norm(v), v


def _check_tokens(model: CapsNetText, tokens, mask) -> None:
    check_array("tokens", tokens, ndim=2, kind="iu")
    check_array("mask", mask, shape=tuple(tokens.shape), kind="b")
    if not is_traced(tokens):
        t = np.asarray(tokens)
        if t.size and (t.min() < 0 or t.max() >= model.vocab_size):
            raise ValueError(f"tokens: ids must lie in [0, {model.vocab_size}) (the model's vocab_size), "
                             f"got range [{t.min()}, {t.max()}]")
    if not is_traced(mask):
        m = np.asarray(mask, bool)
        if m.size and np.any(m[:, 1:] & ~m[:, :-1]):
            raise ValueError("mask: padding must be trailing (True then False along each row)")


def init_ensemble(model: CapsNetText, key: jax.Array, num_domains: int = 1):
    """Parameters of ``num_domains`` independent nets, stacked on a leading axis (``f[D, ...]`` leaves).

    Same distributions as the module's initialisers (embedding N(0, 1/E), GRU U(±1/sqrt(H)), capsule
    transform U(±sqrt(3/2H))), but carved from ONE uniform draw of ``key``: a handful of separate
    threefry calls under ``vmap`` costs seconds of XLA compilation on CPU, one costs a fraction.
    """
    if not isinstance(model, CapsNetText):
        raise TypeError(f"model: expected a CapsNetText, got {type(model).__name__}")
    if isinstance(num_domains, bool) or not isinstance(num_domains, int) or num_domains < 1:
        raise ValueError(f"num_domains: expected an int >= 1, got {num_domains!r}")
    tok = jnp.ones((1, 1), jnp.int32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), tok, tok > 0))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    total = sum(int(np.prod(leaf.shape)) for _, leaf in leaves)
    u = jax.random.uniform(key, (num_domains, total), model.param_dtype, -1.0, 1.0)
    out, i = [], 0
    for path, leaf in leaves:
        n = int(np.prod(leaf.shape))
        x = u[:, i:i + n].reshape(num_domains, *leaf.shape)
        i += n
        name = jax.tree_util.keystr(path)
        if "embedding" in name:
            from jax.scipy.special import ndtri

            x = ndtri(jnp.clip(0.5 * (x + 1.0), 1e-7, 1 - 1e-7)) * model.embed_dim**-0.5
        elif "bigru" in name:
            x = x * model.hidden**-0.5
        else:
            x = x * (3.0 / (2 * model.hidden)) ** 0.5
        out.append(x.astype(leaf.dtype))
    return jax.tree_util.tree_unflatten(jax.tree.structure(shapes), out)


@functools.partial(jax.jit, static_argnums=0)
def _ensemble_lengths(model, params_D, tokens, mask):
    return jax.vmap(lambda p: model.apply(p, tokens, mask)[0])(params_D)


def ensemble_apply(model: CapsNetText, params_D, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """Capsule lengths of every domain net for every text: ``f[D, B, C]`` (eval mode, vmap over domains, jitted)."""
    _check_tokens(model, tokens, mask)
    return _ensemble_lengths(model, params_D, jnp.asarray(tokens), jnp.asarray(mask))


def class_probs(lengths: jax.Array, readout: str = "norm", temperature: float = 0.1) -> jax.Array:
    """``p(y=j) = ‖v_j‖ / Σ_k ‖v_k‖`` (``norm``; all-zero lengths -> uniform) or ``softmax(‖v‖/T)``."""
    check_choice("readout", readout, ("norm", "softmax"))
    check_array("lengths", lengths, kind="f")
    if lengths.ndim < 1 or lengths.shape[-1] < 2:
        raise ValueError(f"lengths: expected shape (..., C) with C >= 2, got {tuple(lengths.shape)}")
    if readout == "softmax":
        check_range("temperature", temperature, low=0.0, low_inclusive=False)
        return jax.nn.softmax(lengths / temperature, axis=-1)
    tot = jnp.sum(lengths, -1, keepdims=True)
    C = lengths.shape[-1]
    return jnp.where(tot > 0, lengths / jnp.where(tot > 0, tot, 1.0), 1.0 / C)


def margin_loss(lengths: jax.Array, y: jax.Array, class_weights: jax.Array | None = None, *, m_pos: float = 0.9,
                m_neg: float = 0.1, lam: float = 0.5) -> jax.Array:
    """Mean over the batch of ``w_y Σ_j [T_j max(0, m⁺−‖v_j‖)² + λ (1−T_j) max(0, ‖v_j‖−m⁻)²]``.

    lengths: f[B, C]; y: i32[B]; class_weights: f[C] or None (all 1).
    """
    check_array("lengths", lengths, ndim=2, kind="f")
    check_array("y", y, shape=(lengths.shape[0],), kind="iu")
    C = lengths.shape[1]
    if not is_traced(y) and np.size(y):
        yv = np.asarray(y)
        if yv.min() < 0 or yv.max() >= C:
            raise ValueError(f"y: labels must lie in [0, {C}), got range [{yv.min()}, {yv.max()}]")
    if class_weights is not None:
        check_array("class_weights", class_weights, shape=(C,), kind="f")
    check_range("m_pos", m_pos, low=0.0, high=1.0)
    check_range("m_neg", m_neg, low=0.0, high=1.0)
    check_range("lam", lam, low=0.0)
    T = jax.nn.one_hot(y, C, dtype=lengths.dtype)
    per = jnp.sum(T * jnp.maximum(0.0, m_pos - lengths) ** 2
                  + lam * (1 - T) * jnp.maximum(0.0, lengths - m_neg) ** 2, -1)
    if class_weights is not None:
        per = per * jnp.asarray(class_weights, lengths.dtype)[y]
    return jnp.mean(per)


def class_weights(y, num_classes: int, *, cap: float = 10.0) -> np.ndarray:
    """Cost-sensitive weights ``w_c = N / (C N_c)`` of one domain's training labels (numpy f64[C]).

    A class with no example gets ``cap × max observed weight`` (and a warning).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes: expected an int >= 2, got {num_classes!r}")
    y = np.asarray(y)
    check_array("y", y, ndim=1, kind="iu", min_size=1)
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"y: labels must lie in [0, {num_classes}), got range [{y.min()}, {y.max()}]")
    check_range("cap", cap, low=1.0)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, y.size / (num_classes * np.maximum(counts, 1)), np.nan)
    if np.isnan(w).any():
        warnings.warn(f"class_weights: classes {np.flatnonzero(counts == 0).tolist()} have no example; "
                      f"their weight is capped at {cap} x the largest observed weight", stacklevel=2)
        w = np.where(np.isnan(w), cap * np.nanmax(w), w)
    return w


def net_loss(model: CapsNetText, params, tokens, mask, y, weights=None, rng=None, *, loss: str = "margin",
             train: bool = True) -> jax.Array:
    """The (cost-sensitive) loss of one net on one batch: margin loss, or ``ce`` on the length read-out."""
    check_choice("loss", loss, ("margin", "ce"))
    lengths, _ = model.apply(params, tokens, mask, train=train and rng is not None,
                             rngs=None if rng is None else {"dropout": rng})
    if loss == "margin":
        return margin_loss(lengths, y, weights)
    logp = jnp.log(jnp.clip(class_probs(lengths), 1e-7, 1.0))
    per = -jnp.take_along_axis(logp, y[:, None], -1)[:, 0]
    if weights is not None:
        per = per * jnp.asarray(weights, per.dtype)[y]
    return jnp.mean(per)


def domain_loss(model: CapsNetText, params_D, batch: dict, rng: jax.Array | None = None, *,
                loss: str = "margin") -> jax.Array:
    """``Σ_d loss_d``: each domain net on its own domain's batch, all at once (vmap over the domain axis).

    batch: ``tokens i32[D, B, L]``, ``mask bool[D, B, L]``, ``y i32[D, B]``, optional ``weights f[D, C]``.
    """
    for k in ("tokens", "mask", "y"):
        if k not in batch:
            raise ValueError(f"batch: missing key {k!r}; expected tokens [D, B, L], mask [D, B, L], y [D, B]")
    check_array("batch['tokens']", batch["tokens"], ndim=3, kind="iu")
    D = batch["tokens"].shape[0]
    check_array("batch['y']", batch["y"], shape=batch["tokens"].shape[:2], kind="iu")
    w = batch.get("weights")
    rngs = None if rng is None else jax.random.split(rng, D)

    def one(p, t, m, y, wd, r):
        return net_loss(model, p, t, m, y, wd, r, loss=loss)

    return jnp.sum(jax.vmap(one, in_axes=(0, 0, 0, 0, None if w is None else 0, None if rngs is None else 0))(
        params_D, batch["tokens"], batch["mask"], batch["y"], w, rngs))


def fit_dbd(tokens, mask, domains, vocab_size: int, num_domains: int, variant: str = "tfidf") -> np.ndarray:
    """The DBD table ``M f64[V, D]`` from training texts (numpy): ``DBD(x, d) = Σ_l M[x_l, d]``.

    tokens: i32[N, L]; mask: bool[N, L]; domains: i32[N]. ``tfidf``: ``M = c(w,d)/N_d · ln(D/df(w))``;
    ``tfidf_smooth``: IDF ``ln((1+D)/(1+df)) + 1``; ``freq_uniq``: ``c(w,d)/N_d · c(w,d)/Σ_d' c(w,d')``.
    """
    check_choice("variant", variant, DBD_VARIANTS)
    for name, v in (("vocab_size", vocab_size), ("num_domains", num_domains)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    tokens, mask, domains = np.asarray(tokens), np.asarray(mask), np.asarray(domains)
    check_array("tokens", tokens, ndim=2, kind="iu", min_size=1)
    check_array("mask", mask, shape=tokens.shape, kind="b")
    check_array("domains", domains, shape=(tokens.shape[0],), kind="iu")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise ValueError(f"tokens: ids must lie in [0, {vocab_size}), got range [{tokens.min()}, {tokens.max()}]")
    if domains.min() < 0 or domains.max() >= num_domains:
        raise ValueError(f"domains: ids must lie in [0, {num_domains}), got range [{domains.min()}, {domains.max()}]")
    D = int(num_domains)
    counts = np.zeros((vocab_size, D))
    dd = np.broadcast_to(domains[:, None], tokens.shape)
    np.add.at(counts, (tokens[mask], dd[mask]), 1.0)
    n_d = counts.sum(0)
    if np.any(n_d == 0):
        raise ValueError(f"domains: domains {np.flatnonzero(n_d == 0).tolist()} have no training tokens; "
                         "every domain needs training texts to define its belonging degree")
    tf = counts / n_d
    df = (counts > 0).sum(1)
    if variant == "tfidf":
        idf = np.log(D / np.maximum(df, 1))
    elif variant == "tfidf_smooth":
        idf = np.log((1.0 + D) / (1.0 + df)) + 1.0
    else:
        return tf * counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    return tf * np.where(df > 0, idf, 0.0)[:, None]


def dbd_scores(table: jax.Array, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """``DBD(x, d) = Σ_l mask_l M[x_l, d]`` -> f[B, D] (a gather and a sum)."""
    check_array("table", table, ndim=2, kind="f")
    check_array("tokens", tokens, ndim=2, kind="iu")
    check_array("mask", mask, shape=tuple(tokens.shape), kind="b")
    if not is_traced(tokens) and np.size(tokens):
        tv = np.asarray(tokens)
        if tv.min() < 0 or tv.max() >= table.shape[0]:
            raise ValueError(f"tokens: ids must lie in [0, {table.shape[0]}) (the table's vocabulary), "
                             f"got range [{tv.min()}, {tv.max()}]")
    table = jnp.asarray(table)
    return jnp.sum(table[tokens] * jnp.asarray(mask)[..., None].astype(table.dtype), -2)


def dbd_weights(scores: jax.Array) -> jax.Array:
    """``ω_d = DBD_d / Σ_d' DBD_d'``, uniform ``1/D`` where the sum is 0. scores: f[B, D] (non-negative)."""
    check_array("scores", scores, ndim=2, kind="f")
    if not is_traced(scores) and np.size(scores) and np.asarray(scores).min() < 0:
        raise ValueError(f"scores: expected non-negative belonging degrees, got minimum {np.asarray(scores).min()}")
    tot = jnp.sum(scores, -1, keepdims=True)
    return jnp.where(tot > 0, scores / jnp.where(tot > 0, tot, 1.0), 1.0 / scores.shape[-1])


def ensemble_combine(p_D: jax.Array, weights: jax.Array) -> jax.Array:
    """``p(y|x) = Σ_d ω_d(x) p_d(y|x)``. p_D: f[D, B, C]; weights: f[B, D] -> f[B, C]."""
    check_array("p_D", p_D, ndim=3, kind="f")
    check_array("weights", weights, shape=(p_D.shape[1], p_D.shape[0]), kind="f")
    return jnp.einsum("dbc,bd->bc", p_D, weights)


def wcapsule_predict(model: CapsNetText, params_D, table: jax.Array, tokens: jax.Array, mask: jax.Array, *,
                     readout: str = "norm"):
    """WcapsuleE: ``(p f[B, C], polarity i32[B], domain i32[B] = argmax_d DBD)``."""
    if table.shape[1] != jax.tree.leaves(params_D)[0].shape[0]:
        raise ValueError(f"table: expected {jax.tree.leaves(params_D)[0].shape[0]} domain columns (one per net), "
                         f"got shape {tuple(table.shape)}")
    scores = dbd_scores(table, tokens, mask)
    p_D = class_probs(ensemble_apply(model, params_D, tokens, mask), readout)
    p = ensemble_combine(p_D, dbd_weights(scores).astype(p_D.dtype))
    return p, jnp.argmax(p, -1).astype(jnp.int32), jnp.argmax(scores, -1).astype(jnp.int32)


def binary_metrics(y, pred) -> dict:
    """Accuracy, precision, recall, F1 and G-mean = sqrt(TPR·TNR) of 0/1 predictions (numpy)."""
    y, pred = np.asarray(y), np.asarray(pred)
    check_array("y", y, ndim=1, kind="iub", min_size=1)
    check_array("pred", pred, shape=y.shape, kind="iub")
    for name, a in (("y", y), ("pred", pred)):
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name}: expected binary labels in {{0, 1}}")
    tp, tn = np.sum((y == 1) & (pred == 1)), np.sum((y == 0) & (pred == 0))
    fp, fn = np.sum((y == 0) & (pred == 1)), np.sum((y == 1) & (pred == 0))
    prec = tp / max(tp + fp, 1)
    tpr, tnr = tp / max(tp + fn, 1), tn / max(tn + fp, 1)
    f1 = 2 * prec * tpr / max(prec + tpr, 1e-12)
    return {"accuracy": float((tp + tn) / y.size), "precision": float(prec), "recall": float(tpr),
            "f1": float(f1), "gmean": float(np.sqrt(tpr * tnr))}
