"""RLCCF: Reinforcement Learning from Coevolutionary Collective Feedback (Yuan, Tang et al., 2025, arXiv:2508.12338).

N different models answer the same unlabeled questions; each model's vote is weighted by its
self-consistency, the weighted vote becomes the pseudo-label, and every model is trained by GRPO to
agree with it (Collective Consistency). No official code exists: details beyond the abstract follow
secondary summaries (spec ``papers/rlccf.md``).

Answers are canonical ids in [0, C), −1 = ∅ (no parsable answer). Shapes: N models, Q questions,
K samples per model and question.

Equations -> functions:

- c_n(a) = Σ_k 1[a_{n,k} = a]                                           -> `answer_counts`
- SC_n(q) = max_a c_n(a) / K  (0 when every answer is ∅; ``scope="batch"``: mean over questions)
                                                                         -> `self_consistency`
- V_q(a) = Σ_n SC_n(q) c_n(a),  â(q) = argmax_a V_q(a) (ties → smallest id; −1 if no valid answer)
  (``weighting="uniform"``: plain majority over the pooled answers)     -> `collective_vote`
- TTRL baseline: each model's own majority                              -> `ttrl_labels`
- r_{n,k} = 1[a_{n,k} = â(q)] (∅ never matches)                         -> `consistency_rewards`
- A_{n,k} = (r_{n,k} − mean_k r) / (std_k + ε) per model and question    -> `rlccf_advantages`
  (= `zoo.rl.grpo_core.group_advantages` on [N·Q, K])
- the pseudo-labels of one step for any arm ("sc", "uniform", "self" = TTRL) -> `pseudo_labels`
- per-model GRPO loss (clipped surrogate + β k3-KL to the model's own frozen reference; labels are
  constants, so no gradient flows between models)                       -> `model_loss`, `rlccf_loss`
- one coevolution step: vmapped sampling of all N models, vote on all of them, vmapped update, each
  model with its own optimizer state                                     -> `rlccf_step`
- metrics needing gold (evaluation only): `label_accuracy`, `reward_accuracy`, `avg_accuracy` (avg@K),
  `group_majority_accuracy` (unweighted pooled vote, the paper's "group majority vote")

Choices that are ours (the paper's are unknown): tie rule (smallest id), ∅ handling (excluded from
counts, kept in K for SC), SC per question by default, K = 16, temperature 1, ε = 1e-6, unbiased std,
clip 0.2/0.2, β = 0.001 with k3, token-mean aggregation, one PPO epoch (ρ ≡ 1), Adam per model.
Models of one architecture are a stacked pytree (leading axis N) run under ``jax.vmap``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.checks import check_array, check_choice, check_range, is_traced
from zoo.rl import grpo_core, tiny_lm

WEIGHTINGS = ("sc", "uniform")
LABEL_MODES = ("sc", "uniform", "self")  # RLCCF, collective plain vote, TTRL (own majority)
SCOPES = ("question", "batch")

__all__ = [
    "LABEL_MODES",
    "RLCCFConfig",
    "RLCCFState",
    "SCOPES",
    "WEIGHTINGS",
    "answer_counts",
    "avg_accuracy",
    "collective_vote",
    "consistency_rewards",
    "group_majority_accuracy",
    "init_rlccf_state",
    "label_accuracy",
    "model_loss",
    "pseudo_labels",
    "reward_accuracy",
    "rlccf_advantages",
    "rlccf_loss",
    "rlccf_step",
    "sample_answers",
    "self_consistency",
    "ttrl_labels",
]

# ------------------------------------------------------------------------------------- checks


def _check_answers(answers, n_answers=None, *, ndim=3):
    check_array("answers", answers, ndim=ndim, finite=False)
    a = answers
    if np.dtype(a.dtype).kind not in "iu":
        raise ValueError(f"answers: expected integer answer ids, got dtype {a.dtype}")
    if ndim == 3:
        if a.shape[0] < 1:
            raise ValueError(f"answers: expected N >= 1 models on axis 0, got shape {tuple(a.shape)}")
    if a.shape[-1] < 2:
        raise ValueError(f"answers: expected K >= 2 samples on the last axis, got shape {tuple(a.shape)}")
    if not is_traced(a) and a.size:
        lo, hi = int(np.min(a)), int(np.max(a))
        top = "C" if n_answers is None else str(n_answers)
        if lo < -1 or (n_answers is not None and hi >= n_answers):
            raise ValueError(f"answers: expected ids in [-1, {top}) (-1 = no answer), got values in [{lo}, {hi}]")


def _check_counts(counts):
    check_array("counts", counts, ndim=3)
    if np.dtype(counts.dtype).kind not in "iuf":
        raise ValueError(f"counts: expected a numeric array, got dtype {counts.dtype}")
    if not is_traced(counts) and counts.size and np.min(np.asarray(counts)) < 0:
        raise ValueError(f"counts: expected non-negative vote counts, got a minimum of {np.min(np.asarray(counts))}")


def _int(name, v, low):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name}: expected an int, got {v!r}")
    check_range(name, v, low=low)


def _float():
    """JAX's default float (float32; float64 under ``jax.enable_x64``): rewards and scores of integer votes."""
    return jnp.result_type(float)


