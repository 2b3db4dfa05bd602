"""TW-GRPO: Reinforcing Video Reasoning with Focused Thinking (Dang, Wu et al., 2025, arXiv:2505.24718).
Official code: longmalongma/TW-GRPO @ aa529ff (``src/open_r1/trainer/grpo_trainer.py``, ``src/open_r1/grpo.py``).

Three changes to GRPO: a soft multi-choice reward, token weights that focus the loss on positions
where the G group members' next-token distributions diverge, and question–answer inversion (QAI)
to turn single-answer items into multi-answer ones.

Equations -> functions
  (a) r_acc = |S_pred|/|S_gt| if S_pred ⊆ S_gt else 0; binary: 1[S_pred = S_gt]
        -> `soft_choice_reward` (masks), `soft_reward_text` / `answer_set_from_text` (strings)
      format reward <think>…</think><answer>…</answer>   -> `format_reward_text`, `format_reward_tokens`
  (b) A_i = (r_i − mean)/(std + 1e-4); ρ ≡ 1; clip 0.2 / 0.28 -> `zoo.rl.grpo_core` (`tw_grpo_loss`)
  (c) ℓ̄_t = (1/G) Σ_i ℓ_{i,t}   (ended members: uniform −log V)
      d = clip(ℓ̄_t − ℓ_{i,t}, −11, 11); D_{i,t} = Σ_v (e^d − d − 1); D̄_t = (1/G) Σ_i D_{i,t}
      w_t = 1 + (α − 1)(D̄_t − min D̄)/(max D̄ − min D̄ + 1e-8); w_{i,t} = w_t m_{i,t}
        -> `tw_token_weights`
      J = Σ w L / Σ m  (weighted token-mean, unweighted denominator) -> `tw_grpo_loss`
  (d) QAI: negate the question, keep c + k wrong options (k ~ U{1..n−1}), answer = all but c
        -> `qai_negate_question`, `qai_invert`, `qai_augment`, `qai_invert_tokens` (toy tokens);
        `qai_invert` is defined in the task module `zoo.rl.grpo_envs.multichoice` (which builds its
        items with it) and re-exported here, so imports point one way: paper module -> task module
  one RL step (rollout, rewards, weights, update)             -> `make_tw_grpo_step`

Our choices (not the paper's): weights are detached by default (the repo differentiates through
them: ``stop_gradient=False``); the alternative divergence ``kl_to_mixture`` (KL of each active
member to the arithmetic mixture of the active members) with ``minmax_over="valid"`` is offered for
ablations; the token reward parses the answer letters after the first ENDTHINK (the whole
completion when there is none, as the text rule takes the whole output without ``<answer>``) and
gives an empty answer (reward 0) if anything but letters appears there (the repo's string rule: a stray token is
not a subset of the answer set); no math-verify step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced
from zoo.rl import grpo_core, tiny_lm
from zoo.rl.grpo_core import float_dtype
from zoo.rl.grpo_envs import multichoice
from zoo.rl.grpo_envs.multichoice import ChoiceGrammar, qai_invert  # noqa: F401  (qai_invert: public here too)

REWARD_MODES = ("soft", "binary")
DIVERGENCES = ("code", "kl_to_mixture")
MINMAX_OVER = ("all", "valid")
AUX_VERBS = {"did": "didn't", "does": "doesn't", "do": "don't", "is": "isn't", "are": "aren't",
             "was": "wasn't", "were": "weren't"}  # fmt: skip


# ------------------------------------------------------------------------------------ (a) rewards


def soft_choice_reward(pred: jax.Array, gt: jax.Array, *, mode: str = "soft") -> jax.Array:
    """Multi-choice accuracy reward on option masks.

    pred, gt: bool[N, O]. ``soft``: |pred|/|gt| if pred ⊆ gt and |pred| > 0 else 0;
    ``binary``: 1 iff pred = gt and |pred| > 0. Returns f32[N].
    """
    check_choice("mode", mode, REWARD_MODES)
    check_array("pred", pred, ndim=2, kind="biuf")
    check_array("gt", gt, shape=tuple(pred.shape), kind="biuf")
    if not is_traced(gt) and not np.asarray(gt).astype(bool).any(-1).all():
        bad = int(np.flatnonzero(~np.asarray(gt).astype(bool).any(-1))[0])
        raise ValueError(f"gt: every item needs at least one correct option; row {bad} has none")
    p, g = jnp.asarray(pred).astype(bool), jnp.asarray(gt).astype(bool)
    n_pred = p.sum(-1)
    nonempty = n_pred > 0
    if mode == "binary":
        return (jnp.all(p == g, -1) & nonempty).astype(float_dtype())
    subset = ~jnp.any(p & ~g, -1)
    return jnp.where(subset & nonempty, n_pred / jnp.maximum(g.sum(-1), 1), 0.0).astype(float_dtype())


_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


def answer_set_from_text(s: str) -> frozenset[str]:
    """The repo's parsing: text inside ``<answer>…</answer>`` (whole string if absent), spaces removed, split on ','."""
    return _answer_set("s", s)


