"""Grokking tickets: lottery tickets accelerate grokking.

Paper: Gouki Minegishi, Yusuke Iwasawa, Yutaka Matsuo, "Grokking Tickets: Lottery Tickets
Accelerate Grokking", arXiv:2310.19470 (2023; later retitled "Bridging Lottery Ticket and
Grokking"). Spec: ``papers/grokking_tickets.md``. Masks come from the family core
`zoo.weightspace.masks`.

Method -> functions
  task: all pairs (a, b) (a <= b when ``symmetric``), label (a op b) mod p, a
        seeded shuffle split into train / test (frac_train)           -> `modular_pairs`
  MLP (OnlyMLP, no biases): h = ReLU(W_in (E[:, a] + E[:, b])),
        logits = (W_out h)^T U                                        -> `OnlyMLP`, `init_mlp`, `mlp_apply`
  1-layer transformer (no LayerNorm, no positional embedding, causal attention over the two
        tokens, no biases, logits at the last position)              -> `Transformer`, `init_transformer`,
                                                                         `transformer_apply`
  every forward uses m ⊙ θ (mask None: dense)
  mean cross-entropy, accuracy, mean p(correct class)                -> `cross_entropy`, `full_batch_loss`
  AdamW(lr 1e-3, betas (0.9, 0.98), eps 1e-8, decoupled wd 1.0)      -> `make_optimizer`
  full-batch training, masked updates, k steps per dispatch          -> `init_state`, `train_chunk`,
                                                                         `evaluate`, `train_run`
  grokking ticket: global magnitude mask at ``density`` from a trained
        checkpoint θ_T, rewound to the same run's init θ_0: (m ⊙ θ_0, m) -> `grokking_ticket`
  controls: random mask at the same density; dense θ_0 rescaled to the
        ticket's (sum of per-tensor) L1/L2 norm; tickets from earlier
        (memorisation / transition) checkpoints (`grokking_ticket` on them) -> `control_arms`
  grokking speed τ_gen = first evaluated step with test acc >= thr,
        ``S_max + 1`` when never reached                              -> `steps_to`

Parameter layouts follow the official code (math layout, ``x @ W.T`` style): MLP ``embed``
``[d_emb, p]``, ``w_in`` ``[d_model, d_emb]``, ``w_out`` ``[d_emb, d_model]``, ``unembed``
``[d_emb, p]``; inits N(0, s²/fan) with s = ``weight_scale`` and fan p, d_emb, d_model, d_emb
respectively. Transformer: ``embed`` ``[d_model, p]`` (std 1/sqrt(p)), ``W_Q/W_K/W_V``
``[n_heads, d_head, d_model]``, ``W_O`` ``[d_model, n_heads*d_head]``, ``mlp_in`` ``[d_mlp, d_model]``,
``mlp_out`` ``[d_model, d_mlp]``, ``unembed`` ``[d_model, p]``, all std 1/sqrt(d_model) except the
embedding.

Our choices (not the paper's):
  * The split uses ``np.random.default_rng(seed).permutation``, not Python's ``random.shuffle`` of
    the official code: the same sizes (911 / 1367 for p = 67, frac 0.4, symmetric), other pairs.
  * Cross-entropy is computed in the logits' dtype (float32 by default; the official code casts
    to float64). float32 ``log_softmax`` saturates: a margin of 30 gives a loss of exactly 0
    (float64: ~6e-12). Run under ``jax.enable_x64(True)`` with float64 params for parity.
  * Pruned weights are stored as zeros and held there by masking the optimizer's updates
    (`zoo.weightspace.masks.masked_optimizer`), which is function-for-function the official
    ``m ⊙ θ`` forward; the official code lets pruned weights (never used) decay under WD.
  * The official pruning script calls ``relive_neurons`` (re-enables hidden units whose whole
    input row / output column was pruned) and may reset masks to ones after zeroing
    (``if_mask_reset``); we keep the fixed mask the paper describes and do not revive units.
  * SNIP / GraSP / SynFlow pruning-at-initialisation controls are not implemented (random
    pruning is the PaI control we run).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.checks import check_array, check_choice, check_float_dtype, check_range, check_tree_like, is_traced
from zoo.train import TrainState, scan_steps

from . import masks as mk

Params = Any

__all__ = [
    "GrokConfig",
    "OnlyMLP",
    "Transformer",
    "control_arms",
    "cross_entropy",
    "evaluate",
    "full_batch_loss",
    "grokking_ticket",
    "init_mlp",
    "init_params",
    "init_state",
    "init_transformer",
    "make_optimizer",
    "mlp_apply",
    "modular_pairs",
    "steps_to",
    "train_chunk",
    "train_run",
    "transformer_apply",
]

OPS = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "x2_xy_y2": lambda a, b, p: (a * a + a * b + b * b) % p,
}


def _check_int(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    check_range(name, int(v), low=low)
    return int(v)


def modular_pairs(p: int, *, op: str = "add", frac_train: float = 0.4, seed: int = 0,
                  symmetric: bool = True) -> dict[str, np.ndarray]:
    """The modular-arithmetic data set, split at random into train / test.

    Returns ``{"train_x": i32[n_tr, 2], "train_y": i32[n_tr], "test_x": i32[n_te, 2], "test_y": i32[n_te]}``
    with ``n_tr = int(frac_train * n)``, ``n = p (p + 1) / 2`` (symmetric: pairs a <= b) or ``p²``.
    """
    p = _check_int("p", p, 2)
    check_choice("op", op, tuple(OPS))
    if isinstance(frac_train, bool) or not isinstance(frac_train, (int, float, np.floating)):
        raise TypeError(f"frac_train: expected a float in (0, 1), got {type(frac_train).__name__}")
    check_range("frac_train", frac_train, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    seed = _check_int("seed", seed, 0)
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    if symmetric:
        keep = a <= b
        a, b = a[keep], b[keep]
    n = a.size
    n_tr = int(frac_train * n)
    if not 1 <= n_tr < n:
        raise ValueError(f"frac_train: {frac_train} leaves {n_tr} of {n} pairs for training; need 1..{n - 1}")
    order = np.random.default_rng(seed).permutation(n)
    x = np.stack([a, b], 1).astype(np.int32)[order]
    y = OPS[op](a, b, p).astype(np.int32)[order]
    return {"train_x": x[:n_tr], "train_y": y[:n_tr], "test_x": x[n_tr:], "test_y": y[n_tr:]}


# ----------------------------------------------------------------------------------- models


def _normal(std: float, dtype):
    return lambda key, shape: std * jax.random.normal(key, shape, dtype)


def _masked(params: Params, mask: Params | None) -> Params:
    return params if mask is None else jax.tree.map(lambda w, m: w * m.astype(w.dtype), params, mask)


class OnlyMLP(nn.Module):
    """The paper's MLP (official ``OnlyMLP`` with ``num_layers = 0``): tokens i32[B, 2] -> logits [B, p]."""

    p: int
    d_emb: int = 500
    d_model: int = 48
    weight_scale: float = 1.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        dt, s = check_float_dtype("dtype", self.dtype), self.weight_scale
        embed = self.param("embed", _normal(s / np.sqrt(self.p), dt), (self.d_emb, self.p))
        w_in = self.param("w_in", _normal(s / np.sqrt(self.d_emb), dt), (self.d_model, self.d_emb))
        w_out = self.param("w_out", _normal(s / np.sqrt(self.d_model), dt), (self.d_emb, self.d_model))
        unembed = self.param("unembed", _normal(s / np.sqrt(self.d_emb), dt), (self.d_emb, self.p))
        e = embed.T[x].sum(1)  # [B, d_emb]
        h = jax.nn.relu(e @ w_in.T)
        return (h @ w_out.T) @ unembed


