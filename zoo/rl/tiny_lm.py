"""A tiny autoregressive token policy: the CPU-trainable LLM stand-in of the GRPO family.

Spec ``papers/_grpo_family.md`` §8. Plain functions on dict pytrees (no flax), so a whole RL run
(init → SFT → RL) is a pure function that `zoo.train.population` can vmap over seeds.

Model (``kind="gru"``, the default; per layer, x the input, h the state, σ the logistic):

    z = σ(x W_z + h U_z + b_z),  r = σ(x W_r + h U_r + b_r)
    n = tanh(x W_n + r ⊙ (h U_n) + b_n),  h' = (1 − z) ⊙ n + z ⊙ h       -> `_gru_cell`
    logits_t = h_t W_head                                                 -> `tiny_lm_logits`

``kind="transformer"``: pre-LayerNorm causal transformer (learned positions, MHA, 4d GELU MLP),
same untied head. Position t of ``tokens`` predicts token t + 1.

- per-token log-probs  ℓ_t = log softmax(logits_t / τ)[y_t]              -> `completion_logprobs`
  (``full=True`` also returns the whole log-softmax f32[B, Lc, V]; ``cfg.use_kernel`` computes
  ℓ and the entropy with ``zoo.kernels.fused_logprob`` without materialising logits)
- sampling with ``lax.scan`` over max_new steps, EOS masking (EOS kept, PAD after)   -> `sample`
- SFT warm start  −Σ m log p(y | x) / Σ m                                -> `sft_loss`

Our choices: no head bias (so the fused kernel's ``h @ W`` is the whole head); the GRU biases
sit on the input side (3d of them, as the spec's parameter count); ``allowed_tokens`` (optional)
masks every other token's logit to −1e9 (GiGPO's action-token policy); temperature τ scales the
logits for both sampling and the recorded log-probs (as TRL and verl do). Prompts are dense
(no left padding): every row has the same prompt length Lp. Parameters are created in JAX's default
float (float64 under ``jax.enable_x64``) or the ``dtype`` asked for, and every forward pass checks that
``params`` has the tree and shapes of ``init_tiny_lm(key, cfg)`` (a clear error instead of an XLA one).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced

KINDS = ("gru", "transformer")
_NEG = -1e9

__all__ = [
    "KINDS",
    "Rollout",
    "TinyLMConfig",
    "completion_logprobs",
    "completion_logprobs_and_entropy",
    "init_tiny_lm",
    "num_params",
    "sample",
    "sft_loss",
    "tiny_lm_hidden",
    "tiny_lm_logits",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TinyLMConfig:
    """Static shape and token options of the tiny LM (hashable: a static jit argument).

    vocab: V >= 2 (PAD and EOS included).   d_model: d >= 1.   n_layers >= 1.
    kind: "gru" | "transformer".   n_heads: divides d_model (transformer).   max_len: longest
    prompt + completion (transformer positions).   pad_id / eos_id: distinct ids in [0, V).
    use_kernel: compute log-probs (and entropy) with the fused LM-head kernel.
    allowed_tokens: optional tuple of token ids the policy may emit (others get logit −1e9).
    """

    vocab: int
    d_model: int = 64
    n_layers: int = 1
    kind: str = "gru"
    n_heads: int = 4
    max_len: int = 64
    pad_id: int = 0
    eos_id: int = 1
    use_kernel: bool = False
    allowed_tokens: tuple[int, ...] | None = None

    def __post_init__(self):
        for name in ("vocab", "d_model", "n_layers", "n_heads", "max_len", "pad_id", "eos_id"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name}: expected an int, got {v!r}")
        check_range("vocab", self.vocab, low=2)
        check_range("d_model", self.d_model, low=1)
        check_range("n_layers", self.n_layers, low=1)
        check_choice("kind", self.kind, KINDS)
        check_range("n_heads", self.n_heads, low=1)
        if self.kind == "transformer" and self.d_model % self.n_heads:
            raise ValueError(f"n_heads: expected a divisor of d_model={self.d_model}, got {self.n_heads}")
        check_range("max_len", self.max_len, low=2)
        check_range("pad_id", self.pad_id, low=0, high=self.vocab - 1)
        check_range("eos_id", self.eos_id, low=0, high=self.vocab - 1)
        if self.pad_id == self.eos_id:
            raise ValueError(f"eos_id: expected an id different from pad_id={self.pad_id}, got {self.eos_id}")
        if not isinstance(self.use_kernel, bool):
            raise ValueError(f"use_kernel: expected a bool, got {self.use_kernel!r}")
        if self.allowed_tokens is not None:
            at = self.allowed_tokens
            if not isinstance(at, tuple) or not at or any(
                isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < self.vocab for t in at
            ):
                raise ValueError(f"allowed_tokens: expected a non-empty tuple of ids in [0, {self.vocab}), got {at!r}")
            if self.use_kernel:
                raise ValueError("use_kernel: the fused kernel does not support allowed_tokens; set one of them")


class Rollout(NamedTuple):
    """Sampled completions: tokens i32[B, Lc] (PAD after EOS), mask bool[B, Lc] (1 up to and
    including the first EOS), logp f32[B, Lc] (log-prob of each sampled token, 0 on padding)."""

    tokens: jax.Array
    mask: jax.Array
    logp: jax.Array


# ----------------------------------------------------------------------------- parameters


def _check_cfg(cfg):
    if not isinstance(cfg, TinyLMConfig):
        raise ValueError(f"cfg: expected a TinyLMConfig, got {type(cfg).__name__}")


def _shapes(cfg: TinyLMConfig) -> dict:
    """Every parameter's (shape, init std) — std 0 means zeros, None means ones."""
    d, v, nl = cfg.d_model, cfg.vocab, cfg.n_layers
    spec: dict[str, Any] = {"embed": ((v, d), 0.5), "head": ((d, v), 1 / math.sqrt(d))}
    layers = []
    for _ in range(nl):
        if cfg.kind == "gru":
            layers.append({"wx": ((d, 3 * d), 1 / math.sqrt(d)), "wh": ((d, 3 * d), 1 / math.sqrt(d)),
                           "b": ((3 * d,), 0.0)})
        else:
            ln = {"scale": ((d,), None), "bias": ((d,), 0.0)}
            out_std = 1 / math.sqrt(d) / math.sqrt(2 * nl)
            layers.append({
                "ln1": dict(ln), "wqkv": ((d, 3 * d), 1 / math.sqrt(d)), "wo": ((d, d), out_std),
                "ln2": dict(ln), "w1": ((d, 4 * d), 1 / math.sqrt(d)), "b1": ((4 * d,), 0.0),
                "w2": ((4 * d, d), 1 / math.sqrt(4 * d) / math.sqrt(2 * nl)), "b2": ((d,), 0.0),
            })
    spec["layers"] = layers
    if cfg.kind == "transformer":
        spec["pos"] = ((cfg.max_len, d), 0.1)
        spec["ln_f"] = {"scale": ((d,), None), "bias": ((d,), 0.0)}
    return spec


