"""Experiment ``stochastic_matching``: empirical competitive ratios of online matching with stochastic
rewards (arXiv 2309.10289) against OPT_GU, the Stochastic Configuration LP (B3) and the budget LP (B1).

Spec: ``papers/stochastic_matching.md`` section 5b. Families (generated in code): F1 UT and F2 revUT
(n offline, K copies of each type with p = 1/K, lowest-index ties), F3 random (n_off = J = 6, density
0.45, r ~ U[0.3, 1.5], p = r/K, random ties), F4 revUT with shuffled offline labels and random ties.
Every seed is one batch of ``runs_per_seed`` coin-flip runs; all seeds x runs of an (instance, algorithm)
are ONE vmapped call (``run_many``). B3 is the compact probe-flow LP (equal to the column-generation value).

Claims (thresholds fixed before the gated run, never tuned):
  C1 (P) on every instance ALG <= OPT_GU + 3 SE and OPT_GU <= B3 <= B1 (+1e-7): follows from the definitions.
  C2 (P) SB / B3 >= 0.611 on every instance with K >= 20: the paper's theorem (abstract), vanishing p.
  C3 (C) revUT (n = 6, K = 30): SB/OPT_GU - Greedy/OPT_GU >= 0.08, paired by seed (spec pilot: gap 0.134).
  C4 (C) revUT n = 6: |SB/B3 at K = 10 - SB/B3 at K = 50| < 0.05. Calibrated on a pilot with other seeds
     (``seed_offset = 1000``, 10 seeds x 400 runs, run before the gated run): SB/B3 = 0.7574 (K = 10) and
     0.7734 (K = 50), difference 0.016; the spec's 0.05 band is kept (about 3x the pilot difference).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from zoo.checks import check_range
from zoo.claims import paired_summary
from zoo.plotting import pyplot, save
from zoo.registry import Experiment, Outcome, RunContext, register

TITLE = "Online Matching with Stochastic Rewards: Advanced Analyses Using Configuration Linear Programs"
CLAIM = ("ALG <= OPT_GU <= SCLP <= budget LP on every instance; Stochastic Balance / SCLP >= 0.611 on every instance "
         "with K >= 20; on revUT (n = 6, K = 30) SB beats Greedy by >= 0.08 of OPT_GU (paired by seed); SB / SCLP "
         "moves < 0.05 between K = 10 and K = 50.")
C2_BOUND = 0.611
C3_GAP = 0.08
C4_BAND = 0.05


@dataclasses.dataclass(frozen=True, kw_only=True)
class MatchingConfig:
    n: int = 6  # UT / revUT size
    K: int = 30
    K_sweep: tuple[int, ...] = (10, 50)  # claim C4 on revUT(n)
    n_random: int = 3  # F3 instances
    random_n_off: int = 6
    random_K: int = 20
    runs_per_seed: int = 400
    seed_offset: int = 0  # pilots use other seeds (1000)
    h1: bool = False  # the closed-form instance H1 (test size)

    def __post_init__(self):
        check_range("n", self.n, low=2, high=14)
        check_range("K", self.K, low=1)
        if not self.K_sweep or any(k < 1 for k in self.K_sweep):
            raise ValueError(f"K_sweep: expected positive ints, got {self.K_sweep}")
        check_range("n_random", self.n_random, low=0)
        check_range("random_n_off", self.random_n_off, low=1, high=14)
        check_range("random_K", self.random_K, low=1)
        check_range("runs_per_seed", self.runs_per_seed, low=2)
        check_range("seed_offset", self.seed_offset, low=0)


SIZES = {
    "test": MatchingConfig(n=4, K=10, K_sweep=(5, 10), n_random=1, random_n_off=4, random_K=5, runs_per_seed=500,
                           h1=True),
    "quick": MatchingConfig(),
    "paper": MatchingConfig(n=8, K=50, K_sweep=(10, 50, 200), n_random=20, random_n_off=8, runs_per_seed=10_000),
}

ALGS = ("greedy", "balance", "ranking", "random")


def _instances(cfg, sm, jax):
    out = [("UT", sm.make_ut(cfg.n, cfg.K), "index"), ("revUT", sm.make_rev_ut(cfg.n, cfg.K), "index")]
    for j in range(cfg.n_random):
        out.append((f"random{j}", sm.make_random(jax.random.PRNGKey(10_000 + j), cfg.random_n_off, cfg.random_n_off,
                                                 cfg.random_K), "random"))
    out.append(("revUT_shuffled", sm.shuffle_offline(jax.random.PRNGKey(20_000), sm.make_rev_ut(cfg.n, cfg.K)), "random"))
    for K in cfg.K_sweep:
        if K != cfg.K:
            out.append((f"revUT_K{K}", sm.make_rev_ut(cfg.n, K), "index"))
    return out


def run(cfg: MatchingConfig, ctx: RunContext) -> Outcome:
    import jax

    from zoo.choice import stochastic_matching as sm

    t0 = time.perf_counter()
    seeds = [s + cfg.seed_offset for s in ctx.seeds]
    R = cfg.runs_per_seed
    rows, per_seed = [], {}
    for ii, (name, inst, ties) in enumerate(_instances(cfg, sm, jax)):
        ctx.note(f"{name}: benchmarks")
        opt = float(sm.clairvoyant_opt(inst))
        sclp = sm.stochastic_config_lp(inst)[0]
        b1 = sm.budget_lp(inst)
        K = int(inst.adj.shape[1]) // (inst.adj.shape[0] if name.startswith(("UT", "revUT")) else cfg.random_n_off)
        row = {"instance": name, "n_off": int(inst.adj.shape[0]), "T": int(inst.adj.shape[1]), "K": K, "ties": ties,
               "opt": opt, "sclp": sclp, "budget_lp": b1}
        for ai, kind in enumerate(ALGS):
            alg = sm.AlgParams(kind=kind, tie_break=ties)
            keys = jax.vmap(lambda s: jax.random.split(jax.random.fold_in(jax.random.PRNGKey(s), 100 * ii + ai), R))(
                np.asarray(seeds))
            g = np.asarray(sm.run_many(keys.reshape(-1, keys.shape[-1]), inst, alg)["gain"], np.float64)
            g = g.reshape(len(seeds), R)
            m, se = g.mean(), g.std(ddof=1) / np.sqrt(g.size)
            per_seed[(name, kind)] = g.mean(1)
            row[kind] = {"mean": m, "se": se, "vs_opt": m / opt, "vs_sclp": m / sclp, "vs_lp": m / b1}
        rows.append(row)
    seconds = time.perf_counter() - t0
    # C1 chain
    c1 = all(r["opt"] <= r["sclp"] + 1e-7 <= r["budget_lp"] + 2e-7
             and all(r[k]["mean"] <= r["opt"] + 3 * r[k]["se"] + 1e-9 for k in ALGS) for r in rows)
    # C2 SB / SCLP >= 0.611 when K >= 20
    big = [r for r in rows if r["K"] >= 20]
    c2 = all(r["balance"]["vs_sclp"] >= C2_BOUND for r in big) if big else None
    min_sb_sclp = min(r["balance"]["vs_sclp"] for r in rows)
    # C3 revUT n = 6, K = 30: paired SB - Greedy (per-seed ratios to OPT_GU)
    rev = next(r for r in rows if r["instance"] == "revUT")
    c3, c3_summary = None, None
    if cfg.n == 6 and cfg.K == 30:
        c3_summary = paired_summary(per_seed[("revUT", "balance")] / rev["opt"], per_seed[("revUT", "greedy")] / rev["opt"])
        c3 = c3_summary["mean"] >= C3_GAP
    else:
        c3_summary = paired_summary(per_seed[("revUT", "balance")] / rev["opt"], per_seed[("revUT", "greedy")] / rev["opt"]) \
            if len(seeds) > 1 else None
    # C4 K sensitivity on revUT(n)
    byK = {cfg.K: rev["balance"]["vs_sclp"]}
    for r in rows:
        if r["instance"].startswith("revUT_K"):
            byK[r["K"]] = r["balance"]["vs_sclp"]
    c4, c4_diff = None, None
    if 10 in byK and 50 in byK:
        c4_diff = abs(byK[10] - byK[50])
        c4 = c4_diff < C4_BAND
    checks = {"C1": c1, "C2": c2, "C3": c3, "C4": c4}
    h1 = None
    if cfg.h1:
        inst = sm.make_instance(np.ones((1, 2), bool), 0.5)
        h1 = {"opt": float(sm.clairvoyant_opt(inst)), "sclp": sm.stochastic_config_lp(inst, "enumerate")[0],
              "config_lp": sm.config_lp(inst), "budget_lp": sm.budget_lp(inst)}
    plots = _plot(ctx.out_dir, rows, byK)
    metrics = {**{f"claim_{k}": v for k, v in checks.items()}, "min_sb_over_sclp": min_sb_sclp,
               "min_sb_over_sclp_K20": min((r["balance"]["vs_sclp"] for r in big), default=None),
               "revUT_sb_over_opt": rev["balance"]["vs_opt"], "revUT_greedy_over_opt": rev["greedy"]["vs_opt"],
               "revUT_opt": rev["opt"], "revUT_sclp": rev["sclp"], "c4_abs_diff": c4_diff,
               "runs_per_instance_alg": len(seeds) * R, "instances": len(rows), "seconds_compute": round(seconds, 2)}
    if c3_summary:
        metrics.update({f"c3_gap_{k}": v for k, v in c3_summary.items()})
    details = {"table": rows, "sb_over_sclp_by_K": {str(k): v for k, v in sorted(byK.items())}, "h1": h1,
               "thresholds": {"c2": C2_BOUND, "c3": C3_GAP, "c4": C4_BAND}, "seeds_used": seeds}
    return Outcome(metrics=metrics, claim_holds=all(v for v in checks.values() if v is not None), details=details,
                   plots=plots)


def _plot(out_dir, rows, byK):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    ax = axes[0]
    names = [r["instance"] for r in rows]
    x = np.arange(len(rows))
    for j, k in enumerate(ALGS):
        ax.bar(x + (j - 1.5) * 0.2, [r[k]["vs_sclp"] for r in rows], 0.2, label=k)
    ax.axhline(C2_BOUND, color="k", ls="--", lw=1, label="0.611 (paper, vs SCLP)")
    ax.set_xticks(x, names, rotation=30, fontsize=7)
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("ALG / SCLP (B3)")
    ax.legend(fontsize=7, ncol=3)
    ax = axes[1]
    ks = sorted(byK)
    ax.plot(ks, [byK[k] for k in ks], "o-")
    ax.axhline(C2_BOUND, color="k", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("K (copies per type)")
    ax.set_title("SB / SCLP on revUT", fontsize=9)
    fig.tight_layout()
    return [save(fig, out_dir, "stochastic_matching.png")]


register(Experiment(name="stochastic_matching", paper="stochastic_matching", title=TITLE, claim=CLAIM, sizes=SIZES,
                    run=run, default_seeds=10))