def _answer_set(name: str, s: str) -> frozenset[str]:
    if not isinstance(s, str):
        raise ValueError(f"{name}: expected a string, got {type(s).__name__}")
    m = _ANSWER.search(s)
    body = (m.group(1) if m else s).strip()
    return frozenset(re.sub(r"\s+", "", body).split(","))


def soft_reward_text(content: str, solution: str, *, mode: str = "soft") -> float:
    """String-level reward (parity with ``grpo.py``'s ``accuracy`` / ``origin_accuracy``, minus math-verify).

    A ``solution`` with no answer letters is a ValueError, as an all-false ``gt`` in `soft_choice_reward`.
    """
    check_choice("mode", mode, REWARD_MODES)
    pred, gt = _answer_set("content", content), _answer_set("solution", solution)
    if not any(gt):
        raise ValueError(f"solution: expected at least one answer letter, got {solution!r}")
    if mode == "binary":
        return float(pred == gt)
    return len(pred) / len(gt) if pred <= gt else 0.0


_FORMAT = re.compile(r"^<think>.*?</think>\s*<answer>.*?</answer>[\s!]*$", re.S)


def format_reward_text(content: str) -> float:
    """1 iff the stripped text is a think block, optional whitespace, an answer block, then only
    whitespace or '!' — and each tag opens at most once."""
    if not isinstance(content, str):
        raise ValueError(f"content: expected a string, got {type(content).__name__}")
    s = content.strip()
    once = all(s.count(tag) <= 1 for tag in ("<think>", "<answer>"))
    return float(bool(_FORMAT.match(s)) and once)


def _check_completion(completion, mask, grammar=None):
    check_array("completion", completion, ndim=2, kind="iu")
    check_array("mask", mask, shape=tuple(completion.shape), kind="biuf")
    if grammar is not None and not isinstance(grammar, ChoiceGrammar):
        raise ValueError(f"grammar: expected a multichoice.ChoiceGrammar, got {type(grammar).__name__}")


def format_reward_tokens(completion: jax.Array, mask: jax.Array, *, grammar) -> jax.Array:
    """Finite-state check of ``THINK F* ENDTHINK LETTER* EOS`` over the masked tokens: f32[N] ∈ {0, 1}.

    completion: i32[N, L]; mask: bool[N, L] (1 up to and including EOS); ``grammar``: a
    ``zoo.rl.grpo_envs.multichoice.ChoiceGrammar``.
    """
    _check_completion(completion, mask, grammar)
    tok = jnp.asarray(completion)
    m = jnp.asarray(mask).astype(bool)
    filler = jnp.isin(tok, jnp.asarray(grammar.fillers))
    letter = jnp.isin(tok, jnp.asarray(grammar.letters))
    # states: 0 start, 1 thinking, 2 answering, 3 done (EOS seen), 4 error
    def trans(s, xs):
        t, f, lt, mm = xs
        nxt = jnp.select(
            [s == 0, s == 1, s == 2],
            [jnp.where(t == grammar.think, 1, 4),
             jnp.where(f, 1, jnp.where(t == grammar.endthink, 2, 4)),
             jnp.where(lt, 2, jnp.where(t == grammar.eos, 3, 4))],
            4,
        )  # fmt: skip
        return jnp.where(mm, nxt, s), None

    s0 = jnp.zeros(tok.shape[0], jnp.int32)
    s, _ = jax.lax.scan(trans, s0, (tok.T, filler.T, letter.T, m.T))
    return (s == 3).astype(float_dtype())