def _is_spec_leaf(x) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], tuple)


def init_tiny_lm(key: jax.Array, cfg: TinyLMConfig, *, dtype: Any = None) -> dict:
    """Parameters (a dict pytree). GRU: embed V×d, per layer wx d×3d, wh d×3d, b 3d; head d×V.

    Weights ~ N(0, std²) (std 1/√fan_in; embeddings 0.5), biases 0, LayerNorm scales 1. All the
    normals come from one draw (one PRNG call compiles much faster than one per leaf on CPU).
    ``dtype``: a floating dtype, default JAX's default float (float32; float64 under ``jax.enable_x64``).
    """
    _check_cfg(cfg)
    dtype = jnp.result_type(float) if dtype is None else dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype: expected a floating dtype, got {dtype!r}")
    if not (isinstance(key, jax.Array) or hasattr(key, "shape")) or not (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or tuple(key.shape) == (2,)
    ):
        raise ValueError(f"key: expected a PRNG key (jax.random.key or PRNGKey), got {key!r}")
    spec = _shapes(cfg)
    leaves, treedef = jax.tree_util.tree_flatten(spec, is_leaf=_is_spec_leaf)
    sizes = [math.prod(shape) for shape, std in leaves if std]
    noise = jax.random.normal(key, (sum(sizes),), dtype)
    out, offset = [], 0
    for shape, std in leaves:
        if std is None:
            out.append(jnp.ones(shape, dtype))
        elif std == 0.0:
            out.append(jnp.zeros(shape, dtype))
        else:
            n = math.prod(shape)
            out.append(noise[offset:offset + n].reshape(shape) * std)
            offset += n
    return jax.tree_util.tree_unflatten(treedef, out)


