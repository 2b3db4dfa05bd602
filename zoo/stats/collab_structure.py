r"""Modular vs hierarchical co-authorship networks and topic popularity: network measures in JAX.

Paper: Brian Hepler, "Modular versus Hierarchical: A Structural Signature of Topic Popularity in
Mathematical Research", arXiv 2506.22946 (2025). Official code: ``brian-hepler-phd/MRC-Network-Analysis``
(MIT; networkx 3.5, statsmodels). Spec: ``papers/collab_structure.md``.

A topic's network (:class:`CoauthorGraph`): nodes = authors of its multi-author papers, edge weight
w_uv = number of joint papers (clique expansion; duplicates in a paper removed; no self-loops), padded
to ``n_max`` nodes with ``node_mask`` so that topics vmap. A = (W > 0), k = A·1.

Measures -> functions (all jnp on the adjacency matrix; unweighted unless said)::

    1 collaboration rate #multi-author papers / #papers                 collaboration_rate
    2 repeated collaboration #{edges with w >= 2} / m                    repeated_collaboration_rate
    3 Freeman centralization Σ (k_max − k_i) / ((n−1)(n−2))            degree_centralization
    4 degree assortativity (Pearson over edge ends, both directions)     degree_assortativity
    5 modularity Q = Σ_c [L_c/m − (D_c/2m)²] of a partition             modularity (weighted or not)
    6 small-world σ = (C/C_rand)/(L/L_rand) on the LCC                  small_world_sigma
        (+ average_clustering, connected_components, largest_component_mask, all_pairs_hops)
    7 coreness ratio #{core(v) = k_max} / n                             core_numbers, coreness_ratio
    8 robustness: GCC after removing 10% top-degree / 10% random nodes   robustness_ratio
    9 Burt's constraint c = rowsum(A ⊙ (P + PP)²), P = A / k            burt_constraint
   10 effective size e = k − 2t/k, t = (A³)_ii / 2                      effective_size
    all ten for one topic                                              all_measures
    community detection (networkx CNM or Louvain, host)                 detect_communities

Statistics: ``ols`` (β, classical and HC3 s.e.), ``cliffs_delta``, ``cohens_d``, ``bootstrap_ci``,
``popular_niche_split``, ``group_comparison`` (Shapiro -> t or Mann-Whitney; scipy, host),
``size_controlled_regression`` (z(metric) ~ z(ln P) + z(ln(1+n)), HC3 t-values).
Generator (numpy): ``synth_topics`` — papers per topic drawn by a modular ("schools") or a
core-periphery process with probability α = sigmoid(β z(ln P)); β = 0 is the null; ``from_papers``.

Choices that are the zoo's (the paper's data — arXiv metadata, BERTopic topics, author disambiguation —
has no offline substitute; the synthetic generator replaces the networks only):

* Fallbacks follow the official code: centralization 0 for n <= 2; modularity 0 for n < 3 or m = 0;
  coreness 0 for n < 3; small-world 0 for n < 10, m < 5, n_LCC < 5 or k̄ <= 1; robustness 1 for
  n < 10 and 0 if the random resilience is 0. Assortativity is NaN when all edge-end degrees are equal
  (networkx too); constraint / effective size are NaN for isolated nodes (networkx too).
* Small-world L is always the EXACT mean shortest path on the LCC (BFS by boolean matmuls, ``max_hops``
  rounds); the official code samples it for LCCs of more than 200 nodes (unseeded).
* Robustness and sampled quantities take a PRNG key (the official code is unseeded). Ties in the
  targeted removal go to the lower node index (networkx's stable sort in node order).
* ``modularity(weighted=True)`` with a CNM partition of the unweighted graph is the official path;
  the experiment uses the unweighted Q (as the spec's reference run).
* Repeated-collaboration pairs come from de-duplicated author lists (the official code double counts
  a name repeated inside one paper).
* Cohen's d uses the pooled sd sqrt(((n1−1) s1² + (n2−1) s2²)/(n1+n2−2)) with s² = np.var (ddof 0),
  as the spec reads the official code.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced

__all__ = [
    "CoauthorGraph", "from_papers", "check_graph", "collaboration_rate", "repeated_collaboration_rate",
    "degree_centralization", "degree_assortativity", "modularity", "average_clustering", "burt_constraint",
    "effective_size", "core_numbers", "coreness_ratio", "connected_components", "largest_component_mask",
    "all_pairs_hops", "small_world_sigma", "robustness_ratio", "all_measures", "detect_communities", "ols",
    "cliffs_delta", "cohens_d", "bootstrap_ci", "popular_niche_split", "group_comparison",
    "size_controlled_regression", "synth_topics",
]

_GRAPH_EXTRA = "networkx is needed here: pip install paperzoo[graph]"


@functools.partial(jax.tree_util.register_dataclass, data_fields=("W", "node_mask", "n_papers", "n_multi_papers"),
                   meta_fields=())
@dataclasses.dataclass(frozen=True)
class CoauthorGraph:
    """A topic's co-authorship network: ``W: f[n_max, n_max]`` joint-paper counts (symmetric, zero
    diagonal), ``node_mask: bool[n_max]`` (False = padding), ``n_papers``, ``n_multi_papers`` (scalars)."""

    W: jax.Array
    node_mask: jax.Array
    n_papers: jax.Array
    n_multi_papers: jax.Array


def _networkx():
    try:
        import networkx as nx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(_GRAPH_EXTRA) from e
    return nx


# ----------------------------------------------------------------------------------- construction


def from_papers(papers: Sequence[Sequence[int]], n_max: int | None = None, dtype=None) -> CoauthorGraph:
    """Clique expansion of a topic's papers (lists of author ids): nodes = authors of papers with >= 2
    distinct authors (in order of first appearance), W = joint-paper counts; padded to ``n_max``."""
    if isinstance(papers, (str, bytes)) or not isinstance(papers, Sequence):
        raise TypeError(f"papers: expected a list of author-id lists, got {type(papers).__name__}")
    idx: dict = {}
    pairs = []
    n_multi = 0
    for i, p in enumerate(papers):
        if isinstance(p, (str, bytes)) or not isinstance(p, (Sequence, np.ndarray)):
            raise TypeError(f"papers[{i}]: expected a list of author ids, got {type(p).__name__}")
        authors = list(dict.fromkeys(p))
        if len(authors) >= 2:
            n_multi += 1
            ids = [idx.setdefault(a, len(idx)) for a in authors]
            pairs.extend((u, v) for j, u in enumerate(ids) for v in ids[j + 1:])
    n = len(idx)
    n_max = n if n_max is None else n_max
    if isinstance(n_max, bool) or not isinstance(n_max, (int, np.integer)) or n_max < n:
        raise ValueError(f"n_max: expected an int >= the number of nodes ({n}), got {n_max!r}")
    W = np.zeros((n_max, n_max))
    if pairs:
        u, v = np.asarray(pairs).T
        np.add.at(W, (u, v), 1.0)
        np.add.at(W, (v, u), 1.0)
    dt = jax.dtypes.canonicalize_dtype(float) if dtype is None else dtype
    return CoauthorGraph(W=jnp.asarray(W, dt), node_mask=jnp.arange(n_max) < n,
                         n_papers=jnp.asarray(len(papers), dt), n_multi_papers=jnp.asarray(n_multi, dt))


def check_graph(g: CoauthorGraph, name: str = "g") -> None:
    """Eager validation: square finite W, symmetric, non-negative, no self-loops, padding rows empty."""
    if not isinstance(g, CoauthorGraph):
        raise TypeError(f"{name}: expected a CoauthorGraph, got {type(g).__name__}")
    check_array(f"{name}.W", g.W, ndim=2, kind="f")
    n = g.W.shape[0]
    if g.W.shape != (n, n):
        raise ValueError(f"{name}.W: expected a square matrix, got shape {tuple(g.W.shape)}")
    check_array(f"{name}.node_mask", g.node_mask, shape=(n,), kind="b")
    if is_traced(g.W) or is_traced(g.node_mask):
        return
    W = np.asarray(g.W)
    if (W < 0).any():
        raise ValueError(f"{name}.W: negative weights are not allowed (min {W.min():.3g})")
    if np.abs(np.diag(W)).max(initial=0) > 0:
        raise ValueError(f"{name}.W: self-loops (non-zero diagonal) are not allowed")
    if not np.allclose(W, W.T):
        raise ValueError(f"{name}.W: expected a symmetric matrix (an undirected graph)")
    m = np.asarray(g.node_mask)
    if W[~m].any():
        raise ValueError(f"{name}.W: padding nodes (node_mask False) must have no edges")


def _adj(g):
    A = (g.W > 0).astype(g.W.dtype)
    return A, A.sum(1), g.node_mask.sum()


# ----------------------------------------------------------------------------------- measures


def collaboration_rate(g: CoauthorGraph) -> jax.Array:
    """#papers with >= 2 authors / #papers (0 for a topic without papers)."""
    check_graph(g)
    return jnp.where(g.n_papers > 0, g.n_multi_papers / jnp.maximum(g.n_papers, 1), 0.0)


