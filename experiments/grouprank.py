"""Experiment ``grouprank``: groupwise vs pointwise reranking trained by GRPO (arXiv 2511.11653).

Spec: ``papers/grouprank.md`` §5(b). Data: latent-topic retrieval (`zoo.rl.grpo_envs.retrieval`):
D = 32, M = 30 candidates per query, graded relevance 0–3; per seed s its own 2,000 train and 400
test queries (generator seeds 1000·s + 1 / 1000·s + 2). Each step: 64 train queries, each query's 30
candidates shuffled into 3 groups of m = 10; G = 8 sampled score vectors (11 bins) per group prompt;
reward R = NDCG@m + 0.5·Recall@3 + λ_d·(1 − mean|ŝ − y|); GRPO (std norm, ε = 1e-6, token-mean over
documents, ρ ≡ 1, β = 0); Adam lr 3e-3; 300 steps. Arms with identical reward, budget and parameter
count (±1 %): ``pointwise`` (MLP on [q, d, q⊙d]), ``groupwise`` (MLP on group-projected features),
``groupwise_nodist`` (groupwise with λ_d = 0), and, as a diagnostic outside the claim, ``pointwise_nodist``
(pointwise with λ_d = 0: with λ_d = 0.5 the pointwise policy collapses onto bin 0 for every document, so
the best pointwise arm is reported too, ``ndcg_gain_groupwise_vs_best_pointwise``). Training is a pure
function of (key, data, λ), so the seeds run as one vmapped population, in checkpointed chunks of
``chunk_steps`` steps (`zoo.train.run_population`: progress, ``--resume``), then one evaluation; the
two groupwise arms share one compiled program, and so do the two pointwise arms (λ is traced).

Evaluation on the test queries: full-list NDCG@10 over the 30 candidates, from `rerank` with group 10,
interval 10, R = 2 repeats and expected-score averaging (the pointwise scorer scores each document
once: grouping does not change it); calibration error mean|ŝ − grade/3| over all test candidates.

Claims (thresholds fixed by the spec before any run):
  C1: groupwise NDCG@10 >= pointwise NDCG@10 + 0.10 (mean of the seeds);
  C2: with λ_d = 0.5 the calibration error is >= 20 % lower than with λ_d = 0, and NDCG@10 is not
      lower by more than 0.01.
At ``test`` size the claim is only that the run works (finite loss, rewards in range, NDCG in [0, 1]).

``paper`` size documents the GPU setting of §5(c): M = 100, group 20, interval 20, R = 6, an attention
scorer (width 256, 4 layers) over [q; 20 docs], 2,000 steps (the SFT warm start of §5(c) is not done).
The literal setting (Qwen2.5-7B/32B on BRIGHT) needs model weights and benchmark downloads.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from zoo.checks import check_choice, check_range
from zoo.plotting import pyplot, save
from zoo.registry import Experiment, Outcome, RunContext, register

TITLE = "GroupRank: A Groupwise Reranking Paradigm Driven by Reinforcement Learning"
CLAIM = (
    "Trained by GRPO with the same reward and budget, the groupwise scorer's full-list NDCG@10 is >= 0.10 above "
    "the pointwise scorer's (C1); the distributional reward (λ_d = 0.5 vs 0) lowers the calibration error "
    "mean|s - y| by >= 20% without lowering NDCG@10 by more than 0.01 (C2)."
)
NDCG_MARGIN = 0.10  # C1
CALIB_REDUCTION = 0.20  # C2
NDCG_TOLERANCE = 0.01  # C2
ARMS = ("pointwise", "groupwise", "groupwise_nodist", "pointwise_nodist")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupRankExperimentConfig:
    """Data, scorer, GRPO and evaluation settings."""

    n_train: int = 2000
    n_test: int = 400
    n_candidates: int = 30  # M
    dim: int = 32  # D
    group_size: int = 10  # m (training groups: the M candidates cut into M / m groups)
    samples: int = 8  # G sampled score vectors per group prompt
    queries_per_step: int = 64
    steps: int = 300
    lr: float = 3e-3
    hidden: tuple[int, ...] = (64, 64)
    attention: bool = False  # groupwise scorer = self-attention over [q; docs] (paper size)
    n_layers: int = 2
    weights: tuple[float, float, float] = (1.0, 0.5, 0.5)  # (λ_n, λ_r, λ_d)
    k_recall: int = 3
    eps: float = 1e-6
    eval_group_size: int = 10
    eval_interval: int = 10
    eval_repeats: int = 2
    eval_k: int = 10
    log_every: int = 10  # training-curve resolution (steps)
    chunk_steps: int = 50  # steps per checkpointed chunk of the run
    arms: tuple[str, ...] = ARMS

    def __post_init__(self):
        check_range("n_train", self.n_train, low=1)
        check_range("n_test", self.n_test, low=1)
        check_range("n_candidates", self.n_candidates, low=2)
        check_range("dim", self.dim, low=2)
        check_range("group_size", self.group_size, low=2, high=self.n_candidates)
        check_range("samples", self.samples, low=2)
        check_range("queries_per_step", self.queries_per_step, low=1, high=self.n_train)
        check_range("steps", self.steps, low=1)
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        check_range("n_layers", self.n_layers, low=1)
        if len(self.weights) != 3:
            raise ValueError(f"weights: expected 3 values (ndcg, recall, dist), got {self.weights!r}")
        for w in self.weights:
            check_range("weights", w, low=0.0)
        check_range("k_recall", self.k_recall, low=1, high=self.group_size)
        check_range("eps", self.eps, low=0.0, low_inclusive=False)
        check_range("eval_group_size", self.eval_group_size, low=1, high=self.n_candidates)
        check_range("eval_interval", self.eval_interval, low=1, high=self.eval_group_size)
        check_range("eval_repeats", self.eval_repeats, low=1)
        check_range("eval_k", self.eval_k, low=1)
        check_range("log_every", self.log_every, low=1, high=self.steps)
        if self.steps % self.log_every:
            raise ValueError(f"log_every: expected a divisor of steps={self.steps}, got {self.log_every}")
        check_range("chunk_steps", self.chunk_steps, low=1, high=self.steps)
        if self.steps % self.chunk_steps:
            raise ValueError(f"chunk_steps: expected a divisor of steps={self.steps}, got {self.chunk_steps}")
        if not self.arms:
            raise ValueError("arms: expected at least one arm")
        for a in self.arms:
            check_choice("arms", a, ARMS)

    def scorer(self, kind: str):
        from zoo.rl.grouprank import ScorerConfig

        if kind != "pointwise" and self.attention:
            return ScorerConfig(kind="attention", dim=self.dim, hidden=self.hidden[:1], n_layers=self.n_layers)
        return ScorerConfig(kind="pointwise" if kind == "pointwise" else "groupwise", dim=self.dim, hidden=self.hidden)


SIZES = {
    "test": GroupRankExperimentConfig(n_train=16, n_test=16, n_candidates=10, group_size=10, samples=4,
                                      queries_per_step=16, steps=5, log_every=1, chunk_steps=5, hidden=(16,),
                                      eval_group_size=10, eval_interval=10, eval_repeats=1, arms=("groupwise",)),  # fmt: skip
    "quick": GroupRankExperimentConfig(),
    "paper": GroupRankExperimentConfig(n_train=20_000, n_test=1_000, n_candidates=100, group_size=20, samples=8,
                                       queries_per_step=64, steps=2000, chunk_steps=100, hidden=(256,), attention=True, n_layers=4,
                                       eval_group_size=20, eval_interval=20, eval_repeats=6),  # fmt: skip
}


# ----------------------------------------------------------------------------------- data


def seed_data(cfg: GroupRankExperimentConfig, seed: int) -> dict:
    """Host numpy: the seed's train and test queries."""
    from zoo.rl.grpo_envs.retrieval import RetrievalConfig, generate

    rc = RetrievalConfig(dim=cfg.dim, n_candidates=cfg.n_candidates)
    tr, te = generate(1000 * seed + 1, cfg.n_train, rc), generate(1000 * seed + 2, cfg.n_test, rc)
    return {"q": tr["q"], "docs": tr["docs"], "grades": tr["grades"],
            "q_test": te["q"], "docs_test": te["docs"], "grades_test": te["grades"]}  # fmt: skip