class Transformer(nn.Module):
    """The paper's 1-layer transformer (no LayerNorm, no positional embedding, no biases, ReLU MLP)."""

    p: int
    d_model: int = 128
    n_heads: int = 1
    d_head: int = 128
    d_mlp: int = 128
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        dt, d = check_float_dtype("dtype", self.dtype), self.d_model
        std = 1.0 / np.sqrt(d)
        embed = self.param("embed", _normal(1.0 / np.sqrt(self.p), dt), (d, self.p))
        wq, wk, wv = (self.param(n, _normal(std, dt), (self.n_heads, self.d_head, d)) for n in ("W_Q", "W_K", "W_V"))
        wo = self.param("W_O", _normal(std, dt), (d, self.n_heads * self.d_head))
        w1 = self.param("mlp_in", _normal(std, dt), (self.d_mlp, d))
        w2 = self.param("mlp_out", _normal(std, dt), (d, self.d_mlp))
        unembed = self.param("unembed", _normal(std, dt), (d, self.p))
        h = embed.T[x]  # [B, T, d]
        q, k, v = (jnp.einsum("ihd,btd->bith", w, h) for w in (wq, wk, wv))
        scores = jnp.einsum("bith,bish->bits", q, k) / np.sqrt(self.d_head)
        t = x.shape[1]
        causal = jnp.tril(jnp.ones((t, t), bool))
        attn = jax.nn.softmax(jnp.where(causal, scores, jnp.asarray(-1e10, scores.dtype)), axis=-1)
        z = jnp.einsum("bits,bish->btih", attn, v).reshape(*h.shape[:2], -1)
        h = h + z @ wo.T
        h = h + jax.nn.relu(h @ w1.T) @ w2.T
        return h[:, -1] @ unembed


