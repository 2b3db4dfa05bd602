"""Experiment ``collab_structure``: structure vs popularity of synthetic co-authorship topics (arXiv 2506.22946).

Spec: ``papers/collab_structure.md`` §5(b). The paper's arXiv/BERTopic data has no offline substitute, so
topics come from :func:`zoo.stats.collab_structure.synth_topics`, whose link between popularity (paper count
P) and structure is set by ``beta``: each paper is produced by a modular ("schools") process with
probability sigmoid(beta z(ln P)), else by a core-periphery process; **beta = 0 is the null** (structure
independent of P). Per (seed, beta): ``n_topics`` topics; their networks (padded to size buckets) go
through the jnp measures in one vmapped call per bucket; the partition for modularity is networkx's CNM
(unweighted Q, as the spec's reference run). Analysis per metric: the continuous size-controlled
regression z(metric) ~ z(ln P) + z(ln(1 + n_nodes)) over all topics (HC3 t-values), plus the raw
popular (top 20%) vs niche (bottom 20%) Mann-Whitney test of modularity.

Claims (thresholds are the spec's, calibrated on its numpy+networkx reference run — 4 seeds, 150 topics;
the paper's own numbers are on real arXiv data and not comparable):
  C1 beta = 3: centralization coefficient <= -0.5 with t_HC3 <= -3 in >= 80% of the seeds, and the
     modularity coefficient >= +0.15 with t_HC3 >= 2 in >= 80% of the seeds;
  C2 beta = 0 (null): |coefficient| < 0.3 for both in >= 60% of the seeds, while the naive raw
     popular-vs-niche modularity comparison is "significant" (Mann-Whitney p < 1e-6) in every seed —
     a pure size artefact that the size-controlled regression removes;
  C3 (reported, not gated) constraint's beta = 0 coefficient, expected confounded (|t| > 2).
The ``test`` size (30 small topics, beta = 3, one seed) checks only that the centralization coefficient
is negative.

Pilot with OTHER seeds (100..104, ``--set seed_offset=100``), run before the gated run (seeds 0..4),
thresholds NOT changed after it: C1 held (centralization 5/5: coef -0.85 .. -1.20, t -6.8 .. -9.4;
modularity 4/5: coef 0.18 .. 0.54); C2 failed: at beta = 0 the centralization coefficient stays at
-0.34 .. -0.47 (t -1.9 .. -2.6; 0/5 seeds with both |coef| < 0.3) and the raw Mann-Whitney p is
6e-7 .. 4e-5 (1/5 below 1e-6). A cubic size control in ln(1 + n) (``size_degree = 3``) leaves the same
centralization residual (-0.38 .. -0.46), so with this generator the size control the spec describes does
not remove the null's spurious centralization effect (a bias, not seed noise). Paired over seeds (reported): coef(beta = 3) - coef(beta = 0) per metric.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from zoo.checks import check_range
from zoo.claims import paired_summary
from zoo.plotting import pyplot, save
from zoo.registry import Experiment, Outcome, RunContext, register

TITLE = "Modular versus Hierarchical: A Structural Signature of Topic Popularity in Mathematical Research"
CLAIM = ("Synthetic co-authorship topics: with a built-in link (beta = 3) the size-controlled regression finds "
         "popular topics less centralised (coef <= -0.5, t <= -3) and more modular (coef >= 0.15, t >= 2) in "
         ">= 80% of seeds; under the null (beta = 0) both |coef| < 0.3 in >= 60% of seeds although the naive "
         "popular-vs-niche modularity test gives p < 1e-6 in every seed.")
C1_CENT, C1_CENT_T, C1_MOD, C1_MOD_T, C1_FRAC = -0.5, -3.0, 0.15, 2.0, 0.8
C2_ABS, C2_FRAC, C2_P = 0.3, 0.6, 1e-6
METRICS = ("degree_centralization", "modularity", "coreness_ratio", "constraint", "degree_assortativity",
           "effective_size", "repeated_collaboration_rate", "collaboration_rate")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CollabConfig:
    n_topics: int = 150
    betas: tuple[float, ...] = (0.0, 3.0)
    p_low: int = 15
    p_high: int = 400
    max_seeds: int = 0  # 0: all of the run's seeds
    seed_offset: int = 0
    buckets: tuple[int, ...] = (64, 128, 256, 512, 1024)  # node-count paddings (one compile each)
    popular_frac: float = 0.2

    def __post_init__(self):
        check_range("n_topics", self.n_topics, low=10)
        if not self.betas or any(not math.isfinite(b) for b in self.betas):
            raise ValueError(f"betas: expected finite values, got {self.betas}")
        check_range("p_low", self.p_low, low=1)
        if self.p_high <= self.p_low:
            raise ValueError(f"p_high: expected > p_low = {self.p_low}, got {self.p_high}")
        check_range("max_seeds", self.max_seeds, low=0)
        check_range("seed_offset", self.seed_offset, low=0)
        if not self.buckets or list(self.buckets) != sorted(set(self.buckets)) or self.buckets[0] < 8:
            raise ValueError(f"buckets: expected increasing sizes >= 8, got {self.buckets}")
        check_range("popular_frac", self.popular_frac, low=0.0, high=0.5, low_inclusive=False)


SIZES = {
    "test": CollabConfig(n_topics=30, betas=(3.0,), p_high=80, max_seeds=1, buckets=(128,)),
    "quick": CollabConfig(),
    "paper": CollabConfig(n_topics=1938, betas=(0.0, 1.0, 3.0), p_high=2200, buckets=(64, 128, 256, 512, 1024, 2048,
                                                                                      4096)),
}


_FV = []


def _measures_fn():
    """The jitted, vmapped measures (built once per process, so each bucket size compiles once)."""
    if _FV:
        return _FV[0]
    import jax
    import jax.numpy as jnp

    from zoo.stats import collab_structure as cs

    def f(g, lab):
        con, eff = cs.burt_constraint(g), cs.effective_size(g)
        return {"degree_centralization": cs.degree_centralization(g), "modularity": cs.modularity(g, lab, False),
                "coreness_ratio": cs.coreness_ratio(g), "constraint": jnp.nanmean(con),
                "degree_assortativity": cs.degree_assortativity(g), "effective_size": jnp.nanmean(eff),
                "repeated_collaboration_rate": cs.repeated_collaboration_rate(g),
                "collaboration_rate": cs.collaboration_rate(g)}

    _FV.append(jax.jit(jax.vmap(f)))
    return _FV[0]


def _measure_topics(topics, buckets):
    """The jnp measures of every topic (vmapped per size bucket) with CNM partitions from networkx."""
    import jax
    import jax.numpy as jnp

    from zoo.stats import collab_structure as cs

    fv = _measures_fn()
    sizes = [len({a for p in t if len(p) >= 2 for a in p}) for t in topics]
    out = {k: np.full(len(topics), np.nan) for k in METRICS}
    pad = [next((b for b in buckets if b >= n), int(math.ceil(n / 256) * 256)) for n in sizes]
    for b in sorted(set(pad)):
        idx = [i for i, p in enumerate(pad) if p == b]
        graphs = [cs.from_papers(topics[i], n_max=b) for i in idx]
        labels = np.stack([cs.detect_communities(g) for g in graphs])
        res = fv(jax.tree.map(lambda *x: jnp.stack(x), *graphs), jnp.asarray(labels))
        for k, v in res.items():
            out[k][idx] = np.asarray(v, np.float64)
    return out, np.asarray(sizes)


def _plot(out_dir, examples) -> list[str]:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, metric in zip(axes, ("modularity", "degree_centralization", "constraint")):
        for beta, (P, vals) in examples.items():
            ax.scatter(np.log(P), vals[metric], s=6, alpha=0.6, label=f"beta = {beta:g}")
        ax.set(xlabel="ln P (papers in the topic)", ylabel=metric)
    axes[0].legend(fontsize=8)
    axes[0].set_title("raw measures vs popularity (seed 0)")
    fig.tight_layout()
    return [save(fig, out_dir, "collab_structure.png", dpi=80)]


def run(cfg: CollabConfig, ctx: RunContext) -> Outcome:
    from scipy.stats import mannwhitneyu

    from zoo.stats import collab_structure as cs

    t0 = time.perf_counter()
    seeds = [cfg.seed_offset + s for s in ctx.seeds]
    if cfg.max_seeds:
        seeds = seeds[: cfg.max_seeds]
    table = {b: [] for b in cfg.betas}
    examples = {}
    for s in seeds:
        for bi, beta in enumerate(cfg.betas):
            ctx.note(f"collab_structure: seed {s}, beta {beta:g}")
            topics, meta = cs.synth_topics(10_000 * bi + s, cfg.n_topics, beta, p_range=(cfg.p_low, cfg.p_high))
            vals, n_nodes = _measure_topics(topics, cfg.buckets)
            P = np.array([m["P"] for m in meta], np.float64)
            reg = {k: cs.size_controlled_regression(vals[k], P, n_nodes) for k in METRICS
                   if np.isfinite(vals[k]).sum() >= 5 and np.nanstd(vals[k]) > 0}
            pop, niche = (np.asarray(m) for m in cs.popular_niche_split(P, cfg.popular_frac))
            mw = mannwhitneyu(vals["modularity"][pop], vals["modularity"][niche], alternative="two-sided")
            table[beta].append({"seed": s, "regression": reg, "raw_modularity_popular": float(vals["modularity"][pop].mean()),
                                "raw_modularity_niche": float(vals["modularity"][niche].mean()),
                                "raw_modularity_mw_p": float(mw.pvalue),
                                "corr_lnP_ln1n": float(np.corrcoef(np.log(P), np.log1p(n_nodes))[0, 1]),
                                "topics": {"P": P.tolist(), "n_nodes": n_nodes.tolist(),
                                           **{k: [round(float(x), 6) for x in v] for k, v in vals.items()}}})
            if s == seeds[0]:
                examples[beta] = (P, vals)
    n = len(seeds)

    def coef(beta, metric, key="coef_pop"):
        return np.array([r["regression"].get(metric, {}).get(key, np.nan) for r in table[beta]])

    checks, metrics = {}, {}
    if 3.0 in cfg.betas:
        cc, ct = coef(3.0, "degree_centralization"), coef(3.0, "degree_centralization", "t_pop")
        mc, mt = coef(3.0, "modularity"), coef(3.0, "modularity", "t_pop")
        ok_c = int(((cc <= C1_CENT) & (ct <= C1_CENT_T)).sum())
        ok_m = int(((mc >= C1_MOD) & (mt >= C1_MOD_T)).sum())
        metrics.update({"beta3_cent_pass": ok_c, "beta3_mod_pass": ok_m})
        if ctx.size == "test" or n < 3:
            checks["C_test"] = bool(np.all(cc < 0))
        else:
            checks["C1"] = ok_c >= math.ceil(C1_FRAC * n) and ok_m >= math.ceil(C1_FRAC * n)
    if 0.0 in cfg.betas:
        c0, m0 = coef(0.0, "degree_centralization"), coef(0.0, "modularity")
        ok0 = int(((np.abs(c0) < C2_ABS) & (np.abs(m0) < C2_ABS)).sum())
        ps = np.array([r["raw_modularity_mw_p"] for r in table[0.0]])
        metrics.update({"beta0_null_pass": ok0, "beta0_raw_mw_significant": int((ps < C2_P).sum()),
                        "beta0_raw_mw_p_max": float(ps.max()),
                        "beta0_constraint_t_mean": float(np.nanmean(coef(0.0, "constraint", "t_pop")))})
        if n >= 3:
            checks["C2"] = ok0 >= math.ceil(C2_FRAC * n) and bool((ps < C2_P).all())
    paired = {}
    if 0.0 in cfg.betas and 3.0 in cfg.betas:
        for metric in ("degree_centralization", "modularity", "coreness_ratio", "constraint"):
            a, b = coef(3.0, metric), coef(0.0, metric)
            if np.isfinite(a).all() and np.isfinite(b).all():
                paired[metric] = paired_summary(a, b)
    for beta in cfg.betas:
        for metric in METRICS:
            c = coef(beta, metric)
            if np.isfinite(c).any():
                metrics[f"coef_{metric}_beta{beta:g}_mean"] = float(np.nanmean(c))
                metrics[f"t_{metric}_beta{beta:g}_mean"] = float(np.nanmean(coef(beta, metric, "t_pop")))
    metrics.update({f"paired_{m}_{k}": v for m, d in paired.items() for k, v in d.items()})
    metrics.update({f"claim_{k}": v for k, v in checks.items()})
    metrics["n_seeds"] = n
    metrics["seconds_compute"] = round(time.perf_counter() - t0, 3)
    plots = _plot(ctx.out_dir, examples)
    details = {"seeds": seeds, "per_seed": {f"beta{b:g}": table[b] for b in cfg.betas}, "paired_beta3_minus_beta0": paired,
               "thresholds": {"C1": [C1_CENT, C1_CENT_T, C1_MOD, C1_MOD_T, C1_FRAC], "C2": [C2_ABS, C2_FRAC, C2_P]}}
    return Outcome(metrics=metrics, claim_holds=bool(all(checks.values())), details=details, plots=plots)


register(Experiment(name="collab_structure", paper="collab_structure", title=TITLE, claim=CLAIM, sizes=SIZES, run=run,
                    default_seeds=5))
