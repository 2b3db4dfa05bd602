"""GiGPO: Group-in-Group Policy Optimization for LLM Agent Training (Feng, Xue, Liu, An; NeurIPS 2025,
arXiv:2505.10978). Official code: langfengQ/verl-agent (``gigpo/core_gigpo.py``).

N rollouts of one task start from the same state (an *episode group*). GiGPO adds to GRPO's
episode-level advantage a step-level one computed inside *anchor-state groups*: all steps, across
the N trajectories of a task, whose raw observation is identical.

Layout: B task groups × N trajectories × T steps (padded; ``step_mask`` is a prefix) × L action tokens.
Anchor keys ``anchor: i32[B, N, T, F]`` are compared for exact equality on all F features.

Equations -> functions
  (E1) R_i = Σ_t r_t^i (minus 0.1 per invalid action)        -> `episode_returns`
  (E2) A^E_i = (R_i − mean R) / F                             -> `episode_advantages` (core `group_advantages`)
  (E3) anchor groups G(s̃) = {(i,t) : key(s_t^i) = s̃}          -> `anchor_same`
  (E4) R_t^i = Σ_{k≥t} γ^{k−t} r_k^i                           -> `discounted_returns`
  (E5) A^S_{i,t} = (R_t^i − mean_G R) / F(G), 0 if |G| = 1     -> `step_advantages`
  (E6) A = A^E + ω A^S                                         -> `gigpo_advantages`
  (E7) token-level clipped surrogate on every step-sample      -> `to_token_advantages`, `gigpo_loss`
  one iteration (rollout, advantages, update)                  -> `rollout`, `make_gigpo_step`

F is the unbiased standard deviation + ε (``norm="std"``, verl-agent ``mean_std_norm``) or 1
(``norm="none"``, ``mean_norm``, the paper's "w/o std"). Episode statistics: ``"trajectory"`` (the
paper: one sample per trajectory, default) or ``"step_rows"`` (current verl-agent,
``compute_mean_std_cross_steps=True``: every valid step row contributes its own row score, so long
trajectories weigh more and the invalid penalty of a row enters only that row).

Our choices (not the paper's): N < 2 is refused (verl-agent returns A^E = R); anchor keys are small
integer vectors compared exactly (no hashing); the policy in the experiment is a tiny GRU LM whose
logits are masked to the action tokens; the history in its prompt is one previous-action token.
The similarity-based anchor variant is a host helper (`similarity_clusters`), not jitted.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced
from zoo.rl import grpo_core, tiny_lm
from zoo.rl.grpo_core import float_dtype
from zoo.rl.grpo_envs import gridworld as gw

NORMS = ("none", "std")
EPISODE_STATS = ("trajectory", "step_rows")


# ------------------------------------------------------------------------------------ validation


def _check_rewards_mask(rewards, step_mask, name="rewards"):
    check_array(name, rewards, ndim=3)
    b, n, t = rewards.shape
    if n < 2:
        raise ValueError(f"{name}: expected a group of N >= 2 trajectories per task (axis 1), got N={n}")
    check_array("step_mask", step_mask, shape=(b, n, t))
    if not is_traced(step_mask):
        m = np.asarray(step_mask)
        if m.dtype != bool and not np.isin(m, (0, 1)).all():
            raise ValueError("step_mask: expected booleans (or 0/1)")
        m = m.astype(bool)
        holes = m[..., 1:] & ~m[..., :-1]
        if holes.any():
            idx = tuple(int(i) for i in np.argwhere(holes)[0])
            raise ValueError(
                f"step_mask: must be a prefix (valid steps first) along the step axis; a valid step follows a "
                f"padded one at (b, i, t)={idx[:2] + (idx[2] + 1,)}"
            )


def _check_scalar(name, value, **bounds):
    if isinstance(value, (str, bytes, bool)) or value is None:
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if np.ndim(value) != 0:
        raise ValueError(f"{name}: expected a scalar, got shape {np.shape(value)}")
    if not is_traced(value):
        v = float(value)
        if not np.isfinite(v):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
        check_range(name, v, **bounds)


def _check_invalid(invalid, shape):
    if invalid is not None:
        check_array("invalid", invalid, shape=tuple(shape), kind="biuf")
        v = None if is_traced(invalid) else np.asarray(invalid)
        if v is not None and v.dtype != bool and not np.isin(v, (0, 1)).all():
            raise ValueError("invalid: expected booleans (or 0/1)")


# ------------------------------------------------------------------------------------ returns


def discounted_returns(rewards: jax.Array, step_mask: jax.Array, gamma) -> jax.Array:
    """(E4) ``R_t = m_t (r_t + γ R_{t+1})``, ``R_{T+1} = 0``, by a reverse ``lax.scan``.

    rewards: f32[B, N, T]; step_mask: bool[B, N, T] (prefix); gamma: scalar in (0, 1] (may be traced).
    Returns f32[B, N, T], 0 on padding.
    """
    _check_rewards_mask(rewards, step_mask)
    _check_scalar("gamma", gamma, low=0.0, high=1.0, low_inclusive=False)
    dt = float_dtype(rewards, gamma)
    r = jnp.asarray(rewards).astype(dt)
    m = jnp.asarray(step_mask).astype(dt)
    gamma = jnp.asarray(gamma, dt)

    def back(carry, xs):
        r_t, m_t = xs
        ret = m_t * (r_t + gamma * carry)
        return ret, ret

    _, out = jax.lax.scan(back, jnp.zeros(r.shape[:2], dt),
                          (jnp.moveaxis(r, 2, 0), jnp.moveaxis(m, 2, 0)), reverse=True)  # fmt: skip
    return jnp.moveaxis(out, 0, 2)


def _penalised(rewards, step_mask, invalid, invalid_penalty):
    dt = float_dtype(rewards, invalid_penalty if invalid is not None else None)
    r = jnp.asarray(rewards).astype(dt)
    m = jnp.asarray(step_mask).astype(dt)
    pen = 0.0 if invalid is None else jnp.asarray(invalid_penalty, dt) * jnp.asarray(invalid).astype(dt)
    return r * m, pen * m


def episode_returns(rewards, step_mask, *, invalid=None, invalid_penalty=0.1) -> jax.Array:
    """(E1) ``R_i = Σ_t m (r_t − penalty·invalid_t)``: f32[B, N].

    rewards: f32[B, N, T] (N >= 2, finite); step_mask: bool[B, N, T] (prefix); invalid: optional
    bool[B, N, T]; invalid_penalty >= 0 (may be traced).
    """
    _check_rewards_mask(rewards, step_mask)
    _check_scalar("invalid_penalty", invalid_penalty, low=0.0)
    _check_invalid(invalid, rewards.shape)
    r, pen = _penalised(rewards, step_mask, invalid, invalid_penalty)
    return jnp.sum(r - pen, axis=-1)


def episode_advantages(
    rewards: jax.Array,
    step_mask: jax.Array,
    *,
    norm: str = "none",
    eps: float = 1e-6,
    episode_stats: str = "trajectory",
    invalid: jax.Array | None = None,
    invalid_penalty=0.1,
) -> jax.Array:
    """(E2) Episode (macro) advantage, one value per step row: f32[B, N, T], 0 on padding.

    ``trajectory`` (paper): ``A^E_i = group_advantages(R)[i]`` with R from `episode_returns`,
    repeated on the trajectory's valid steps. ``step_rows`` (verl-agent): row score
    ``s_{i,t} = Σ_t' r_{i,t'} − penalty·invalid_{i,t}``; mean / unbiased std over all valid rows
    of the task group; ``A^E_{i,t} = (s_{i,t} − μ) / F``.
    """
    _check_rewards_mask(rewards, step_mask)
    check_choice("norm", norm, NORMS)
    check_choice("episode_stats", episode_stats, EPISODE_STATS)
    _check_scalar("eps", eps, low=0.0, low_inclusive=False)
    _check_scalar("invalid_penalty", invalid_penalty, low=0.0)
    _check_invalid(invalid, rewards.shape)
    m = jnp.asarray(step_mask).astype(bool)
    b, n, t = rewards.shape
    if episode_stats == "trajectory":
        ret = episode_returns(rewards, step_mask, invalid=invalid, invalid_penalty=invalid_penalty)
        adv = grpo_core.group_advantages(ret, norm=norm, eps=eps)
        return jnp.where(m, adv[..., None], 0.0)
    r, pen = _penalised(rewards, step_mask, invalid, invalid_penalty)
    rows = jnp.sum(r, axis=-1, keepdims=True) - pen  # [B, N, T]
    adv = grpo_core.group_advantages(rows.reshape(b, n * t), norm=norm, eps=eps, valid=m.reshape(b, n * t))
    return jnp.where(m, adv.reshape(b, n, t), 0.0)


# ------------------------------------------------------------------------------------ anchor groups


def _check_anchor(anchor, step_mask):
    check_array("anchor", anchor, ndim=4, kind="iub")
    if tuple(anchor.shape[:3]) != tuple(step_mask.shape):
        raise ValueError(
            f"anchor: expected leading dims (B, N, T) = {tuple(step_mask.shape)} like rewards/step_mask, "
            f"got shape {tuple(anchor.shape)}"
        )


def anchor_same(anchor: jax.Array, step_mask: jax.Array) -> jax.Array:
    """(E3) ``same[b, k, l]``: rows k, l (flattened (i, t)) share the anchor on all F features and are both valid.

    anchor: i32[B, N, T, F]; step_mask: bool[B, N, T]. Returns bool[B, N·T, N·T].
    Cost (N·T)²·F per group — 400² × F at N = 8, T = 50.
    """
    _check_anchor(anchor, step_mask)
    b, n, t, f = anchor.shape
    a = jnp.asarray(anchor).reshape(b, n * t, f)
    m = jnp.asarray(step_mask).astype(bool).reshape(b, n * t)
    eq = jnp.all(a[:, :, None, :] == a[:, None, :, :], axis=-1)
    return eq & m[:, :, None] & m[:, None, :]


def step_advantages(
    returns: jax.Array, anchor: jax.Array, step_mask: jax.Array, *, norm: str = "none", eps: float = 1e-6
) -> tuple[jax.Array, jax.Array]:
    """(E5) Step (micro) advantage inside anchor-state groups.

    With ``same`` from `anchor_same`, per row k: ``count_k = Σ_l same_kl``,
    ``mean_k = Σ_l same_kl R_l / count_k``, ``var_k = Σ_l same_kl (R_l − mean_k)² / (count_k − 1)``,
    ``A^S_k = (R_k − mean_k) / F_k`` with ``F = sqrt(var) + ε`` (std) or 1 (none); 0 where
    ``count_k = 1`` or the row is padding.

    returns: f32[B, N, T] (from `discounted_returns`); anchor: i32[B, N, T, F].
    Returns ``(a_s f32[B, N, T], group_size i32[B, N, T])`` (group size 0 on padding).
    """
    _check_rewards_mask(returns, step_mask, name="returns")
    check_choice("norm", norm, NORMS)
    _check_scalar("eps", eps, low=0.0, low_inclusive=False)
    b, n, t = returns.shape
    ret = jnp.asarray(returns)
    ret = ret.astype(float_dtype(ret)).reshape(b, n * t)
    same = anchor_same(anchor, step_mask).astype(ret.dtype)
    count = jnp.sum(same, axis=-1)
    mean = jnp.einsum("bkl,bl->bk", same, ret) / jnp.maximum(count, 1.0)
    dev = ret[:, None, :] - mean[:, :, None]  # R_l − mean_k
    var = jnp.sum(same * dev * dev, axis=-1) / jnp.maximum(count - 1.0, 1.0)
    scale = jnp.sqrt(var) + eps if norm == "std" else 1.0
    a_s = jnp.where(count >= 2, (ret - mean) / scale, 0.0)
    return a_s.reshape(b, n, t), count.astype(jnp.int32).reshape(b, n, t)


def gigpo_advantages(
    rewards: jax.Array,
    anchor: jax.Array,
    step_mask: jax.Array,
    *,
    gamma=0.95,
    omega=1.0,
    norm: str = "none",
    eps: float = 1e-6,
    episode_stats: str = "trajectory",
    invalid: jax.Array | None = None,
    invalid_penalty=0.1,
) -> jax.Array:
    """(E6) ``A = A^E + ω A^S`` per step row: f32[B, N, T], 0 on padding (all under stop-gradient).

    Step returns use the penalised rewards ``r − penalty·invalid``. ``gamma``, ``omega``,
    ``invalid_penalty`` may be traced (vmap over ω). ω = 0 gives `episode_advantages` exactly (GRPO).
    """
    _check_rewards_mask(rewards, step_mask)
    _check_anchor(anchor, step_mask)
    _check_scalar("omega", omega, low=0.0)
    _check_scalar("gamma", gamma, low=0.0, high=1.0, low_inclusive=False)
    a_e = episode_advantages(rewards, step_mask, norm=norm, eps=eps, episode_stats=episode_stats,
                             invalid=invalid, invalid_penalty=invalid_penalty)  # fmt: skip
    r, pen = _penalised(rewards, step_mask, invalid, invalid_penalty)
    ret = discounted_returns(r - pen, step_mask, gamma)
    a_s, _ = step_advantages(ret, anchor, step_mask, norm=norm, eps=eps)
    adv = a_e + jnp.asarray(omega, a_s.dtype) * a_s
    return jax.lax.stop_gradient(jnp.where(jnp.asarray(step_mask).astype(bool), adv, 0.0))


def anchor_stats(anchor: jax.Array, step_mask: jax.Array) -> dict[str, jax.Array]:
    """Diagnostics: fraction of valid steps whose anchor group is a singleton, and the mean group size."""
    same = anchor_same(anchor, step_mask)
    count = jnp.sum(same, axis=-1)
    m = jnp.asarray(step_mask).astype(bool).reshape(count.shape)
    nv = jnp.maximum(jnp.sum(m), 1)
    return {
        "singleton_fraction": jnp.sum(m & (count == 1)) / nv,
        "mean_group_size": jnp.sum(jnp.where(m, count, 0)) / nv,
    }


def to_token_advantages(adv: jax.Array, action_mask: jax.Array) -> jax.Array:
    """(E7) Broadcast step advantages to the action tokens and flatten step-samples.

    adv: f32[B, N, T]; action_mask: bool[B, N, T, L]. Returns f32[B·N·T, L] (0 where masked).
    """
    check_array("adv", adv, ndim=3)
    check_array("action_mask", action_mask, ndim=4)
    if tuple(action_mask.shape[:3]) != tuple(adv.shape):
        raise ValueError(f"action_mask: expected leading dims {tuple(adv.shape)}, got {tuple(action_mask.shape)}")
    b, n, t, length = action_mask.shape
    a = jnp.asarray(adv)
    out = jnp.where(jnp.asarray(action_mask).astype(bool), a.astype(float_dtype(a))[..., None], 0.0)
    return out.reshape(b * n * t, length)


# ------------------------------------------------------------------------------------ host helpers


def text_anchor_keys(obs: Sequence[Sequence[str]]) -> np.ndarray:
    """Intern observation strings: ``obs[i][t]`` -> i32[N, T_max, 1] ids (-1 pads ragged trajectories).

    Equal strings get equal ids, so exact-match anchor groups follow from `anchor_same`.
    """
    if isinstance(obs, str) or any(isinstance(o, str) for o in obs):
        raise ValueError("obs: expected one sequence of strings per trajectory (obs[i][t]), got a string")
    table: dict[str, int] = {}
    t_max = max((len(o) for o in obs), default=0)
    out = np.full((len(obs), t_max, 1), -1, np.int32)
    for i, traj in enumerate(obs):
        for t, s in enumerate(traj):
            if not isinstance(s, str):
                raise ValueError(f"obs[{i}][{t}]: expected a string, got {type(s).__name__}")
            out[i, t, 0] = table.setdefault(s, len(table))
    return out


def similarity_clusters(obs: Sequence[str], thresh: float = 0.95) -> np.ndarray:
    """Similarity-based anchors (verl-agent, Aug 2025): greedy clustering by ``difflib`` ratio.

    Each observation joins the first existing cluster whose representative (its first member) has
    ``SequenceMatcher.ratio() >= thresh``, else opens a new one. Order-dependent, host-only.
    Returns i32[n] cluster ids (usable as a 1-feature anchor).
    """
    check_range("thresh", thresh, low=0.0, high=1.0)
    if isinstance(obs, str):
        raise ValueError("obs: expected a sequence of strings, got one string")
    for k, o in enumerate(obs):
        if not isinstance(o, str):
            raise ValueError(f"obs[{k}]: expected a string, got {type(o).__name__}")
    reps: list[str] = []
    out = np.empty(len(obs), np.int32)
    for k, s in enumerate(obs):
        for c, r in enumerate(reps):
            if difflib.SequenceMatcher(None, r, s).ratio() >= thresh:
                out[k] = c
                break
        else:
            out[k] = len(reps)
            reps.append(s)
    return out


# ------------------------------------------------------------------------------------ RL loop


class StepBatch(NamedTuple):
    """Step-samples of one iteration, laid out ``[B, N, T, ...]``.

    prompt: i32[B, N, T, P] (observation tokens + previous-action token); action: i32[B, N, T]
    (LM token); logp: f32[B, N, T] behaviour log-prob; anchor: i32[B, N, T, F]; reward: f32[B, N, T];
    invalid, mask: bool[B, N, T] (mask = the step happened, a prefix).
    """

    prompt: jax.Array
    action: jax.Array
    logp: jax.Array
    anchor: jax.Array
    reward: jax.Array
    invalid: jax.Array
    mask: jax.Array


def _check_loop_cfgs(env_cfg, lm_cfg):
    if not isinstance(env_cfg, gw.GridConfig):
        raise ValueError(f"env_cfg: expected a gridworld.GridConfig, got {type(env_cfg).__name__}")
    if not isinstance(lm_cfg, tiny_lm.TinyLMConfig):
        raise ValueError(f"lm_cfg: expected a tiny_lm.TinyLMConfig, got {type(lm_cfg).__name__}")
    if lm_cfg.vocab < gw.vocab_size(env_cfg):
        raise ValueError(f"lm_cfg: vocab {lm_cfg.vocab} is smaller than the task's vocabulary "
                         f"gridworld.vocab_size(env_cfg) = {gw.vocab_size(env_cfg)}")


def _check_tasks(tasks):
    if not isinstance(tasks, gw.EnvState):
        raise ValueError(f"tasks: expected a gridworld.EnvState (from gridworld.reset), got {type(tasks).__name__}")
    if tasks.pos.ndim != 2:
        raise ValueError(f"tasks: expected a batch of tasks with leaves [B, ...] (pos i32[B, 2]), got pos shape "
                         f"{tuple(tasks.pos.shape)}")


def rollout(params, key, tasks, *, env_cfg, lm_cfg, group_size: int, temperature: float = 1.0) -> StepBatch:
    """Multi-turn rollout of ``group_size`` copies of each task (one ``lax.scan`` over the horizon).

    tasks: ``gridworld.EnvState`` with leaves ``[B, ...]``. At step t the policy reads
    ``observe(s_t)`` plus the previous action token (PAD at t = 0) and emits one action token
    (``lm_cfg.allowed_tokens`` masks the others). Steps after ``done`` are recorded with mask 0.
    """
    _check_loop_cfgs(env_cfg, lm_cfg)
    if lm_cfg.allowed_tokens is None:
        raise ValueError("lm_cfg: expected allowed_tokens = gridworld.action_tokens(env_cfg) (the action tokens)")
    _check_tasks(tasks)
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise ValueError(f"group_size: expected a positive int, got {group_size!r}")
    b = tasks.pos.shape[0]
    n = int(group_size)
    state = jax.tree.map(lambda x: x.reshape((b * n,) + x.shape[2:]), gw.replicate(tasks, n))
    prev0 = jnp.full((b * n, 1), gw.PAD_ID, jnp.int32)

    def body(carry, k):
        st, prev = carry
        prompt = jnp.concatenate([gw.observe(st, cfg=env_cfg), prev], axis=-1)
        roll = tiny_lm.sample(params, k, prompt, cfg=lm_cfg, max_new=1, temperature=temperature)
        tok = roll.tokens[:, 0]
        nxt, r, _, inv = gw.step(st, tok - gw.ACTION_BASE, cfg=env_cfg)
        out = (prompt, tok, roll.logp[:, 0], gw.anchor(st, cfg=env_cfg), r, inv, ~st.done)
        return (nxt, tok[:, None]), out

    _, outs = jax.lax.scan(body, (state, prev0), jax.random.split(key, env_cfg.horizon))
    # [T, B·N, ...] -> [B, N, T, ...]
    outs = [jnp.moveaxis(o, 0, 1).reshape((b, n, env_cfg.horizon) + o.shape[2:]) for o in outs]
    return StepBatch(*outs)


_LOSS_KEYS = ("prompt", "action", "mask", "logp_old", "adv")


def gigpo_loss(params, batch: dict, *, lm_cfg, loss_cfg):
    """(E7) `grpo_core.grpo_objective` over flattened step-samples (one action token each).

    batch: prompt i32[M, P], action i32[M, 1], mask bool[M, 1], logp_old f32[M, 1], adv f32[M, 1],
    optional logp_ref f32[M, 1]. Returns ``(loss, metrics)``.
    """
    if not isinstance(loss_cfg, grpo_core.LossConfig):
        raise ValueError(f"loss_cfg: expected a grpo_core.LossConfig, got {type(loss_cfg).__name__}")
    if not isinstance(batch, dict):
        raise ValueError(f"batch: expected a dict with keys {_LOSS_KEYS} (+ optional 'logp_ref'), got "
                         f"{type(batch).__name__}")
    missing = [k for k in _LOSS_KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch: missing keys {missing}; expected {_LOSS_KEYS} (+ optional 'logp_ref')")
    logp, ent = tiny_lm.completion_logprobs_and_entropy(params, batch["prompt"], batch["action"], cfg=lm_cfg)
    return grpo_core.grpo_objective(logp, batch["logp_old"], batch.get("logp_ref"), batch["adv"], batch["mask"],
                                    cfg=loss_cfg, entropy=ent if loss_cfg.entropy_coef else None)  # fmt: skip


def make_gigpo_step(env_cfg, lm_cfg, loss_cfg, opt, *, n_tasks: int = 16, group_size: int = 8, norm: str = "none",
                    episode_stats: str = "trajectory", eps: float = 1e-6, temperature: float = 1.0):  # fmt: skip
    """One GiGPO iteration as a pure ``step(params, opt_state, key, hp) -> (params, opt_state, metrics)``.

    ``hp``: dict of (possibly traced) scalars ``gamma``, ``omega``, ``invalid_penalty`` — vmap over ω
    runs GRPO (ω = 0) and GiGPO (ω = 1) arms in one program. Draws ``n_tasks`` fresh tasks, rolls
    out ``group_size`` trajectories each, computes `gigpo_advantages`, and takes one optax step on
    `gigpo_loss` (ρ ≡ 1: one pass per batch, as in the paper's runs). No reference KL (β = 0).
    """
    _check_loop_cfgs(env_cfg, lm_cfg)
    if not isinstance(loss_cfg, grpo_core.LossConfig):
        raise ValueError(f"loss_cfg: expected a grpo_core.LossConfig, got {type(loss_cfg).__name__}")
    if not hasattr(opt, "update") or not hasattr(opt, "init"):
        raise ValueError(f"opt: expected an optax GradientTransformation, got {type(opt).__name__}")
    check_choice("norm", norm, NORMS)
    check_choice("episode_stats", episode_stats, EPISODE_STATS)
    check_range("n_tasks", n_tasks, low=1)
    check_range("group_size", group_size, low=2)
    if loss_cfg.kl_coef != 0:
        raise ValueError("loss_cfg.kl_coef: make_gigpo_step trains without a reference policy; expected 0")

    def step(params, opt_state, key, hp):
        k_task, k_roll = jax.random.split(key)
        tasks = gw.reset(k_task, env_cfg, n_tasks)
        tr = rollout(params, k_roll, tasks, env_cfg=env_cfg, lm_cfg=lm_cfg, group_size=group_size,
                     temperature=temperature)  # fmt: skip
        adv = gigpo_advantages(tr.reward, tr.anchor, tr.mask, gamma=hp["gamma"], omega=hp["omega"], norm=norm,
                               eps=eps, episode_stats=episode_stats, invalid=tr.invalid,
                               invalid_penalty=hp["invalid_penalty"])  # fmt: skip
        m = tr.mask.reshape(-1, 1)
        batch = {"prompt": tr.prompt.reshape((-1, tr.prompt.shape[-1])), "action": tr.action.reshape(-1, 1),
                 "mask": m, "logp_old": tr.logp.reshape(-1, 1), "adv": adv.reshape(-1, 1)}  # fmt: skip
        (loss, aux), grads = jax.value_and_grad(gigpo_loss, has_aux=True)(params, batch, lm_cfg=lm_cfg,
                                                                          loss_cfg=loss_cfg)  # fmt: skip
        updates, opt_state = opt.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        st = anchor_stats(tr.anchor, tr.mask)
        metrics = {"loss": loss, "success": jnp.mean(jnp.any(tr.reward > 0, -1)),
                   "episode_length": jnp.mean(jnp.sum(tr.mask, -1)),
                   "invalid_rate": jnp.sum(tr.invalid) / jnp.maximum(jnp.sum(tr.mask), 1), **st}  # fmt: skip
        return params, opt_state, metrics

    return step


def success_rate(params, key, tasks, *, env_cfg, lm_cfg, temperature: float = 1.0) -> jax.Array:
    """Fraction of ``tasks`` (EnvState ``[n, ...]``) the sampled policy solves within the horizon."""
    _check_tasks(tasks)
    tr = rollout(params, key, tasks, env_cfg=env_cfg, lm_cfg=lm_cfg, group_size=1, temperature=temperature)
    return jnp.mean(jnp.any(tr.reward > 0, axis=-1))
