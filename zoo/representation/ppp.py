r"""PPP — Probabilistic Partitive Partitioning, as pure JAX functions.

Paper: Mujahid Sultan, "Probabilistic Partitive Partitioning (PPP)", arXiv 2003.04372 (2020).
Official code: none exists (none found; the spec lists none).

**Only the abstract of the paper was available when this module was written; the body (its
algorithm box, figures and data sets) was not.** The abstract fixes the ingredients: k-means
(combinatorial, "partitive") partitions the data, a Gaussian mixture (probabilistic) validates the
k-means partitions, the result must be repeatable regardless of initial conditions, must not need the
number of clusters in advance, and can identify "the most separable set". Everything below is the
zoo's operationalisation of those statements ("PPP as specified by the zoo", spec
``papers/ppp.md``), not a claim of fidelity to unpublished details.

Algorithm (recursive probabilistic bisection, breadth first) -> functions::

    queue <- [all points]                                              ppp_fit (host loop)
    pop S; if |S| < 2 min_size or K would exceed max_leaves: leaf      ppp_fit
    l, C  <- k-means(X[S], k=2, n_init restarts)                       kmeans_fit
                 k-means++ seeding                                     kmeans_plusplus
                 l_i = argmin_k ||x_i - c_k||^2                        kmeans_assign
                 c_k = mean{x_i : l_i = k}  (Lloyd)                    kmeans_fit
    G2 <- EM(GMM, K=2) started from the partition l                    gmm_init_from_labels, gmm_fit
    G1 <- EM(GMM, K=1) on S                                            gmm_init_from_labels, gmm_fit
                 E-step  log r_ik = log pi_k + log N(x_i|mu_k,S_k) - log p(x_i)   gmm_estep
                 M-step  pi_k, mu_k, S_k + reg I from r                 gmm_mstep
    dBIC = BIC(G1) - BIC(G2);  BIC = -2 sum log p(x) + P log n         gmm_bic
    a = max(mean(l == m), mean(l != m)),  m = MAP labels of G2         agreement2
    accept <- dBIC > 0 and a >= tau_agree                              ppp_split_test (one jitted call)
    accept: enqueue the two k-means children; else S is a leaf         ppp_fit
    labels <- leaf index, leaves ordered by size then mean             canonical_labels

Extras: the adjusted Rand index ``ari`` (pair counting by sorting, jit-safe without a static number
of classes), ``silhouette_score`` (chunked), ``standardize``, and the optional flat mode
(``PPPConfig(mode='flat')``: largest k in 2..k_max whose k-means restarts are stable and agree with
the GMM started from them).

Every node function works on the FULL data array with a membership ``mask`` (bool[N]), so each is
compiled once per (N, D, static config) and reused for every node of every tree and every seed; only
the queue loop runs on the host. ``TRACE_COUNTS`` counts how often each jitted function was traced
(a diagnostic that the tests and the experiment use to prove there is no recompilation per node).

Kernels: the assignment is ``zoo.kernels.kmeans.assign_reference`` (jnp) by default; with
``use_kernel=True`` ``kmeans_assign`` calls the Pallas ``assign`` and each Lloyd step calls the fused
Pallas ``assign_accumulate`` (labels, distances and per-cluster sums in one read of x).

Choices that are the zoo's, not the paper's (the paper body was unavailable):

* Bisection with k = 2 k-means and a BIC test of a 2-component against a 1-component GMM; the GMM
  is initialised from the k-means PARTITION (hard responsibilities -> one M-step), not from its means.
* BIC stopping rule dBIC > 0; parameter count P as scikit-learn's ((K-1) + K D + K D (D+1)/2 for
  'full', (K-1) + 2 K D for 'diag').
* Agreement gate ``tau_agree`` = 0 by default (disabled; the agreement is still reported), because
  it rejects good splits of nodes that still hold several blobs.
* Defaults: min_size = 10 (raised to D + 1 for 'full' covariance), max_leaves = 64, n_init = 10,
  cov_type = 'full', reg_covar = 1e-6; k-means tol = 1e-4 (times the mean per-feature variance of the
  node), max_iter = 300; EM tol = 1e-3 on the mean log-likelihood, max_iter = 100 (scikit-learn's).
* k-means++ is the greedy variant with 2 + floor(ln k) candidates per centre (scikit-learn's);
  an empty k-means cluster is re-seeded at the point farthest from its centre (scikit-learn's).
* The restart keys of node ``i`` are ``fold_in(key, i)`` with nodes numbered 0, 1, 2, ... in
  breadth-first order, children ordered larger first (ties: lexicographic order of their means).
* Leaves are numbered canonically: decreasing size, ties by lexicographic order of the leaf mean.
* "Most separable set": the accepted split with the largest dBIC / |S|. "Separable core": points
  whose G2 posterior for their own k-means side is >= core_threshold (0.95) at every accepted split
  on their root-to-leaf path; its fraction is reported as a clusterability indicator.
* Node data are centred on the node mean before k-means and EM (translation invariance in float32).
* Flat mode thresholds: restart stability (mean pairwise ARI) >= 0.95 and ARI(k-means, GMM MAP) >= 0.9.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp

from zoo.checks import check_array, check_choice, check_range, is_traced
from zoo.kernels import kmeans as _kmeans_kernels

__all__ = [
    "COV_TYPES",
    "GMMParams",
    "KMeansResult",
    "PPPConfig",
    "PPPResult",
    "SplitRecord",
    "SplitResult",
    "TRACE_COUNTS",
    "agreement2",
    "ari",
    "canonical_labels",
    "effective_min_size",
    "gmm_bic",
    "gmm_estep",
    "gmm_fit",
    "gmm_init_from_labels",
    "gmm_mstep",
    "kmeans_assign",
    "kmeans_fit",
    "kmeans_plusplus",
    "ppp_fit",
    "ppp_split_test",
    "silhouette_score",
    "standardize",
]

COV_TYPES = ("full", "diag")
INIT_METHODS = ("k-means++", "random")
MODES = ("bisect", "flat")
_HI = jax.lax.Precision.HIGHEST  # full f32 matmuls on GPU too (no TF32): repeatability needs it

# How often each jitted node function has been traced (= compiled): a retracing diagnostic.
TRACE_COUNTS: dict[str, int] = {"kmeans_fit": 0, "gmm_fit": 0, "ppp_split_test": 0}


def _count_trace(name: str) -> None:
    TRACE_COUNTS[name] = TRACE_COUNTS.get(name, 0) + 1


# ============================================================================ containers


class KMeansResult(NamedTuple):
    """k-means output; a pytree (leading axes appear under ``vmap``)."""

    centers: jax.Array  # f[K, D]
    labels: jax.Array  # i32[N]; -1 for masked-out rows
    inertia: jax.Array  # f[]  sum_i ||x_i - c_{l_i}||^2 over masked-in rows
    n_iter: jax.Array  # i32[] Lloyd iterations run


class GMMParams(NamedTuple):
    """Gaussian mixture parameters; a pytree."""

    weights: jax.Array  # f[K]    mixing proportions pi_k
    means: jax.Array  # f[K, D] mu_k
    cov: jax.Array  # f[K, D, D] ('full') or f[K, D] ('diag') covariances Sigma_k


class SplitResult(NamedTuple):
    """One node's probabilistic bisection test (all arrays; see :func:`ppp_split_test`)."""

    labels: jax.Array  # i32[N] k-means side 0/1 inside the node, -1 outside
    dbic: jax.Array  # f[]  BIC(G1) - BIC(G2); > 0 favours the split
    agree: jax.Array  # f[]  agreement2(k-means labels, G2 MAP labels)
    accept: jax.Array  # bool[]
    sizes: jax.Array  # i32[2] sizes of the two k-means sides
    post_own: jax.Array  # f[N] G2 posterior of each point's own k-means side (0 outside)
    bic1: jax.Array  # f[]
    bic2: jax.Array  # f[]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SplitRecord:
    """One node of the PPP tree (host record).

    ``reason``: 'split' (accepted), 'bic' (dBIC <= 0), 'agreement' (a < tau_agree), 'small_child'
    (a k-means side smaller than min_size), 'too_small' (|S| < 2 min_size, not tested),
    'max_leaves' (not tested: splitting would exceed max_leaves).
    """

    node_id: int
    parent: int  # -1 for the root
    depth: int
    size: int
    dbic: float  # nan when not tested
    agree: float  # nan when not tested
    accept: bool
    reason: str
    children: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class PPPResult:
    """Output of :func:`ppp_fit` (host numpy arrays)."""

    labels: np.ndarray  # i32[N] in 0..K-1, canonical order
    n_clusters: int  # K
    tree: tuple[SplitRecord, ...]  # every node visited, breadth first (empty in flat mode)
    core_mask: np.ndarray  # bool[N] separable core
    core_fraction: float  # mean(core_mask): the clusterability indicator
    most_separable: int  # node id of the accepted split with the largest dBIC/|S| (-1: none)
    most_separable_labels: np.ndarray  # i32[N] 0/1 for its two children, -1 elsewhere
    leaf_sizes: tuple[int, ...]  # sizes of clusters 0..K-1
    flat_scores: tuple[tuple[int, float, float], ...] = ()  # flat mode: (k, stability s_k, agreement A_k)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPPConfig:
    """PPP hyperparameters (defaults: the zoo's operationalisation, spec section 2.2).

    Attributes:
      min_size: smallest allowed cluster; a node with fewer than 2 min_size points is a leaf, a split
        with a side smaller than min_size is rejected. For 'full' covariance at least D + 1 is used.
      tau_agree: agreement gate in [0, 1]; 0 disables it (default), 1 accepts only perfect agreement.
      max_leaves: upper bound on K.
      n_init: k-means restarts per node (best inertia kept).
      cov_type: 'full' or 'diag' GMM covariance.
      reg_covar: added to covariance diagonals in every M-step.
      standardize: z-score each feature before fitting (for real data on mixed scales).
      mode: 'bisect' (default) or 'flat' (section 2.3 of the spec).
      k_max: largest k tried in flat mode.
      kmeans_max_iter, kmeans_tol, gmm_max_iter, gmm_tol: Lloyd / EM stopping rules.
      core_threshold: posterior a point needs at every split on its path to be in the separable core.
      flat_stability, flat_agreement: flat-mode thresholds on s_k and A_k.
      use_kernel: use the Pallas ``zoo.kernels.kmeans.assign`` for the k-means assignment.
    """

    min_size: int = 10
    tau_agree: float = 0.0
    max_leaves: int = 64
    n_init: int = 10
    cov_type: str = "full"
    reg_covar: float = 1e-6
    standardize: bool = False
    mode: str = "bisect"
    k_max: int = 10
    kmeans_max_iter: int = 300
    kmeans_tol: float = 1e-4
    gmm_max_iter: int = 100
    gmm_tol: float = 1e-3
    core_threshold: float = 0.95
    flat_stability: float = 0.95
    flat_agreement: float = 0.9
    use_kernel: bool = False

    def __post_init__(self):
        check_range("min_size", self.min_size, low=1)
        check_range("tau_agree", self.tau_agree, low=0.0, high=1.0)
        check_range("max_leaves", self.max_leaves, low=1)
        check_range("n_init", self.n_init, low=1)
        check_choice("cov_type", self.cov_type, COV_TYPES)
        check_range("reg_covar", self.reg_covar, low=0.0)
        check_choice("standardize", self.standardize, (True, False))
        check_choice("mode", self.mode, MODES)
        check_range("k_max", self.k_max, low=2)
        check_range("kmeans_max_iter", self.kmeans_max_iter, low=1)
        check_range("kmeans_tol", self.kmeans_tol, low=0.0)
        check_range("gmm_max_iter", self.gmm_max_iter, low=1)
        check_range("gmm_tol", self.gmm_tol, low=0.0)
        check_range("core_threshold", self.core_threshold, low=0.5, high=1.0)
        check_range("flat_stability", self.flat_stability, low=0.0, high=1.0)
        check_range("flat_agreement", self.flat_agreement, low=-1.0, high=1.0)
        check_choice("use_kernel", self.use_kernel, (True, False))