def parse_answer_tokens(completion: jax.Array, mask: jax.Array, *, grammar, n_options: int):
    """Answer letters after the first ENDTHINK (up to EOS) as an option mask.

    Without an ENDTHINK the whole (masked) completion is the answer region, as the spec's text rule
    takes the whole output when ``<answer>`` is missing. Returns ``(pred bool[N, O], well_formed
    bool[N])``; pred is empty if a non-letter token appears in the answer region (so a completion
    with think tokens but no ENDTHINK gets an empty answer). Letters beyond ``n_options`` count as
    wrong options.
    """
    _check_completion(completion, mask, grammar)
    if isinstance(n_options, bool) or not isinstance(n_options, (int, np.integer)) or n_options < 1:
        raise ValueError(f"n_options: expected a positive int, got {n_options!r}")
    if n_options > len(grammar.letters):
        raise ValueError(f"n_options: expected <= {len(grammar.letters)} (the grammar's letters), got {n_options}")
    tok = jnp.asarray(completion)
    m = jnp.asarray(mask).astype(bool)
    end = (tok == grammar.endthink) & m
    after = (jnp.cumsum(end, axis=1) - end) > 0
    after = after | ~jnp.any(end, axis=1, keepdims=True)  # no ENDTHINK: the whole output is the answer
    region = after & m & (tok != grammar.eos)
    letters = jnp.asarray(grammar.letters)
    hit = region[..., None] & (tok[..., None] == letters)  # [N, L, n_letters]
    junk = jnp.any(region & ~jnp.any(hit, -1), -1) | jnp.any(hit[..., n_options:], (-1, -2))
    pred = jnp.any(hit[..., :n_options], axis=1) & ~junk[:, None]
    return pred, format_reward_tokens(completion, mask, grammar=grammar) > 0


# ------------------------------------------------------------------------------------ (c) token weights


