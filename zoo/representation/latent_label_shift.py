r"""Unsupervised learning under latent label shift (DDFA), as pure JAX functions.

Paper: Manley Roberts, Pranav Mani, Saurabh Garg, Zachary C. Lipton, "Unsupervised Learning under
Latent Label Shift", NeurIPS 2022, arXiv 2207.13179. Official code: ``acmi-lab/Latent-Label-Shift-DDFA``
(CC BY-NC 4.0; read for understanding, nothing copied).

Setting: unlabeled pairs (x, d) from r domains; a latent class y in {0..k-1} with p(x|y, d) = p(x|y)
(A1), so only p(y|d) changes across domains. Then p(d|x) = sum_y p(d|y) p(y|x): every domain
posterior lies in the convex hull of the k vertices p(d|y), and anchor regions map onto the vertices.

DDFA ("Discriminate, Discretize, Factorize, Adjust") -> functions::

    f(x) ~ p(d|x): softmax MLP trained with domain cross-entropy     init_discriminator,
                                                                      discriminator_loss, domain_posteriors
    k-means with m clusters in the simplex of f(x) values             zoo.representation.ppp.kmeans_fit
    A[c, d] = p(c|d) = #{cluster c, domain d} / #{domain d}           cluster_domain_matrix
    A ~ p(c|y) p(y|d): Frobenius NMF of rank k (MU or HALS), or       nmf
        the exact anchor (SPA) factorizer, on p(d|c) rows              anchor_factorize
    P[d, y] = p(d|y) = p(y|d) pi_d / sum_d' p(y|d') pi_d'             combine
    p(y|x) = pinv(P) f(x);  p_d(y|x) ∝ p(y|x) P[d, y]                combine
    both stages in one call                                           ddfa_fit, ddfa_predict
    Hungarian-matched accuracy; L1 error of the prior matrix         hungarian_accuracy, prior_l1

Data (numpy, pure functions of a seed): the official Dirichlet prior matrix with a condition-number
rejection loop (``dirichlet_prior_matrix``), the official greedy allocation of a labelled set to domains
(``allocate_domains``, ``make_semisynthetic`` on scikit-learn's bundled digits), and the spec's
"feature similarity fails" blob design (``make_blob_mixture``) whose exact p(d|x) is
``blob_domain_posterior`` (the oracle discriminator).

Choices that are ours (the paper or official code do otherwise, or say nothing):

* ``ddfa_fit`` / ``ddfa_predict`` take domain posteriors f(x) (not discriminator parameters), so the
  oracle-p(d|x) variant and any discriminator use the same code. The discriminator here is an MLP on
  dict pytrees (official: ResNet-18 on images); training lives in the experiment (zoo.train runner).
* k-means is PPP's ``kmeans_fit`` (k-means++ seeding, Lloyd, ``n_init`` restarts; official: faiss,
  niter 100, nredo 5). NMF: multiplicative updates (default) or HALS, ``n_restarts`` random inits
  scaled like scikit-learn's ``init='random'`` (|N(0,1)| sqrt(mean(A)/k)), best Frobenius error kept
  (official: scikit-learn NMF 'cd', 200 iterations, one init).
* ``anchor_factorize`` (not in the paper): successive projection on the rows p(d|c) finds k anchor
  clusters whose rows are p(d|y); p(y) solves sum_y p(d|y) p(y) = p(d) by least squares (clipped at 0,
  renormalised); p(y|d) = p(d|y) p(y) / p(d). Exact under the anchor condition, unlike NMF.
* ``combine(method='nnls')`` replaces the pseudo-inverse with a simplex-constrained least-squares fit
  (projected gradient, 200 steps); 'pinv' (default) is the official rule, negative entries included.
* The blob design and its oracle posterior are the spec's, not the paper's (CIFAR/ImageNet/FieldGuide
  are not available offline).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced

__all__ = [
    "DDFAState",
    "NMFResult",
    "allocate_domains",
    "anchor_factorize",
    "blob_domain_posterior",
    "cluster_domain_matrix",
    "combine",
    "ddfa_fit",
    "ddfa_predict",
    "dirichlet_prior_matrix",
    "discriminator_loss",
    "domain_posteriors",
    "hungarian_accuracy",
    "init_discriminator",
    "make_blob_mixture",
    "make_semisynthetic",
    "nmf",
    "prior_l1",
]

_HI = jax.lax.Precision.HIGHEST


def _float(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _int_arg(name: str, v: Any, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected a Python int, got {type(v).__name__}")
    check_range(name, int(v), low=low)
    return int(v)


def _check_labels(name: str, labels: Any, n_values: int, n: int | None = None) -> jax.Array:
    check_array(name, labels, ndim=1, kind="iu", shape=None if n is None else (n,))
    if not is_traced(labels):
        v = np.asarray(labels)
        if v.size and (v.min() < 0 or v.max() >= n_values):
            raise ValueError(f"{name}: expected values in [0, {n_values - 1}], got range [{v.min()}, {v.max()}]")
    return jnp.asarray(labels)


def _check_simplex_rows(name: str, p: Any, ndim: int = 2) -> jax.Array:
    check_array(name, p, ndim=ndim, kind="f")
    if not is_traced(p):
        v = np.asarray(p, np.float64)
        if (v < -1e-6).any():
            raise ValueError(f"{name}: expected non-negative probabilities, got min {v.min():.3g}")
    return jnp.asarray(p)


# ============================================================================ data (numpy)


def dirichlet_prior_matrix(seed: int, k: int, r: int, alpha: float, max_cond: float,
                           max_tries: int = 10**6) -> tuple[np.ndarray, float]:
    """Official prior matrix: rows p(.|d) ~ Dirichlet((alpha/k) 1_k), redrawn until cond(Q) <= max_cond.

    Entries < 1e-7 are then zeroed and the rows renormalised. Returns ``(Q f64[r, k], cond)``.
    Raises ``ValueError`` after ``max_tries`` draws, reporting the best condition number seen.
    """
    k, r = _int_arg("k", k, 2), _int_arg("r", r, 1)
    if r < k:
        raise ValueError(f"r: need at least k={k} domains for a full-rank prior matrix (A2), got r={r}")
    check_range("alpha", alpha, low=0.0, low_inclusive=False)
    check_range("max_cond", max_cond, low=1.0)
    max_tries = _int_arg("max_tries", max_tries)
    rng = np.random.default_rng(seed)
    best = np.inf
    for _ in range(max_tries):
        q = rng.dirichlet(np.full(k, alpha / k), size=r)
        if not np.isfinite(q).all():
            continue
        c = float(np.linalg.cond(q))
        best = min(best, c)
        if c <= max_cond:
            q = np.where(q < 1e-7, 0.0, q)
            return q / q.sum(1, keepdims=True), c
    raise ValueError(f"max_tries: no prior matrix with cond <= max_cond={max_cond} in {max_tries} draws "
                     f"(best cond {best:.3g}); raise max_cond or max_tries")


def allocate_domains(seed: int, labels: Any, q: Any) -> tuple[np.ndarray, np.ndarray]:
    """Official greedy allocation of a labelled set to domains with priors ``q`` (f[r, k], rows p(y|d)).

    n[d, y] = floor(q[d, y] (1/r) N_min / max_y f_y), f_y = mean_d q[d, y], N_min the smallest class
    count; examples are scanned in order and each goes to the first domain still needing its class;
    the result is shuffled (seeded). Returns ``(index i64[M], domain i64[M])`` into ``labels``.
    """
    q = np.asarray(q, np.float64)
    check_array("q", q, ndim=2)
    r, k = q.shape
    labels = np.asarray(labels)
    _check_labels("labels", labels, k)
    counts = np.bincount(labels, minlength=k)
    if counts.min() == 0:
        raise ValueError(f"labels: every class 0..{k - 1} needs an example, class {int(counts.argmin())} has none")
    need = np.floor(q * (1.0 / r) * counts.min() / q.mean(0).max()).astype(np.int64)
    empty = np.flatnonzero(need.sum(1) == 0)
    if empty.size:
        raise ValueError(f"q: domain {int(empty[0])} gets no example (too few labels: N_min={counts.min()})")
    index, domain = [], []
    for i, y in enumerate(labels):
        open_d = np.flatnonzero(need[:, y] > 0)
        if open_d.size:
            need[open_d[0], y] -= 1
            index.append(i)
            domain.append(open_d[0])
    perm = np.random.default_rng(seed).permutation(len(index))
    return np.asarray(index, np.int64)[perm], np.asarray(domain, np.int64)[perm]


def make_semisynthetic(seed: int, *, base: str = "digits", r: int = 10, alpha: float = 0.5,
                       max_cond: float = 8.0) -> dict[str, np.ndarray]:
    """Semi-synthetic LLS data from a bundled labelled set (scikit-learn's digits, k = 10).

    Returns ``{"x": f32[M, 64], "y": i32[M], "d": i32[M], "q": f64[r, k]}``.
    """
    check_choice("base", base, ("digits",))
    from zoo.data import load_digits

    data = load_digits()
    k = int(data["y"].max()) + 1
    q, _ = dirichlet_prior_matrix(seed, k, r, alpha, max_cond)
    idx, dom = allocate_domains(seed, data["y"], q)
    return {"x": data["x"][idx], "y": data["y"][idx].astype(np.int32), "d": dom.astype(np.int32), "q": q}


def _blob_centres(k: int, blobs_per_class: int, radius: float, dim: int) -> np.ndarray:
    nb = k * blobs_per_class
    ang = 2 * np.pi * np.arange(nb) / nb
    c = np.zeros((nb, dim))
    c[:, 0], c[:, 1] = radius * np.cos(ang), radius * np.sin(ang)
    return c  # blob j belongs to class j % k


def make_blob_mixture(seed: int, q: Any, n_per_domain: int, *, blobs_per_class: int = 2, radius: float = 3.0,
                      spread: float = 0.35, dim: int = 2) -> dict[str, np.ndarray]:
    """Feature similarity fails: k*b Gaussian blobs (sd ``spread``) on a circle; class c owns blobs c, c+k, ...

    (diametrically opposite for b = 2), so same-class points are never neighbours. Each domain d draws
    ``n_per_domain`` points with y ~ q[d] (rows p(y|d)). Extra dimensions (dim > 2) are pure noise.
    Returns ``{"x": f32[r n, dim], "y": i32[r n], "d": i32[r n]}``.
    """
    q = np.asarray(q, np.float64)
    check_array("q", q, ndim=2)
    r, k = q.shape
    n = _int_arg("n_per_domain", n_per_domain)
    b = _int_arg("blobs_per_class", blobs_per_class)
    dim = _int_arg("dim", dim, 2)
    check_range("spread", spread, low=0.0, low_inclusive=False)
    rng = np.random.default_rng(seed)
    d = np.repeat(np.arange(r), n)
    y = np.concatenate([rng.choice(k, n, p=q[j] / q[j].sum()) for j in range(r)])
    blob = y + k * rng.integers(0, b, y.size)
    x = _blob_centres(k, b, radius, dim)[blob] + spread * rng.standard_normal((y.size, dim))
    return {"x": x.astype(np.float32), "y": y.astype(np.int32), "d": d.astype(np.int32)}


def blob_domain_posterior(x: Any, q: Any, *, blobs_per_class: int = 2, radius: float = 3.0,
                          spread: float = 0.35, domain_prior: Any = None) -> jax.Array:
    """Exact p(d|x) ∝ pi_d sum_y q[d, y] p(x|y) of ``make_blob_mixture`` (the oracle discriminator).

    x: f[n, dim]; q: f[r, k] rows p(y|d); domain_prior: f[r] or None (uniform). Returns f[n, r].
    """
    check_array("x", x, ndim=2, kind="fiu")
    check_array("q", q, ndim=2, kind="f")
    x = _float(x)
    q = jnp.asarray(q, x.dtype)
    r, k = q.shape
    b = _int_arg("blobs_per_class", blobs_per_class)
    cen = jnp.asarray(_blob_centres(k, b, radius, x.shape[1]), x.dtype)
    logb = -0.5 * jnp.sum((x[:, None, :] - cen[None]) ** 2, -1) / spread**2  # [n, k b]
    logpy = jax.nn.logsumexp(logb.reshape(x.shape[0], b, k), axis=1)  # [n, k] (constants cancel)
    pi = jnp.full((r,), 1.0 / r, x.dtype) if domain_prior is None else jnp.asarray(domain_prior, x.dtype)
    logits = jax.nn.logsumexp(logpy[:, None, :] + jnp.log(jnp.maximum(q, 1e-300))[None], axis=-1) + jnp.log(pi)
    return jax.nn.softmax(logits, axis=-1)


# ============================================================================ discriminator


def init_discriminator(key: jax.Array, input_dim: int, n_domains: int, *, hidden: tuple[int, ...] = (64, 64),
                       dtype: Any = None) -> dict:
    """MLP ``x -> logits[r]`` as a dict pytree ``{"layers": [{"w": f[in, out], "b": f[out]}, ...]}`` (LeCun init)."""
    dims = (_int_arg("input_dim", input_dim), *[_int_arg("hidden", h) for h in hidden], _int_arg("n_domains", n_domains, 2))
    dtype = jnp.result_type(float) if dtype is None else dtype
    layers = []
    for i, key_i in enumerate(jax.random.split(key, len(dims) - 1)):
        w = jax.random.normal(key_i, (dims[i], dims[i + 1]), dtype) / np.sqrt(dims[i])
        layers.append({"w": w, "b": jnp.zeros((dims[i + 1],), dtype)})
    return {"layers": layers}


def _logits(params: dict, x: jax.Array) -> jax.Array:
    h = x
    for i, layer in enumerate(params["layers"]):
        h = h @ layer["w"] + layer["b"]
        if i < len(params["layers"]) - 1:
            h = jax.nn.relu(h)
    return h


def domain_posteriors(params: dict, x: Any) -> jax.Array:
    """f(x) = softmax(MLP(x)): f[n, r], the discriminator's estimate of p(d|x)."""
    check_array("x", x, ndim=2, kind="fiu")
    x = _float(x)
    return jax.nn.softmax(_logits(params, x.astype(params["layers"][0]["w"].dtype)), axis=-1)


def discriminator_loss(params: dict, batch: dict, rng: Any = None) -> tuple[jax.Array, dict]:
    """Mean domain cross-entropy of ``batch = {"x": f[n, D], "d": i[n]}`` (and an optional weight ``w``: f[n]).

    Returns ``(loss, {"acc": domain accuracy})`` (the ``zoo.train`` loss signature).
    """
    if not isinstance(batch, dict) or "x" not in batch or "d" not in batch:
        raise ValueError("batch: expected a dict with keys 'x' and 'd'")
    check_array("batch['x']", batch["x"], ndim=2, kind="fiu")
    logits = _logits(params, _float(batch["x"]).astype(params["layers"][0]["w"].dtype))
    d = _check_labels("batch['d']", batch["d"], logits.shape[-1], logits.shape[0])
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), d[:, None], axis=1)[:, 0]
    w = batch.get("w", jnp.ones_like(ce))
    loss = jnp.sum(w * ce) / jnp.maximum(jnp.sum(w), 1e-12)
    acc = jnp.sum(w * (jnp.argmax(logits, -1) == d)) / jnp.maximum(jnp.sum(w), 1e-12)
    return loss, {"acc": acc}