def repeated_collaboration_rate(g: CoauthorGraph) -> jax.Array:
    """Fraction of co-author pairs with >= 2 joint papers, #{w >= 2} / m (0 if m = 0)."""
    check_graph(g)
    m = (g.W > 0).sum()
    return jnp.where(m > 0, (g.W >= 2).sum() / jnp.maximum(m, 1), 0.0).astype(g.W.dtype)


def degree_centralization(g: CoauthorGraph) -> jax.Array:
    """Freeman degree centralization Σ_i (k_max − k_i) / ((n−1)(n−2)); 0 if n <= 2."""
    check_graph(g)
    _, k, n = _adj(g)
    s = jnp.where(g.node_mask, k.max() - k, 0).sum()
    return jnp.where(n > 2, s / jnp.maximum((n - 1) * (n - 2), 1), 0.0).astype(g.W.dtype)


def degree_assortativity(g: CoauthorGraph) -> jax.Array:
    """Pearson correlation of the degrees at the two ends of every edge (both directions); NaN when
    every edge end has the same degree (or m = 0), as networkx."""
    check_graph(g)
    A, k, _ = _adj(g)
    two_m = k.sum()
    mean = (k * k).sum() / two_m
    var = (k ** 3).sum() / two_m - mean ** 2
    cov = k @ A @ k / two_m - mean ** 2
    tol = 1e3 * jnp.finfo(g.W.dtype).eps * jnp.maximum(mean ** 2, 1)
    return jnp.where((two_m > 0) & (var > tol), cov / jnp.where(var > tol, var, 1), jnp.nan)


