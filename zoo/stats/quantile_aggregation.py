"""Flexible Model Aggregation for Quantile Regression (Fakoor, Kim, Mueller, Smola, Tibshirani).

arXiv 2103.00083 (JMLR 24, 2023). Official code: amazon-science/quantile-aggregation (PyTorch).

Shapes: ``n`` rows, ``M`` base models, ``m`` levels ``taus: f[m]`` (strictly increasing, an array),
``d`` features. ``Z: f[n, M, m]`` stacks the base models' quantiles, ``Z[i, j, t] = g_j(x_i; tau_t)``.

Equations -> functions (theta are free logits, softmax over the model axis when ``normalize``):
  Global-Coarse  g(x; tau_t) = sum_j w_j Z_jt,          w = softmax(theta), theta: f[M]
  Global-Medium  g(x; tau_t) = sum_j w_jt Z_jt,         w_.t = softmax_j(theta_.t), theta: f[M, m]
  Global-Fine    g(x; tau_t) = sum_{j,s} w_(js)t Z_js,  softmax over the M m pairs, theta: f[M m, m]
                                                         -> `init_global`, `global_weights`, `apply_global`
  Local-{Coarse, Medium, Fine} (DQA): theta = f_phi(x), an ELU MLP with M, M m, M m m outputs
    Linear(d, h) -> ELU -> [Dropout -> Linear(h, h) -> ELU] x (L - 1) -> Linear(h, out)
                                                         -> `WeightNet`, `init_local`, `local_weights`, `apply_local`
  normalize=False: the logits are the weights (unconstrained linear stacking)
  training loss (1/(n m)) sum_{i,t} rho_{tau_t}(y_i - g(x_i; tau_t)) (+ Huber, + margin penalty,
    + a monotonizer inside the loss)                     -> `aggregator_loss`, `make_loss_fn`
  prediction with post-sorting / PAV / the official 'mono' fix, then CQR   -> `predict`
  Adam fit through ``zoo.train`` with best-validation selection           -> `fit_aggregator`,
    `make_aggregator_run` (a pure run, vmapped over seeds by ``zoo.train.population``)
  exact LP optimum of the global aggregators (scipy ``linprog``, HiGHS)   -> `fit_global_lp`
  baselines: equal-weight average, median, best single model (validation pinball)
                                                         -> `average_quantiles`, `median_quantiles`, `best_single`

Utilities (pinball, WIS, sort/iso, CQR) live in `zoo.stats.quantile_utils`; base models, out-of-fold
predictions and data in `zoo.stats.quantile_base`.

Choices that are ours, not the paper's:
  * The local weight network's last layer is zero-initialized, so every aggregator starts at the
    uniform average (the official code zero-inits only the global logits).
  * Instead of the official "early-stop, then refit on all OOF rows for the best step count", a
    run keeps the parameters with the best validation loss (``w_val`` rows), evaluated every
    ``eval_every`` steps; without validation rows it returns the final parameters.
  * Rows are padded to a power of two (>= 64) with zero row weights, so data sets that share
    (M, m) and the padded size reuse one compiled program.
  * ``normalize=False`` starts from uniform weights (the official code starts it from zeros).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.checks import check_array, check_choice, check_range, is_traced
from zoo.train import TrainState, population, scan_steps

from . import quantile_utils as qu
from .quantile_base import load_regression, make_hetero_skew  # noqa: F401  (re-exported)

KINDS = ("coarse", "medium", "fine")
TRAIN_MONOTONE = (None, "sort", "iso", "soft_sort")
POST = (None, "sort", "iso", "mono")
TRACE_COUNTS: collections.Counter = collections.Counter()  # traces of `make_aggregator_run`'s program

# ----------------------------------------------------------------------------- validation


def _check_kind(kind: Any) -> None:
    check_choice("kind", kind, KINDS)


def _check_Z(Z: Any, taus: Any | None = None, *, n: int | None = None) -> jax.Array:
    Z = jnp.asarray(Z)
    check_array("Z", Z, ndim=3)
    if Z.shape[1] < 1:
        raise ValueError(f"Z: expected at least one base model (M >= 1) on axis 1, got shape {tuple(Z.shape)}")
    if taus is not None:
        qu.check_taus(taus)
        if Z.shape[2] != jnp.shape(taus)[0]:
            raise ValueError(
                f"Z: expected {jnp.shape(taus)[0]} levels on axis 2 (len(taus)), got shape {tuple(Z.shape)}"
            )
    if n is not None and Z.shape[0] != n:
        raise ValueError(f"Z: expected {n} rows, got shape {tuple(Z.shape)}")
    return Z


def _check_sizes(M: Any, m: Any) -> None:
    for name, v in (("M", M), ("m", m)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
        check_range(name, int(v), low=1)


def n_logits(M: int, m: int, kind: str) -> int:
    """Logits per weight set: M (coarse), M m (medium), M m m (fine)."""
    _check_kind(kind)
    _check_sizes(M, m)
    return {"coarse": M, "medium": M * m, "fine": M * m * m}[kind]


# ----------------------------------------------------------------------------- weights and mixing


def _logit_shape(M: int, m: int, kind: str) -> tuple[int, ...]:
    return {"coarse": (M,), "medium": (M, m), "fine": (M * m, m)}[kind]


def weights_from_logits(logits: jax.Array, *, kind: str, normalize: bool = True) -> jax.Array:
    """Softmax over the model axis: coarse ``f[..., M]`` (last axis), medium ``f[..., M, m]`` and
    fine ``f[..., M m, m]`` (axis -2). ``normalize=False`` returns the logits unchanged."""
    _check_kind(kind)
    logits = jnp.asarray(logits)
    need = 1 if kind == "coarse" else 2
    if logits.ndim < need:
        raise ValueError(f"logits: expected at least {need} axes for kind={kind!r}, got shape {tuple(logits.shape)}")
    check_array("logits", logits)
    if not normalize:
        return logits
    return jax.nn.softmax(logits, axis=-1 if kind == "coarse" else -2)


def mix(weights: jax.Array, Z: jax.Array, *, kind: str) -> jax.Array:
    """Aggregate ``Z: f[n, M, m]`` with global weights (no row axis) or local ones (leading n).

    coarse ``w: f[M] | f[n, M]``; medium ``f[M, m] | f[n, M, m]``; fine ``f[M m, m] | f[n, M m, m]``
    with pair index ``p = j m + s``. Returns ``f[n, m]``.
    """
    _check_kind(kind)
    Z = _check_Z(Z)
    weights = jnp.asarray(weights)
    check_array("weights", weights)
    n, M, m = Z.shape
    shape = _logit_shape(M, m, kind)
    local = weights.ndim == len(shape) + 1
    want = (n, *shape) if local else shape
    if tuple(weights.shape) != want:
        raise ValueError(
            f"weights: expected shape {shape} (global) or {(n, *shape)} (local) for kind={kind!r} and Z of shape "
            f"{tuple(Z.shape)}, got {tuple(weights.shape)}"
        )
    if kind == "coarse":
        return jnp.einsum("njt,nj->nt" if local else "njt,j->nt", Z, weights)
    if kind == "medium":
        return jnp.einsum("njt,njt->nt" if local else "njt,jt->nt", Z, weights)
    return jnp.einsum("np,npt->nt" if local else "np,pt->nt", Z.reshape(n, M * m), weights)


def init_global(key: jax.Array, M: int, m: int, kind: str, *, normalize: bool = True, dtype: Any = None) -> dict:
    """Global aggregator parameters ``{'logits': f[M] | f[M, m] | f[M m, m]}``.

    Zeros (uniform softmax weights), as in the official code. With ``normalize=False`` the
    logits are the weights, set uniform (1/M, or 1/(M m) for fine). ``key`` is unused (kept
    for a uniform ``init`` signature). ``dtype``: of the logits (None: JAX's default float).
    """
    _check_kind(kind)
    _check_sizes(M, m)
    dtype = jnp.result_type(float) if dtype is None else dtype
    shape = _logit_shape(int(M), int(m), kind)
    if normalize:
        return {"logits": jnp.zeros(shape, dtype)}
    return {"logits": jnp.full(shape, 1.0 / shape[0], dtype)}


def _check_params(params: Any, key: str) -> None:
    if not isinstance(params, dict) or key not in params:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        what = "init_global" if key == "logits" else "init_local"
        raise ValueError(f"params: expected a dict with {key!r} (from {what}), got {got}")


def global_weights(params: dict, *, kind: str, normalize: bool = True) -> jax.Array:
    """The weights of a global aggregator (see `weights_from_logits`)."""
    _check_params(params, "logits")
    return weights_from_logits(params["logits"], kind=kind, normalize=normalize)


def apply_global(params: dict, Z: jax.Array, *, kind: str, normalize: bool = True) -> jax.Array:
    """Global aggregate ``f[n, m]`` of ``Z: f[n, M, m]``."""
    _check_kind(kind)
    _check_params(params, "logits")
    Z = _check_Z(Z)
    n, M, m = Z.shape
    want = _logit_shape(M, m, kind)
    if tuple(jnp.shape(params["logits"])) != want:
        raise ValueError(
            f"params['logits']: expected shape {want} for kind={kind!r} with Z of shape {tuple(Z.shape)}, "
            f"got {tuple(params['logits'].shape)}"
        )
    return mix(global_weights(params, kind=kind, normalize=normalize), Z, kind=kind)


class WeightNet(nn.Module):
    """The local aggregator's logit network (official layout), ``x: f[n, d] -> f[n, out]``.

    Linear(d, hidden) -> ELU -> [Dropout -> Linear(hidden, hidden) -> ELU] x (layers - 1)
    -> Linear(hidden, out), the last layer zero-initialized (ours: uniform weights at init).
    """

    out: int
    hidden: int = 64
    layers: int = 3
    dropout: float = 0.0
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        pd = self.param_dtype
        h = nn.elu(nn.Dense(self.hidden, param_dtype=pd, name="Dense_0")(x))
        for i in range(1, self.layers):
            h = nn.Dropout(self.dropout, deterministic=not train or self.dropout == 0.0)(h)
            h = nn.elu(nn.Dense(self.hidden, param_dtype=pd, name=f"Dense_{i}")(h))
        zeros = nn.initializers.zeros
        return nn.Dense(self.out, kernel_init=zeros, bias_init=zeros, param_dtype=pd, name=f"Dense_{self.layers}")(h)


def _check_net(hidden: Any, layers: Any, dropout: Any) -> None:
    for name, v in (("hidden", hidden), ("layers", layers)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
        check_range(name, int(v), low=1)
    check_range("dropout", float(dropout), low=0.0, high=1.0, high_inclusive=False)


def init_local(
    key: jax.Array, d: int, M: int, m: int, kind: str, hidden: int = 64, layers: int = 3, dropout: float = 0.0,
    *, dtype: Any = None,
) -> dict:
    """Local aggregator parameters ``{'mlp': WeightNet params}`` for inputs ``x: f[n, d]``.

    ``dtype``: of the parameters (None: JAX's default float)."""
    _check_kind(kind)
    _check_sizes(M, m)
    _check_sizes(d, 1)
    _check_net(hidden, layers, dropout)
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    return {"mlp": _init_net(key, int(d), n_logits(int(M), int(m), kind), int(hidden), int(layers), dtype)}


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _init_net(key, d, out, hidden, layers, dtype):
    net = WeightNet(out=out, hidden=hidden, layers=layers, param_dtype=dtype)
    return net.init(key, jnp.zeros((1, d), dtype))["params"]


def _net_of(params: dict, out: int, dropout: float) -> WeightNet:
    _check_params(params, "mlp")
    mlp = params["mlp"]
    layers = len(mlp) - 1
    hidden = mlp["Dense_0"]["kernel"].shape[1]
    got = mlp[f"Dense_{layers}"]["kernel"].shape[1]
    if got != out:
        raise ValueError(f"params['mlp']: the last layer has {got} outputs, expected {out} for this kind, M and m")
    return WeightNet(out=out, hidden=hidden, layers=layers, dropout=dropout)


def local_weights(
    params: dict,
    x: jax.Array,
    M: int,
    m: int,
    *,
    kind: str,
    normalize: bool = True,
    train: bool = False,
    rng: jax.Array | None = None,
    dropout: float = 0.0,
) -> jax.Array:
    """Per-row weights ``f[n, M] | f[n, M, m] | f[n, M m, m]`` of a local aggregator."""
    _check_kind(kind)
    _check_sizes(M, m)
    x = jnp.asarray(x)
    check_array("x", x, ndim=2)
    if not is_traced(dropout):
        check_range("dropout", float(dropout), low=0.0, high=1.0, high_inclusive=False)
    net = _net_of(params, n_logits(M, m, kind), dropout)
    if train and dropout > 0.0 and rng is None:
        raise ValueError("rng: a PRNG key is needed when train=True and dropout > 0")
    rngs = {"dropout": rng} if (train and dropout > 0.0) else {}
    logits = net.apply({"params": params["mlp"]}, x, train=train, rngs=rngs)
    logits = logits.reshape((x.shape[0],) + _logit_shape(M, m, kind))
    return weights_from_logits(logits, kind=kind, normalize=normalize)


def apply_local(
    params: dict,
    x: jax.Array,
    Z: jax.Array,
    *,
    kind: str,
    normalize: bool = True,
    train: bool = False,
    rng: jax.Array | None = None,
    dropout: float = 0.0,
) -> jax.Array:
    """Local (feature-dependent) aggregate ``f[n, m]``; ``x: f[n, d]``, ``Z: f[n, M, m]``."""
    Z = _check_Z(Z)
    x = jnp.asarray(x)
    check_array("x", x, ndim=2)
    if x.shape[0] != Z.shape[0]:
        raise ValueError(f"x: expected {Z.shape[0]} rows (as Z), got shape {tuple(x.shape)}")
    _, M, m = Z.shape
    w = local_weights(params, x, M, m, kind=kind, normalize=normalize, train=train, rng=rng, dropout=dropout)
    return mix(w, Z, kind=kind)


# ----------------------------------------------------------------------------- baselines


def average_quantiles(Z: jax.Array) -> jax.Array:
    """Equal-weight average over models: ``f[n, M, m] -> f[n, m]``."""
    return jnp.mean(_check_Z(Z), axis=1)


def median_quantiles(Z: jax.Array) -> jax.Array:
    """Median over models at each level: ``f[n, M, m] -> f[n, m]``."""
    return jnp.median(_check_Z(Z), axis=1)


def best_single(Z_val: jax.Array, y_val: jax.Array, taus: jax.Array) -> int:
    """Index of the model with the lowest mean validation pinball (ties: the first)."""
    Z_val = _check_Z(Z_val, taus)
    losses = [float(jnp.mean(qu.pinball(Z_val[:, j], y_val, taus))) for j in range(Z_val.shape[1])]
    return int(np.argmin(losses))


# ----------------------------------------------------------------------------- loss


def _row_loss(q: jax.Array, y: jax.Array, taus: jax.Array, huber: Any) -> jax.Array:
    """Per-row mean over levels of the (Huberized) check loss: ``f[n]``."""
    return jnp.mean(qu.huber_check_loss(y[:, None] - q, taus, huber), axis=-1)


def _row_penalty(q: jax.Array, delta: Any) -> jax.Array:
    """Per-row crossing penalty ``sum_{s<t} relu(q_s - q_t + delta_st) / (m(m-1)/2)``: ``f[n]``."""
    m = q.shape[-1]
    if m < 2:
        return jnp.zeros(q.shape[:1], q.dtype)
    pair = q[:, :, None] - q[:, None, :] + jnp.asarray(delta, q.dtype)
    upper = jnp.triu(jnp.ones((m, m), bool), k=1)
    return jnp.sum(jnp.where(upper, jax.nn.relu(pair), 0.0), axis=(1, 2)) / (m * (m - 1) / 2)


def aggregator_loss(
    params: Any,
    batch: dict,
    rng: jax.Array | None = None,
    *,
    apply_fn: Callable[[Any, dict, jax.Array | None], jax.Array],
    taus: jax.Array,
    monotone: str | None = None,
    margin_weight: float = 0.0,
    delta: Any = 0.0,
    huber: float = 0.0,
    strength: float = 0.1,
) -> jax.Array:
    """The aggregator's training loss: ``f[]``.

    ``q = apply_fn(params, batch, rng)`` (``f[n, m]``); the margin penalty (weight
    ``margin_weight``, margins ``delta``: scalar or ``f[m, m]``) is taken on the raw q, as in the
    official code; the monotonizer ``monotone`` (None, 'sort', 'iso', 'soft_sort' with
    ``strength``) is applied before the (Huber, threshold ``huber``) pinball loss. Rows are
    weighted by ``batch['w']: f[n]`` when present (padding and folds use weight 0):
    ``loss = sum_i w_i [mean_t loss_it + margin_weight pen_i] / sum_i w_i``.
    """
    check_choice("monotone", monotone, TRAIN_MONOTONE)
    if not callable(apply_fn):
        raise ValueError(f"apply_fn: expected a callable (params, batch, rng) -> f[n, m], got {type(apply_fn).__name__}")
    if not isinstance(batch, dict) or "y" not in batch:
        raise ValueError(f"batch: expected a dict with 'y' (and what apply_fn reads), got {type(batch).__name__}")
    taus = jnp.asarray(taus)
    qu.check_taus(taus)
    q = apply_fn(params, batch, rng)
    y = batch["y"]
    w = batch.get("w")
    w = jnp.ones(y.shape, q.dtype) if w is None else w
    per_row = _row_loss(qu.monotonize(q, monotone, strength=strength), y, taus, huber)
    if not (isinstance(margin_weight, (int, float)) and margin_weight == 0.0):
        per_row = per_row + margin_weight * _row_penalty(q, delta)
    return jnp.sum(w * per_row) / jnp.maximum(jnp.sum(w), 1e-12)


def global_apply_fn(kind: str, normalize: bool = True) -> Callable:
    """``(params, batch, rng) -> f[n, m]`` for a global aggregator (reads ``batch['Z']``)."""
    _check_kind(kind)
    return functools.partial(_global_apply, kind=kind, normalize=normalize)


def _global_apply(params, batch, rng, *, kind, normalize):
    return mix(global_weights(params, kind=kind, normalize=normalize), batch["Z"], kind=kind)


def local_apply_fn(kind: str, normalize: bool = True, *, train: bool = True, dropout: float = 0.0) -> Callable:
    """``(params, batch, rng) -> f[n, m]`` for a local aggregator (reads ``batch['x']``, ``batch['Z']``)."""
    _check_kind(kind)
    check_range("dropout", float(dropout), low=0.0, high=1.0, high_inclusive=False)
    return functools.partial(_local_apply, kind=kind, normalize=normalize, train=train, dropout=dropout)


def _local_apply(params, batch, rng, *, kind, normalize, train, dropout):
    _, M, m = batch["Z"].shape
    w = local_weights(params, batch["x"], M, m, kind=kind, normalize=normalize, train=train, rng=rng, dropout=dropout)
    return mix(w, batch["Z"], kind=kind)


def make_loss_fn(apply_fn: Callable, taus: jax.Array | None = None, **loss_kw) -> Callable:
    """A ``zoo.train`` loss ``(params, batch, rng) -> (loss, {})`` around `aggregator_loss`.

    ``taus`` defaults to ``batch['taus']`` (so the levels can be data of a vmapped run).
    """
    if not callable(apply_fn):
        raise ValueError(f"apply_fn: expected a callable (params, batch, rng) -> f[n, m], got {type(apply_fn).__name__}")
    if taus is not None:
        qu.check_taus(taus)

    def loss_fn(params, batch, rng):
        t = batch["taus"] if taus is None else taus
        return aggregator_loss(params, batch, rng, apply_fn=apply_fn, taus=t, **loss_kw), {}

    return loss_fn


# ----------------------------------------------------------------------------- prediction


def predict(
    params: dict,
    x: jax.Array | None,
    Z: jax.Array,
    *,
    kind: str,
    taus: jax.Array | None = None,
    normalize: bool = True,
    post: str | None = "sort",
    cqr_qhat: jax.Array | None = None,
) -> jax.Array:
    """Aggregate, monotonize (``post``: 'sort' (default), 'iso', 'mono' or None), then CQR.

    Local when ``params`` has an ``'mlp'`` entry (then ``x: f[n, d]`` is needed), global otherwise.
    ``cqr_qhat: f[m // 2]`` (from `zoo.stats.quantile_utils.cqr_calibrate` on calibration rows
    passed through the same ``predict``) widens each symmetric pair and re-sorts. Returns ``f[n, m]``.
    Hard sort only: a soft sort at prediction shrinks the quantiles (spec pitfall).
    """
    check_choice("post", post, POST)
    Z = _check_Z(Z, taus)
    if not isinstance(params, dict) or not ("mlp" in params or "logits" in params):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params: expected a dict with 'logits' (global) or 'mlp' (local), got {got}")
    if "mlp" in params:
        if x is None:
            raise ValueError("x: a local aggregator needs the features x: f[n, d]")
        q = apply_local(params, x, Z, kind=kind, normalize=normalize, train=False)
    else:
        q = apply_global(params, Z, kind=kind, normalize=normalize)
    q = qu.monotonize(q, post)
    if cqr_qhat is not None:
        if taus is None:
            raise ValueError("taus: needed with cqr_qhat (to find the symmetric pairs)")
        q = qu.cqr_apply(q, cqr_qhat, taus, resort=True)
    return q


# ----------------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True, kw_only=True)
class AggregatorConfig:
    """How to fit one aggregator with Adam (AMSGrad + L2 weight decay, as the official trainer).

    Fields: ``kind`` ('coarse', 'medium', 'fine'); ``local`` (feature-dependent weights);
    ``normalize`` (softmax weights); network ``hidden``, ``layers``, ``dropout`` (local only);
    ``lr``, ``weight_decay``, ``schedule`` ('constant' or 'cosine' decay to 0), ``num_steps``,
    ``batch_size`` (None: full batch), ``eval_every`` (validation period, divides ``num_steps``);
    loss options ``monotone``, ``strength`` (soft sort), ``margin_weight``, ``margin_delta``, ``huber``.
    Official defaults: lr 1e-3, wd 1e-7, hidden 64, layers 3, margin off, no map in training.
    """

    kind: Literal["coarse", "medium", "fine"] = "medium"
    local: bool = False
    normalize: bool = True
    hidden: int = 64
    layers: int = 3
    dropout: float = 0.0
    lr: float = 1e-3
    weight_decay: float = 1e-7
    schedule: Literal["constant", "cosine"] = "constant"
    num_steps: int = 2000
    batch_size: int | None = None
    eval_every: int = 100
    monotone: Literal["sort", "iso", "soft_sort"] | None = None
    strength: float = 0.1
    margin_weight: float = 0.0
    margin_delta: float = 0.0
    huber: float = 0.0

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        check_choice("schedule", self.schedule, ("constant", "cosine"))
        check_choice("monotone", self.monotone, TRAIN_MONOTONE)
        _check_net(self.hidden, self.layers, self.dropout)
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        check_range("weight_decay", self.weight_decay, low=0.0)
        for name in ("num_steps", "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.num_steps % self.eval_every:
            raise ValueError(
                f"eval_every: expected a divisor of num_steps = {self.num_steps}, got {self.eval_every}"
            )
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):  # fmt: skip
            raise ValueError(f"batch_size: expected a positive int or None (full batch), got {self.batch_size!r}")
        check_range("strength", self.strength, low=0.0, low_inclusive=False)
        check_range("margin_weight", self.margin_weight, low=0.0)
        check_range("margin_delta", self.margin_delta, low=0.0)
        check_range("huber", self.huber, low=0.0)

    def optimizer(self) -> optax.GradientTransformation:
        lr = self.lr if self.schedule == "constant" else optax.cosine_decay_schedule(self.lr, self.num_steps)
        return optax.chain(optax.add_decayed_weights(self.weight_decay), optax.amsgrad(lr))


def padded_size(n: int) -> int:
    """Rows after padding: the next power of two, at least 64."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive int (the number of rows), got {n!r}")
    return max(64, 1 << (int(n) - 1).bit_length())


def pack_data(
    x: Any,
    Z: Any,
    y: Any,
    taus: Any,
    *,
    w: Any = None,
    w_val: Any = None,
    pad_to: int | None = None,
) -> dict:
    """Validate and pad one data set into the dict a run trains on (host-side).

    Args: ``x: f[n, d]`` (or None for global aggregators: a zero-width array is used),
    ``Z: f[n, M, m]``, ``y: f[n]``, ``taus: f[m]``; ``w: f[n]`` training row weights (default 1),
    ``w_val: f[n]`` validation row weights (default 0: no validation).
    Returns ``{'x', 'Z', 'y', 'w', 'w_val', 'taus'}`` with rows padded (weight 0) to ``pad_to``
    (default `padded_size`).
    """
    Z = np.asarray(Z)
    dt = jax.dtypes.canonicalize_dtype(qu._float_dtype(Z.dtype))  # float32 unless x64 is on
    taus = np.asarray(taus, dt)
    qu.check_taus(taus)
    Z = Z.astype(dt)
    check_array("Z", Z, ndim=3)
    if Z.shape[1] < 1:
        raise ValueError(f"Z: expected at least one base model (M >= 1) on axis 1, got shape {Z.shape}")
    if Z.shape[2] != taus.shape[0]:
        raise ValueError(f"Z: expected {taus.shape[0]} levels on axis 2 (len(taus)), got shape {Z.shape}")
    n = Z.shape[0]
    y = np.asarray(y, dt)
    check_array("y", y, shape=(n,))
    x = np.zeros((n, 0), dt) if x is None else np.asarray(x, dt)
    check_array("x", x, ndim=2)
    if x.shape[0] != n:
        raise ValueError(f"x: expected {n} rows (as Z), got shape {x.shape}")
    w = np.ones(n, dt) if w is None else np.asarray(w, dt)
    w_val = np.zeros(n, dt) if w_val is None else np.asarray(w_val, dt)
    for name, v in (("w", w), ("w_val", w_val)):
        check_array(name, v, shape=(n,))
        if (v < 0).any():
            raise ValueError(f"{name}: expected non-negative row weights, got min {v.min()}")
    if w.sum() <= 0:
        raise ValueError("w: expected at least one row with a positive training weight")
    size = padded_size(n) if pad_to is None else int(pad_to)
    if size < n:
        raise ValueError(f"pad_to: expected at least the {n} rows, got {size}")

    def pad(a):
        return np.concatenate([a, np.zeros((size - n,) + a.shape[1:], a.dtype)]) if size > n else a

    return {"x": pad(x), "Z": pad(Z), "y": pad(y), "w": pad(w), "w_val": pad(w_val), "taus": taus}


def _weighted_pinball(q, y, w, taus):
    per_row = jnp.mean(qu.check_loss(y[:, None] - q, taus), axis=-1)
    return jnp.sum(w * per_row) / jnp.maximum(jnp.sum(w), 1e-12)


def make_aggregator_run(cfg: AggregatorConfig) -> Callable[[jax.Array, dict], tuple[Any, dict]]:
    """A pure ``run(key, data) -> (params, info)`` fitting one aggregator on `pack_data` output.

    ``cfg.num_steps`` Adam steps via ``zoo.train.scan_steps``, in chunks of ``cfg.eval_every``;
    after each chunk the validation pinball (rows weighted by ``data['w_val']``, with the
    training monotonizer, hard sort for 'soft_sort') is recorded and the best parameters kept
    (if ``w_val`` is all zero, the last ones). ``info``: ``train_loss: f[C]`` (the last step of
    each chunk), ``val_loss: f[C]``, ``best_step: i32[]``. Cached per config, so that
    ``zoo.train.population(run, keys, data_stacked)`` compiles once per config and shapes.
    """
    _check_cfg(cfg)
    return _make_aggregator_run(cfg)


def _check_cfg(cfg: Any) -> None:
    if not isinstance(cfg, AggregatorConfig):
        raise ValueError(f"cfg: expected an AggregatorConfig, got {type(cfg).__name__}")


@functools.lru_cache(maxsize=64)
def _make_aggregator_run(cfg: AggregatorConfig) -> Callable[[jax.Array, dict], tuple[Any, dict]]:
    apply_train = (local_apply_fn(cfg.kind, cfg.normalize, train=True, dropout=cfg.dropout) if cfg.local
                   else global_apply_fn(cfg.kind, cfg.normalize))  # fmt: skip
    apply_eval = (local_apply_fn(cfg.kind, cfg.normalize, train=False) if cfg.local
                  else global_apply_fn(cfg.kind, cfg.normalize))  # fmt: skip
    loss_fn = make_loss_fn(apply_train, monotone=cfg.monotone, margin_weight=cfg.margin_weight,
                           delta=cfg.margin_delta, huber=cfg.huber, strength=cfg.strength)  # fmt: skip
    eval_map = "sort" if cfg.monotone == "soft_sort" else cfg.monotone
    n_chunks = cfg.num_steps // cfg.eval_every

    def run(key: jax.Array, data: dict) -> tuple[Any, dict]:
        TRACE_COUNTS["aggregator_run"] += 1
        init_key, rng_key, data_key = jax.random.split(key, 3)
        n, M, m = data["Z"].shape
        dt = data["Z"].dtype
        if cfg.local:
            params = init_local(init_key, data["x"].shape[1], M, m, cfg.kind, cfg.hidden, cfg.layers, cfg.dropout,
                                dtype=dt)  # fmt: skip
        else:
            params = init_global(init_key, M, m, cfg.kind, normalize=cfg.normalize, dtype=dt)
        optimizer = cfg.optimizer()
        state = TrainState.create(params=params, optimizer=optimizer, rng=rng_key)
        train = {k: data[k] for k in ("x", "Z", "y", "w", "taus")}

        if cfg.batch_size is None:
            batch_fn = lambda step: train  # noqa: E731
        else:
            p = data["w"] / jnp.sum(data["w"])

            def batch_fn(step):
                idx = jax.random.choice(jax.random.fold_in(data_key, step), n, (cfg.batch_size,), p=p)
                b = jax.tree.map(lambda a: a[idx], {k: train[k] for k in ("x", "Z", "y")})
                return {**b, "w": jnp.ones((cfg.batch_size,), dt), "taus": data["taus"]}

        chunk = scan_steps(loss_fn, optimizer, batch_fn, cfg.eval_every)
        has_val = jnp.sum(data["w_val"]) > 0

        def val_loss(params):
            q = qu.monotonize(apply_eval(params, data, None), eval_map)
            return _weighted_pinball(q, data["y"], data["w_val"], data["taus"])

        def body(carry, c):
            state, best, best_val, best_step = carry
            state, metrics = chunk(state)
            v = jnp.where(has_val, val_loss(state.params), 0.0)
            better = (v < best_val) | ~has_val  # no validation: always keep the latest
            best = jax.tree.map(lambda a, b: jnp.where(better, a, b), state.params, best)
            best_val = jnp.where(better, v, best_val)
            best_step = jnp.where(better, (c + 1) * cfg.eval_every, best_step)
            return (state, best, best_val, best_step), (metrics["loss"][-1], v)

        carry = (state, state.params, jnp.asarray(jnp.inf, dt), jnp.zeros((), jnp.int32))
        (state, best, best_val, best_step), (tl, vl) = jax.lax.scan(body, carry, jnp.arange(n_chunks, dtype=jnp.int32))
        return best, {"train_loss": tl, "val_loss": vl, "best_step": best_step}

    return run


@functools.lru_cache(maxsize=64)
def _jitted_run(cfg: AggregatorConfig) -> Callable:
    return jax.jit(_make_aggregator_run(cfg))


def fit_aggregator(
    key: jax.Array,
    x: Any,
    Z: Any,
    y: Any,
    taus: Any,
    cfg: AggregatorConfig = AggregatorConfig(),
    *,
    w: Any = None,
    w_val: Any = None,
    val: tuple[Any, Any, Any] | None = None,
) -> tuple[dict, dict]:
    """Fit one aggregator; return ``(params, info)`` (see `make_aggregator_run`).

    Args: ``x: f[n, d]`` (None for global), ``Z: f[n, M, m]`` out-of-fold base predictions,
    ``y: f[n]``, ``taus: f[m]``; ``w`` / ``w_val``: training / validation row weights over the
    same rows, or ``val = (x_val, Z_val, y_val)``: extra rows used for validation only.
    """
    _check_cfg(cfg)
    if cfg.local and x is None:
        raise ValueError("x: a local aggregator needs the features x: f[n, d]")
    if val is not None:
        if w_val is not None:
            raise ValueError("val: give either val=(x_val, Z_val, y_val) or w_val, not both")
        xv, Zv, yv = val
        n, nv = np.shape(Z)[0], np.shape(Zv)[0]
        x = None if x is None else np.concatenate([np.asarray(x), np.asarray(xv)])
        Z = np.concatenate([np.asarray(Z), np.asarray(Zv)])
        y = np.concatenate([np.asarray(y), np.asarray(yv)])
        w = np.concatenate([np.ones(n) if w is None else np.asarray(w), np.zeros(nv)])
        w_val = np.concatenate([np.zeros(n), np.ones(nv)])
    data = pack_data(x, Z, y, taus, w=w, w_val=w_val)
    return _jitted_run(cfg)(key, data)


def fit_aggregator_population(keys: jax.Array, data: dict, cfg: AggregatorConfig) -> tuple[dict, dict]:
    """Fit one aggregator per member of a stacked population in one vmapped program.

    ``data``: `pack_data` dicts stacked along a new leading axis S (same shapes; e.g. one per
    seed or split); ``keys: key[S]``. Returns ``(params, info)`` with leading axis S.
    """
    _check_cfg(cfg)
    if not isinstance(data, dict) or any(k not in data for k in ("x", "Z", "y", "w", "w_val", "taus")):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"data: expected pack_data dicts stacked on a leading axis, got {got}")
    Zs = np.shape(data["Z"])
    if len(Zs) != 4:
        raise ValueError(f"data['Z']: expected a stacked f[S, n, M, m] (pack_data output stacked), got shape {Zs}")
    return population(_make_aggregator_run(cfg), keys, data)


# ----------------------------------------------------------------------------- exact LP reference


def fit_global_lp(Z: Any, y: Any, taus: Any, *, kind: str = "medium", normalize: bool = True) -> dict:
    """The exact minimizer of the global aggregator's mean pinball by linear programming (HiGHS).

    min_w (1/(n m)) sum_{i,t} rho_{tau_t}(y_i - g_w(x_i; tau_t)) with w on the simplex (each
    weight set; free when ``normalize=False``), written with slacks ``y - Zw = u+ - u-``,
    ``u+- >= 0``: medium and fine split into m independent LPs (one per output level), coarse is
    one LP over all levels. Host-only (numpy/scipy, float64).

    Returns ``{'weights': f64[M] | f64[M, m] | f64[M m, m], 'pinball': f64[m]}`` (per-level mean
    pinball at the optimum; its mean is the optimal loss).
    """
    from scipy import sparse
    from scipy.optimize import linprog

    _check_kind(kind)
    taus = np.asarray(taus, np.float64)
    qu.check_taus(taus)
    Z = np.asarray(Z, np.float64)
    check_array("Z", Z, ndim=3)
    n, M, m = Z.shape
    if m != taus.size:
        raise ValueError(f"Z: expected {taus.size} levels on axis 2 (len(taus)), got shape {Z.shape}")
    if M < 1:
        raise ValueError(f"Z: expected at least one base model (M >= 1), got shape {Z.shape}")
    y = np.asarray(y, np.float64)
    check_array("y", y, shape=(n,))

    def solve(A, tau_rows, k):
        """min sum_r (tau_r u+_r + (1 - tau_r) u-_r)/n  s.t. A w + u+ - u- = y_rows (stacked)."""
        r = A.shape[0]
        eye = sparse.identity(r, format="csr")
        A_eq = sparse.hstack([A, eye, -eye], format="csr")
        b_eq = np.tile(y, r // n)
        c = np.concatenate([np.zeros(k), tau_rows / n, (1.0 - tau_rows) / n])
        bounds = [(0, None) if normalize else (None, None)] * k + [(0, None)] * (2 * r)
        if normalize:
            A_eq = sparse.vstack([A_eq, sparse.hstack([np.ones((1, k)), sparse.csr_matrix((1, 2 * r))])], format="csr")
            b_eq = np.concatenate([b_eq, [1.0]])
        res = linprog(c, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
        if res.status != 0:
            raise RuntimeError(f"linprog failed: {res.message}")
        return res.x[:k]

    if kind == "coarse":
        A = sparse.csr_matrix(np.concatenate([Z[:, :, t] for t in range(m)]))  # [(t, i), j]
        w = solve(A, np.repeat(taus, n), M)
        q = np.einsum("njt,j->nt", Z, w)
    elif kind == "medium":
        w = np.stack([solve(sparse.csr_matrix(Z[:, :, t]), np.full(n, taus[t]), M) for t in range(m)], axis=1)
        q = np.einsum("njt,jt->nt", Z, w)
    else:
        Zf = Z.reshape(n, M * m)
        A = sparse.csr_matrix(Zf)
        w = np.stack([solve(A, np.full(n, taus[t]), M * m) for t in range(m)], axis=1)
        q = Zf @ w
    e = y[:, None] - q
    return {"weights": w, "pinball": np.mean(np.maximum(taus * e, (taus - 1) * e), axis=0)}