# ============================================================================ factorize


def cluster_domain_matrix(labels: Any, domains: Any, m: int, r: int, weights: Any = None) -> jax.Array:
    """A[c, d] = p(c|d): counts #{i: cluster c, domain d} normalised per domain column. f[m, r].

    ``weights`` (f[n], optional) counts weighted examples (0 drops an example). Raises on an empty
    domain in eager mode; under ``jit`` an empty column is left at 0.
    """
    m, r = _int_arg("m", m), _int_arg("r", r)
    labels = _check_labels("labels", labels, m)
    domains = _check_labels("domains", domains, r, labels.shape[0])
    w = jnp.ones(labels.shape, jnp.result_type(float)) if weights is None else _float(weights)
    n = jnp.zeros((m, r), w.dtype).at[labels, domains].add(w)
    col = n.sum(0)
    if not is_traced(col) and (np.asarray(col) <= 0).any():
        raise ValueError(f"domains: domain {int(np.argmin(np.asarray(col)))} has no example")
    return n / jnp.where(col > 0, col, 1.0)


class NMFResult(NamedTuple):
    """A ~ p_c_given_y @ p_y_given_d; a pytree."""

    p_c_given_y: jax.Array  # f[m, k], columns sum to 1
    p_y_given_d: jax.Array  # f[k, r], columns sum to 1
    recon_err: jax.Array  # f[], Frobenius ||A - U V||_F of the kept restart (before normalisation)


