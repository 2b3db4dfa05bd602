"""Experiment ``capsule_dbd``: WcapsuleE (DBD-weighted per-domain capsule nets) vs one pooled capsule net (arXiv 2306.17068).

Spec: ``papers/capsule_dbd.md`` §5(a, b). Data: the generated multi-domain sentiment corpus
(`zoo.data.sentiment.synth_multidomain_sentiment`: 4 domains, domain-topic words, shared neutral words,
fixed-polarity words and "ambiguous" words whose polarity flips between domains), one corpus per seed,
a stratified 80/20 train/test split per domain; or (``data="vader"``) Hutto & Gilbert's 4-domain VADER
corpus read from ``data_path`` (never downloaded; `zoo.data.sentiment.load_vader_multidomain`).

Arms, each trained as one vmapped population over the seeds through `zoo.train.run_population` (one
chunk per epoch, test-set capsule lengths recorded after every epoch):
- ``ensemble``: D capsule nets (`zoo.routing.capsule_dbd.CapsNetText`), net d trained only on domain d
  (all D in one step: vmap over the domain axis, each on its own domain's batch), cost-sensitive margin
  loss with per-domain class weights; prediction = DBD-weighted mixture of the nets' length read-outs;
- ``pooled``: the Bi-GRUCapsule baseline, one net of the same size on all domains (pooled class
  weights), the same number of epochs and batch size.
- ``ensemble_plain`` (only with ``compare_cost_sensitive``): the ensemble without class weights.
Host-side: the TF-IDF DBD table of each seed's training split; domain accuracy of ``argmax_d DBD``.
Reported besides: the oracle-domain ensemble (each text through its own domain's net), the uniform
average of the D nets, G-mean, per-domain accuracy, how often the DBD falls back to uniform weights.

Claims (synthetic data; paired by seed, `zoo.claims.paired_summary`):
  1. WcapsuleE polarity accuracy >= pooled + ``ACC_GAIN_MIN`` (mean over seeds);
  2. DBD domain accuracy >= ``DBD_ACC_MIN`` (mean over seeds).
Threshold provenance:
  - ``DBD_ACC_MIN = 0.95``: the spec's calibration of the DBD itself (≥ 0.989 on 3 seeds of this
    generator; the DBD has no trained parameters, so that calibration applies directly). Not stricter
    than the paper's domain accuracies on real data (Digikala 0.80-0.82, abstract 0.89, Arabic 0.96-0.97)
    only because the generated domains are easier; recorded as ours.
  - ``ACC_GAIN_MIN``: the paper's WcapsuleE vs Bi-GRUCapsule gap was not readable; the spec's proxy gap
    (bag-of-words logistic regressions) was 0.06-0.07. Calibrated on a quick-size pilot with seeds
    100-104 (``--set seed_offset=100 --seeds 5``), see ``PILOT`` below, before the gated run on seeds 0-9.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from zoo.checks import check_choice, check_range
from zoo.plotting import pyplot, save
from zoo.registry import Experiment, Outcome, RunContext, register

TITLE = "Weighted CapsuleNet networks for Persian multi-domain sentiment analysis (WcapsuleE)"
# Pilot at quick size on seeds 100-104 (`--seeds 5 --set seed_offset=100`), recorded before the gated run on
# seeds 0-4: ensemble 0.9715, pooled 0.9080, paired gain +0.0635 [0.049, 0.078], 5/5 wins; DBD domain
# accuracy 0.988 (uniform fallback 1.4%). Rule: half the pilot's mean gain, rounded down to 0.005 -> 0.03
# (equal to the spec's proxy-based 0.03).
PILOT = {"seeds": "100-104", "gain": {"mean": 0.0635, "ci": (0.0493, 0.0782), "wins": "5/5"},
         "accuracy_ensemble": 0.9715, "accuracy_pooled": 0.908, "dbd_domain_accuracy": 0.988}
ACC_GAIN_MIN = 0.03
DBD_ACC_MIN = 0.95
CLAIM = (
    f"On the generated 4-domain sentiment corpus, the DBD-weighted ensemble of per-domain capsule nets (WcapsuleE) "
    f"reaches a polarity accuracy >= the pooled Bi-GRUCapsule net + {ACC_GAIN_MIN} (paired over seeds), and the TF-IDF "
    f"domain belonging degree identifies the domain with accuracy >= {DBD_ACC_MIN}."
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CapsuleDBDExperimentConfig:
    data: str = "synthetic"  # synthetic | vader
    data_path: str = ""  # vader: a directory or archive with the *_GroundTruth.txt files
    num_domains: int = 4
    n_per_domain: int = 1500
    max_len: int = 32
    vocab_size: int = 8000  # vader: vocabulary cap
    embed_dim: int = 64
    hidden: int = 32
    caps_dim: int = 16
    num_iters: int = 3
    dropout: float = 0.2
    batch_size: int = 64
    epochs: int = 3
    lr: float = 1e-3
    train_frac: float = 0.8
    loss: str = "margin"
    dbd: str = "tfidf"
    cost_sensitive: bool = True
    compare_cost_sensitive: bool = False
    pooled: bool = True  # train the pooled baseline (the claim needs it; the test size skips it)
    seed_offset: int = 0

    def __post_init__(self):
        check_choice("data", self.data, ("synthetic", "vader"))
        if self.data == "vader" and not self.data_path:
            raise ValueError("data_path: required with data='vader' (a local directory or archive; never downloaded)")
        check_range("num_domains", self.num_domains, low=2)
        check_range("n_per_domain", self.n_per_domain, low=10)
        check_range("max_len", self.max_len, low=2)
        check_range("vocab_size", self.vocab_size, low=10)
        for name in ("embed_dim", "hidden", "caps_dim", "num_iters", "batch_size", "epochs"):
            check_range(name, getattr(self, name), low=1)
        check_range("dropout", self.dropout, low=0.0, high=1.0, high_inclusive=False)
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        check_range("train_frac", self.train_frac, low=0.1, high=0.95)
        check_choice("loss", self.loss, ("margin", "ce"))
        check_choice("dbd", self.dbd, ("tfidf", "tfidf_smooth", "freq_uniq"))
        check_range("seed_offset", self.seed_offset, low=0)
        if self.batch_size > self.train_frac * self.n_per_domain:
            raise ValueError(f"batch_size: expected <= the {int(self.train_frac * self.n_per_domain)} training texts "
                             f"of a domain, got {self.batch_size}")


SIZES = {
    "test": CapsuleDBDExperimentConfig(n_per_domain=100, max_len=16, embed_dim=8, hidden=4, caps_dim=4, batch_size=16,
                                       epochs=1, pooled=False),
    "quick": CapsuleDBDExperimentConfig(),
    "paper": CapsuleDBDExperimentConfig(num_domains=10, n_per_domain=5000, max_len=64, embed_dim=300, hidden=64,
                                        epochs=10, compare_cost_sensitive=True),
}


# ----------------------------------------------------------------------------------- data


def _orders(rng, n: int, steps: int, batch: int, epochs: int) -> np.ndarray:
    """i32[epochs, steps*batch]: per epoch, permutations of range(n) concatenated until long enough."""
    need = steps * batch
    out = []
    for _ in range(epochs):
        reps = [rng.permutation(n) for _ in range(-(-need // n))]
        out.append(np.concatenate(reps)[:need])
    return np.stack(out).astype(np.int32)


def _corpus(cfg: CapsuleDBDExperimentConfig, seed: int) -> dict:
    if cfg.data == "synthetic":
        from zoo.data.sentiment import synth_multidomain_sentiment

        d = synth_multidomain_sentiment(seed, cfg.num_domains, cfg.n_per_domain, max_len=cfg.max_len)
        return {"tokens": d["tokens"], "mask": d["mask"], "y": d["y"], "domain": d["domain"], "raw": None,
                "vocab_size": d["vocab_size"], "D": cfg.num_domains}
    from zoo.data.sentiment import load_vader_multidomain, simple_tokenize

    d = load_vader_multidomain(cfg.data_path)
    return {"raw": [simple_tokenize(t) for t in d["text"]], "y": d["y"], "domain": d["domain"], "D": 4}


def _seed_data(cfg: CapsuleDBDExperimentConfig, seed: int, corpus: dict) -> dict:
    """The seed's stratified split, per-domain padded training tables, batch orders and test arrays."""
    rng = np.random.default_rng([seed, 7])
    y, dom, D = corpus["y"], corpus["domain"], corpus["D"]
    tr, te = [], []
    for d in range(D):
        idx = rng.permutation(np.flatnonzero(dom == d))
        k = int(cfg.train_frac * idx.size)
        tr.append(idx[:k])
        te.append(idx[k:])
    tr_all, te_all = np.concatenate(tr), np.concatenate(te)
    if corpus["raw"] is not None:  # real text: vocabulary from this seed's training split
        from zoo.data.sentiment import build_vocab, encode_texts

        vocab = build_vocab([corpus["raw"][i] for i in tr_all], cfg.vocab_size)
        tokens, mask = encode_texts(corpus["raw"], vocab, cfg.max_len)
        V = len(vocab)
    else:
        tokens, mask, V = corpus["tokens"], corpus["mask"], corpus["vocab_size"]
    n_max = max(t.size for t in tr)
    B = cfg.batch_size
    spe = n_max // B
    pad = lambda a: np.concatenate([a, np.zeros((n_max - a.shape[0], *a.shape[1:]), a.dtype)])  # noqa: E731
    from zoo.routing.capsule_dbd import class_weights

    w_dom = np.stack([class_weights(y[t], 2) for t in tr]) if cfg.cost_sensitive else np.ones((D, 2))
    w_pool = class_weights(y[tr_all], 2) if cfg.cost_sensitive else np.ones(2)
    spe_pool = tr_all.size // B
    return {
        "tok_dom": np.stack([pad(tokens[t]) for t in tr]), "mask_dom": np.stack([pad(mask[t]) for t in tr]),
        "y_dom": np.stack([pad(y[t]) for t in tr]),
        "order_dom": np.stack([_orders(rng, t.size, spe, B, cfg.epochs) for t in tr], 1),  # [E, D, spe*B]
        "w_dom": w_dom.astype(np.float32), "w_pool": w_pool.astype(np.float32),
        "tok_pool": tokens[tr_all], "mask_pool": mask[tr_all], "y_pool": y[tr_all],
        "order_pool": _orders(rng, tr_all.size, spe_pool, B, cfg.epochs),
        "tok_test": tokens[te_all], "mask_test": mask[te_all], "y_test": y[te_all], "dom_test": dom[te_all],
        "dom_train": dom[tr_all], "V": V, "spe": spe, "spe_pool": spe_pool,
    }