def tw_token_weights(
    logp_full: jax.Array,
    mask: jax.Array,
    alpha,
    *,
    clamp: float = 11.0,
    minmax_over: str = "all",
    divergence: str = "code",
    eps: float = 1e-8,
    stop_gradient: bool = True,
) -> jax.Array:
    """Token weights ``w_{i,t} = (1 + (α − 1) n_t) m_{i,t} ∈ [1, α]`` on valid tokens, 0 on padding.

    logp_full: f32[B, G, T, V] next-token log-softmax of every completion position; mask: bool[B, G, T].
    ``divergence="code"``: masked member rows become −log V, ℓ̄ = mean_i ℓ (log space),
    ``D_{i,t} = Σ_v (e^d − d − 1)``, ``d = clip(ℓ̄ − ℓ_i, ±clamp)``, ``D̄_t = mean_i D_{i,t}``.
    ``"kl_to_mixture"``: ``D_{i,t} = KL(p_i ‖ p̄_t)``, p̄ the mean of the *active* members'
    distributions, D̄ the mean over active members. ``n_t`` min–max normalises D̄ over every
    padded position (``"all"``, the code) or over positions with an active member (``"valid"``).
    ``alpha`` may be traced (vmap over α). Returns f32[B, G, T].
    """
    check_array("logp_full", logp_full, ndim=4, finite=False, kind="f")
    b, g, t, v = logp_full.shape
    check_array("mask", mask, shape=(b, g, t), kind="biuf")
    if g < 2:
        raise ValueError(f"logp_full: expected a group of G >= 2 members (axis 1), got G={g}")
    if t < 1:
        raise ValueError(f"logp_full: expected at least one completion position (T >= 1, axis 2), got T={t}")
    if v < 2:
        raise ValueError(f"logp_full: expected a vocabulary of V >= 2 (axis 3), got V={v}")
    if not is_traced(logp_full) and not is_traced(mask):
        mk = np.asarray(mask)
        if mk.dtype != bool and not np.isin(mk, (0, 1)).all():
            raise ValueError("mask: expected booleans (or 0/1)")
        bad = ~np.isfinite(np.asarray(logp_full)) & mk.astype(bool)[..., None]
        if bad.any():  # one −inf/NaN at a valid position would turn the whole group's weights NaN
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"logp_full: contains {int(bad.sum())} non-finite value(s) (NaN or inf) at valid "
                             f"(mask = 1) positions, first at index {idx}")
    check_choice("divergence", divergence, DIVERGENCES)
    check_choice("minmax_over", minmax_over, MINMAX_OVER)
    check_range("clamp", clamp, low=0.0, low_inclusive=False)
    check_range("eps", eps, low=0.0, low_inclusive=False)
    if isinstance(alpha, (str, bytes, bool)) or alpha is None or np.ndim(alpha) != 0:
        raise ValueError(f"alpha: expected a scalar >= 1, got {alpha!r}")
    if not is_traced(alpha):
        check_range("alpha", float(alpha), low=1.0)
    lp = jnp.asarray(logp_full)
    lp = lp.astype(float_dtype(lp))
    if stop_gradient:
        lp = jax.lax.stop_gradient(lp)
    m = jnp.asarray(mask).astype(bool)
    # masked member rows become uniform (−log V): the code's rule, and padding garbage never enters
    lp = jnp.where(m[..., None], lp, -math.log(v))
    if divergence == "code":
        # ℓ̄ − ℓ_i written as mean_j(ℓ_j − ℓ_0) − (ℓ_i − ℓ_0): exactly 0 for identical members, and
        # e^d − d − 1 as expm1(d) − d (no cancellation), so identical members give D = 0, w = 1 exactly
        rel = lp - lp[:, :1]
        d = jnp.clip(jnp.mean(rel, axis=1, keepdims=True) - rel, -clamp, clamp)
        div = jnp.sum(jnp.expm1(d) - d, axis=-1)  # [B, G, T]
        dbar = jnp.mean(div, axis=1)  # [B, T]
    else:
        mf = m.astype(lp.dtype)
        count = jnp.maximum(mf.sum(1), 1.0)  # [B, T]
        # log-probs relative to the active members' max, so identical members give D = 0 exactly
        mx = jnp.max(jnp.where(m[..., None], lp, -jnp.inf), axis=1, keepdims=True)
        rel = jnp.where(m[..., None], lp - jnp.where(jnp.isfinite(mx), mx, 0.0), 0.0)
        mix = jnp.sum(jnp.exp(rel) * mf[..., None], axis=1, keepdims=True) / count[:, None, :, None]
        log_mix = jnp.log(jnp.maximum(mix, 1e-30))  # log p̄ − max, [B, 1, T, V]
        div = jnp.sum(jnp.exp(lp) * (rel - log_mix), axis=-1) * mf
        dbar = div.sum(1) / count
    if minmax_over == "all":
        lo, hi = dbar.min(-1, keepdims=True), dbar.max(-1, keepdims=True)
    else:
        any_active = m.any(1)
        lo = jnp.min(jnp.where(any_active, dbar, jnp.inf), -1, keepdims=True)
        hi = jnp.max(jnp.where(any_active, dbar, -jnp.inf), -1, keepdims=True)
        lo, hi = jnp.where(jnp.isfinite(lo), lo, 0.0), jnp.where(jnp.isfinite(hi), hi, 0.0)
    norm = (dbar - lo) / (hi - lo + eps)
    w = 1.0 + (jnp.asarray(alpha, lp.dtype) - 1.0) * norm
    return w[:, None, :] * m.astype(lp.dtype)