def _nmf_run(a, init, n_iter, k: int, solver: str):
    m, r = a.shape
    tiny = jnp.finfo(a.dtype).tiny * 1e6
    u, v = init

    def mu(_, uv):
        u, v = uv
        v = v * (u.T @ a) / jnp.maximum(u.T @ u @ v, tiny)
        u = u * (a @ v.T) / jnp.maximum(u @ (v @ v.T), tiny)
        return u, v

    def hals(_, uv):
        u, v = uv
        uta, utu = u.T @ a, u.T @ u
        for j in range(k):
            v = v.at[j].set(jnp.maximum(v[j] + (uta[j] - utu[j] @ v) / jnp.maximum(utu[j, j], tiny), 0.0))
        avt, vvt = a @ v.T, v @ v.T
        for j in range(k):
            u = u.at[:, j].set(jnp.maximum(u[:, j] + (avt[:, j] - u @ vvt[:, j]) / jnp.maximum(vvt[j, j], tiny), 0.0))
        return u, v

    u, v = jax.lax.fori_loop(0, n_iter, mu if solver == "mu" else hals, (u, v))
    return u, v, jnp.sqrt(jnp.sum((a - u @ v) ** 2))


def _nmf_impl(key, a, n_iter, *, k, n_restarts, solver):
    m, r = a.shape
    z = jnp.sqrt(jnp.mean(a) / k) * jnp.abs(jax.random.normal(key, (n_restarts, (m + r) * k), a.dtype))
    init = (z[:, : m * k].reshape(n_restarts, m, k), z[:, m * k :].reshape(n_restarts, k, r))
    u, v, err = jax.vmap(lambda uv: _nmf_run(a, uv, n_iter, k, solver))(init)
    best = jnp.argmin(jnp.where(jnp.isfinite(err), err, jnp.inf))
    u, v, err = u[best], v[best], err[best]
    s = u.sum(0)
    s_safe = jnp.where(s > 0, s, 1.0)
    v = v * s[:, None]
    vs = v.sum(0)
    return NMFResult(u / s_safe, v / jnp.where(vs > 0, vs, 1.0), err)


