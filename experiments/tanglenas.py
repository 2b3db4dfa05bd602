"""Experiment ``tanglenas``: weight-entangled gradient NAS (TangleNAS-DrNAS) vs SPOS + random search.

Spec: ``papers/tanglenas.md`` §5(b). Data: scikit-learn's bundled digits (``zoo.data.load_digits``;
the spec's mnist1d is not installed here), each 8×8 image read row-major as a 1-D signal of length
64, standardised; a fixed 1,437 / 360 train/test split (generator seed 0). Search space: the spec's
conv1d macro space (2 convs, channel choice × kernel choice per layer) at ``channels=(4, 8, 16)``,
``kernels=(3, 5, 7)``: 81 architectures (the spec's (8, 16, 32) is ``--set channels=...``-free but
costs 4× the FLOPs; ours for the CPU budget).

Phases (each through `zoo.train.run_population`, one epoch per checkpointed chunk):
1. Benchmark (ground truth): every architecture trained from scratch as a masked supernet (one-hot
   mixture weights, init rescaled to the sub-network's fan-in), the architectures as one vmapped
   population; Adam 1e-2, batch 128, ``bench_epochs`` epochs, one seed; test accuracy per arch.
2. Searches, the seeds as one vmapped population per method, each seed with its own 50/50
   D_train/D_val split of the training set: TangleNAS-DrNAS (WE, Dirichlet), TangleNAS-DARTS
   (WE, softmax, first order), SPOS-WE (uniform one-hot path; α frozen) followed by random search
   over ``rs_samples`` architectures scored on D_val with inherited weights.
3. Memory: compiled temporary memory (XLA ``memory_analysis``) and parameter count of one search
   step of the entangled supernet vs the non-entangled (output-superposition) DARTS supernet.

Claim (quick/paper size), fixed before the gated run:
  (i) paired over seeds, benchmark test accuracy of TangleNAS-DrNAS's architecture minus that of
      SPOS + random search: mean >= -0.5 pp (non-inferiority). Threshold: the spec's §5(b) value
      ("matches or beats SPOS + RS", the paper's qualitative claim in WE spaces, its tables are not
      transcribed here; 0.5 pp = the one-seed benchmark noise). Uncalibrated on this space: no pilot
      could be run in the time box (recorded as such, not tuned afterwards). History: v1 ran the spec's
      Adam 3e-3 for benchmark and supernet weights (benchmark max 45 %, under-trained); v2 uses 1e-2 for
      both to train the benchmark better; the thresholds did not change and the verdict was the same.
  (ii) WE step temporary memory <= 0.5 × WS step temporary memory (paper direction; spec factor).
At ``test`` size the claim is only that the searches run, α moves and every method returns a valid
architecture.

``paper`` size: the same space at the spec's widths (8, 16, 32), 100 search epochs, 15 benchmark
epochs, 10 seeds (the paper's own CIFAR-10 conv macro space needs CIFAR-10 locally; not done here).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from zoo.checks import check_range
from zoo.plotting import pyplot, save
from zoo.registry import Experiment, Outcome, RunContext, register

TITLE = "Weight-Entanglement Meets Gradient-Based Neural Architecture Search (TangleNAS)"
CLAIM = (
    "In a weight-entangled conv macro space, the architecture found by TangleNAS (DrNAS + weight superposition) "
    "is no worse than SPOS + random search (paired mean benchmark test accuracy difference >= -0.5 pp), and the "
    "entangled search step needs <= 0.5x the temporary memory of the output-superposition (DARTS WS) step."
)
MARGIN_PP = 0.5
MEMORY_RATIO_MAX = 0.5
METHODS = ("drnas", "darts", "spos")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TangleNASExperimentConfig:
    channels: tuple[int, ...] = (4, 8, 16)
    kernels: tuple[int, ...] = (3, 5, 7)
    n_layers: int = 2
    bench_epochs: int = 8
    bench_batch: int = 128
    bench_lr: float = 1e-2  # v2; v1 used 3e-3 (the spec's), which left the 8-epoch benchmark under-trained
    search_epochs: int = 20
    search_batch: int = 64
    search_w_lr: float = 1e-2  # supernet weights (Adam); v2 (v1: the spec's 3e-3)
    search_a_lr: float = 3e-3  # architecture parameters (Adam, betas (0.5, 0.999), wd 1e-3)
    rs_samples: int = 40
    measure_memory: bool = True

    def __post_init__(self):
        from zoo.weightspace.tanglenas import SearchSpace

        SearchSpace(channels=self.channels, kernels=self.kernels, n_layers=self.n_layers)
        for f in ("bench_epochs", "bench_batch", "search_epochs", "search_batch", "rs_samples"):
            check_range(f, getattr(self, f), low=1)
        for f in ("bench_lr", "search_w_lr", "search_a_lr"):
            check_range(f, getattr(self, f), low=0.0, low_inclusive=False)


SIZES = {
    "test": TangleNASExperimentConfig(channels=(2, 4), kernels=(1, 3), n_layers=1, bench_epochs=1, search_epochs=2,
                                      search_batch=128, rs_samples=4, measure_memory=False),
    "quick": TangleNASExperimentConfig(),
    "paper": TangleNASExperimentConfig(channels=(8, 16, 32), bench_epochs=15, search_epochs=100),
}


def _data():
    from zoo.data import load_digits

    d = load_digits()
    x = d["x"].astype(np.float32).reshape(-1, 32, 2).mean(-1)  # adjacent pixel pairs: length-32 signals
    x = (x - x.mean()) / x.std()
    perm = np.random.default_rng(0).permutation(len(x))
    te, tr = perm[:360], perm[360:]
    return x[tr], d["y"][tr].astype(np.int32), x[te], d["y"][te].astype(np.int32)


def _benchmark(cfg, space, x, y, xt, yt, ctx):
    """Test accuracy f[A] of every architecture trained from scratch (masked supernet, vmapped over archs)."""
    import jax
    import jax.numpy as jnp
    import optax

    from zoo.data import batch_at
    from zoo.train import run_population
    from zoo.weightspace import tanglenas as tn

    archs = tn.enumerate_architectures(space)
    opt = optax.adam(cfg.bench_lr)
    data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    spe = -(-len(x) // cfg.bench_batch)

    def loss(p, probs, b):
        logits = tn.supernet_apply(p, b["x"], probs, space)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), b["y"][:, None], 1))

    def init(key, arch):
        p = tn.init_supernet(key, space, arch)
        return {"p": p, "o": opt.init(p), "key": key}

    def chunk(s, arch, c):
        probs = tn.onehot_probs(arch, space)

        def step(s, i):
            b = batch_at(data, c * spe + i, batch_size=cfg.bench_batch, key=s["key"])
            l, g = jax.value_and_grad(loss)(s["p"], probs, b)
            u, o = opt.update(g, s["o"], s["p"])
            return {**s, "p": optax.apply_updates(s["p"], u), "o": o}, l

        s, ls = jax.lax.scan(step, s, jnp.arange(spe))
        return s, {"loss": ls.mean(), "test_acc": tn.accuracy(s["p"], jnp.asarray(xt), jnp.asarray(yt), probs, space)}

    _, out = run_population(init, chunk, jax.random.key(12345), archs, num_chunks=cfg.bench_epochs,
                            steps_per_chunk=spe, **ctx.runner("benchmark"))
    return 100 * np.asarray(out["test_acc"])[:, -1]


def _search(cfg, space, method, splits, keys, ctx):
    import jax
    import jax.numpy as jnp

    from zoo.data import batch_at
    from zoo.train import run_population
    from zoo.weightspace import tanglenas as tn

    scfg = tn.SearchConfig(method=method, supernet="we", w_lr=cfg.search_w_lr, a_lr=cfg.search_a_lr)
    n_tr = splits["train"]["x"].shape[1]
    spe = -(-n_tr // cfg.search_batch)

    def init(key, hp):
        return tn.init_search(key, space, scfg)

    def chunk(s, hp, c):
        def step(s, i):
            kt, kv = jax.random.split(jax.random.fold_in(hp["data_key"], 0))
            bt = batch_at(hp["train"], c * spe + i, batch_size=cfg.search_batch, key=kt)
            bv = batch_at(hp["val"], c * spe + i, batch_size=cfg.search_batch, key=kv)
            return tn.search_step(s, bt, bv, space, scfg)

        s, m = jax.lax.scan(step, s, jnp.arange(spe))
        return s, {**{k: v.mean() for k, v in m.items()}, "alpha": s.alpha}

    state, out = run_population(init, chunk, keys, splits, num_chunks=cfg.search_epochs, steps_per_chunk=spe,
                                **ctx.runner(f"search_{method}"))
    return state, out


def _memory(space, batch):
    """Compiled temporary bytes / parameter count / step seconds of the WE vs WS search step."""
    import jax
    import jax.numpy as jnp

    from zoo.weightspace import tanglenas as tn

    x = jnp.zeros((batch, 32), jnp.float32)
    b = {"x": x, "y": jnp.zeros(batch, jnp.int32)}
    res = {}
    for sn in ("we", "ws"):
        scfg = tn.SearchConfig(method="darts", supernet=sn)
        st = tn.init_search(jax.random.key(0), space, scfg)
        fn = jax.jit(lambda s, bt, bv, scfg=scfg: tn.search_step(s, bt, bv, space, scfg))
        comp = fn.lower(st, b, b).compile()
        ma = comp.memory_analysis()
        jax.block_until_ready(comp(st, b, b))
        t = time.perf_counter()
        for _ in range(5):
            out = comp(st, b, b)
        jax.block_until_ready(out)
        res[sn] = {"temp_bytes": int(ma.temp_size_in_bytes), "params": int(sum(v.size for v in jax.tree.leaves(st.weights))),
                   "step_seconds": (time.perf_counter() - t) / 5}  # fmt: skip
    return res


def _flat(arch_c, arch_k, space):
    L = space.n_layers
    dims = (len(space.channels),) * L + (len(space.kernels),) * L
    return np.ravel_multi_index(tuple(np.concatenate([arch_c, arch_k], -1).T), dims)


def run(cfg: TangleNASExperimentConfig, ctx: RunContext) -> Outcome:
    import jax
    import jax.numpy as jnp

    from zoo.claims import paired_summary
    from zoo.weightspace import tanglenas as tn

    space = tn.SearchSpace(channels=cfg.channels, kernels=cfg.kernels, n_layers=cfg.n_layers)
    x, y, xt, yt = _data()
    t0 = time.perf_counter()
    ctx.note(f"benchmark: {space.size} architectures x {cfg.bench_epochs} epochs")
    bench = _benchmark(cfg, space, x, y, xt, yt, ctx)
    seconds = {"benchmark": time.perf_counter() - t0}

    half = len(x) // 2
    perms = [np.random.default_rng(1000 + s).permutation(len(x)) for s in ctx.seeds]
    split = lambda sl: {"x": jnp.asarray(np.stack([x[p[sl]] for p in perms])),  # noqa: E731
                        "y": jnp.asarray(np.stack([y[p[sl]] for p in perms]))}  # fmt: skip
    keys = jax.vmap(jax.random.key)(np.asarray(ctx.seeds, np.uint32))
    splits = {"train": split(slice(0, half)), "val": split(slice(half, 2 * half)),
              "data_key": jax.vmap(lambda k: jax.random.fold_in(k, 7))(keys)}  # fmt: skip

    chosen, curves, moved = {}, {}, {}
    for m in METHODS:
        t1 = time.perf_counter()
        state, out = _search(cfg, space, m, splits, keys, ctx)
        seconds[m] = time.perf_counter() - t1
        curves[m] = np.asarray(out["val_loss"]).mean(0)
        moved[m] = float(max(np.abs(np.asarray(state.alpha[k]) - np.asarray(out["alpha"][k][:, 0])).max()
                             for k in ("channels", "kernels")))  # fmt: skip
        if m == "spos":
            rs = jax.jit(jax.vmap(lambda p, xv, yv, k: tn.spos_random_search(p, xv, yv, k, space,
                                                                              n_samples=cfg.rs_samples)[0]))
            arch = rs(state.weights, splits["val"]["x"], splits["val"]["y"], jax.vmap(lambda k: jax.random.fold_in(k, 3))(keys))
        else:
            arch = jax.vmap(lambda a: tn.discretize(a, space))(state.alpha)
        chosen[m] = _flat(np.asarray(arch["channels"]), np.asarray(arch["kernels"]), space)

    acc = {m: bench[chosen[m]] for m in METHODS}
    metrics = {"bench_mean": float(bench.mean()), "bench_max": float(bench.max()), "bench_min": float(bench.min()),
               "n_architectures": int(space.size)}  # fmt: skip
    all_archs = tn.enumerate_architectures(space)
    details = {"benchmark_test_acc": bench.tolist(), "chosen": {}, "seeds": list(ctx.seeds)}
    for m in METHODS:
        metrics[f"acc_{m}"] = float(acc[m].mean())
        metrics[f"regret_{m}"] = float(bench.max() - acc[m].mean())
        metrics[f"alpha_moved_{m}"] = moved[m]
        details["chosen"][m] = [
            tn.arch_values({k: v[i] for k, v in all_archs.items()}, space) for i in chosen[m].tolist()
        ]
    details["chosen"] = {m: [{k: list(v) for k, v in a.items()} for a in lst] for m, lst in details["chosen"].items()}
    summary = paired_summary(acc["drnas"], acc["spos"]) if len(ctx.seeds) > 1 else None
    details["paired_drnas_minus_spos"] = summary
    details["paired_darts_minus_spos"] = paired_summary(acc["darts"], acc["spos"]) if len(ctx.seeds) > 1 else None
    if summary:
        metrics["drnas_minus_spos_mean"] = summary["mean"]
        metrics["drnas_minus_spos_ci_low"] = summary["ci_low"]
        metrics["drnas_minus_spos_ci_high"] = summary["ci_high"]
        metrics["drnas_minus_spos_wins"] = summary["wins"]
    if cfg.measure_memory:
        mem = _memory(space, cfg.search_batch)
        details["memory"] = mem
        metrics["we_temp_bytes"], metrics["ws_temp_bytes"] = mem["we"]["temp_bytes"], mem["ws"]["temp_bytes"]
        metrics["memory_ratio_we_over_ws"] = mem["we"]["temp_bytes"] / max(mem["ws"]["temp_bytes"], 1)
        metrics["we_params"], metrics["ws_params"] = mem["we"]["params"], mem["ws"]["params"]
        metrics["step_time_ratio_we_over_ws"] = mem["we"]["step_seconds"] / mem["ws"]["step_seconds"]
    for k, v in seconds.items():
        metrics[f"seconds_{k}"] = v

    valid = all(np.all((chosen[m] >= 0) & (chosen[m] < space.size)) for m in METHODS)
    if ctx.size == "test":
        holds = bool(valid and moved["drnas"] > 0 and moved["darts"] > 0 and moved["spos"] == 0)
    else:
        holds = bool(valid and summary is not None and summary["mean"] >= -MARGIN_PP
                     and metrics.get("memory_ratio_we_over_ws", np.inf) <= MEMORY_RATIO_MAX)  # fmt: skip
    plots = _plot(ctx.out_dir, bench, acc, curves, metrics)
    return Outcome(metrics=metrics, claim_holds=holds, details=details, plots=plots)


def _plot(out_dir, bench, acc, curves, metrics):
    plt = pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].hist(bench, bins=20, color="0.7")
    for m, c in zip(METHODS, ("C0", "C1", "C2")):
        for a in acc[m]:
            ax[0].axvline(a, color=c, lw=0.8, alpha=0.6)
        ax[0].plot([], [], color=c, label=m if m != "spos" else "spos+rs")
    ax[0].set(xlabel="benchmark test accuracy (%)", ylabel="architectures", title="chosen architectures (per seed)")
    ax[0].legend(fontsize=7)
    for m in METHODS:
        ax[1].plot(np.arange(1, len(curves[m]) + 1), curves[m], label=m)
    ax[1].set(xlabel="search epoch", ylabel="D_val loss (mean over seeds)", title="supernet validation loss")
    ax[1].legend(fontsize=7)
    if "we_temp_bytes" in metrics:
        ax[2].bar(["WE (TangleNAS)", "WS (DARTS)"], [metrics["we_temp_bytes"] / 1e6, metrics["ws_temp_bytes"] / 1e6])
        ax[2].set(ylabel="compiled temp memory (MB)", title="search-step memory")
    else:
        ax[2].axis("off")
    fig.tight_layout()
    save(fig, out_dir, "tanglenas_quick.png", dpi=110)
    return ["tanglenas_quick.png"]


register(
    Experiment(
        name="tanglenas",
        paper="tanglenas",
        title=TITLE,
        claim=CLAIM,
        sizes=SIZES,
        run=run,
        default_seeds=10,
        resumable=True,
    )
)