def _check_tokens(x, p=None):
    check_array("x", x, ndim=2, kind="iu")
    if x.shape[1] != 2:
        raise ValueError(f"x: expected token pairs of shape (B, 2), got {tuple(x.shape)}")


def _check_key(key):
    if not (isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.shape == (2,))):
        raise TypeError(f"key: expected a JAX PRNG key, got {type(key).__name__}")


@functools.lru_cache(maxsize=32)
def _init_fn(cls, fields):
    """One jitted init per model configuration (eager flax init compiles every draw on its own)."""
    module = cls(**dict(fields))
    return jax.jit(lambda key: module.init(key, jnp.zeros((1, 2), jnp.int32))["params"])


def init_mlp(key: jax.Array, p: int, *, d_emb: int = 500, d_model: int = 48, weight_scale: float = 1.0,
             dtype: Any = None) -> Params:
    """Parameters of `OnlyMLP` (paper inits): ``{"embed", "w_in", "w_out", "unembed"}``."""
    _check_key(key)
    p, d_emb, d_model = _check_int("p", p, 2), _check_int("d_emb", d_emb, 1), _check_int("d_model", d_model, 1)
    check_range("weight_scale", weight_scale, low=0.0, low_inclusive=False)
    return _init_fn(OnlyMLP, (("p", p), ("d_emb", d_emb), ("d_model", d_model), ("weight_scale", float(weight_scale)),
                              ("dtype", check_float_dtype("dtype", dtype))))(key)


def init_transformer(key: jax.Array, p: int, *, d_model: int = 128, n_heads: int = 1, d_head: int | None = None,
                     d_mlp: int = 128, dtype: Any = None) -> Params:
    """Parameters of `Transformer` (paper inits); ``d_head`` defaults to ``d_model // n_heads``."""
    _check_key(key)
    p, d_model, n_heads = _check_int("p", p, 2), _check_int("d_model", d_model, 1), _check_int("n_heads", n_heads, 1)
    d_head = d_model // n_heads if d_head is None else _check_int("d_head", d_head, 1)
    return _init_fn(Transformer, (("p", p), ("d_model", d_model), ("n_heads", n_heads), ("d_head", d_head),
                                  ("d_mlp", _check_int("d_mlp", d_mlp, 1)),
                                  ("dtype", check_float_dtype("dtype", dtype))))(key)


def _check_params_mask(params, mask, names):
    missing = [n for n in names if not isinstance(params, Mapping) or n not in params]
    if missing:
        raise ValueError(f"params: missing leaves {missing}; expected the keys {list(names)}")
    if mask is not None:
        check_tree_like("mask", mask, params, "params")