def modularity(g: CoauthorGraph, labels: jax.Array, weighted: bool = True) -> jax.Array:
    """Newman's Q = Σ_c [L_c/m − (D_c/(2m))²] of the partition ``labels: i32[n_max]`` (ids in
    [0, n_max); padding ignored), on W (``weighted``) or A; 0 if n < 3 or m = 0 (official fallback)."""
    check_graph(g)
    n_max = g.W.shape[0]
    check_array("labels", labels, shape=(n_max,), kind="iu")
    if not is_traced(labels) and n_max and (np.asarray(labels).min() < 0 or np.asarray(labels).max() >= n_max):
        raise ValueError(f"labels: expected community ids in [0, {n_max - 1}]")
    A, _, n = _adj(g)
    Wm = g.W if weighted else A
    C = jax.nn.one_hot(labels, n_max, dtype=g.W.dtype) * g.node_mask[:, None]
    two_m = Wm.sum()
    E = C.T @ Wm @ C
    D = C.T @ Wm.sum(1)
    safe = jnp.maximum(two_m, jnp.finfo(g.W.dtype).tiny)
    Q = jnp.trace(E) / safe - ((D / safe) ** 2).sum()
    return jnp.where((n >= 3) & (two_m > 0), Q, 0.0)


def _clustering(A, k):
    t = jnp.einsum("ij,jk,ki->i", A, A, A) / 2
    return jnp.where(k >= 2, 2 * t / jnp.maximum(k * (k - 1), 1), 0.0), t


def average_clustering(g: CoauthorGraph, mask: jax.Array | None = None) -> jax.Array:
    """Mean local clustering coefficient (unweighted; degree < 2 counts as 0) over the nodes of
    ``mask`` (default: all real nodes); 0 for no node."""
    check_graph(g)
    A, k, _ = _adj(g)
    mask = g.node_mask if mask is None else mask & g.node_mask
    c, _ = _clustering(A, k)
    return jnp.where(mask, c, 0).sum() / jnp.maximum(mask.sum(), 1)


