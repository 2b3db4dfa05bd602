"""Latent-topic retrieval: the offline reranking task of GroupRank (spec ``papers/grouprank.md`` §3).

Per query (dimension D, M candidates):

    u ~ N(0, (9/D) I)        intent (what the query asks)
    c ~ N(0, (9/D) I)        topic (shared by the query and *every* candidate)
    q = u + c + 0.5 ε / √D
    a_j = 0 w.p. p_irrelevant else U(0, 1)    (at least one a_j > 0.01 forced)
    grade_j = #{a_j > 0.01, a_j > 0.5, a_j > 0.8} ∈ {0, 1, 2, 3}
    β_j ~ N(1, 1)            topic loading (nuisance)
    d_j = a_j u + β_j c + 0.5 ε_j / √D

``q · d_j ≈ 9 a_j + 9 β_j``: a single (q, d) pair cannot tell relevance ``a_j`` from the nuisance
``β_j``; a *group* of candidates can, because the group mean points along the topic ``c``.

- `RetrievalConfig` — the generator's knobs (frozen, validated).
- `generate(seed, n, cfg)` -> numpy arrays ``q f32[n, D]``, ``docs f32[n, M, D]``, ``grades i32[n, M]``,
  ``relevance f32[n, M]`` (the latent ``a``), ``retriever f32[n, M]`` (the first-stage dot product ``q·d``).
- `make_dataset(seed, n, cfg)` -> the same arrays as a cached ``datasets.Dataset`` (``datasets`` imported lazily).
- `reward(scores, grades, k)` -> NDCG@k per query (vectorised; delegates to `zoo.rl.ranking.ndcg_at_k`).

Choices that are ours: the forced relevant candidate draws ``a ~ U(0.01, 1)``; the retriever score is
the raw dot product.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from zoo.checks import check_array, check_range
from zoo.rl.ranking import ndcg_at_k


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetrievalConfig:
    """Shape and noise of the latent-topic retrieval generator."""

    dim: int = 32  # D
    n_candidates: int = 30  # M
    p_irrelevant: float = 0.85  # P(a_j = 0)
    scale: float = 9.0  # variance of u and c is scale / D
    noise: float = 0.5  # std of the isotropic noise is noise / sqrt(D)
    loading_mean: float = 1.0  # β_j ~ N(loading_mean, loading_std²)
    loading_std: float = 1.0

    def __post_init__(self):
        check_range("dim", self.dim, low=2, high=4096)
        check_range("n_candidates", self.n_candidates, low=2, high=10_000)
        check_range("p_irrelevant", self.p_irrelevant, low=0.0, high=1.0, high_inclusive=False)
        check_range("scale", self.scale, low=0.0, low_inclusive=False)
        check_range("noise", self.noise, low=0.0)
        check_range("loading_std", self.loading_std, low=0.0)


def grade_of(a: np.ndarray) -> np.ndarray:
    """``grade = #{a > 0.01, a > 0.5, a > 0.8}``: ``a: f[...] -> i32[...]`` in {0, 1, 2, 3}."""
    check_array("a", a, ndim=range(0, 32), kind="fiub")
    a = np.asarray(a)
    return ((a > 0.01).astype(np.int32) + (a > 0.5) + (a > 0.8)).astype(np.int32)


def _check_args(seed, n, cfg):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n: expected an int, got {n!r}")
    check_range("n", n, low=1)
    if not isinstance(cfg, RetrievalConfig):
        raise ValueError(f"cfg: expected a RetrievalConfig, got {type(cfg).__name__}")


def generate(seed: int, n: int, cfg: RetrievalConfig = RetrievalConfig()) -> dict[str, np.ndarray]:
    """``n`` queries with their ``M`` candidates (module docstring); a pure function of ``seed``."""
    _check_args(seed, n, cfg)
    rng = np.random.default_rng(seed)
    d, m = cfg.dim, cfg.n_candidates
    sd = np.sqrt(cfg.scale / d)
    u = rng.normal(0.0, sd, (n, d))
    c = rng.normal(0.0, sd, (n, d))
    q = u + c + cfg.noise * rng.normal(size=(n, d)) / np.sqrt(d)
    a = np.where(rng.random((n, m)) < cfg.p_irrelevant, 0.0, rng.random((n, m)))
    none = grade_of(a).max(1) == 0  # force one relevant candidate per query
    j = rng.integers(0, m, n)
    forced = rng.uniform(0.01, 1.0, n)
    a[none, j[none]] = np.maximum(forced[none], 0.0101)
    beta = rng.normal(cfg.loading_mean, cfg.loading_std, (n, m))
    docs = a[..., None] * u[:, None] + beta[..., None] * c[:, None] + cfg.noise * rng.normal(size=(n, m, d)) / np.sqrt(d)
    q, docs = q.astype(np.float32), docs.astype(np.float32)
    return {
        "q": q,
        "docs": docs,
        "grades": grade_of(a),
        "relevance": a.astype(np.float32),
        "retriever": np.einsum("nd,nmd->nm", q, docs).astype(np.float32),
    }


generate.version = 1  # bump when the generator's output changes (cache key of `make_dataset`)


def _generate_kw(seed: int, *, n: int, **cfg_fields) -> dict[str, np.ndarray]:
    return generate(seed, n, RetrievalConfig(**cfg_fields))


_generate_kw.version = generate.version


def make_dataset(seed: int, n: int, cfg: RetrievalConfig = RetrievalConfig(), *, cache: bool = True):
    """`generate` as a ``datasets.Dataset`` (numpy format), cached under ``$ZOO_CACHE``."""
    _check_args(seed, n, cfg)
    from zoo.data import cached_dataset

    return cached_dataset(_generate_kw, seed, cache=cache, n=n, **dataclasses.asdict(cfg))


def reward(scores, grades, k: int | None = None):
    """NDCG@k of ``scores: f32[..., M]`` against ``grades: i32[..., M]`` (k = M by default) -> ``f32[...]``."""
    return ndcg_at_k(scores, grades, np.shape(grades)[-1] if k is None else k)