def num_params(params: Any) -> int:
    """Total number of parameters (scalars) in a pytree of arrays."""
    leaves = jax.tree_util.tree_leaves(params)
    for x in leaves:
        if not hasattr(x, "shape"):
            raise ValueError(f"params: expected a pytree of arrays, got a leaf of type {type(x).__name__}")
    return int(sum(np.prod(x.shape) for x in leaves))


def _check_params(params, cfg):
    """``params`` must have exactly the tree and shapes `init_tiny_lm` gives for ``cfg`` (floating leaves)."""
    want, want_def = jax.tree_util.tree_flatten_with_path(_shapes(cfg), is_leaf=_is_spec_leaf)
    got, got_def = jax.tree_util.tree_flatten_with_path(params)
    if not isinstance(params, dict) or got_def != want_def:
        raise ValueError(f"params: expected the pytree of init_tiny_lm(key, cfg) for cfg.kind={cfg.kind!r}, "
                         f"n_layers={cfg.n_layers}; got a {type(params).__name__} of another structure")
    for (path, (shape, _)), (_, x) in zip(want, got):
        name = jax.tree_util.keystr(path)
        if tuple(np.shape(x)) != shape:
            raise ValueError(f"params{name}: expected shape {shape} for this cfg (vocab={cfg.vocab}, "
                             f"d_model={cfg.d_model}), got {tuple(np.shape(x))}")
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise ValueError(f"params{name}: expected a floating dtype, got {jnp.result_type(x)}")


# ----------------------------------------------------------------------------- forward


def _gru_cell(layer, h, x):
    """One GRU step: h f32[B, d], x f32[B, d] -> h' f32[B, d]."""
    d = h.shape[-1]
    gx = x @ layer["wx"] + layer["b"]
    gh = h @ layer["wh"]
    z = jax.nn.sigmoid(gx[:, :d] + gh[:, :d])
    r = jax.nn.sigmoid(gx[:, d:2 * d] + gh[:, d:2 * d])
    n = jnp.tanh(gx[:, 2 * d:] + r * gh[:, 2 * d:])
    return (1.0 - z) * n + z * h


def _gru_step(params, hs, tok):
    """Feed one token (i32[B]) through every layer; hs f32[n_layers, B, d] -> (hs', top f32[B, d])."""
    x = params["embed"][tok]
    new = []
    for layer, h in zip(params["layers"], hs):
        x = _gru_cell(layer, h, x)
        new.append(x)
    return jnp.stack(new), x


def _layer_norm(p, x):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + 1e-5) * p["scale"] + p["bias"]