def mlp_apply(params: Params, mask: Params | None, x: jax.Array) -> jax.Array:
    """Logits ``[B, p]`` of `OnlyMLP` with weights ``m ⊙ θ`` (``mask`` None: dense)."""
    _check_params_mask(params, mask, ("embed", "w_in", "w_out", "unembed"))
    _check_tokens(x)
    d_emb, p = params["embed"].shape
    m = OnlyMLP(p=p, d_emb=d_emb, d_model=params["w_in"].shape[0], dtype=params["embed"].dtype)
    return m.apply({"params": _masked(params, mask)}, x)


def transformer_apply(params: Params, mask: Params | None, x: jax.Array) -> jax.Array:
    """Logits ``[B, p]`` of `Transformer` with weights ``m ⊙ θ`` (``mask`` None: dense)."""
    _check_params_mask(params, mask, ("embed", "W_Q", "W_K", "W_V", "W_O", "mlp_in", "mlp_out", "unembed"))
    _check_tokens(x)
    d_model, p = params["embed"].shape
    n_heads, d_head, _ = params["W_Q"].shape
    m = Transformer(p=p, d_model=d_model, n_heads=n_heads, d_head=d_head, d_mlp=params["mlp_in"].shape[0],
                    dtype=params["embed"].dtype)
    return m.apply({"params": _masked(params, mask)}, x)


# ----------------------------------------------------------------------------------- loss


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Mean cross-entropy of ``logits: f[B, C]`` against ``y: i[B]``, in the logits' dtype."""
    check_array("logits", logits, ndim=2, kind="f")
    check_array("y", y, shape=(logits.shape[0],), kind="iu")
    lp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(lp, y[:, None].astype(jnp.int32), axis=1))


def full_batch_loss(apply_fn: Callable, params: Params, mask: Params | None, x: jax.Array,
                    y: jax.Array) -> tuple[jax.Array, dict]:
    """``(mean CE, {"acc", "p_correct"})`` of ``apply_fn(params, mask, x)`` on the whole batch."""
    if not callable(apply_fn):
        raise TypeError(f"apply_fn: expected a callable (params, mask, x) -> logits, got {type(apply_fn).__name__}")
    _check_tokens(x)
    check_array("y", y, shape=(x.shape[0],), kind="iu")
    logits = apply_fn(params, mask, x)
    lp = jax.nn.log_softmax(logits, axis=-1)
    lpy = jnp.take_along_axis(lp, y[:, None].astype(jnp.int32), axis=1)[:, 0]
    acc = jnp.mean((jnp.argmax(logits, -1) == y).astype(logits.dtype))
    return -jnp.mean(lpy), {"acc": acc, "p_correct": jnp.mean(jnp.exp(lpy))}


# ----------------------------------------------------------------------------------- config, training


@dataclasses.dataclass(frozen=True, kw_only=True)
class GrokConfig:
    """Model and optimiser of a grokking run (paper defaults: MLP on p = 67, AdamW lr 1e-3, wd 1.0).

    ``d_model`` None means the paper's width of the chosen ``model`` (48 MLP, 128 transformer).
    """

    p: int = 67
    model: str = "mlp"
    d_emb: int = 500
    d_model: int | None = None
    n_heads: int = 1
    d_mlp: int = 128
    weight_scale: float = 1.0
    lr: float = 1e-3
    wd: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8

    def __post_init__(self):
        _check_int("p", self.p, 2)
        check_choice("model", self.model, ("mlp", "transformer"))
        _check_int("d_emb", self.d_emb, 1)
        if self.d_model is not None:
            _check_int("d_model", self.d_model, 1)
        _check_int("n_heads", self.n_heads, 1)
        _check_int("d_mlp", self.d_mlp, 1)
        check_range("weight_scale", self.weight_scale, low=0.0, low_inclusive=False)
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        check_range("wd", self.wd, low=0.0)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas: expected two values in [0, 1), got {self.betas!r}")
        check_range("eps", self.eps, low=0.0, low_inclusive=False)

    @property
    def width(self) -> int:
        return self.d_model if self.d_model is not None else (48 if self.model == "mlp" else 128)

    @property
    def apply_fn(self) -> Callable:
        return mlp_apply if self.model == "mlp" else transformer_apply


