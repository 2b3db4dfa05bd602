"""FedAMD: anchor sampling for federated learning with partial client participation.

Paper: Feijie Wu, Song Guo, Zhihao Qu, Shiqi He, Ziming Liu, Jing Gao, "Anchor Sampling for
Federated Learning with Partial Client Participation", ICML 2023, arXiv 2206.05891.
Spec: ``papers/fedamd.md``. Built on `zoo.federated.core` (participation ``uniform_fixed(S=A)``).

Each round the server samples A of M clients; each sampled client is an **anchor** with
probability p (or, periodic mode, every client of a round with ``t mod τ = 0``), else a **miner**.

- Anchors refresh their bullseye ``g_i = ∇F_i(x_t)`` on their whole local data (§2.3) ->
  `anchor_update`; the server keeps ``v = (1/M) Σ_i g_i`` over all M clients, stale rows included,
  updated incrementally ``v += (1/M) Σ_anchors (g_new - g_old)`` -> `server_step`.
- Miners run the SARAH/PAGE recursion (§2.4): ``y_{k+1} = y_k - η_l u_k``,
  ``u_{k+1} = u_k + ∇F_i(y_{k+1}; B) - ∇F_i(y_k; B)`` from ``y_0 = x_t``, ``u_0 = v``, and send
  ``δ_i = x_t - y_K`` (old minus new) -> `miner_update`.
- Server (§2.5): ``x_{t+1} = x_t - η_g mean_{miners} δ_i``; no update without miners -> `server_step`.
- Roles (§2.2) -> `sample_roles`; the anchor-probability rules opta/optb/optc (§2.6) ->
  `optimal_anchor_prob`; the whole method as a `core.Algorithm` -> `make_algorithm`, with the
  initial bullseye pass over all M clients -> `init_bullseyes`.

Ours, not the paper's: minibatches are drawn with replacement (the official loaders do not shuffle);
each client draws its own role from ``fold_in(key, client_id)`` (the roles are i.i.d. Bernoulli(p)
per sampled client, as in the paper); under ``vmap`` every sampled client evaluates both the miner
and the anchor branch and keeps its role's (a select); the anchors' large batch is always the
whole local data (``b' = 0``, the code default).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, check_tree_like, is_traced

from . import core

IDLE, MINER, ANCHOR = 0, 1, 2
_ROLE_SALT = 0x5EED  # role draws use fold_in(key_n, _ROLE_SALT), independent of the minibatch keys


def sample_roles(key: jax.Array, sampled: jax.Array, *, p: Any = None, period: int | None = None, t: Any = 0):
    """Roles i32[M]: 0 idle (not sampled), 1 miner, 2 anchor.

    Constant mode (``p``): each sampled client is an anchor with probability p, drawn from
    ``fold_in(key, n)``. Periodic mode (``period`` = τ): every sampled client is an anchor when
    ``t mod τ == 0``, else a miner. Exactly one of ``p`` / ``period``.
    """
    _check_mode(p, period)
    if not is_traced(t):
        check_array("t", t, ndim=0, kind="iu")
    sampled = jnp.asarray(sampled)
    if sampled.dtype != jnp.bool_ or sampled.ndim != 1:
        raise ValueError(f"sampled: expected a 1-D bool array, got shape {sampled.shape} dtype {sampled.dtype}")
    ids = jnp.arange(sampled.shape[0])
    anchor = jax.vmap(lambda n: _is_anchor(jax.random.fold_in(key, n), p, period, t))(ids)
    return jnp.where(sampled, jnp.where(anchor, ANCHOR, MINER), IDLE).astype(jnp.int32)


def _is_anchor(key_n, p, period, t):
    if period is not None:
        return jnp.asarray(t) % period == 0
    return jax.random.uniform(jax.random.fold_in(key_n, _ROLE_SALT)) < p


def _check_mode(p, period):
    if (p is None) == (period is None):
        raise ValueError(f"p, period: expected exactly one of them, got p={p!r}, period={period!r}")
    if period is not None:
        if isinstance(period, bool) or not isinstance(period, (int, np.integer)):
            raise ValueError(f"period: expected a positive int, got {period!r}")
        check_range("period", int(period), low=1)
    elif not is_traced(p):
        check_array("p", p, ndim=0)
        check_range("p", float(p), low=0.0, high=1.0)


def miner_update(grad_fn: Callable, x: Any, v: Any, index_row, count, data_x, data_y, key, *, lr, local_steps: int,
                 batch_size: int):  # fmt: skip
    """K = ``local_steps`` variance-reduced steps; returns ``(δ = x - y_K, u_K)``.

    ``y_{k+1} = y_k - lr u_k``; ``u_{k+1} = u_k + ∇F(y_{k+1}; B_{k+1}) - ∇F(y_k; B_{k+1})`` with the same
    batch ``B_{k+1}`` (key ``fold_in(key, k)``) for both gradients, evaluated as one call vmapped over a
    stacked ``[2, ...]`` parameter axis. ``grad_fn(params, batch) -> grads``. ``x`` and ``v`` have the
    same structure and shapes; ``local_steps`` (static) and ``batch_size`` are ints >= 1; every leaf keeps
    its dtype.
    """
    _check_grad_fn(grad_fn)
    core._check_int("local_steps", local_steps)
    core._check_int("batch_size", batch_size)
    check_tree_like("v", v, x, "x")
    if not is_traced(lr):
        check_array("lr", lr, ndim=0)
    both = jax.vmap(grad_fn, in_axes=(0, None))

    def step(carry, k):
        y, u = carry
        y_new = jax.tree.map(lambda a, b: a - (lr * b).astype(a.dtype), y, u)
        batch = core.client_batch(data_x, data_y, index_row, count, jax.random.fold_in(key, k), batch_size)
        g = both(jax.tree.map(lambda a, b: jnp.stack([a, b]), y_new, y), batch)
        u_new = jax.tree.map(lambda uu, gg: uu + gg[0] - gg[1], u, g)
        return (y_new, u_new), None

    (y, u), _ = jax.lax.scan(step, (x, v), jnp.arange(local_steps))
    return jax.tree.map(jnp.subtract, x, y), u


def _check_grad_fn(grad_fn: Any) -> None:
    if not callable(grad_fn):
        raise ValueError(f"grad_fn: expected a callable (params, batch) -> grads, got {type(grad_fn).__name__}")


def anchor_update(grad_fn: Callable, x: Any, index_row, count, data_x, data_y):
    """The bullseye ``g = (1/count) Σ_{j < count} ∇ℓ(x; sample j)`` over the client's whole data.

    A masked pass over the ``n_max`` slots of ``index_row``: padded slots get weight 0 and the mean
    divides by ``count`` (not ``n_max``). Per-sample gradients are vmapped. A concrete ``count`` must
    be in [1, n_max] (an empty client has no gradient); under ``jit``/``vmap`` a traced ``count = 0``
    gives zeros (as `init_bullseyes` relies on for empty clients).
    """
    _check_grad_fn(grad_fn)
    check_array("index_row", index_row, ndim=1, min_size=1, kind="iu")
    check_array("count", count, ndim=0, kind="iu")
    n_max = index_row.shape[0]
    if not is_traced(count):
        check_range("count (the client's number of rows; an empty client has no gradient)", int(count), low=1,
                    high=n_max)  # fmt: skip
    check_array("data_y", data_y, shape=(np.shape(data_x)[0],))
    dt = core._tree_float_dtype(x)
    w = (jnp.arange(n_max) < count).astype(dt) / jnp.maximum(count, 1).astype(dt)
    xs, ys = data_x[index_row], data_y[index_row]
    per = jax.vmap(lambda a, b: grad_fn(x, {"x": a[None], "y": b[None]}))(xs, ys)
    return core.weighted_sum(w, per)


def server_step(server: dict, delta_sum: Any, num_miners, dv_sum: Any, num_clients: int, *, global_lr=None):
    """``x -= η_g Σ δ / #miners`` (unchanged when no miner); ``v += Σ_anchors (g_new - g_old) / M``; ``t += 1``.

    server: dict with ``params``, ``v`` (same structure and shapes), ``t`` and ``global_lr`` (unless given);
    delta_sum, dv_sum: params-shaped (no broadcasting); num_miners >= 0; num_clients M >= 1. Every leaf
    keeps its dtype.
    """
    missing = [k for k in ("params", "v", "t") + (("global_lr",) if global_lr is None else ())
               if not isinstance(server, dict) or k not in server]  # fmt: skip
    if missing:
        raise ValueError(f"server: expected the FedAMD server state dict, missing {missing}")
    check_tree_like("server['v']", server["v"], server["params"], "server['params']")
    check_tree_like("delta_sum", delta_sum, server["params"], "server['params']")
    check_tree_like("dv_sum", dv_sum, server["params"], "server['params']")
    if not is_traced(num_clients):
        check_array("num_clients", num_clients, ndim=0)
        check_range("num_clients", float(num_clients), low=1)
    if not is_traced(num_miners):
        check_array("num_miners", num_miners, ndim=0)
        check_range("num_miners", float(num_miners), low=0)
    lr = server["global_lr"] if global_lr is None else global_lr
    if not is_traced(lr):
        check_array("global_lr", lr, ndim=0)
    k = jnp.asarray(num_miners)
    params = jax.tree.map(lambda p, d: p - jnp.where(k > 0, lr * d / jnp.maximum(k, 1), 0.0).astype(p.dtype),
                          server["params"], delta_sum)  # fmt: skip
    v = jax.tree.map(lambda a, d: a + (d / num_clients).astype(a.dtype), server["v"], dv_sum)
    return {**server, "params": params, "v": v, "t": server["t"] + 1}


def optimal_anchor_prob(num_clients: int, num_sampled: int, rule: str = "optc") -> float:
    """The official code's rules for p (r = M / A).

    opta: argmin_{p in (0,1)} ``1/(1 - p^A) + 2M / (A p sqrt(1 - p^A))`` (bounded golden-section search);
    optb: ``sqrt(4 r² + 2 r) - 2 r``; optc: ``(2 / (A + 2))^(1/A)``.
    """
    core._check_int("num_clients", num_clients)
    core._check_int("num_sampled", num_sampled)
    check_range("num_sampled", num_sampled, low=1, high=num_clients)
    check_choice("rule", rule, ("opta", "optb", "optc"))
    m, a = float(num_clients), float(num_sampled)
    if rule == "optb":
        r = m / a
        return math.sqrt(4 * r * r + 2 * r) - 2 * r
    if rule == "optc":
        return (2.0 / (a + 2.0)) ** (1.0 / a)

    def j(p):
        return 1.0 / (1.0 - p**a) + 2.0 * m / (a * p * math.sqrt(1.0 - p**a))

    lo, hi, g = 1e-9, 1.0 - 1e-9, (math.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(200):
        if j(c) < j(d):
            hi, d = d, c
            c = hi - g * (hi - lo)
        else:
            lo, c = c, d
            d = lo + g * (hi - lo)
    return (lo + hi) / 2


def make_algorithm(loss_fn: Callable, *, p: float | None = None, period: int | None = None, local_lr: float,
                   local_steps: int, batch_size: int, global_lr: float = 1.0) -> core.Algorithm:  # fmt: skip
    """FedAMD as a `core.Algorithm` (use it with ``ParticipationConfig(kind='uniform_fixed', num_active=A)``).

    ``p`` (constant anchor probability; 0.2, the official default, when neither ``p`` nor ``period``
    is given) or ``period`` τ (anchor rounds when ``t mod τ = 0``): at most one of them.
    Server state: ``params``, ``v`` (global bullseye), ``t``, ``local_lr``, ``global_lr``, ``p``.
    Client state: ``{'table': params-shaped leaves [M, ...]}`` (bullseyes). Start from
    `init_bullseyes` so that the table holds every client's gradient at ``x_0``.
    Delta sign: miners send ``x - y_K`` and the server subtracts (the paper's convention).
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn: expected a callable (params, batch) -> scalar, got {type(loss_fn).__name__}")
    if p is None and period is None:
        p = 0.2
    _check_mode(p, period)
    check_range("local_lr", local_lr, low=0.0, low_inclusive=False)
    check_range("global_lr", global_lr, low=0.0, low_inclusive=False)
    core._check_int("local_steps", local_steps)
    core._check_int("batch_size", batch_size)
    grad_fn = jax.grad(loss_fn)
    mode_p = None if period is not None else p

    def server_init(params):
        dt = core._tree_float_dtype(params)
        return {"params": params, "v": jax.tree.map(jnp.zeros_like, params), "t": jnp.zeros((), jnp.int32),
                "local_lr": jnp.asarray(local_lr, dt), "global_lr": jnp.asarray(global_lr, dt),
                "p": jnp.asarray(0.0 if mode_p is None else mode_p, dt)}  # fmt: skip

    def client_init(params, num_clients):
        return {"table": jax.tree.map(lambda a: jnp.zeros((num_clients,) + jnp.shape(a), a.dtype), params)}

    def local_update(server, index_row, count, x, y, key):
        anchor = _is_anchor(key, None if mode_p is None else server["p"], period, server["t"])
        delta, _ = miner_update(grad_fn, server["params"], server["v"], index_row, count, x, y, key,
                                lr=server["local_lr"], local_steps=local_steps, batch_size=batch_size)  # fmt: skip
        g = anchor_update(grad_fn, server["params"], index_row, count, x, y)
        return {"delta": delta, "g": g, "anchor": anchor}

    def client_reduce(server, cs, msg, active):
        anchor = active & msg["anchor"]
        miner = (active & ~msg["anchor"]).astype(core._tree_float_dtype(server["params"]))
        table = cs["table"]
        new = jax.tree.map(lambda g, old: jnp.where(anchor, g, old), msg["g"], table)
        contrib = {
            "delta": jax.tree.map(lambda d: miner.astype(d.dtype) * d, msg["delta"]),
            "dv": jax.tree.map(lambda a, b: a - b, new, table),
            "miners": miner,
            "anchors": anchor.astype(miner.dtype),
        }
        return contrib, {"table": new}

    def server_update(server, total, num_clients):
        new = server_step(server, total["delta"], total["miners"], total["dv"], num_clients)
        return new, {"miners": total["miners"], "anchors": total["anchors"]}

    return core.Algorithm(server_init, client_init, local_update, client_reduce, server_update)


def init_bullseyes(state: core.SimState, loss_fn: Callable, data: core.FederatedData) -> core.SimState:
    """Fill the table with every client's full-data gradient at ``x_0`` and set ``v`` to its mean (§2.3).

    Empty clients (count 0) get a zero bullseye."""
    if not isinstance(state, core.SimState) or not isinstance(state.server, dict) or "params" not in state.server:
        raise ValueError(f"state: expected a core.SimState of a FedAMD algorithm, got {type(state).__name__}")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn: expected a callable (params, batch) -> scalar, got {type(loss_fn).__name__}")
    if not isinstance(data, core.FederatedData):
        raise ValueError(f"data: expected a core.FederatedData, got {type(data).__name__}")
    grad_fn = jax.grad(loss_fn)
    # The barrier keeps XLA from seeing x0 as a compile-time constant: on JAX 0.10.2 CPU, per-sample
    # gradients of a softmax loss at constant zero params came out NaN in about 1 of 15 fresh
    # compilations (a nondeterministic miscompile; 0 of 100 with the barrier).
    x0 = jax.lax.optimization_barrier(state.server["params"])
    table = jax.vmap(lambda row, c: anchor_update(grad_fn, x0, row, c, data.x, data.y))(data.index, data.count)
    v = jax.tree.map(lambda t: t.mean(0), table)
    return state._replace(server={**state.server, "v": v}, clients={"table": table})


def check_params(params: Any) -> None:
    """Raise ValueError when a params leaf holds NaN/inf (host-side guard)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        check_array(f"params{jax.tree_util.keystr(path)}", leaf)
