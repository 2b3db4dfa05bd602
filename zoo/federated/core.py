"""The shared federated-learning simulator: clients as a leading array axis, one round = one jitted function.

Spec: ``papers/_federated_family.md``. Used by ``zoo.federated.fedau`` (and later ``fedamd``).

Pieces (sections of the family spec -> functions):

- §2.1 data: `FederatedData` (global pool ``x, y`` + per-client index table ``index[N, n_max]``,
  ``count[N]``), built by `federated_data`.
- §2.2 partitioners (host-side numpy, deterministic in ``seed``): `dirichlet_client_major`
  (IBM/fedau's scheme), `dirichlet_label_major` (FedAMD's / flwr-datasets'), `pathological`
  (shards of ``c`` labels), `iid`.
- §2.3 heterogeneous probabilities: `probs_from_multiplier`, ``p_n = clip(max(p_min, C p_mean <a_n, m>), 1)``
  and `label_correlated_probs` (draws ``m ~ Dir(alpha_p 1_C)``).
- §3 participation processes (pure ``init``/``step``): `ParticipationConfig`, `participation_init`,
  `participation_step`, `stationary_mean` — ``bernoulli``, ``cyclic``, ``markov``, ``uniform_fixed``.
- §4 local computation: `local_sgd` (Q steps of SGD by ``lax.scan``, minibatches drawn with
  replacement from the client's rows; returns ``Δ = y_Q - x_t``, new minus old).
- §5 algorithm protocol and driver: `Algorithm`, `SimState`, `init_sim`, `make_round_fn`,
  `simulate` (chunks of rounds by ``lax.scan``, an evaluation after each chunk), `weighted_sum`.
- §6 sharding: ``make_round_fn(..., mesh=mesh)`` runs the round under ``jax.shard_map`` with every
  per-client leaf split over the mesh axis ``'clients'``; the reduction over clients is a local sum
  plus one ``lax.psum``. `shard_clients` places the arrays.

Determinism (goal 3): every per-client random draw uses ``fold_in(key, n)`` with the client's
*global* id ``n`` (carried as a per-client array), so the participation masks are bit-identical
with and without sharding, and parameters agree up to float summation order.

Choices that are ours, not the spec's (kept small for the time box; see the report):
- The data pool ``x, y`` is replicated on every device rather than split into device-local pools.
- Active-set compaction (``capacity``) runs ``ceil(#active / capacity)`` chunks in a
  ``lax.while_loop`` (the spec proposes all ``ceil(N / C)`` chunks, each under ``lax.cond``; under
  ``vmap`` a ``cond`` becomes a select that computes every chunk, a while loop does not).
  ``uniform_fixed`` is a global top-k, so it is refused under a mesh.
- Only the ``with_replacement`` sampler of §4 is implemented; the client optimizer is plain SGD
  with a traced learning rate (so it can be vmapped or differentiated).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from zoo.checks import check_array, check_choice, check_range, is_traced

AXIS = "clients"  # the mesh axis the client dimension is split over


def _float_dtype(*xs: Any) -> Any:
    """The compute dtype of arrays ``xs`` (dtype policy): their promoted float dtype (16-bit floats ->
    float32), or JAX's default float (float64 only under x64) when none is floating."""
    dts = [np.result_type(x) if not hasattr(x, "dtype") else x.dtype for x in xs]
    dt = jax.dtypes.canonicalize_dtype(float) if not any(jnp.issubdtype(d, jnp.floating) for d in dts) else jnp.float32
    for d in dts:
        if jnp.issubdtype(d, jnp.floating):
            dt = jnp.promote_types(dt, jax.dtypes.canonicalize_dtype(d))
    return dt


def _tree_float_dtype(tree: Any) -> Any:
    """`_float_dtype` of a pytree's leaves (JAX's default float for a tree without float leaves)."""
    return _float_dtype(*jax.tree.leaves(tree))


