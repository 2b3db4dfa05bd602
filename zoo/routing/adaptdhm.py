"""AdaptDHM: Adaptive Distribution Hierarchical Model for multi-domain CTR prediction, and its baselines.

Paper: Jinyun Li, Huiwen Zheng, Yuanlin Liu, Minfang Lu, Lixia Wu, Haoyuan Hu, "AdaptDHM: Adaptive
Distribution Hierarchical Model for Multi-Domain CTR Prediction", arXiv 2211.12105 (2022). Spec:
``papers/adaptdhm.md``; the routing is `zoo.routing.core.adaptdhm_route` (``papers/_routing_family.md``).
No official code; we follow the Scenario-Wise-Rec re-implementation (MIT, PyTorch).

Equations -> functions (params are dict pytrees; `CTRConfig` is the static, hashable configuration):
- §2.1 ``x̃ = concat_f E_f[x_f]`` (the domain id is the last field) -> `embed`.
- §2.2 distribution adaptation module: K unit-norm centres (non-trainable state), r iterations of
  ``R = softmax(X̃ Cᵀ)``, ``C ← normalize(β C + (1−β) Rᵀ X̃)`` on the detached batch, then the hard
  assignment ``argmax_k R`` -> `route` (eval: one similarity pass, centres unchanged).
- §2.3 hierarchical towers ``h_{l+1} = ReLU(h_l (W_l^0 ⊙ W_l^k))``, last layer linear (a logit) ->
  `towers_logits` (all K towers, one einsum over the stacked K axis) and `towers_logits_ragged`
  (``lax.ragged_dot`` on samples sorted by cluster: no redundant work); the prediction is the
  selected tower's logit -> `apply`.
- §2.4 BCE on logits -> `loss_fn` (weight decay is the optimizer's, see the experiment).
- §2.5 baselines with the same embedding and widths -> `apply` with ``CTRConfig.model`` in
  ``dnn`` (one MLP), ``shared_bottom`` (shared bottom MLP + a tower per domain), ``mmoe`` (experts +
  per-domain softmax gates + per-domain towers), ``star`` (partitioned normalisation, star-topology
  FCN ``W^0 ⊙ W^d``, ``b^0 + b^d``, an auxiliary MLP whose logit is added) and ``oracle`` (AdaptDHM
  towers routed by the true latent cluster, ``batch["cluster"]``).
- metrics: `auc` (rank-based, ties averaged), `grouped_auc`, `nmi`, `adjusted_rand_index`.

Choices that are ours:
- embeddings ~ N(0, ``emb_init_std``²) with 1.0 (torch ``nn.Embedding``'s default). Scenario-Wise-Rec
  initialises N(0, 1e-4²); with near-zero embeddings every coefficient is ≈ 1/K, all centres follow the
  batch mean and the routing collapses to one cluster (our pilot at std 0.1 did; see the experiment).
  tower weights Xavier-uniform with gain √2 as in the reference; biases off for AdaptDHM (the reference
  allocates but never uses them: ``use_bias``), on for the baselines' MLPs (as torch-rechub's MLPs).
- STAR's partitioned normalisation and per-layer batch normalisation use the statistics of the
  current batch in training and evaluation alike (no running averages; evaluation batches are large).
- shared-bottom splits ``hidden`` into a bottom (the first half of the layers) and per-domain towers
  (the rest); MMoE's experts are bottom MLPs, ``n_experts = num_domains`` by default.
- every multi-tower model evaluates all its towers for every sample and gathers ("compute-all"), the
  strategy of the reference code, so training-time comparisons are like for like.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, is_traced

from .core import adaptdhm_route, l2_normalize

__all__ = [
    "CTRConfig",
    "adjusted_rand_index",
    "apply",
    "auc",
    "embed",
    "grouped_auc",
    "init",
    "loss_fn",
    "nmi",
    "route",
    "towers_logits",
    "towers_logits_ragged",
]

MODELS = ("adaptdhm", "dnn", "shared_bottom", "mmoe", "star", "oracle")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CTRConfig:
    """Static configuration of AdaptDHM or a baseline (hashable: a static jit argument).

    ``vocab_sizes``: one per field, the domain field last (its size is the number of domains M).
    ``K``: clusters (AdaptDHM) or true latent clusters (``oracle``).
    """

    vocab_sizes: tuple[int, ...]
    model: str = "adaptdhm"
    emb_dim: int = 16
    hidden: tuple[int, ...] = (256, 128, 64, 32, 16, 8)
    K: int = 3
    beta: float = 0.9
    num_iters: int = 3
    mean_aggregate: bool = False
    use_bias: bool | None = None  # None: False for adaptdhm/oracle towers, True for the baselines
    n_experts: int | None = None  # MMoE (None: one per domain)
    aux_hidden: tuple[int, ...] = (32,)  # STAR's auxiliary network
    emb_init_std: float = 1.0

    def __post_init__(self):
        vs = self.vocab_sizes
        if not isinstance(vs, tuple) or len(vs) < 1 or any(
                isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in vs):
            raise ValueError(f"vocab_sizes: expected a non-empty tuple of positive ints, got {vs!r}")
        check_choice("model", self.model, MODELS)
        for name in ("emb_dim", "K", "num_iters"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        for name in ("hidden", "aux_hidden"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in v):
                raise ValueError(f"{name}: expected a tuple of positive ints, got {v!r}")
        if self.model in ("shared_bottom", "mmoe") and len(self.hidden) < 2:
            raise ValueError(f"hidden: {self.model} needs at least 2 hidden layers (bottom + tower), got {self.hidden}")
        if not isinstance(self.beta, (int, float)) or not 0 <= self.beta <= 1:
            raise ValueError(f"beta: expected a value in [0, 1], got {self.beta!r}")
        if self.n_experts is not None and (not isinstance(self.n_experts, int) or self.n_experts < 1):
            raise ValueError(f"n_experts: expected None or an int >= 1, got {self.n_experts!r}")
        if not isinstance(self.emb_init_std, (int, float)) or not self.emb_init_std > 0:
            raise ValueError(f"emb_init_std: expected a number > 0, got {self.emb_init_std!r}")

    @property
    def num_domains(self) -> int:
        return int(self.vocab_sizes[-1])

    @property
    def d_in(self) -> int:
        return len(self.vocab_sizes) * self.emb_dim

    @property
    def bias(self) -> bool:
        return (self.model not in ("adaptdhm", "oracle")) if self.use_bias is None else bool(self.use_bias)


# ----------------------------------------------------------------------------------- init


class _Draws:
    """Carves every random array of an init from ONE uniform draw (a single threefry call compiles in
    about a second on CPU; dozens of separate calls under ``vmap`` took tens of seconds)."""

    def __init__(self, key, total: int, dtype):
        self.u = jax.random.uniform(key, (max(total, 1),), dtype, minval=-1.0, maxval=1.0)
        self.i = 0

    def take(self, shape) -> jax.Array:
        n = int(np.prod(shape))
        out = self.u[self.i: self.i + n].reshape(shape)
        self.i += n
        return out


def _xavier(draws, fan_in, fan_out, lead=(), gain=math.sqrt(2.0)):
    return gain * math.sqrt(6.0 / (fan_in + fan_out)) * draws.take((*lead, fan_in, fan_out))


def _normal(draws, shape):
    """N(0, 1) from uniforms on (-1, 1) by the inverse CDF."""
    from jax.scipy.special import ndtri

    u = jnp.clip(0.5 * (draws.take(shape) + 1.0), 1e-7, 1 - 1e-7)
    return ndtri(u)


def _mlp_init(draws, dims, lead=(), bias=True, dtype=jnp.float32):
    layers = []
    for i, o in zip(dims[:-1], dims[1:]):
        layer = {"w": _xavier(draws, i, o, lead)}
        if bias:
            layer["b"] = jnp.zeros((*lead, o), dtype)
        layers.append(layer)
    return layers


def _mlp_size(dims, lead=1):
    return lead * sum(i * o for i, o in zip(dims[:-1], dims[1:]))


def init(key: jax.Array, cfg: CTRConfig, dtype: Any = jnp.float32) -> tuple[dict, dict]:
    """``(params, state)`` of ``cfg.model``; ``state = {"centers": f[K, D_in]}`` for AdaptDHM, else ``{}``.

    Embeddings ~ N(0, emb_init_std²); weights Xavier-uniform (gain √2); biases 0; centres row-normalised
    N(0, 1) draws; all from one uniform draw of ``key``.
    """
    if not isinstance(cfg, CTRConfig):
        raise TypeError(f"cfg: expected a CTRConfig, got {type(cfg).__name__}")
    M, dims = cfg.num_domains, (cfg.d_in, *cfg.hidden, 1)
    nb = len(cfg.hidden) // 2
    bottom, top = (cfg.d_in, *cfg.hidden[:nb]), (cfg.hidden[max(nb - 1, 0)], *cfg.hidden[nb:], 1)
    E = cfg.n_experts or M
    total = sum(cfg.vocab_sizes) * cfg.emb_dim + {
        "adaptdhm": _mlp_size(dims, 1 + cfg.K) + cfg.K * cfg.d_in,
        "oracle": _mlp_size(dims, 1 + cfg.K),
        "dnn": _mlp_size(dims),
        "shared_bottom": _mlp_size(bottom) + _mlp_size(top, M),
        "mmoe": _mlp_size(bottom, E) + _mlp_size(top, M) + cfg.d_in * M * E,
        "star": _mlp_size(dims) + _mlp_size((cfg.d_in, *cfg.aux_hidden, 1)),
    }[cfg.model]
    dr = _Draws(key, total, dtype)
    params: dict = {"emb": [cfg.emb_init_std * _normal(dr, (v, cfg.emb_dim)) for v in cfg.vocab_sizes]}
    state: dict = {}
    if cfg.model in ("adaptdhm", "oracle"):
        params["shared"] = _mlp_init(dr, dims, bias=cfg.bias, dtype=dtype)
        params["cluster"] = _mlp_init(dr, dims, lead=(cfg.K,), bias=cfg.bias, dtype=dtype)
        if cfg.model == "adaptdhm":
            state["centers"] = l2_normalize(_normal(dr, (cfg.K, cfg.d_in)))
    elif cfg.model == "dnn":
        params["mlp"] = _mlp_init(dr, dims, bias=cfg.bias, dtype=dtype)
    elif cfg.model in ("shared_bottom", "mmoe"):
        if cfg.model == "shared_bottom":
            params["bottom"] = _mlp_init(dr, bottom, bias=cfg.bias, dtype=dtype)
        else:
            params["experts"] = _mlp_init(dr, bottom, lead=(E,), bias=cfg.bias, dtype=dtype)
            params["gates"] = _xavier(dr, cfg.d_in, M * E, gain=1.0).reshape(cfg.d_in, M, E)
        params["towers"] = _mlp_init(dr, top, lead=(M,), bias=cfg.bias, dtype=dtype)
    else:  # star
        params["shared"] = _mlp_init(dr, dims, bias=True, dtype=dtype)
        # the domain factor starts at 1 (W^0 ⊙ 1 = W^0) and the domain bias at 0
        params["domain"] = [{"w": jnp.ones((M, i, o), dtype), "b": jnp.zeros((M, o), dtype)}
                            for i, o in zip(dims[:-1], dims[1:])]
        params["pn"] = {"gamma0": jnp.ones(cfg.d_in, dtype), "beta0": jnp.zeros(cfg.d_in, dtype),
                        "gamma": jnp.ones((M, cfg.d_in), dtype), "beta": jnp.zeros((M, cfg.d_in), dtype)}
        params["aux"] = _mlp_init(dr, (cfg.d_in, *cfg.aux_hidden, 1), bias=True, dtype=dtype)
    assert dr.i == total, (dr.i, total)
    return params, state


# ----------------------------------------------------------------------------------- pieces


def _check_x(cfg: CTRConfig, x) -> None:
    check_array("x", x, ndim=2, kind="iu")
    if x.shape[1] != len(cfg.vocab_sizes):
        raise ValueError(f"x: expected {len(cfg.vocab_sizes)} fields (the domain last), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("x: expected a non-empty batch, got 0 rows")
    if not is_traced(x):
        xv = np.asarray(x)
        bad = (xv < 0) | (xv >= np.asarray(cfg.vocab_sizes)[None, :])
        if bad.any():
            i, f = (int(a) for a in np.argwhere(bad)[0])
            what = "domain id" if f == len(cfg.vocab_sizes) - 1 else f"field {f} id"
            raise ValueError(f"x: {what} {int(xv[i, f])} at row {i} is outside [0, {cfg.vocab_sizes[f]})")


def embed(params: dict, x: jax.Array, cfg: CTRConfig) -> jax.Array:
    """``x̃ = concat_f E_f[x_f]``: x i32[B, F+1] (domain id last) -> f[B, (F+1)·emb_dim]."""
    _check_x(cfg, x)
    return jnp.concatenate([jnp.take(e, x[:, f], axis=0) for f, e in enumerate(params["emb"])], -1)


def route(state: dict, x_emb: jax.Array, cfg: CTRConfig, *, train: bool) -> tuple[jax.Array, jax.Array, dict]:
    """The distribution adaptation module: ``(assign i32[B], coeff f[B, K], new_state)`` (no gradient)."""
    if "centers" not in state:
        raise ValueError("state: expected {'centers': f[K, D_in]} (from init with model='adaptdhm')")
    check_array("x_emb", x_emb, ndim=2, kind="f")
    check_array("state['centers']", state["centers"], shape=(cfg.K, x_emb.shape[1]), kind="f")
    assign, coeff, centers = adaptdhm_route(x_emb, state["centers"], cfg.beta, cfg.num_iters, train=train,
                                            mean_aggregate=cfg.mean_aggregate)
    return assign, coeff, {**state, "centers": centers}


def _dense(h, layer, lead_w=None):
    w = layer["w"] if lead_w is None else lead_w
    return h @ w + layer["b"] if "b" in layer else h @ w


def towers_logits(params: dict, x_emb: jax.Array) -> jax.Array:
    """Every cluster tower on every sample: f[B, D_in] -> logits f[B, K] (shared ⊙ cluster weights)."""
    check_array("x_emb", x_emb, ndim=2, kind="f")
    shared, cluster = params["shared"], params["cluster"]
    if x_emb.shape[1] != shared[0]["w"].shape[0]:
        raise ValueError(f"x_emb: expected width {shared[0]['w'].shape[0]}, got shape {tuple(x_emb.shape)}")
    h = jnp.broadcast_to(x_emb, (cluster[0]["w"].shape[0], *x_emb.shape))  # [K, B, D]
    n = len(shared)
    for i, (s, c) in enumerate(zip(shared, cluster)):
        h = jnp.einsum("kbi,kio->kbo", h, s["w"][None] * c["w"])
        if "b" in s:
            h = h + (s["b"] + c["b"])[:, None, :]
        if i < n - 1:
            h = jax.nn.relu(h)
    return h[..., 0].T


def towers_logits_ragged(params: dict, x_emb: jax.Array, assign: jax.Array) -> jax.Array:
    """The selected tower's logit per sample, f[B], by grouped GEMMs (``lax.ragged_dot``) on cluster-sorted rows."""
    check_array("x_emb", x_emb, ndim=2, kind="f")
    check_array("assign", assign, shape=(x_emb.shape[0],), kind="iu")
    shared, cluster = params["shared"], params["cluster"]
    K = cluster[0]["w"].shape[0]
    order = jnp.argsort(assign, stable=True)
    sizes = jnp.bincount(assign, length=K).astype(jnp.int32)
    h = x_emb[order]
    a_sorted = assign[order]
    n = len(shared)
    for i, (s, c) in enumerate(zip(shared, cluster)):
        h = jax.lax.ragged_dot(h, s["w"][None] * c["w"], sizes)
        if "b" in s:
            h = h + s["b"] + c["b"][a_sorted]
        if i < n - 1:
            h = jax.nn.relu(h)
    return jnp.zeros(x_emb.shape[0], h.dtype).at[order].set(h[:, 0])


