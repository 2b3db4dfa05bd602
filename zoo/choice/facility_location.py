"""Strategyproof and proportionally fair facility location on [0, 1].

Paper: Haris Aziz, Alexander Lam, Barton E. Lee, Toby Walsh, *Strategyproof and Proportionally Fair
Facility Location*, arXiv 2111.01566 (2021); journal version: J. Math. Econ. 119 (2025). Official code:
none (a theory paper). Spec: ``papers/facility_location.md``.

n >= 2 agents report peaks x in [0, 1]^n; a mechanism f places one facility at y = f(x); agent i's cost is
|y - x_i| and its utility 1 - |y - x_i|. Every function takes profiles ``x: f[..., n]`` with any leading batch
dims (vmap-free batching; every function also works under ``jax.vmap`` and ``jax.jit``) and computes in the
dtype of ``x`` (JAX's default float for integer input).

Map from the paper / spec to functions:
  - phantom (generalised-median) mechanisms, median of x and n+1 phantoms -> `phantom_mechanism`,
    phantom vectors `init_uniform_phantoms` (k/n), `init_ifs_median_phantoms`, `init_median_phantoms`;
    the IFS-compatibility criterion for phantom vectors -> `ifs_phantom_criterion`.
  - Uniform Phantom (UP), closed form max_k min(x_(k), (n-k+1)/n) -> `uniform_phantom`.
  - baselines -> `median` (lower median x_((n+1)//2)), `mean_mechanism`, `midpoint_mechanism`.
  - fairness axioms IFS / UFS / PF as intervals y in [lo, hi] -> `feasible_interval`; all five axioms
    (plus Proportionality and Unanimity) as predicates -> `satisfies`; the total-cost-optimal fair point
    clip(median, lo, hi) -> `constrained_optimum`.
  - objectives and ratios (0/0 := 1) -> `total_cost`, `social_welfare`, `approx_ratio`; the exact worst case of
    UP over endpoint profiles (T3/T4) -> `worst_endpoint_ratio`, the profiles themselves -> `endpoint_profiles`.
  - strategyproofness by misreport search -> `manipulation_gain` (any mechanism); the exact, grid-free check
    for phantom mechanisms (outcome = clip(r, lo_i, hi_i) as a function of agent i's report) ->
    `phantom_manipulation_gain`.
  - T2 (the pure equilibrium outcome of a continuous, strictly monotone UFS mechanism is UP(x)) ->
    `nash_outcome` (default: search over the equilibrium report structure -- agents below the outcome at 0,
    above at 1, at most one interior -- with bisection; or Gauss-Seidel best-response dynamics), verified by
    `equilibrium_gap` (every agent's exact best-response improvement).
  - synthetic profiles -> `sample_profiles`.

Reconstructed / ours (the paper body was not available; definitions are the standard ones its abstract names):
  - the PF interval closed form [max_k x_(k) - (k-1)/n, min_k x_(k) + (n-k)/n] (derived in the spec, checked
    against subset enumeration in the tests); UFS groups agents by exact equality (``tie_tol`` widens it);
  - the IFS-median phantom vector (0, 1/n x ceil((n-1)/2), (n-1)/n x floor((n-1)/2), 1) and the IFS criterion
    for phantoms (spec section 2.4, [verify-vs-paper]);
  - the approximation ratios (T3: rho_SW(UP) = max_a n max(a, n-a) / (n^2 - 2a(n-a)); T4: the total-cost
    witness (0^{n-1}, eps) gives n - 1) are derived in the spec, not quoted from the paper;
  - the median baseline uses the lower median for even n; tolerances default to 1e-9 (float64) / 1e-6
    (otherwise); `manipulation_gain` always adds {0, 1} and every agent's location to the misreport grid;
  - UFS multiplicities are O(n^2) pairwise comparisons (fine for n <= 64; no run-length version);
  - no Pallas kernel: everything is a small-row sort/min/max that XLA fuses (spec section 4).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced

__all__ = [
    "AXIOMS",
    "INTERVAL_AXIOMS",
    "PROFILE_KINDS",
    "approx_ratio",
    "constrained_optimum",
    "endpoint_profiles",
    "equilibrium_gap",
    "feasible_interval",
    "ifs_phantom_criterion",
    "init_ifs_median_phantoms",
    "init_median_phantoms",
    "init_uniform_phantoms",
    "manipulation_gain",
    "mean_mechanism",
    "median",
    "midpoint_mechanism",
    "nash_outcome",
    "phantom_manipulation_gain",
    "phantom_mechanism",
    "sample_profiles",
    "satisfies",
    "social_welfare",
    "total_cost",
    "uniform_phantom",
    "worst_endpoint_ratio",
]

INTERVAL_AXIOMS = ("ifs", "ufs", "pf")
AXIOMS = ("ifs", "ufs", "prop", "pf", "unanimity")
PROFILE_KINDS = ("uniform", "endpoints", "grid", "clustered", "beta", "mixed")


# ------------------------------------------------------------------------------------------ checks


def _float(x, name="x"):
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name}: expected an array of locations, got {type(x).__name__}")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jax.dtypes.canonicalize_dtype(float))
    return x


def _check_n(name, n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name}: expected an int number of agents, got {type(n).__name__}")
    check_range(name, int(n), low=2)


def _check_profile(x, name="x"):
    """``x: f[..., n]`` with n >= 2 and every location finite and in [0, 1] (values skipped under a trace)."""
    x = _float(x, name)
    if x.ndim < 1 or x.shape[-1] < 2:
        raise ValueError(f"{name}: expected a profile f[..., n] with n >= 2 agents, got shape {tuple(x.shape)}")
    if x.size == 0:
        raise ValueError(f"{name}: expected a non-empty batch of profiles, got shape {tuple(x.shape)}")
    check_array(name, x)
    if not is_traced(x):
        v = np.asarray(x)
        if (v < 0).any() or (v > 1).any():
            raise ValueError(f"{name}: locations must lie in [0, 1]; got values in [{v.min()}, {v.max()}]")
    return x


def _check_y(y, x, name="y"):
    y = _float(y, name).astype(x.dtype)
    if jnp.broadcast_shapes(y.shape, x.shape[:-1]) != x.shape[:-1]:
        raise ValueError(f"{name}: expected a facility location per profile, shape {x.shape[:-1]}, got {y.shape}")
    check_array(name, y)
    return y


def _check_phantoms(p, n, dtype, name="phantoms"):
    p = _float(p, name).astype(dtype)
    if p.shape != (n + 1,):
        raise ValueError(f"{name}: expected n + 1 = {n + 1} phantoms (shape ({n + 1},)), got shape {tuple(p.shape)}")
    check_array(name, p)
    if not is_traced(p):
        v = np.asarray(p)
        if (v < 0).any() or (v > 1).any():
            raise ValueError(f"{name}: phantoms must lie in [0, 1]; got values in [{v.min()}, {v.max()}]")
        if (np.diff(v) < 0).any():
            raise ValueError(f"{name}: phantoms must be sorted non-decreasingly, got {v.tolist()}")
    return p


def _default_tol(dtype):
    return 1e-9 if jnp.finfo(dtype).bits >= 64 else 1e-6


def _check_mech(mech):
    if not callable(mech):
        raise TypeError(f"mech: expected a callable mechanism f(x: f[n]) -> f[], got {type(mech).__name__}")


# ------------------------------------------------------------------------------------- phantoms


def _dtype(dtype):
    return jax.dtypes.canonicalize_dtype(float) if dtype is None else dtype


def init_uniform_phantoms(n: int, dtype=None) -> jax.Array:
    """The Uniform Phantom's n + 1 phantoms k/n, k = 0..n: ``f[n+1]``."""
    _check_n("n", n)
    return jnp.arange(n + 1, dtype=_dtype(dtype)) / n


