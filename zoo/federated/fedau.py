"""FedAU: adaptive aggregation weights for federated averaging under unknown participation statistics.

Paper: Shiqiang Wang, Mingyue Ji, "A Lightweight Method for Tackling Unknown Participation
Statistics in Federated Averaging", ICLR 2024, arXiv 2306.03401. Spec: ``papers/fedau.md``.

Every client n participates in round t (``I_n^t = 1``) by a process the server does not know.
Each participant runs Q local SGD steps from ``x_t`` and sends ``Δ_n^t = y_Q - x_t`` (new minus
old). The server applies

    x_{t+1} = x_t + (η / N) Σ_n ω_n^t I_n^t Δ_n^t                                  (Alg. 1)

with FedAU's online weight ``ω_n^t = Ω_n``: the mean of client n's completed participation
intervals, each capped at the cutoff K (so ``E[Ω_n] -> (1 - (1-p_n)^K) / p_n ≈ 1/p_n``).

Equations -> functions:
- the interval estimator (§2.3: S_n, M_n, Ω_n; weight = the pre-update Ω) -> `init_weights`,
  `update_weights`; its expectation under Bernoulli(p) -> `expected_interval`.
- the server's weights and normaliser for fedau / average_participating / average_all /
  known_prob (§2.5) -> `aggregation_weights`.
- the memory-based baselines (§2.5): FedVarp -> `fedvarp_aggregate`, MIFA -> `mifa_aggregate`.
- a whole method as a `zoo.federated.core.Algorithm` -> `make_algorithm` (weighting is a static
  switch; both learning rates live in the server state, so they can be vmapped or differentiated).
- the server memory each method needs -> `memory_floats`.

Ours, not the paper's: ``cutoff=None`` means K = ∞; the learning rates are traced server-state
leaves; FedVarp recomputes ``Σ_n y_n`` from the table every round (a sum over the client axis)
rather than keeping it incrementally; the local sampler is the simulator's with-replacement one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, check_tree_like, is_traced

from . import core

WEIGHTINGS = ("fedau", "average_participating", "average_all", "known_prob", "fedvarp", "mifa")


class FedAUWeights(NamedTuple):
    """Per-client estimator state (leading axis N on every leaf).

    since: i32[N]  S_n, rounds since the last recorded interval ended
    num_intervals: i32[N]  M_n, recorded intervals
    omega: f[N]  Ω_n, their running mean (1 before the first one); JAX's default float (f32 unless x64)
    """

    since: jax.Array
    num_intervals: jax.Array
    omega: jax.Array


def _check_cutoff(cutoff: Any) -> None:
    if cutoff is None:
        return
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, np.integer)):
        raise ValueError(f"cutoff: expected a positive int K >= 1 or None (K = infinity), got {cutoff!r}")
    check_range("cutoff", int(cutoff), low=1)


def init_weights(num_clients: int, dtype: Any = None) -> FedAUWeights:
    """``S = 0, M = 0, Ω = 1`` for every client (Ω in ``dtype``, default JAX's default float)."""
    num_clients = core._check_int("num_clients", num_clients)
    dtype = jax.dtypes.canonicalize_dtype(float if dtype is None else dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype: expected a float dtype, got {dtype}")
    return FedAUWeights(
        since=jnp.zeros(num_clients, jnp.int32),
        num_intervals=jnp.zeros(num_clients, jnp.int32),
        omega=jnp.ones(num_clients, dtype),
    )


def update_weights(state: FedAUWeights, active: jax.Array, *, cutoff: int | None = None):
    """One round of the estimator, for every client (participant or not).

    1. ``ω^t = Ω`` (the value *before* this round's update: depends on ``I^0..I^{t-1}`` only);
    2. ``S <- S + 1``;
    3. if ``I^t = 1`` or ``S = K``: ``Ω <- (M Ω + S) / (M + 1)`` (``Ω <- S`` when M = 0), ``M <- M + 1``, ``S <- 0``.

    state: `FedAUWeights` with leaves [N] (or scalars, under vmap); active: bool[N].
    Returns ``(weights_used f[N], new_state)`` (Ω's dtype). ``cutoff`` is static; None means K = ∞.
    """
    _check_cutoff(cutoff)
    if not isinstance(state, FedAUWeights):
        raise ValueError(f"state: expected FedAUWeights (from init_weights), got {type(state).__name__}")
    active = jnp.asarray(active)
    if active.dtype != jnp.bool_:
        raise ValueError(f"active: expected a bool array, got dtype {active.dtype}")
    if active.shape != state.omega.shape:
        raise ValueError(f"active: expected shape {state.omega.shape} (one flag per client), got {active.shape}")
    used = state.omega
    since = state.since + 1
    end = active if cutoff is None else active | (since >= cutoff)
    m = state.num_intervals
    s = since.astype(used.dtype)
    mean = jnp.where(m == 0, s, (m.astype(used.dtype) * used + s) / (m + 1).astype(used.dtype))
    new = FedAUWeights(
        since=jnp.where(end, 0, since),
        num_intervals=m + end.astype(m.dtype),
        omega=jnp.where(end, mean, used),
    )
    return used, new


def expected_interval(p: Any, cutoff: int | None = None) -> jax.Array:
    """``E[min(G, K)] = (1 - (1-p)^K) / p`` for ``G ~ Geometric(p)`` on {1, 2, ...}; ``1/p`` when K = ∞.

    p: participation probabilities in (0, 1] (any shape; values checked outside ``jit``); the result is
    in p's float dtype (JAX's default float for integer p)."""
    _check_cutoff(cutoff)
    check_array("p", p)
    if not is_traced(p):
        pn = np.asarray(p, np.float64)
        if ((pn <= 0) | (pn > 1)).any():
            bad = pn[(pn <= 0) | (pn > 1)].ravel()[0]
            raise ValueError(f"p: expected participation probabilities in (0, 1], got {bad}")
    p = jnp.asarray(p)
    p = p.astype(core._float_dtype(p))
    if cutoff is None:
        return 1.0 / p
    return (1.0 - (1.0 - p) ** cutoff) / p


def aggregation_weights(method: str, active: jax.Array, *, fedau_weights: Any = None, probs: Any = None):
    """``(w f[N], denom f[])`` with ``x += η Σ_n w_n Δ_n / denom``.

    fedau: ``w = I ω``, ``denom = N``; average_participating: ``w = I``, ``denom = max(Σ I, 1)``;
    average_all: ``w = I``, ``denom = N``; known_prob: ``w = I / p``, ``denom = N``.
    ``fedau_weights``: f[N] (from `update_weights`, > 0), ``probs``: f[N] in [0, 1], > 0 where active.
    Outputs are in the float dtype of ``fedau_weights`` / ``probs`` (JAX's default float otherwise).
    """
    check_choice("method", method, WEIGHTINGS[:4])
    active = jnp.asarray(active)
    if active.dtype != jnp.bool_ or active.ndim != 1:
        raise ValueError(f"active: expected a 1-D bool array, got shape {active.shape} dtype {active.dtype}")
    if method == "fedau":
        if fedau_weights is None:
            raise ValueError("fedau_weights: required for method='fedau'")
        check_array("fedau_weights", fedau_weights, shape=active.shape)
        if not is_traced(fedau_weights) and (np.asarray(fedau_weights) <= 0).any():
            raise ValueError(f"fedau_weights: expected interval estimates > 0, got minimum {np.min(fedau_weights)}")
        w = jnp.asarray(fedau_weights)
        dt = core._float_dtype(w)
        return active.astype(dt) * w.astype(dt), jnp.asarray(active.shape[0], dt)
    if method == "known_prob":
        if probs is None:
            raise ValueError("probs: required for method='known_prob'")
        check_array("probs", probs, shape=active.shape)
        if not is_traced(probs):
            p = np.asarray(probs, np.float64)
            bad = (p < 0) | (p > 1)
            if not is_traced(active):
                bad |= np.asarray(active) & (p <= 0)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"probs: expected participation probabilities in [0, 1], > 0 on active clients, "
                                 f"got {p[i]} at client {i}" + (" (active)" if bool(np.asarray(active)[i]) else ""))
        p = jnp.asarray(probs)
        dt = core._float_dtype(p)
        p = p.astype(dt)
        return jnp.where(active, 1.0 / jnp.where(active, p, 1.0), 0.0).astype(dt), jnp.asarray(active.shape[0], dt)
    dt = jax.dtypes.canonicalize_dtype(float)
    a, n = active.astype(dt), jnp.asarray(active.shape[0], dt)
    if method == "average_all":
        return a, n
    return a, jnp.maximum(a.sum(), 1.0)


def _check_leading(name: str, tree: Any, n: int) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if np.ndim(leaf) == 0 or np.shape(leaf)[0] != n:
            raise ValueError(f"{name}{jax.tree_util.keystr(path)}: expected leading dim {n}, got {np.shape(leaf)}")


def _check_memory_args(table: Any, deltas: Any, active: Any) -> jax.Array:
    active = jnp.asarray(active)
    if active.dtype != jnp.bool_ or active.ndim != 1:
        raise ValueError(f"active: expected a 1-D bool array, got shape {active.shape} dtype {active.dtype}")
    n = active.shape[0]
    _check_leading("table", table, n)
    _check_leading("deltas", deltas, n)
    check_tree_like("deltas", deltas, table, "table")
    return active


def fedvarp_aggregate(table: Any, deltas: Any, active: jax.Array):
    """FedVarp: ``v = mean_{n∈S}(Δ_n - y_n) + (1/N) Σ_n y_n``, then ``y_n <- Δ_n`` on S; ``v = 0`` if S = ∅.

    table, deltas: pytrees with leaves [N, ...] (same structure and shapes); active: bool[N].
    Returns ``(v, table)``; v in the leaves' dtypes.
    """
    active = _check_memory_args(table, deltas, active)
    a = active.astype(core._tree_float_dtype(deltas))
    k = a.sum()
    corr = core.weighted_sum(a / jnp.maximum(k, 1.0), jax.tree.map(jnp.subtract, deltas, table))
    mean_y = jax.tree.map(lambda y: y.mean(0), table)
    v = jax.tree.map(lambda c, m: jnp.where(k > 0, c + m, 0.0).astype(m.dtype), corr, mean_y)
    mask = lambda d, y: jnp.where(active.reshape((-1,) + (1,) * (d.ndim - 1)), d, y)  # noqa: E731
    return v, jax.tree.map(mask, deltas, table)


def mifa_aggregate(table: Any, deltas: Any, active: jax.Array):
    """MIFA: ``y_n <- Δ_n`` on S, then ``v = (1/N) Σ_n y_n``. Returns ``(v, table)``."""
    active = _check_memory_args(table, deltas, active)
    mask = lambda d, y: jnp.where(active.reshape((-1,) + (1,) * (d.ndim - 1)), d, y)  # noqa: E731
    table = jax.tree.map(mask, deltas, table)
    return jax.tree.map(lambda y: y.mean(0), table), table


def memory_floats(weighting: str, params: Any, num_clients: int) -> int:
    """Extra server memory (number of stored values) a method needs beyond the model."""
    check_choice("weighting", weighting, WEIGHTINGS)
    core._check_int("num_clients", num_clients)
    d = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
    return {"fedau": 3 * num_clients, "known_prob": num_clients, "fedvarp": num_clients * d,
            "mifa": num_clients * d}.get(weighting, 0)  # fmt: skip


def make_algorithm(
    loss_fn: Callable,
    *,
    weighting: str,
    local_lr: float,
    local_steps: int,
    batch_size: int,
    global_lr: float = 1.0,
    cutoff: int | None = None,
    probs: Any = None,
    count: Any = None,
) -> core.Algorithm:
    """A FedAU-family method as a `zoo.federated.core.Algorithm`.

    loss_fn(params, {'x': f32[B, ...], 'y': i32[B]}) -> scalar. ``weighting`` in `WEIGHTINGS`
    (static). ``local_lr`` (γ) and ``global_lr`` (η) initialise the server state's ``'local_lr'``,
    ``'global_lr'`` leaves. ``cutoff`` K (fedau only; None = ∞). ``probs`` f[N]: the true
    participation probabilities in [0, 1], required by ``known_prob`` only (the oracle baseline).
    ``p_n = 0`` is allowed for a client that never participates (an empty client, as
    `core.probs_from_multiplier` gives); its weight ``1/p_n`` is taken as 0. With ``count`` (i32[N], the
    client sizes) ``p_n > 0`` is required on every client with data (`core.init_sim` checks the same
    for the participation probabilities).

    Dtypes: the server's learning rates, FedAU's Ω and ``inv_p`` take the params' float dtype, and every
    contribution is cast to its parameter leaf's dtype, so float32 and float64 (x64) runs keep their dtype.

    Client state: fedau -> `FedAUWeights`; known_prob -> ``{'inv_p': f[N]}`` (0 where p = 0);
    fedvarp/mifa -> ``{'table': params-shaped leaves [N, ...]}`` (zeros); otherwise ``{}``.
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn: expected a callable (params, batch) -> scalar, got {type(loss_fn).__name__}")
    check_choice("weighting", weighting, WEIGHTINGS)
    check_range("local_lr", local_lr, low=0.0, low_inclusive=False)
    check_range("global_lr", global_lr, low=0.0, low_inclusive=False)
    local_steps = core._check_int("local_steps", local_steps)
    batch_size = core._check_int("batch_size", batch_size)
    _check_cutoff(cutoff)
    if weighting == "known_prob":
        if probs is None:
            raise ValueError("probs: weighting='known_prob' needs the true participation probabilities f[N]")
        check_array("probs", probs, ndim=1, min_size=1)
        if not is_traced(probs):
            p = np.asarray(probs)
            if ((p < 0) | (p > 1)).any():
                i = int(np.flatnonzero((p < 0) | (p > 1))[0])
                raise ValueError(f"probs: expected values in [0, 1] for weighting='known_prob', got {p[i]} "
                                 f"at client {i}")
            if not (p > 0).any():
                raise ValueError("probs: expected at least one client with p > 0 for weighting='known_prob'")
        if count is not None:
            core.check_probs(probs, count)
    elif count is not None:
        raise ValueError(f"count: only used by weighting='known_prob', got weighting={weighting!r}")

    def server_init(params):
        dt = core._tree_float_dtype(params)
        return {"params": params, "local_lr": jnp.asarray(local_lr, dt), "global_lr": jnp.asarray(global_lr, dt)}

    def client_init(params, num_clients):
        dt = core._tree_float_dtype(params)
        if weighting == "fedau":
            return init_weights(num_clients, dt)
        if weighting == "known_prob":
            check_array("probs", probs, shape=(num_clients,))
            p = jnp.asarray(probs, dt)
            return {"inv_p": jnp.where(p > 0, 1.0 / jnp.where(p > 0, p, 1.0), 0.0)}  # p = 0: never active
        if weighting in ("fedvarp", "mifa"):
            return {"table": jax.tree.map(lambda p: jnp.zeros((num_clients,) + jnp.shape(p), p.dtype), params)}
        return {}

    def local_update(server, index_row, count, x, y, key):
        delta, loss = core.local_sgd(loss_fn, server["params"], index_row, count, x, y, key,
                                     lr=server["local_lr"], num_steps=local_steps, batch_size=batch_size)  # fmt: skip
        return {"delta": delta, "loss": loss}

    def client_reduce(server, cs, msg, active):
        a = active.astype(core._tree_float_dtype(server["params"]))
        delta = msg["delta"]
        contrib = {"active": a, "loss": a * msg["loss"]}
        if weighting == "fedau":
            w, cs = update_weights(cs, active, cutoff=cutoff)
            contrib["delta"] = jax.tree.map(lambda d: (a * w).astype(d.dtype) * d, delta)
        elif weighting == "known_prob":
            contrib["delta"] = jax.tree.map(lambda d: (a * cs["inv_p"]).astype(d.dtype) * d, delta)
        elif weighting == "fedvarp":
            table = cs["table"]
            contrib["delta"] = jax.tree.map(lambda d, yv: a.astype(d.dtype) * (d - yv), delta, table)  # Σ_S (Δ - y)
            contrib["table"] = table  # Σ_all y^old
            cs = {"table": jax.tree.map(lambda d, yv: jnp.where(active, d, yv), delta, table)}
        elif weighting == "mifa":
            cs = {"table": jax.tree.map(lambda d, yv: jnp.where(active, d, yv), delta, cs["table"])}
            contrib["delta"] = cs["table"]  # Σ_all y^new
        else:
            contrib["delta"] = jax.tree.map(lambda d: a.astype(d.dtype) * d, delta)
        return contrib, cs

    def server_update(server, total, num_clients):
        k = total["active"]
        n = num_clients
        if weighting == "average_participating":
            v = jax.tree.map(lambda d: d / jnp.maximum(k, 1.0).astype(d.dtype), total["delta"])
        elif weighting == "fedvarp":
            v = jax.tree.map(lambda d, yv: jnp.where(k > 0, d / jnp.maximum(k, 1.0).astype(d.dtype) + yv / n, 0.0),
                             total["delta"], total["table"])  # fmt: skip
        else:
            v = jax.tree.map(lambda d: d / n, total["delta"])
        params = jax.tree.map(lambda p, d: p + (server["global_lr"] * d).astype(p.dtype), server["params"], v)
        metrics = {"train_loss": total["loss"] / jnp.maximum(k, 1.0)}
        return {**server, "params": params}, metrics

    return core.Algorithm(server_init, client_init, local_update, client_reduce, server_update)