_nmf_jit = jax.jit(_nmf_impl, static_argnames=("k", "n_restarts", "solver"))


def nmf(key: jax.Array, a: Any, k: int, *, n_iter: int = 500, n_restarts: int = 5, solver: str = "mu") -> NMFResult:
    """Rank-k Frobenius NMF ``A ≈ U V`` (U f[m, k], V f[k, r] >= 0), best of ``n_restarts`` random inits.

    Normalised as the official code does: p(c|y) = U / colsum(U); p(y|d) = (colsum(U) V) normalised per
    domain column. ``solver``: 'mu' (Lee-Seung multiplicative updates; the objective never increases) or
    'hals' (exact block-coordinate updates). ``n_iter`` is traced (no recompilation); k, n_restarts,
    solver are static.
    """
    check_array("a", a, ndim=2, kind="f")
    a = jnp.asarray(a)
    k = _int_arg("k", k)
    if k > min(a.shape):
        raise ValueError(f"k: expected at most min(m, r)={min(a.shape)} for a of shape {tuple(a.shape)}, got {k}")
    if not is_traced(a) and (np.asarray(a) < 0).any():
        raise ValueError("a: expected a non-negative matrix")
    if not is_traced(n_iter):
        check_range("n_iter", n_iter, low=0)
    n_restarts = _int_arg("n_restarts", n_restarts)
    check_choice("solver", solver, ("mu", "hals"))
    return _nmf_jit(key, a, n_iter, k=k, n_restarts=n_restarts, solver=solver)