def burt_constraint(g: CoauthorGraph) -> jax.Array:
    """Burt's constraint per node (unweighted, networkx's ``constraint``): c = rowsum(A ⊙ (P + PP)²),
    P = A / k; NaN for isolated and padding nodes. f[n_max]."""
    check_graph(g)
    A, k, _ = _adj(g)
    P = A / jnp.where(k > 0, k, 1)[:, None]
    c = (A * (P + P @ P) ** 2).sum(1)
    return jnp.where(g.node_mask & (k > 0), c, jnp.nan)


def effective_size(g: CoauthorGraph) -> jax.Array:
    """Burt's effective size, Borgatti's unweighted form e = k − 2t/k (networkx); NaN for isolated
    and padding nodes. f[n_max]."""
    check_graph(g)
    A, k, _ = _adj(g)
    _, t = _clustering(A, k)
    return jnp.where(g.node_mask & (k > 0), k - 2 * t / jnp.where(k > 0, k, 1), jnp.nan)


def core_numbers(g: CoauthorGraph) -> jax.Array:
    """k-core number of every node by peeling (Batagelj–Zaversnik order, ``lax.while_loop``); i32[n_max]
    (0 for padding)."""
    check_graph(g)
    A, k, _ = _adj(g)

    def cond(c):
        return c[1].any()

    def body(c):
        deg, alive, core, level = c
        level = jnp.maximum(level, jnp.where(alive, deg, jnp.inf).min())
        rm = alive & (deg <= level)
        return deg - A @ rm.astype(A.dtype), alive & ~rm, jnp.where(rm, level, core), level

    init = (k, g.node_mask, jnp.zeros_like(k), jnp.zeros((), k.dtype))
    return jax.lax.while_loop(cond, body, init)[2].astype(jnp.int32)


def coreness_ratio(g: CoauthorGraph) -> jax.Array:
    """Share of nodes in the innermost core, #{core(v) = max core} / n; 0 if n < 3."""
    core = core_numbers(g)
    n = g.node_mask.sum()
    top = (g.node_mask & (core == jnp.where(g.node_mask, core, 0).max())).sum()
    return jnp.where(n >= 3, top / jnp.maximum(n, 1), 0.0).astype(g.W.dtype)


def connected_components(g: CoauthorGraph) -> jax.Array:
    """Component label of every node = the smallest node index in its component (min-label
    propagation); padding nodes get their own index. i32[n_max]."""
    check_graph(g)
    A, _, _ = _adj(g)
    n_max = A.shape[0]
    big = jnp.int32(n_max)

    def body(c):
        lab, _ = c
        nb = jnp.where(A > 0, lab[None, :], big).min(1)
        new = jnp.minimum(lab, nb)
        return new, (new != lab).any()

    lab, _ = jax.lax.while_loop(lambda c: c[1], body, (jnp.arange(n_max, dtype=jnp.int32), jnp.array(True)))
    return lab


def largest_component_mask(g: CoauthorGraph) -> jax.Array:
    """bool[n_max]: the nodes of the largest connected component (ties: the one with the smallest index)."""
    lab = connected_components(g)
    n_max = lab.shape[0]
    sizes = jnp.zeros((n_max,), jnp.int32).at[lab].add(g.node_mask.astype(jnp.int32))
    return g.node_mask & (lab == jnp.argmax(sizes))


def all_pairs_hops(g: CoauthorGraph, max_hops: int | None = None) -> jax.Array:
    """Hop distances between all node pairs by frontier expansion (boolean matmuls); ``inf`` for
    unreachable pairs, padding and pairs beyond ``max_hops`` (default n_max). f[n_max, n_max]."""
    check_graph(g)
    n_max = g.W.shape[0]
    max_hops = n_max if max_hops is None else max_hops
    if isinstance(max_hops, bool) or not isinstance(max_hops, (int, np.integer)) or max_hops < 0:
        raise ValueError(f"max_hops: expected an int >= 0, got {max_hops!r}")
    A, _, _ = _adj(g)
    eye = jnp.eye(n_max, dtype=bool) & g.node_mask[:, None]
    D = jnp.where(eye, 0.0, jnp.inf).astype(g.W.dtype)

    def cond(c):
        return (c[2] < max_hops) & c[1].any()

    def body(c):
        reach, front, h, D = c
        new = ((front.astype(A.dtype) @ A) > 0) & ~reach
        return reach | new, new, h + 1, jnp.where(new, (h + 1).astype(D.dtype), D)

    return jax.lax.while_loop(cond, body, (eye, eye, jnp.int32(0), D))[3]