def effective_min_size(cfg: PPPConfig, n_features: int) -> int:
    """min_size actually used: ``max(min_size, D + 1)`` for 'full' covariance, else ``min_size``."""
    if not isinstance(cfg, PPPConfig):
        raise ValueError(f"cfg: expected a PPPConfig, got {type(cfg).__name__}")
    if isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)):
        raise ValueError(f"n_features: expected a positive int, got {n_features!r}")
    check_range("n_features", n_features, low=1)
    return max(cfg.min_size, n_features + 1) if cfg.cov_type == "full" else cfg.min_size


# ============================================================================ validation


def _float_dtype(dtype: Any) -> Any:
    """The compute dtype for inputs of ``dtype``: a float dtype kept (16-bit floats promoted to float32),
    JAX's default float for integers and bools (float64 only when x64 is enabled)."""
    if jnp.issubdtype(dtype, jnp.floating):
        return jnp.promote_types(jax.dtypes.canonicalize_dtype(dtype), jnp.float32)
    return jax.dtypes.canonicalize_dtype(float)


def _as_float(x: Any) -> jax.Array:
    """jnp array in the compute dtype of :func:`_float_dtype`."""
    x = jnp.asarray(x)
    return x.astype(_float_dtype(x.dtype))


def _check_x(x: Any, name: str = "X") -> jax.Array:
    """X must be a finite 2-D array with N >= 1 rows and D >= 1 columns."""
    check_array(name, x, ndim=2, min_size=1)
    check_range(f"{name}.shape[1] (number of features)", x.shape[1], low=1)
    return _as_float(x)


def _check_mask(mask: Any, n: int) -> jax.Array:
    if mask is None:
        return jnp.ones((n,), bool)
    check_array("mask", mask, ndim=1, shape=(n,), kind="b")
    return jnp.asarray(mask)


def _n_in(mask: jax.Array) -> int | None:
    """Number of masked-in rows, or None inside a trace."""
    return None if is_traced(mask) else int(np.asarray(mask).sum())


def _check_k(k: Any, mask: jax.Array) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise ValueError(f"k: expected a Python int, got {k!r}")
    check_range("k", k, low=1)
    n = _n_in(mask)
    if n is not None:
        check_range("k (at most the number of masked-in points)", k, low=1, high=n)


