"""Experiment ``cogdpm``: precision-weighted guidance on synthetic precipitation-like fields (arXiv 2405.02384).

Spec: ``papers/cogdpm.md`` §5 (the method is the zoo's reconstruction, see `zoo.generative.cogdpm`).
Data: `zoo.data.fields.moving_blobs` (moving, growing and decaying blobs on a periodic grid, with the
oracle predictability map ``oracle_spread``), in z-space ``z = 2 log(1 + R) / log 65 - 1``.
One conditional DPM per seed is trained through `zoo.train.run_population` (Adam, grad-clip 1, EMA of
the weights for sampling; chunked, checkpointed, resumable). The test contexts are then forecast in
three modes with common random numbers (same key -> same x_T for every mode): ``none`` (w = 0),
``cfg`` (W = 1, w = 1) and ``pw`` (CogDPM, w = 1, trajectory estimator). Scores on R (mm/h).

Sizes (ours; the spec's quick grid is 32 x 32, 4 -> 4 frames, 4000 sequences):
- ``test``: 8 x 8, 2 -> 2 frames, a one-level U-Net, 4 steps, 4 contexts (a smoke run: the claim
  at this size is only that every score is finite);
- ``quick``: **16 x 16**, 4 -> 4 frames, at most 2 blobs (at 16 x 16 four blobs of width up to 4 px
  cover ~90 % of the grid), 2000 training sequences, U-Net widths (16, 32) with one residual block
  per level, 1500 Adam steps of batch 32 (chunks of 2 unrolled steps: XLA:CPU runs
  convolutions inside a ``lax.scan`` loop ~20x slower), S = 20 quadratic levels, M = 4 members, 64 test contexts,
  1 seed — one CPU core, < 3 min;
- ``paper``: the spec's 64 x 64, 4 -> 12 frames, 40000 sequences, widths (64, 128, 256), 200k steps,
  S = 50, M = 8, 1000 test sequences, 3 seeds (a GPU).

Claims (fixed before the gated run). The paper's tables were not retrievable (spec §5(a)), so there
is no published effect size at any scale, and the spec's margins (CRPS x 0.98, CSI + 0.01,
Spearman >= 0.3) are marked there as unverified guesses. The gate is therefore the paper's claimed
*direction*, required to be resolved by the data: paired over the test contexts (same contexts,
same noise; per-context values averaged over seeds), with `zoo.claims.paired_summary`'s bootstrap
95 % interval,
  1. guidance: CRPS(none) - CRPS(pw) has ci_low > 0, and CSI(pw, 4 mm/h, pool 1) - CSI(none) has
     ci_low > 0 (contexts with an observed event);
  2. precision: the per-context Spearman correlation of the final uncertainty map U (mean over
     members) with |error of the ensemble mean| has ci_low > 0, and likewise with ``oracle_spread``.
The spec's margins are reported next to it (``spec_*`` metrics) but not gated; pw vs cfg is reported only.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from zoo.checks import check_range
from zoo.plotting import pyplot, save
from zoo.registry import Experiment, Outcome, RunContext, register

TITLE = "CogDPM: Diffusion Probabilistic Models via Cognitive Predictive Coding"
CLAIM = (
    "Precision-weighted guidance beats no guidance on CRPS and CSI(4 mm/h) (paired over test contexts, 95% CI "
    "above 0), and the precision map's uncertainty rank-correlates positively with the forecast error and with "
    "the oracle predictability map (95% CI above 0)."
)
MODES = ("none", "cfg", "pw")
CSI_THRESHOLD = 4.0  # mm/h


@dataclasses.dataclass(frozen=True, kw_only=True)
class CogDPMExperimentConfig:
    size: int = 16
    frames_in: int = 4
    frames_out: int = 4
    max_blobs: int = 2
    n_train: int = 2000
    n_test: int = 64
    widths: tuple[int, ...] = (16, 32)
    blocks: int = 1
    steps: int = 1500
    chunk_steps: int = 2  # steps per chunk, unrolled (XLA:CPU runs convolutions inside a loop ~20x slower)
    checkpoint_chunks: int = 125  # checkpoint at most every this many chunks
    batch_size: int = 32
    lr: float = 2e-4
    ema: float = 0.995
    sample_steps: int = 20
    ensemble_size: int = 4
    guidance_w: float = 1.0
    eval_batch: int = 16

    def __post_init__(self):
        for f in ("size", "frames_in", "frames_out", "max_blobs", "n_train", "n_test", "blocks", "steps",
                  "chunk_steps", "checkpoint_chunks", "batch_size", "sample_steps", "eval_batch"):
            check_range(f, getattr(self, f), low=1)
        if self.steps % self.chunk_steps:
            raise ValueError(f"chunk_steps: expected a divisor of steps={self.steps}, got {self.chunk_steps}")
        check_range("ensemble_size", self.ensemble_size, low=2)
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        check_range("ema", self.ema, low=0.0, high=1.0, high_inclusive=False)
        check_range("guidance_w", self.guidance_w, low=0.0)
        check_range("sample_steps", self.sample_steps, high=1000)

    def model(self):
        from zoo.generative.cogdpm import CogDPMConfig

        return CogDPMConfig(frames_in=self.frames_in, frames_out=self.frames_out, height=self.size, width=self.size,
                            widths=tuple(self.widths), blocks=self.blocks, groups=min(8, self.widths[0]),
                            sample_steps=self.sample_steps, ensemble_size=self.ensemble_size,
                            guidance_w=self.guidance_w)


SIZES = {
    "test": CogDPMExperimentConfig(size=8, frames_in=2, frames_out=2, n_train=64, n_test=4, widths=(8,), steps=4,
                                   chunk_steps=1, batch_size=8, sample_steps=5, ensemble_size=2, eval_batch=4,
                                   lr=1e-3, ema=0.9),
    "quick": CogDPMExperimentConfig(),
    "paper": CogDPMExperimentConfig(size=64, frames_in=4, frames_out=12, max_blobs=4, n_train=40000, n_test=1000,
                                    widths=(64, 128, 256), blocks=2, steps=200_000, chunk_steps=4,
                                    checkpoint_chunks=500,
                                    sample_steps=50, ensemble_size=8, ema=0.999, eval_batch=8),
}


def _data(cfg: CogDPMExperimentConfig, seed: int, n: int, oracle: bool):
    from zoo.data.fields import moving_blobs, rain_to_z

    d = moving_blobs(seed, n, frames_in=cfg.frames_in, frames_out=cfg.frames_out, size=cfg.size,
                     max_blobs=cfg.max_blobs, oracle_samples=16 if oracle else 0)
    return d, {k: rain_to_z(d[k])[..., None] for k in ("context", "target")}


def _train_fns(cfg: CogDPMExperimentConfig, mcfg):
    import jax
    import jax.numpy as jnp
    import optax

    from zoo.generative import cogdpm

    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(cfg.lr))

    def init(key, hp):
        k_p, k_run = jax.random.split(key)
        params = cogdpm.init(k_p, mcfg)
        return {"params": params, "ema": params, "opt": opt.init(params), "key": k_run}

    def chunk(state, hp, c):
        n = hp["context"].shape[0]

        def step(st, i):
            k = jax.random.fold_in(st["key"], c * cfg.chunk_steps + i)
            k_b, k_l = jax.random.split(k)
            idx = jax.random.randint(k_b, (cfg.batch_size,), 0, n)
            batch = {"context": hp["context"][idx], "target": hp["target"][idx]}
            (val, aux), g = jax.value_and_grad(cogdpm.loss, has_aux=True)(st["params"], mcfg, k_l, batch)
            upd, opt_state = opt.update(g, st["opt"], st["params"])
            params = optax.apply_updates(st["params"], upd)
            ema = jax.tree.map(lambda e, p: cfg.ema * e + (1 - cfg.ema) * p, st["ema"], params)
            return {**st, "params": params, "ema": ema, "opt": opt_state}, val

        state, losses = jax.lax.scan(step, state, jnp.arange(cfg.chunk_steps), unroll=True)
        return state, {"loss": jnp.mean(losses)}

    return init, chunk


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def _evaluate(cfg, mcfg, ema_params, test_z, test, key, ctx: RunContext):
    """Per-context scores of every mode for one trained model: dict mode -> dict of f[n_test] arrays."""
    import jax

    from zoo.data.fields import z_to_rain
    from zoo.generative import cogdpm
    from zoo.generative.metrics import crps_ensemble

    sampler = jax.jit(lambda p, k, c: cogdpm.sample_modes(p, mcfg, k, c, MODES))  # one program, three modes
    n = test_z["context"].shape[0]
    out = {m: {"crps": [], "csi": [], "rho_err": [], "rho_oracle": []} for m in MODES}
    example = {}
    for start in range(0, n, cfg.eval_batch):
        sl = slice(start, min(n, start + cfg.eval_batch))
        k = jax.random.fold_in(key, start)  # the same key in every mode: common random numbers
        obs = test["target"][sl]  # [b, To, H, W] mm/h
        xs, Us = sampler(ema_params, k, test_z["context"][sl])
        for mi, m in enumerate(MODES):
            x, U = xs[mi], Us[mi]
            R = np.asarray(z_to_rain(np.asarray(x[..., 0], np.float64)))  # [M, b, To, H, W]
            crps = np.asarray(crps_ensemble(R, obs)).mean(axis=(1, 2, 3))
            U_mean = np.asarray(U[..., 0]).mean(0)
            err = np.abs(R.mean(0) - obs)
            P, O = R >= CSI_THRESHOLD, (obs >= CSI_THRESHOLD)[None]  # member-wise CSI per context, numpy
            tp, den = (P & O).sum(axis=(2, 3, 4)), (P | O).sum(axis=(2, 3, 4))
            csi_mc = np.where(den > 0, tp / np.maximum(den, 1), np.nan).mean(0)  # [b]; NaN: no event at all
            for j in range(R.shape[1]):
                out[m]["crps"].append(float(crps[j]))
                out[m]["csi"].append(float(csi_mc[j]) if O[0, j].any() else np.nan)
                out[m]["rho_err"].append(_spearman(U_mean[j], err[j]))
                out[m]["rho_oracle"].append(_spearman(U_mean[j], test["oracle_spread"][sl][j]))
            if start == 0:
                example[m] = (R[:, 0], U_mean[0])
        ctx.note(f"cogdpm: sampled {sl.stop}/{n} test contexts")
    return {m: {k: np.asarray(v) for k, v in d.items()} for m, d in out.items()}, example


def _plot(out_dir, test, example, summary) -> list[str]:
    plt = pyplot()
    To = test["target"].shape[1]
    fig, ax = plt.subplots(6, To, figsize=(2.1 * To, 12), squeeze=False)
    R_pw, U_pw = example["pw"]
    rows = [("truth (mm/h)", test["target"][0]), ("member 1, pw", R_pw[0]), ("ensemble mean, pw", R_pw.mean(0)),
            ("|error| of mean", np.abs(R_pw.mean(0) - test["target"][0])), ("uncertainty U (pw)", U_pw),
            ("oracle spread", test["oracle_spread"][0])]
    vmax = float(max(test["target"][0].max(), 1.0))
    for r, (name, f) in enumerate(rows):
        for t in range(To):
            kw = {"vmin": 0, "vmax": vmax} if r < 3 else {}
            ax[r, t].imshow(f[t], cmap="Blues" if r < 3 else "magma", **kw)
            ax[r, t].set_xticks([])
            ax[r, t].set_yticks([])
            if t == 0:
                ax[r, t].set_ylabel(name, fontsize=8)
            if r == 0:
                ax[r, t].set_title(f"lead {t + 1}", fontsize=8)
    fig.suptitle("CogDPM (zoo reconstruction) on moving blobs: forecast and precision map", fontsize=9)
    fig.tight_layout()
    names = [save(fig, out_dir, "cogdpm_quick.png", dpi=90)]
    fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    ax[0].bar(MODES, [summary[f"crps_{m}"] for m in MODES], color=["0.6", "C0", "C3"])
    ax[0].set(ylabel="CRPS (mm/h), mean over contexts", title="lower is better")
    ax[1].bar(MODES, [summary[f"csi_{m}"] for m in MODES], color=["0.6", "C0", "C3"])
    ax[1].set(ylabel=f"CSI at {CSI_THRESHOLD} mm/h", title="higher is better")
    fig.tight_layout()
    names.append(save(fig, out_dir, "cogdpm_scores.png", dpi=90))
    return names


def run(cfg: CogDPMExperimentConfig, ctx: RunContext) -> Outcome:
    import jax

    from zoo.claims import paired_summary
    from zoo.train import run_population

    t0 = time.perf_counter()
    mcfg = cfg.model()
    seeds = list(ctx.seeds)
    _, train_z = _data(cfg, 10_000 + seeds[0], cfg.n_train, oracle=False)
    test, test_z = _data(cfg, 20_000 + seeds[0], cfg.n_test, oracle=True)
    S = len(seeds)
    hp = {k: np.broadcast_to(v, (S,) + v.shape) for k, v in train_z.items()}
    keys = jax.vmap(jax.random.key)(np.asarray(seeds, np.uint32))
    init, chunk = _train_fns(cfg, mcfg)
    t1 = time.perf_counter()
    state, outs = run_population(init, chunk, keys, hp, num_chunks=cfg.steps // cfg.chunk_steps,
                                 steps_per_chunk=cfg.chunk_steps, unit="step",
                                 **ctx.runner("train", checkpoint_every=max(ctx.checkpoint_every, cfg.checkpoint_chunks)))
    train_s = time.perf_counter() - t1
    losses = np.asarray(outs["loss"])  # [S, chunks]
    per_seed, example = [], None
    t2 = time.perf_counter()
    for i, s in enumerate(seeds):
        ema = jax.tree.map(lambda a, i=i: a[i], state["ema"])
        scores, ex = _evaluate(cfg, mcfg, ema, test_z, test, jax.random.key(1_000 + s), ctx)
        per_seed.append(scores)
        example = example or ex
    eval_s = time.perf_counter() - t2
    avg = {m: {k: np.mean([p[m][k] for p in per_seed], axis=0) for k in per_seed[0][m]} for m in MODES}

    metrics = {"final_loss": float(losses[:, -1].mean()), "first_chunk_loss": float(losses[:, 0].mean()),
               "seconds_train": train_s, "seconds_eval": eval_s, "seconds_data": t1 - t0,
               "sample_steps": len(_levels(mcfg)), "ensemble_size": cfg.ensemble_size}
    for m in MODES:
        metrics[f"crps_{m}"] = float(avg[m]["crps"].mean())
        metrics[f"csi_{m}"] = float(np.nanmean(avg[m]["csi"]))
        metrics[f"rho_err_{m}"] = float(avg[m]["rho_err"].mean())
        metrics[f"rho_oracle_{m}"] = float(avg[m]["rho_oracle"].mean())
    ev = ~np.isnan(avg["none"]["csi"])
    details = {"claims": {}, "per_context": {m: {k: v.tolist() for k, v in d.items()} for m, d in avg.items()},
               "losses": losses.tolist()}
    finite = all(np.isfinite(v) for k, v in metrics.items() if not k.startswith("csi"))
    if ev.sum() >= 2:
        details["claims"]["crps_none_minus_pw"] = paired_summary(avg["none"]["crps"], avg["pw"]["crps"])
        details["claims"]["csi_pw_minus_none"] = paired_summary(avg["pw"]["csi"][ev], avg["none"]["csi"][ev])
        details["claims"]["crps_cfg_minus_pw"] = paired_summary(avg["cfg"]["crps"], avg["pw"]["crps"])
        details["claims"]["csi_pw_minus_cfg"] = paired_summary(avg["pw"]["csi"][ev], avg["cfg"]["csi"][ev])
    zeros = np.zeros(cfg.n_test)
    details["claims"]["rho_err_pw"] = paired_summary(avg["pw"]["rho_err"], zeros)
    details["claims"]["rho_oracle_pw"] = paired_summary(avg["pw"]["rho_oracle"], zeros)
    metrics["csi_contexts"] = int(ev.sum())
    metrics["spec_crps_ratio_pw_none"] = metrics["crps_pw"] / metrics["crps_none"]
    metrics["spec_csi_margin_pw_none"] = metrics["csi_pw"] - metrics["csi_none"]
    c = details["claims"]
    if ctx.size == "test":
        holds = bool(finite)
    else:
        guidance = ("csi_pw_minus_none" in c and c["crps_none_minus_pw"]["ci_low"] > 0
                    and c["csi_pw_minus_none"]["ci_low"] > 0)
        prec = c["rho_err_pw"]["ci_low"] > 0 and c["rho_oracle_pw"]["ci_low"] > 0
        metrics["claim_guidance"] = bool(guidance)
        metrics["claim_precision"] = bool(prec)
        holds = bool(guidance and prec)
    plots = _plot(ctx.out_dir, test, example, metrics)
    return Outcome(metrics=metrics, claim_holds=holds, details=details, plots=plots)


def _levels(mcfg):
    from zoo.generative.cogdpm import levels

    return levels(mcfg)


register(
    Experiment(
        name="cogdpm",
        paper="cogdpm",
        title=TITLE,
        claim=CLAIM,
        sizes=SIZES,
        run=run,
        default_seeds=1,
        resumable=True,
    )
)