def small_world_sigma(g: CoauthorGraph) -> jax.Array:
    """The official small-world coefficient σ = (C/C_rand)/(L/L_rand) on the LCC, C_rand = 2m_c/(n_c(n_c−1)),
    L_rand = ln n_c / ln k̄ (exact L; 0 if n < 10, m < 5, n_c < 5 or k̄ <= 1)."""
    check_graph(g)
    A, k, n = _adj(g)
    m = A.sum() / 2
    lcc = largest_component_mask(g)
    nc = lcc.sum().astype(A.dtype)
    mc = (A * (lcc[:, None] & lcc[None, :])).sum() / 2
    kbar = 2 * mc / jnp.maximum(nc, 1)
    C = average_clustering(g, lcc)
    D = all_pairs_hops(g)
    pair = lcc[:, None] & lcc[None, :] & ~jnp.eye(A.shape[0], dtype=bool)
    L = jnp.where(pair, D, 0).sum() / jnp.maximum(nc * (nc - 1), 1)
    C_rand = 2 * mc / jnp.maximum(nc * (nc - 1), 1)
    L_rand = jnp.log(jnp.maximum(nc, 2)) / jnp.log(jnp.where(kbar > 1, kbar, 2))
    sigma = (C / C_rand) / jnp.where(L > 0, L / L_rand, 1)
    ok = (n >= 10) & (m >= 5) & (nc >= 5) & (kbar > 1)
    return jnp.where(ok, sigma, 0.0)


def _gcc_size(A, alive):
    Aa = A * (alive[:, None] & alive[None, :])
    g2 = CoauthorGraph(W=Aa, node_mask=alive, n_papers=jnp.zeros(()), n_multi_papers=jnp.zeros(()))
    return largest_component_mask(g2).sum()


def robustness_ratio(key: jax.Array, g: CoauthorGraph, frac: float = 0.1) -> jax.Array:
    """GCC resilience under targeted removal (the q = max(1, ⌊frac·n⌋) highest-degree nodes) divided by
    that under random removal of q nodes (drawn with ``key``); 1 if n < 10, 0 if random resilience is 0."""
    check_graph(g)
    if not is_traced(frac):
        check_range("frac", frac, low=0.0, high=1.0, low_inclusive=False)
    A, k, n = _adj(g)
    n_max = A.shape[0]
    q = jnp.maximum(1, jnp.floor(frac * n)).astype(jnp.int32)
    before = _gcc_size(A, g.node_mask)
    idx = jnp.arange(n_max)
    # targeted: rank by (degree desc, index asc) among real nodes
    order = jnp.lexsort((idx, -jnp.where(g.node_mask, k, -1)))
    rank_t = jnp.zeros((n_max,), jnp.int32).at[order].set(jnp.arange(n_max, dtype=jnp.int32))
    u = jnp.where(g.node_mask, jax.random.uniform(key, (n_max,)), 2.0)
    rank_r = jnp.zeros((n_max,), jnp.int32).at[jnp.argsort(u)].set(jnp.arange(n_max, dtype=jnp.int32))
    res_t = _gcc_size(A, g.node_mask & (rank_t >= q)) / jnp.maximum(before, 1)
    res_r = _gcc_size(A, g.node_mask & (rank_r >= q)) / jnp.maximum(before, 1)
    ratio = jnp.where(res_r > 0, res_t / jnp.where(res_r > 0, res_r, 1), 0.0)
    return jnp.where(n >= 10, ratio, 1.0).astype(g.W.dtype)


def all_measures(key: jax.Array, g: CoauthorGraph, labels: jax.Array, weighted_modularity: bool = True) -> dict:
    """The ten measures of one topic (constraint and effective size averaged over real nodes)."""
    con, eff = burt_constraint(g), effective_size(g)
    return {
        "collaboration_rate": collaboration_rate(g), "repeated_collaboration_rate": repeated_collaboration_rate(g),
        "degree_centralization": degree_centralization(g), "degree_assortativity": degree_assortativity(g),
        "modularity": modularity(g, labels, weighted_modularity), "small_world": small_world_sigma(g),
        "coreness_ratio": coreness_ratio(g), "robustness_ratio": robustness_ratio(key, g),
        "constraint": jnp.nanmean(con), "effective_size": jnp.nanmean(eff),
    }