def _check_params(params: GMMParams, d: int, cov_type: str) -> GMMParams:
    """Shapes always; on concrete values also: finite, weights >= 0 summing to 1 (within 1e-4), every
    covariance positive definite ('full': symmetric within 1e-5 relative and a float64 Cholesky succeeds;
    'diag': entries > 0)."""
    if not isinstance(params, tuple) or len(params) != 3:
        raise ValueError(f"params: expected GMMParams(weights, means, cov), got {type(params).__name__}")
    w, mu, cov = (jnp.asarray(p) for p in params)
    check_array("params.weights", w, ndim=1, min_size=1)
    k = w.shape[0]
    check_array("params.means", mu, shape=(k, d))
    name = f"params.cov ({cov_type!r} covariance)"
    check_array(name, cov, shape=(k, d, d) if cov_type == "full" else (k, d))
    if not is_traced(w):
        wn = np.asarray(w, np.float64)
        if (wn < 0).any():
            i = int(np.flatnonzero(wn < 0)[0])
            raise ValueError(f"params.weights: expected mixing proportions >= 0, got {wn[i]} at component {i}")
        if abs(wn.sum() - 1.0) > 1e-4:
            raise ValueError(f"params.weights: expected mixing proportions summing to 1, got sum {wn.sum():.6g}")
    if not is_traced(cov):
        cn = np.asarray(cov, np.float64)
        if cov_type == "diag":
            if (cn <= 0).any():
                i = tuple(int(j) for j in np.argwhere(cn <= 0)[0])
                raise ValueError(f"{name}: expected variances > 0 (positive definite), got {cn[i]} at index {i}")
        else:
            for j, c in enumerate(cn):
                scale = max(float(np.abs(c).max()), np.finfo(np.float64).tiny)
                if np.abs(c - c.T).max() > 1e-5 * scale:
                    raise ValueError(f"{name}: expected symmetric matrices, component {j} is not")
                try:
                    np.linalg.cholesky(c)
                except np.linalg.LinAlgError:
                    raise ValueError(f"{name}: expected positive definite matrices, component {j} is not "
                                     f"(smallest eigenvalue {np.linalg.eigvalsh(c)[0]:.3g})") from None
    dt = _float_dtype(jnp.result_type(w, mu, cov))
    return GMMParams(w.astype(dt), mu.astype(dt), cov.astype(dt))


# ============================================================================ small helpers


def _masked_mean(x: jax.Array, maskf: jax.Array) -> jax.Array:
    """mean of the masked-in rows: x f[N, D], maskf f[N] -> f[D]."""
    return jnp.matmul(maskf, x, precision=_HI) / jnp.maximum(maskf.sum(), 1.0)


def _sqdist(x: jax.Array, c: jax.Array) -> jax.Array:
    """||x_i - c_j||^2 = ||x||^2 - 2 x.c + ||c||^2 (clamped at 0): f[N, D], f[M, D] -> f[N, M]."""
    xc = jnp.matmul(x, c.T, precision=_HI)
    return jnp.maximum(jnp.sum(x * x, 1)[:, None] - 2.0 * xc + jnp.sum(c * c, 1)[None, :], 0.0)


def standardize(x: Any) -> jax.Array:
    """z-score each feature: (x - mean) / std; constant features get std 1. x: f[N, D] -> f[N, D]."""
    x = _check_x(x)
    sd = jnp.std(x, axis=0)
    return (x - jnp.mean(x, axis=0)) / jnp.where(sd > 0, sd, 1.0)


# ============================================================================ k-means


def kmeans_assign(
    x: jax.Array,
    c: jax.Array,
    mask: jax.Array | None = None,
    *,
    use_kernel: bool = False,
    interpret: bool | None = None,
):
    """Nearest-centre assignment l_i = argmin_k ||x_i - c_k||^2 (ties -> lowest k).

    Delegates to the shared kernel module: the jnp ``zoo.kernels.kmeans.assign_reference`` by default,
    the Pallas ``zoo.kernels.kmeans.assign`` with ``use_kernel=True``.

    Args:
      x: f[N, D] points.  c: f[K, D] centres.  mask: optional bool[N]; masked-out rows get label -1, d2 0.
    Returns:
      (labels i32[N], d2 f[N]) with d2_i = min_k ||x_i - c_k||^2.

    Validated like the kernel (``zoo.kernels.kmeans`` boundary checks: shapes, finite x and c, a bool
    mask) whichever path runs; values are checked only outside ``jit``.
    """
    check_choice("use_kernel", use_kernel, (True, False))
    x = _check_x(x, "x")
    c = _check_x(c, "c")
    if mask is not None:
        mask = _check_mask(mask, x.shape[0])
    _kmeans_kernels._validate(x, c, mask, 256, 128, interpret)  # c's width, interpret
    if not use_kernel:
        return _kmeans_kernels.assign_reference(x, c, mask)
    assign = getattr(_kmeans_kernels, "assign", None)
    if assign is None:
        raise ValueError("use_kernel=True: zoo.kernels.kmeans.assign (the Pallas kernel) is not available")
    return assign(x, c, mask, interpret=interpret)


def _sample_index(key, w, shape, last_valid):
    """Inverse-CDF draw of indices with probability w_i / sum(w); zero-weight rows are never drawn."""
    cdf = jnp.cumsum(w)
    u = jax.random.uniform(key, shape, dtype=w.dtype) * cdf[-1]
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), last_valid)


def _kmeans_plusplus_impl(key, x, mask, k: int):
    """Greedy k-means++ (2 + floor(ln k) candidates per centre, keep the one minimising the potential)."""
    n, d = x.shape
    maskf = mask.astype(x.dtype)
    last_valid = jnp.max(jnp.where(mask, jnp.arange(n), -1))
    n_trials = 2 + int(math.log(k))
    key, k0 = jax.random.split(key)
    first = _sample_index(k0, maskf, (), last_valid)
    centers = jnp.zeros((k, d), x.dtype).at[0].set(x[first])
    closest = jnp.where(mask, _sqdist(x, x[first][None])[:, 0], 0.0)  # D(x)^2 to the chosen centres

    def body(j, state):
        centers, closest, key = state
        key, sub = jax.random.split(key)
        pot = closest.sum()
        w = jnp.where(pot > 0, closest, maskf)  # all points on centres already -> uniform
        cand = _sample_index(sub, w, (n_trials,), last_valid)
        dist = jnp.where(mask[None, :], _sqdist(x, x[cand]).T, 0.0)  # [T, N]
        new = jnp.minimum(closest[None, :], dist)
        best = jnp.argmin(new.sum(1))
        return centers.at[j].set(x[cand[best]]), new[best], key

    centers, _, _ = jax.lax.fori_loop(1, k, body, (centers, closest, key))
    return centers


def kmeans_plusplus(key: jax.Array, x: Any, k: int, mask: Any = None) -> jax.Array:
    """k-means++ seeding: first centre uniform over the masked-in rows, then each next centre drawn with
    probability D(x)^2 / sum D^2 (greedy: best of 2 + floor(ln k) draws by the resulting potential).

    Args:
      key: PRNG key.  x: f[N, D].  k: number of centres (static).  mask: optional bool[N].
    Returns:
      C: f[k, D], rows of x.
    """
    x = _check_x(x)
    mask = _check_mask(mask, x.shape[0])
    _check_k(k, mask)
    return _kmeans_plusplus_jit(key, x, mask, k=k)


_kmeans_plusplus_jit = jax.jit(_kmeans_plusplus_impl, static_argnames=("k",))


def _random_init(key, x, mask, k: int):
    """k distinct masked-in rows drawn uniformly (scikit-learn's init='random')."""
    p = mask.astype(x.dtype) / jnp.maximum(mask.sum(), 1)
    return x[jax.random.choice(key, x.shape[0], (k,), replace=False, p=p)]