# ----------------------------------------------------------------------------------- training


def make_arm_run(cfg: CapsuleDBDExperimentConfig, arm: str, model, D: int, spe: int):
    """``(init, chunk)`` for `zoo.train.run_population`; a chunk is one epoch, then test lengths of every net."""
    import jax
    import jax.numpy as jnp
    import optax

    from zoo.routing import capsule_dbd as cd

    opt = optax.adam(cfg.lr)
    pooled = arm == "pooled"
    B = cfg.batch_size

    def init(key, hp):
        k_init, k_drop = jax.random.split(key)
        params = cd.init_ensemble(model, k_init, 1 if pooled else D)
        return {"params": params, "opt": opt.init(params), "key": k_drop}

    def loss(params, batch, rng):
        if pooled:
            p1 = jax.tree.map(lambda a: a[0], params)
            return cd.net_loss(model, p1, batch["tokens"], batch["mask"], batch["y"], batch.get("weights"), rng,
                               loss=cfg.loss)
        return cd.domain_loss(model, params, batch, rng, loss=cfg.loss)

    def chunk(carry, hp, c):
        def body(st, s):
            params, opt_state = st
            if pooled:
                idx = jax.lax.dynamic_slice_in_dim(hp["order_pool"][c], s * B, B)
                batch = {"tokens": hp["tok_pool"][idx], "mask": hp["mask_pool"][idx], "y": hp["y_pool"][idx]}
                if cfg.cost_sensitive:
                    batch["weights"] = hp["w_pool"]
            else:
                idx = jax.lax.dynamic_slice_in_dim(hp["order_dom"][c], s * B, B, axis=1)  # [D, B]
                take = lambda a: jnp.take_along_axis(a, idx.reshape(D, B, *([1] * (a.ndim - 2))), 1)  # noqa: E731
                batch = {"tokens": take(hp["tok_dom"]), "mask": take(hp["mask_dom"]), "y": take(hp["y_dom"])}
                if arm == "ensemble" and cfg.cost_sensitive:
                    batch["weights"] = hp["w_dom"]
            rng = jax.random.fold_in(carry["key"], c * spe + s)
            val, g = jax.value_and_grad(loss)(params, batch, rng)
            upd, opt_state = opt.update(g, opt_state, params)
            return (optax.apply_updates(params, upd), opt_state), val

        (params, opt_state), losses = jax.lax.scan(body, (carry["params"], carry["opt"]), jnp.arange(spe))
        lengths = jax.vmap(lambda p: model.apply(p, hp["tok_test"], hp["mask_test"])[0])(params)  # [D or 1, N, C]
        return {**carry, "params": params, "opt": opt_state}, {"train_loss": jnp.mean(losses), "lengths": lengths}

    return init, chunk


