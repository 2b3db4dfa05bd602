r"""The universality lens: Bayesian mixtures, the weight of a hypothesis, and SGLD ensembles.

Paper: Meir Feder, Ruediger Urbanke, Yaniv Fogel, "The Universality Lens: Why Even Highly
Over-Parametrized Models Learn Well", arXiv 2506.07661 (2025). Official code: none (a theory paper
without experiments; the experiments in ``zoo.experiments.universality_lens`` are the zoo's).

Learner: the Bayes mixture under log-loss (nats; ``base=2`` gives bits),
``Q(x^n) = ∫ w(θ) P_θ(x^n) dθ``, and its regret against the true source θ0.

Equations -> functions::

    d(θ0, θ) = D(P_θ0 ‖ P_θ)  (Bernoulli / categorical)                 kl_bernoulli, kl_categorical
    R_o(n) = (1/n) D(P_θ0(X^n) ‖ Q(X^n)),  Q a finite Bernoulli mixture  finite_mixture_online_regret
    R_b(t) = E_{X^{t-1}} D(P_θ0 ‖ Q(· | X^{t-1}))                        batch_regret
    chain rule  n R_o(n) = Σ_{t=1..n} R_b(t)                              (tested, exact to 1e-10)
    W_ε(θ0) = w({θ : d(θ0, θ) ≤ ε})                                      hypothesis_weight
    R_o(n) ≤ inf_ε [ε + (1/n) ln(1/W_ε(θ0))]                              regret_bound
    push-forward of U[0,1]^D through θ -> mean(θ)  (Bates law)           bates_pushforward_prior

Practical recipe (SGLD sampling of the posterior w(θ|S), then the ensemble predictive)::

    U(θ) = −ln w(θ) − (n/B) Σ_{i∈batch} ln P_θ(y_i|x_i)                  posterior_potential
    θ_{k+1} = θ_k − α_k G ∇U(θ_k) + sqrt(2 α_k T G) ξ_k,  ξ ~ N(0, I)     sgld (an optax transformation)
    G = 1, a fixed diagonal, or pSGLD's 1/(λ + sqrt(V))                  sgld(preconditioner=...)
    α_k = a (b + k)^(−γ);  α_k = (a0/2)(cos(π (k mod L)/L) + 1)          polynomial_schedule, cyclical_schedule
    chains × kept iterates after burn-in, every ``thin``-th              run_chains
    ln Q(y|x) = logsumexp_m ln P_θm(y|x) − ln M                          ensemble_log_predictive
    E_x KL(p_true(·|x) ‖ Q(·|x))                                          mixture_regret
    teacher p(y=1|x) = σ(v·tanh(W x)),  student NTK ReLU MLP            make_teacher_student, mlp_init, mlp_apply

Conventions and pitfalls:

* Step size. Our α is blackjax's ``step_size``; Welling & Teh's ε equals 2α (their step is
  (ε/2)∇ln p + N(0, ε)). As α -> 0 the stationary law is ∝ exp(−U/T); T = 1 is the posterior.
  With constant α and curvature λ the stationary variance is inflated by 1/(1 − αλ/2); the chain
  diverges for αλ ≥ 2 (`max_hessian_eigenvalue` estimates λ_max).
* ``optax.noisy_sgd`` is NOT SGLD: its noise does not scale with the step size or temperature.
* ``sgld`` must be the LAST transformation of an ``optax.chain``; only ``add_decayed_weights``
  (a Gaussian prior) may precede it. Clipping, momentum or averaging before it break the sampler.
* The gradients fed to ``sgld`` must be those of the TOTAL potential U, not of a mean loss;
  `posterior_potential` builds it with the n/B factor (forgetting it acts like a temperature n/B).
* pSGLD drops the Γ(θ) correction (as in the practical version of Li et al. 2016), which biases it
  while V changes; ``freeze_after`` fixes G after burn-in.
* The mixture's log-loss is −logsumexp, never the mean of the members' log-losses (by Jensen the
  mixture is never worse than its members' average).

Choices that are the zoo's, not the paper's (the paper has no algorithm box or experiments):

* Exact theory runs on the host in float64 NumPy (no tracing). `bates_pushforward_prior` puts on
  each of ``num_points`` equal cells of (0, 1) the EXACT Irwin–Hall cell mass (integer arithmetic)
  at the cell midpoint, instead of the spec's repeated numerical convolution; the two agree as the
  grid refines, and this one has no rounding error even in the far tails.
* The student MLP (NTK parameterisation) has biases, all weights and biases ~ N(0, 1) (the prior
  N(0, I) then is the init law); a 1-logit output is read as a Bernoulli logit.
* ``sgld``'s pSGLD accumulator starts at zero, like RMSProp (no bias correction).
* ``temperature`` must be >= 0 (only T < 0 is an error, as the spec says). The spec's limit
  ``temperature = 0`` (or ``noise_scale = 0``) is plain (preconditioned) gradient descent bit for
  bit when either is a concrete 0 (no noise is drawn; the program is SGD's). A traced 0 selects the
  noise-free update inside a different program, equal to SGD up to XLA's fusion (FMA) rounding.
* Each SGLD step draws its noise in ONE Gaussian draw split over the leaves (also the teacher and
  `mlp_init`): the same law as one draw per leaf, and far less XLA compile time on CPU.
* `run_chains` minibatches are drawn with replacement (unbiased ∇Û).
* The bound is written in the spec's standard form (ε per symbol, natural log); the paper's text
  itself was not available offline to check its exact statement.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.scipy.special import logsumexp, xlogy

from zoo.checks import check_array, check_choice, check_range, is_traced

__all__ = [
    "SGLD",
    "SGLDState",
    "bates_pushforward_prior",
    "batch_regret",
    "cyclical_schedule",
    "ensemble_log_predictive",
    "finite_mixture_online_regret",
    "gaussian_log_prior",
    "hypothesis_weight",
    "init_with_key",
    "kl_bernoulli",
    "kl_categorical",
    "logits_to_log_probs",
    "make_teacher_student",
    "max_hessian_eigenvalue",
    "mixture_regret",
    "mlp_apply",
    "mlp_init",
    "mlp_log_likelihood",
    "polynomial_schedule",
    "posterior_potential",
    "regret_bound",
    "run_chains",
    "sample_log_probs",
    "set_chain_key",
    "sgld",
]

# ============================================================================ small validators


def _check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an int, got {value!r}")
    check_range(name, int(value), low=low, high=high)
    return int(value)


def _check_scalar(name: str, value: Any, **bounds) -> None:
    """Range-check a concrete real scalar (skipped when traced)."""
    if is_traced(value):
        return
    check_array(name, np.asarray(value, dtype=np.float64), ndim=0)  # a finite scalar
    check_range(name, float(value), **bounds)


def _check_base(base: float) -> float:
    _check_scalar("base", base, low=0.0, low_inclusive=False)
    if float(base) == 1.0:
        raise ValueError("base: expected a logarithm base > 0 and != 1, got 1.0")
    return math.log(float(base))


def _check_simplex(name: str, x: Any, atol: float = 1e-3) -> None:
    """Rows (last axis) of ``x`` sum to 1 within ``atol`` (concrete inputs only; values checked elsewhere)."""
    if is_traced(x):
        return
    sums = np.asarray(x, np.float64).sum(-1)
    if sums.size and np.any(np.abs(sums - 1) > atol):
        i = np.unravel_index(int(np.argmax(np.abs(sums - 1))), sums.shape)
        raise ValueError(
            f"{name}: expected probability vectors summing to 1 over the last axis, got a sum of {float(sums[i])!r}"
            f" at index {tuple(int(j) for j in i)}"
        )


def _check_prob(name: str, x: Any, *, open_: bool) -> None:
    """Values in [0, 1] (or (0, 1) when ``open_``), skipped when traced."""
    if is_traced(x):
        return
    a = np.asarray(x, dtype=np.float64)
    check_array(name, a)  # finite
    if a.size:
        for v in (float(a.min()), float(a.max())):
            check_range(name, v, low=0.0, high=1.0, low_inclusive=not open_, high_inclusive=not open_)


# ============================================================================ divergences


def kl_bernoulli(p: Any, q: Any, *, base: float = math.e) -> jax.Array:
    """KL(Bern(p) ‖ Bern(q)) = p ln(p/q) + (1−p) ln((1−p)/(1−q)), elementwise (0 ln 0 = 0).

    p, q: f[...] broadcastable, in [0, 1]. Returns f[...] in nats (``base=2``: bits); inf where q
    puts zero mass on an outcome p can produce. jit/vmap/grad-safe (the range check runs only
    on concrete inputs).
    """
    _check_prob("p", p, open_=False)
    _check_prob("q", q, open_=False)
    lb = _check_base(base)
    p, q = jnp.asarray(p), jnp.asarray(q)
    d = xlogy(p, p) - xlogy(p, q) + xlogy(1 - p, 1 - p) - xlogy(1 - p, 1 - q)
    return d / lb


def kl_categorical(p: Any, q: Any, *, base: float = math.e) -> jax.Array:
    """KL(p ‖ q) = Σ_c p_c ln(p_c / q_c) over the last axis.

    p, q: f[..., V] probability vectors (same shape, entries in [0, 1], each summing to 1 within
    1e-3; checked on concrete inputs). Returns f[...]; nats unless ``base``.
    """
    check_array("p", p, ndim=range(1, 33), finite=not is_traced(p))
    check_array("q", q, ndim=range(1, 33), finite=not is_traced(q))
    if jnp.shape(p) != jnp.shape(q):
        raise ValueError(f"q: expected the shape of p {jnp.shape(p)}, got {jnp.shape(q)}")
    if jnp.shape(p)[-1] < 1:
        raise ValueError(f"p: expected at least one category on the last axis, got shape {jnp.shape(p)}")
    _check_prob("p", p, open_=False)
    _check_prob("q", q, open_=False)
    _check_simplex("p", p)
    _check_simplex("q", q)
    lb = _check_base(base)
    p, q = jnp.asarray(p), jnp.asarray(q)
    return jnp.sum(xlogy(p, p) - xlogy(p, q), axis=-1) / lb


# ============================================================================ exact theory (host, float64)


def _np_logsumexp(a: np.ndarray, axis: int | None = None) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def _check_theory_inputs(theta0, grid, log_prior, normalize: bool):
    """Validate (θ0, grid, log_prior) and return float64 arrays with a normalised log prior."""
    _check_scalar("theta0", theta0, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    check_array("grid", grid, ndim=1, min_size=1)
    grid = np.asarray(grid, np.float64)
    _check_prob("grid", grid, open_=True)
    lp = _check_log_prior(log_prior, grid.shape[0], normalize)
    return float(theta0), grid, lp


def _check_log_prior(log_prior, k: int, normalize: bool) -> np.ndarray:
    check_array("log_prior", log_prior, ndim=1, finite=False)
    lp = np.asarray(log_prior, np.float64)
    if lp.shape[0] != k:
        raise ValueError(f"log_prior: expected {k} entries (one per hypothesis), got {lp.shape[0]}")
    if np.isnan(lp).any() or np.isposinf(lp).any():
        raise ValueError("log_prior: contains NaN or +inf (entries must be finite or -inf)")
    total = float(_np_logsumexp(lp))
    if not math.isfinite(total):
        raise ValueError("log_prior: every entry is -inf (the prior has no mass)")
    if normalize:
        return lp - total
    if abs(total) > 1e-6:
        raise ValueError(
            f"log_prior: expected a normalised log prior (|logsumexp| <= 1e-6), got logsumexp = {total:.3g}; "
            "pass normalize=True to normalise it"
        )
    return lp


def _log_binom(n: int) -> np.ndarray:
    k = np.arange(n + 1)
    return np.array([math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in k])


def finite_mixture_online_regret(
    theta0: float, grid: Any, log_prior: Any, n: int, *, normalize: bool = False, base: float = math.e
) -> float:
    """Exact per-symbol online regret R_o(n) = (1/n) D(P_θ0(X^n) ‖ Q(X^n)) of a Bernoulli mixture.

    Q(x^n) = Σ_j w_j θ_j^k (1−θ_j)^(n−k) depends on x^n only through k = #ones, so
    R_o(n) = (1/n) Σ_{k=0..n} C(n,k) θ0^k (1−θ0)^(n−k) [ln P_θ0(k) − ln Q(k)], with
    ln Q(k) = logsumexp_j(ln w_j + k ln θ_j + (n−k) ln(1−θ_j)). Host float64.

    Args:
      theta0: the true Bernoulli mean, in (0, 1).
      grid: f[K] hypotheses θ_j in (0, 1).
      log_prior: f[K] ln w_j, normalised (or ``normalize=True``); -inf entries allowed.
      n: sequence length >= 1.
    """
    theta0, grid, lp = _check_theory_inputs(theta0, grid, log_prior, normalize)
    n = _check_int("n", n, low=1)
    lb = _check_base(base)
    k = np.arange(n + 1, dtype=np.float64)
    lq = _np_logsumexp(lp[None] + k[:, None] * np.log(grid)[None] + (n - k)[:, None] * np.log1p(-grid)[None], axis=1)
    lpk = k * math.log(theta0) + (n - k) * math.log1p(-theta0)
    weights = np.exp(_log_binom(n) + lpk)  # P_θ0(count = k)
    return float(np.sum(weights * (lpk - lq)) / n / lb)


def batch_regret(
    theta0: float, grid: Any, log_prior: Any, t: int, *, normalize: bool = False, base: float = math.e
) -> float:
    """Exact batch regret R_b(t) = E_{X^{t−1}} KL(Bern(θ0) ‖ Bern(q(X^{t−1}))) of a Bernoulli mixture.

    The predictive after k ones in t−1 symbols is q = Σ_j w_j(k) θ_j with the posterior
    ln w_j(k) ∝ ln w_j + k ln θ_j + (t−1−k) ln(1−θ_j); ln q and ln(1−q) are formed by logsumexp.
    Not monotone in t for a fixed θ0 (e.g. R_b(1) = 0 < R_b(2) at θ0 = ½ for a symmetric prior).
    """
    theta0, grid, lp = _check_theory_inputs(theta0, grid, log_prior, normalize)
    t = _check_int("t", t, low=1)
    lb = _check_base(base)
    m = t - 1
    k = np.arange(m + 1, dtype=np.float64)
    lw = lp[None] + k[:, None] * np.log(grid)[None] + (m - k)[:, None] * np.log1p(-grid)[None]
    lz = _np_logsumexp(lw, axis=1)
    lq1 = _np_logsumexp(lw + np.log(grid)[None], axis=1) - lz
    lq0 = _np_logsumexp(lw + np.log1p(-grid)[None], axis=1) - lz
    kl = theta0 * (math.log(theta0) - lq1) + (1 - theta0) * (math.log1p(-theta0) - lq0)
    weights = np.exp(_log_binom(m) + k * math.log(theta0) + (m - k) * math.log1p(-theta0))
    return float(np.sum(weights * kl) / lb)


def _check_div(div: Any, k: int | None = None) -> np.ndarray:
    check_array("div", div, ndim=1, min_size=1)
    d = np.asarray(div, np.float64)
    if k is not None and d.shape[0] != k:
        raise ValueError(f"div: expected {k} entries, got {d.shape[0]}")
    if (d < -1e-12).any():
        raise ValueError(f"div: expected divergences >= 0, got {d.min()!r}")
    return np.maximum(d, 0.0)


def hypothesis_weight(div: Any, log_prior: Any, eps: float, *, normalize: bool = False) -> float:
    """W_ε(θ0) = Σ_{j : d_j ≤ ε} w_j, the prior mass of the KL ball A_ε(θ0).

    div: f[K] per-sample divergences d(θ0, θ_j) >= 0; log_prior: f[K]; eps >= 0.
    Non-decreasing in ε; equals 1 for ε >= max(div).
    """
    d = _check_div(div)
    lp = _check_log_prior(log_prior, d.shape[0], normalize)
    _check_scalar("eps", eps, low=0.0)
    inside = d <= float(eps)
    return float(np.exp(_np_logsumexp(lp[inside]))) if inside.any() else 0.0


def regret_bound(
    div: Any, log_prior: Any, n: int, *, normalize: bool = False, base: float = math.e
) -> tuple[float, float]:
    """The universality-lens bound  R_o(n) ≤ min_ε [ε + (1/n) ln(1/W_ε(θ0))]  and its minimiser ε*.

    The objective is piecewise linear (increasing) in ε between the distinct values of ``div``
    and W_ε only jumps there, so the infimum is attained at one of them. Derivation:
    Q(x^n) ≥ ∫_{A_ε} w P_θ(x^n); Jensen on the restricted prior w/W_ε gives
    −ln Q(x^n) ≤ ln(1/W_ε) + ∫_{A_ε} (w/W_ε)(−ln P_θ(x^n)); take E under P_θ0^n and subtract the
    entropy: each θ in the ball adds at most nε.

    Args:
      div: f[K] d(θ0, θ_j) in nats; log_prior: f[K] natural-log prior; n: >= 1.
    Returns (bound, eps_star) as floats: the bound in the unit of ``base`` (nats by default),
    eps_star in nats (a value of ``div``).
    """
    d = _check_div(div)
    lp = _check_log_prior(log_prior, d.shape[0], normalize)
    n = _check_int("n", n, low=1)
    lb = _check_base(base)
    order = np.argsort(d, kind="stable")
    ds, lcum = d[order], np.logaddexp.accumulate(lp[order])
    last = np.r_[ds[1:] != ds[:-1], True]  # the last index of each distinct divergence value
    eps, lw = ds[last], lcum[last]
    obj = eps - lw / n
    i = int(np.argmin(obj))
    return float(obj[i] / lb), float(eps[i])


@functools.lru_cache(maxsize=32)
def _bates_log_masses(dim: int, g: int) -> tuple[float, ...]:
    """ln P(mean(θ) ∈ [i/g, (i+1)/g)) for θ ~ U[0,1]^dim, exactly (integers), i = 0..g−1.

    Irwin–Hall CDF of S = Σθ at s = i·dim/g:  F = N(i) / (dim! g^dim) with
    N(i) = Σ_{k ≤ s} (−1)^k C(dim, k) (i·dim − k·g)^dim  (an exact integer).
    """
    binom = [math.comb(dim, k) for k in range(dim + 1)]

    def big_n(i: int) -> int:
        s, tot = i * dim, 0
        for k in range(dim + 1):
            m = s - k * g
            if m <= 0:
                break
            tot += (-1) ** k * binom[k] * m**dim
        return tot

    cdf = [big_n(i) for i in range(g + 1)]
    denom = math.lgamma(dim + 1) + dim * math.log(g)
    return tuple(math.log(cdf[i + 1] - cdf[i]) - denom for i in range(g))


def bates_pushforward_prior(D: int, num_points: int = 4001) -> tuple[np.ndarray, np.ndarray]:
    """The push-forward of the uniform prior on θ ∈ [0,1]^D through θ -> mean(θ) (the Bates law).

    Returns ``(grid f64[G], log_prior f64[G])``: the midpoints (i + ½)/G of G = ``num_points`` equal
    cells of (0, 1) and the log of the exact cell masses (normalised). D = 1 is the uniform prior
    (Laplace's mixture); as D grows the mass concentrates at ½ with standard deviation 1/sqrt(12 D),
    the "redundant parameterisation" toy of the paper: typical hypotheses gain weight, atypical ones lose it.
    """
    D = _check_int("D", D, low=1, high=256)
    g = _check_int("num_points", num_points, low=2, high=1_000_000)
    lm = np.array(_bates_log_masses(D, g), np.float64)
    grid = (np.arange(g, dtype=np.float64) + 0.5) / g
    return grid, lm - _np_logsumexp(lm)


# ============================================================================ SGLD as an optax transformation


class SGLDState(NamedTuple):
    """State of `sgld`: ``count`` i32[] steps taken, ``key`` the noise PRNG key, ``nu`` pSGLD's V (or None)."""

    count: jax.Array
    key: jax.Array
    nu: Any


class SGLD(optax.GradientTransformation):
    """An ``optax.GradientTransformation`` (init, update) with `init_with_key` for per-chain keys."""

    __slots__ = ()

    def init_with_key(self, params: Any, key: jax.Array) -> SGLDState:
        """``init(params)`` with the noise key replaced by ``key`` (vmap this over chain keys)."""
        return set_chain_key(self.init(params), key)


def _is_key(x: Any) -> bool:
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return x.shape == ()
    return getattr(x, "shape", None) == (2,) and np.dtype(getattr(x, "dtype", np.float32)) == np.uint32


def _tree_normal(key: jax.Array, like: Any, dtype: Any = None) -> Any:
    """ξ ~ N(0, I) shaped like the pytree ``like`` (arrays or ShapeDtypeStructs), from ONE draw of the
    total size split across the leaves: one threefry instead of one per leaf, which saves seconds of
    XLA compile time per program on CPU."""
    leaves, treedef = jax.tree.flatten(like)
    sizes = [int(np.prod(x.shape)) for x in leaves]
    if dtype is None:
        dtype = jnp.result_type(*[x.dtype for x in leaves]) if leaves else jnp.result_type(float)
    flat = jax.random.normal(key, (sum(sizes),), dtype)
    out, start = [], 0
    for x, size in zip(leaves, sizes):
        out.append(flat[start : start + size].reshape(x.shape).astype(x.dtype))
        start += size
    return treedef.unflatten(out)


def set_chain_key(opt_state: Any, key: jax.Array) -> Any:
    """Replace the noise key of every `SGLDState` inside ``opt_state`` (e.g. of an ``optax.chain``).

    With several SGLD states, the i-th gets ``fold_in(key, i)``. States without SGLD are returned
    unchanged. jit/vmap-safe: vmap it over chain keys to give each chain its own noise.
    """
    if not _is_key(key):
        raise ValueError(
            "key: expected a single PRNG key (jax.random.key(s) or PRNGKey(s)), "
            f"got shape {getattr(key, 'shape', None)}"
        )
    found = []

    def repl(s):
        if isinstance(s, SGLDState):
            found.append(s)
            return s._replace(key=key if len(found) == 1 else jax.random.fold_in(key, len(found) - 1))
        return s

    return jax.tree.map(repl, opt_state, is_leaf=lambda s: isinstance(s, SGLDState))


def init_with_key(optimizer: optax.GradientTransformation, params: Any, key: jax.Array) -> Any:
    """``optimizer.init(params)`` with every SGLD noise key set from ``key`` (see `set_chain_key`)."""
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
    return set_chain_key(optimizer.init(params), key)


def sgld(
    learning_rate: float | optax.Schedule,
    temperature: float = 1.0,
    *,
    seed: int = 0,
    key: jax.Array | None = None,
    preconditioner: None | str | Any = None,
    rms_decay: float = 0.99,
    precond_eps: float = 1e-5,
    freeze_after: int | None = None,
    noise_scale: float = 1.0,
) -> SGLD:
    r"""Stochastic-gradient Langevin dynamics (and pSGLD) as an ``optax.GradientTransformation``.

    update(g, state) returns (with α = learning_rate(count) or the constant, ξ ~ N(0, I) per leaf)::

        u = −α G ⊙ g + noise_scale · sqrt(2 α T G) ⊙ ξ

    G = 1 (``preconditioner=None``); a fixed pytree of positive diagonals shaped like params
    (e.g. an empirical Fisher); or ``'rmsprop'`` (pSGLD, Li et al. 2016, without the Γ term):
    ν' = rms_decay·ν + (1 − rms_decay) g ⊙ g, G = 1/(precond_eps + sqrt(ν')), and ν stops changing
    from step ``freeze_after`` on (a constant preconditioner: exact in the small-α limit).

    ``g`` must be ∇U of the TOTAL potential U = −ln w − (n/B) Σ_batch ln P (see
    `posterior_potential`); SGLD must be the last element of an ``optax.chain`` (only
    ``optax.add_decayed_weights(1/σ_p²)``, a Gaussian prior, may precede it). With
    ``temperature = 0`` or ``noise_scale = 0`` the update is plain (preconditioned) gradient
    descent, bit for bit (the spec's T -> 0 limit; no noise is drawn for a concrete 0).
    α is blackjax's ``step_size``; Welling & Teh's ε = 2α.

    Args:
      learning_rate: α > 0, or an ``optax.Schedule`` of the step count. May be traced.
      temperature: T >= 0 (T = 1: the Bayes posterior; T = 0: plain gradient descent, bit for bit).
        May be traced (then unchecked).
      seed: int seed of the noise key (``init`` uses ``PRNGKey(seed)``).
      key: a PRNG key used instead of ``seed`` (may be traced, e.g. per population member).
      preconditioner: None, ``'rmsprop'`` or a pytree of positive diagonals.
      rms_decay: β in [0, 1); precond_eps: λ > 0; freeze_after: None or an int >= 0.
      noise_scale: multiplies the noise (>= 0); 0 gives (preconditioned) SGD.

    The state is `SGLDState` (count, key, nu), so the transformation is jit- and vmap-safe; vmap
    ``init_with_key(params, key)`` over keys to run independent chains.
    """
    if callable(learning_rate):
        schedule = learning_rate
    else:
        _check_scalar("learning_rate", learning_rate, low=0.0, low_inclusive=False)
        schedule = None
    _check_scalar("temperature", temperature, low=0.0)
    _check_scalar("noise_scale", noise_scale, low=0.0)
    _check_scalar("rms_decay", rms_decay, low=0.0, high=1.0, high_inclusive=False)
    _check_scalar("precond_eps", precond_eps, low=0.0, low_inclusive=False)
    if freeze_after is not None:
        _check_int("freeze_after", freeze_after, low=0)
    if key is None:
        _check_int("seed", seed)
    elif not _is_key(key):
        raise ValueError(f"key: expected a single PRNG key, got shape {getattr(key, 'shape', None)}")
    if preconditioner is None:
        kind = "none"
    elif isinstance(preconditioner, str):
        check_choice("preconditioner", preconditioner, ("rmsprop",))
        kind = "rmsprop"
    else:
        kind = "fixed"
        leaves = jax.tree.leaves(preconditioner)
        if not leaves:
            raise ValueError("preconditioner: expected None, 'rmsprop' or a pytree of positive arrays; got no leaves")
        for i, leaf in enumerate(leaves):
            if not is_traced(leaf):
                a = np.asarray(leaf, np.float64)
                if not (np.all(np.isfinite(a)) and np.all(a > 0)):
                    raise ValueError(
                        f"preconditioner: leaf {i} must be finite and > 0 (a diagonal G), got min {a.min()!r}"
                    )

    no_noise = any(not is_traced(v) and float(v) == 0.0 for v in (temperature, noise_scale))
    traced_temp = is_traced(temperature) or is_traced(noise_scale)

    def init(params):
        if kind == "fixed" and jax.tree.structure(preconditioner) != jax.tree.structure(params):
            raise ValueError(
                f"preconditioner: expected a pytree with the structure of params {jax.tree.structure(params)}, "
                f"got {jax.tree.structure(preconditioner)}"
            )
        nu = jax.tree.map(jnp.zeros_like, params) if kind == "rmsprop" else None
        k = jax.random.PRNGKey(seed) if key is None else key
        return SGLDState(count=jnp.zeros((), jnp.int32), key=k, nu=nu)

    def update(grads, state, params=None):
        del params
        alpha = schedule(state.count) if schedule is not None else learning_rate
        k, sub = jax.random.split(state.key)
        nu = state.nu
        if kind == "none":
            precond = None
        else:
            if kind == "rmsprop":
                nu = jax.tree.map(lambda v, g: rms_decay * v + (1.0 - rms_decay) * g * g, state.nu, grads)
                if freeze_after is not None:
                    frozen = state.count >= freeze_after
                    nu = jax.tree.map(lambda new, old: jnp.where(frozen, old, new), nu, state.nu)
                precond = jax.tree.map(lambda v: 1.0 / (precond_eps + jnp.sqrt(v)), nu)
            else:
                precond = preconditioner
        # the drift is exactly (preconditioned) SGD's update; the noise is added only where T > 0
        if precond is None:
            drift = jax.tree.map(lambda g: -alpha * g, grads)
        else:
            drift = jax.tree.map(lambda g, p: -alpha * (p * g), grads, precond)
        if no_noise:
            return drift, SGLDState(count=optax.safe_increment(state.count), key=k, nu=nu)
        xi = _tree_normal(sub, grads)
        scale = noise_scale * jnp.sqrt(2.0 * alpha * temperature)
        if precond is None:
            noisy = jax.tree.map(lambda d, e: d + scale * e, drift, xi)
        else:
            noisy = jax.tree.map(lambda d, e, p: d + scale * jnp.sqrt(p) * e, drift, xi, precond)
        if traced_temp:  # a traced T (or noise_scale) of 0 must still give the noise-free update
            noisy = jax.tree.map(lambda n, d: jnp.where(scale > 0, n, d), noisy, drift)
        return noisy, SGLDState(count=optax.safe_increment(state.count), key=k, nu=nu)

    return SGLD(init, update)


def polynomial_schedule(a: float, b: float, gamma: float = 0.55) -> optax.Schedule:
    """Welling–Teh decay α_k = a (b + k)^(−γ), with a > 0, b > 0 and γ ∈ (0.5, 1] (default 0.55)."""
    _check_scalar("a", a, low=0.0, low_inclusive=False)
    _check_scalar("b", b, low=0.0, low_inclusive=False)
    _check_scalar("gamma", gamma, low=0.5, high=1.0, low_inclusive=False)

    def schedule(count):
        return a * (b + jnp.asarray(count, float)) ** (-gamma)  # JAX's default float

    return schedule


def cyclical_schedule(a0: float, cycle_len: int) -> optax.Schedule:
    """cSGLD's cosine cycles (Zhang et al. 2020): α_k = (a0/2)(cos(π (k mod L)/L) + 1), period L.

    Collect samples in the low-step end of each cycle (k mod L close to L).
    """
    _check_scalar("a0", a0, low=0.0, low_inclusive=False)
    cycle_len = _check_int("cycle_len", cycle_len, low=1)

    def schedule(count):
        r = jnp.mod(jnp.asarray(count, jnp.int32), cycle_len).astype(float) / cycle_len
        return 0.5 * a0 * (jnp.cos(jnp.pi * r) + 1.0)

    return schedule


# ============================================================================ potential and chains


def gaussian_log_prior(prior_std: float = 1.0) -> Callable[[Any], jax.Array]:
    """ln w(θ) = −‖θ‖²/(2σ_p²) (+ const) over every leaf: the "almost uniform" wide Gaussian prior."""
    _check_scalar("prior_std", prior_std, low=0.0, low_inclusive=False)
    inv = 1.0 / (2.0 * float(prior_std) ** 2)

    def log_prior(params):
        return -inv * sum(jnp.sum(jnp.square(p)) for p in jax.tree.leaves(params))

    return log_prior


def posterior_potential(
    loglik_fn: Callable[[Any, Any], jax.Array],
    log_prior_fn: Callable[[Any], jax.Array] | None,
    n_data: int,
) -> Callable[[Any, Any], jax.Array]:
    """The minibatch potential Û(θ) = −ln w(θ) − (n/B) Σ_{i∈batch} ln P_θ(y_i|x_i).

    ``loglik_fn(params, batch) -> f[B]`` per-example log-likelihoods (B is read from its shape);
    ``log_prior_fn(params) -> f[]`` (None: a flat prior). E_batch ∇Û = ∇U for uniform batches.
    Returns ``potential(params, batch) -> f[]``, jit/vmap/grad-safe.
    """
    if not callable(loglik_fn):
        raise ValueError(f"loglik_fn: expected a callable (params, batch) -> f[B], got {type(loglik_fn).__name__}")
    if log_prior_fn is not None and not callable(log_prior_fn):
        raise ValueError(f"log_prior_fn: expected a callable params -> f[] or None, got {type(log_prior_fn).__name__}")
    n_data = _check_int("n_data", n_data, low=1)

    def potential(params, batch):
        ll = loglik_fn(params, batch)
        if jnp.ndim(ll) != 1:
            raise ValueError(f"loglik_fn: expected per-example log-likelihoods f[B], got shape {jnp.shape(ll)}")
        u = -(n_data / ll.shape[0]) * jnp.sum(ll)
        return u if log_prior_fn is None else u - log_prior_fn(params)

    return potential


def _leading_size(name: str, tree: Any) -> int:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{name}: expected a pytree of arrays with a leading data axis, got no leaves")
    sizes = {int(jnp.shape(x)[0]) if jnp.ndim(x) else -1 for x in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(f"{name}: every leaf needs the same leading (data) axis, got sizes {sorted(sizes)}")
    return sizes.pop()


def run_chains(
    key: jax.Array,
    init_fn: Callable[[jax.Array], Any],
    potential: Callable[[Any, Any], jax.Array],
    data: Any,
    *,
    num_chains: int,
    steps: int,
    burn_in: int,
    thin: int,
    batch_size: int | None = None,
    optimizer: optax.GradientTransformation,
    collect_fn: Callable[[Any], Any] | None = None,
) -> Any:
    """Run ``num_chains`` independent SGLD chains (vmap) and keep every ``thin``-th iterate after burn-in.

    Each chain: ``params = init_fn(k_init)``; the optimizer's SGLD key is set from the chain's key
    (`set_chain_key`); a ``zoo.train.TrainState`` is stepped by ``zoo.train.scan_steps`` on
    ∇potential(params, batch): ``burn_in`` steps, then num_kept = (steps − burn_in) // thin blocks of
    ``thin`` steps, keeping the iterate after each block (any remainder steps are not run).
    Batches: the whole ``data`` (``batch_size`` None or n) or, at step s, B rows drawn uniformly
    with replacement with ``fold_in(k_batch, s)`` (so E ∇Û = ∇U; no sort to compile).

    Args:
      key: PRNG key; chain c uses ``split(key, num_chains)[c]``.
      data: a pytree of arrays with a common leading axis n (e.g. ``{"x": f[n, d], "y": i[n]}``).
      optimizer: usually `sgld` (the last element of any chain).
      collect_fn: maps a kept ``params`` to what is stored (default: params themselves), e.g. the
        test-set log-probabilities, so that large models need not keep every sample.

    Returns: the collected pytree with leaves ``[num_chains, num_kept, ...]``. Works inside jit
    (static: the ints, ``batch_size``, the functions; traced: key, data, the optimizer's numbers).
    """
    for name, fn in (("init_fn", init_fn), ("potential", potential)):
        if not callable(fn):
            raise ValueError(f"{name}: expected a callable, got {type(fn).__name__}")
    if collect_fn is not None and not callable(collect_fn):
        raise ValueError(f"collect_fn: expected a callable or None, got {type(collect_fn).__name__}")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
    num_chains = _check_int("num_chains", num_chains, low=1)
    steps = _check_int("steps", steps, low=1)
    burn_in = _check_int("burn_in", burn_in, low=0)
    if burn_in >= steps:
        raise ValueError(f"burn_in: expected a value in [0, steps - 1] = [0, {steps - 1}], got {burn_in}")
    thin = _check_int("thin", thin, low=1)
    if thin > steps - burn_in:
        raise ValueError(f"thin: expected a value in [1, steps - burn_in] = [1, {steps - burn_in}], got {thin}")
    n = _leading_size("data", data)
    if batch_size is not None:
        batch_size = _check_int("batch_size", batch_size, low=1, high=n)
    if not _is_key(key):
        raise ValueError(f"key: expected a single PRNG key, got shape {getattr(key, 'shape', None)}")
    num_kept = (steps - burn_in) // thin
    n_burn_blocks, rem = divmod(burn_in, thin)
    collect = collect_fn if collect_fn is not None else (lambda p: p)

    from zoo.train import TrainState, scan_steps  # late import: zoo.train imports orbax

    def loss_fn(params, batch, rng):
        del rng
        return potential(params, batch), {}

    def chain(k, data):
        k_init, k_noise, k_batch = jax.random.split(k, 3)
        if batch_size is None or batch_size == n:
            batch_fn = lambda step: data  # noqa: E731
        else:

            def batch_fn(step):
                idx = jax.random.randint(jax.random.fold_in(k_batch, step), (batch_size,), 0, n)
                return jax.tree.map(lambda a: a[idx], data)

        state = TrainState.create(params=init_fn(k_init), optimizer=optimizer, rng=k_batch)
        state = state.replace(opt_state=set_chain_key(state.opt_state, k_noise))
        if rem:
            state, _ = scan_steps(loss_fn, optimizer, batch_fn, rem)(state)
        block = scan_steps(loss_fn, optimizer, batch_fn, thin)
        # one scan over blocks of `thin` steps (burn-in blocks included), so that the step is
        # compiled once; kept iterates are written into a preallocated buffer
        buf = jax.tree.map(lambda a: jnp.zeros((num_kept, *a.shape), a.dtype), jax.eval_shape(collect, state.params))

        def put(s, b, i):
            return jax.tree.map(
                lambda bb, v: jax.lax.dynamic_update_index_in_dim(bb, v.astype(bb.dtype), i - n_burn_blocks, 0),
                b, collect(s.params),
            )

        def body(carry, i):
            s, b = carry
            s, _ = block(s)
            b = jax.lax.cond(i >= n_burn_blocks, lambda bb: put(s, bb, i), lambda bb: bb, b)
            return (s, b), None

        return jax.lax.scan(body, (state, buf), jnp.arange(n_burn_blocks + num_kept))[0][1]

    # data is an argument (not a closure), so it is never baked into the program as a constant
    return jax.jit(jax.vmap(chain, in_axes=(0, None)))(jax.random.split(key, num_chains), data)


# ============================================================================ ensemble predictive and regret


def logits_to_log_probs(logits: jax.Array) -> jax.Array:
    """f[..., C] logits -> f[..., C] log-probabilities; C = 1 is a Bernoulli logit z -> [ln σ(−z), ln σ(z)]."""
    if not hasattr(logits, "shape"):
        logits = np.asarray(logits)
    check_array("logits", logits, ndim=range(1, 33), finite=False, kind="fiub")
    if logits.shape[-1] < 1:
        raise ValueError(f"logits: expected at least one class on the last axis, got shape {tuple(logits.shape)}")
    if not is_traced(logits) and np.isnan(np.asarray(logits)).any():
        raise ValueError("logits: contains NaN")
    if logits.shape[-1] == 1:
        return jnp.concatenate([jax.nn.log_sigmoid(-logits), jax.nn.log_sigmoid(logits)], axis=-1)
    return jax.nn.log_softmax(logits, axis=-1)


def _flatten_samples(samples: Any, sample_axes: int) -> tuple[Any, int]:
    sample_axes = _check_int("sample_axes", sample_axes, low=1)
    leaves = jax.tree.leaves(samples)
    if not leaves:
        raise ValueError("samples: expected a pytree of stacked parameters, got no leaves")
    lead = {tuple(jnp.shape(x)[:sample_axes]) for x in leaves}
    if len(lead) != 1 or any(jnp.ndim(x) < sample_axes for x in leaves):
        raise ValueError(f"samples: every leaf needs the same {sample_axes} leading sample axes, got {sorted(lead)}")
    m = int(np.prod(lead.pop()))
    if m < 1:
        raise ValueError("samples: expected at least one sample, got 0")
    return jax.tree.map(lambda x: x.reshape((m, *x.shape[sample_axes:])), samples), m


def sample_log_probs(
    apply_fn: Callable[[Any, jax.Array], jax.Array], samples: Any, x: jax.Array, *, sample_axes: int = 1
) -> jax.Array:
    """ln P_θm(·|x) for every sample: f[M, B, C], M the product of the ``sample_axes`` leading axes.

    ``apply_fn(params, x) -> logits f[B, C]`` (C = 1: a Bernoulli logit, see `logits_to_log_probs`).
    """
    if not callable(apply_fn):
        raise ValueError(f"apply_fn: expected a callable (params, x) -> logits, got {type(apply_fn).__name__}")
    check_array("x", x, ndim=range(1, 33), finite=not is_traced(x))
    flat, _ = _flatten_samples(samples, sample_axes)
    return jax.vmap(lambda p: logits_to_log_probs(apply_fn(p, x)))(flat)


def ensemble_log_predictive(
    apply_fn: Callable[[Any, jax.Array], jax.Array], samples: Any, x: jax.Array, *, sample_axes: int = 1
) -> jax.Array:
    """The mixture predictive ln Q(y|x) = logsumexp_m ln P_θm(y|x) − ln M: f[B, C].

    samples: a params pytree whose leaves have ``sample_axes`` leading axes (2 for `run_chains`'s
    [chains, kept] output); they are flattened into M members. Never the mean of log-probabilities.
    """
    lp = sample_log_probs(apply_fn, samples, x, sample_axes=sample_axes)
    return logsumexp(lp, axis=0) - jnp.log(lp.shape[0]).astype(lp.dtype)


def mixture_regret(p_true: jax.Array, log_q: jax.Array, *, base: float = math.e) -> jax.Array:
    """Mean over inputs of KL(p_true(·|x) ‖ q(·|x)) = mean_b Σ_c p_bc (ln p_bc − ln q_bc): f[].

    p_true: f[B, C] rows of probabilities; log_q: f[B, C] log-probabilities (e.g. from
    `ensemble_log_predictive`). ≥ 0, and 0 iff q = p_true on the support. Exact when the teacher is known.
    """
    check_array("p_true", p_true, ndim=2, finite=not is_traced(p_true))
    check_array("log_q", log_q, ndim=2, finite=False)
    if jnp.shape(p_true) != jnp.shape(log_q):
        raise ValueError(f"log_q: expected the shape of p_true {jnp.shape(p_true)}, got {jnp.shape(log_q)}")
    _check_prob("p_true", p_true, open_=False)
    _check_simplex("p_true", p_true)
    lb = _check_base(base)
    p_true, log_q = jnp.asarray(p_true), jnp.asarray(log_q)
    cross = jnp.where(p_true > 0, p_true * log_q, 0.0)
    return jnp.mean(jnp.sum(xlogy(p_true, p_true) - cross, axis=-1)) / lb


# ============================================================================ teacher-student task and NTK MLP


def make_teacher_student(
    key: jax.Array,
    *,
    d: int = 10,
    teacher_width: int = 4,
    teacher_scale: float = 3.0,
    n_train: int = 256,
    n_test: int = 4000,
    dtype: Any = None,
) -> dict[str, jax.Array]:
    """A known binary teacher p(y=1|x) = σ(v · tanh(W x)) with x ~ N(0, I_d).

    W: f[d, teacher_width] ~ N(0, 1/d); v: f[teacher_width] ~ N(0, teacher_scale²/teacher_width)
    (N(0, 9/4) at the defaults). Returns ``x f[n_train, d]``, ``y i32[n_train]`` ~ Bern(p),
    ``p_true f[n_train, 2]`` (columns P(y=0), P(y=1)), ``x_test f[n_test, d]``, ``p_true_test
    f[n_test, 2]``. A pure function of ``key`` (jit/vmap-safe; the sizes are static). ``dtype``:
    a floating dtype for every float output (None: JAX's default float, float32 unless x64 is on).
    """
    d = _check_int("d", d, low=1)
    teacher_width = _check_int("teacher_width", teacher_width, low=1)
    _check_scalar("teacher_scale", teacher_scale, low=0.0)
    n_train = _check_int("n_train", n_train, low=1)
    n_test = _check_int("n_test", n_test, low=1)
    if not _is_key(key):
        raise ValueError(f"key: expected a single PRNG key, got shape {getattr(key, 'shape', None)}")
    # one Gaussian draw for everything (teacher, inputs, label noise): one threefry to compile
    ft = _float_dtype_arg(dtype)
    shapes = {"w": (d, teacher_width), "v": (teacher_width,), "x": (n_train, d), "x_test": (n_test, d), "u": (n_train,)}
    z = _tree_normal(key, {k: jax.ShapeDtypeStruct(v, ft) for k, v in shapes.items()}, ft)
    w = z["w"] / math.sqrt(d)
    v = z["v"] * (teacher_scale / math.sqrt(teacher_width))

    def probs(x):
        p1 = jax.nn.sigmoid(jnp.tanh(x @ w) @ v)
        return jnp.stack([1.0 - p1, p1], axis=-1)

    x, x_test = z["x"], z["x_test"]
    p = probs(x)
    y = (jax.scipy.special.ndtr(z["u"]) < p[:, 1]).astype(jnp.int32)  # Φ(z) ~ U(0, 1): y ~ Bern(p)
    return {"x": x, "y": y, "p_true": p, "x_test": x_test, "p_true_test": probs(x_test)}


def _float_dtype_arg(dtype: Any) -> Any:
    """``dtype`` (None: JAX's default float) as a canonical floating dtype; ``TypeError`` otherwise."""
    if dtype is None:
        return jnp.result_type(float)
    try:
        dt = jnp.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype: expected a floating dtype or None, got {dtype!r}") from e
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(f"dtype: expected a floating dtype or None, got {dt}")
    return jax.dtypes.canonicalize_dtype(dt)


def mlp_init(
    key: jax.Array, d: int, width: int, num_out: int, *, depth: int = 1, bias: bool = True, dtype: Any = None
) -> dict:
    """NTK-parameterised ReLU MLP parameters, every weight and bias ~ N(0, 1).

    Returns ``{"layers": [{"w": f[fan_in, fan_out], "b": f[fan_out]}, ...]}`` with ``depth`` hidden
    layers of ``width`` and one output layer of ``num_out`` (1: a Bernoulli logit). Because the
    forward pass divides by sqrt(fan_in), the prior N(0, I) is width-independent. ``dtype``: of the
    parameters (None: JAX's default float).
    """
    d = _check_int("d", d, low=1)
    width = _check_int("width", width, low=1)
    num_out = _check_int("num_out", num_out, low=1)
    depth = _check_int("depth", depth, low=1)
    if not _is_key(key):
        raise ValueError(f"key: expected a single PRNG key, got shape {getattr(key, 'shape', None)}")
    dims = [d] + [width] * depth + [num_out]
    ft = _float_dtype_arg(dtype)
    layers = []
    for fi, fo in zip(dims[:-1], dims[1:]):
        layer = {"w": jax.ShapeDtypeStruct((fi, fo), ft)}
        if bias:
            layer["b"] = jax.ShapeDtypeStruct((fo,), ft)
        layers.append(layer)
    shapes = {"layers": layers}
    return _tree_normal(key, shapes, ft)


def mlp_apply(params: dict, x: jax.Array) -> jax.Array:
    """h_0 = x;  h_l = relu(h_{l−1} W_l / sqrt(fan_in) + b_l);  out = h_L W / sqrt(width) + b.

    params from `mlp_init`; x: f[..., d] -> logits f[..., num_out].
    """
    if not isinstance(params, dict) or not isinstance(params.get("layers"), (list, tuple)) or not params["layers"]:
        raise ValueError(f"params: expected {{'layers': [{{'w', 'b'}}, ...]}} from mlp_init, got {type(params).__name__}")
    layers = params["layers"]
    check_array("x", x, ndim=range(1, 33))
    if jnp.shape(x)[-1] != layers[0]["w"].shape[0]:
        want = layers[0]["w"].shape[0]
        raise ValueError(f"x: expected last axis {want} (the model's input width), got {jnp.shape(x)[-1]}")
    h = x
    for i, layer in enumerate(layers):
        h = h @ layer["w"] / math.sqrt(layer["w"].shape[0])
        if "b" in layer:
            h = h + layer["b"]
        if i < len(layers) - 1:
            h = jax.nn.relu(h)
    return h


def mlp_log_likelihood(params: dict, batch: dict) -> jax.Array:
    """Per-example ln P_θ(y_i|x_i): f[B], for ``batch = {"x": f[B, d], "y": i[B]}`` (categorical / Bernoulli)."""
    if not isinstance(batch, dict) or "x" not in batch or "y" not in batch:
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"batch: expected a dict with 'x' f[B, d] and 'y' i[B], got {got}")
    x, y = batch["x"], batch["y"]
    check_array("batch['x']", x, ndim=2, finite=False)
    check_array("batch['y']", y, shape=(jnp.shape(x)[0],), kind="iub")
    lp = logits_to_log_probs(mlp_apply(params, x))
    if not is_traced(y):
        yv = np.asarray(y)
        if yv.size and (yv.min() < 0 or yv.max() >= lp.shape[-1]):
            raise ValueError(f"batch['y']: expected labels in [0, {lp.shape[-1] - 1}], got range [{yv.min()}, {yv.max()}]")
    return jnp.take_along_axis(lp, jnp.asarray(y)[:, None].astype(jnp.int32), axis=-1)[:, 0]


def max_hessian_eigenvalue(
    fn: Callable[[Any], jax.Array], params: Any, key: jax.Array, *, num_iters: int = 20
) -> jax.Array:
    """λ_max of ∇²fn at params by power iteration on Hessian-vector products (num_iters HVPs).

    Use it to keep α·λ_max ≪ 1 (SGLD diverges for αλ ≥ 2). Returns f[] (the Rayleigh quotient of
    the last iterate, so a lower bound that converges to the top |eigenvalue|'s signed value).
    """
    if not callable(fn):
        raise ValueError(f"fn: expected a callable params -> f[], got {type(fn).__name__}")
    num_iters = _check_int("num_iters", num_iters, low=1)
    if not _is_key(key):
        raise ValueError(f"key: expected a single PRNG key, got shape {getattr(key, 'shape', None)}")
    flat, unravel = ravel_pytree(params)
    if flat.size == 0 or not jnp.issubdtype(flat.dtype, jnp.floating):
        raise ValueError(f"params: expected a pytree of floating arrays with >= 1 entry, got {flat.size} of {flat.dtype}")
    grad = jax.grad(lambda f: fn(unravel(f)))

    def hvp(v):
        return jax.jvp(grad, (flat,), (v,))[1]

    v0 = jax.random.normal(key, flat.shape, flat.dtype)
    v0 = v0 / jnp.linalg.norm(v0)

    def body(v, _):
        hv = hvp(v)
        return hv / (jnp.linalg.norm(hv) + 1e-30), None

    v = jax.lax.scan(body, v0, None, length=num_iters)[0]
    return jnp.vdot(v, hvp(v))