def _spa(p: jax.Array, k: int) -> jax.Array:
    """Successive projection: k row indices of p (rows in a simplex) at the vertices of their hull."""
    resid = p
    ids = []
    for _ in range(k):
        j = jnp.argmax(jnp.sum(resid**2, axis=1))
        ids.append(j)
        u = resid[j] / jnp.maximum(jnp.linalg.norm(resid[j]), jnp.finfo(p.dtype).tiny)
        resid = resid - jnp.outer(resid @ u, u)
    return jnp.stack(ids)


def anchor_factorize(counts: Any, k: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Exact factorizer under the anchor condition (ours): SPA on the rows p(d|c) of the count matrix.

    counts: f[m, r] cluster x domain counts (or any positive multiple, e.g. the joint p(c, d)).
    Returns ``(anchor_ids i32[k], p_y_given_d f[k, r], p_d_given_y f[r, k])``; p(y) solves
    sum_y p(d|y) p(y) = p(d) by least squares (clipped at 0 and renormalised).
    """
    check_array("counts", counts, ndim=2, kind="f")
    n = jnp.asarray(counts)
    k = _int_arg("k", k)
    if k > min(n.shape):
        raise ValueError(f"k: expected at most min(m, r)={min(n.shape)} for counts of shape {tuple(n.shape)}, got {k}")
    if not is_traced(n) and (np.asarray(n) < 0).any():
        raise ValueError("counts: expected non-negative counts")
    return _anchor_jit(n, k=k)


def _anchor_impl(n, *, k):
    rows = n.sum(1, keepdims=True)
    p_d_c = n / jnp.where(rows > 0, rows, 1.0)
    ids = _spa(p_d_c, k)
    p_d_y = p_d_c[ids].T  # [r, k]
    p_d = n.sum(0) / n.sum()
    p_y = jnp.maximum(jnp.linalg.lstsq(p_d_y, p_d)[0], 0.0)
    p_y = p_y / jnp.maximum(p_y.sum(), jnp.finfo(n.dtype).tiny)
    joint = p_d_y * p_y[None, :]  # p(d, y)
    p_y_d = (joint / jnp.maximum(joint.sum(1, keepdims=True), jnp.finfo(n.dtype).tiny)).T
    return ids.astype(jnp.int32), p_y_d, p_d_y


_anchor_jit = jax.jit(_anchor_impl, static_argnames=("k",))


# ============================================================================ adjust


def _proj_simplex(v: jax.Array) -> jax.Array:
    """Euclidean projection of each row of v onto the probability simplex (sort-based)."""
    k = v.shape[-1]
    u = jnp.sort(v, axis=-1)[..., ::-1]
    css = jnp.cumsum(u, axis=-1) - 1.0
    ind = jnp.arange(1, k + 1, dtype=v.dtype)
    rho = jnp.sum(u - css / ind > 0, axis=-1, keepdims=True)
    theta = jnp.take_along_axis(css, rho - 1, axis=-1) / rho.astype(v.dtype)
    return jnp.maximum(v - theta, 0.0)


def combine(p_d_given_x: Any, p_y_given_d: Any, domains: Any, *, domain_prior: Any = None,
            method: str = "pinv") -> jax.Array:
    """Per-domain class posteriors p_d(y|x) (rows sum to 1), f[n, k].

    P[d, y] = p(d|y) = p(y|d) pi_d / sum_d' p(y|d') pi_d' (uniform pi by default, as the official code);
    p(y|x) = pinv(P) f(x) ('pinv', may be negative) or the simplex-constrained least-squares fit
    ('nnls'); p_d(y|x) ∝ p(y|x) P[d, y] for the example's observed domain d.
    Args: p_d_given_x f[n, r]; p_y_given_d f[k, r]; domains i[n]; domain_prior f[r] or None.
    """
    f = _check_simplex_rows("p_d_given_x", p_d_given_x)
    q = _check_simplex_rows("p_y_given_d", p_y_given_d)
    k, r = q.shape
    if f.shape[1] != r:
        raise ValueError(f"p_d_given_x: expected {r} domain columns (as p_y_given_d), got {f.shape[1]}")
    if r < k:
        raise ValueError(f"p_y_given_d: needs r >= k domains (A2), got k={k}, r={r}")
    d = _check_labels("domains", domains, r, f.shape[0])
    check_choice("method", method, ("pinv", "nnls"))
    dt = jnp.result_type(f.dtype, q.dtype)
    f, q = f.astype(dt), q.astype(dt)
    pi = jnp.full((r,), 1.0 / r, dt) if domain_prior is None else jnp.asarray(domain_prior, dt)
    joint = q * pi[None, :]
    p_dy = (joint / jnp.maximum(joint.sum(1, keepdims=True), jnp.finfo(dt).tiny)).T  # [r, k]
    if method == "pinv":
        p_yx = f @ jnp.linalg.pinv(p_dy).T
    else:
        step = 1.0 / jnp.maximum(jnp.linalg.norm(p_dy, 2) ** 2, jnp.finfo(dt).tiny)
        z0 = jnp.full((f.shape[0], k), 1.0 / k, dt)
        p_yx = jax.lax.fori_loop(0, 200, lambda _, z: _proj_simplex(z - step * (z @ p_dy.T - f) @ p_dy), z0)
    out = p_yx * p_dy[d]
    s = out.sum(1, keepdims=True)
    return out / jnp.where(s != 0, s, 1.0)


# ============================================================================ pipeline and metrics


class DDFAState(NamedTuple):
    """Fitted DDFA: a pytree (leading axes under ``vmap``)."""

    centroids: jax.Array  # f[m, r] k-means centres in p(d|x) space
    p_y_given_d: jax.Array  # f[k, r]
    p_c_given_y: jax.Array  # f[m, k] (NMF) or one-hot anchor rows (anchor factorizer)
    cluster_domain: jax.Array  # f[m, r], p(c|d)


def ddfa_fit(key: jax.Array, p_d_given_x: Any, domains: Any, *, k: int, m: int, factorizer: str = "nmf",
             kmeans_restarts: int = 5, kmeans_iter: int = 100, nmf_iter: int = 500,
             nmf_restarts: int = 5) -> DDFAState:
    """Discretize (k-means with m clusters in p(d|x) space) and factorize (NMF or anchors) into p(y|d).

    p_d_given_x: f[n, r] posteriors of the fit set (train + validation); domains: i[n].
    """
    from zoo.representation.ppp import kmeans_fit

    f = _check_simplex_rows("p_d_given_x", p_d_given_x)
    n, r = f.shape
    k, m = _int_arg("k", k), _int_arg("m", m)
    if r < k:
        raise ValueError(f"k: latent label shift needs r >= k (A2), got k={k} classes and r={r} domains")
    if m < k:
        raise ValueError(f"m: expected at least k={k} clusters, got {m}")
    if m > n:
        raise ValueError(f"m: expected at most the number of points {n}, got {m}")
    check_choice("factorizer", factorizer, ("nmf", "anchor"))
    d = _check_labels("domains", domains, r, n)
    k1, k2 = jax.random.split(key)
    km = kmeans_fit(k1, f, m, n_init=kmeans_restarts, max_iter=kmeans_iter)
    a = cluster_domain_matrix(km.labels, d, m, r, weights=jnp.ones((n,), f.dtype))
    if factorizer == "nmf":
        res = nmf(k2, a, k, n_iter=nmf_iter, n_restarts=nmf_restarts)
        return DDFAState(km.centers, res.p_y_given_d, res.p_c_given_y, a)
    counts = jnp.zeros((m, r), f.dtype).at[km.labels, d].add(1.0)
    ids, q, _ = anchor_factorize(counts, k)
    return DDFAState(km.centers, q, jax.nn.one_hot(ids, m, dtype=f.dtype).T, a)


def ddfa_predict(state: DDFAState, p_d_given_x: Any, domains: Any, *, method: str = "pinv",
                 domain_prior: Any = None) -> tuple[jax.Array, jax.Array]:
    """Adjust: ``(pred i32[n], p_d(y|x) f[n, k])`` from posteriors f[n, r] and observed domains i[n]."""
    p = combine(p_d_given_x, state.p_y_given_d, domains, method=method, domain_prior=domain_prior)
    return jnp.argmax(p, axis=1).astype(jnp.int32), p


def hungarian_accuracy(pred: Any, true: Any, k: int) -> tuple[float, np.ndarray]:
    """Accuracy after the best one-to-one relabelling of predicted ids (scipy ``linear_sum_assignment``).

    Returns ``(acc, perm)`` with ``perm[p]`` the true class matched to predicted id p (host numpy).
    """
    from scipy.optimize import linear_sum_assignment

    k = _int_arg("k", k)
    pred = np.asarray(_check_labels("pred", pred, k))
    true = np.asarray(_check_labels("true", true, k, pred.shape[0]))
    if pred.size == 0:
        raise ValueError("pred: expected at least one prediction")
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (pred, true), 1)
    rows, cols = linear_sum_assignment(conf, maximize=True)
    perm = np.empty(k, np.int64)
    perm[rows] = cols
    return float(conf[rows, cols].sum() / pred.size), perm


def prior_l1(q_true: Any, q_hat: Any, perm: Any) -> tuple[float, float]:
    """L1 error of the prior matrix: ``(sum_{p,d} |q_true[perm[p], d] - q_hat[p, d]|, that sum / r)``.

    q_true, q_hat: f[k, r] (columns p(.|d)); perm: i[k] from :func:`hungarian_accuracy`.
    """
    check_array("q_true", q_true, ndim=2, kind="f")
    qt = np.asarray(q_true, np.float64)
    check_array("q_hat", q_hat, shape=qt.shape, kind="f")
    perm = np.asarray(perm)
    check_array("perm", perm, shape=(qt.shape[0],), kind="iu")
    if sorted(perm.tolist()) != list(range(qt.shape[0])):
        raise ValueError(f"perm: expected a permutation of 0..{qt.shape[0] - 1}, got {perm.tolist()}")
    total = float(np.abs(qt[perm] - np.asarray(q_hat, np.float64)).sum())
    return total, total / qt.shape[1]