def _assign_accumulate(x, c, mask, use_kernel: bool):
    """Assignment plus the Lloyd statistics: (labels i32[N], d2 f[N], sums f[K, D], counts f[K]) with
    sums_k = sum_{l_i = k} x_i. Reference: one-hot GEMM (deterministic, no scatter-add atomics);
    kernel: the fused Pallas ``zoo.kernels.kmeans.assign_accumulate`` (reads x once)."""
    k = c.shape[0]
    if use_kernel and k <= getattr(_kmeans_kernels, "MAX_ACCUMULATE_K", 0):
        labels, d2, sums, counts = _kmeans_kernels.assign_accumulate(x, c, mask)
        return labels, d2, sums.astype(x.dtype), counts.astype(x.dtype)
    labels, d2 = kmeans_assign(x, c, mask, use_kernel=use_kernel)
    onehot = jax.nn.one_hot(labels, k, dtype=x.dtype)  # label -1 -> zero row
    return labels, d2, jnp.matmul(onehot.T, x, precision=_HI), onehot.sum(0)


def _lloyd(x, mask, c0, max_iter, tol_abs, use_kernel: bool) -> KMeansResult:
    """Lloyd iterations from c0 (scikit-learn's loop): assign, update means, relocate empty clusters;
    stop on unchanged labels, on sum_k ||c_k' - c_k||^2 <= tol_abs, or after max_iter; then one last
    assignment so labels match the returned centres. x: f[N, D] (node-centred), c0: f[K, D]."""
    k = c0.shape[0]

    def update(labels, d2, sums, counts, c):
        # empty cluster j (j-th empty in index order) <- the j-th farthest point from its centre,
        # removed from its old cluster (scikit-learn's _relocate_empty_clusters)
        empty = counts == 0
        far = jax.lax.top_k(jnp.where(mask, d2, -jnp.inf), k)[1]
        pick = far[jnp.clip(jnp.cumsum(empty) - 1, 0, k - 1)]
        moved = jax.nn.one_hot(labels[pick], k, dtype=x.dtype) * empty[:, None].astype(x.dtype)  # [j, old]
        pts = x[pick]
        sums = jnp.where(empty[:, None], pts, sums) - jnp.matmul(moved.T, pts, precision=_HI)
        counts = jnp.where(empty, 1.0, counts) - moved.sum(0)
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], c)

    def cond(s):
        _, _, it, done = s
        return (it < max_iter) & ~done

    def body(s):
        c, labels_prev, it, _ = s
        labels, d2, sums, counts = _assign_accumulate(x, c, mask, use_kernel)
        c_new = update(labels, d2, sums, counts, c)
        done = jnp.all(labels == labels_prev) | (jnp.sum((c_new - c) ** 2) <= tol_abs)
        return c_new, labels, it + 1, done

    labels0 = jnp.full(mask.shape, -1, jnp.int32)
    c, _, n_iter, _ = jax.lax.while_loop(cond, body, (c0, labels0, jnp.int32(0), jnp.bool_(False)))
    labels, _ = kmeans_assign(x, c, mask, use_kernel=use_kernel)
    resid = jnp.sum((x - c[jnp.maximum(labels, 0)]) ** 2, axis=1)  # exact form, as scikit-learn
    inertia = jnp.sum(jnp.where(mask, resid, 0.0))
    return KMeansResult(c, labels, inertia, n_iter)


def _kmeans_restarts(key, x, mask, init, max_iter, tol, *, k, n_init, init_method, use_kernel) -> KMeansResult:
    """All n_init Lloyd runs (leading axis n_init), vmapped over restart keys; x is centred on the
    masked mean first (centres are returned in the original coordinates)."""
    maskf = mask.astype(x.dtype)
    mu = _masked_mean(x, maskf)
    xc = x - mu
    var = _masked_mean((xc * mask[:, None]) ** 2, maskf)  # per-feature masked variance
    tol_abs = tol * jnp.mean(var)
    if init is not None:
        c0 = (init - mu)[None]
    else:
        keys = jax.random.split(key, n_init)
        seed = _kmeans_plusplus_impl if init_method == "k-means++" else _random_init
        c0 = jax.vmap(lambda kk: seed(kk, xc, mask, k))(keys)
    runs = jax.vmap(lambda c: _lloyd(xc, mask, c, max_iter, tol_abs, use_kernel))(c0)
    return runs._replace(centers=runs.centers + mu)


def _best_run(runs: KMeansResult) -> KMeansResult:
    b = jnp.argmin(runs.inertia)  # ties -> first restart
    return jax.tree.map(lambda a: a[b], runs)


def _kmeans_fit_impl(key, x, mask, init, max_iter, tol, *, k, n_init, init_method, use_kernel):
    _count_trace("kmeans_fit")
    return _best_run(
        _kmeans_restarts(
            key, x, mask, init, max_iter, tol, k=k, n_init=n_init, init_method=init_method, use_kernel=use_kernel
        )
    )


_kmeans_fit_jit = jax.jit(_kmeans_fit_impl, static_argnames=("k", "n_init", "init_method", "use_kernel"))


def kmeans_fit(
    key: jax.Array | None,
    x: Any,
    k: int,
    *,
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
    mask: Any = None,
    init: Any = "k-means++",
    use_kernel: bool = False,
) -> KMeansResult:
    """k-means (Lloyd) with n_init restarts; the restart with the lowest inertia is returned.

    Inertia = sum_i min_k ||x_i - c_k||^2. Convergence: labels unchanged, or
    sum_k ||c_k' - c_k||^2 <= tol * mean_d Var(x[:, d]) (over masked-in rows), or max_iter iterations.

    Args:
      key: PRNG key (unused, may be None, when ``init`` is an array).
      x: f[N, D].  k: number of clusters (static int, 1 <= k <= masked-in rows).
      n_init: restarts (static), run in parallel with ``vmap``; ignored when ``init`` is an array.
      max_iter, tol: stopping rule (traced: changing them does not recompile).
      mask: optional bool[N]; masked-out rows are ignored and get label -1.
      init: 'k-means++' (default), 'random' (k distinct rows uniformly) or f[k, D] initial centres
        (one deterministic run).
      use_kernel: assignment by the Pallas kernel instead of the jnp reference (static).
    Returns:
      KMeansResult(centers f[k, D], labels i32[N], inertia f[], n_iter i32[]).
    """
    x = _check_x(x)
    mask = _check_mask(mask, x.shape[0])
    _check_k(k, mask)
    check_range("n_init", n_init, low=1)
    check_range("max_iter", max_iter, low=1)
    check_range("tol", tol, low=0.0)
    if isinstance(init, str):
        check_choice("init", init, INIT_METHODS)
        if key is None:
            raise ValueError(f"key: a PRNG key is required with init={init!r}")
        init_arr, method = None, init
    else:
        check_array("init", init, shape=(k, x.shape[1]))
        init_arr, method, n_init = _as_float(init).astype(x.dtype), "given", 1
        key = jax.random.key(0) if key is None else key
    return _kmeans_fit_jit(
        key, x, mask, init_arr, max_iter, tol, k=k, n_init=n_init, init_method=method, use_kernel=bool(use_kernel)
    )


# ============================================================================ Gaussian mixture