def _block(layer, x, n_heads):
    b, l, d = x.shape
    hd = d // n_heads
    qkv = _layer_norm(layer["ln1"], x) @ layer["wqkv"]
    q, k, v = (t.reshape(b, l, n_heads, hd) for t in jnp.split(qkv, 3, axis=-1))
    att = jnp.einsum("bqhc,bkhc->bhqk", q, k) / math.sqrt(hd)
    causal = jnp.tril(jnp.ones((l, l), bool))
    att = jax.nn.softmax(jnp.where(causal, att, _NEG), axis=-1)
    y = jnp.einsum("bhqk,bkhc->bqhc", att, v).reshape(b, l, d)
    x = x + y @ layer["wo"]
    hmid = jax.nn.gelu(_layer_norm(layer["ln2"], x) @ layer["w1"] + layer["b1"])
    return x + hmid @ layer["w2"] + layer["b2"]


def _check_tokens(name, tokens, cfg, *, batch=None):
    check_array(name, tokens, ndim=2, kind="iu")
    if batch is not None and tokens.shape[0] != batch:
        raise ValueError(f"{name}: expected {batch} rows (one per prompt), got shape {tuple(tokens.shape)}")
    if not is_traced(tokens):
        t = np.asarray(tokens)
        if t.size and (t.min() < 0 or t.max() >= cfg.vocab):
            raise ValueError(f"{name}: token ids must lie in [0, {cfg.vocab}), got range [{t.min()}, {t.max()}]")




def _hidden(params, tokens, cfg):
    if cfg.kind == "gru":
        b = tokens.shape[0]
        h0 = jnp.zeros((cfg.n_layers, b, cfg.d_model), params["embed"].dtype)
        _, tops = jax.lax.scan(lambda hs, tok: _gru_step(params, hs, tok), h0, tokens.T)
        return jnp.swapaxes(tops, 0, 1)
    l = tokens.shape[1]
    x = params["embed"][tokens] + params["pos"][:l]
    for layer in params["layers"]:
        x = _block(layer, x, cfg.n_heads)
    return _layer_norm(params["ln_f"], x)


def _head(params, h, cfg):
    logits = h @ params["head"]
    if cfg.allowed_tokens is not None:
        allow = np.zeros((cfg.vocab,), bool)
        allow[list(cfg.allowed_tokens)] = True
        logits = jnp.where(allow, logits, _NEG)
    return logits


def tiny_lm_hidden(params: dict, tokens: jax.Array, *, cfg: TinyLMConfig) -> jax.Array:
    """Top-layer hidden states f32[B, L, d] of tokens i32[B, L] (causal)."""
    _check_cfg(cfg)
    _check_params(params, cfg)
    _check_tokens("tokens", tokens, cfg)
    if cfg.kind == "transformer" and tokens.shape[1] > cfg.max_len:
        raise ValueError(f"tokens: length {tokens.shape[1]} exceeds cfg.max_len={cfg.max_len}")
    return _hidden(params, jnp.asarray(tokens), cfg)


def tiny_lm_logits(params: dict, tokens: jax.Array, *, cfg: TinyLMConfig) -> jax.Array:
    """Next-token logits f32[B, L, V] of tokens i32[B, L]: position t predicts token t + 1."""
    return _head(params, tiny_lm_hidden(params, tokens, cfg=cfg), cfg)


# ----------------------------------------------------------------------------- log-probs


def _check_temperature(temperature):
    if temperature is None or (not is_traced(temperature) and not float(temperature) > 0):
        raise ValueError(f"temperature: expected a value > 0, got {temperature!r}")


def _completion_hidden(params, prompt, completion, cfg):
    """h f32[B, Lc, d]: the hidden state that predicts each completion token."""
    _check_cfg(cfg)
    _check_params(params, cfg)
    _check_tokens("prompt", prompt, cfg)
    _check_tokens("completion", completion, cfg, batch=prompt.shape[0])
    lp, lc = prompt.shape[1], completion.shape[1]
    if lp < 1 or lc < 1:
        raise ValueError(f"prompt/completion: expected at least one token each, got Lp={lp}, Lc={lc}")
    if cfg.kind == "transformer" and lp + lc - 1 > cfg.max_len:
        raise ValueError(f"completion: prompt + completion length {lp + lc} exceeds cfg.max_len={cfg.max_len}")
    tokens = jnp.concatenate([jnp.asarray(prompt), jnp.asarray(completion)[:, :-1]], axis=1)
    return _hidden(params, tokens.astype(jnp.int32), cfg)[:, lp - 1:]


