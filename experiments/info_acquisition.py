"""Experiment ``info_acquisition``: the optimal IC mechanism LP and the explore-then-commit regret curve
(Cacciamani, Castiglioni, Gatti, arXiv 2307.06210).

Spec: ``papers/info_acquisition.md`` section 5b. Instance: ``binary_accuracy_instance(q, c)`` with 2 agents,
uniform binary state, q = (0.85, 0.75), c = (0.05, 0.04), payment bound B = 1 (OPT = 51/70). Every seed
draws the exploration samples of every horizon (one vmapped call); one LP per (seed, T) on the host.

Claims (thresholds fixed before the gated run, never tuned):
  C1 (P + C) robust ETC (kappa = 0.1): fitted log-log slope in [0.55, 0.80] (brackets the paper's
     O~(T^{2/3}); the lower end is ours; spec pilot 0.683 over 30 seeds) and R_T / T^{2/3} in [1.5, 3.5] at
     every T (spec pilot range [2.14, 2.39], 30 seeds; the constant is instance-specific).
  C2 (C) no-margin ETC (kappa = 0): slope >= 0.85 (spec pilot 0.900 over T <= 3e5, 30 seeds). Our pilot
     (``seed_offset = 1000``, 10 seeds, before the gated run) gave 0.849: the no-margin regret is bimodal
     across seeds (linear on the seeds whose estimate under-pays), so 10 seeds do not resolve it; the
     threshold stays 0.85 and the experiment uses 30 seeds by default, as the spec's pilot did.
  C3 (C) the mechanism committed at T = 1e6 (kappa = 0.1) is IC under the TRUE pi (max violation <= 1e-9)
     on >= 90 % of seeds. Pilot with other seeds (``seed_offset = 1000``, 10 seeds, run before the gated
     run): 10/10 seeds IC (max violation 0.0); the spec's 90 % is kept.
  Closed forms (spec 2.2) and the 2-/3-agent optima are checked at every size (C0).
Paired comparison reported: per-seed regret at the largest T, no-margin minus robust.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from zoo.checks import check_range
from zoo.claims import paired_summary
from zoo.plotting import pyplot, save
from zoo.registry import Experiment, Outcome, RunContext, register

TITLE = "Online Information Acquisition: Hiring Multiple Agents"
CLAIM = ("The LP reproduces the closed-form optima; robust explore-then-commit has a log-log regret slope in "
         "[0.55, 0.80] (the paper's O~(T^2/3)) with R_T / T^(2/3) in [1.5, 3.5]; without the margin the slope is "
         ">= 0.85; the committed mechanism is IC under the true signals on >= 90% of seeds.")
C1_SLOPE = (0.55, 0.80)
C1_CONST = (1.5, 3.5)
C2_SLOPE = 0.85
C3_RATE = 0.9


@dataclasses.dataclass(frozen=True, kw_only=True)
class InfoConfig:
    q: tuple[float, ...] = (0.85, 0.75)
    c: tuple[float, ...] = (0.05, 0.04)
    B: float = 1.0
    Ts: tuple[int, ...] = (1_000, 3_000, 10_000, 30_000, 100_000, 300_000)
    kappa: float = 0.1
    c1: float = 1.0
    ic_T: int = 1_000_000  # 0: skip C3
    seed_offset: int = 0

    def __post_init__(self):
        if len(self.q) != len(self.c) or not self.q or any(not 0.5 < x <= 1 for x in self.q):
            raise ValueError(f"q: expected accuracies in (0.5, 1], one per cost, got q = {self.q}, c = {self.c}")
        if any(x < 0 for x in self.c):
            raise ValueError(f"c: expected costs >= 0, got {self.c}")
        check_range("B", self.B, low=0.0, low_inclusive=False)
        if len(self.Ts) < 2 or list(self.Ts) != sorted(set(self.Ts)) or self.Ts[0] < 10:
            raise ValueError(f"Ts: expected >= 2 increasing horizons >= 10, got {self.Ts}")
        check_range("kappa", self.kappa, low=0.0)
        check_range("c1", self.c1, low=0.0, low_inclusive=False)
        check_range("ic_T", self.ic_T, low=0)
        check_range("seed_offset", self.seed_offset, low=0)


SIZES = {
    "test": InfoConfig(Ts=(1_000, 10_000, 100_000), ic_T=0),
    "quick": InfoConfig(),
    "paper": InfoConfig(Ts=(1_000, 10_000, 100_000, 1_000_000, 10_000_000)),
}


def _closed_forms(ia):
    one = ia.binary_accuracy_instance([0.8], [0.1])
    got = {
        "one_agent": ia.solve_optimal_mechanism(one)[0],
        "one_agent_c0.2": ia.solve_optimal_mechanism(ia.binary_accuracy_instance([0.8], [0.2]))[0],
        "one_agent_B0.30": ia.solve_optimal_mechanism(one, B=0.30)[0],
        "one_agent_B0.34": ia.solve_optimal_mechanism(one, B=0.34)[0],
        "one_agent_eta0.01": ia.solve_optimal_mechanism(one, margin=0.01)[0],
        "two_agent": ia.solve_optimal_mechanism(ia.binary_accuracy_instance([0.85, 0.75], [0.05, 0.04]), B=1.0)[0],
        "three_agent": ia.solve_optimal_mechanism(ia.binary_accuracy_instance([0.7] * 3, [0.01] * 3))[0],
    }
    want = {"one_agent": 8 / 15, "one_agent_c0.2": 0.5, "one_agent_B0.30": 0.5, "one_agent_B0.34": 8 / 15,
            "one_agent_eta0.01": 0.8 - 0.8 * 0.11 / 0.3, "two_agent": 51 / 70, "three_agent": 0.679}
    return got, want, all(abs(got[k] - want[k]) <= 1e-6 for k in want)


def run(cfg: InfoConfig, ctx: RunContext) -> Outcome:
    import jax

    from zoo.choice import info_acquisition as ia

    t0 = time.perf_counter()
    got, want, c0 = _closed_forms(ia)
    inst = ia.binary_accuracy_instance(list(cfg.q), list(cfg.c), B=cfg.B)
    seeds = [s + cfg.seed_offset for s in ctx.seeds]
    key = jax.random.PRNGKey(seeds[0])
    n = len(seeds)
    ctx.note("robust ETC")
    rob = ia.regret_curve(jax.random.fold_in(key, n), inst, cfg.Ts, n, kappa=cfg.kappa, B=cfg.B, c1=cfg.c1)
    ctx.note("no-margin ETC")
    nom = ia.regret_curve(jax.random.fold_in(key, n), inst, cfg.Ts, n, kappa=0.0, B=cfg.B, c1=cfg.c1)
    Ts = np.asarray(cfg.Ts, np.float64)
    const = rob["mean"] / Ts ** (2 / 3)
    c1 = C1_SLOPE[0] <= rob["slope"] <= C1_SLOPE[1] and bool(((const >= C1_CONST[0]) & (const <= C1_CONST[1])).all())
    c2 = nom["slope"] >= C2_SLOPE
    c3, ic_rate, ic_max = None, None, None
    if cfg.ic_T:
        ctx.note("IC at T = ic_T")
        viol = [ia.etc_regret(jax.random.fold_in(jax.random.PRNGKey(s), 7), inst, cfg.ic_T, kappa=cfg.kappa, B=cfg.B,
                              c1=cfg.c1)["ic_violation"] for s in seeds]
        ic_rate, ic_max = float(np.mean(np.asarray(viol) <= 1e-9)), float(np.max(viol))
        c3 = ic_rate >= C3_RATE
    paired = paired_summary(nom["per_seed"][:, -1], rob["per_seed"][:, -1]) if n > 1 else None
    seconds = time.perf_counter() - t0
    checks = {"C0": c0, "C1": c1, "C2": c2, "C3": c3}
    plots = _plot(ctx.out_dir, Ts, rob, nom)
    metrics = {**{f"claim_{k}": v for k, v in checks.items()}, "opt": rob["opt"], "slope_robust": rob["slope"],
               "slope_no_margin": nom["slope"], "const_min": float(const.min()), "const_max": float(const.max()),
               "ic_pass_rate": ic_rate, "ic_max_violation": ic_max, "n_seeds": n,
               "fallback_rate_robust": float(rob["fallback"].mean()), "seconds_compute": round(seconds, 2),
               **{f"regret_robust_T{int(t)}": float(r) for t, r in zip(Ts, rob["mean"])},
               **{f"regret_no_margin_T{int(t)}": float(r) for t, r in zip(Ts, nom["mean"])}}
    if paired:
        metrics.update({f"no_margin_minus_robust_{k}": v for k, v in paired.items()})
    details = {"closed_forms": got, "closed_forms_expected": want, "Ts": list(cfg.Ts), "seeds_used": seeds,
               "regret_robust_per_seed": rob["per_seed"].tolist(), "regret_no_margin_per_seed": nom["per_seed"].tolist(),
               "thresholds": {"c1_slope": C1_SLOPE, "c1_const": C1_CONST, "c2_slope": C2_SLOPE, "c3_rate": C3_RATE}}
    return Outcome(metrics=metrics, claim_holds=all(v for v in checks.values() if v is not None), details=details,
                   plots=plots)


def _plot(out_dir, Ts, rob, nom):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.loglog(Ts, rob["mean"], "o-", label=f"robust ETC (kappa = 0.1), slope {rob['slope']:.2f}")
    ax.loglog(Ts, nom["mean"], "s-", label=f"no margin (kappa = 0), slope {nom['slope']:.2f}")
    ref = rob["mean"][0] * (Ts / Ts[0]) ** (2 / 3)
    ax.loglog(Ts, ref, "k--", lw=1, label="T^(2/3)")
    ax.set_xlabel("horizon T")
    ax.set_ylabel("mean regret")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return [save(fig, out_dir, "info_acquisition.png")]


register(Experiment(name="info_acquisition", paper="info_acquisition", title=TITLE, claim=CLAIM, sizes=SIZES, run=run,
                    default_seeds=30))