def _log_gauss(x, params: GMMParams, cov_type: str) -> jax.Array:
    """log N(x_i | mu_k, Sigma_k) = -1/2 [D log 2 pi + log det Sigma_k + (x-mu_k)^T Sigma_k^{-1} (x-mu_k)].

    'full': Sigma = L L^T (Cholesky); P = L^{-T} is the Cholesky factor of the precision, so the
    Mahalanobis term is ||P^T (x - mu)||^2 = ||L^{-1} (x - mu)||^2 and log det Sigma = 2 sum log diag L.
    x: f[N, D] -> f[N, K].
    """
    _, mu, cov = params
    d = x.shape[1]
    if cov_type == "full":
        chol = jnp.linalg.cholesky(cov)  # [K, D, D] lower
        eye = jnp.broadcast_to(jnp.eye(d, dtype=x.dtype), cov.shape)
        linv = solve_triangular(chol, eye, lower=True)  # L^{-1}
        y = jnp.einsum("nd,ked->nke", x, linv, precision=_HI) - jnp.einsum("kd,ked->ke", mu, linv, precision=_HI)
        maha = jnp.sum(y * y, axis=-1)
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    else:
        maha = jnp.sum((x[:, None, :] - mu[None]) ** 2 / cov[None], axis=-1)
        logdet = jnp.sum(jnp.log(cov), axis=-1)
    return -0.5 * (d * math.log(2.0 * math.pi) + logdet[None, :] + maha)


def _estep(x, params, cov_type):
    log_rho = jnp.log(params.weights)[None, :] + _log_gauss(x, params, cov_type)  # log pi_k + log N
    log_px = logsumexp(log_rho, axis=1)
    return log_rho - log_px[:, None], log_px


def _mstep(x, resp, mask, cov_type, reg):
    """n_k = sum_i r_ik (+10 eps), pi_k = n_k / sum n_k, mu_k = sum_i r_ik x_i / n_k,
    Sigma_k = sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T / n_k + reg I (diag: the diagonal only)."""
    r = jnp.where(mask[:, None], resp, 0.0)  # where, not *: NaN/inf outside the mask must not leak in
    nk = r.sum(0) + 10 * jnp.finfo(x.dtype).eps  # scikit-learn's guard against empty components
    means = jnp.matmul(r.T, x, precision=_HI) / nk[:, None]
    diff = x[:, None, :] - means[None]  # [N, K, D]
    if cov_type == "full":
        cov = jnp.einsum("nk,nkd,nke->kde", r, diff, diff, precision=_HI) / nk[:, None, None]
        cov = cov + reg * jnp.eye(x.shape[1], dtype=x.dtype)
    else:
        cov = jnp.einsum("nk,nkd->kd", r, diff * diff, precision=_HI) / nk[:, None] + reg
    return GMMParams(nk / nk.sum(), means, cov)


def _mean_loglik(log_px, mask):
    return jnp.sum(jnp.where(mask, log_px, 0.0)) / jnp.maximum(mask.sum(), 1)


def _gmm_fit_impl(x, params0, mask, reg, max_iter, tol, *, cov_type):
    """EM until |change of the mean log-likelihood| < tol or max_iter (scikit-learn's rule), then the
    mean log-likelihood of the returned parameters."""
    _count_trace("gmm_fit")

    def cond(s):
        _, _, it, done = s
        return (it < max_iter) & ~done

    def body(s):
        params, prev, it, _ = s
        log_resp, log_px = _estep(x, params, cov_type)
        ll = _mean_loglik(log_px, mask)
        params = _mstep(x, jnp.exp(log_resp), mask, cov_type, reg)
        return params, ll, it + 1, jnp.abs(ll - prev) < tol

    init = (params0, jnp.array(-jnp.inf, x.dtype), jnp.int32(0), jnp.bool_(False))
    params, _, n_iter, _ = jax.lax.while_loop(cond, body, init)
    return params, _mean_loglik(_estep(x, params, cov_type)[1], mask), n_iter


_gmm_fit_jit = jax.jit(_gmm_fit_impl, static_argnames=("cov_type",))
_estep_jit = jax.jit(_estep, static_argnames=("cov_type",))
_mstep_jit = jax.jit(_mstep, static_argnames=("cov_type",))


def _n_params(k: int, d: int, cov_type: str) -> int:
    """Free parameters: (K-1) + K D + K D (D+1)/2 ('full') or (K-1) + 2 K D ('diag')."""
    return (k - 1) + k * d + (k * d * (d + 1) // 2 if cov_type == "full" else k * d)


def _bic(x, params, mask, cov_type):
    """BIC = -2 sum_i log p(x_i) + P log n over the masked-in rows."""
    _, log_px = _estep(x, params, cov_type)
    n = jnp.maximum(mask.sum(), 1).astype(x.dtype)
    k, d = params.means.shape
    return -2.0 * jnp.sum(jnp.where(mask, log_px, 0.0)) + _n_params(k, d, cov_type) * jnp.log(n)


_bic_jit = jax.jit(_bic, static_argnames=("cov_type",))


def _init_from_labels(x, labels, mask, reg, *, k, cov_type):
    return _mstep(x, jax.nn.one_hot(labels, k, dtype=x.dtype), mask, cov_type, reg)


_init_from_labels_jit = jax.jit(_init_from_labels, static_argnames=("k", "cov_type"))


def gmm_estep(x: Any, params: GMMParams, cov_type: str = "full"):
    """E-step: log rho_ik = log pi_k + log N(x_i | mu_k, Sigma_k), log p(x_i) = logsumexp_k log rho_ik,
    log r_ik = log rho_ik - log p(x_i).

    Args:
      x: f[N, D].  params: GMMParams (K components): weights >= 0 summing to 1, covariances symmetric
        positive definite (checked outside ``jit``).  cov_type: 'full' | 'diag'.
    Returns:
      (log_resp f[N, K], log_px f[N]) in the promoted float dtype of x and params.
    """
    check_choice("cov_type", cov_type, COV_TYPES)
    x = _check_x(x)
    return _estep_jit(x, _check_params(params, x.shape[1], cov_type), cov_type=cov_type)


def gmm_mstep(x: Any, resp: Any, mask: Any = None, cov_type: str = "full", reg: float = 1e-6) -> GMMParams:
    """M-step from responsibilities ``resp`` (f[N, K], rows summing to 1; masked-out rows ignored):
    n_k = sum_i r_ik, pi_k = n_k / N, mu_k = sum_i r_ik x_i / n_k,
    Sigma_k = sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T / n_k + reg I.
    """
    check_choice("cov_type", cov_type, COV_TYPES)
    check_range("reg_covar", reg, low=0.0)
    x = _check_x(x)
    check_array("resp", resp, ndim=2, shape=(x.shape[0], None))
    check_range("resp.shape[1] (number of components)", np.shape(resp)[1], low=1)
    mask = _check_mask(mask, x.shape[0])
    if not is_traced(resp) and not is_traced(mask):
        r = np.asarray(resp, np.float64)[np.asarray(mask)]
        if (r < 0).any():
            raise ValueError(f"resp: expected responsibilities >= 0, got minimum {r.min():.6g}")
        dev = np.abs(r.sum(1) - 1.0)
        if dev.size and dev.max() > 1e-3:
            i = int(np.argmax(dev))
            raise ValueError(f"resp: expected rows summing to 1 (masked-in rows), got a row summing to "
                             f"{r[i].sum():.6g}")
    return _mstep_jit(x, _as_float(resp).astype(x.dtype), mask, cov_type=cov_type, reg=reg)


def gmm_init_from_labels(
    x: Any, labels: Any, k: int, mask: Any = None, cov_type: str = "full", reg: float = 1e-6
) -> GMMParams:
    """GMM started FROM A PARTITION: one M-step on hard responsibilities r_ik = 1[l_i = k].

    Args:
      x: f[N, D].  labels: i32[N] in 0..k-1 (-1 = ignored).  k: components (static).
    Returns:
      GMMParams(weights f[k], means f[k, D], cov f[k, D, D] | f[k, D]).
    """
    check_choice("cov_type", cov_type, COV_TYPES)
    check_range("reg_covar", reg, low=0.0)
    x = _check_x(x)
    mask = _check_mask(mask, x.shape[0])
    _check_k(k, mask)
    check_array("labels", labels, shape=(x.shape[0],), kind="iu")
    if not is_traced(labels):
        lab = np.asarray(labels)
        bad = (lab < -1) | (lab >= k)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"labels: expected values in [-1, {k - 1}] (0..k-1, -1 = ignored) for k={k}, "
                             f"got {lab[i]} at index {i}")
    return _init_from_labels_jit(x, jnp.asarray(labels), mask, reg, k=k, cov_type=cov_type)