def _entropy(logp_full):
    return -jnp.sum(jnp.exp(logp_full) * logp_full, axis=-1)


def completion_logprobs(
    params: dict,
    prompt: jax.Array,
    completion: jax.Array,
    *,
    cfg: TinyLMConfig,
    full: bool = False,
    temperature: float = 1.0,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Teacher-forced per-token log-probs ℓ[b,t] = log softmax(logits/τ)[completion[b,t]].

    prompt: i32[B, Lp]; completion: i32[B, Lc] -> f32[B, Lc]; with ``full=True`` returns
    ``(logp f32[B, Lc], logp_full f32[B, Lc, V])`` (the whole log-softmax, for TW-GRPO).
    Padding positions are computed like any other (mask them downstream).
    """
    _check_temperature(temperature)
    h = _completion_hidden(params, prompt, completion, cfg)
    comp = jnp.asarray(completion).astype(jnp.int32)
    if cfg.use_kernel and not full:
        return _kernel_logprobs(params, h, comp, temperature)[0]
    logp_full = jax.nn.log_softmax(_head(params, h, cfg) / temperature, axis=-1)
    logp = jnp.take_along_axis(logp_full, comp[..., None], axis=-1)[..., 0]
    return (logp, logp_full) if full else logp


def _kernel_logprobs(params, h, comp, temperature):
    from zoo.kernels.fused_logprob import fused_logprob  # lazy: written by the kernels helper

    b, lc, d = h.shape
    logp, ent = fused_logprob(h.reshape(b * lc, d), params["head"] / temperature, comp.reshape(b * lc))
    return logp.reshape(b, lc), ent.reshape(b, lc)


def completion_logprobs_and_entropy(
    params: dict, prompt: jax.Array, completion: jax.Array, *, cfg: TinyLMConfig, temperature: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """(ℓ f32[B, Lc], H f32[B, Lc]) with H = −Σ_v p log p of the predictive distribution (entropy bonus)."""
    _check_temperature(temperature)
    h = _completion_hidden(params, prompt, completion, cfg)
    comp = jnp.asarray(completion).astype(jnp.int32)
    if cfg.use_kernel:
        return _kernel_logprobs(params, h, comp, temperature)
    logp_full = jax.nn.log_softmax(_head(params, h, cfg) / temperature, axis=-1)
    return jnp.take_along_axis(logp_full, comp[..., None], axis=-1)[..., 0], _entropy(logp_full)


def sft_loss(params: dict, prompt: jax.Array, target: jax.Array, target_mask: jax.Array, *,
             cfg: TinyLMConfig) -> jax.Array:
    """Warm-start loss −Σ m·log p(target | prompt) / max(Σ m, 1) (token mean NLL).

    prompt i32[B, Lp]; target i32[B, Lt]; target_mask bool[B, Lt] -> f32[].
    """
    check_array("target_mask", target_mask, shape=tuple(np.shape(target)), finite=False, kind="biuf")
    logp = completion_logprobs(params, prompt, target, cfg=cfg)
    m = jnp.asarray(target_mask).astype(logp.dtype)
    return -(logp * m).sum() / jnp.maximum(m.sum(), 1.0)


# ----------------------------------------------------------------------------- sampling


def _draw(gumbel, logits, temperature, greedy):
    """y = argmax(logits/τ + g), g ~ Gumbel (the Gumbel-max trick = a categorical draw)."""
    logp_all = jax.nn.log_softmax(logits / temperature, axis=-1)
    tok = jnp.argmax(logits if greedy else logp_all + gumbel, axis=-1)
    return tok.astype(jnp.int32), jnp.take_along_axis(logp_all, tok[:, None], axis=-1)[:, 0]


def sample(
    params: dict,
    key: jax.Array,
    prompt: jax.Array,
    *,
    cfg: TinyLMConfig,
    max_new: int,
    temperature: float = 1.0,
    greedy: bool = False,
) -> Rollout:
    """Sample completions of prompt i32[B, Lp] with one ``lax.scan`` over ``max_new`` steps.

    The carry is (hidden state or token buffer, last token, done). Step t draws y_t from
    softmax(logits/τ) (argmax if ``greedy``); rows already past EOS emit PAD with mask 0 and
    logp 0. The recorded ``logp`` equals ``completion_logprobs(..., temperature=τ)`` on the
    masked positions. ``greedy`` may be a traced bool (one program for both modes). The
    transformer recomputes the whole prefix each step (L <= max_len).
    """
    _check_cfg(cfg)
    _check_params(params, cfg)
    _check_tokens("prompt", prompt, cfg)
    _check_temperature(temperature)
    if isinstance(max_new, bool) or not isinstance(max_new, (int, np.integer)) or max_new < 1:
        raise ValueError(f"max_new: expected a positive int, got {max_new!r}")
    prompt = jnp.asarray(prompt).astype(jnp.int32)
    b, lp = prompt.shape
    if cfg.kind == "transformer" and lp + max_new - 1 > cfg.max_len:
        raise ValueError(f"max_new: prompt length {lp} + max_new {max_new} exceeds cfg.max_len={cfg.max_len}")
    # all the noise in one PRNG call (compiles faster than one draw per step), in the params' dtype
    dt = jnp.result_type(params["head"])
    if is_traced(greedy):  # a traced flag (e.g. vmapped over sampled/greedy): scale the noise by 0 or 1
        keys = jax.random.gumbel(key, (max_new, b, cfg.vocab), dt) * (1.0 - jnp.asarray(greedy, dt))
        greedy = False
    elif greedy:
        keys = jnp.zeros((max_new, b, cfg.vocab), dt)
    else:
        keys = jax.random.gumbel(key, (max_new, b, cfg.vocab), dt)
    done0 = jnp.zeros((b,), bool)

    if cfg.kind == "gru":
        h0 = jnp.zeros((cfg.n_layers, b, cfg.d_model), params["embed"].dtype)
        hs, tops = jax.lax.scan(lambda hs, tok: _gru_step(params, hs, tok), h0, prompt.T)

        def step(carry, k):
            hs, top, done = carry
            tok, lp_t = _draw(k, _head(params, top, cfg), temperature, greedy)
            tok = jnp.where(done, cfg.pad_id, tok)
            out = (tok, ~done, jnp.where(done, 0.0, lp_t))
            hs, top = _gru_step(params, hs, tok)
            return (hs, top, done | (tok == cfg.eos_id)), out

        _, (toks, mask, logp) = jax.lax.scan(step, (hs, tops[-1], done0), keys)
    else:
        buf = jnp.concatenate([prompt, jnp.full((b, max_new - 1), cfg.pad_id, jnp.int32)], axis=1)

        def step(carry, xs):
            buf, done = carry
            k, t = xs
            h = _hidden(params, buf, cfg)
            top = jax.lax.dynamic_index_in_dim(h, lp - 1 + t, axis=1, keepdims=False)
            tok, lp_t = _draw(k, _head(params, top, cfg), temperature, greedy)
            tok = jnp.where(done, cfg.pad_id, tok)
            out = (tok, ~done, jnp.where(done, 0.0, lp_t))
            pos = jnp.minimum(lp + t, buf.shape[1] - 1)
            buf = jnp.where(t < max_new - 1, jax.lax.dynamic_update_slice_in_dim(buf, tok[:, None], pos, axis=1), buf)
            return (buf, done | (tok == cfg.eos_id)), out

        _, (toks, mask, logp) = jax.lax.scan(step, (buf, done0), (keys, jnp.arange(max_new)))
    return Rollout(tokens=toks.T, mask=mask.T, logp=logp.T)
