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

from zoo.checks import check_array, check_choice, check_range, is_traced

from . import core

WEIGHTINGS = ("fedau", "average_participating", "average_all", "known_prob", "fedvarp", "mifa")


class FedAUWeights(NamedTuple):
    """Per-client estimator state (leading axis N on every leaf).

    since: i32[N]  S_n, rounds since the last recorded interval ended
    num_intervals: i32[N]  M_n, recorded intervals
    omega: f32[N]  Ω_n, their running mean (1 before the first one)
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


def init_weights(num_clients: int) -> FedAUWeights:
    """``S = 0, M = 0, Ω = 1`` for every client."""
    check_range("num_clients", num_clients, low=1)
    return FedAUWeights(
        since=jnp.zeros(num_clients, jnp.int32),
        num_intervals=jnp.zeros(num_clients, jnp.int32),
        omega=jnp.ones(num_clients, jnp.float32),
    )


def update_weights(state: FedAUWeights, active: jax.Array, *, cutoff: int | None = None):
    """One round of the estimator, for every client (participant or not).

    1. ``ω^t = Ω`` (the value *before* this round's update: depends on ``I^0..I^{t-1}`` only);
    2. ``S <- S + 1``;
    3. if ``I^t = 1`` or ``S = K``: ``Ω <- (M Ω + S) / (M + 1)`` (``Ω <- S`` when M = 0), ``M <- M + 1``, ``S <- 0``.

    state: `FedAUWeights` with leaves [N] (or scalars, under vmap); active: bool[N].
    Returns ``(weights_used f32[N], new_state)``. ``cutoff`` is static; None means K = ∞.
    """
    _check_cutoff(cutoff)
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
    """``E[min(G, K)] = (1 - (1-p)^K) / p`` for ``G ~ Geometric(p)`` on {1, 2, ...}; ``1/p`` when K = ∞."""
    _check_cutoff(cutoff)
    p = jnp.asarray(p)
    if cutoff is None:
        return 1.0 / p
    return (1.0 - (1.0 - p) ** cutoff) / p


def aggregation_weights(method: str, active: jax.Array, *, fedau_weights: Any = None, probs: Any = None):
    """``(w f32[N], denom f32[])`` with ``x += η Σ_n w_n Δ_n / denom``.

    fedau: ``w = I ω``, ``denom = N``; average_participating: ``w = I``, ``denom = max(Σ I, 1)``;
    average_all: ``w = I``, ``denom = N``; known_prob: ``w = I / p``, ``denom = N``.
    ``fedau_weights``: f32[N] (from `update_weights`), ``probs``: f32[N].
    """
    check_choice("method", method, WEIGHTINGS[:4])
    active = jnp.asarray(active)
    if active.dtype != jnp.bool_ or active.ndim != 1:
        raise ValueError(f"active: expected a 1-D bool array, got shape {active.shape} dtype {active.dtype}")
    a = active.astype(jnp.float32)
    n = jnp.float32(active.shape[0])
    if method == "fedau":
        if fedau_weights is None:
            raise ValueError("fedau_weights: required for method='fedau'")
        check_array("fedau_weights", fedau_weights, shape=active.shape)
        return a * fedau_weights, n
    if method == "known_prob":
        if probs is None:
            raise ValueError("probs: required for method='known_prob'")
        check_array("probs", probs, shape=active.shape)
        return jnp.where(active, 1.0 / jnp.where(active, probs, 1.0), 0.0), n
    if method == "average_all":
        return a, n
    return a, jnp.maximum(a.sum(), 1.0)


def _check_leading(name: str, tree: Any, n: int) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if np.ndim(leaf) == 0 or np.shape(leaf)[0] != n:
            raise ValueError(f"{name}{jax.tree_util.keystr(path)}: expected leading dim {n}, got {np.shape(leaf)}")


def fedvarp_aggregate(table: Any, deltas: Any, active: jax.Array):
    """FedVarp: ``v = mean_{n∈S}(Δ_n - y_n) + (1/N) Σ_n y_n``, then ``y_n <- Δ_n`` on S; ``v = 0`` if S = ∅.

    table, deltas: pytrees with leaves [N, ...]; active: bool[N]. Returns ``(v, table)``.
    """
    n = active.shape[0]
    _check_leading("table", table, n)
    _check_leading("deltas", deltas, n)
    a = active.astype(jnp.float32)
    k = a.sum()
    corr = core.weighted_sum(a / jnp.maximum(k, 1.0), jax.tree.map(jnp.subtract, deltas, table))
    mean_y = jax.tree.map(lambda y: y.mean(0), table)
    v = jax.tree.map(lambda c, m: jnp.where(k > 0, c + m, 0.0), corr, mean_y)
    mask = lambda d, y: jnp.where(active.reshape((-1,) + (1,) * (d.ndim - 1)), d, y)  # noqa: E731
    return v, jax.tree.map(mask, deltas, table)


def mifa_aggregate(table: Any, deltas: Any, active: jax.Array):
    """MIFA: ``y_n <- Δ_n`` on S, then ``v = (1/N) Σ_n y_n``. Returns ``(v, table)``."""
    n = active.shape[0]
    _check_leading("table", table, n)
    _check_leading("deltas", deltas, n)
    mask = lambda d, y: jnp.where(active.reshape((-1,) + (1,) * (d.ndim - 1)), d, y)  # noqa: E731
    table = jax.tree.map(mask, deltas, table)
    return jax.tree.map(lambda y: y.mean(0), table), table


def memory_floats(weighting: str, params: Any, num_clients: int) -> int:
    """Extra server memory (number of stored values) a method needs beyond the model."""
    check_choice("weighting", weighting, WEIGHTINGS)
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
) -> core.Algorithm:
    """A FedAU-family method as a `zoo.federated.core.Algorithm`.

    loss_fn(params, {'x': f32[B, ...], 'y': i32[B]}) -> scalar. ``weighting`` in `WEIGHTINGS`
    (static). ``local_lr`` (γ) and ``global_lr`` (η) initialise the server state's ``'local_lr'``,
    ``'global_lr'`` leaves. ``cutoff`` K (fedau only; None = ∞). ``probs`` f32[N]: the true
    participation probabilities, required by ``known_prob`` only (the oracle baseline).

    Client state: fedau -> `FedAUWeights`; known_prob -> ``{'inv_p': f32[N]}``;
    fedvarp/mifa -> ``{'table': params-shaped leaves [N, ...]}`` (zeros); otherwise ``{}``.
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn: expected a callable (params, batch) -> scalar, got {type(loss_fn).__name__}")
    check_choice("weighting", weighting, WEIGHTINGS)
    check_range("local_lr", local_lr, low=0.0, low_inclusive=False)
    check_range("global_lr", global_lr, low=0.0, low_inclusive=False)
    check_range("local_steps", local_steps, low=1)
    check_range("batch_size", batch_size, low=1)
    _check_cutoff(cutoff)
    if weighting == "known_prob":
        if probs is None:
            raise ValueError("probs: weighting='known_prob' needs the true participation probabilities f32[N]")
        check_array("probs", probs, ndim=1, min_size=1)
        if not is_traced(probs) and (np.asarray(probs) <= 0).any() | (np.asarray(probs) > 1).any():
            p = np.asarray(probs)
            i = int(np.flatnonzero((p <= 0) | (p > 1))[0])
            raise ValueError(f"probs: expected values in (0, 1] for weighting='known_prob', got {p[i]} at client {i}")

    def server_init(params):
        return {"params": params, "local_lr": jnp.float32(local_lr), "global_lr": jnp.float32(global_lr)}

    def client_init(params, num_clients):
        if weighting == "fedau":
            return init_weights(num_clients)
        if weighting == "known_prob":
            check_array("probs", probs, shape=(num_clients,))
            return {"inv_p": 1.0 / jnp.asarray(probs, jnp.float32)}
        if weighting in ("fedvarp", "mifa"):
            return {"table": jax.tree.map(lambda p: jnp.zeros((num_clients,) + jnp.shape(p), p.dtype), params)}
        return {}

    def local_update(server, index_row, count, x, y, key):
        delta, loss = core.local_sgd(loss_fn, server["params"], index_row, count, x, y, key,
                                     lr=server["local_lr"], num_steps=local_steps, batch_size=batch_size)  # fmt: skip
        return {"delta": delta, "loss": loss}

    def client_reduce(server, cs, msg, active):
        a = active.astype(jnp.float32)
        delta = msg["delta"]
        contrib = {"active": a, "loss": a * msg["loss"]}
        if weighting == "fedau":
            w, cs = update_weights(cs, active, cutoff=cutoff)
            contrib["delta"] = jax.tree.map(lambda d: a * w * d, delta)
        elif weighting == "known_prob":
            contrib["delta"] = jax.tree.map(lambda d: a * cs["inv_p"] * d, delta)
        elif weighting == "fedvarp":
            table = cs["table"]
            contrib["delta"] = jax.tree.map(lambda d, yv: a * (d - yv), delta, table)  # Σ_S (Δ - y)
            contrib["table"] = table  # Σ_all y^old
            cs = {"table": jax.tree.map(lambda d, yv: jnp.where(active, d, yv), delta, table)}
        elif weighting == "mifa":
            cs = {"table": jax.tree.map(lambda d, yv: jnp.where(active, d, yv), delta, cs["table"])}
            contrib["delta"] = cs["table"]  # Σ_all y^new
        else:
            contrib["delta"] = jax.tree.map(lambda d: a * d, delta)
        return contrib, cs

    def server_update(server, total, num_clients):
        k = total["active"]
        n = jnp.float32(num_clients)
        if weighting == "average_participating":
            v = jax.tree.map(lambda d: d / jnp.maximum(k, 1.0), total["delta"])
        elif weighting == "fedvarp":
            v = jax.tree.map(lambda d, yv: jnp.where(k > 0, d / jnp.maximum(k, 1.0) + yv / n, 0.0),
                             total["delta"], total["table"])  # fmt: skip
        else:
            v = jax.tree.map(lambda d: d / n, total["delta"])
        params = jax.tree.map(lambda p, d: p + server["global_lr"] * d, server["params"], v)
        metrics = {"train_loss": total["loss"] / jnp.maximum(k, 1.0)}
        return {**server, "params": params}, metrics

    return core.Algorithm(server_init, client_init, local_update, client_reduce, server_update)