def gmm_fit(
    x: Any,
    params0: GMMParams,
    *,
    cov_type: str = "full",
    reg: float = 1e-6,
    max_iter: int = 100,
    tol: float = 1e-3,
    mask: Any = None,
):
    """EM for a Gaussian mixture from ``params0`` (a ``lax.while_loop``).

    Each iteration: E-step (:func:`gmm_estep`), mean log-likelihood L = (1/n) sum_i log p(x_i) of the
    current parameters, M-step (:func:`gmm_mstep`); stop when |L - L_prev| < tol or after max_iter.

    Args:
      x: f[N, D].  params0: initial GMMParams.  cov_type: 'full' | 'diag' (static).
      reg: reg_covar >= 0.  max_iter, tol: stopping rule (traced).  mask: optional bool[N].
    Returns:
      (GMMParams, mean_loglik f[] of the returned parameters, n_iter i32[]).
    """
    check_choice("cov_type", cov_type, COV_TYPES)
    check_range("reg_covar", reg, low=0.0)
    check_range("max_iter", max_iter, low=1)
    check_range("tol", tol, low=0.0)
    x = _check_x(x)
    mask = _check_mask(mask, x.shape[0])
    params0 = _check_params(params0, x.shape[1], cov_type)
    return _gmm_fit_jit(x, params0, mask, reg, max_iter, tol, cov_type=cov_type)


def gmm_bic(x: Any, params: GMMParams, cov_type: str = "full", mask: Any = None) -> jax.Array:
    """BIC = -2 sum_i log p(x_i) + P log n, P = (K-1) + K D + K D (D+1)/2 ('full') or (K-1) + 2 K D ('diag')."""
    check_choice("cov_type", cov_type, COV_TYPES)
    x = _check_x(x)
    mask = _check_mask(mask, x.shape[0])
    return _bic_jit(x, _check_params(params, x.shape[1], cov_type), mask, cov_type=cov_type)


# ============================================================================ label comparisons


def _check_labelings(a: Any, b: Any, mask: Any, names: tuple[str, str]) -> tuple[jax.Array, ...]:
    """Two integer labelings of the same N >= 1 rows and an optional bool[N] mask."""
    check_array(names[0], a, ndim=1, min_size=1, kind="iu")
    n = np.shape(a)[0]
    check_array(names[1], b, shape=(n,), kind="iu")
    if mask is not None:
        check_array("mask", mask, shape=(n,), kind="b")
    return jnp.asarray(a), jnp.asarray(b), None if mask is None else jnp.asarray(mask)


def _agreement2(l, m, mask):
    w = jnp.ones(l.shape, jax.dtypes.canonicalize_dtype(float)) if mask is None else mask.astype(float)
    eq = jnp.sum(w * (l == m)) / jnp.maximum(w.sum(), 1.0)
    return jnp.maximum(eq, 1.0 - eq)


_agreement2_jit = jax.jit(_agreement2)


def agreement2(l: Any, m: Any, mask: Any = None) -> jax.Array:
    """Agreement of two 2-way labelings under the better of the two matchings:
    a = max(mean(l == m), mean(l != m)) over masked-in rows. l, m: int[N] (N >= 1) -> f[] (JAX's
    default float). 0.5 <= a <= 1; a = 1 when no row is masked in."""
    return _agreement2_jit(*_check_labelings(l, m, mask, ("l", "m")))


def _pairs_same(keys: tuple[jax.Array, ...], w: jax.Array) -> jax.Array:
    """sum over groups of equal key tuples of C(n_g, 2), counting only rows with w = 1.

    Sort by the keys; a row's rank inside its run of equal keys is how many earlier rows it pairs
    with, and sum_{r < n} r = C(n, 2). Rows with w = 0 carry a sentinel key, so they form their own run.
    """
    sentinel = jnp.iinfo(jnp.int32).min
    keys = tuple(jnp.where(w > 0, k, sentinel) for k in keys)
    order = jnp.lexsort(keys)
    sk = [k[order] for k in keys]
    n = w.shape[0]
    change = jnp.zeros((n,), bool).at[0].set(True)
    for k in sk:
        change = change.at[1:].set(change[1:] | (k[1:] != k[:-1]))
    idx = jnp.arange(n)
    rank = idx - jax.lax.cummax(jnp.where(change, idx, 0))
    return jnp.sum(w[order] * rank.astype(w.dtype))


def _ari(a, b, mask):
    a = a.astype(jnp.int32)
    b = b.astype(jnp.int32)
    w = jnp.ones(a.shape, jax.dtypes.canonicalize_dtype(float)) if mask is None else mask.astype(float)
    n = w.sum()
    s_ab = _pairs_same((b, a), w)
    s_a = _pairs_same((a,), w)
    s_b = _pairs_same((b,), w)
    t = n * (n - 1.0) / 2.0
    expected = s_a * s_b / jnp.maximum(t, 1.0)
    den = 0.5 * (s_a + s_b) - expected
    return jnp.where(den == 0, 1.0, (s_ab - expected) / jnp.where(den == 0, 1.0, den))


_ari_jit = jax.jit(_ari)


def ari(a: Any, b: Any, mask: Any = None) -> jax.Array:
    """Adjusted Rand index (Hubert & Arabie) of two labelings a, b: int[N], N >= 1 (any integer labels
    below 2^31 in magnitude); optional mask: bool[N]. Returns f[] in JAX's default float.

    ARI = (S_ab - S_a S_b / T) / ((S_a + S_b)/2 - S_a S_b / T) with S_ab = sum_ij C(n_ij, 2),
    S_a = sum_i C(a_i, 2), S_b = sum_j C(b_j, 2), T = C(n, 2); 1 when the denominator is 0
    (both labelings trivial and identical). jit-safe with no static number of classes.
    """
    return _ari_jit(*_check_labelings(a, b, mask, ("a", "b")))