def tw_grpo_loss(
    logp: jax.Array,
    logp_old: jax.Array,
    adv: jax.Array,
    mask: jax.Array,
    weights: jax.Array,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    beta=0.0,
    logp_ref: jax.Array | None = None,
):
    """``J = Σ w L / Σ m`` with L the clipped surrogate (+ β·k3): `grpo_core.grpo_objective`, ``agg="token_mean"``.

    logp, logp_old, mask, weights: [B·G, T]; adv: f32[B·G] (or [B·G, T]). Returns ``(loss, metrics)``.
    """
    cfg = grpo_core.LossConfig(clip_low=clip_low, clip_high=clip_high, kl_coef=beta, kl_estimator="k3",
                               agg="token_mean")  # fmt: skip
    return grpo_core.grpo_objective(logp, logp_old, logp_ref, adv, mask, cfg=cfg, weights=weights)


# ------------------------------------------------------------------------------------ (d) QAI


def qai_negate_question(q: str) -> str | None:
    """Lower-case ``q`` and negate its auxiliary verb in second position ("What did …" -> "what didn't …").

    Words are split on any whitespace (as the official converter's ``str.split()``), so runs of
    spaces, tabs and leading/trailing whitespace collapse to single spaces in the result. Returns
    None when the second word is not one of did/does/do/is/are/was/were (strict mode skips the item).
    """
    if not isinstance(q, str):
        raise ValueError(f"q: expected a string, got {type(q).__name__}")
    words = q.lower().split()
    if len(words) < 2 or words[1] not in AUX_VERBS:
        return None
    words[1] = AUX_VERBS[words[1]]
    return " ".join(words)


def qai_augment(items: Sequence[dict], rng: np.random.Generator, p: float = 0.5, strict: bool = True) -> list[dict]:
    """Host-side QAI over ``items`` (dicts with ``question``, ``options`` (list), ``answer`` (int index)).

    With probability ``p`` per item (one ``rng.random()`` draw per item, then k, keep and order),
    the item is inverted: ``{"question": negated, "options": new, "answer": [indices], "answer_letters":
    "A,C", "qai": True}``. Items whose question cannot be negated stay as they are when ``strict``
    (the repo inverts the answer anyway, mislabeling them). Other items are returned unchanged.
    """
    check_range("p", p, low=0.0, high=1.0)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator (np.random.default_rng(seed)), got "
                         f"{type(rng).__name__}")
    if isinstance(items, (str, dict)):
        raise ValueError(f"items: expected a sequence of dicts, got a {type(items).__name__}")
    out = []
    for k, it in enumerate(items):
        if not isinstance(it, dict):
            raise ValueError(f"items[{k}]: expected a dict, got {type(it).__name__}")
        for key in ("question", "options", "answer"):
            if key not in it:
                raise ValueError(f"items[{k}]: missing key {key!r}")
        if rng.random() >= p:
            out.append(it)
            continue
        q = qai_negate_question(it["question"])
        if q is None and strict:
            out.append(it)
            continue
        n = len(it["options"])
        wrong = [j for j in range(n) if j != it["answer"]]
        kk = int(rng.integers(1, n))
        keep = [int(j) for j in rng.choice(wrong, size=kk, replace=False)]
        order = [int(j) for j in rng.permutation(kk + 1)]
        new, letters = qai_invert(it["options"], it["answer"], keep, order)
        out.append({"question": q if q is not None else it["question"], "options": new,
                    "answer": [ord(x) - ord("A") for x in letters], "answer_letters": ",".join(letters),
                    "qai": True})  # fmt: skip
    return out