def _mlp(h, layers, last_linear=True):
    for i, layer in enumerate(layers):
        h = _dense(h, layer)
        if i < len(layers) - 1 or not last_linear:
            h = jax.nn.relu(h)
    return h


def _stacked_mlp(h, layers, last_linear=True):
    """MLP with a leading stack axis on the weights: h f[S, B, d] or f[B, d] -> f[S, B, out]."""
    if h.ndim == 2:
        h = jnp.broadcast_to(h, (layers[0]["w"].shape[0], *h.shape))
    for i, layer in enumerate(layers):
        h = jnp.einsum("sbi,sio->sbo", h, layer["w"])
        if "b" in layer:
            h = h + layer["b"][:, None, :]
        if i < len(layers) - 1 or not last_linear:
            h = jax.nn.relu(h)
    return h


def _batch_norm(h, eps=1e-5):
    mu = jnp.mean(h, 0)
    var = jnp.var(h, 0)
    return (h - mu) * jax.lax.rsqrt(var + eps)


def _pick(all_logits, idx):
    """all_logits f[B, S]; idx i32[B] -> f[B]."""
    return jnp.take_along_axis(all_logits, idx[:, None], 1)[:, 0]


def apply(params: dict, state: dict, x: jax.Array, cfg: CTRConfig, *, train: bool = False,
          cluster: jax.Array | None = None) -> tuple[jax.Array, dict, dict]:
    """``(logit f[B], aux, new_state)`` of ``cfg.model``; aux has ``assign``/``coeff`` for AdaptDHM.

    x: i32[B, F+1] (domain id last); cluster: i32[B] true latent clusters (``oracle`` only).
    """
    emb = embed(params, x, cfg)
    domain = x[:, -1]
    aux: dict = {}
    if cfg.model == "adaptdhm":
        assign, coeff, state = route(state, emb, cfg, train=train)
        logit = _pick(towers_logits(params, emb), assign)
        aux = {"assign": assign, "coeff": coeff}
    elif cfg.model == "oracle":
        if cluster is None:
            raise ValueError("cluster: required for model='oracle' (the true latent cluster of each sample)")
        check_array("cluster", cluster, shape=(x.shape[0],), kind="iu")
        if not is_traced(cluster) and (np.asarray(cluster).min() < 0 or np.asarray(cluster).max() >= cfg.K):
            raise ValueError(f"cluster: ids must lie in [0, {cfg.K}) (cfg.K)")
        logit = _pick(towers_logits(params, emb), jnp.asarray(cluster))
        aux = {"assign": jnp.asarray(cluster)}
    elif cfg.model == "dnn":
        logit = _mlp(emb, params["mlp"])[:, 0]
    elif cfg.model == "shared_bottom":
        h = _mlp(emb, params["bottom"], last_linear=False)
        logit = _pick(_stacked_mlp(h, params["towers"])[..., 0].T, domain)
    elif cfg.model == "mmoe":
        ex = _stacked_mlp(emb, params["experts"], last_linear=False)  # [E, B, h]
        g = jax.nn.softmax(jnp.einsum("bi,ime->bme", emb, params["gates"]), -1)  # [B, M, E]
        g = jnp.take_along_axis(g, domain[:, None, None], 1)[:, 0]  # the sample's own domain gate [B, E]
        mix = jnp.einsum("be,ebh->bh", g, ex)
        logit = _pick(_stacked_mlp(mix, params["towers"])[..., 0].T, domain)
        aux = {"gate_entropy": -jnp.mean(jnp.sum(g * jnp.log(g + 1e-12), -1))}
    else:  # star
        pn = params["pn"]
        h = _batch_norm(emb) * (pn["gamma0"] * pn["gamma"][domain]) + pn["beta0"] + pn["beta"][domain]
        M = cfg.num_domains
        hs = jnp.broadcast_to(h, (M, *h.shape))
        n = len(params["shared"])
        for i, (s, d) in enumerate(zip(params["shared"], params["domain"])):
            hs = jnp.einsum("mbi,mio->mbo", hs, s["w"][None] * d["w"]) + (s["b"] + d["b"])[:, None, :]
            if i < n - 1:
                hs = jax.nn.relu(jax.vmap(_batch_norm)(hs))
        logit = _pick(hs[..., 0].T, domain) + _mlp(emb, params["aux"])[:, 0]
    return logit, aux, state