def _silhouette_impl(x, labels, mask, *, k, block):
    n = x.shape[0]
    maskf = mask.astype(x.dtype)
    onehot = jax.nn.one_hot(jnp.where(mask, labels, -1), k, dtype=x.dtype)  # [N, K]
    counts = onehot.sum(0)
    pad = (-n) % block
    xp = jnp.pad(x, ((0, pad), (0, 0)))

    def rows(xb):  # per-cluster sums of distances for a block of rows
        return jnp.matmul(jnp.sqrt(_sqdist(xb, x)), onehot, precision=_HI)

    sums = jax.lax.map(rows, xp.reshape(-1, block, x.shape[1])).reshape(-1, k)[:n]  # [N, K]
    own = jax.nn.one_hot(labels, k, dtype=bool)
    n_own = jnp.sum(jnp.where(own, counts[None], 0.0), 1)
    a = jnp.sum(jnp.where(own, sums, 0.0), 1) / jnp.maximum(n_own - 1.0, 1.0)
    other = jnp.where(own | (counts[None] == 0), jnp.inf, sums / jnp.maximum(counts[None], 1.0))
    b = jnp.min(other, 1)
    s = jnp.where((n_own > 1) & jnp.isfinite(b), (b - a) / jnp.maximum(jnp.maximum(a, b), 1e-30), 0.0)
    return jnp.sum(s * maskf) / jnp.maximum(maskf.sum(), 1.0)


_silhouette_jit = jax.jit(_silhouette_impl, static_argnames=("k", "block"))


def silhouette_score(x: Any, labels: Any, mask: Any = None, *, block: int = 512) -> float:
    """Mean silhouette s_i = (b_i - a_i) / max(a_i, b_i) over masked-in rows, Euclidean distances
    among masked-in rows only (a_i: mean distance to the own cluster, b_i: smallest mean distance to
    another cluster; s_i = 0 in singleton clusters). O(N^2 D) time, O(block N) memory.

    Args:
      x: f[N, D].  labels: i32[N] in 0..K-1.  mask: optional bool[N].
    """
    x = _check_x(x)
    check_array("labels", labels, shape=(x.shape[0],), kind="iu")
    mask = _check_mask(mask, x.shape[0])
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block: expected a positive int, got {block!r}")
    labels = np.asarray(labels)
    if (labels[np.asarray(mask)] < 0).any():
        raise ValueError(f"labels: expected cluster ids >= 0 on masked-in rows, got {labels.min()}")
    k = int(labels.max()) + 1 if labels.size else 1
    return float(_silhouette_jit(x, jnp.asarray(labels, jnp.int32), mask, k=max(k, 1), block=block))


# ============================================================================ PPP


def _split_test_impl(key, x, mask, min_size, tau_agree, reg, km_max_iter, km_tol, gmm_max_iter, gmm_tol, *,
                     n_init, cov_type, use_kernel) -> SplitResult:
    _count_trace("ppp_split_test")
    maskf = mask.astype(x.dtype)
    n = jnp.maximum(maskf.sum(), 1.0)
    xc = x - _masked_mean(x, maskf)  # node-centred (float32 translation invariance)
    # combinatorial partition: best-of-n_init 2-means
    km = _best_run(_kmeans_restarts(key, xc, mask, None, km_max_iter, km_tol, k=2, n_init=n_init,
                                    init_method="k-means++", use_kernel=use_kernel))
    l = km.labels
    sizes = jnp.stack([jnp.sum(l == 0), jnp.sum(l == 1)]).astype(jnp.int32)
    # probabilistic validation: G2 from the partition, G1 from the whole node
    p2 = _init_from_labels(xc, l, mask, reg, k=2, cov_type=cov_type)
    p2, ll2, _ = _gmm_fit_impl(xc, p2, mask, reg, gmm_max_iter, gmm_tol, cov_type=cov_type)
    p1 = _init_from_labels(xc, jnp.zeros_like(l), mask, reg, k=1, cov_type=cov_type)
    p1, ll1, _ = _gmm_fit_impl(xc, p1, mask, reg, gmm_max_iter, gmm_tol, cov_type=cov_type)
    d = x.shape[1]
    bic2 = -2.0 * n * ll2 + _n_params(2, d, cov_type) * jnp.log(n)
    bic1 = -2.0 * n * ll1 + _n_params(1, d, cov_type) * jnp.log(n)
    dbic = bic1 - bic2
    log_resp2, _ = _estep(xc, p2, cov_type)
    agree = _agreement2(l, jnp.argmax(log_resp2, axis=1), mask)
    post_own = jnp.where(mask, jnp.exp(jnp.take_along_axis(log_resp2, jnp.maximum(l, 0)[:, None], 1)[:, 0]), 0.0)
    accept = (jnp.min(sizes) >= min_size) & (dbic > 0) & (agree >= tau_agree)  # NaN dBIC -> reject
    return SplitResult(l, dbic, agree, accept, sizes, post_own, bic1, bic2)


_split_test_jit = jax.jit(_split_test_impl, static_argnames=("n_init", "cov_type", "use_kernel"))


def _split_call(key, x, mask, cfg: PPPConfig, min_size: int) -> SplitResult:
    """Only the shape-determining fields are static; thresholds and tolerances are traced."""
    return _split_test_jit(
        key, x, mask, min_size, cfg.tau_agree, cfg.reg_covar, cfg.kmeans_max_iter, cfg.kmeans_tol,
        cfg.gmm_max_iter, cfg.gmm_tol, n_init=cfg.n_init, cov_type=cfg.cov_type, use_kernel=cfg.use_kernel,
    )  # fmt: skip


def ppp_split_test(key: jax.Array, x: Any, mask: Any, cfg: PPPConfig = PPPConfig()) -> SplitResult:
    """One PPP node: k-means (k = 2, n_init restarts) on the masked-in rows, then
    G2 = EM(K = 2) from that partition and G1 = EM(K = 1);
    dBIC = BIC(G1) - BIC(G2), a = agreement2(k-means, MAP(G2)),
    accept = min side >= min_size and dBIC > 0 and a >= tau_agree.

    Compiled once per (N, D, n_init, cov_type, use_kernel) and reused for any mask.

    Args:
      key: PRNG key for the k-means restarts.  x: f[N, D].  mask: bool[N] (the node).  cfg: PPPConfig.
    Returns:
      SplitResult(labels, dbic, agree, accept, sizes, post_own, bic1, bic2).
    """
    if not isinstance(cfg, PPPConfig):
        raise ValueError(f"cfg: expected a PPPConfig, got {type(cfg).__name__}")
    x = _check_x(x)
    mask = _check_mask(mask, x.shape[0])
    n = _n_in(mask)
    if n is not None:
        check_range("mask (number of masked-in points)", n, low=2)
    return _split_call(key, x, mask, cfg, effective_min_size(cfg, x.shape[1]))


def canonical_labels(x: Any, labels: Any) -> np.ndarray:
    """Renumber clusters canonically: decreasing size, ties by lexicographic order of the cluster mean.

    x: f[N, D], labels: int[N] (any values) -> i32[N] in 0..K-1.
    """
    check_array("x", x, ndim=2, min_size=1)
    check_array("labels", labels, shape=(np.shape(x)[0],), kind="iu")
    x = np.asarray(x, np.float64)
    labels = np.asarray(labels)
    uniq = np.unique(labels)
    keys = [(-int(np.sum(labels == u)), tuple(x[labels == u].mean(0)), i) for i, u in enumerate(uniq)]
    order = [k[2] for k in sorted(keys)]
    new = np.empty(len(uniq), np.int32)
    new[order] = np.arange(len(uniq), dtype=np.int32)
    return new[np.searchsorted(uniq, labels)]


