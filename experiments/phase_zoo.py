"""Experiment ``phase_zoo``: a generated model zoo over load (width) × temperature (learning rate).

Spec: ``papers/phase_zoo.md`` §5(b), with the spec's fallback data (scikit-learn digits; MNIST-1D is
not installed): ReLU MLPs 64 → w → w → 10, SGD momentum 0.9, wd 5e-4, one-cycle lr, batch 32. Each
width is one vmapped population (|lrs| × n_seeds members) trained by `zoo.train.run_population`
(chunk = one epoch; checkpoints and ``--resume`` per width). Per model: performance and Hessian
metrics (power iteration, Hutchinson); per seed pair: logit CKA, linear-path and Bezier-curve mode
connectivity; per cell the rule-based phase (`zoo.weightspace.phase_zoo.classify_phase`). The zoo
(weights + metrics) is saved under ``out_dir/zoo`` (orbax + ``datasets``) and loadable by `load_zoo`.

Seeds: the zoo's own seed axis has ``n_seeds`` members per cell, drawn from ``key(seed_offset)``; a
pilot uses ``--set seed_offset=100`` (other seeds), the gated run ``seed_offset=0``.

Claims (quick grid widths {2..64} × lrs {0.001..0.1}, 2 seeds; the spec's Q1–Q4 adapted to this grid):
  Q1 (load): mean over lr ≥ 0.01 of Spearman(width, cell train loss) ≤ −0.8;
  Q2 (phases exist): ≥ 3 distinct phases, ≥ 1 under-fitted (I/II) and ≥ 1 well-trained (III/IV);
  Q3 (CKA): mean CKA of the two largest widths ≥ that of the two smallest + 0.05 (lr ≥ 0.01);
  Q4 (curves vs lines): Bezier mc_loss ≥ linear mc_loss in ≥ 90% of cells.
Thresholds: the spec's (its numpy pilot and the paper's heat-maps give directions only; the paper
(heat-maps of arXiv 2504.18072; figure numbers not checked here) shows train loss falling and CKA rising with width and all
five phases on every vision zoo). Pilot on OTHER seeds (seed_offset=100), recorded in PILOT before the
gated run; the thresholds were fixed before it and not changed after. History: the first gated run
(seed_offset=0) trained the Bezier bend for 2 epochs and Q2 failed (mc_err < -1 in all 30 cells: only
phases I and III); re-run larger with the paper's 10 Bezier epochs (same seeds, same thresholds) every
claim held, and 10 epochs became the quick default.
Report only: population throughput (models per second, the middle width's |lrs| × n_seeds members in
one vmapped population vs |lrs| populations of the seed pair one after another; compile included).
``test`` size: 1 width × 2 lrs × 2 seeds, 2 epochs, tiny budgets, linear path only; claim = everything finite, labels in
{-1..4}, the saved zoo loads back identical.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from zoo.checks import check_range
from zoo.plotting import pyplot, save
from zoo.registry import Experiment, Outcome, RunContext, register

TITLE = "A Model Zoo on Phase Transitions in Neural Networks"
CLAIM = (
    "On a generated zoo of digits MLPs over width × learning rate: train loss falls with width (Spearman <= -0.8 "
    "at lr >= 0.01), the rule finds >= 3 phases incl. an under-fitted and a well-trained one, logit CKA of the "
    "widest models exceeds that of the narrowest by >= 0.05, and a trained Bezier curve has mc >= the line's in "
    ">= 90% of cells."
)
Q1_RHO = -0.8
Q3_GAP = 0.05
Q4_FRAC = 0.9
# Pilot, seed_offset=100 (other seeds), quick config, 2026-12-07, recorded BEFORE the gated run (seed_offset=0);
# every claim held, so the spec's thresholds were kept unchanged.
PILOT = {"seed_offset": 100, "Q1_spearman_mean": -0.848, "Q1_spearman_per_lr": [-1.0, -1.0, -0.543],
         "Q3_gap": 0.340, "Q4_frac": 1.0, "phase_counts": {"I": 21, "II": 1, "III": 8},
         "note": "no IV phase: mc_err < -1 (barrier) in 29/30 cells even along the 2-epoch Bezier curve",
         # run AFTER the gated runs, as a check of the 10-epoch default on other seeds (not a calibration):
         "confirm_bezier10_seed_offset100": {"Q1": -0.848, "Q3_gap": 0.340, "Q4_frac": 1.0,
                                             "phase_counts": {"I": 13, "II": 9, "III": 8}, "all_hold": True}}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PhaseZooExpConfig:
    widths: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    lrs: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1)
    n_seeds: int = 2
    epochs: int = 20
    power_iter: int = 20
    probes: int = 10
    bezier_epochs: int = 10  # the paper's Bezier budget (the first gated run used 2: Q2 failed, see the docs)
    cka_batches: int = 8
    hot_lr: float = 0.01  # Q1/Q3 use the columns lr >= hot_lr
    seed_offset: int = 0
    gate: bool = True  # False (test size): only finiteness / round-trip checks

    def __post_init__(self):
        if len(self.widths) < 4 and self.gate:
            raise ValueError(f"widths: expected >= 4 widths for the gated claims, got {self.widths}")
        check_range("epochs", self.epochs, low=1)
        check_range("n_seeds", self.n_seeds, low=2)
        check_range("power_iter", self.power_iter, low=1)
        check_range("probes", self.probes, low=1)
        check_range("bezier_epochs", self.bezier_epochs, low=0)
        check_range("cka_batches", self.cka_batches, low=1, high=100)
        check_range("seed_offset", self.seed_offset, low=0)
        check_range("hot_lr", self.hot_lr, low=0.0, low_inclusive=False)
        self.zoo_config()  # validates the grid

    def zoo_config(self):
        from zoo.weightspace.phase_zoo import ZooConfig

        return ZooConfig(widths=self.widths, lrs=self.lrs, n_seeds=self.n_seeds, epochs=self.epochs,
                         power_iter=self.power_iter, probes=self.probes, bezier_epochs=self.bezier_epochs,
                         cka_batches=self.cka_batches)


SIZES = {
    "test": PhaseZooExpConfig(widths=(8,), lrs=(0.003, 0.03), epochs=2, power_iter=3, probes=2, bezier_epochs=0,
                              cka_batches=4, gate=False),
    "quick": PhaseZooExpConfig(),
    "paper": PhaseZooExpConfig(widths=(2, 4, 8, 16, 32, 64, 128, 256), lrs=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
                                                                             0.2), n_seeds=3, epochs=60, power_iter=100,
                               probes=100, bezier_epochs=10),
}


def _spearman(x, y):
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def _plot(out_dir, cfg, cells, phases):
    from zoo.weightspace.phase_zoo import PHASE_NAMES

    plt = pyplot()
    keys = [("train_loss", "train loss"), ("test_acc", "test accuracy"), ("log_trace", "log Tr H"),
            ("mc_err", "mc (train error %)"), ("cka", "logit CKA")]
    fig, axes = plt.subplots(1, 6, figsize=(20, 3.4))
    for ax, (k, title) in zip(axes, keys):
        im = ax.imshow(cells[k], origin="lower", aspect="auto", cmap="viridis")
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set(title=title)
    im = axes[5].imshow(np.where(phases < 0, np.nan, phases), origin="lower", aspect="auto", cmap="tab10", vmin=0,
                        vmax=9)
    for (i, j), v in np.ndenumerate(phases):
        axes[5].text(j, i, PHASE_NAMES[v] if v >= 0 else "?", ha="center", va="center", fontsize=7, color="w")
    axes[5].set(title="phase")
    for ax in axes:
        ax.set_xticks(range(len(cfg.lrs)), [f"{lr:g}" for lr in cfg.lrs], fontsize=7)
        ax.set_yticks(range(len(cfg.widths)), [str(w) for w in cfg.widths], fontsize=7)
        ax.set_xlabel("learning rate (temperature)")
    axes[0].set_ylabel("width (load ↓)")
    fig.tight_layout()
    save(fig, out_dir, "phase_zoo.png", dpi=80)
    return ["phase_zoo.png"]


def run(cfg: PhaseZooExpConfig, ctx: RunContext) -> Outcome:
    import jax

    from zoo.weightspace import phase_zoo as pz

    t0 = time.perf_counter()
    zc = cfg.zoo_config()
    data = pz.load_data()
    zoo = pz.build_zoo(zc, data, jax.random.key(cfg.seed_offset), runner=ctx.runner, note=ctx.note)
    pz.save_zoo(zoo, ctx.out_dir / "zoo")
    back = pz.load_zoo(ctx.out_dir / "zoo")
    cells, phases = zoo["cells"], np.asarray(zoo["phases"])
    lrs, widths = np.asarray(zc.lrs), np.asarray(zc.widths)
    hot = lrs >= cfg.hot_lr
    metrics = {"n_models": len(zoo["models"]["width"]), "seconds": round(time.perf_counter() - t0, 2),
               "phase_counts": {pz.PHASE_NAMES[p] if p >= 0 else "undetermined": int(np.sum(phases == p))
                                for p in sorted(set(phases.ravel().tolist()))},
               "components": {pz.PHASE_NAMES[p]: n for p, n in zoo["components"].items()}}
    for k in ("train_loss", "test_acc", "log_trace", "log_top_ev", "mc_err", "mc_loss", "lin_mc_loss", "cka"):
        metrics[f"grid/{k}"] = np.round(cells[k], 4).tolist()
    metrics["grid/phase"] = phases.tolist()
    checks = {}
    finite_keys = ("train_loss", "test_acc", "trace", "cka", "mc_err", "mc_loss", "lin_mc_loss")
    checks["finite"] = bool(all(np.all(np.isfinite(cells[k])) for k in finite_keys))
    checks["labels_valid"] = bool(np.all((phases >= -1) & (phases <= 4)))
    checks["roundtrip"] = bool(
        all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(zoo["params"]), jax.tree.leaves(back["params"])))
        and back["models"].num_rows == metrics["n_models"] and np.array_equal(back["phases"], phases))
    if cfg.gate:
        rhos = [_spearman(widths, cells["train_loss"][:, j]) for j in np.flatnonzero(hot)]
        metrics["Q1_spearman_mean"] = float(np.mean(rhos))
        metrics["Q1_spearman_per_lr"] = rhos
        checks["Q1"] = metrics["Q1_spearman_mean"] <= Q1_RHO
        present = set(phases.ravel().tolist()) - {-1}
        checks["Q2"] = bool(len(present) >= 3 and present & {0, 1} and present & {2, 3, 4})
        big = cells["cka"][-2:, hot].mean()
        small = cells["cka"][:2, hot].mean()
        metrics.update({"Q3_cka_large": float(big), "Q3_cka_small": float(small), "Q3_gap": float(big - small)})
        checks["Q3"] = bool(big - small >= Q3_GAP)
        frac = float(np.mean(cells["mc_loss"] >= cells["lin_mc_loss"] - 1e-6))
        metrics["Q4_frac_bezier_ge_linear"] = frac
        checks["Q4"] = frac >= Q4_FRAC
        # report-only: Hessian trace by phase, sensitivity of the phase count to ±50% thresholds
        metrics["Q5_log_trace_by_phase"] = {pz.PHASE_NAMES[p]: float(np.nanmean(cells["log_trace"][phases == p]))
                                            for p in sorted(present)}
        sens = {}
        for f in (0.5, 1.5):
            lab = np.asarray(pz.classify_phase(cells, zc.tau_loss * f, zc.tau_mc * f, min(zc.tau_cka * f, 1.0)))
            sens[str(f)] = int(len(set(lab.ravel().tolist()) - {-1}))
        metrics["Q5_n_phases_at_threshold_scale"] = sens
        # population throughput: the middle width's vmapped group vs its lrs trained one population
        # (of the seed pair) after another; wall time with compilation included in both
        w = zc.widths[len(zc.widths) // 2]
        t_vmap = zoo["train_seconds"][f"w{w}"]
        t1 = time.perf_counter()
        for lr in zc.lrs:
            pz.train_group(dataclasses.replace(zc, lrs=(lr,)), w, data, jax.random.key(cfg.seed_offset),
                           ctx.runner(f"seq_w{w}_lr{lr:g}"))
        t_seq = time.perf_counter() - t1
        n = len(zc.lrs) * zc.n_seeds
        metrics.update({"throughput_width": w, "throughput_models_per_s_vmapped": n / t_vmap,
                        "throughput_models_per_s_sequential": n / t_seq, "throughput_ratio": t_seq / t_vmap})
    metrics.update({f"claim_{k}": bool(v) for k, v in checks.items()})
    plots = _plot(ctx.out_dir, zc, cells, phases)
    details = {"models": zoo["models"], "pilot": PILOT, "seed_offset": cfg.seed_offset,
               "thresholds": {"Q1": Q1_RHO, "Q3": Q3_GAP, "Q4": Q4_FRAC, "tau_loss": zc.tau_loss,
                              "tau_mc": zc.tau_mc, "tau_cka": zc.tau_cka}}
    return Outcome(metrics=metrics, claim_holds=bool(all(checks.values())), details=details, plots=plots)


register(
    Experiment(
        name="phase_zoo",
        paper="phase_zoo",
        title=TITLE,
        claim=CLAIM,
        sizes=SIZES,
        run=run,
        default_seeds=2,
        resumable=True,
    )
)