# ----------------------------------------------------------------------------------- one run


@functools.lru_cache(maxsize=8)
def make_arm_run(cfg: GroupRankExperimentConfig, kind: str):
    """``(init, chunk, evaluate)`` of one arm, ``hp = {data..., "weights": f32[3]}``.

    ``init``/``chunk`` train through `zoo.train.run_population` (``chunk(carry, hp, c)``: ``chunk_steps``
    GRPO steps -> per-step metrics); ``evaluate(carry, hp)`` (jitted, vmapped over members) reranks the test queries with the final scorers.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from zoo.rl import grouprank as gr
    from zoo.rl import grpo_core

    scorer = cfg.scorer(kind)
    groups = jnp.asarray(gr.split_groups(cfg.n_candidates, cfg.group_size, cfg.group_size))  # [ng, m]
    ng, m = groups.shape
    rcfg = gr.RewardConfig(k_recall=cfg.k_recall)
    loss_cfg = grpo_core.LossConfig()  # token-mean over documents, β = 0, ρ ≡ 1 with one pass
    opt = optax.adam(cfg.lr)

    def batch_of(key, hp):
        k_q, k_perm = jax.random.split(key)
        idx = jax.random.choice(k_q, cfg.n_train, (cfg.queries_per_step,), replace=False)
        order = gr.shuffle_candidates(k_perm, jnp.broadcast_to(jnp.arange(cfg.n_candidates), (idx.shape[0], cfg.n_candidates)))
        valid = jnp.broadcast_to(groups >= 0, (idx.shape[0], ng, m))
        pos = jnp.where(groups >= 0, groups, 0).reshape(1, -1)
        doc = jnp.take_along_axis(order, jnp.broadcast_to(pos, (idx.shape[0], ng * m)), 1)  # [Qs, ng*m]
        docs = jnp.take_along_axis(hp["docs"][idx], doc[..., None], 1).reshape(-1, m, cfg.dim)
        grades = jnp.take_along_axis(hp["grades"][idx], doc, 1).reshape(-1, m)
        q = jnp.repeat(hp["q"][idx], ng, 0)
        return q, docs, grades, valid.reshape(-1, m)

    def step(carry, key, hp):
        params, opt_state = carry
        k_b, k_s = jax.random.split(key)
        q, docs, grades, valid = batch_of(k_b, hp)
        logits = gr.scorer_logits(params, q, docs, valid, cfg=scorer)
        bins, _ = gr.sample_scores(k_s, jax.lax.stop_gradient(logits), cfg.samples)
        gb = jnp.broadcast_to(grades[:, None], bins.shape)
        reward, parts = gr.grouprank_reward(bins, gb, cfg=rcfg, valid=valid[:, None], weights=hp["weights"])
        adv = grpo_core.group_advantages(reward, eps=cfg.eps)
        batch = {"q": q, "docs": docs, "valid": valid, "bins": bins, "adv": adv}
        (loss, aux), grads = jax.value_and_grad(
            lambda p: gr.grouprank_loss(p, batch, scorer=scorer, loss_cfg=loss_cfg), has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        met = {"loss": loss, "reward": reward.mean(), "ndcg": parts["ndcg"].mean(), "dist": parts["dist"].mean(),
               "recall": parts["recall"].mean(), "zero_adv_frac": jnp.mean(jnp.all(adv == 0, -1))}  # fmt: skip
        return (params, opt_state), met

    def init(key, hp):
        k_init, k_train, k_eval = jax.random.split(key, 3)
        params = gr.init_scorer(k_init, scorer, cfg.group_size)
        return {"params": params, "opt": opt.init(params), "key": k_train, "k_eval": k_eval}

    def chunk(carry, hp, c):
        """Steps ``c·chunk_steps …``: their keys are a slice of ``split(k_train, steps)``, however chunked."""
        keys = jax.lax.dynamic_slice_in_dim(jax.random.split(carry["key"], cfg.steps), c * cfg.chunk_steps,
                                            cfg.chunk_steps)  # fmt: skip
        (params, opt_state), met = jax.lax.scan(lambda pc, k: step(pc, k, hp), (carry["params"], carry["opt"]), keys)
        return {**carry, "params": params, "opt": opt_state}, met

    def evaluate(carry, hp):
        s = gr.rerank(carry["params"], carry["k_eval"], hp["q_test"], hp["docs_test"], scorer=scorer,
                      group_size=cfg.eval_group_size, interval=cfg.eval_interval, repeats=cfg.eval_repeats)  # fmt: skip
        return {
            "ndcg": gr.full_list_ndcg(s, hp["grades_test"], cfg.eval_k),
            "calib_error": jnp.mean(jnp.abs(s - hp["grades_test"] / 3.0)),
            "ndcg_retriever": gr.full_list_ndcg(jnp.einsum("qd,qnd->qn", hp["q_test"], hp["docs_test"]),
                                                hp["grades_test"], cfg.eval_k),  # fmt: skip
        }

    return init, chunk, jax.jit(jax.vmap(evaluate))  # the same compiled evaluation for both arms of a kind


# ----------------------------------------------------------------------------------- experiment


def _plot(out_dir, cfg, curves, finals) -> list[str]:
    plt = pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    x = (np.arange(cfg.steps // cfg.log_every) + 1) * cfg.log_every
    for arm, c in curves.items():
        ax[0].plot(x, c["ndcg"].mean(0), label=arm)
        ax[1].plot(x, c["dist"].mean(0), label=arm)
    ax[0].set(xlabel="step", ylabel="train group NDCG@m (sampled scores)", title="ranking reward")
    ax[1].set(xlabel="step", ylabel="1 - mean|s - y| (sampled)", title="distributional reward")
    ax[0].legend(fontsize=7)
    arms = list(finals)
    nd = [finals[a]["ndcg"] for a in arms]
    ax[2].bar(arms, [v.mean() for v in nd], yerr=[v.std() for v in nd], color="C0", alpha=0.8)
    for i, v in enumerate(nd):
        ax[2].plot([i] * len(v), v, "k.", ms=4)
    ax[2].axhline(float(np.mean(finals[arms[0]]["ndcg_retriever"])), color="gray", ls="--", lw=0.8, label="retriever q·d")
    ax[2].set(ylabel="test full-list NDCG@10", title="reranking quality (seeds as dots)", ylim=(0, 1))
    ax[2].tick_params(axis="x", labelrotation=20, labelsize=7)
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    return [save(fig, out_dir, "grouprank_summary.png", dpi=100)]


def run(cfg: GroupRankExperimentConfig, ctx: RunContext) -> Outcome:
    import jax
    import jax.numpy as jnp

    from zoo.train import run_population

    t0 = time.perf_counter()
    parts = [seed_data(cfg, s) for s in ctx.seeds]
    data = {k: jnp.asarray(np.stack([p[k] for p in parts])) for k in parts[0]}
    keys = jax.vmap(jax.random.key)(np.asarray(ctx.seeds, np.uint32))
    setup_s = time.perf_counter() - t0
    s = len(ctx.seeds)
    metrics, curves, finals, details = {"setup_seconds": setup_s}, {}, {}, {"per_seed": {}}
    for arm in cfg.arms:
        t1 = time.perf_counter()
        w = np.array(cfg.weights, np.float32)
        if arm.endswith("_nodist"):
            w[2] = 0.0
        hp = {**data, "weights": jnp.asarray(np.broadcast_to(w, (s, 3)))}
        init, chunk, evaluate = make_arm_run(cfg, arm.split("_")[0])
        state, met = run_population(init, chunk, keys, hp, num_chunks=cfg.steps // cfg.chunk_steps,
                                    steps_per_chunk=cfg.chunk_steps, unit="step", **ctx.runner(arm))  # fmt: skip
        curves[arm] = jax.tree.map(lambda x: x.reshape(s, -1, cfg.log_every).mean(2), met)
        ctx.note(f"grouprank: evaluating {arm} on the test queries")
        finals[arm] = jax.tree.map(np.asarray, evaluate(state, hp))
        metrics[f"seconds_{arm}"] = time.perf_counter() - t1
        for name in ("ndcg", "calib_error"):
            metrics[f"{name}_{arm}"] = float(finals[arm][name].mean())
            metrics[f"{name}_std_{arm}"] = float(finals[arm][name].std())
            details["per_seed"][f"{name}_{arm}"] = finals[arm][name].tolist()
        metrics[f"train_reward_end_{arm}"] = float(curves[arm]["reward"][:, -1].mean())
        metrics[f"loss_finite_{arm}"] = bool(np.all(np.isfinite(curves[arm]["loss"])))
        details[f"curve_ndcg_{arm}"] = curves[arm]["ndcg"].mean(0).tolist()
    metrics["ndcg_retriever"] = float(finals[cfg.arms[0]]["ndcg_retriever"].mean())

    c1 = c2 = None
    if "pointwise" in finals and "groupwise" in finals:
        metrics["ndcg_gain_groupwise_vs_pointwise"] = metrics["ndcg_groupwise"] - metrics["ndcg_pointwise"]
        c1 = metrics["ndcg_gain_groupwise_vs_pointwise"] >= NDCG_MARGIN
        metrics["claim_c1"] = bool(c1)
    if "pointwise_nodist" in finals and "groupwise" in finals:  # diagnostic, not the claim: best pointwise arm
        best = max(metrics["ndcg_pointwise_nodist"], metrics.get("ndcg_pointwise", -1.0))
        metrics["ndcg_gain_groupwise_vs_best_pointwise"] = metrics["ndcg_groupwise"] - best
    if "groupwise" in finals and "groupwise_nodist" in finals:
        red = 1.0 - metrics["calib_error_groupwise"] / metrics["calib_error_groupwise_nodist"]
        drop = metrics["ndcg_groupwise_nodist"] - metrics["ndcg_groupwise"]
        metrics["calib_reduction_dist"] = float(red)
        metrics["ndcg_drop_dist"] = float(drop)
        c2 = bool(red >= CALIB_REDUCTION and drop <= NDCG_TOLERANCE)
        metrics["claim_c2"] = c2
    if ctx.size == "test":
        ok = all(metrics[f"loss_finite_{a}"] for a in cfg.arms)
        ok = ok and all(0.0 <= metrics[f"ndcg_{a}"] <= 1.0 for a in cfg.arms)
        ok = ok and all(0.0 <= metrics[f"train_reward_end_{a}"] <= sum(cfg.weights) + 1e-6 for a in cfg.arms)
        holds = bool(ok)
    else:
        holds = bool(c1) and bool(c2)
    plots = _plot(ctx.out_dir, cfg, curves, finals)
    return Outcome(metrics=metrics, claim_holds=holds, details=details, plots=plots)


register(
    Experiment(
        name="grouprank",
        paper="grouprank",
        title=TITLE,
        claim=CLAIM,
        sizes=SIZES,
        run=run,
        default_seeds=3,
        resumable=True,
    )
)