def _check_labels(name, labels, ndim=(1, 2)):
    check_array(name, labels, ndim=ndim, finite=False, kind="iu")
    if not is_traced(labels) and labels.size and np.min(np.asarray(labels)) < -1:
        raise ValueError(f"{name}: expected ids >= -1 (-1 = no answer), got {np.min(np.asarray(labels))}")


def _check_cfgs(cfg, lm_cfg=False):
    """``cfg`` an RLCCFConfig and, when passed, ``lm_cfg`` a TinyLMConfig."""
    if not isinstance(cfg, RLCCFConfig):
        raise ValueError(f"cfg: expected an RLCCFConfig, got {type(cfg).__name__}")
    if lm_cfg is not False and not isinstance(lm_cfg, tiny_lm.TinyLMConfig):
        raise ValueError(f"lm_cfg: expected a tiny_lm.TinyLMConfig, got {type(lm_cfg).__name__}")


# ------------------------------------------------------------------------------------- voting


def answer_counts(answers, *, n_answers: int) -> jax.Array:
    """c_n(a): ``answers: i32[N, Q, K]`` (−1 ignored) -> ``i32[N, Q, C]``."""
    _int("n_answers", n_answers, 1)
    _check_answers(answers, n_answers)
    a = jnp.asarray(answers)
    return jnp.sum(jax.nn.one_hot(a, n_answers, dtype=jnp.int32), axis=-2)  # one_hot(−1) = 0


def self_consistency(counts, k: int, *, scope: str = "question") -> jax.Array:
    """SC_n(q) = max_a c_n(a) / K ∈ {0} ∪ [1/K, 1]: ``i32[N, Q, C] -> f32[N, Q]``.

    ``scope="batch"`` replaces each model's SC by its mean over the Q questions (broadcast back).
    """
    _check_counts(counts)
    _int("k", k, 2)
    check_choice("scope", scope, SCOPES)
    if not is_traced(counts) and counts.size and int(np.max(np.sum(np.asarray(counts), -1))) > k:
        raise ValueError(f"k: expected at least the number of counted answers per model and question, got k={k}")
    c = jnp.asarray(counts)
    sc = jnp.max(c, -1).astype(jnp.result_type(c, float)) / k
    if scope == "batch":
        sc = jnp.broadcast_to(jnp.mean(sc, -1, keepdims=True), sc.shape)
    return sc


def collective_vote(counts, sc=None, *, weighting: str = "sc") -> tuple[jax.Array, jax.Array]:
    """The collective pseudo-label: ``counts: i32[N, Q, C]``, ``sc: f32[N, Q]`` -> ``(label i32[Q], scores f32[Q, C])``.

        scores_q(a) = Σ_n w_n(q) c_n(a)   with w = SC ("sc") or 1 ("uniform"),
        label_q = argmax_a scores_q(a), ties → the smallest id, −1 when no model gave a valid answer.

    ``sc`` must be non-negative (a self-consistency lies in [0, 1]; a negative weight would turn a model's
    votes into votes against); checked on concrete arrays. Scores are in the dtype of ``sc`` (of ``counts``
    when float, else JAX's default float).
    """
    _check_counts(counts)
    check_choice("weighting", weighting, WEIGHTINGS)
    if weighting == "sc":
        if sc is None:
            raise ValueError("sc: required when weighting='sc' (see self_consistency)")
        check_array("sc", sc, shape=counts.shape[:2], kind="fiu")
        if not is_traced(sc) and np.size(sc) and np.min(np.asarray(sc)) < 0:
            raise ValueError(f"sc: expected non-negative self-consistency weights, got a minimum of "
                             f"{np.min(np.asarray(sc))}")  # fmt: skip
        dt = jnp.result_type(sc, counts, float)
        w = jnp.asarray(sc).astype(dt)
    else:
        dt = jnp.result_type(counts, float)
        w = jnp.ones(counts.shape[:2], dt)
    c = jnp.asarray(counts).astype(dt)
    scores = jnp.einsum("nq,nqc->qc", w, c)
    any_valid = jnp.sum(c, (0, 2)) > 0
    return jnp.where(any_valid, jnp.argmax(scores, -1), -1).astype(jnp.int32), scores