def _check_cfg(cfg):
    if not isinstance(cfg, GrokConfig):
        raise TypeError(f"cfg: expected a GrokConfig, got {type(cfg).__name__}")


def init_params(key: jax.Array, cfg: GrokConfig, *, dtype: Any = None) -> Params:
    """`init_mlp` or `init_transformer` per ``cfg.model``."""
    _check_cfg(cfg)
    if cfg.model == "mlp":
        return init_mlp(key, cfg.p, d_emb=cfg.d_emb, d_model=cfg.width, weight_scale=cfg.weight_scale, dtype=dtype)
    return init_transformer(key, cfg.p, d_model=cfg.width, n_heads=cfg.n_heads, d_mlp=cfg.d_mlp, dtype=dtype)


def make_optimizer(cfg: GrokConfig, *, wd: Any = None, mask: Params | None = None) -> optax.GradientTransformation:
    """AdamW (decoupled decay ``θ <- θ - lr·wd·θ``) with ``cfg``'s lr / betas / eps; ``wd`` may be traced.

    With ``mask``, updates are masked (`zoo.weightspace.masks.masked_optimizer`).
    """
    _check_cfg(cfg)
    wd = cfg.wd if wd is None else wd
    if not is_traced(wd):
        check_range("wd", float(wd), low=0.0)
    opt = optax.adamw(cfg.lr, b1=cfg.betas[0], b2=cfg.betas[1], eps=cfg.eps, weight_decay=wd)
    return opt if mask is None else mk.masked_optimizer(opt, mask)


def init_state(cfg: GrokConfig, params: Params, mask: Params, *, wd: Any = None) -> TrainState:
    """A `zoo.train.TrainState` at step 0 for masked training of ``m ⊙ params``."""
    _check_cfg(cfg)
    check_tree_like("mask", mask, params, "params")
    params = mk.apply_mask(params, mask)
    return TrainState.create(params=params, optimizer=make_optimizer(cfg, wd=wd, mask=mask),
                             rng=jax.random.key(0))


def _check_data(data):
    if not isinstance(data, Mapping) or any(k not in data for k in ("train_x", "train_y", "test_x", "test_y")):
        raise ValueError("data: expected a dict with train_x, train_y, test_x, test_y (see modular_pairs)")
    for s in ("train", "test"):
        _check_tokens(data[f"{s}_x"])
        check_array(f"data[{s}_y]", data[f"{s}_y"], shape=(data[f"{s}_x"].shape[0],), kind="iu")


def train_chunk(cfg: GrokConfig, state: TrainState, mask: Params, data: Mapping, k: int, *,
                wd: Any = None) -> tuple[TrainState, dict]:
    """``k`` full-batch AdamW steps (masked) in one ``lax.scan``; metrics ``{"loss", "acc", "p_correct"}: f[k]``."""
    _check_cfg(cfg)
    _check_data(data)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive int (steps), got {k!r}")
    apply = cfg.apply_fn

    def loss_fn(params, batch, rng):
        return full_batch_loss(apply, params, mask, batch[0], batch[1])

    batch = (data["train_x"], data["train_y"])
    run = scan_steps(loss_fn, make_optimizer(cfg, wd=wd, mask=mask), lambda s: batch, k)
    return run(state)


def evaluate(cfg: GrokConfig, params: Params, mask: Params | None, data: Mapping) -> dict:
    """Train / test loss and accuracy, and the L1 / L2 norms of ``m ⊙ θ`` (scalars)."""
    _check_cfg(cfg)
    _check_data(data)
    out = {}
    for s in ("train", "test"):
        loss, aux = full_batch_loss(cfg.apply_fn, params, mask, data[f"{s}_x"], data[f"{s}_y"])
        out[f"{s}_loss"], out[f"{s}_acc"] = loss, aux["acc"]
    w = mk.apply_mask(params, mask) if mask is not None else params
    out["l1"] = sum(jnp.sum(jnp.abs(v)) for v in jax.tree.leaves(w))
    out["l2"] = jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in jax.tree.leaves(w)))
    return out