def _plot(out_dir, acc: dict, dbd_acc, curves: dict, weights_example) -> list[str]:
    plt = pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    names = list(acc)
    vals = np.array([acc[m] for m in names])
    ax[0].bar(range(len(names)), vals.mean(1), yerr=vals.std(1), color="#4c72b0", alpha=0.8)
    for i, v in enumerate(vals):
        ax[0].plot(np.full(v.size, i) + np.linspace(-0.15, 0.15, v.size), v, "k.", ms=3)
    ax[0].set_xticks(range(len(names)), names, rotation=25, fontsize=8)
    ax[0].set_ylim(max(0.0, vals.min() - 0.05), 1.0)
    ax[0].set(ylabel="polarity accuracy (test)", title=f"per seed; DBD domain accuracy {np.mean(dbd_acc):.3f}")
    for m, c in curves.items():
        ax[1].plot(np.arange(1, len(c) + 1), c, "o-", label=m)
    ax[1].set(xlabel="epoch", ylabel="mean test accuracy", title="accuracy vs epoch")
    ax[1].legend(fontsize=7)
    im = ax[2].imshow(weights_example, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax[2].set(xlabel="domain d", ylabel="test text (sorted by true domain)", title="DBD weights ω_d(x), seed 0")
    fig.colorbar(im, ax=ax[2])
    fig.tight_layout()
    save(fig, out_dir, "capsule_dbd_summary.png", dpi=100)
    return ["capsule_dbd_summary.png"]


def run(cfg: CapsuleDBDExperimentConfig, ctx: RunContext) -> Outcome:
    import jax

    from zoo.claims import paired_summary
    from zoo.routing import capsule_dbd as cd
    from zoo.train import run_population

    t0 = time.perf_counter()
    seeds = [s + cfg.seed_offset for s in ctx.seeds]
    corpus0 = _corpus(cfg, seeds[0]) if cfg.data == "vader" else None
    parts = [_seed_data(cfg, s, corpus0 or _corpus(cfg, s)) for s in seeds]
    D = parts[0]["tok_dom"].shape[0]
    V = max(p["V"] for p in parts)
    skip = ("V", "spe", "spe_pool")
    hp = {k: np.stack([p[k] for p in parts]) for k in parts[0] if k not in skip}
    model = cd.CapsNetText(vocab_size=V, embed_dim=cfg.embed_dim, hidden=cfg.hidden, num_classes=2,
                           caps_dim=cfg.caps_dim, num_iters=cfg.num_iters, dropout=cfg.dropout)
    keys = jax.vmap(jax.random.key)(np.asarray(seeds, np.uint32))
    S = len(seeds)
    metrics: dict = {"setup_seconds": time.perf_counter() - t0}
    # the DBD of each seed (host numpy, no training)
    weights, dbd_acc, fallback = [], [], []
    for p in parts:
        table = cd.fit_dbd(p["tok_pool"], p["mask_pool"], p["dom_train"], V, D, cfg.dbd)
        sc = np.asarray(cd.dbd_scores(table, p["tok_test"], p["mask_test"]))
        weights.append(np.asarray(cd.dbd_weights(sc)))
        dbd_acc.append(float(np.mean(sc.argmax(1) == p["dom_test"])))
        fallback.append(float(np.mean(sc.sum(1) == 0)))
    metrics["dbd_domain_accuracy"] = float(np.mean(dbd_acc))
    metrics["dbd_uniform_fallback_rate"] = float(np.mean(fallback))

    arms = (["ensemble"] + (["pooled"] if cfg.pooled else [])
            + (["ensemble_plain"] if cfg.compare_cost_sensitive else []))
    y_test = hp["y_test"]
    acc, curves, details = {}, {}, {"per_seed_accuracy": {}, "per_domain_accuracy": {}, "dbd_accuracy": dbd_acc}
    gmeans = {}
    for arm in arms:
        t1 = time.perf_counter()
        spe = parts[0]["spe_pool"] if arm == "pooled" else parts[0]["spe"]
        init, chunk = make_arm_run(cfg, arm, model, D, spe)
        _, outs = run_population(init, chunk, keys, hp, num_chunks=cfg.epochs, unit="epoch", **ctx.runner(arm))
        metrics[f"seconds_{arm}"] = time.perf_counter() - t1
        probs = np.asarray(cd.class_probs(outs["lengths"]))  # [S, E, D|1, N, C]
        variants = {}
        if arm == "pooled":
            variants["pooled"] = probs[:, :, 0]
        else:
            w = np.stack(weights)  # [S, N, D]
            variants[arm] = np.einsum("sedbc,sbd->sebc", probs, w)
            if arm == "ensemble":
                dt = hp["dom_test"]  # [S, N]
                variants["oracle_domain"] = np.take_along_axis(probs, dt[:, None, None, :, None], 2)[:, :, 0]
                variants["uniform_average"] = probs.mean(2)
        for name, p in variants.items():
            per_epoch = (p.argmax(-1) == y_test[:, None]).mean(-1)  # [S, E]
            acc[name] = per_epoch[:, -1]
            curves[name] = per_epoch.mean(0).tolist()
            metrics[f"accuracy_{name}"] = float(per_epoch[:, -1].mean())
            metrics[f"accuracy_std_{name}"] = float(per_epoch[:, -1].std())
            details["per_seed_accuracy"][name] = per_epoch[:, -1].tolist()
            pred = p[:, -1].argmax(-1)
            gmeans[name] = [cd.binary_metrics(y_test[s], pred[s])["gmean"] for s in range(S)]
            metrics[f"gmean_{name}"] = float(np.mean(gmeans[name]))
            details["per_domain_accuracy"][name] = [
                float(np.mean([(pred[s] == y_test[s])[hp["dom_test"][s] == d].mean() for s in range(S)]))
                for d in range(D)]
        ctx.note(f"{arm}: {metrics.get(f'accuracy_{arm}', float('nan')):.4f} ({metrics[f'seconds_{arm}']:.1f} s)")
    details["accuracy_per_epoch"] = curves
    paired = {m: paired_summary(acc["ensemble"], acc[m]) for m in acc if m != "ensemble"}
    details["paired_ensemble_minus"] = paired
    gain = paired.get("pooled", {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "wins": 0,
                                 "n": 0})
    metrics.update({"gain_vs_pooled": gain["mean"], "gain_ci_low": gain["ci_low"], "gain_ci_high": gain["ci_high"],
                    "gain_wins": gain["wins"], "gain_n": gain["n"]})
    if "ensemble_plain" in acc:
        cs = paired_summary(gmeans["ensemble"], gmeans["ensemble_plain"])
        details["paired_cost_sensitive_gmean"] = cs
        metrics["cost_sensitive_gmean_gain"] = cs["mean"]
    checks = {"gain_vs_pooled": bool(gain["mean"] >= ACC_GAIN_MIN),
              "dbd_accuracy": bool(metrics["dbd_domain_accuracy"] >= DBD_ACC_MIN)}
    details["checks"] = checks
    if ctx.size == "test":  # only: runs, finite, the DBD identifies domains
        holds = bool(all(np.isfinite(v).all() for v in acc.values()) and metrics["dbd_domain_accuracy"] > 0.8)
    else:
        holds = bool(all(checks.values()))
    order = np.argsort(parts[0]["dom_test"], kind="stable")
    sub = order[:: max(1, order.size // 200)]
    plots = _plot(ctx.out_dir, acc, dbd_acc, curves, weights[0][sub])
    return Outcome(metrics=metrics, claim_holds=holds, details=details, plots=plots)


register(
    Experiment(
        name="capsule_dbd",
        paper="capsule_dbd",
        title=TITLE,
        claim=CLAIM,
        sizes=SIZES,
        run=run,
        default_seeds=5,
        resumable=True,
    )
)