def ttrl_labels(counts) -> jax.Array:
    """Each model's own majority answer (TTRL): ``i32[N, Q, C] -> i32[N, Q]`` (ties → smallest, −1 if none)."""
    _check_counts(counts)
    c = jnp.asarray(counts)
    return jnp.where(jnp.sum(c, -1) > 0, jnp.argmax(c, -1), -1).astype(jnp.int32)


def consistency_rewards(answers, labels) -> jax.Array:
    """r_{n,k} = 1[a_{n,k} = label] with ∅ never matching: ``i32[N, Q, K]``, ``i32[Q] | i32[N, Q] -> f32[N, Q, K]``."""
    _check_answers(answers)
    _check_labels("labels", labels)
    n, q, _ = answers.shape
    if labels.shape not in ((q,), (n, q)):
        raise ValueError(f"labels: expected shape ({q},) or ({n}, {q}), got {tuple(labels.shape)}")
    lab = jnp.asarray(labels)
    lab = lab[None, :, None] if lab.ndim == 1 else lab[..., None]
    a = jnp.asarray(answers)
    return ((a == lab) & (a >= 0) & (lab >= 0)).astype(_float())


def rlccf_advantages(rewards, *, norm: str = "std", eps: float = 1e-6) -> jax.Array:
    """GRPO advantages within each model's K samples of a question: ``f32[N, Q, K] -> f32[N, Q, K]``."""
    check_array("rewards", rewards, ndim=3)
    n, q, k = rewards.shape
    adv = grpo_core.group_advantages(jnp.reshape(rewards, (n * q, k)), norm=norm, eps=eps)
    return adv.reshape(n, q, k)


def pseudo_labels(answers, *, n_answers: int, mode: str = "sc", k: int | None = None, scope: str = "question"):
    """The labels an arm trains on: ``answers: i32[N, Q, K] -> (labels i32[N, Q], sc f32[N, Q])``.

    ``mode``: "sc" (RLCCF, SC-weighted collective vote), "uniform" (plain pooled vote), "self" (TTRL:
    own majority). Collective labels are broadcast to every model.
    """
    check_choice("mode", mode, LABEL_MODES)
    if k is not None:
        _int("k", k, 2)
    counts = answer_counts(answers, n_answers=n_answers)
    kk = answers.shape[-1] if k is None else k
    sc = self_consistency(counts, kk, scope=scope)
    if mode == "self":
        return ttrl_labels(counts), sc
    lab, _ = collective_vote(counts, sc, weighting="sc" if mode == "sc" else "uniform")
    return jnp.broadcast_to(lab, sc.shape), sc


# ------------------------------------------------------------------------------------- metrics (need gold)


def _check_gold(gold, q):
    _check_labels("gold", gold, ndim=1)
    if gold.shape != (q,):
        raise ValueError(f"gold: expected shape ({q},) (one label per question), got {tuple(gold.shape)}")


def label_accuracy(labels, gold) -> jax.Array:
    """Fraction of pseudo-labels equal to gold (−1 counts as wrong): ``i32[Q] | i32[N, Q]`` -> ``f32[]``."""
    _check_labels("labels", labels)
    _check_gold(gold, labels.shape[-1])
    return jnp.mean((jnp.asarray(labels) == jnp.asarray(gold)).astype(_float()))


def reward_accuracy(answers, labels, gold) -> jax.Array:
    """Fraction of rewards equal to the gold-based reward 1[a = gold]: ``-> f32[]``."""
    _check_answers(answers)
    _check_gold(gold, answers.shape[1])
    r = consistency_rewards(answers, labels)
    r_gold = consistency_rewards(answers, gold)
    return jnp.mean((r == r_gold).astype(_float()))


def avg_accuracy(answers, gold) -> jax.Array:
    """avg@K per model: mean over questions and samples of 1[a = gold]: ``i32[N, Q, K] -> f32[N]``."""
    _check_answers(answers)
    _check_gold(gold, answers.shape[1])
    return jnp.mean(consistency_rewards(answers, gold), (1, 2))


