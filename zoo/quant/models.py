"""In-project models that the PTQ papers (FlexRound, AdaDim) quantize.

Nothing is downloaded: the MLP trains on scikit-learn's bundled digits, the LM on generated text.
Both are plain functions on dict pytrees whose dense layers use Flax's layout
(``{"kernel": f32[K, N], "bias": f32[N]}``, ``y = x @ kernel + bias``), trained with `zoo.train`.

MLP (spec flexround.md §5(b), adadim.md §5(b)):
  digits split: pixels / 16, ``default_rng(0)`` shuffle, first 1200 train, 597 test   -> `digits_split`
  64 -> 128 -> 128 -> 10, ReLU, He-normal kernels, zero biases                        -> `init_mlp`, `mlp_apply`
  Adam 1e-3, batch 64, 60 epochs                                                       -> `train_mlp`
  outlier model: hidden units U of layer 1 scaled by c, layer-2 rows by 1/c (exact,
  ReLU is positively homogeneous)                                                      -> `add_outliers`

Tiny LM (ours; the issue asks for "a tiny transformer LM on generated text for perplexity"):
  corpus: "a+b=c;" strings, a, b uniform in [0, 10^digits)                             -> `arithmetic_corpus`
  pre-LN causal transformer, learned positions, GELU MLP, untied head                 -> `init_lm`, `lm_apply`
  block l: h + attn(LN(h)), then + mlp(LN(.)), kernels ``qkv, out, up, down``          -> `lm_block`, `lm_block_fn`
  perplexity = exp(mean next-token NLL)                                                -> `lm_perplexity`
  training: Adam, random windows, `zoo.train.make_run`                                 -> `train_lm`
  outlier LM: residual dims R scaled by c in ln1's gain/bias, qkv rows by 1/c
  (function-preserving: LN's output feeds only qkv)                                    -> `add_lm_outliers`

Choices that are ours: the LM's size, corpus and training recipe; He-normal uses
``variance_scaling(2, "fan_in", "normal")`` (untruncated).

Dtypes: ``init_*`` take ``dtype`` (default JAX's default float: float32, float64 under x64); the
forward functions compute in their inputs' dtype. Eager calls check shapes (and, at the entry points,
finiteness); inside ``jit`` only the shape checks run.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.checks import check_array, check_float_dtype, check_range, is_traced
from zoo.quant.core import _fdtype

# ------------------------------------------------------------------------------------- checks


def _float(dtype):
    return check_float_dtype("dtype", dtype)


def _check_feat(name: str, x, d: int | None, ndim=None, finite: bool = False) -> None:
    """``x`` numeric with ``ndim`` dims and last dim ``d`` (shape checks also run under jit)."""
    check_array(name, x, ndim=ndim, kind="iuf", finite=finite)
    if jnp.ndim(x) == 0 or (d is not None and jnp.shape(x)[-1] != d):
        raise ValueError(f"{name}: expected last dim {d}, got shape {tuple(jnp.shape(x))}")


def _check_dense(name: str, p) -> tuple[int, int]:
    if not isinstance(p, dict) or "kernel" not in p or jnp.ndim(p["kernel"]) != 2:
        raise ValueError(f"{name}: expected a dense layer {{'kernel': [K, N], 'bias': [N]}}, got {type(p).__name__}")
    return tuple(jnp.shape(p["kernel"]))


def _check_mlp(params) -> int:
    if not isinstance(params, dict) or not params or not all(
            isinstance(k, str) and k.startswith("Dense_") and k[6:].isdigit() for k in params):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params: expected {{'Dense_0': ..., 'Dense_1': ...}} MLP params, got {got}")
    return len(params)


def _check_tokens(name: str, tokens, vocab: int, ndim: int = 2, min_len: int = 1) -> None:
    check_array(name, tokens, ndim=ndim, kind="iu")
    if jnp.shape(tokens)[-1] < min_len or jnp.shape(tokens)[0] == 0:
        raise ValueError(f"{name}: expected a non-empty [B, T] batch with T >= {min_len}, got shape "
                         f"{tuple(jnp.shape(tokens))}")  # fmt: skip
    if not is_traced(tokens):
        t = np.asarray(tokens)
        if t.min() < 0 or t.max() >= vocab:
            raise ValueError(f"{name}: expected token ids in [0, {vocab}), got values in [{t.min()}, {t.max()}]")


# ------------------------------------------------------------------------------------- digits MLP

N_TRAIN = 1200
MLP_SIZES = (64, 128, 128, 10)


def digits_split(*, n_train: int = N_TRAIN, seed: int = 0) -> dict[str, np.ndarray]:
    """Digits (x / 16) shuffled with ``default_rng(seed)``; ``x_train: f32[n_train, 64]``, ``y_train: i32[n_train]``,
    ``x_test: f32[1797 - n_train, 64]``, ``y_test``."""
    from zoo.data import load_digits

    check_range("n_train", n_train, low=1, high=1796)
    d = load_digits()
    perm = np.random.default_rng(seed).permutation(len(d["y"]))
    tr, te = perm[:n_train], perm[n_train:]
    return {"x_train": d["x"][tr], "y_train": d["y"][tr], "x_test": d["x"][te], "y_test": d["y"][te]}


def init_mlp(key: jax.Array, sizes: tuple[int, ...] = MLP_SIZES, dtype=None) -> dict:
    """He-normal kernels, zero biases: ``{"Dense_i": {"kernel": f32[sizes[i], sizes[i+1]], "bias": f32[sizes[i+1]]}}``.

    Same tree as ``zoo.nn.MLP(sizes[1:])``'s params, so ``MLP.apply({"params": p}, x)`` works on it too.
    """
    if not isinstance(sizes, tuple | list) or len(sizes) < 2 or any(
            isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 1 for s in sizes):
        raise ValueError(f"sizes: expected >= 2 positive int widths, got {sizes!r}")
    dtype = _float(dtype)
    init = jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")
    keys = jax.random.split(key, len(sizes) - 1)
    return {
        f"Dense_{i}": {"kernel": init(k, (a, b), dtype), "bias": jnp.zeros((b,), dtype)}
        for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:]))
    }


def mlp_layer_names(params: dict) -> list[str]:
    """``["Dense_0", "Dense_1", ...]`` in forward order."""
    _check_mlp(params)
    return sorted(params, key=lambda n: int(n.split("_")[1]))


def dense(p: dict, x: jax.Array) -> jax.Array:
    """``x: f32[B, K] -> x @ p["kernel"] + p["bias"]: f32[B, N]``."""
    K, _ = _check_dense("p", p)
    _check_feat("x", x, K)
    return x @ p["kernel"] + p["bias"]


def mlp_layer(params: dict, i: int, x: jax.Array) -> jax.Array:
    """Layer ``i`` of the MLP with its activation (ReLU except after the last layer)."""
    n = _check_mlp(params)
    if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < n:
        raise ValueError(f"i: expected a layer index in [0, {n}), got {i!r}")
    y = dense(params[f"Dense_{i}"], x)
    return y if i == len(params) - 1 else jax.nn.relu(y)


@functools.lru_cache(maxsize=16)
def mlp_block_fn(n_layers: int, target: str = "dense"):
    """``apply_block(path, layer_params, x)`` for layer-wise PTQ, one function object per
    ``(n_layers, target)`` (a stable static argument).

    ``target="dense"`` (spec: block = one Dense): block i maps the previous block's *pre-activation*
    output to its own, ``dense_i(relu(x))`` (block 0 gets the pixels, ``x >= 0``, unchanged);
    ``target="dense_relu"`` (BRECQ's fused activation): ``act_i(dense_i(x))``.
    """
    check_range("n_layers", n_layers, low=1)
    if target not in ("dense", "dense_relu"):
        raise ValueError(f"target: expected 'dense' or 'dense_relu', got {target!r}")

    def apply_block(path: str, p: dict, x: jax.Array) -> jax.Array:
        i = int(path.split("_")[1])
        if target == "dense":
            return dense(p, x if i == 0 else jax.nn.relu(x))
        y = dense(p, x)
        return y if i == n_layers - 1 else jax.nn.relu(y)

    return apply_block


def mlp_apply(params: dict, x: jax.Array) -> jax.Array:
    """``x: f32[B, 64] -> logits f32[B, 10]``."""
    _check_mlp(params)
    _check_feat("x", x, _check_dense("params['Dense_0']", params["Dense_0"])[0], ndim=2, finite=True)
    for i in range(len(params)):
        x = mlp_layer(params, i, x)
    return x


def mlp_hidden(params: dict, x: jax.Array) -> list[jax.Array]:
    """Inputs of every layer: ``[x, h_1, ..., h_{L-1}]``."""
    _check_mlp(params)
    _check_feat("x", x, _check_dense("params['Dense_0']", params["Dense_0"])[0], ndim=2, finite=True)
    acts = [x]
    for i in range(len(params) - 1):
        acts.append(mlp_layer(params, i, acts[-1]))
    return acts


def classification_metrics(logits: jax.Array, y: jax.Array, ref_logits: jax.Array | None = None) -> dict:
    """``acc``, ``nll`` and (with ``ref_logits``) ``logit_mse = mean((logits - ref)^2)`` over all entries."""
    check_array("logits", logits, ndim=2, kind="f", min_size=1)
    check_array("y", y, shape=(jnp.shape(logits)[0],), kind="iu")
    if not is_traced(y) and (np.asarray(y).min() < 0 or np.asarray(y).max() >= jnp.shape(logits)[1]):
        raise ValueError(f"y: expected labels in [0, {jnp.shape(logits)[1]}), got values in "
                         f"[{np.asarray(y).min()}, {np.asarray(y).max()}]")  # fmt: skip
    if ref_logits is not None:
        check_array("ref_logits", ref_logits, shape=tuple(jnp.shape(logits)))
    logp = jax.nn.log_softmax(logits)
    out = {
        "acc": jnp.mean(jnp.argmax(logits, -1) == y),
        "nll": -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1)),
    }
    if ref_logits is not None:
        out["logit_mse"] = jnp.mean((logits - ref_logits) ** 2)
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class MLPTrainConfig:
    """Training recipe of the digits MLP (spec: Adam 1e-3, batch 64, 60 epochs)."""

    sizes: tuple[int, ...] = MLP_SIZES
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 60

    def __post_init__(self):
        if len(self.sizes) < 2 or self.sizes[0] != 64 or self.sizes[-1] != 10:
            raise ValueError(f"sizes: expected (64, ..., 10) for digits, got {self.sizes!r}")
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        check_range("batch_size", self.batch_size, low=1, high=N_TRAIN)
        check_range("epochs", self.epochs, low=1, high=10_000)


def _xent(apply_fn):
    def loss_fn(params, batch, rng):
        logits = apply_fn(params, batch["x"])
        nll = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], axis=1))
        return nll, {}

    return loss_fn


@functools.lru_cache(maxsize=8)
def _mlp_trainer(cfg: MLPTrainConfig, n: int):
    from zoo.data import batch_at
    from zoo.train import make_run

    steps = cfg.epochs * (n // cfg.batch_size)

    def run(key, data):
        batch_fn = lambda step, dkey: batch_at(data, step, batch_size=cfg.batch_size, key=dkey)  # noqa: E731
        fn = make_run(lambda k: init_mlp(k, cfg.sizes), _xent(mlp_apply), lambda h: optax.adam(cfg.lr), batch_fn,
                      steps, per_seed_data=True)  # fmt: skip
        state, metrics = fn(key)
        return state.params, metrics["loss"]

    return jax.jit(run)


def train_mlp(key: jax.Array, x: np.ndarray, y: np.ndarray, cfg: MLPTrainConfig = MLPTrainConfig()):
    """Train the MLP; returns ``(params, loss_curve f32[steps])``. Deterministic in ``key``."""
    check_array("x", x, ndim=2, shape=(None, cfg.sizes[0]), min_size=cfg.batch_size)
    check_array("y", y, ndim=1, shape=(x.shape[0],), kind="iu")
    data = {"x": jnp.asarray(x, _fdtype(x)), "y": jnp.asarray(y, jnp.int32)}
    return _mlp_trainer(cfg, int(x.shape[0]))(key, data)


OUTLIER_UNITS = (3, 17, 40, 99)


def add_outliers(params: dict, *, units: tuple[int, ...] = OUTLIER_UNITS, factor: float = 32.0, layer: int = 0) -> dict:
    """Function-preserving outliers (adadim.md §5(b)).

    With ``D = diag(d)``, ``d_u = factor`` for ``u`` in ``units`` else 1, and ReLU's
    ``relu(c t) = c relu(t)`` (c > 0): ``W_l <- W_l D``, ``b_l <- D b_l``, ``W_{l+1} <- D^{-1} W_{l+1}``.
    Layer ``l`` gets weight outliers in output channels ``units``; layer ``l+1`` sees activation
    outliers in input channels ``units``.
    """
    check_range("factor", factor, low=0.0, low_inclusive=False)
    _check_mlp(params)
    a, b = f"Dense_{layer}", f"Dense_{layer + 1}"
    if a not in params or b not in params:
        raise ValueError(f"layer: expected a layer followed by another one (0..{len(params) - 2}), got {layer}")
    n = params[a]["kernel"].shape[1]
    if not units or min(units) < 0 or max(units) >= n:
        raise ValueError(f"units: expected hidden indices in [0, {n}), got {units!r}")
    d = jnp.ones((n,), params[a]["kernel"].dtype).at[jnp.asarray(units)].set(factor)
    out = jax.tree.map(lambda t: t, params)
    out[a] = {"kernel": params[a]["kernel"] * d, "bias": params[a]["bias"] * d}
    out[b] = {"kernel": params[b]["kernel"] / d[:, None], "bias": params[b]["bias"]}
    return out


# ------------------------------------------------------------------------------------- tiny LM

VOCAB = "0123456789+=;"


def arithmetic_corpus(seed: int, n_chars: int, *, digits: int = 2) -> np.ndarray:
    """Token ids ``i32[n_chars]`` of a stream of ``"a+b=c;"`` strings (chars of `VOCAB`)."""
    check_range("n_chars", n_chars, low=1)
    check_range("digits", digits, low=1, high=6)
    rng = np.random.default_rng(seed)
    m = n_chars // 6 + 2  # every equation has >= 6 chars
    a, b = rng.integers(0, 10**digits, size=(2, m))
    text = "".join(f"{x}+{y}={x + y};" for x, y in zip(a, b))
    while len(text) < n_chars:  # pragma: no cover - m is always enough
        text += text
    lut = {c: i for i, c in enumerate(VOCAB)}
    return np.asarray([lut[c] for c in text[:n_chars]], np.int32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TinyLMConfig:
    """Size of the tiny transformer LM."""

    vocab: int = len(VOCAB)
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    seq_len: int = 32

    def __post_init__(self):
        check_range("vocab", self.vocab, low=2)
        check_range("d_model", self.d_model, low=4)
        check_range("n_layers", self.n_layers, low=1, high=64)
        check_range("n_heads", self.n_heads, low=1, high=self.d_model)
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads: expected a divisor of d_model={self.d_model}, got {self.n_heads}")
        check_range("d_ff", self.d_ff, low=1)
        check_range("seq_len", self.seq_len, low=2)


LM_KERNELS = ("qkv", "out", "up", "down")  # module order inside a block


def init_lm(key: jax.Array, cfg: TinyLMConfig, dtype=None) -> dict:
    """Params: ``embed f32[V, D]``, ``pos f32[T, D]``, ``block_l`` (see `lm_block`), ``ln_f``, ``head``."""
    _check_cfg(cfg)
    dtype = _float(dtype)
    d, f = cfg.d_model, cfg.d_ff
    ks = iter(jax.random.split(key, 3 + 4 * cfg.n_layers))
    normal = lambda k, shape, std: std * jax.random.normal(k, shape, dtype)  # noqa: E731
    lin = lambda k, a, b, std=None: {"kernel": normal(k, (a, b), std or 1 / math.sqrt(a)),  # noqa: E731
                                     "bias": jnp.zeros((b,), dtype)}
    ln = lambda: {"scale": jnp.ones((d,), dtype), "bias": jnp.zeros((d,), dtype)}  # noqa: E731
    resid = 1 / math.sqrt(2 * cfg.n_layers)
    p = {"embed": normal(next(ks), (cfg.vocab, d), 0.5), "pos": normal(next(ks), (cfg.seq_len, d), 0.1)}
    for layer in range(cfg.n_layers):
        p[f"block_{layer}"] = {
            "ln1": ln(), "qkv": lin(next(ks), d, 3 * d),
            "out": lin(next(ks), d, d, resid / math.sqrt(d)),
            "ln2": ln(), "up": lin(next(ks), d, f),
            "down": lin(next(ks), f, d, resid / math.sqrt(f)),
        }  # fmt: skip
    p["ln_f"] = ln()
    p["head"] = lin(next(ks), d, cfg.vocab)
    return p


def _check_cfg(cfg) -> None:
    if not isinstance(cfg, TinyLMConfig):
        raise ValueError(f"cfg: expected a TinyLMConfig, got {type(cfg).__name__}")


def _check_heads(n_heads, d: int) -> None:
    if isinstance(n_heads, bool) or not isinstance(n_heads, int | np.integer) or n_heads < 1 or d % n_heads:
        raise ValueError(f"n_heads: expected a positive divisor of d_model={d}, got {n_heads!r}")


def _check_block(bp, h) -> int:
    if not isinstance(bp, dict) or not all(k in bp for k in ("ln1", "qkv", "out", "ln2", "up", "down")):
        raise ValueError(f"bp: expected a block's params (ln1, qkv, out, ln2, up, down), got {type(bp).__name__}")
    d = int(jnp.shape(bp["qkv"]["kernel"])[0])
    _check_feat("h", h, d, ndim=3)
    return d


def layer_norm(p: dict, x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """LayerNorm over the last axis with gain ``p["scale"]`` and bias ``p["bias"]`` (``eps > 0``)."""
    if not isinstance(p, dict) or "scale" not in p or "bias" not in p:
        raise ValueError(f"p: expected {{'scale': [D], 'bias': [D]}}, got {type(p).__name__}")
    _check_feat("x", x, int(jnp.shape(p["scale"])[-1]))
    check_range("eps", eps, low=0.0, low_inclusive=False)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def lm_attn_context(bp: dict, h: jax.Array, n_heads: int) -> jax.Array:
    """Causal multi-head attention of ``qkv(LN1(h))`` before the output projection; ``h: f32[B, T, D]``."""
    _check_heads(n_heads, _check_block(bp, h))
    b, t, d = h.shape
    qkv = dense(bp["qkv"], layer_norm(bp["ln1"], h)).reshape(b, t, 3, n_heads, d // n_heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // n_heads)
    mask = jnp.tril(jnp.ones((t, t), bool))
    att = jax.nn.softmax(jnp.where(mask, logits, -1e9), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, t, d)


def lm_attention(bp: dict, h: jax.Array, n_heads: int) -> jax.Array:
    """Attention sub-block ``out(attn(qkv(LN1(h))))``."""
    _check_heads(n_heads, _check_block(bp, h))
    return dense(bp["out"], lm_attn_context(bp, h, n_heads))


def lm_mlp(bp: dict, h: jax.Array) -> jax.Array:
    """MLP sub-block ``down(gelu(up(LN2(h))))``."""
    _check_block(bp, h)
    return dense(bp["down"], jax.nn.gelu(dense(bp["up"], layer_norm(bp["ln2"], h))))


def lm_block(bp: dict, h: jax.Array, n_heads: int) -> jax.Array:
    """One pre-LN transformer layer: ``h + attn``, then ``+ mlp``. ``h: f32[B, T, D]``."""
    _check_heads(n_heads, _check_block(bp, h))
    h = h + lm_attention(bp, h, n_heads)
    return h + lm_mlp(bp, h)


@functools.lru_cache(maxsize=16)
def lm_block_fn(n_heads: int):
    """``apply_block(path, block_params, h)`` for block-wise PTQ of the LM (one object per ``n_heads``)."""
    if isinstance(n_heads, bool) or not isinstance(n_heads, int | np.integer) or n_heads < 1:
        raise ValueError(f"n_heads: expected a positive int, got {n_heads!r}")

    def apply_block(path: str, bp: dict, h: jax.Array) -> jax.Array:
        return lm_block(bp, h, n_heads)

    return apply_block


def lm_embed(params: dict, tokens: jax.Array) -> jax.Array:
    """``tokens: i32[B, T] -> f32[B, T, D]`` (token + position embedding)."""
    if not isinstance(params, dict) or "embed" not in params or "pos" not in params:
        raise ValueError("params: expected LM params with 'embed' and 'pos' (see init_lm)")
    _check_tokens("tokens", tokens, int(jnp.shape(params["embed"])[0]))
    if jnp.shape(tokens)[1] > jnp.shape(params["pos"])[0]:
        raise ValueError(f"tokens: expected at most seq_len={jnp.shape(params['pos'])[0]} positions, got shape "
                         f"{tuple(jnp.shape(tokens))}")  # fmt: skip
    return params["embed"][tokens] + params["pos"][: tokens.shape[1]]


def lm_head(params: dict, h: jax.Array) -> jax.Array:
    """Logits ``head(LN_f(h))``: ``h: f32[..., D] -> f32[..., V]``."""
    if not isinstance(params, dict) or "head" not in params or "ln_f" not in params:
        raise ValueError("params: expected LM params with 'ln_f' and 'head' (see init_lm)")
    _check_feat("h", h, int(jnp.shape(params["head"]["kernel"])[0]))
    return dense(params["head"], layer_norm(params["ln_f"], h))


def lm_apply(params: dict, tokens: jax.Array, cfg: TinyLMConfig) -> jax.Array:
    """``tokens: i32[B, T] -> logits f32[B, T, V]``."""
    _check_cfg(cfg)
    h = lm_embed(params, tokens)
    for layer in range(cfg.n_layers):
        h = lm_block(params[f"block_{layer}"], h, cfg.n_heads)
    return lm_head(params, h)


def lm_nll(params: dict, tokens: jax.Array, cfg: TinyLMConfig) -> jax.Array:
    """Mean next-token NLL of ``tokens: i32[B, T+1]`` (predict ``tokens[:, 1:]`` from ``tokens[:, :-1]``)."""
    _check_cfg(cfg)
    _check_tokens("tokens", tokens, cfg.vocab, min_len=2)
    logits = lm_apply(params, tokens[:, :-1], cfg)
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1))


def lm_windows(stream: np.ndarray, seq_len: int) -> np.ndarray:
    """Non-overlapping windows ``i32[n, seq_len + 1]`` of a token stream (for evaluation)."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, int | np.integer) or seq_len < 1:
        raise ValueError(f"seq_len: expected a positive int, got {seq_len!r}")
    check_array("stream", stream, ndim=1, kind="iu", min_size=seq_len + 1)
    n = (len(stream) - 1) // seq_len
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None]
    return stream[idx]