def init_ifs_median_phantoms(n: int, dtype=None) -> jax.Array:
    """IFS-median phantoms (0, 1/n x ceil((n-1)/2), (n-1)/n x floor((n-1)/2), 1): SP and IFS, not UFS."""
    _check_n("n", n)
    a, b = -(-(n - 1) // 2), (n - 1) // 2
    v = [0.0] + [1.0 / n] * a + [(n - 1.0) / n] * b + [1.0]
    return jnp.asarray(v, dtype=_dtype(dtype))


def init_median_phantoms(n: int, dtype=None) -> jax.Array:
    """Phantoms making `phantom_mechanism` the lower median x_((n+1)//2): n+1-(n+1)//2 zeros, the rest ones."""
    _check_n("n", n)
    zeros = n + 1 - (n + 1) // 2
    return jnp.concatenate([jnp.zeros(zeros, _dtype(dtype)), jnp.ones(n + 1 - zeros, _dtype(dtype))])


def ifs_phantom_criterion(phantoms) -> jax.Array:
    """Whether the phantom mechanism satisfies IFS: p_1 <= (n-1)/n, p_{n+1} >= 1/n, p_2..p_n in [1/n, (n-1)/n].

    ``phantoms: f[n+1]`` (sorted, in [0, 1]). Spec section 2.4 ([verify-vs-paper]); the tests check it
    against the empirical IFS verdict. Returns a bool scalar.
    """
    p = _float(phantoms, "phantoms")
    if p.ndim != 1 or p.shape[0] < 3:
        raise ValueError(f"phantoms: expected a 1-D vector of n + 1 >= 3 phantoms, got shape {tuple(p.shape)}")
    p = _check_phantoms(p, p.shape[0] - 1, p.dtype)
    n = p.shape[0] - 1
    lo, hi = 1.0 / n, (n - 1.0) / n
    eps = 8 * jnp.finfo(p.dtype).eps
    return (p[0] <= hi + eps) & (p[-1] >= lo - eps) & jnp.all((p[1:-1] >= lo - eps) & (p[1:-1] <= hi + eps))


def _kth(v, k):
    return jnp.sort(v, axis=-1)[..., k]


def phantom_mechanism(x, phantoms) -> jax.Array:
    """Moulin's generalised median: the (n+1)-th smallest of {x_1..x_n, p_1..p_{n+1}}.

    ``x: f[..., n]``, ``phantoms: f[n+1]`` sorted in [0, 1] -> ``y: f[...]``. SP and anonymous for every
    phantom vector.
    """
    x = _check_profile(x)
    n = x.shape[-1]
    p = _check_phantoms(phantoms, n, x.dtype)
    return _phantom_jit(x, p)


def _phantom(x, p):
    n = x.shape[-1]
    v = jnp.concatenate([x, jnp.broadcast_to(p, x.shape[:-1] + (n + 1,))], axis=-1)
    return _kth(v, n)


def _up(x):
    n = x.shape[-1]
    c = (n - jnp.arange(n, dtype=x.dtype)) / n  # (n - k + 1)/n for k = 1..n
    return jnp.max(jnp.minimum(jnp.sort(x, axis=-1), c), axis=-1)


def uniform_phantom(x) -> jax.Array:
    """Uniform Phantom: max_k min(x_(k), (n-k+1)/n), the median of x and the phantoms k/n: ``f[..., n] -> f[...]``.

    The unique SP mechanism satisfying UFS (equivalently PF, or Proportionality + Unanimity), Aziz et al.'s
    characterisation; equal to ``phantom_mechanism(x, init_uniform_phantoms(n))``.
    """
    return _up_jit(_check_profile(x))


def median(x) -> jax.Array:
    """Lower median x_((n+1)//2) (1-indexed): total-cost optimal, SP, not IFS."""
    return _median_jit(_check_profile(x))


def mean_mechanism(x) -> jax.Array:
    """Mean of the reports: UFS, continuous and strictly monotone, not SP."""
    return jnp.mean(_check_profile(x), axis=-1)


def midpoint_mechanism(x) -> jax.Array:
    """(min + max) / 2 of the reports: not SP."""
    x = _check_profile(x)
    return 0.5 * (jnp.min(x, axis=-1) + jnp.max(x, axis=-1))


# --------------------------------------------------------------------------------------- axioms


def _multiplicity(x, tie_tol):
    return jnp.sum(jnp.abs(x[..., :, None] - x[..., None, :]) <= tie_tol, axis=-1).astype(x.dtype)


def _interval(x, axiom, tie_tol):
    n = x.shape[-1]
    xs = jnp.sort(x, axis=-1)
    if axiom == "ifs":
        return xs[..., -1] - (n - 1) / n, xs[..., 0] + (n - 1) / n
    if axiom == "ufs":
        m = _multiplicity(x, tie_tol) / n
        return jnp.max(x - 1 + m, axis=-1), jnp.min(x + 1 - m, axis=-1)
    k = jnp.arange(n, dtype=x.dtype)  # k - 1 for k = 1..n
    return jnp.max(xs - k / n, axis=-1), jnp.min(xs + (n - 1 - k) / n, axis=-1)


_interval_jit = jax.jit(_interval, static_argnames=("axiom",))
_up_jit = jax.jit(_up)
_phantom_jit = jax.jit(_phantom)


@jax.jit
def _median_jit(x):
    return jnp.sort(x, axis=-1)[..., (x.shape[-1] - 1) // 2]


@partial(jax.jit, static_argnames=("axiom",))
def _constrained_jit(x, axiom, tie_tol):
    lo, hi = _interval(x, axiom, tie_tol)
    return jnp.clip(_median_jit(x), lo, hi)


def _check_tie_tol(tie_tol):
    if is_traced(tie_tol):
        return
    check_range("tie_tol", float(tie_tol), low=0.0)


def feasible_interval(x, axiom: str, tie_tol: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """The locations allowed by an axiom: y satisfies it iff lo <= y <= hi.

    Args:
      x: ``f[..., n]`` profiles.
      axiom: ``"ifs"`` (every agent gets utility >= 1/n), ``"ufs"`` (agents sharing a location z, m_z of
        them, get >= m_z/n) or ``"pf"`` (every group S gets >= |S|/n - spread(S); closed form
        [max_k x_(k) - (k-1)/n, min_k x_(k) + (n-k)/n]).
      tie_tol: UFS treats |x_i - x_j| <= tie_tol as one location (default: exact equality).

    Returns:
      ``(lo, hi)``, each ``f[...]``; nested PF within UFS within IFS, and never empty (UP lies inside).
    """
    check_choice("axiom", axiom, INTERVAL_AXIOMS)
    _check_tie_tol(tie_tol)
    return _interval_jit(_check_profile(x), axiom, tie_tol)


def constrained_optimum(x, axiom: str, tie_tol: float = 0.0) -> jax.Array:
    """The total-cost optimal location inside the axiom's interval, clip(median, lo, hi) (not SP)."""
    check_choice("axiom", axiom, INTERVAL_AXIOMS)
    _check_tie_tol(tie_tol)
    return _constrained_jit(_check_profile(x), axiom, tie_tol)


def satisfies(x, y, axiom: str, tol: float | None = None, tie_tol: float = 0.0) -> jax.Array:
    """Whether facility ``y: f[...]`` satisfies ``axiom`` on profile ``x: f[..., n]`` (``bool[...]``).

    Axioms: ``"ifs"``, ``"ufs"``, ``"pf"`` (interval tests, `feasible_interval`), ``"prop"``
    (Proportionality: on profiles with every x_i in {0, 1}, y = #{x_i = 1}/n; vacuous elsewhere) and
    ``"unanimity"`` (if all x_i equal z, y = z; vacuous elsewhere). ``tol``: slack (default 1e-9 in
    float64, 1e-6 otherwise).
    """
    check_choice("axiom", axiom, AXIOMS)
    _check_tie_tol(tie_tol)
    x = _check_profile(x)
    y = _check_y(y, x)
    tol = _default_tol(x.dtype) if tol is None else tol
    if not is_traced(tol):
        check_range("tol", float(tol), low=0.0)
    return _satisfies_jit(x, y, axiom, tol, tie_tol)


@partial(jax.jit, static_argnames=("axiom",))
def _satisfies_jit(x, y, axiom, tol, tie_tol):
    if axiom in INTERVAL_AXIOMS:
        lo, hi = _interval(x, axiom, tie_tol)
        return (y >= lo - tol) & (y <= hi + tol)
    if axiom == "prop":
        binary = jnp.all((x == 0) | (x == 1), axis=-1)
        return ~binary | (jnp.abs(y - jnp.mean(x, axis=-1)) <= tol)
    same = (jnp.max(x, axis=-1) - jnp.min(x, axis=-1)) <= tie_tol
    return ~same | (jnp.abs(y - x[..., 0]) <= tol)


# ------------------------------------------------------------------------------------ objectives


def total_cost(x, y) -> jax.Array:
    """TC(y; x) = sum_i |y - x_i|: ``f[...]``."""
    x = _check_profile(x)
    return jnp.sum(jnp.abs(_check_y(y, x)[..., None] - x), axis=-1)


def social_welfare(x, y) -> jax.Array:
    """SW(y; x) = sum_i (1 - |y - x_i|) = n - TC: ``f[...]``."""
    x = _check_profile(x)
    return x.shape[-1] - jnp.sum(jnp.abs(_check_y(y, x)[..., None] - x), axis=-1)


def _ratio(num, den):
    pos = den > 0
    r = num / jnp.where(pos, den, 1.0)
    return jnp.where(pos, r, jnp.where(num > 0, jnp.inf, 1.0)).astype(num.dtype)


def approx_ratio(x, y, objective: str = "sw") -> jax.Array:
    """Ratio to the optimum (the median): ``"sw"`` SW(med)/SW(y), ``"tc"`` TC(y)/TC(med); 0/0 := 1."""
    check_choice("objective", objective, ("sw", "tc"))
    x = _check_profile(x)
    return _approx_jit(x, _check_y(y, x), objective)


@partial(jax.jit, static_argnames=("objective",))
def _approx_jit(x, y, objective):
    med = jnp.sort(x, axis=-1)[..., (x.shape[-1] - 1) // 2]
    tc_y = jnp.sum(jnp.abs(y[..., None] - x), axis=-1)
    tc_m = jnp.sum(jnp.abs(med[..., None] - x), axis=-1)
    n = x.shape[-1]
    if objective == "tc":
        return _ratio(tc_y, tc_m)
    return _ratio(n - tc_m, n - tc_y)


def endpoint_profiles(n: int, dtype=None) -> jax.Array:
    """The n + 1 endpoint profiles: row a has a agents at 0 and n - a at 1 (``f[n+1, n]``)."""
    _check_n("n", n)
    a = jnp.arange(n + 1)[:, None]
    return (jnp.arange(n)[None, :] >= a).astype(_dtype(dtype))


def worst_endpoint_ratio(n: int, objective: str = "sw", exact: bool = False):
    """UP's worst ratio over endpoint profiles (a agents at 0, n - a at 1), by exact enumeration over a.

    ``"sw"``: max_a n max(a, n-a) / (n^2 - 2a(n-a)) (the spec's T3: UP's worst case over all profiles);
    ``"tc"``: max_a 2 max(a, n-a)/n = 2 - 2/n (UP's total-cost worst case is n - 1, on non-endpoint profiles).
    Returns a float, or a `fractions.Fraction` when ``exact``.
    """
    _check_n("n", n)
    check_choice("objective", objective, ("sw", "tc"))
    best = Fraction(1)
    for a in range(n + 1):
        b = n - a
        if objective == "sw":
            r = Fraction(n * max(a, b), n * n - 2 * a * b)
        else:
            r = Fraction(1) if min(a, b) == 0 else Fraction(2 * a * b, n * min(a, b))
        best = max(best, r)
    return best if exact else float(best)


# ------------------------------------------------------------------------------ strategyproofness


@partial(jax.jit, static_argnames=("mech", "batch_size"))
def _gain(mech, x, cands, batch_size):
    n = x.shape[-1]
    f = jax.vmap(mech)

    def one(xb):  # xb: [n], cands: [R]
        rs = jnp.concatenate([cands, xb])  # + every agent's location
        R = rs.shape[0]
        prof = jnp.broadcast_to(xb, (n, R, n))
        eye = jnp.eye(n, dtype=bool)[:, None, :]
        prof = jnp.where(eye, rs[None, :, None], prof)
        out = f(prof.reshape(n * R, n)).reshape(n, R)
        best = jnp.min(jnp.abs(out - xb[:, None]), axis=1)
        return jnp.abs(f(xb[None])[0] - xb) - best

    flat = x.reshape(-1, n)
    return jax.lax.map(one, flat, batch_size=min(batch_size, flat.shape[0])).reshape(x.shape)


def manipulation_gain(mech: Callable, x, grid, extra=None, batch_size: int = 256) -> jax.Array:
    """Per agent, the largest cost reduction a unilateral misreport buys: ``f[..., n]`` (>= 0; 0 means SP here).

    gain_i = |f(x) - x_i| - min_r |f(r, x_-i) - x_i| over r in grid U {0, 1} U {x_1..x_n} U extra.

    Args:
      mech: ``f(x: f[n]) -> f[]`` (static; vmapped internally), e.g. `mean_mechanism` or
        ``partial(phantom_mechanism, phantoms=p)``.
      x: ``f[..., n]`` profiles; grid: ``f[G]`` misreports in [0, 1]; extra: more special points
        (e.g. the phantoms).
      batch_size: profiles per vectorised block (memory n * (G + n + 2) * n per profile).
    """
    _check_mech(mech)
    x = _check_profile(x)
    grid = _float(grid, "grid").astype(x.dtype)
    if grid.ndim != 1:
        raise ValueError(f"grid: expected a 1-D array of misreports, got shape {tuple(grid.shape)}")
    check_array("grid", grid)
    if not is_traced(grid) and grid.size and ((np.asarray(grid) < 0).any() or (np.asarray(grid) > 1).any()):
        raise ValueError("grid: misreports must lie in [0, 1]")
    cands = [grid, jnp.asarray([0.0, 1.0], x.dtype)]
    if extra is not None:
        e = _float(extra, "extra").astype(x.dtype).reshape(-1)
        check_array("extra", e)
        if not is_traced(e) and ((np.asarray(e) < 0).any() or (np.asarray(e) > 1).any()):
            raise ValueError("extra: misreports must lie in [0, 1]")
        cands.append(e)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    return _gain(mech, x, jnp.concatenate(cands), batch_size)


def phantom_manipulation_gain(x, phantoms) -> jax.Array:
    """Exact (grid-free) manipulation gain of a phantom mechanism: ``f[..., n]``.

    With the other 2n values fixed, the outcome as a function of agent i's report r is clip(r, lo_i, hi_i),
    where lo_i, hi_i are the n-th and (n+1)-th smallest of the others; the best reachable cost is the distance
    from x_i to [lo_i, hi_i], so gain_i = |f(x) - x_i| - dist(x_i, [lo_i, hi_i]) (0 up to rounding: SP).
    """
    x = _check_profile(x)
    return _pmg_jit(x, _check_phantoms(phantoms, x.shape[-1], x.dtype))


@jax.jit
def _pmg_jit(x, p):
    n = x.shape[-1]
    v = jnp.concatenate([x, jnp.broadcast_to(p, x.shape[:-1] + (n + 1,))], axis=-1)
    order = jnp.argsort(v, axis=-1, stable=True)
    sv = jnp.take_along_axis(v, order, axis=-1)
    rank = jnp.argsort(order, axis=-1)[..., :n]  # position of each agent in the sorted 2n+1 values
    lo = jnp.where(rank > n - 1, sv[..., n - 1:n], sv[..., n:n + 1])
    hi = jnp.where(rank > n, sv[..., n:n + 1], sv[..., n + 1:n + 2])
    y = sv[..., n:n + 1]
    dist = jnp.maximum(jnp.maximum(lo - x, x - hi), 0.0)
    return jnp.abs(y - x) - dist


# ------------------------------------------------------------------------------------ equilibrium


@partial(jax.jit, static_argnames=("mech", "n_sweeps", "n_bisect"))
def _nash(mech, x, n_sweeps, n_bisect):
    n = x.shape[-1]

    def one(xb):
        def agent(i, r):
            def f_at(ri):
                return mech(r.at[i].set(ri))

            lo0, hi0 = f_at(jnp.zeros((), x.dtype)), f_at(jnp.ones((), x.dtype))
            return r.at[i].set(_bisect_to(f_at, xb[i], lo0, hi0, n_bisect, x.dtype))

        r = jax.lax.fori_loop(0, n_sweeps, lambda _, r: jax.lax.fori_loop(0, n, agent, r), xb)
        return r, mech(r)

    r, y = jax.vmap(one)(x.reshape(-1, n))
    return r.reshape(x.shape), y.reshape(x.shape[:-1])


def _bisect_to(g, target, lo_v, hi_v, n_bisect, dtype):
    """The report in [0, 1] where the increasing g hits target (0 / 1 when out of reach)."""

    def bis(_, ab):
        a, b = ab
        mid = 0.5 * (a + b)
        up = g(mid) < target
        return jnp.where(up, mid, a), jnp.where(up, b, mid)

    a, b = jax.lax.fori_loop(0, n_bisect, bis, (jnp.zeros((), dtype), jnp.ones((), dtype)))
    return jnp.where(lo_v >= target, 0.0, jnp.where(hi_v <= target, 1.0, 0.5 * (a + b))).astype(dtype)


@partial(jax.jit, static_argnames=("mech", "n_bisect"))
def _nash_structure(mech, x, n_bisect):
    n = x.shape[-1]
    dt = x.dtype

    def one(xb):
        order = jnp.argsort(xb)
        xs = xb[order]
        idx = jnp.arange(n)

        def to_agents(rs):  # reports in sorted order -> agents' order
            return jnp.zeros(n, dt).at[order].set(rs)

        # (a) k lowest agents at 0, the rest at 1: an NE iff x_(k-1) <= f <= x_(k)
        ext = (idx[None, :] >= jnp.arange(n + 1)[:, None]).astype(dt)
        z = jax.vmap(lambda rs: mech(to_agents(rs)))(ext)
        below = jnp.concatenate([jnp.full(1, -jnp.inf, dt), xs])  # x_(k-1), k = 0..n
        above = jnp.concatenate([xs, jnp.full(1, jnp.inf, dt)])  # x_(k)
        viol_a = jnp.maximum(below - z, 0) + jnp.maximum(z - above, 0)

        # (b) agents below j at 0, above j at 1, agent j interior with f = x_(j)
        def interior(j):
            base = (idx > j).astype(dt)

            def g(r):
                return mech(to_agents(base.at[j].set(r)))

            lo_v, hi_v = g(jnp.zeros((), dt)), g(jnp.ones((), dt))
            r = _bisect_to(g, xs[j], lo_v, hi_v, n_bisect, dt)
            rs = base.at[j].set(r)
            return rs, mech(to_agents(rs)), jnp.maximum(lo_v - xs[j], 0) + jnp.maximum(xs[j] - hi_v, 0)

        rs_b, z_b, viol_b = jax.vmap(interior)(idx)
        rs_all = jnp.concatenate([ext, rs_b])
        viol = jnp.concatenate([viol_a, viol_b])
        best = jnp.argmin(viol)
        r = to_agents(rs_all[best])
        return r, mech(r)

    r, y = jax.vmap(one)(x.reshape(-1, n))
    return r.reshape(x.shape), y.reshape(x.shape[:-1])


def nash_outcome(mech: Callable, x, method: str = "structure", n_sweeps: int = 200,
                 n_bisect: int = 50) -> tuple[jax.Array, jax.Array]:
    """A pure Nash equilibrium of the reporting game of ``mech`` (true peaks ``x: f[..., n]``).

    Needs ``mech`` continuous and strictly increasing in each report (e.g. `mean_mechanism`); by the paper's
    T2 the equilibrium outcome of a UFS such mechanism is UP(x). Two solvers:

    - ``"structure"`` (default): in an equilibrium every agent whose peak is below the outcome reports 0,
      every agent above reports 1, and at most one agent (at the outcome) reports in between. The solver
      tries the n + 1 all-extreme report profiles (k lowest agents at 0) and the n profiles with sorted
      agent j interior (its report by ``n_bisect`` bisection steps so that f = x_(j)), and returns the one
      satisfying the equilibrium conditions (the least violating one under rounding). Check the result with
      `equilibrium_gap`.
    - ``"dynamics"``: Gauss-Seidel best responses from r = x for ``n_sweeps`` sweeps (agent i's best response
      by bisection so that f = x_i, 0 or 1 when out of reach). Converges slowly when two peaks nearly
      coincide (each sweep moves the outcome by about the peak gap), so it is a cross-check, not the default.

    Returns ``(reports f[..., n], outcome f[...])``; reports are not unique, the outcome is.
    """
    _check_mech(mech)
    check_choice("method", method, ("structure", "dynamics"))
    x = _check_profile(x)
    for name, v in (("n_sweeps", n_sweeps), ("n_bisect", n_bisect)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if method == "structure":
        return _nash_structure(mech, x, n_bisect)
    return _nash(mech, x, n_sweeps, n_bisect)


@partial(jax.jit, static_argnames=("mech", "n_bisect"))
def _eq_gap(mech, x, r, n_bisect):
    n = x.shape[-1]

    def one(xb, rb):
        y = mech(rb)

        def agent(i):
            def g(v):
                return mech(rb.at[i].set(v))

            lo_v, hi_v = g(jnp.zeros((), x.dtype)), g(jnp.ones((), x.dtype))
            br = _bisect_to(g, xb[i], lo_v, hi_v, n_bisect, x.dtype)
            return jnp.abs(y - xb[i]) - jnp.abs(g(br) - xb[i])

        return jax.vmap(agent)(jnp.arange(n))

    return jax.vmap(one)(x.reshape(-1, n), r.reshape(-1, n)).reshape(x.shape)


def equilibrium_gap(mech: Callable, x, reports, n_bisect: int = 50) -> jax.Array:
    """Per agent, how much a unilateral deviation from ``reports`` lowers its cost |f - x_i| (``f[..., n]``).

    The deviation is the exact best response of a continuous, increasing ``mech`` (bisection to f = x_i, or
    an endpoint). All gaps <= tolerance means ``reports`` is a pure Nash equilibrium for peaks ``x``.
    """
    _check_mech(mech)
    x = _check_profile(x)
    r = _check_profile(reports, "reports")
    if r.shape != x.shape:
        raise ValueError(f"reports: expected the shape of x {tuple(x.shape)}, got {tuple(r.shape)}")
    if isinstance(n_bisect, bool) or not isinstance(n_bisect, int) or n_bisect < 1:
        raise ValueError(f"n_bisect: expected a positive int, got {n_bisect!r}")
    return _eq_gap(mech, x, r.astype(x.dtype), n_bisect)


# --------------------------------------------------------------------------------------- profiles


def sample_profiles(key, batch: int, n: int, kind: str = "uniform", dtype=None, levels: int = 5) -> jax.Array:
    """Random profiles ``f[batch, n]`` in [0, 1].

    Kinds: ``"uniform"`` U[0, 1]; ``"endpoints"`` each agent at 0 or 1 (prob 1/2); ``"grid"`` uniform on
    {0, 1/(levels-1), ..., 1} (ties: UFS bites); ``"clustered"`` two random centres, each agent near one
    (N(0, 0.05) noise, clipped); ``"beta"`` Beta(1/2, 1/2) (inverse CDF sin^2(pi u / 2)); ``"mixed"`` each profile uniform, grid or
    endpoints with equal probability.
    """
    _check_n("n", n)
    check_choice("kind", kind, PROFILE_KINDS)
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch: expected a positive int, got {batch!r}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels: expected an int >= 2, got {levels!r}")
    return _sample_jit(key, int(batch), int(n), kind, _dtype(dtype), levels)


@partial(jax.jit, static_argnames=("batch", "n", "kind", "dt", "levels"))
def _sample_jit(key, batch, n, kind, dt, levels):
    shape = (batch, n)
    u = jax.random.uniform(key, shape, dt)
    if kind == "uniform":
        return u
    if kind == "grid":
        return jnp.minimum(jnp.floor(u * levels), levels - 1) / (levels - 1)
    if kind == "endpoints":
        return (u < 0.5).astype(dt)
    if kind == "beta":  # Beta(1/2, 1/2) (arcsine law) by inverse CDF
        return jnp.sin(0.5 * jnp.pi * u) ** 2
    k2 = jax.random.fold_in(key, 1)
    if kind == "clustered":
        c = jax.random.uniform(k2, (batch, 2), dt)
        centre = jnp.where(u < 0.5, c[:, :1], c[:, 1:])
        return jnp.clip(centre + 0.05 * jax.random.normal(jax.random.fold_in(key, 2), shape, dt), 0.0, 1.0)
    v = jax.random.uniform(k2, (batch, 1), dt)  # mixed: one kind per profile
    which = jnp.floor(3 * v)
    grid = jnp.minimum(jnp.floor(u * levels), levels - 1) / (levels - 1)
    return jnp.where(which == 0, u, jnp.where(which == 1, grid, (u < 0.5).astype(dt)))