def train_run(cfg: GrokConfig, params0: Params, mask: Params | None, data: Mapping, *, steps: int,
              eval_every: int = 100, wd: Any = None) -> tuple[Params, dict]:
    """Train ``steps`` steps from ``m ⊙ params0``, evaluating every ``eval_every``: ``(params_T, history)``.

    ``history``: ``step: i32[S]`` (``eval_every, 2·eval_every, ...``) and the `evaluate` keys ``f[S]``.
    Pure (one ``lax.scan`` of `train_chunk`); for long or many runs use `zoo.train.run_population`.
    """
    _check_cfg(cfg)
    for name, v in (("steps", steps), ("eval_every", eval_every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if steps % eval_every:
        raise ValueError(f"steps: expected a multiple of eval_every={eval_every}, got {steps}")
    mask = mk.ones_mask(params0) if mask is None else mask
    state = init_state(cfg, params0, mask, wd=wd)

    def body(st, _):
        st, _m = train_chunk(cfg, st, mask, data, eval_every, wd=wd)
        return st, {"step": st.step, **evaluate(cfg, st.params, mask, data)}

    state, hist = jax.lax.scan(body, state, None, length=steps // eval_every)
    return state.params, hist


# ----------------------------------------------------------------------------------- tickets and controls


def grokking_ticket(params_t: Params, params0: Params, density: float, *, scope: str = "global",
                    prunable: Any = None) -> tuple[Params, Params]:
    """The ticket: magnitude mask of the trained ``params_t`` at ``density``, rewound to ``params0``.

    Returns ``(m ⊙ params0, m)``.
    """
    check_tree_like("params0", params0, params_t, "params_t")
    m = mk.magnitude_mask(params_t, density, scope=scope, prunable=prunable)
    return mk.apply_mask(params0, m), m


def control_arms(key: jax.Array, params0: Params, mask: Params, *, norms: tuple[str, ...] = ("l2",),
                 scope: str = "global", prunable: Any = None) -> dict[str, tuple[Params, Params]]:
    """The paper's controls for a ticket ``mask`` on init ``params0``: ``name -> (params, mask)``.

    ``"random"``: a random mask at the ticket's density (``scope`` as given) applied to ``params0``;
    ``"same_norm_<q>"`` for q in ``norms``: dense ``r · params0`` with the ticket's L_q norm (all-ones mask).
    Density is read from ``mask`` on the host, so call this outside ``jit`` (it is vmap-free).
    """
    check_tree_like("mask", mask, params0, "params0")
    for q in norms:
        check_choice("norms", q, ("l1", "l2"))
    density = float(mk.mask_density(mask, params=params0, prunable=prunable))
    if density <= 0.0:
        raise ValueError("mask: keeps no prunable weight (density 0)")
    rm = mk.random_mask(key, params0, density, scope=scope, prunable=prunable)
    out = {"random": (mk.apply_mask(params0, rm), rm)}
    ones = mk.ones_mask(params0)
    for q in norms:
        out[f"same_norm_{q}"] = (mk.same_norm_rescale(params0, mask, norm=q, prunable=prunable)[0], ones)
    return out


def steps_to(steps: Any, values: Any, thr: float = 0.95) -> jax.Array:
    """First ``steps[i]`` with ``values[i] >= thr`` (``values: f[..., S]``), else ``steps[-1] + 1``.

    ``steps: i[S]`` increasing; leading axes of ``values`` (seeds, arms) are kept.
    """
    check_array("steps", steps, ndim=1, kind="iu", min_size=1)
    check_array("values", values, kind="f", finite=False)
    if np.shape(values)[-1:] != np.shape(steps):
        raise ValueError(f"values: expected a last axis of {np.shape(steps)[0]} (as steps), "
                         f"got shape {np.shape(values)}")
    check_range("thr", thr, low=0.0, high=1.0)
    steps, values = jnp.asarray(steps), jnp.asarray(values)
    hit = values >= thr
    first = jnp.argmax(hit, axis=-1)
    return jnp.where(jnp.any(hit, axis=-1), steps[first], steps[-1] + 1)