def lm_perplexity(params: dict, windows: jax.Array, cfg: TinyLMConfig) -> jax.Array:
    """``exp(mean NLL)`` over ``windows: i32[n, T+1]``."""
    _check_cfg(cfg)
    _check_tokens("windows", windows, cfg.vocab, min_len=2)
    return jnp.exp(lm_nll(params, windows, cfg))


@dataclasses.dataclass(frozen=True, kw_only=True)
class LMTrainConfig:
    lr: float = 3e-3
    batch_size: int = 32
    steps: int = 1500
    warmup: int = 50

    def __post_init__(self):
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        check_range("batch_size", self.batch_size, low=1)
        check_range("steps", self.steps, low=1)
        check_range("warmup", self.warmup, low=0, high=self.steps)


@functools.lru_cache(maxsize=8)
def _lm_trainer(cfg: TinyLMConfig, tcfg: LMTrainConfig, n: int):
    from zoo.train import make_run

    t = cfg.seq_len

    def batch_fn(step, dkey):
        start = jax.random.randint(jax.random.fold_in(dkey, step), (tcfg.batch_size,), 0, n - t - 1)
        return {"tokens": start[:, None] + jnp.arange(t + 1)[None]}  # indices; gathered in the loss

    def run(key, stream):
        def loss_fn(params, batch, rng):
            return lm_nll(params, stream[batch["tokens"]], cfg), {}

        sched = optax.warmup_cosine_decay_schedule(0.0, tcfg.lr, max(tcfg.warmup, 1), tcfg.steps, tcfg.lr * 0.05)
        opt = lambda h: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=0.01))  # noqa: E731
        state, metrics = make_run(lambda k: init_lm(k, cfg), loss_fn, opt, batch_fn, tcfg.steps,
                                  per_seed_data=True)(key)  # fmt: skip
        return state.params, metrics["loss"]

    return jax.jit(run)