def group_majority_accuracy(answers, gold, *, n_answers: int | None = None) -> jax.Array:
    """Accuracy of the unweighted vote over all N·K pooled answers (the paper's group MV): ``-> f32[]``."""
    _check_answers(answers)
    _check_gold(gold, answers.shape[1])
    if n_answers is None and (is_traced(answers) or is_traced(gold)):
        raise ValueError("n_answers: required under jit/vmap (the number of answer ids C)")
    if n_answers is not None:
        _int("n_answers", n_answers, 1)
        if not is_traced(gold) and gold.size and np.max(np.asarray(gold)) >= n_answers:
            raise ValueError(f"gold: expected ids in [-1, {n_answers}), got a maximum of {np.max(np.asarray(gold))}")
    c = n_answers if n_answers is not None else int(max(np.max(np.asarray(gold)), np.max(np.asarray(answers)))) + 1
    lab, _ = collective_vote(answer_counts(answers, n_answers=c), weighting="uniform")
    return jnp.mean((lab == jnp.asarray(gold)).astype(_float()))


# ------------------------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True, kw_only=True)
class RLCCFConfig:
    """One RLCCF step (hashable: a static jit argument)."""

    k: int = 16  # samples per model and question (voting and training)
    n_answers: int = 10  # C
    mode: str = "sc"  # "sc" (RLCCF) | "uniform" | "self" (TTRL)
    scope: str = "question"  # SC per question or averaged over the batch
    norm: str = "std"
    eps: float = 1e-6
    temperature: float = 1.0
    max_new: int = 2
    lr: float = 1e-3  # Adam, one optimizer per model
    loss: grpo_core.LossConfig = grpo_core.LossConfig(kl_coef=0.001, kl_estimator="k3")

    def __post_init__(self):
        check_range("k", self.k, low=2)
        check_range("n_answers", self.n_answers, low=1)
        check_choice("mode", self.mode, LABEL_MODES)
        check_choice("scope", self.scope, SCOPES)
        check_choice("norm", self.norm, grpo_core.NORMS)
        check_range("eps", self.eps, low=0.0, low_inclusive=False)
        check_range("temperature", self.temperature, low=0.0, low_inclusive=False)
        check_range("max_new", self.max_new, low=1)
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        grpo_core.validate_config(self.loss)

    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.lr)


class RLCCFState(NamedTuple):
    """Stacked per-model state; every leaf has a leading model axis N."""

    params: Any
    ref_params: Any  # frozen references (the models' initial weights)
    opt_state: Any


def init_rlccf_state(params, cfg: RLCCFConfig) -> RLCCFState:
    """Start RL from stacked ``params`` (leading axis N): references = copies, one Adam state per model."""
    _check_cfgs(cfg)
    leaves = jax.tree.leaves(params)
    if not leaves or any(np.ndim(x) == 0 for x in leaves) or len({x.shape[0] for x in leaves}) != 1:
        raise ValueError("params: expected a stacked pytree whose leaves share a leading model axis N")
    return RLCCFState(params, jax.tree.map(jnp.copy, params), jax.vmap(cfg.optimizer().init)(params))


def sample_answers(params, key, prompts, *, cfg: RLCCFConfig, lm_cfg: tiny_lm.TinyLMConfig, extract: Callable):
    """One model's K samples per question: ``prompts: i32[Q, Lp] -> (Rollout over [Q·K, Lc], answers i32[Q, K])``.

    Group members are contiguous (``jnp.repeat(prompts, K, 0)``); ``extract(tokens, mask) -> i32[Q·K]``.
    """
    _check_cfgs(cfg, lm_cfg)
    check_array("prompts", prompts, ndim=2, kind="iu")
    if not callable(extract):
        raise ValueError(f"extract: expected a callable (tokens, mask) -> answer ids, got {type(extract).__name__}")
    rep = jnp.repeat(prompts, cfg.k, axis=0)
    ro = tiny_lm.sample(params, key, rep, cfg=lm_cfg, max_new=cfg.max_new, temperature=cfg.temperature)
    return ro, extract(ro.tokens, ro.mask).reshape(prompts.shape[0], cfg.k)


def model_loss(params, ref_params, prompts, rollout, adv, *, cfg: RLCCFConfig, lm_cfg: tiny_lm.TinyLMConfig):
    """One model's GRPO loss on its own samples: ``adv: f32[Q, K]`` (a constant) -> ``(loss f32[], metrics)``."""
    _check_cfgs(cfg, lm_cfg)
    check_array("prompts", prompts, ndim=2, kind="iu")
    check_array("adv", adv, shape=(prompts.shape[0], cfg.k))
    rep = jnp.repeat(prompts, cfg.k, axis=0)
    logp = tiny_lm.completion_logprobs(params, rep, rollout.tokens, cfg=lm_cfg, temperature=cfg.temperature)
    ref = None
    if cfg.loss.uses_kl():
        ref = jax.lax.stop_gradient(tiny_lm.completion_logprobs(ref_params, rep, rollout.tokens, cfg=lm_cfg,
                                                                temperature=cfg.temperature))  # fmt: skip
    a = jax.lax.stop_gradient(adv).reshape(-1)
    return grpo_core.grpo_objective(logp, jax.lax.stop_gradient(rollout.logp), ref, a, rollout.mask, cfg=cfg.loss)