def qai_invert_tokens(qtype: jax.Array, digits: jax.Array, key: jax.Array):
    """Toy-token QAI for one item (vmap for a batch): MAX -> NOT_MAX, MIN -> NOT_MIN.

    qtype: i32[] (0 = MAX, 1 = MIN); digits: i32[O] distinct. Returns ``(qtype + 2, digits' i32[O]
    (−1 = absent), gt bool[O])``: the correct option and k ~ U{1..O−1} random wrong ones shuffled into
    the first k+1 positions; gt = present and not the originally correct option.
    """
    check_array("digits", digits, ndim=1, kind="iu")
    check_array("qtype", qtype, ndim=0, kind="iu")
    if digits.shape[0] < 2:
        raise ValueError(f"digits: expected at least 2 options, got shape {tuple(digits.shape)}")
    if not is_traced(qtype) and int(qtype) not in (0, 1):
        raise ValueError(f"qtype: expected 0 (MAX) or 1 (MIN), got {int(qtype)}")
    if not is_traced(digits) and len(set(np.asarray(digits).tolist())) != digits.shape[0]:
        raise ValueError(f"digits: expected distinct values, got {np.asarray(digits).tolist()}")
    digits = jnp.asarray(digits, jnp.int32)
    o = digits.shape[-1]
    c = jnp.where(qtype == 0, jnp.argmax(digits), jnp.argmin(digits))
    k_perm, k_k, k_ord = jax.random.split(key, 3)
    u = jax.random.uniform(k_perm, (o,)).at[c].set(-1.0)
    chosen = jnp.argsort(u)  # c first, then the wrong options in random order
    k = jax.random.randint(k_k, (), 1, o)
    slot = jnp.arange(o)
    order = jnp.argsort(jnp.where(slot <= k, jax.random.uniform(k_ord, (o,)), 2.0 + slot))
    present = slot <= k
    new = jnp.where(present, digits[chosen[order]], -1)
    gt = present & (order != 0)
    return jnp.asarray(qtype, jnp.int32) + 2, new, gt


# ------------------------------------------------------------------------------------ RL step


def position_categories(completion: jax.Array, mask: jax.Array, *, grammar, prefix_len: int) -> dict[str, jax.Array]:
    """Masks of the token kinds whose mean TW weight the experiment reports: ``prefix`` (THINK and the
    generic fixed filler prefix F1..F_prefix_len at the start), ``filler`` (other think tokens),
    ``answer`` (letters after ENDTHINK). Each bool[N, L]."""
    _check_completion(completion, mask, grammar)
    if isinstance(prefix_len, bool) or not isinstance(prefix_len, (int, np.integer)):
        raise ValueError(f"prefix_len: expected an int, got {prefix_len!r}")
    check_range("prefix_len", prefix_len, low=0, high=len(grammar.fillers))
    tok = jnp.asarray(completion)
    m = jnp.asarray(mask).astype(bool)
    pos = jnp.arange(tok.shape[1])[None]
    generic = jnp.asarray((grammar.think, *grammar.fillers[:prefix_len]))
    prefix = m & (pos <= prefix_len) & (tok == generic[jnp.minimum(pos, prefix_len)])
    end = (tok == grammar.endthink) & m
    after = (jnp.cumsum(end, axis=1) - end) > 0
    letters = jnp.isin(tok, jnp.asarray(grammar.letters))
    filler = m & ~after & ~prefix & jnp.isin(tok, jnp.asarray((grammar.think, *grammar.fillers)))
    return {"prefix": prefix, "filler": filler, "answer": m & after & letters}


