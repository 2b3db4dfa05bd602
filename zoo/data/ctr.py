"""A synthetic multi-domain CTR data set with a known latent cluster structure (spec ``papers/adaptdhm.md`` §5b).

`synth_multidomain_ctr` is a pure numpy function of a seed:
- M domains; the latent cluster of domain d is ``z(d) = d mod K*`` (unknown to a model);
  domain sizes equal, or Zipf(1)-shaped with ``zipf_sizes`` (largest first);
- F categorical fields with V values each. In cluster c, field f's value is a Zipf(``zipf``) rank
  mapped through a cluster- and field-specific random permutation of the V values, so clusters
  differ in their input distribution;
- ground-truth value vectors ``t_f(v) ~ N(0, I/4)`` in R^e, ``φ(x) = concat_f t_f(x_f)``;
- cluster CTR function ``g_c(x) = a_cᵀ φ(x) + Σ_{f<f'} t_f(x_f)ᵀ B_c t_f'(x_f') + b_c`` with
  ``a_c = ρ a_0 + sqrt(1−ρ²) ξ_c``, ``B_c = 0.5 (ρ B_0 + sqrt(1−ρ²) Ξ_c)`` (entries N(0, 1)) and
  ``b_c ~ N(0, 0.5²)`` (ours: the spec names b_c without a law);
- ``logit = scale · g_{z(d)}(x) / std(g) + δ_d + bias``, ``δ_d ~ N(0, domain_offset_sd²)``, with the
  bias found by bisection so that the mean click probability is ``mean_ctr``;
  ``y ~ Bernoulli(sigmoid(logit))``.
The true logits are returned, so the Bayes-optimal AUC is measurable.
"""

from __future__ import annotations

import numpy as np

__all__ = ["synth_multidomain_ctr"]


def _int(name: str, v, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
    return int(v)


def _num(name: str, v, low: float, high: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not low <= v <= high:
        raise ValueError(f"{name}: expected a number in [{low}, {high}], got {v!r}")
    return float(v)


def synth_multidomain_ctr(
    seed: int,
    n_per_domain: int = 20_000,
    *,
    num_domains: int = 9,
    num_clusters: int = 3,
    num_fields: int = 8,
    vocab: int = 100,
    e_true: int = 4,
    rho: float = 0.3,
    zipf: float = 1.1,
    scale: float = 1.5,
    domain_offset_sd: float = 0.1,
    mean_ctr: float = 0.15,
    zipf_sizes: bool = False,
) -> dict:
    """The synthetic CTR data (module docstring), samples grouped by domain.

    Returns:
      dict of numpy arrays: ``features i32[N, F+1]`` (the F fields, then the domain id as the last
      field), ``domain i32[N]``, ``cluster i32[N]`` (latent; for evaluation only), ``y i32[N]``,
      ``logit f64[N]`` (the true logit), and ``vocab_sizes`` (``(V,)*F + (M,)``), ``num_domains``,
      ``num_clusters``.
    """
    seed = _int("seed", seed, 0)
    n = _int("n_per_domain", n_per_domain, 1)
    M = _int("num_domains", num_domains, 1)
    K = _int("num_clusters", num_clusters, 1)
    F = _int("num_fields", num_fields, 1)
    V = _int("vocab", vocab, 2)
    e = _int("e_true", e_true, 1)
    rho = _num("rho", rho, -1.0, 1.0)
    zipf = _num("zipf", zipf, 0.0, 10.0)
    scale = _num("scale", scale, 0.0, 100.0)
    sd = _num("domain_offset_sd", domain_offset_sd, 0.0, 10.0)
    mean_ctr = _num("mean_ctr", mean_ctr, 1e-4, 1 - 1e-4)
    if not isinstance(zipf_sizes, bool):
        raise TypeError(f"zipf_sizes: expected a bool, got {type(zipf_sizes).__name__}")

    rng = np.random.default_rng(seed)
    cluster_of = np.arange(M) % K
    if zipf_sizes:
        w = 1.0 / np.arange(1, M + 1)
        sizes = np.maximum(1, np.round(n * M * w / w.sum())).astype(int)
    else:
        sizes = np.full(M, n)
    domain = np.repeat(np.arange(M, dtype=np.int32), sizes)
    cluster = cluster_of[domain].astype(np.int32)
    N = domain.size

    perm = np.stack([np.stack([rng.permutation(V) for _ in range(F)]) for _ in range(K)])  # [K, F, V]
    p = np.arange(1, V + 1, dtype=np.float64) ** -zipf
    ranks = rng.choice(V, size=(N, F), p=p / p.sum())
    x = perm[cluster[:, None], np.arange(F)[None, :], ranks].astype(np.int32)  # [N, F]

    t = rng.normal(0.0, 0.5, size=(F, V, e))  # t_f(v), N(0, I/4)
    a0, B0 = rng.normal(size=F * e), rng.normal(size=(e, e))
    c = np.sqrt(1 - rho * rho)
    a = rho * a0 + c * rng.normal(size=(K, F * e))
    B = 0.5 * (rho * B0 + c * rng.normal(size=(K, e, e)))
    bc = rng.normal(0.0, 0.5, size=K)
    delta = rng.normal(0.0, sd, size=M)

    phi = t[np.arange(F)[None, :], x]  # [N, F, e]
    lin = np.einsum("nk,nk->n", phi.reshape(N, F * e), a[cluster])
    pair = np.einsum("nfi,nij,ngj->nfg", phi, B[cluster], phi)
    g = lin + np.triu(pair, 1).sum((1, 2)) + bc[cluster]
    z = scale * g / g.std() + delta[domain]

    lo, hi = -30.0, 30.0  # bisection on the bias: mean sigmoid(z + bias) = mean_ctr
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if np.mean(1 / (1 + np.exp(-(z + mid)))) < mean_ctr:
            lo = mid
        else:
            hi = mid
    logit = z + 0.5 * (lo + hi)
    y = (rng.random(N) < 1 / (1 + np.exp(-logit))).astype(np.int32)
    features = np.concatenate([x, domain[:, None]], 1).astype(np.int32)
    return {"features": features, "domain": domain, "cluster": cluster, "y": y, "logit": logit,
            "vocab_sizes": (V,) * F + (M,), "num_domains": M, "num_clusters": K}