def _check_int(name: str, value: Any, low: int = 1) -> int:
    """A Python/numpy int (not bool) >= low."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    check_range(name, int(value), low=low)
    return int(value)

# --------------------------------------------------------------------------------------- data


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["x", "y", "index", "count", "x_test", "y_test"],
    meta_fields=["num_classes"],
)
@dataclasses.dataclass(frozen=True)
class FederatedData:
    """A federated data set: one global pool and a per-client index table (a pytree).

    x: f[n_total, *feat]; y: i32[n_total]     the training pool, stored once (f32, or f64 under x64)
    index: i32[N, n_max]                      client n's rows are ``index[n, :count[n]]`` (rest padded with 0)
    count: i32[N]                             client sizes (0 = an empty client: never active, never trains)
    x_test: f[n_test, *feat]; y_test: i32[n_test]
    num_classes: int (static)
    """

    x: Any
    y: Any
    index: Any
    count: Any
    x_test: Any
    y_test: Any
    num_classes: int

    @property
    def num_clients(self) -> int:
        return int(self.index.shape[0])


def _check_labels(name: str, y: Any, num_classes: int | None = None) -> np.ndarray:
    check_array(name, y, ndim=1, kind="iu", min_size=1)
    y = np.asarray(y)
    hi = int(y.max()) + 1 if num_classes is None else num_classes
    if y.min() < 0 or y.max() >= hi:
        raise ValueError(f"{name}: expected integer labels in [0, {hi}), got range [{y.min()}, {y.max()}]")
    return y


def _table(parts: list[np.ndarray], y: np.ndarray, num_classes: int):
    """Client row lists -> (index i32[N, n_max], count i32[N], label_hist i32[N, C])."""
    count = np.array([len(p) for p in parts], np.int32)
    n_max = max(int(count.max()), 1)
    index = np.zeros((len(parts), n_max), np.int32)
    hist = np.zeros((len(parts), num_classes), np.int32)
    for n, p in enumerate(parts):
        index[n, : len(p)] = p
        hist[n] = np.bincount(y[p], minlength=num_classes)
    empty = np.flatnonzero(count == 0)
    if empty.size:
        warnings.warn(f"partition: {empty.size} empty client(s), ids {empty.tolist()[:20]}", stacklevel=3)
    return index, count, hist


def _check_split(y: Any, num_clients: int, num_classes: int | None):
    y = _check_labels("y", y, num_classes)
    check_range("num_clients", num_clients, low=1, high=len(y))
    return y, int(y.max()) + 1 if num_classes is None else int(num_classes)


def dirichlet_client_major(y: Any, num_clients: int, alpha: float, seed: int, *, num_classes: int | None = None):
    """IBM/fedau's Dirichlet split: ``q_n ~ Dir(alpha 1_C)`` per client, each label cut by cumulative ``q[:, c]``.

    For label c with (shuffled) rows ``r_c`` (``n_c`` of them), client n gets the chunk ending at
    ``round(n_c * sum_{m<=n} q[m, c] / sum_m q[m, c])``. Clients can end up empty (a warning names them).

    Returns ``(index i32[N, n_max], count i32[N], label_hist i32[N, C])``.
    """
    y, c = _check_split(y, num_clients, num_classes)
    check_range("alpha", alpha, low=0.0, low_inclusive=False)
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(alpha * np.ones(c), size=num_clients)  # [N, C]
    parts: list[list[int]] = [[] for _ in range(num_clients)]
    for label in range(c):
        rows = rng.permutation(np.flatnonzero(y == label))
        col = q[:, label]
        cuts = np.round(len(rows) * np.cumsum(col) / max(col.sum(), 1e-300)).astype(int)
        cuts = np.concatenate([[0], np.minimum(cuts, len(rows))])
        cuts[-1] = len(rows)
        for n in range(num_clients):
            parts[n].extend(rows[cuts[n] : cuts[n + 1]].tolist())
    return _table([np.sort(np.array(p, np.int64)).astype(np.int32) for p in parts], y, c)


def dirichlet_label_major(y: Any, num_clients: int, alpha: float, seed: int, *, min_partition_size: int = 10,
                          self_balancing: bool = True, max_tries: int = 1000, num_classes: int | None = None):  # fmt: skip
    """The Yurochkin et al. 2019 / FedAMD-code split (flwr-datasets' ``DirichletPartitioner`` names).

    For each label draw proportions over clients ``~ Dir(alpha 1_N)``; with ``self_balancing`` zero the
    share of any client already holding ``>= n_total / N`` rows and renormalise; cut the label's shuffled
    rows at the cumulative proportions. Resample everything until the smallest client has
    ``>= min_partition_size`` rows; raise ``ValueError`` after ``max_tries`` attempts.
    """
    y, c = _check_split(y, num_clients, num_classes)
    check_range("alpha", alpha, low=0.0, low_inclusive=False)
    check_range("min_partition_size", min_partition_size, low=0)
    check_range("max_tries", max_tries, low=1)
    rng = np.random.default_rng(seed)
    cap = len(y) / num_clients
    for _ in range(max_tries):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for label in range(c):
            rows = rng.permutation(np.flatnonzero(y == label))
            q = rng.dirichlet(alpha * np.ones(num_clients))
            if self_balancing:
                q = q * np.array([len(p) < cap for p in parts])
                q = q / q.sum() if q.sum() > 0 else np.full(num_clients, 1.0 / num_clients)
            cuts = (np.cumsum(q) * len(rows)).astype(int)[:-1]
            for n, chunk in enumerate(np.split(rows, cuts)):
                parts[n].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_partition_size:
            return _table([np.sort(np.array(p, np.int64)).astype(np.int32) for p in parts], y, c)
    raise ValueError(
        f"min_partition_size: no split with every client >= {min_partition_size} rows after max_tries={max_tries} "
        f"attempts ({len(y)} rows over {num_clients} clients, alpha={alpha}); lower min_partition_size or raise alpha"
    )


def pathological(y: Any, num_clients: int, classes_per_client: int, seed: int, *, num_classes: int | None = None):
    """Shards: sort rows by label, cut into ``N * classes_per_client`` shards, deal that many per client."""
    y, c = _check_split(y, num_clients, num_classes)
    check_range("classes_per_client", classes_per_client, low=1, high=c)
    rng = np.random.default_rng(seed)
    order = np.argsort(y + rng.random(len(y)) * 0.5, kind="stable")  # label-sorted, shuffled within label
    shards = np.array_split(order, num_clients * classes_per_client)
    pick = rng.permutation(len(shards)).reshape(num_clients, classes_per_client)
    parts = [np.sort(np.concatenate([shards[s] for s in row])).astype(np.int32) for row in pick]
    return _table(parts, y, c)


def iid(y: Any, num_clients: int, seed: int, *, num_classes: int | None = None):
    """Uniformly random, near-equal split."""
    y, c = _check_split(y, num_clients, num_classes)
    perm = np.random.default_rng(seed).permutation(len(y))
    return _table([np.sort(p).astype(np.int32) for p in np.array_split(perm, num_clients)], y, c)


def federated_data(x, y, index, count, x_test, y_test, *, num_classes: int) -> FederatedData:
    """Validate and pack host arrays into a `FederatedData` (jnp arrays; x in its float dtype, ints -> JAX's
    default float)."""
    _check_int("num_classes", num_classes, low=1)
    check_array("x", x, min_size=1)
    y = _check_labels("y", y, num_classes)
    check_array("index", index, ndim=2, kind="iu")
    n = np.shape(index)[0]
    check_array("count", count, shape=(n,), kind="iu")
    if np.shape(x)[0] != len(y):
        raise ValueError(f"y: expected {np.shape(x)[0]} labels (one per row of x), got {len(y)}")
    if np.any(np.asarray(count) < 0) or np.any(np.asarray(count) > np.shape(index)[1]):
        raise ValueError(f"count: expected values in [0, {np.shape(index)[1]}] (index width), got {count}")
    if (np.asarray(count) == 0).all():
        raise ValueError("count: every client is empty; expected at least one client with data")
    idx, cnt = np.asarray(index), np.asarray(count)
    used = np.arange(idx.shape[1])[None, :] < cnt[:, None]
    if used.any() and (idx[used].min() < 0 or idx[used].max() >= len(y)):
        raise ValueError(f"index: expected row ids in [0, {len(y)}) in every client's first count[n] slots, "
                         f"got range [{idx[used].min()}, {idx[used].max()}]")
    check_array("x_test", x_test, min_size=1)
    if np.shape(x_test)[1:] != np.shape(x)[1:]:
        raise ValueError(f"x_test: expected rows of shape {np.shape(x)[1:]} (as x), got {np.shape(x_test)[1:]}")
    y_test = _check_labels("y_test", y_test, num_classes)
    if np.shape(x_test)[0] != len(y_test):
        raise ValueError(f"y_test: expected {np.shape(x_test)[0]} labels (one per row of x_test), got {len(y_test)}")
    dt = _float_dtype(x, x_test)  # float64 data stays float64 only under x64
    return FederatedData(
        x=jnp.asarray(x, dt), y=jnp.asarray(y, jnp.int32), index=jnp.asarray(index, jnp.int32),
        count=jnp.asarray(count, jnp.int32), x_test=jnp.asarray(x_test, dt),
        y_test=jnp.asarray(y_test, jnp.int32), num_classes=int(num_classes),
    )  # fmt: skip


# --------------------------------------------------------------------- participation probabilities


def probs_from_multiplier(label_hist: Any, m: Any, *, p_mean: float, p_min: float) -> np.ndarray:
    """``p_n = min(1, max(p_min, C p_mean <a_n, m>))`` with ``a_n = label_hist[n] / count_n``; empty clients get 0.

    label_hist: i32[N, C]; m: f32[C] (a point of the simplex). Returns f64[N].
    """
    check_array("label_hist", label_hist, ndim=2)
    hist = np.asarray(label_hist, np.float64)
    check_array("m", m, shape=(hist.shape[1],))
    if (hist < 0).any():
        raise ValueError(f"label_hist: expected counts >= 0, got minimum {hist.min()}")
    if (np.asarray(m) < 0).any():
        raise ValueError(f"m: expected a point of the simplex (entries >= 0), got minimum {np.min(m)}")
    check_range("p_mean", p_mean, low=0.0, high=1.0, low_inclusive=False)
    check_range("p_min", p_min, low=0.0, high=1.0)
    cnt = hist.sum(1)
    a = hist / np.maximum(cnt, 1)[:, None]
    p = np.minimum(1.0, np.maximum(p_min, hist.shape[1] * p_mean * (a @ np.asarray(m, np.float64))))
    return np.where(cnt > 0, p, 0.0)


def label_correlated_probs(label_hist: Any, *, alpha_p: float = 0.1, p_mean: float = 0.1, p_min: float = 0.02,
                           seed: int = 0) -> np.ndarray:  # fmt: skip
    """FedAU's heterogeneous probabilities: `probs_from_multiplier` with ``m ~ Dir(alpha_p 1_C)``."""
    check_range("alpha_p", alpha_p, low=0.0, low_inclusive=False)
    check_array("label_hist", label_hist, ndim=2)
    c = np.shape(label_hist)[1]
    m = np.random.default_rng(seed).dirichlet(alpha_p * np.ones(c))
    return probs_from_multiplier(label_hist, m, p_mean=p_mean, p_min=p_min)


# --------------------------------------------------------------------------- participation


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParticipationConfig:
    """Which exogenous participation process (static).

    kind: 'bernoulli' | 'cyclic' | 'markov' | 'uniform_fixed'
    period: cyclic period P (>= 2); q_max: Markov to-active probability in (0, 1];
    num_active: S for uniform_fixed (>= 1).
    """

    kind: str = "bernoulli"
    period: int = 100
    q_max: float = 0.05
    num_active: int = 10

    def __post_init__(self):
        check_choice("kind", self.kind, PARTICIPATION_KINDS)
        check_range("period", self.period, low=2)
        check_range("q_max", self.q_max, low=0.0, high=1.0, low_inclusive=False)
        check_range("num_active", self.num_active, low=1)


PARTICIPATION_KINDS = ("bernoulli", "cyclic", "markov", "uniform_fixed")


def _client_keys(key: jax.Array, ids: jax.Array) -> jax.Array:
    """key_n = fold_in(key, n) for every global id n: key[N]."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(ids)


def _uniform(key: jax.Array, ids: jax.Array) -> jax.Array:
    return jax.vmap(lambda k: jax.random.uniform(k))(_client_keys(key, ids))


def _cyclic_lengths(probs, period):
    a = jnp.maximum(1, jnp.round(period * probs)).astype(jnp.int32)
    return a, jnp.maximum(1, period - a).astype(jnp.int32)


def _markov_rates(probs, q_max):
    a = jnp.full_like(probs, q_max)
    b = a * (1.0 / jnp.maximum(probs, 1e-30) - 1.0)
    scale = jnp.maximum(b, 1.0)
    return a / scale, b / scale


def _check_pcfg(cfg: Any) -> None:
    if not isinstance(cfg, ParticipationConfig):
        raise ValueError(f"cfg: expected a ParticipationConfig, got {type(cfg).__name__}")


def check_probs(probs: Any, count: Any | None = None) -> None:
    """probs: f[N] in [0, 1], finite, and > 0 on every client with data (``count > 0``)."""
    check_array("probs", probs, ndim=1, min_size=1)
    if not is_traced(probs):
        p = np.asarray(probs)
        if (p < 0).any() or (p > 1).any():
            i = int(np.flatnonzero((p < 0) | (p > 1))[0])
            raise ValueError(f"probs: expected participation probabilities in (0, 1], got {p[i]} at client {i}")
        if count is not None and not is_traced(count):
            check_array("count", count, shape=(len(p),))
            bad = (np.asarray(count) > 0) & (p <= 0)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"probs: expected participation probabilities in (0, 1] on clients with data, got {p[i]} "
                    f"at client {i}"
                )


def participation_init(cfg: ParticipationConfig, key: jax.Array, probs: Any, count: Any) -> dict:
    """Initial participation state, every leaf with leading axis N.

    probs: f[N] (long-run rates; used as targets by cyclic/markov; kept in their float dtype, f32 unless
    x64), count: i32[N] (eligibility).
    State: ``ids`` (global ids for fold_in), ``probs``, ``eligible``, ``on``, ``left``.
    """
    _check_pcfg(cfg)
    check_probs(probs, count)
    probs = jnp.asarray(probs, _float_dtype(probs))
    n = probs.shape[0]
    if cfg.kind == "uniform_fixed" and not is_traced(count):
        n_elig = int(np.sum(np.asarray(count) > 0))
        if cfg.num_active > n_elig:
            raise ValueError(f"num_active: expected at most the {n_elig} clients with data, got {cfg.num_active}")
    ids = jnp.arange(n, dtype=jnp.int32)
    eligible = jnp.asarray(count) > 0
    k_on, k_left = jax.random.split(key)
    if cfg.kind == "markov":
        on = _uniform(k_on, ids) < probs  # initial state ~ Bern(p)
    else:
        on = jnp.zeros(n, bool)  # cyclic starts inactive
    _, b = _cyclic_lengths(probs, cfg.period)
    left = jnp.floor(_uniform(k_left, ids) * b).astype(jnp.int32)  # phase ~ U{0..B-1}
    return {"ids": ids, "probs": probs, "eligible": eligible, "on": on, "left": left}


def participation_step(cfg: ParticipationConfig, pstate: dict, key: jax.Array, t: Any) -> tuple[dict, jax.Array]:
    """One round of the process: ``(pstate, key, t) -> (pstate, active: bool[N])``.

    bernoulli: ``U_n < p_n``. cyclic: flip ``on`` when ``left == 0`` (reset ``left`` to A_n or B_n),
    then ``left -= 1``. markov: transition (to-active ``a``, to-inactive ``b = a(1/p - 1)``, both
    rescaled when ``b > 1``) before output. uniform_fixed: the S smallest of per-client uniforms.
    Every output is ANDed with ``count > 0``.
    """
    del t
    _check_pcfg(cfg)
    missing = [k for k in ("ids", "probs", "eligible", "on", "left") if not isinstance(pstate, dict) or k not in pstate]
    if missing:
        raise ValueError(f"pstate: expected the dict from participation_init, missing {missing}")
    ids, probs, on, left = pstate["ids"], pstate["probs"], pstate["on"], pstate["left"]
    u = _uniform(key, ids)
    if cfg.kind == "bernoulli":
        active = u < probs
    elif cfg.kind == "cyclic":
        a, b = _cyclic_lengths(probs, cfg.period)
        flip = left == 0
        on = jnp.where(flip, ~on, on)
        left = jnp.where(flip, jnp.where(on, a, b), left) - 1
        active = on
    elif cfg.kind == "markov":
        a, b = _markov_rates(probs, cfg.q_max)
        on = jnp.where(on, u >= b, u < a)
        active = on
    else:  # uniform_fixed
        score = jnp.where(pstate["eligible"], -u, -jnp.inf)
        _, top = jax.lax.top_k(score, cfg.num_active)
        active = jnp.zeros(ids.shape, bool).at[top].set(True)
    active = active & pstate["eligible"]
    return {**pstate, "on": on, "left": left}, active


def stationary_mean(cfg: ParticipationConfig, probs: Any) -> jax.Array:
    """Long-run mean of ``active`` per client (ignoring eligibility): p, A/(A+B), a/(a+b) or S/N.

    probs: f[N] in [0, 1]; the result is in probs' float dtype."""
    _check_pcfg(cfg)
    check_probs(probs)
    probs = jnp.asarray(probs, _float_dtype(probs))
    if cfg.kind == "cyclic":
        a, b = _cyclic_lengths(probs, cfg.period)
        return (a / (a + b)).astype(probs.dtype)
    if cfg.kind == "markov":
        a, b = _markov_rates(probs, cfg.q_max)
        return a / (a + b)
    if cfg.kind == "uniform_fixed":
        return jnp.full_like(probs, cfg.num_active / probs.shape[0])
    return probs


# ------------------------------------------------------------------------------ local training


def client_batch(data_x, data_y, index_row, count, key, batch_size: int) -> dict:
    """A minibatch drawn with replacement from one client's rows: {'x': f[B, ...], 'y': i32[B]}.

    index_row: i32[n_max]; count: i32[] (>= 1 for a draw from real rows; an empty client repeats row
    ``index_row[0]``); batch_size: static int >= 1."""
    _check_int("batch_size", batch_size)
    check_array("index_row", index_row, ndim=1, min_size=1, kind="iu")
    check_array("count", count, ndim=0, kind="iu")
    check_array("data_y", data_y, shape=(np.shape(data_x)[0],))
    j = jnp.floor(jax.random.uniform(key, (batch_size,)) * jnp.maximum(count, 1)).astype(jnp.int32)
    rows = index_row[jnp.minimum(j, jnp.maximum(count - 1, 0))]
    return {"x": data_x[rows], "y": data_y[rows]}


def local_sgd(loss_fn: Callable, params: Any, index_row, count, data_x, data_y, key, *, lr, num_steps: int,
              batch_size: int) -> tuple[Any, jax.Array]:  # fmt: skip
    """Q = ``num_steps`` SGD steps from ``params`` on one client: ``y_{q+1} = y_q - lr grad l(y_q; batch_q)``.

    Batch q is drawn with key ``fold_in(key, q)``. Returns ``(delta = y_Q - params, mean loss)``.
    ``loss_fn(params, batch) -> scalar``. ``num_steps``/``batch_size`` are static; ``lr`` may be traced.
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn: expected a callable (params, batch) -> scalar, got {type(loss_fn).__name__}")
    _check_int("num_steps", num_steps)
    _check_int("batch_size", batch_size)
    if not is_traced(lr):
        check_array("lr", lr, ndim=0)
    grad_fn = jax.value_and_grad(loss_fn)

    def step(p, q):
        batch = client_batch(data_x, data_y, index_row, count, jax.random.fold_in(key, q), batch_size)
        loss, g = grad_fn(p, batch)
        return jax.tree.map(lambda a, b: a - (lr * b).astype(a.dtype), p, g), loss  # keep each leaf's dtype

    out, losses = jax.lax.scan(step, params, jnp.arange(num_steps))
    return jax.tree.map(jnp.subtract, out, params), losses.mean()


def weighted_sum(w: jax.Array, tree: Any) -> Any:
    """``sum_n w_n tree_n`` leafwise: w f[N], leaves [N, ...] -> leaves [...] (w cast to each leaf's dtype)."""
    check_array("w", w, ndim=1)
    n = np.shape(w)[0]
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if np.ndim(leaf) == 0 or np.shape(leaf)[0] != n:
            raise ValueError(f"tree{jax.tree_util.keystr(path)}: expected leading dim {n} (as w), got {np.shape(leaf)}")
    w = jnp.asarray(w)
    return jax.tree.map(lambda leaf: jnp.tensordot(w.astype(leaf.dtype), leaf, axes=1), tree)


# ---------------------------------------------------------------------------- algorithm + driver


class Algorithm(NamedTuple):
    """A federated algorithm as four static pure functions (family spec §5, reduction made explicit).

    server_init(params) -> server_state                         (replicated pytree)
    client_init(params, num_clients) -> client_states           (pytree, leading axis N; may be {})
    local_update(server_state, index_row, count, x, y, key_n) -> msg_n     (e.g. the delta Δ_n)
    client_reduce(server_state, client_state_n, msg_n, active_n) -> (contrib_n, client_state_n)
        contrib_n: this client's additive share of the server update (zeros when inactive)
    server_update(server_state, total, num_clients) -> (server_state, metrics)
        total = sum_n contrib_n (a local sum plus ``psum`` over the mesh under sharding)
    """

    server_init: Callable
    client_init: Callable
    local_update: Callable
    client_reduce: Callable
    server_update: Callable


def _check_alg(alg: Any) -> None:
    if not isinstance(alg, Algorithm):
        raise ValueError(f"alg: expected a zoo.federated.core.Algorithm, got {type(alg).__name__}")


class SimState(NamedTuple):
    """server: replicated; clients, participation: leading axis N; t: i32[] round counter."""

    server: Any
    clients: Any
    participation: dict
    t: jax.Array


def init_sim(alg: Algorithm, pcfg: ParticipationConfig, params: Any, data: FederatedData, probs: Any,
             key: jax.Array) -> SimState:  # fmt: skip
    """The initial `SimState`: ``server_init(params)``, client states, participation state."""
    _check_alg(alg)
    _check_pcfg(pcfg)
    if not isinstance(data, FederatedData):
        raise ValueError(f"data: expected a FederatedData, got {type(data).__name__}")
    n = data.num_clients
    check_array("probs", probs, shape=(n,))
    clients = alg.client_init(params, n)
    for path, leaf in jax.tree_util.tree_flatten_with_path(clients)[0]:
        if np.ndim(leaf) == 0 or np.shape(leaf)[0] != n:
            raise ValueError(
                f"client_states{jax.tree_util.keystr(path)}: expected a leading axis of {n} clients, "
                f"got shape {np.shape(leaf)}"
            )
    return SimState(
        server=alg.server_init(params),
        clients=clients,
        participation=participation_init(pcfg, key, probs, data.count),
        t=jnp.zeros((), jnp.int32),
    )


def _compacted(local, server, data: FederatedData, k_local, ids, active, capacity: int):
    """Active-set compaction: run ``local`` on chunks of ``capacity`` active rows only, scatter back by row.

    ``order = argsort(~active)`` (stable) lists the active rows first; a ``lax.while_loop`` runs
    ``ceil(#active / capacity)`` chunks (never drops a client; under ``vmap`` it runs the largest
    count of the batch). Rows that are not active get zero messages. Client n still uses
    ``fold_in(k_local, ids[n])``, so the result equals the reference path.
    """
    n = ids.shape[0]
    cap = min(capacity, n)
    chunks = -(-n // cap)
    order = jnp.argsort(~active, stable=True).astype(jnp.int32)
    order = jnp.concatenate([order, jnp.full((chunks * cap - n,), n, jnp.int32)])  # pad with an out-of-range row
    n_active = active.sum()
    proto = jax.eval_shape(local, server, data.index[:1], data.count[:1], data.x, data.y,
                           _client_keys(k_local, ids[:1]))  # fmt: skip
    buf = jax.tree.map(lambda a: jnp.zeros((n,) + a.shape[1:], a.dtype), proto)

    def body(carry):
        i, buf = carry
        rows = jax.lax.dynamic_slice(order, (i * cap,), (cap,))
        safe = jnp.minimum(rows, n - 1)
        keep = (rows < n) & active[safe]
        out = local(server, data.index[safe], data.count[safe], data.x, data.y, _client_keys(k_local, ids[safe]))
        dest = jnp.where(keep, rows, n)  # n = dropped by the scatter
        buf = jax.tree.map(lambda b, o: b.at[dest].set(o, mode="drop"), buf, out)
        return i + 1, buf

    return jax.lax.while_loop(lambda c: c[0] * cap < n_active, body, (jnp.int32(0), buf))[1]


def _round_body(alg: Algorithm, pcfg: ParticipationConfig, state: SimState, data: FederatedData, key,
                axis: str | None, capacity: int | None = None):  # fmt: skip
    k_part, k_local = jax.random.split(key)
    pstate, active = participation_step(pcfg, state.participation, k_part, state.t)
    ids = pstate["ids"]
    local = jax.vmap(alg.local_update, in_axes=(None, 0, 0, None, None, 0))
    if capacity is None:  # reference path: every client computes, inactive rows are masked later
        msgs = local(state.server, data.index, data.count, data.x, data.y, _client_keys(k_local, ids))
    else:
        msgs = _compacted(local, state.server, data, k_local, ids, active, capacity)
    contrib, clients = jax.vmap(alg.client_reduce, in_axes=(None, 0, 0, 0))(state.server, state.clients, msgs, active)
    total = jax.tree.map(lambda c: c.sum(0), contrib)
    n_active = active.sum()
    num_clients = ids.shape[0]
    if axis is not None:
        total, n_active = jax.lax.psum((total, n_active), axis)
        num_clients = num_clients * jax.lax.axis_size(axis)
    server, metrics = alg.server_update(state.server, total, num_clients)
    metrics = {**metrics, "num_active": n_active}
    return SimState(server, clients, pstate, state.t + 1), metrics


def _specs(state: SimState, data: FederatedData):
    """PartitionSpecs: per-client leaves P('clients'), everything else replicated."""
    rep = lambda tree: jax.tree.map(lambda _: P(), tree)  # noqa: E731
    cli = lambda tree: jax.tree.map(lambda _: P(AXIS), tree)  # noqa: E731
    s = SimState(rep(state.server), cli(state.clients), cli(state.participation), P())
    d = dataclasses.replace(data, x=P(), y=P(), index=P(AXIS), count=P(AXIS), x_test=P(), y_test=P())
    return s, d


def make_round_fn(alg: Algorithm, pcfg: ParticipationConfig, *, mesh: jax.sharding.Mesh | None = None,
                  capacity: int | None = None) -> Callable:  # fmt: skip
    """``round(state: SimState, data, key) -> (state, metrics)``: one pure round (jit it, scan it).

    1. ``active = participation_step``; 2. ``msg_n = local_update`` vmapped over all clients (inactive
    rows are masked in step 3); 3. ``contrib_n, cs_n = client_reduce`` vmapped; 4. ``total = sum_n
    contrib_n``; 5. ``server_update``. With ``mesh`` (axis ``'clients'``) the round runs under
    ``shard_map``: each device handles ``N / n_dev`` clients and step 4 is a local sum plus ``psum``.
    With ``capacity`` (static int >= 1) step 2 runs only on the active clients, in chunks of that
    many rows (per device under a mesh); see `_compacted`. None computes all N and masks.
    """
    _check_alg(alg)
    _check_pcfg(pcfg)
    if capacity is not None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)):
            raise ValueError(f"capacity: expected a positive int or None, got {capacity!r}")
        check_range("capacity", int(capacity), low=1)
        capacity = int(capacity)
    if mesh is None:
        return functools.partial(_round_body, alg, pcfg, axis=None, capacity=capacity)
    if AXIS not in mesh.axis_names:
        raise ValueError(f"mesh: expected a mesh axis named {AXIS!r}, got axes {mesh.axis_names}")
    if pcfg.kind == "uniform_fixed":
        raise ValueError("pcfg.kind: 'uniform_fixed' is a global top-k over clients; run it without a mesh")

    def round_fn(state, data, key):
        s_spec, d_spec = _specs(state, data)
        body = functools.partial(_round_body, alg, pcfg, axis=AXIS, capacity=capacity)
        f = jax.shard_map(
            body, mesh=mesh, in_specs=(s_spec, d_spec, P()), out_specs=(s_spec, P()), check_vma=False
        )
        return f(state, data, key)

    return round_fn


def shard_clients(state: SimState, data: FederatedData, mesh: jax.sharding.Mesh):
    """Place per-client leaves split over ``'clients'`` and the rest replicated (N divisible by n_dev)."""
    if not isinstance(mesh, jax.sharding.Mesh) or AXIS not in mesh.axis_names:
        raise ValueError(f"mesh: expected a jax.sharding.Mesh with an axis named {AXIS!r}, got {mesh!r}")
    n_dev = mesh.shape[AXIS]
    if data.num_clients % n_dev:
        raise ValueError(f"data: the {data.num_clients} clients must divide evenly over {n_dev} devices")
    s_spec, d_spec = _specs(state, data)
    def put(tree, spec):
        return jax.tree.map(lambda a, s: jax.device_put(a, NamedSharding(mesh, s)), tree, spec)

    return put(state, s_spec), put(data, d_spec)


def simulate(round_fn: Callable, state: SimState, data: FederatedData, key: jax.Array, *, num_rounds: int,
             eval_every: int | None = None, eval_fn: Callable | None = None):  # fmt: skip
    """Run ``num_rounds`` rounds as nested ``lax.scan``s; pure (jit/vmap it over seeds).

    Round t uses ``fold_in(key, t)``. Every ``eval_every`` rounds (a chunk) ``eval_fn(state, data)``
    returns a dict of metrics. Returns ``(state, round_metrics [num_rounds], eval_metrics [num_chunks])``.
    """
    if not callable(round_fn):
        raise ValueError(f"round_fn: expected a callable (state, data, key) -> (state, metrics), got {round_fn!r}")
    if eval_fn is not None and not callable(eval_fn):
        raise ValueError(f"eval_fn: expected a callable (state, data) -> dict or None, got {eval_fn!r}")
    _check_int("num_rounds", num_rounds)
    every = num_rounds if eval_every is None else _check_int("eval_every", eval_every)
    check_range("eval_every", every, low=1, high=num_rounds)
    if num_rounds % every:
        raise ValueError(f"eval_every: expected a divisor of num_rounds={num_rounds}, got {every}")

    def one(s, _):
        return round_fn(s, data, jax.random.fold_in(key, s.t))

    def chunk(s, _):
        s, m = jax.lax.scan(one, s, None, length=every)
        return s, (m, {} if eval_fn is None else eval_fn(s, data))

    state, (metrics, evals) = jax.lax.scan(chunk, state, None, length=num_rounds // every)
    metrics = jax.tree.map(lambda a: a.reshape((num_rounds,) + a.shape[2:]), metrics)
    return state, metrics, evals
