"""TangleNAS: gradient-based NAS in weight-entangled spaces (weight superposition + DrNAS/DARTS).

Paper: *Weight-Entanglement Meets Gradient-Based Neural Architecture Search*, Rhea Sanjay
Sukthanker, Arjun Krishnakumar, Mahmoud Safari, Frank Hutter (2023), arXiv 2312.10440.
Official code: automl/TangleNAS (PyTorch; read for understanding only).

Equations (spec ``papers/tanglenas.md`` §2) -> functions:

- §2.2 weight superposition ``Θ_mix = Σ_i w_i P_i(S_i(Θ)) = Θ ⊙ C(α)`` -> `mixed_conv_weight`,
  `mixed_dense_weight`; its per-axis coefficient maps (§2.3, tail sums / centred windows) ->
  `coeff_channels`, `coeff_kernel`. Output superposition ``y = Σ_i w_i o_i(x)`` (the
  weight-sharing DARTS baseline) -> `output_superposition`.
- §2.3 combi-superposition with tied in/out channel choices -> `supernet_apply` (weight
  entangled, one conv per layer) vs `ws_supernet_apply` (non-entangled DARTS supernet: every
  (channels, kernel) candidate owns its weights; K outputs per layer are mixed).
- §2.4 mixture weights (softmax / sparsemax DARTS, Dirichlet(elu(α)+1) DrNAS with reparameterised
  gradients, uniform one-hot SPOS, straight-through Gumbel GDAS) -> `mixture_weights`, `sparsemax`.
- §2.5 alternating first-order bilevel optimisation (architecture step on a D_val batch with Adam
  (β = (0.5, 0.999), weight decay 1e-3), then weight step on a D_train batch with fresh mixture
  weights, gradient clipping at global norm 5) -> `init_search`, `search_step` (optax).
- §2.6 discretisation (per-axis argmax; ties go to the smaller index, `jnp.argmax`'s rule) ->
  `discretize`; one-hot α of an architecture -> `onehot_probs`; SPOS + random search baseline ->
  `spos_random_search`.

Search space (`SearchSpace`): the spec's "conv1d_macro" family: ``n_layers`` 1-D convolutions
(same padding, stride 1, ReLU), each with a channel choice and a kernel choice, then global
average pooling and a dense head. Defaults ``channels=(8, 16, 32)``, ``kernels=(3, 5, 7)``,
2 layers: 81 architectures (the spec's quick space). Super-weights ``w: [k_max, C_in, C_max]``
(``[k, k, C_in, C_out]`` is also accepted by `mixed_conv_weight` for 2-D ops).

Choices that are ours: no max-pool before the global pool (the spec's conv2 -> maxpool -> GAP);
the WS baseline's candidates are conv+bias ops (ReLU after the mix, so with one-hot weights the WS
and WE nets are the same function class), each reading all ``C_max`` input channels of the
previous mixed output; DARTS uses softmax by default (``normalizer="sparsemax"`` is what the
official entangled DARTS uses); the default learning rates are the spec's quick-scale ones
(weights Adam 3e-3, α Adam 3e-3) rather than the paper's 3e-4; α initialised ``1e-3·N(0,1)``.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced

__all__ = [
    "SearchSpace", "SearchConfig", "SearchState", "coeff_channels", "coeff_kernel", "mixed_conv_weight",
    "mixed_dense_weight", "output_superposition", "sparsemax", "mixture_weights", "init_supernet",
    "supernet_apply", "init_ws_supernet", "ws_supernet_apply", "param_count", "init_alpha", "init_search",
    "search_step", "discretize", "onehot_probs", "arch_values", "enumerate_architectures", "accuracy",
    "spos_random_search",
]  # fmt: skip

METHODS = ("darts", "drnas", "gdas", "spos")


def _check_values(name: str, values: Any, max_size: int | None = None, odd: bool = False) -> tuple[int, ...]:
    if not isinstance(values, tuple) or not values or not all(isinstance(v, int) and v > 0 for v in values):
        raise ValueError(f"{name}: expected a non-empty tuple of positive ints, got {values!r}")
    if list(values) != sorted(set(values)):
        raise ValueError(f"{name}: expected strictly increasing sizes, got {values!r}")
    if max_size is not None and values[-1] > max_size:
        raise ValueError(f"{name}: sizes must not exceed the super-weight size {max_size}, got {values!r}")
    if odd and any(v % 2 == 0 for v in values):
        raise ValueError(f"{name}: expected odd kernel sizes (a centred window), got {values!r}")
    return values


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """Macro conv space: per layer a channel choice and a (centred, odd) kernel choice."""

    channels: tuple[int, ...] = (8, 16, 32)
    kernels: tuple[int, ...] = (3, 5, 7)
    n_layers: int = 2
    in_channels: int = 1
    num_classes: int = 10

    def __post_init__(self):
        _check_values("channels", self.channels)
        _check_values("kernels", self.kernels, odd=True)
        check_range("n_layers", self.n_layers, low=1, high=8)
        check_range("in_channels", self.in_channels, low=1)
        check_range("num_classes", self.num_classes, low=2)

    @property
    def size(self) -> int:
        return (len(self.channels) * len(self.kernels)) ** self.n_layers


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """Bilevel search hyper-parameters (static). ``supernet``: ``"we"`` entangled or ``"ws"`` output mixing."""

    method: str = "drnas"
    normalizer: str = "softmax"
    supernet: str = "we"
    w_lr: float = 3e-3
    w_b1: float = 0.9
    w_b2: float = 0.995
    w_weight_decay: float = 5e-4
    a_lr: float = 3e-3
    a_b1: float = 0.5
    a_b2: float = 0.999
    a_weight_decay: float = 1e-3
    grad_clip: float = 5.0
    tau: float = 1.0  # GDAS temperature

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        check_choice("normalizer", self.normalizer, ("softmax", "sparsemax"))
        check_choice("supernet", self.supernet, ("we", "ws"))
        for f in ("w_lr", "a_lr", "grad_clip", "tau"):
            check_range(f, getattr(self, f), low=0.0, low_inclusive=False)
        for f in ("w_b1", "w_b2", "a_b1", "a_b2"):
            check_range(f, getattr(self, f), low=0.0, high=1.0, high_inclusive=False)
        for f in ("w_weight_decay", "a_weight_decay"):
            check_range(f, getattr(self, f), low=0.0)


class SearchState(NamedTuple):
    """Search state (a pytree): supernet weights, α, both optax states, step counter, PRNG key."""

    weights: Any
    alpha: dict
    w_opt: Any
    a_opt: Any
    step: jax.Array
    key: jax.Array


# --------------------------------------------------------------------------- superposition


def _mask_channels(values, max_c):
    return (np.arange(max_c)[None, :] < np.asarray(values)[:, None]).astype(np.float32)


def _mask_kernel(values, max_k):
    idx, v = np.arange(max_k)[None, :], np.asarray(values)[:, None]
    start = (max_k - v) // 2
    return ((idx >= start) & (idx < start + v)).astype(np.float32)


def _check_p(name, p, n):
    check_array(name, p, ndim=1, shape=(n,), kind="f")


def coeff_channels(p: jax.Array, values: tuple[int, ...], max_c: int) -> jax.Array:
    """``c[o] = Σ_a p_a [o < values[a]]`` (probability that channel ``o`` is kept): ``f[max_c]``."""
    _check_values("values", values, max_size=max_c)
    _check_p("p", p, len(values))
    return p @ jnp.asarray(_mask_channels(values, max_c), p.dtype)


def coeff_kernel(p: jax.Array, values: tuple[int, ...], max_k: int) -> jax.Array:
    """``c[t] = Σ_c p_c [tap t lies in the centred window of size values[c]]``: ``f[max_k]``."""
    _check_values("values", values, max_size=max_k, odd=True)
    if max_k % 2 == 0:
        raise ValueError(f"max_k: expected an odd kernel size, got {max_k}")
    _check_p("p", p, len(values))
    return p @ jnp.asarray(_mask_kernel(values, max_k), p.dtype)


def mixed_conv_weight(theta, bias=None, *, p_out=None, p_in=None, p_ker=None, out_values=None, in_values=None,
                      kernel_values=None):
    """Weight superposition ``(Θ ⊙ C, b ⊙ c_out)`` of a conv super-weight.

    theta: ``f[k, C_in, C_out]`` (1-D) or ``f[k, k, C_in, C_out]`` (2-D); bias ``f[C_out]`` or None.
    ``p_*``: per-axis mixture weights over ``*_values`` (None: that axis is not searched).
    """
    check_array("theta", theta, ndim=(3, 4), kind="f")
    *ks, cin, cout = theta.shape
    c = jnp.ones(theta.shape, theta.dtype)
    if p_ker is not None:
        if len(set(ks)) != 1:
            raise ValueError(f"theta: expected a square kernel, got shape {theta.shape}")
        if len(ks) == 1:
            ck = coeff_kernel(p_ker, kernel_values, ks[0]).astype(theta.dtype)[:, None, None]
        else:  # a 2-D tap (s, t) is kept by candidate c iff both lie in its centred window
            coeff_kernel(p_ker, kernel_values, ks[0])  # validates p_ker / kernel_values
            m = _mask_kernel(kernel_values, ks[0])
            ck = jnp.tensordot(p_ker.astype(theta.dtype), jnp.asarray(m[:, :, None] * m[:, None, :], theta.dtype), 1)
            ck = ck[..., None, None]
        c = c * ck
    if p_in is not None:
        c = c * coeff_channels(p_in, in_values, cin).astype(theta.dtype)[:, None]
    if p_out is not None:
        co = coeff_channels(p_out, out_values, cout).astype(theta.dtype)
        c = c * co
        bias = None if bias is None else bias * co
    return theta * c, bias


def mixed_dense_weight(theta, *, p_in=None, p_out=None, in_values=None, out_values=None):
    """Weight superposition of a dense super-weight ``theta: f[K, N]`` over in/out width choices."""
    check_array("theta", theta, ndim=2, kind="f")
    w = theta
    if p_in is not None:
        w = w * coeff_channels(p_in, in_values, theta.shape[0]).astype(theta.dtype)[:, None]
    if p_out is not None:
        w = w * coeff_channels(p_out, out_values, theta.shape[1]).astype(theta.dtype)
    return w


def output_superposition(fns, w, x):
    """``Σ_i w_i fns[i](x)`` (the weight-sharing / DARTS mixed op): K forward passes."""
    if not callable(getattr(fns, "__getitem__", None)) or not fns or not all(callable(f) for f in fns):
        raise TypeError("fns: expected a non-empty sequence of callables")
    check_array("w", w, ndim=1, shape=(len(fns),), kind="f")
    return sum(w[i] * f(x) for i, f in enumerate(fns))


# ------------------------------------------------------------------------- mixture weights


def sparsemax(z: jax.Array) -> jax.Array:
    """Sparsemax over the last axis (Martins & Astudillo 2016): Euclidean projection onto the simplex."""
    check_array("z", z, ndim=(1, 2, 3), kind="f")
    zs = -jnp.sort(-z, axis=-1)
    k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cs = jnp.cumsum(zs, -1)
    support = (1 + k * zs > cs).astype(z.dtype)
    kz = jnp.sum(support, -1, keepdims=True)
    tau = (jnp.sum(zs * support, -1, keepdims=True) - 1) / kz
    return jnp.maximum(z - tau, 0)


def mixture_weights(alpha: jax.Array, key: jax.Array, *, method: str = "darts", normalizer: str = "softmax",
                    tau: float = 1.0) -> jax.Array:
    """Mixture weights ``f[..., n]`` from architecture parameters ``alpha: f[..., n]`` (§2.4).

    darts: softmax / sparsemax(α); drnas: ``Dirichlet(elu(α) + 1)`` sample (reparameterised through
    JAX's implicit gamma gradients); spos: uniform one-hot (no α gradient); gdas: straight-through
    Gumbel-softmax one-hot at temperature ``tau``.
    """
    check_array("alpha", alpha, ndim=(1, 2, 3), kind="f")
    check_choice("method", method, METHODS)
    check_choice("normalizer", normalizer, ("softmax", "sparsemax"))
    if method == "darts":
        return jax.nn.softmax(alpha, -1) if normalizer == "softmax" else sparsemax(alpha)
    if method == "drnas":
        conc = jax.nn.elu(alpha) + 1.0
        return jax.random.dirichlet(key, conc, dtype=alpha.dtype)
    n = alpha.shape[-1]
    if method == "spos":
        idx = jax.random.randint(key, alpha.shape[:-1], 0, n)
        return jax.nn.one_hot(idx, n, dtype=alpha.dtype)
    g = jax.random.gumbel(key, alpha.shape, alpha.dtype)
    soft = jax.nn.softmax((jax.nn.log_softmax(alpha, -1) + g) / tau, -1)
    hard = jax.nn.one_hot(jnp.argmax(soft, -1), n, dtype=alpha.dtype)
    return hard - jax.lax.stop_gradient(soft) + soft


# --------------------------------------------------------------------------------- networks


def _conv1d(h, w):
    """Same-padded stride-1 1-D conv ``h: [N, T, Ci]``, ``w: [k, Ci, Co]`` as one patches matmul
    (under ``vmap`` over weights this stays a batched matmul; a vmapped ``lax.conv`` becomes a
    grouped convolution, which XLA:CPU runs far slower)."""
    k, t = w.shape[0], h.shape[1]
    hp = jnp.pad(h, ((0, 0), ((k - 1) // 2, (k - 1) // 2), (0, 0)))
    patches = jnp.stack([hp[:, j : j + t] for j in range(k)], axis=2)  # [N, T, k, Ci]
    return jnp.einsum("ntki,kio->nto", patches, w)


def _check_x(x, space):
    check_array("x", x, ndim=(2, 3), kind="f")
    if x.ndim == 3 and x.shape[-1] != space.in_channels:
        raise ValueError(f"x: expected {space.in_channels} input channels, got shape {x.shape}")
    return x[..., None] if x.ndim == 2 else x


def _check_space(space):
    if not isinstance(space, SearchSpace):
        raise TypeError(f"space: expected a SearchSpace, got {type(space).__name__}")


def init_supernet(key: jax.Array, space: SearchSpace, arch: dict | None = None, dtype=jnp.float32) -> dict:
    """Entangled super-weights ``{"conv{l}": {w: [k_max, C_in, C_max], b}, "head": {w: [C_max, classes], b}}``.

    He-normal init on the super-weight's fan-in; with ``arch`` (index dict, see `discretize`) each
    layer is rescaled to that sub-network's true fan-in (for training it from scratch as a masked net).
    """
    _check_space(space)
    kmax, cmax = space.kernels[-1], space.channels[-1]
    params, cin = {}, space.in_channels
    keys = jax.random.split(key, space.n_layers + 1)
    for l in range(space.n_layers):
        w = jax.random.normal(keys[l], (kmax, cin, cmax), dtype) * jnp.sqrt(2.0 / (kmax * cin)).astype(dtype)
        if arch is not None:
            k = jnp.asarray(space.kernels, dtype)[arch["kernels"][l]]
            ci = cin if l == 0 else jnp.asarray(space.channels, dtype)[arch["channels"][l - 1]]
            w = w * jnp.sqrt(kmax * cin / (k * ci))
        params[f"conv{l}"] = {"w": w, "b": jnp.zeros(cmax, dtype)}
        cin = cmax
    params["head"] = {"w": jax.random.normal(keys[-1], (cmax, space.num_classes), dtype) / jnp.sqrt(cmax).astype(dtype),
                      "b": jnp.zeros(space.num_classes, dtype)}  # fmt: skip
    return params


def _check_probs(probs, space):
    if not isinstance(probs, dict) or set(probs) != {"channels", "kernels"}:
        raise ValueError("probs: expected a dict with keys 'channels' and 'kernels'")
    check_array("probs['channels']", probs["channels"], shape=(space.n_layers, len(space.channels)), kind="f")
    check_array("probs['kernels']", probs["kernels"], shape=(space.n_layers, len(space.kernels)), kind="f")


def supernet_apply(params: dict, x: jax.Array, probs: dict, space: SearchSpace) -> jax.Array:
    """Weight-entangled supernet logits ``f[N, classes]`` for ``x: f[N, W]`` (or ``[N, W, C_in]``).

    ``probs``: ``{"channels": f[L, n_c], "kernels": f[L, n_k]}`` mixture weights. Conv ``l``'s
    output channels and conv ``l+1``'s (and the head's) input channels share ``probs["channels"][l]``.
    """
    _check_space(space)
    h = _check_x(x, space)
    _check_probs(probs, space)
    p_prev = None
    for l in range(space.n_layers):
        pc, pk = probs["channels"][l], probs["kernels"][l]
        w, b = mixed_conv_weight(params[f"conv{l}"]["w"], params[f"conv{l}"]["b"], p_out=pc, p_in=p_prev, p_ker=pk,
                                 out_values=space.channels, in_values=space.channels, kernel_values=space.kernels)
        h = jax.nn.relu(_conv1d(h, w) + b)
        p_prev = pc
    wh = mixed_dense_weight(params["head"]["w"], p_in=p_prev, in_values=space.channels)
    return h.mean(1) @ wh + params["head"]["b"]


def init_ws_supernet(key: jax.Array, space: SearchSpace, dtype=jnp.float32) -> dict:
    """Non-entangled (weight-sharing DARTS) supernet: every (channels, kernel) candidate owns ``w: [k, C_in, c]``."""
    _check_space(space)
    cmax, params, cin = space.channels[-1], {}, space.in_channels
    keys = jax.random.split(key, space.n_layers + 1)
    for l in range(space.n_layers):
        cand = {}
        for j, (c, k) in enumerate(itertools.product(space.channels, space.kernels)):
            kk = jax.random.fold_in(keys[l], j)
            cand[f"c{c}_k{k}"] = {"w": jax.random.normal(kk, (k, cin, c), dtype) * jnp.sqrt(2.0 / (k * cin)).astype(dtype),
                                  "b": jnp.zeros(c, dtype)}  # fmt: skip
        params[f"conv{l}"] = cand
        cin = cmax
    params["head"] = {"w": jax.random.normal(keys[-1], (cmax, space.num_classes), dtype) / jnp.sqrt(cmax).astype(dtype),
                      "b": jnp.zeros(space.num_classes, dtype)}  # fmt: skip
    return params


def ws_supernet_apply(params: dict, x: jax.Array, probs: dict, space: SearchSpace) -> jax.Array:
    """Output-superposition supernet: per layer ``relu(Σ_{c,k} p_c q_k pad(conv_{c,k}(h)))`` (K convs)."""
    _check_space(space)
    h = _check_x(x, space)
    _check_probs(probs, space)
    cmax = space.channels[-1]
    for l in range(space.n_layers):
        fns, ws = [], []
        for a, c in enumerate(space.channels):
            for b, k in enumerate(space.kernels):
                prm = params[f"conv{l}"][f"c{c}_k{k}"]
                fns.append(lambda z, prm=prm, c=c: jnp.pad(_conv1d(z, prm["w"]) + prm["b"], ((0, 0), (0, 0), (0, cmax - c))))
                ws.append(probs["channels"][l, a] * probs["kernels"][l, b])
        h = jax.nn.relu(output_superposition(fns, jnp.stack(ws), h))
    return h.mean(1) @ params["head"]["w"] + params["head"]["b"]


def param_count(arch: dict, space: SearchSpace) -> int:
    """Number of parameters of the discrete sub-network ``arch`` (index dict) — host-side int."""
    _check_space(space)
    vals = arch_values(arch, space)
    n, cin = 0, space.in_channels
    for c, k in zip(vals["channels"], vals["kernels"]):
        n += k * cin * c + c
        cin = c
    return n + cin * space.num_classes + space.num_classes


# ------------------------------------------------------------------------ architecture params


def init_alpha(key: jax.Array, space: SearchSpace, dtype=jnp.float32) -> dict:
    """``α = 1e-3·N(0, 1)``: ``{"channels": f[L, n_c], "kernels": f[L, n_k]}``."""
    _check_space(space)
    k1, k2 = jax.random.split(key)
    return {"channels": 1e-3 * jax.random.normal(k1, (space.n_layers, len(space.channels)), dtype),
            "kernels": 1e-3 * jax.random.normal(k2, (space.n_layers, len(space.kernels)), dtype)}  # fmt: skip


def _probs(alpha, key, cfg):
    kc, kk = jax.random.split(key)
    f = lambda a, k: mixture_weights(a, k, method=cfg.method, normalizer=cfg.normalizer, tau=cfg.tau)  # noqa: E731
    return {"channels": f(alpha["channels"], kc), "kernels": f(alpha["kernels"], kk)}


def _optimizers(cfg):
    import optax

    w = optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                    optax.adamw(cfg.w_lr, cfg.w_b1, cfg.w_b2, weight_decay=cfg.w_weight_decay))
    a = optax.adamw(cfg.a_lr, cfg.a_b1, cfg.a_b2, weight_decay=cfg.a_weight_decay)
    return w, a


def _apply_fn(cfg):
    return supernet_apply if cfg.supernet == "we" else ws_supernet_apply


def init_search(key: jax.Array, space: SearchSpace, cfg: SearchConfig, dtype=jnp.float32) -> SearchState:
    """Supernet weights (entangled or not, per ``cfg.supernet``), α and both optimizer states."""
    _check_space(space)
    if not isinstance(cfg, SearchConfig):
        raise TypeError(f"cfg: expected a SearchConfig, got {type(cfg).__name__}")
    kw, ka, ks = jax.random.split(key, 3)
    weights = (init_supernet if cfg.supernet == "we" else init_ws_supernet)(kw, space, dtype=dtype)
    alpha = init_alpha(ka, space, dtype)
    wo, ao = _optimizers(cfg)
    return SearchState(weights, alpha, wo.init(weights), ao.init(alpha), jnp.zeros((), jnp.int32), ks)


def _xent(logits, y):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def search_step(state: SearchState, batch_train: dict, batch_val: dict, space: SearchSpace,
                cfg: SearchConfig) -> tuple[SearchState, dict]:
    """One alternating step: α step on ``batch_val`` (skipped for SPOS), then weight step on ``batch_train``.

    Batches are ``{"x": f[B, W], "y": i[B]}``; fresh mixture weights are drawn for each step.
    Returns the new state and ``{"train_loss", "val_loss"}``.
    """
    _check_space(space)
    if not isinstance(cfg, SearchConfig):
        raise TypeError(f"cfg: expected a SearchConfig, got {type(cfg).__name__}")
    for name, b in (("batch_train", batch_train), ("batch_val", batch_val)):
        if not isinstance(b, dict) or set(b) != {"x", "y"}:
            raise ValueError(f"{name}: expected a dict with keys 'x' and 'y'")
        check_array(f"{name}['x']", b["x"], ndim=(2, 3), kind="f")
        check_array(f"{name}['y']", b["y"], ndim=1, shape=(b["x"].shape[0],), kind="iu")
    import optax

    apply = _apply_fn(cfg)
    wo, ao = _optimizers(cfg)
    key, ka, kw = jax.random.split(state.key, 3)

    def val_loss(alpha):
        return _xent(apply(state.weights, batch_val["x"], _probs(alpha, ka, cfg), space), batch_val["y"])

    if cfg.method == "spos":
        lv, alpha, a_opt = val_loss(state.alpha), state.alpha, state.a_opt
    else:
        lv, ga = jax.value_and_grad(val_loss)(state.alpha)
        upd, a_opt = ao.update(ga, state.a_opt, state.alpha)
        alpha = optax.apply_updates(state.alpha, upd)
    probs = jax.lax.stop_gradient(_probs(alpha, kw, cfg))

    def train_loss(w):
        return _xent(apply(w, batch_train["x"], probs, space), batch_train["y"])

    lt, gw = jax.value_and_grad(train_loss)(state.weights)
    upd, w_opt = wo.update(gw, state.w_opt, state.weights)
    weights = optax.apply_updates(state.weights, upd)
    return SearchState(weights, alpha, w_opt, a_opt, state.step + 1, key), {"train_loss": lt, "val_loss": lv}


# --------------------------------------------------------------------------- discretisation


def _check_alpha(alpha, space):
    if not isinstance(alpha, dict) or set(alpha) != {"channels", "kernels"}:
        raise ValueError("alpha: expected a dict with keys 'channels' and 'kernels'")
    check_array("alpha['channels']", alpha["channels"], shape=(space.n_layers, len(space.channels)), kind="f")
    check_array("alpha['kernels']", alpha["kernels"], shape=(space.n_layers, len(space.kernels)), kind="f")


def discretize(alpha: dict, space: SearchSpace) -> dict:
    """Per-axis argmax of α (ties: smaller index): ``{"channels": i32[L], "kernels": i32[L]}`` indices."""
    _check_space(space)
    _check_alpha(alpha, space)
    return {k: jnp.argmax(v, -1).astype(jnp.int32) for k, v in alpha.items()}


def _check_arch(arch, space):
    if not isinstance(arch, dict) or set(arch) != {"channels", "kernels"}:
        raise ValueError("arch: expected a dict with keys 'channels' and 'kernels'")
    for k, n in (("channels", len(space.channels)), ("kernels", len(space.kernels))):
        check_array(f"arch['{k}']", arch[k], shape=(space.n_layers,), kind="iu")
        if not is_traced(arch[k]) and (np.any(np.asarray(arch[k]) < 0) or np.any(np.asarray(arch[k]) >= n)):
            raise ValueError(f"arch['{k}']: expected indices in [0, {n}), got {np.asarray(arch[k]).tolist()}")


def onehot_probs(arch: dict, space: SearchSpace, dtype=jnp.float32) -> dict:
    """One-hot mixture weights of the architecture ``arch`` (index dict): the masked sub-network."""
    _check_space(space)
    _check_arch(arch, space)
    return {"channels": jax.nn.one_hot(arch["channels"], len(space.channels), dtype=dtype),
            "kernels": jax.nn.one_hot(arch["kernels"], len(space.kernels), dtype=dtype)}  # fmt: skip


def arch_values(arch: dict, space: SearchSpace) -> dict:
    """Index dict -> ``{"channels": (c_1..c_L), "kernels": (k_1..k_L)}`` sizes (host-side)."""
    _check_space(space)
    _check_arch(arch, space)
    return {"channels": tuple(space.channels[int(i)] for i in np.asarray(arch["channels"])),
            "kernels": tuple(space.kernels[int(i)] for i in np.asarray(arch["kernels"]))}  # fmt: skip


def enumerate_architectures(space: SearchSpace) -> dict:
    """All architectures as index arrays ``{"channels": i32[A, L], "kernels": i32[A, L]}``, row-major over
    (c_1..c_L, k_1..k_L); `arch_index`-style flat index = row number."""
    _check_space(space)
    L, nc, nk = space.n_layers, len(space.channels), len(space.kernels)
    rows = np.array(list(itertools.product(*([range(nc)] * L + [range(nk)] * L))), np.int32).reshape(-1, 2 * L)
    return {"channels": jnp.asarray(rows[:, :L]), "kernels": jnp.asarray(rows[:, L:])}


def accuracy(params: dict, x: jax.Array, y: jax.Array, probs: dict, space: SearchSpace) -> jax.Array:
    """Accuracy of the entangled supernet under mixture weights ``probs`` (one-hot: a sub-network)."""
    check_array("y", y, ndim=1, kind="iu")
    logits = supernet_apply(params, x, probs, space)
    if logits.shape[0] != y.shape[0]:
        raise ValueError(f"y: expected {logits.shape[0]} labels, got {y.shape[0]}")
    return jnp.mean(jnp.argmax(logits, -1) == y)


def spos_random_search(params: dict, x_val: jax.Array, y_val: jax.Array, key: jax.Array, space: SearchSpace, *,
                       n_samples: int = 40) -> tuple[dict, jax.Array]:
    """Second stage of SPOS: ``n_samples`` uniform architectures scored on ``(x_val, y_val)`` with inherited
    weights; returns the best (first on ties) as an index dict and the scores ``f[n_samples]``."""
    _check_space(space)
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"n_samples: expected a positive int, got {n_samples!r}")
    kc, kk = jax.random.split(key)
    L = space.n_layers
    archs = {"channels": jax.random.randint(kc, (n_samples, L), 0, len(space.channels)),
             "kernels": jax.random.randint(kk, (n_samples, L), 0, len(space.kernels))}  # fmt: skip
    scores = jax.vmap(lambda a: accuracy(params, x_val, y_val, onehot_probs(a, space, x_val.dtype), space))(archs)
    best = jnp.argmax(scores)
    return {k: v[best] for k, v in archs.items()}, scores