def loss_fn(params: dict, state: dict, batch: dict, cfg: CTRConfig, *, train: bool = True):
    """BCE on logits: ``(loss, (metrics, new_state))`` (for ``value_and_grad(..., has_aux=True)``).

    batch: ``x i32[B, F+1]``, ``y i32[B]`` in {0, 1}, and ``cluster`` for ``oracle``.
    """
    for k in ("x", "y"):
        if k not in batch:
            raise ValueError(f"batch: missing key {k!r}; expected x i32[B, F+1] and y i32[B]")
    y = batch["y"]
    check_array("batch['y']", y, shape=(batch["x"].shape[0],), kind="iub")
    if not is_traced(y) and not np.isin(np.asarray(y), (0, 1)).all():
        raise ValueError("batch['y']: labels must be 0 or 1")
    logit, aux, state = apply(params, state, batch["x"], cfg, train=train, cluster=batch.get("cluster"))
    yf = jnp.asarray(y).astype(logit.dtype)
    loss = jnp.mean(jnp.maximum(logit, 0) - logit * yf + jnp.log1p(jnp.exp(-jnp.abs(logit))))
    metrics = {"bce": loss}
    if "assign" in aux:
        usage = jnp.bincount(aux["assign"], length=cfg.K) / logit.shape[0]
        metrics["min_cluster_usage"] = jnp.min(usage)
    return loss, (metrics, state)