def _order_children(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Larger child first; ties by lexicographic order of the child means."""
    ka = (-int(a.sum()), tuple(x[a].mean(0)))
    kb = (-int(b.sum()), tuple(x[b].mean(0)))
    return (a, b) if ka <= kb else (b, a)


def ppp_fit(key: jax.Array, x: Any, cfg: PPPConfig = PPPConfig()) -> PPPResult:
    """PPP: recursive probabilistic bisection (spec section 2.2), breadth first.

    A node S becomes a leaf when |S| < 2 min_size, when splitting would make K exceed max_leaves, or
    when :func:`ppp_split_test` rejects it; an accepted split enqueues its two k-means sides. The node
    with id i (breadth-first numbering) uses the key ``fold_in(key, i)``. K = number of leaves; labels
    are renumbered by :func:`canonical_labels`. N < 2 min_size gives a single cluster (not an error).

    Args:
      key: PRNG key.  x: f[N, D] data.  cfg: PPPConfig.
    Returns:
      PPPResult (host numpy arrays): labels, n_clusters, tree, core_mask, core_fraction,
      most_separable, most_separable_labels, leaf_sizes (, flat_scores in flat mode).
    """
    if not isinstance(cfg, PPPConfig):
        raise ValueError(f"cfg: expected a PPPConfig, got {type(cfg).__name__}")
    x = standardize(x) if cfg.standardize else _check_x(x)
    if cfg.mode == "flat":
        return _ppp_flat(key, x, cfg)
    n, d = x.shape
    x_host = np.asarray(x, np.float64)
    min_size = effective_min_size(cfg, d)
    queue: deque[tuple[int, np.ndarray, int, int]] = deque([(0, np.ones(n, bool), -1, 0)])
    next_id = 1
    leaves: list[np.ndarray] = []
    records: list[SplitRecord] = []
    core = np.ones(n, bool)
    best_score, best_node, best_labels = -np.inf, -1, np.full(n, -1, np.int32)
    nan = float("nan")
    while queue:
        nid, m, parent, depth = queue.popleft()
        size = int(m.sum())
        common = dict(node_id=nid, parent=parent, depth=depth, size=size)
        if size < 2 * min_size or len(leaves) + len(queue) + 1 >= cfg.max_leaves:
            reason = "too_small" if size < 2 * min_size else "max_leaves"
            records.append(SplitRecord(**common, dbic=nan, agree=nan, accept=False, reason=reason))
            leaves.append(m)
            continue
        r = jax.device_get(_split_call(jax.random.fold_in(key, nid), x, jnp.asarray(m), cfg, min_size))
        dbic, agree = float(r.dbic), float(r.agree)
        if not bool(r.accept):
            reason = "small_child" if int(r.sizes.min()) < min_size else ("agreement" if dbic > 0 else "bic")
            records.append(SplitRecord(**common, dbic=dbic, agree=agree, accept=False, reason=reason))
            leaves.append(m)
            continue
        a, b = _order_children(x_host, m & (r.labels == 0), m & (r.labels == 1))
        records.append(SplitRecord(**common, dbic=dbic, agree=agree, accept=True, reason="split",
                                   children=(next_id, next_id + 1)))  # fmt: skip
        queue.extend([(next_id, a, nid, depth + 1), (next_id + 1, b, nid, depth + 1)])
        next_id += 2
        core &= ~m | (r.post_own >= cfg.core_threshold)
        if dbic / size > best_score:
            best_score, best_node = dbic / size, nid
            best_labels = np.where(a, 0, np.where(b, 1, -1)).astype(np.int32)
    raw = np.zeros(n, np.int32)
    for i, m in enumerate(leaves):
        raw[m] = i
    labels = canonical_labels(x_host, raw)
    return PPPResult(
        labels=labels,
        n_clusters=len(leaves),
        tree=tuple(records),
        core_mask=core,
        core_fraction=float(core.mean()),
        most_separable=best_node,
        most_separable_labels=best_labels,
        leaf_sizes=tuple(int(s) for s in np.bincount(labels, minlength=len(leaves))),
    )


def _flat_step_impl(key, x, mask, reg, km_max_iter, km_tol, gmm_max_iter, gmm_tol, *, k, n_init, cov_type,
                    use_kernel):
    """Flat mode for one k: n_init restarts, s_k = mean pairwise ARI of their labels, GMM from the best
    partition, A_k = ARI(best k-means labels, GMM MAP labels). Returns (labels, s_k, A_k, post_own)."""
    runs = _kmeans_restarts(key, x, mask, None, km_max_iter, km_tol, k=k, n_init=n_init, init_method="k-means++",
                            use_kernel=use_kernel)  # fmt: skip
    i, j = np.triu_indices(n_init, 1)
    pairs = jax.vmap(lambda p, q: _ari(runs.labels[p], runs.labels[q], None))(jnp.asarray(i), jnp.asarray(j))
    stab = jnp.mean(pairs) if len(i) else jnp.ones((), pairs.dtype)
    best = _best_run(runs)
    p = _init_from_labels(x, best.labels, mask, reg, k=k, cov_type=cov_type)
    p, _, _ = _gmm_fit_impl(x, p, mask, reg, gmm_max_iter, gmm_tol, cov_type=cov_type)
    log_resp, _ = _estep(x, p, cov_type)
    agree = _ari(best.labels, jnp.argmax(log_resp, 1), mask)
    post_own = jnp.exp(jnp.take_along_axis(log_resp, best.labels[:, None], 1)[:, 0])
    return best.labels, stab, agree, post_own


_flat_step_jit = jax.jit(_flat_step_impl, static_argnames=("k", "n_init", "cov_type", "use_kernel"))


def _ppp_flat(key, x, cfg: PPPConfig) -> PPPResult:
    """Flat mode: K = the largest k in 2..k_max with s_k >= flat_stability and A_k >= flat_agreement
    (1 if none); see :func:`_flat_step_impl`. Compiles once per k."""
    n = x.shape[0]
    mask = jnp.ones((n,), bool)
    labels, core, scores = np.zeros(n, np.int32), np.ones(n, bool), []
    for k in range(2, min(cfg.k_max, n) + 1):
        out = jax.device_get(_flat_step_jit(
            jax.random.fold_in(key, k), x, mask, cfg.reg_covar, cfg.kmeans_max_iter, cfg.kmeans_tol,
            cfg.gmm_max_iter, cfg.gmm_tol, k=k, n_init=cfg.n_init, cov_type=cfg.cov_type, use_kernel=cfg.use_kernel,
        ))  # fmt: skip
        lab, stab, agree, post_own = out
        scores.append((k, float(stab), float(agree)))
        if stab >= cfg.flat_stability and agree >= cfg.flat_agreement:
            labels, core = np.asarray(lab), np.asarray(post_own) >= cfg.core_threshold
    labels = canonical_labels(np.asarray(x), labels)
    k_found = int(labels.max()) + 1
    return PPPResult(
        labels=labels,
        n_clusters=k_found,
        tree=(),
        core_mask=core,
        core_fraction=float(core.mean()),
        most_separable=-1,
        most_separable_labels=np.full(n, -1, np.int32),
        leaf_sizes=tuple(int(s) for s in np.bincount(labels, minlength=k_found)),
        flat_scores=tuple(scores),
    )