def detect_communities(g: CoauthorGraph, method: str = "greedy", seed: int = 0) -> np.ndarray:
    """Community labels (i32[n_max], padding -> its own index) by networkx: ``"greedy"`` =
    Clauset–Newman–Moore on the unweighted graph (the official path), ``"louvain"`` (seeded)."""
    check_graph(g)
    check_choice("method", method, ("greedy", "louvain"))
    nx = _networkx()
    W, mask = np.asarray(g.W), np.asarray(g.node_mask)
    G = nx.Graph()
    G.add_nodes_from(np.flatnonzero(mask).tolist())
    G.add_edges_from(np.argwhere(np.triu(W) > 0).tolist())
    labels = np.arange(W.shape[0], dtype=np.int32)
    if G.number_of_edges() == 0:
        return labels
    comms = (nx.community.greedy_modularity_communities(G) if method == "greedy"
             else nx.community.louvain_communities(G, seed=seed))
    for c, nodes in enumerate(comms):
        labels[list(nodes)] = c
    return labels


# ----------------------------------------------------------------------------------- statistics


def ols(y: jax.Array, X: jax.Array):
    """OLS of ``y: f[n]`` on the design ``X: f[n, p]`` (include the intercept column yourself):
    ``(beta f[p], se f[p], se_hc3 f[p])`` (classical and MacKinnon–White HC3 standard errors)."""
    check_array("y", y, ndim=1, kind="fiu")
    check_array("X", X, ndim=2, kind="fiu")
    n, p = X.shape
    if y.shape[0] != n:
        raise ValueError(f"X: expected {y.shape[0]} rows (as y), got {n}")
    if n <= p:
        raise ValueError(f"X: expected more rows than columns, got shape {tuple(X.shape)}")
    y, X = jnp.asarray(y), jnp.asarray(X)
    dt = jnp.result_type(y, X, float)
    y, X = y.astype(dt), X.astype(dt)
    XtXi = jnp.linalg.inv(X.T @ X)
    beta = XtXi @ X.T @ y
    e = y - X @ beta
    se = jnp.sqrt(jnp.diag(XtXi) * (e @ e) / (n - p))
    h = jnp.einsum("ij,jk,ik->i", X, XtXi, X)
    meat = (X * (e / (1 - h))[:, None] ** 2).T @ X
    return beta, se, jnp.sqrt(jnp.diag(XtXi @ meat @ XtXi))


def _two_samples(x, y):
    check_array("x", x, ndim=1, min_size=1, kind="fiu")
    check_array("y", y, ndim=1, min_size=1, kind="fiu")


def cliffs_delta(x: jax.Array, y: jax.Array) -> jax.Array:
    """Cliff's δ = (#{x > y} − #{x < y}) / (n_x n_y) over all pairs."""
    _two_samples(x, y)
    x, y = jnp.asarray(x), jnp.asarray(y)
    d = jnp.sign(x[:, None] - y[None, :])
    return d.mean()


def cohens_d(x: jax.Array, y: jax.Array) -> jax.Array:
    """Cohen's d = (mean x − mean y) / pooled sd (pooled from np.var, ddof 0; module docstring)."""
    _two_samples(x, y)
    x, y = jnp.asarray(x), jnp.asarray(y)
    nx_, ny = x.shape[0], y.shape[0]
    if nx_ + ny < 3:
        raise ValueError("x, y: expected at least 3 values in all for a pooled sd")
    pooled = jnp.sqrt(((nx_ - 1) * x.var() + (ny - 1) * y.var()) / (nx_ + ny - 2))
    return (x.mean() - y.mean()) / pooled


