"""EGNN (velocity variant), the n-body baseline: Satorras, Hoogeboom, Welling, *E(n) Equivariant Graph Neural
Networks*, ICML 2021, arXiv 2102.09844 (``vgsatorras/egnn``, ``EGNN_vel`` with ``recurrent=True``).

Layer l (edges j -> i of the complete graph without self-loops; phi_* are 2-layer SiLU MLPs):
    m_ij = phi_e(h_i, h_j, ||x_i - x_j||^2, a_ij)                      (a_ij = (q_i q_j, ||x_i^0 - x_j^0||^2))
    x_i <- x_i + mean_j clip((x_i - x_j) phi_x(m_ij), ±100) + phi_v(h_i) v_i
    h_i <- h_i + phi_h(h_i, sum_j m_ij)
with h^0 = W ||v_i|| + b; the output is x after the last layer.  -> `init`, `apply`, `nbody_predict`, `nbody_loss`
phi_x's last layer has no bias and a Xavier-uniform init with gain 1e-3, as in the original.
Choices that are ours: plain dict params (layers stacked, ``lax.scan``); PyTorch's default Linear init elsewhere;
params in ``dtype`` (JAX's default float unless given) and computation in the promoted dtype of params and inputs.
Index values (senders, receivers) are checked on concrete arrays; under ``jit`` out-of-range ones clamp silently.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from zoo.checks import check_array, check_range

from .graph import _check_edges, batch_complete, segment_sum
from .ponita import _check_batch, _default_float, _Uniform

__all__ = ["EGNNConfig", "apply", "init", "nbody_loss", "nbody_predict"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EGNNConfig:
    hidden_dim: int = 64
    num_layers: int = 4
    in_node: int = 1  # ||v||
    in_edge: int = 2  # (q_i q_j, ||r_ij||^2 of the input positions)
    coords_weight: float = 1.0

    def __post_init__(self):
        check_range("hidden_dim", self.hidden_dim, low=1, high=65536)
        check_range("num_layers", self.num_layers, low=1, high=1000)
        check_range("in_node", self.in_node, low=1)
        check_range("in_edge", self.in_edge, low=0)


def _lin(rng, fan_in, fan_out, bias=True, lead=()):
    b = 1.0 / math.sqrt(fan_in)
    p = {"w": rng.take(lead + (fan_in, fan_out), b)}
    if bias:
        p["b"] = rng.take(lead + (fan_out,), b)
    return p


def _check_cfg(cfg):
    if not isinstance(cfg, EGNNConfig):
        raise ValueError(f"cfg: expected an EGNNConfig, got {type(cfg).__name__}")


def init(key: jax.Array, cfg: EGNNConfig, *, dtype=None) -> dict:
    """Parameters: ``embed``; ``layers`` stacked over L with edge / coord / vel / node MLPs (one uniform draw).

    ``dtype``: of every parameter (default: JAX's default float, float64 under ``jax.enable_x64``)."""
    _check_cfg(cfg)
    h, L = cfg.hidden_dim, (cfg.num_layers,)
    shapes = [(cfg.in_node, h, True)] + [(2 * h + 1 + cfg.in_edge, h, True), (h, h, True), (h, h, True),
                                         (h, 1, False), (h, h, True), (h, 1, True), (2 * h, h, True), (h, h, True)]
    total = (cfg.in_node + 1) * h + cfg.num_layers * sum(i * o + (o if b else 0) for i, o, b in shapes[1:])
    rng = _Uniform(key, total, _default_float(dtype))
    embed = _lin(rng, cfg.in_node, h)
    lim = 1e-3 * math.sqrt(6.0 / (h + 1))  # xavier_uniform, gain 0.001
    layers = {"e1": _lin(rng, 2 * h + 1 + cfg.in_edge, h, lead=L), "e2": _lin(rng, h, h, lead=L),
              "x1": _lin(rng, h, h, lead=L), "x2": {"w": rng.take(L + (h, 1), lim)},
              "v1": _lin(rng, h, h, lead=L), "v2": _lin(rng, h, 1, lead=L),
              "n1": _lin(rng, 2 * h, h, lead=L), "n2": _lin(rng, h, h, lead=L)}  # fmt: skip
    assert rng.pos == total
    return {"embed": embed, "layers": layers}


def _dense(p, x):
    return x @ p["w"] + p["b"] if "b" in p else x @ p["w"]


def apply(params: dict, cfg: EGNNConfig, h, x, vel, edge_attr, senders, receivers, edge_mask=None):
    """Positions after the last layer, ``f[N, 3]``.

    h: f[N, in_node]; x, vel: f[N, 3]; edge_attr: f[E, in_edge]; senders (j), receivers (i): i32[E];
    edge_mask: bool[E] (optional). Senders/receivers outside [0, N) raise on concrete arrays.
    """
    _check_cfg(cfg)
    check_array("x", x, ndim=2)
    n = x.shape[0]
    check_array("h", h, shape=(n, cfg.in_node))
    check_array("vel", vel, shape=(n, x.shape[1]))
    _check_edges(senders, receivers, n, edge_mask)
    check_array("edge_attr", edge_attr, shape=(senders.shape[0], cfg.in_edge))
    emask = jnp.ones(senders.shape, bool) if edge_mask is None else edge_mask
    deg = jnp.maximum(segment_sum(emask.astype(x.dtype), receivers, n), 1.0)[:, None]
    h = _dense(params["embed"], h)
    act = jax.nn.silu

    def body(carry, lp):
        h, x = carry
        diff = x[receivers] - x[senders]  # x_i - x_j
        radial = jnp.sum(diff**2, -1, keepdims=True)
        e_in = jnp.concatenate([h[receivers], h[senders], radial, edge_attr], -1)
        m = act(_dense(lp["e2"], act(_dense(lp["e1"], e_in))))
        trans = jnp.clip(diff * _dense(lp["x2"], act(_dense(lp["x1"], m))), -100, 100)
        x = x + cfg.coords_weight * segment_sum(trans, receivers, n, emask) / deg
        x = x + _dense(lp["v2"], act(_dense(lp["v1"], h))) * vel
        agg = segment_sum(m, receivers, n, emask)
        h = h + _dense(lp["n2"], act(_dense(lp["n1"], jnp.concatenate([h, agg], -1))))
        return (h, x), None

    (h, x), _ = jax.lax.scan(body, (h, x), params["layers"])
    return x


def nbody_predict(params: dict, cfg: EGNNConfig, batch: dict) -> jax.Array:
    """x_hat(T) for a batch ``{pos, vel f[B, n, 3], charges f[B, n, 1]}`` -> f[B, n, 3]."""
    _check_cfg(cfg)
    _check_batch(batch, ("pos", "vel", "charges"))
    g = batch_complete(batch["pos"], batch["charges"], self_loops=False)
    q = g.scalars[:, 0]
    r2 = jnp.sum((g.pos[g.senders] - g.pos[g.receivers]) ** 2, -1)
    ea = jnp.stack([q[g.senders] * q[g.receivers], r2], -1)
    vel = batch["vel"].reshape(g.pos.shape)
    vnorm = jnp.sqrt(jnp.sum(vel**2, -1, keepdims=True))
    out = apply(params, cfg, vnorm, g.pos, vel, ea, g.senders, g.receivers)
    return out.reshape(batch["pos"].shape)


def nbody_loss(params: dict, cfg: EGNNConfig, batch: dict, key=None):
    """MSE of the predicted positions (``key`` unused: EGNN is exactly equivariant, no augmentation)."""
    _check_batch(batch, ("pos", "vel", "charges", "target"))
    mse = jnp.mean((nbody_predict(params, cfg, batch) - batch["target"]) ** 2)
    return mse, {"mse": mse}