def make_tw_grpo_step(task_cfg, lm_cfg, opt, *, n_prompts: int, group_size: int = 8, clip_low: float = 0.2,
                      clip_high: float = 0.28, eps_adv: float = 1e-4, temperature: float = 1.0,
                      minmax_over: str = "all", divergence: str = "code", format_weight: float = 1.0):  # fmt: skip
    """One RL step ``step(params, opt_state, key, prompts i32[P, Lp], gt bool[P, O], hp) -> (params, opt_state, metrics)``.

    Draws ``n_prompts`` items, samples ``group_size`` completions each (temperature 1), rewards
    r = accuracy (soft or binary) + ``format_weight``·format, A = (r − mean)/(std + 1e-4) per group,
    token weights from the full log-softmax (detached), and one optax update with ρ ≡ 1 (ℓ_old =
    stop_gradient(ℓ), as the released code). ``hp`` (traced, vmappable): ``alpha`` (≥ 1), ``soft``
    (1: soft reward, 0: binary), ``token_agg`` (1: weighted token-mean TW loss, 0: the repo's GRPO
    seq-mean-token-mean loss without weights). So the spec's four arms are one vmapped program.
    """
    if not isinstance(task_cfg, multichoice.MultiChoiceConfig):
        raise ValueError(f"task_cfg: expected a multichoice.MultiChoiceConfig, got {type(task_cfg).__name__}")
    if not isinstance(lm_cfg, tiny_lm.TinyLMConfig):
        raise ValueError(f"lm_cfg: expected a tiny_lm.TinyLMConfig, got {type(lm_cfg).__name__}")
    if lm_cfg.vocab < multichoice.vocab_size(task_cfg):
        raise ValueError(f"lm_cfg: vocab {lm_cfg.vocab} is smaller than the task's vocabulary "
                         f"multichoice.vocab_size(task_cfg) = {multichoice.vocab_size(task_cfg)}")
    if not hasattr(opt, "update") or not hasattr(opt, "init"):
        raise ValueError(f"opt: expected an optax GradientTransformation, got {type(opt).__name__}")
    check_range("n_prompts", n_prompts, low=1)
    check_range("group_size", group_size, low=2)
    check_choice("minmax_over", minmax_over, MINMAX_OVER)
    check_choice("divergence", divergence, DIVERGENCES)
    g = multichoice.grammar(task_cfg)
    n_opt, t_len = task_cfg.n_options, task_cfg.max_completion
    seq_cfg = grpo_core.LossConfig(clip_low=clip_low, clip_high=clip_high, agg="seq_mean_token_mean")

    def step(params, opt_state, key, prompts, gt, hp):
        k_idx, k_s = jax.random.split(key)
        idx = jax.random.randint(k_idx, (n_prompts,), 0, prompts.shape[0])
        pr = jnp.repeat(prompts[idx], group_size, axis=0)  # group members contiguous
        gtr = jnp.repeat(gt[idx], group_size, axis=0)
        roll = tiny_lm.sample(params, k_s, pr, cfg=lm_cfg, max_new=t_len, temperature=temperature)
        pred, ok = parse_answer_tokens(roll.tokens, roll.mask, grammar=g, n_options=n_opt)
        r_acc = jnp.where(hp["soft"] > 0.5, soft_choice_reward(pred, gtr, mode="soft"),
                          soft_choice_reward(pred, gtr, mode="binary"))  # fmt: skip
        r = r_acc + format_weight * ok.astype(r_acc.dtype)
        adv = grpo_core.group_advantages(r.reshape(n_prompts, group_size), norm="std", eps=eps_adv).reshape(-1)

        def loss_fn(p):
            logp, logp_full = tiny_lm.completion_logprobs(p, pr, roll.tokens, cfg=lm_cfg, full=True,
                                                          temperature=temperature)  # fmt: skip
            v = logp_full.shape[-1]
            w = tw_token_weights(logp_full.reshape(n_prompts, group_size, t_len, v),
                                 roll.mask.reshape(n_prompts, group_size, t_len), hp["alpha"],
                                 minmax_over=minmax_over, divergence=divergence).reshape(-1, t_len)  # fmt: skip
            old = jax.lax.stop_gradient(logp)
            l_tok, _ = tw_grpo_loss(logp, old, adv, roll.mask, w, clip_low=clip_low, clip_high=clip_high)
            l_seq, _ = grpo_core.grpo_objective(logp, old, None, adv, roll.mask, cfg=seq_cfg)
            return jnp.where(hp["token_agg"] > 0.5, l_tok, l_seq), w

        (loss, w), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = jax.tree.map(lambda a, u: a + u, params, updates)
        cats = position_categories(roll.tokens, roll.mask, grammar=g, prefix_len=task_cfg.prefix_len)
        mean_w = {f"weight_{k}": jnp.sum(w * c) / jnp.maximum(jnp.sum(c), 1) for k, c in cats.items()}
        metrics = {"loss": loss, "reward": jnp.mean(r), "format": jnp.mean(ok),
                   "strict": jnp.mean(jnp.all(pred == gtr, -1)), "length": jnp.mean(jnp.sum(roll.mask, -1)),
                   "weight_pos0": jnp.mean(w[:, 0]), **mean_w}  # fmt: skip
        return params, opt_state, metrics

    return step