def rlccf_loss(params, ref_params, prompts, rollouts, adv, *, cfg: RLCCFConfig, lm_cfg: tiny_lm.TinyLMConfig):
    """Per-model losses of stacked models: ``adv: f32[N, Q, K] -> (loss f32[N], metrics)``; ∂loss_n/∂θ_m = 0 for m ≠ n."""
    _check_cfgs(cfg, lm_cfg)
    check_array("prompts", prompts, ndim=2, kind="iu")
    n = jax.tree.leaves(params)[0].shape[0] if jax.tree.leaves(params) else 0
    check_array("adv", adv, shape=(n, prompts.shape[0], cfg.k))
    fn = functools.partial(model_loss, cfg=cfg, lm_cfg=lm_cfg)
    return jax.vmap(fn, in_axes=(0, 0, None, 0, 0))(params, ref_params, prompts, rollouts, adv)


def rlccf_step(state: RLCCFState, key, prompts, *, cfg: RLCCFConfig, lm_cfg: tiny_lm.TinyLMConfig,
               extract: Callable, mode=None):
    """One coevolution step on a batch of questions ``prompts: i32[Q, Lp]`` -> ``(state, aux)``.

    Each model n samples K completions (keys ``split(key, N)[n]``); answers of *all* models give the
    pseudo-labels (`pseudo_labels` with ``cfg.mode``, or a traced ``mode`` index into `LABEL_MODES`
    that selects among the three, so arms can be vmapped); rewards and per-model advantages follow;
    each model takes one Adam step on its own loss. ``aux``: ``answers i32[N, Q, K]``,
    ``labels i32[N, Q]``, ``sc f32[N, Q]``, ``rewards f32[N, Q, K]``, ``loss f32[N]`` and loss metrics.
    """
    if not isinstance(state, RLCCFState):
        raise ValueError(f"state: expected an RLCCFState (see init_rlccf_state), got {type(state).__name__}")
    _check_cfgs(cfg, lm_cfg)
    check_array("prompts", prompts, ndim=2, finite=False, kind="iu")
    if not callable(extract):
        raise ValueError(f"extract: expected a callable (tokens, mask) -> answer ids, got {type(extract).__name__}")
    if mode is not None and not is_traced(mode):
        check_range("mode", int(mode), low=0, high=len(LABEL_MODES) - 1)
    n = jax.tree.leaves(state.params)[0].shape[0]
    keys = jax.random.split(key, n)
    ro, answers = jax.vmap(lambda p, k: sample_answers(p, k, prompts, cfg=cfg, lm_cfg=lm_cfg, extract=extract))(
        state.params, keys
    )
    if mode is None:
        labels, sc = pseudo_labels(answers, n_answers=cfg.n_answers, mode=cfg.mode, k=cfg.k, scope=cfg.scope)
    else:
        opts = [pseudo_labels(answers, n_answers=cfg.n_answers, mode=m, k=cfg.k, scope=cfg.scope)[0] for m in LABEL_MODES]
        labels = jnp.stack(opts)[jnp.asarray(mode)]
        sc = self_consistency(answer_counts(answers, n_answers=cfg.n_answers), cfg.k, scope=cfg.scope)
    rewards = consistency_rewards(answers, labels)
    adv = rlccf_advantages(rewards, norm=cfg.norm, eps=cfg.eps)
    opt = cfg.optimizer()

    def update(p, ref, o, r, a):
        (loss, met), g = jax.value_and_grad(
            lambda pp: model_loss(pp, ref, prompts, r, a, cfg=cfg, lm_cfg=lm_cfg), has_aux=True)(p)
        upd, o = opt.update(g, o, p)
        return optax.apply_updates(p, upd), o, loss, met

    params, opt_state, loss, met = jax.vmap(update)(state.params, state.ref_params, state.opt_state, ro, adv)
    aux = {"answers": answers, "labels": labels, "sc": sc, "rewards": rewards, "loss": loss, **met}
    return RLCCFState(params, state.ref_params, opt_state), aux