def train_lm(key: jax.Array, stream: np.ndarray, cfg: TinyLMConfig = TinyLMConfig(),
             tcfg: LMTrainConfig = LMTrainConfig()):  # fmt: skip
    """Train on random windows of ``stream: i32[n]``; returns ``(params, loss_curve f32[steps])``."""
    check_array("stream", stream, ndim=1, kind="iu", min_size=cfg.seq_len + 2)
    return _lm_trainer(cfg, tcfg, int(len(stream)))(key, jnp.asarray(stream, jnp.int32))


LM_OUTLIER_DIMS = (5, 21)


def add_lm_outliers(params: dict, *, dims: tuple[int, ...] = LM_OUTLIER_DIMS, factor: float = 20.0,
                    layers: tuple[int, ...] | None = None) -> dict:  # fmt: skip
    """Function-preserving activation outliers at the input of ``qkv`` (adadim.md §5(b), LM flavour).

    ``ln1.scale, ln1.bias <- d ⊙ (.)`` and ``qkv.kernel <- D^{-1} qkv.kernel`` with ``d_r = factor``
    on ``dims``: qkv's input gets outlier channels, its output is unchanged.
    """
    check_range("factor", factor, low=0.0, low_inclusive=False)
    if not isinstance(params, dict) or not any(k.startswith("block_") for k in params):
        raise ValueError("params: expected LM params with 'block_<l>' entries (see init_lm)")
    out = jax.tree.map(lambda t: t, params)
    blocks = sorted(k for k in params if k.startswith("block_"))
    sel = blocks if layers is None else [f"block_{i}" for i in layers]
    for name in sel:
        if name not in params:
            raise ValueError(f"layers: {name!r} is not in params; blocks are {blocks}")
        bp = params[name]
        dm = bp["ln1"]["scale"].shape[0]
        if not dims or min(dims) < 0 or max(dims) >= dm:
            raise ValueError(f"dims: expected residual indices in [0, {dm}), got {dims!r}")
        d = jnp.ones((dm,), bp["ln1"]["scale"].dtype).at[jnp.asarray(dims)].set(factor)
        nb = dict(bp)
        nb["ln1"] = {"scale": bp["ln1"]["scale"] * d, "bias": bp["ln1"]["bias"] * d}
        nb["qkv"] = {"kernel": bp["qkv"]["kernel"] / d[:, None], "bias": bp["qkv"]["bias"]}
        out[name] = nb
    return out
