"""Experiment ``adaptdhm``: AdaptDHM vs its single-cluster version, an oracle and multi-domain baselines (arXiv 2211.12105).

Spec: ``papers/adaptdhm.md`` §5(b). Data: `zoo.data.ctr.synth_multidomain_ctr` (M = 9 domains, latent
cluster z(d) = d mod 3, F = 8 fields of V = 100 values, known true logits), generated per seed; a
random 80/20 train/test split per seed (the spec's 10% validation split is not used: no early stopping).
Models (`zoo.routing.adaptdhm`, same embedding size and tower widths): AdaptDHM (K = 3, β = 0.9, r = 3),
its single-cluster version (K = 1), the oracle (AdaptDHM towers routed by the true cluster), DNN,
shared-bottom, MMoE (n_expert = M) and STAR. Adam (lr 1e-3) with L2 weight decay 1e-5 added to the
gradient (torch ``weight_decay``). Each method trains the seeds as one vmapped population through
`zoo.train.run_population`, one chunk per epoch, evaluating test logits after every epoch.

Per-step training time: one member of each method, jitted step, same batch, the minimum over
``timing_steps`` steps after warm-up, the methods interleaved step by step, measured in the same run.

Claims (paired by seed; `zoo.claims.paired_summary`):
  1. AdaptDHM (K = 3) test AUC >= its single-cluster version (K = 1) + ``AUC_GAIN_MIN``, with the
     paired 95% interval above 0;
  2. |AdaptDHM - oracle| AUC <= ``ORACLE_GAP_MAX``;
  3. AdaptDHM per-step time <= ``TIME_RATIO_MAX`` × STAR's (M = 9 towers), CPU, same batch and widths.
  Reported, not gated: AUC differences against DNN / shared-bottom / MMoE / STAR, NMI and adjusted Rand
  index of the routing against the latent clusters, the smallest cluster usage (collapse flag < 1%).

Threshold provenance (recorded before the gated runs):
  - ``TIME_RATIO_MAX = 0.6``: the paper's abstract ("training time more than 50% less than other
    models"), loosened from 0.5 as the spec says (CPU, small towers).
  - ``AUC_GAIN_MIN`` and ``ORACLE_GAP_MAX``: no paper number at our scale (the paper's AUC tables were not
    readable); calibrated on a pilot at quick size with seeds 100-104 (not the gated seeds 0-9):
    see ``PILOT`` below for the numbers and the rule.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from zoo.checks import check_choice, check_range
from zoo.plotting import pyplot, save
from zoo.registry import Experiment, Outcome, RunContext, register

TITLE = "AdaptDHM: Adaptive Distribution Hierarchical Model for Multi-Domain CTR Prediction"
METHODS = ("adaptdhm", "adaptdhm_k1", "oracle", "dnn", "shared_bottom", "mmoe", "star")
TIME_RATIO_MAX = 0.6
# Pilots at quick size on seeds 100-104 (`--seeds 5 --set seed_offset=100`), recorded before the gated run on
# seeds 0-4. Pilot 1 (embeddings N(0, 0.1²), 20k samples/domain, emb_dim 16): the routing collapsed to one
# cluster (NMI 0), AdaptDHM = its K = 1 version (gain -0.0003), oracle - K1 = +0.032. We then set the
# embedding init to N(0, 1) (torch's default) and halved the data for time. Pilot 2 (the quick config):
PILOT = {
    "seeds": "100-104",
    "gain_vs_k1": {"mean": 0.0067, "ci": (-0.0032, 0.0172), "wins": "3/5"},
    "gap_to_oracle": {"mean": -0.0150, "ci": (-0.0191, -0.0098), "wins": "0/5"},
    "routing_nmi": 0.645, "routing_ari": 0.681, "time_ratio_vs_star": 0.25,
}
# Rule fixed with the pilot: the gain threshold is half the pilot's mean gain (rounded down to 0.001), the
# oracle tolerance twice the pilot's mean gap (rounded up to 0.005), and never tighter than the spec's 0.01.
AUC_GAIN_MIN = 0.003
ORACLE_GAP_MAX = 0.03
CLAIM = (
    f"On synthetic 9-domain CTR data with 3 latent clusters, AdaptDHM (K = 3) reaches a test AUC >= its single-cluster "
    f"version + {AUC_GAIN_MIN} and within {ORACLE_GAP_MAX} of the oracle-cluster model (paired over seeds), with a "
    f"per-step training time <= {TIME_RATIO_MAX} x STAR's."
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdaptDHMExperimentConfig:
    n_per_domain: int = 10_000
    num_domains: int = 9
    num_clusters: int = 3
    num_fields: int = 8
    vocab: int = 100
    emb_dim: int = 8
    emb_init_std: float = 1.0
    hidden: tuple[int, ...] = (64, 32, 16)
    K: int = 3
    beta: float = 0.9
    num_iters: int = 3
    batch_size: int = 1024
    epochs: int = 3
    lr: float = 1e-3
    weight_decay: float = 1e-5
    train_frac: float = 0.8
    timing_steps: int = 20
    seed_offset: int = 0  # data and init seeds are ctx.seeds + seed_offset (pilots use other seeds)
    methods: tuple[str, ...] = METHODS

    def __post_init__(self):
        check_range("n_per_domain", self.n_per_domain, low=10)
        check_range("num_domains", self.num_domains, low=2)
        check_range("num_clusters", self.num_clusters, low=1, high=self.num_domains)
        check_range("num_fields", self.num_fields, low=1)
        check_range("vocab", self.vocab, low=2)
        check_range("emb_dim", self.emb_dim, low=1)
        check_range("emb_init_std", self.emb_init_std, low=0.0, low_inclusive=False)
        if not self.hidden or any(h < 1 for h in self.hidden) or len(self.hidden) < 2:
            raise ValueError(f"hidden: expected at least 2 positive widths, got {self.hidden}")
        check_range("K", self.K, low=1)
        check_range("beta", self.beta, low=0.0, high=1.0)
        check_range("num_iters", self.num_iters, low=1)
        check_range("batch_size", self.batch_size, low=2)
        check_range("epochs", self.epochs, low=1)
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        check_range("weight_decay", self.weight_decay, low=0.0)
        check_range("train_frac", self.train_frac, low=0.1, high=0.95)
        check_range("timing_steps", self.timing_steps, low=0)
        check_range("seed_offset", self.seed_offset, low=0)
        if not self.methods:
            raise ValueError("methods: expected at least one method")
        for m in self.methods:
            check_choice("methods", m, METHODS)
        if "adaptdhm" not in self.methods:
            raise ValueError(f"methods: must include 'adaptdhm' (the claim's subject), got {self.methods}")
        n_train = int(self.train_frac * self.n_per_domain * self.num_domains)
        if self.batch_size > n_train:
            raise ValueError(f"batch_size: expected <= the {n_train} training samples, got {self.batch_size}")


SIZES = {
    "test": AdaptDHMExperimentConfig(n_per_domain=400, emb_dim=4, hidden=(8, 4), batch_size=256, epochs=1,
                                     timing_steps=0, methods=("adaptdhm",)),
    "quick": AdaptDHMExperimentConfig(),
    "paper": AdaptDHMExperimentConfig(n_per_domain=2_000_000, emb_dim=16, hidden=(256, 128, 64, 32, 16, 8),
                                      batch_size=4096,
                                      epochs=20, timing_steps=50),
}


def _model_cfg(cfg: AdaptDHMExperimentConfig, method: str, vocab_sizes):
    from zoo.routing.adaptdhm import CTRConfig

    model = {"adaptdhm_k1": "adaptdhm"}.get(method, method)
    K = 1 if method == "adaptdhm_k1" else (cfg.num_clusters if method == "oracle" else cfg.K)
    return CTRConfig(vocab_sizes=tuple(int(v) for v in vocab_sizes), model=model, emb_dim=cfg.emb_dim,
                     hidden=cfg.hidden, K=K, beta=cfg.beta, num_iters=cfg.num_iters, emb_init_std=cfg.emb_init_std)


def _seed_data(cfg: AdaptDHMExperimentConfig, seed: int) -> dict:
    from zoo.data.ctr import synth_multidomain_ctr

    d = synth_multidomain_ctr(seed, cfg.n_per_domain, num_domains=cfg.num_domains, num_clusters=cfg.num_clusters,
                              num_fields=cfg.num_fields, vocab=cfg.vocab)
    n = d["y"].size
    perm = np.random.default_rng([seed, 1]).permutation(n)
    n_tr = int(cfg.train_frac * n)
    tr, te = perm[:n_tr], perm[n_tr:]
    out = {f"{k}_{s}": d[k][idx] for k in ("features", "y", "cluster") for s, idx in (("train", tr), ("test", te))}
    out["logit_test"] = d["logit"][te]
    spe = n_tr // cfg.batch_size  # host-side shuffles: batch s of epoch e is order[e, s*B:(s+1)*B]
    rng = np.random.default_rng([seed, 2])
    out["order"] = np.stack([rng.permutation(n_tr)[: spe * cfg.batch_size] for _ in range(cfg.epochs)]).astype(np.int32)
    out["vocab_sizes"] = d["vocab_sizes"]
    return out


def _optimizer(cfg):
    import optax

    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.adam(cfg.lr))


def _step_fn(mcfg, opt):
    import jax
    import optax

    from zoo.routing import adaptdhm as ad

    def step(carry, batch):
        params, mstate, opt_state = carry
        (loss, (met, mstate)), g = jax.value_and_grad(ad.loss_fn, has_aux=True)(params, mstate, batch, mcfg)
        upd, opt_state = opt.update(g, opt_state, params)
        return (optax.apply_updates(params, upd), mstate, opt_state), {"loss": loss, **met}

    return step


def make_method_run(cfg: AdaptDHMExperimentConfig, method: str, vocab_sizes, n_train: int):
    """``(init, chunk)`` for `zoo.train.run_population`: a chunk is one epoch, then test logits."""
    import jax
    import jax.numpy as jnp

    from zoo.data import steps_per_epoch
    from zoo.routing import adaptdhm as ad

    mcfg = _model_cfg(cfg, method, vocab_sizes)
    opt = _optimizer(cfg)
    step = _step_fn(mcfg, opt)
    spe = steps_per_epoch(n_train, cfg.batch_size)

    def init(key, hp):
        params, mstate = ad.init(key, mcfg)
        return {"model": (params, mstate, opt.init(params))}

    def chunk(carry, hp, c):
        def body(model, s):
            idx = jax.lax.dynamic_slice_in_dim(hp["order"][c], s * cfg.batch_size, cfg.batch_size)
            batch = {"x": hp["features_train"][idx], "y": hp["y_train"][idx], "cluster": hp["cluster_train"][idx]}
            return step(model, batch)

        model, met = jax.lax.scan(body, carry["model"], jnp.arange(spe))
        params, mstate, _ = model
        logit, aux, _ = ad.apply(params, mstate, hp["features_test"], mcfg, train=False, cluster=hp["cluster_test"])
        out = {"train_loss": jnp.mean(met["loss"]), "test_logit": logit,
               "assign": aux.get("assign", jnp.zeros_like(hp["y_test"]))}
        if "min_cluster_usage" in met:
            out["min_usage_train"] = jnp.min(met["min_cluster_usage"])
        return {**carry, "model": model}, out

    return init, chunk


def _time_steps(cfg, methods, data0, n_reps: int) -> dict:
    """Seconds of one jitted training step of one member per method: the minimum over ``n_reps`` steps
    after warm-up, the methods interleaved step by step (so that a busy machine slows all alike)."""
    import jax

    from zoo.routing import adaptdhm as ad

    if n_reps == 0:
        return {m: float("nan") for m in methods}
    b = cfg.batch_size
    batch = jax.device_put({"x": data0["features_train"][:b], "y": data0["y_train"][:b],
                            "cluster": data0["cluster_train"][:b]})
    steps, carries = {}, {}
    for m in methods:
        mcfg = _model_cfg(cfg, m, data0["vocab_sizes"])
        opt = _optimizer(cfg)
        steps[m] = jax.jit(_step_fn(mcfg, opt))
        params, mstate = ad.init(jax.random.key(0), mcfg)
        carries[m], _ = steps[m]((params, mstate, opt.init(params)), batch)
        jax.block_until_ready(carries[m])
    times = {m: [] for m in methods}
    for _ in range(n_reps):
        for m in methods:
            t = time.perf_counter()
            carries[m], met = steps[m](carries[m], batch)
            jax.block_until_ready(met)
            times[m].append(time.perf_counter() - t)
    return {m: float(np.min(v)) for m, v in times.items()}


def _plot(out_dir, aucs: dict, times: dict, nmi_per_seed, bayes) -> list[str]:
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    names = list(aucs)
    vals = np.array([aucs[m] for m in names])  # [methods, S]
    ax[0].bar(range(len(names)), vals.mean(1), yerr=vals.std(1), color="#4c72b0", alpha=0.8)
    for i, v in enumerate(vals):
        ax[0].plot(np.full(v.size, i) + np.linspace(-0.15, 0.15, v.size), v, "k.", ms=3)
    ax[0].axhline(np.mean(bayes), color="k", ls="--", lw=0.8, label="Bayes AUC (true logits)")
    ax[0].set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    lo = min(vals.min(), np.mean(bayes)) - 0.01
    ax[0].set_ylim(lo, max(vals.max(), np.mean(bayes)) + 0.005)
    ax[0].set(ylabel="test AUC", title=f"AUC per seed (routing NMI {np.mean(nmi_per_seed):.2f})")
    ax[0].legend(fontsize=7, loc="lower right")
    tn = [m for m in names if np.isfinite(times.get(m, np.nan))]
    ax[1].bar(range(len(tn)), [1e3 * times[m] for m in tn], color="#dd8452")
    ax[1].set_xticks(range(len(tn)), tn, rotation=30, fontsize=8)
    ax[1].set(ylabel="ms per training step (CPU)", title="per-step time, same batch and widths")
    fig.tight_layout()
    save(fig, out_dir, "adaptdhm_summary.png", dpi=100)
    return ["adaptdhm_summary.png"]


def run(cfg: AdaptDHMExperimentConfig, ctx: RunContext) -> Outcome:
    import jax

    from zoo.claims import paired_summary
    from zoo.routing import adaptdhm as ad
    from zoo.train import run_population

    t0 = time.perf_counter()
    seeds = [s + cfg.seed_offset for s in ctx.seeds]
    parts = [_seed_data(cfg, s) for s in seeds]
    vocab_sizes = parts[0]["vocab_sizes"]
    keys_ = [k for k in parts[0] if k != "vocab_sizes"]
    hp = {k: np.stack([p[k] for p in parts]) for k in keys_ if k != "logit_test"}
    n_train = hp["y_train"].shape[1]
    keys = jax.vmap(jax.random.key)(np.asarray(seeds, np.uint32))
    metrics: dict = {"setup_seconds": time.perf_counter() - t0}
    y_test = hp["y_test"]
    bayes = [ad.auc(p["y_test"], p["logit_test"]) for p in parts]
    metrics["bayes_auc"] = float(np.mean(bayes))
    aucs, details = {}, {"per_seed_auc": {}, "auc_per_epoch": {}, "per_domain_auc": {}}
    nmi_s = ari_s = usage = None
    for method in cfg.methods:
        t1 = time.perf_counter()
        init, chunk = make_method_run(cfg, method, vocab_sizes, n_train)
        _, outs = run_population(init, chunk, keys, hp, num_chunks=cfg.epochs, unit="epoch", **ctx.runner(method))
        metrics[f"seconds_{method}"] = time.perf_counter() - t1
        per_epoch = np.array([[ad.auc(y_test[s], outs["test_logit"][s, e]) for e in range(cfg.epochs)]
                              for s in range(len(ctx.seeds))])
        aucs[method] = per_epoch[:, -1]
        metrics[f"auc_{method}"] = float(per_epoch[:, -1].mean())
        metrics[f"auc_std_{method}"] = float(per_epoch[:, -1].std())
        details["per_seed_auc"][method] = per_epoch[:, -1].tolist()
        details["auc_per_epoch"][method] = per_epoch.mean(0).tolist()
        dom = hp["features_test"][0][:, -1]
        details["per_domain_auc"][method] = ad.grouped_auc(y_test[0], outs["test_logit"][0, -1], dom)
        if method == "adaptdhm":
            a = outs["assign"][:, -1]
            nmi_s = [ad.nmi(a[s], hp["cluster_test"][s]) for s in range(len(ctx.seeds))]
            ari_s = [ad.adjusted_rand_index(a[s], hp["cluster_test"][s]) for s in range(len(ctx.seeds))]
            usage = [np.bincount(a[s], minlength=cfg.K).min() / a.shape[1] for s in range(len(ctx.seeds))]
            metrics["routing_nmi"] = float(np.mean(nmi_s))
            metrics["routing_ari"] = float(np.mean(ari_s))
            metrics["min_cluster_usage_test"] = float(np.min(usage))
            metrics["routing_collapsed"] = bool(np.min(usage) < 0.01)
            details["routing_nmi_per_seed"], details["routing_ari_per_seed"] = nmi_s, ari_s
            details["cluster_of_domain_seed0"] = {
                int(d): np.bincount(a[0][dom == d], minlength=cfg.K).tolist() for d in np.unique(dom)}
        ctx.note(f"{method}: AUC {metrics[f'auc_{method}']:.4f} ({metrics[f'seconds_{method}']:.1f} s)")

    times = _time_steps(cfg, cfg.methods, parts[0], cfg.timing_steps)
    for method in cfg.methods:
        metrics[f"step_ms_{method}"] = 1e3 * times[method]
    paired = {}
    for method in cfg.methods:
        if method != "adaptdhm":
            paired[method] = paired_summary(aucs["adaptdhm"], aucs[method])
            metrics[f"auc_gain_vs_{method}"] = paired[method]["mean"]
    details["paired_adaptdhm_minus"] = paired
    checks = {}
    if "adaptdhm_k1" in paired:
        # the seeds must resolve the gain (DESIGN, "Claims"): the mean clears the threshold and the
        # paired 95% interval excludes 0
        checks["gain_vs_k1"] = (paired["adaptdhm_k1"]["mean"] >= AUC_GAIN_MIN
                                and paired["adaptdhm_k1"]["ci_low"] > 0)
    if "oracle" in paired:
        checks["oracle_gap"] = abs(paired["oracle"]["mean"]) <= ORACLE_GAP_MAX
    if "star" in times and np.isfinite(times["star"]):
        metrics["time_ratio_vs_star"] = times["adaptdhm"] / times["star"]
        checks["time_vs_star"] = metrics["time_ratio_vs_star"] <= TIME_RATIO_MAX
    details["checks"] = checks
    if ctx.size == "test":  # the test size only checks that everything runs and is finite
        holds = bool(all(np.isfinite(v).all() for v in aucs.values()))
    else:
        holds = bool(checks) and all(checks.values()) and len(checks) == 3
    plots = _plot(ctx.out_dir, aucs, times, nmi_s or [np.nan], bayes)
    return Outcome(metrics=metrics, claim_holds=holds, details=details, plots=plots)


register(
    Experiment(
        name="adaptdhm",
        paper="adaptdhm",
        title=TITLE,
        claim=CLAIM,
        sizes=SIZES,
        run=run,
        default_seeds=10,  # 5 did not resolve claim 1 (see the page's claim history)
        resumable=True,
    )
)