def bootstrap_ci(key: jax.Array, x: jax.Array, y: jax.Array, stat_fn: Callable | None = None, n_boot: int = 10_000,
                 level: float = 0.95):
    """Percentile bootstrap of ``stat_fn(x, y)`` (default: mean difference), each group resampled with
    replacement: ``(estimate, lo, hi)``."""
    _two_samples(x, y)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot: expected a positive int, got {n_boot!r}")
    check_range("level", level, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    stat_fn = (lambda a, b: a.mean() - b.mean()) if stat_fn is None else stat_fn
    x, y = jnp.asarray(x), jnp.asarray(y)
    kx, ky = jax.random.split(key)
    ix = jax.random.randint(kx, (n_boot, x.shape[0]), 0, x.shape[0])
    iy = jax.random.randint(ky, (n_boot, y.shape[0]), 0, y.shape[0])
    boots = jax.vmap(lambda i, j: stat_fn(x[i], y[j]))(ix, iy)
    a = (1 - level) / 2
    return stat_fn(x, y), jnp.quantile(boots, a), jnp.quantile(boots, 1 - a)


def popular_niche_split(P: jax.Array, frac: float = 0.2):
    """Masks of the top ``frac`` (popular) and bottom ``frac`` (niche) topics by paper count P
    (⌊frac·n⌋ each, ties broken by index): ``(popular bool[n], niche bool[n])``."""
    check_array("P", P, ndim=1, min_size=1, kind="fiu")
    check_range("frac", frac, low=0.0, high=0.5, low_inclusive=False)
    n = P.shape[0]
    q = int(math.floor(frac * n))
    if q < 1:
        raise ValueError(f"frac: {frac} of {n} topics leaves an empty group")
    order = jnp.argsort(jnp.asarray(P), stable=True)
    rank = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    return rank >= n - q, rank < q


def group_comparison(x, y, *, alpha: float = 0.05) -> dict:
    """The official two-group test (host, scipy): Shapiro–Wilk in both groups (p > alpha in both -> Student
    t-test, else two-sided Mann–Whitney U), plus Cliff's δ and Cohen's d."""
    from scipy import stats

    _two_samples(x, y)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 3 or y.size < 3:
        raise ValueError("x, y: expected at least 3 values per group")
    normal = stats.shapiro(x).pvalue > alpha and stats.shapiro(y).pvalue > alpha
    res = stats.ttest_ind(x, y) if normal else stats.mannwhitneyu(x, y, alternative="two-sided")
    return {"test": "t" if normal else "mann_whitney", "statistic": float(res.statistic), "p": float(res.pvalue),
            "cliffs_delta": float(cliffs_delta(x, y)), "cohens_d": float(cohens_d(x, y)),
            "mean_x": float(x.mean()), "mean_y": float(y.mean())}


def size_controlled_regression(metric, P, n_nodes, size_degree: int = 1) -> dict:
    """``z(metric) ~ 1 + z(ln P) + Σ_{d<=size_degree} z(ln(1 + n))^d`` over topics (NaN metrics dropped):
    the popularity coefficient, its HC3 t-value and the linear size coefficient
    (``coef_pop, t_pop, coef_size, t_size, n``). ``size_degree = 1`` is the spec's model; a higher degree
    is a more flexible size control (the zoo's addition)."""
    if isinstance(size_degree, bool) or not isinstance(size_degree, (int, np.integer)) or not 1 <= size_degree <= 5:
        raise ValueError(f"size_degree: expected an int in [1, 5], got {size_degree!r}")
    for nm, v in (("metric", metric), ("P", P), ("n_nodes", n_nodes)):
        check_array(nm, v, ndim=1, finite=nm != "metric", kind="fiu")
    metric, P, n_nodes = (np.asarray(v, np.float64) for v in (metric, P, n_nodes))
    if not metric.shape == P.shape == n_nodes.shape:
        raise ValueError(f"metric, P, n_nodes: expected equal lengths, got {metric.shape}, {P.shape}, {n_nodes.shape}")
    if (P <= 0).any() or (n_nodes < 0).any():
        raise ValueError("P: expected positive paper counts (and n_nodes >= 0)")
    ok = np.isfinite(metric)
    if ok.sum() < 5:
        raise ValueError(f"metric: expected at least 5 finite values, got {int(ok.sum())}")
    z = lambda v: (v - v.mean()) / v.std()
    y, a, b = z(metric[ok]), z(np.log(P[ok])), z(np.log1p(n_nodes[ok]))
    cols = [np.ones_like(a), a, b] + [b ** d for d in range(2, size_degree + 1)]
    beta, _, se3 = ols(jnp.asarray(y), jnp.asarray(np.stack(cols, 1)))
    beta, se3 = np.asarray(beta), np.asarray(se3)
    return {"coef_pop": float(beta[1]), "t_pop": float(beta[1] / se3[1]), "coef_size": float(beta[2]),
            "t_size": float(beta[2] / se3[2]), "n": int(ok.sum())}


# ----------------------------------------------------------------------------------- generator


def synth_topics(seed: int, n_topics: int, beta: float, *, p_range: tuple[int, int] = (15, 400), n_schools: int = 6,
                 school_seed: int = 3, n_experts: int = 3, cross_school: float = 0.05, min_nodes: int = 5):
    """Synthetic topics whose structure–popularity link is set by ``beta`` (spec §5b; numpy).

    Per topic: P = round(exp(U(ln p_lo, ln p_hi))) papers, team size 1 + Poisson(λ), λ ~ U(0.8, 2.5),
    newcomer probability ν ~ U(0.15, 0.7); each paper is *modular* with probability
    α = sigmoid(β z), z = (ln P − ln sqrt(p_lo p_hi)) / (0.5 ln(p_hi/p_lo)), else *core–periphery*.
    Modular: one of ``n_schools`` fixed schools (``school_seed`` founders each) uniformly; each slot is a
    newcomer (prob ν, joins the school) or a uniform member; with prob ``cross_school`` one member of
    another school joins. Core–periphery: ``n_experts`` fixed experts; the lead is an expert drawn
    ∝ 1 + its past papers, other slots newcomers (prob ν) or uniform experts. Slots are de-duplicated;
    topics with fewer than ``min_nodes`` network nodes are dropped.

    Returns ``(topics, meta)``: lists of papers (lists of author ids) and dicts (P, alpha, lam, nu).
    """
    for nm, v in (("seed", seed), ("n_topics", n_topics)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if nm == "seed" else 1):
            raise ValueError(f"{nm}: expected an int >= {0 if nm == 'seed' else 1}, got {v!r}")
    if not math.isfinite(beta):
        raise ValueError(f"beta: expected a finite float, got {beta!r}")
    lo, hi = p_range
    if not 1 <= lo < hi:
        raise ValueError(f"p_range: expected 1 <= low < high, got {p_range}")
    rng = np.random.default_rng(seed)
    topics, meta = [], []
    while len(topics) < n_topics:
        P = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
        lam, nu = rng.uniform(0.8, 2.5), rng.uniform(0.15, 0.7)
        z = (math.log(P) - 0.5 * math.log(lo * hi)) / (0.5 * math.log(hi / lo))
        alpha = 1 / (1 + math.exp(-beta * z))
        nxt = 0
        schools = []
        for _ in range(n_schools):
            schools.append(list(range(nxt, nxt + school_seed)))
            nxt += school_seed
        experts = list(range(nxt, nxt + n_experts))
        nxt += n_experts
        exp_papers = np.zeros(n_experts)
        papers = []
        for _ in range(P):
            size = 1 + rng.poisson(lam)
            team = []
            if rng.random() < alpha:
                s = int(rng.integers(n_schools))
                for _ in range(size):
                    if rng.random() < nu:
                        schools[s].append(nxt)
                        team.append(nxt)
                        nxt += 1
                    else:
                        team.append(schools[s][int(rng.integers(len(schools[s])))])
                if n_schools > 1 and rng.random() < cross_school:
                    o = int(rng.choice([i for i in range(n_schools) if i != s]))
                    team.append(schools[o][int(rng.integers(len(schools[o])))])
            else:
                w = 1 + exp_papers
                lead = int(rng.choice(n_experts, p=w / w.sum()))
                exp_papers[lead] += 1
                team.append(experts[lead])
                for _ in range(size - 1):
                    if rng.random() < nu:
                        team.append(nxt)
                        nxt += 1
                    else:
                        team.append(experts[int(rng.integers(n_experts))])
            papers.append(list(dict.fromkeys(team)))
        n_nodes = len({a for p in papers if len(p) >= 2 for a in p})
        if n_nodes >= min_nodes:
            topics.append(papers)
            meta.append({"P": P, "alpha": alpha, "lam": lam, "nu": nu, "n_nodes": n_nodes})
    return topics, meta