# ----------------------------------------------------------------------------------- metrics


def auc(y, p) -> float:
    """ROC AUC by ranks (ties get average ranks), equal to ``sklearn.metrics.roc_auc_score``."""
    y, p = np.asarray(y), np.asarray(p, np.float64)
    check_array("y", y, ndim=1, kind="iub", min_size=1)
    check_array("p", p, shape=y.shape)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y: expected binary labels in {0, 1}")
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("y: AUC needs both classes, got only one")
    _, inv, counts = np.unique(p, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0  # 1-based average rank of each distinct value
    r = avg_rank[inv]
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def grouped_auc(y, p, group) -> dict[int, float]:
    """AUC per group id (groups with a single class are skipped)."""
    y, p, group = np.asarray(y), np.asarray(p), np.asarray(group)
    check_array("group", group, shape=y.shape, kind="iu")
    out = {}
    for g in np.unique(group):
        m = group == g
        if 0 < y[m].sum() < m.sum():
            out[int(g)] = auc(y[m], p[m])
    return out


def _contingency(a, b):
    a, b = np.asarray(a), np.asarray(b)
    check_array("a", a, ndim=1, kind="iu", min_size=1)
    check_array("b", b, shape=a.shape, kind="iu")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    t = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(t, (ai, bi), 1.0)
    return t


def nmi(a, b) -> float:
    """Normalised mutual information (arithmetic-mean normalisation, as sklearn's default)."""
    t = _contingency(a, b)
    n = t.sum()
    pa, pb, pab = t.sum(1) / n, t.sum(0) / n, t / n
    nz = pab > 0
    mi = float(np.sum(pab[nz] * np.log(pab[nz] / np.outer(pa, pb)[nz])))
    ha, hb = -float(np.sum(pa * np.log(pa))), -float(np.sum(pb * np.log(pb)))
    if ha == 0 and hb == 0:
        return 1.0
    return mi / max((ha + hb) / 2, 1e-300)


def adjusted_rand_index(a, b) -> float:
    """Hubert & Arabie's adjusted Rand index of two labelings (1 = identical partitions, ~0 = chance)."""
    t = _contingency(a, b)
    comb = lambda x: x * (x - 1) / 2.0  # noqa: E731
    s_ij, s_a, s_b = comb(t).sum(), comb(t.sum(1)).sum(), comb(t.sum(0)).sum()
    expected = s_a * s_b / comb(t.sum())
    max_index = (s_a + s_b) / 2
    if max_index == expected:
        return 1.0
    return float((s_ij - expected) / (max_index - expected))
