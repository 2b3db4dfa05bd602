"""The shared, pure pieces of every GRPO-family training loop, and a reference GRPO run.

- SFT warm start on (noisy) demonstrations, one ``lax.scan``                  -> `sft_fit`
- group sampling: each prompt repeated G times, members contiguous            -> `group_rollout`
  (``jnp.repeat(prompt, G, 0)``, TRL's ``repeat_interleave`` layout: row b·G + i is member i of prompt b)
- one RL update: ℓ = completion_logprobs(θ), ``grpo_objective``, optax, over
  ``ppo_epochs`` × ``minibatches`` passes                                     -> `grpo_update`
- plain GRPO on the reverse task, init → SFT → RL → eval as one pure function
  of (key, hparams), vmappable over seeds by ``zoo.train.population``          -> `run_grpo_reverse`

Reference policy: the parameters right after SFT, held fixed (never differentiated) for the KL term.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.checks import check_array, check_choice, check_range, is_traced

from . import grpo_core as gc
from . import tiny_lm as tl
from .grpo_envs import reverse as rv

__all__ = [
    "GRPOReverseConfig",
    "exact_match",
    "group_rollout",
    "grpo_update",
    "run_grpo_reverse",
    "sft_fit",
]


def _pos_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


# ----------------------------------------------------------------------------- SFT


def sft_fit(
    key: jax.Array,
    params: dict,
    prompts: jax.Array,
    targets: jax.Array,
    target_mask: jax.Array,
    *,
    cfg: tl.TinyLMConfig,
    steps: int,
    lr: float,
    batch_size: int,
    active_steps: Any = None,
) -> dict:
    """Adam on `tiny_lm.sft_loss` for ``steps`` steps of ``batch_size`` examples drawn with
    replacement from (prompts i32[n, Lp], targets i32[n, Lt], target_mask bool[n, Lt]).

    Pure: one ``lax.scan``; ``lr`` may be traced (vmap over learning rates). ``active_steps``
    (optional, may be traced, <= ``steps``) runs only the first that many steps (a while loop), so
    one compiled program serves several run lengths. Returns the params.
    """
    _pos_int("steps", steps)
    _pos_int("batch_size", batch_size)
    check_array("prompts", prompts, ndim=2, kind="iu")
    check_array("targets", targets, ndim=2, shape=(prompts.shape[0], None), kind="iu")
    check_array("target_mask", target_mask, shape=tuple(targets.shape), finite=False)
    if not is_traced(lr):
        check_range("lr", float(lr), low=0.0, low_inclusive=False)
    opt = optax.adam(lr)
    prompts, targets, target_mask = jnp.asarray(prompts), jnp.asarray(targets), jnp.asarray(target_mask)
    n = prompts.shape[0]
    loss_fn = functools.partial(tl.sft_loss, cfg=cfg)

    all_idx = jax.random.randint(key, (steps, batch_size), 0, n)  # one PRNG call for every step

    def step(i, carry):
        p, s = carry
        idx = all_idx[i]
        g = jax.grad(loss_fn)(p, prompts[idx], targets[idx], target_mask[idx])
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s

    # concrete bounds make fori_loop a scan; a traced `active_steps` makes it a while loop
    stop = steps if active_steps is None else jnp.minimum(active_steps, steps)
    params, _ = jax.lax.fori_loop(0, stop, step, (params, opt.init(params)))
    return params


# ----------------------------------------------------------------------------- rollout


def group_rollout(
    params: dict,
    key: jax.Array,
    prompts: jax.Array,
    *,
    cfg: tl.TinyLMConfig,
    G: int,
    max_new: int,
    temperature: float = 1.0,
) -> tl.Rollout:
    """G samples per prompt: prompts i32[B, Lp] -> Rollout with leaves [B·G, max_new], group members
    contiguous (row b·G + i is sample i of prompt b; reshape to [B, G, ...] to get groups)."""
    _pos_int("G", G)
    if G < 2:
        raise ValueError(f"G: expected a group size >= 2 (group-relative advantages need two samples), got {G}")
    check_array("prompts", prompts, ndim=2, kind="iu")
    rep = jnp.repeat(jnp.asarray(prompts), G, axis=0)
    return tl.sample(params, key, rep, cfg=cfg, max_new=max_new, temperature=temperature)


# ----------------------------------------------------------------------------- RL update


_BATCH_KEYS = ("prompt", "completion", "mask", "logp_old", "advantages")


def _check_batch(batch: Any) -> int:
    if not isinstance(batch, dict):
        raise ValueError(f"batch: expected a dict with keys {_BATCH_KEYS} (+ optional 'weights'), got "
                         f"{type(batch).__name__}")
    missing = [k for k in _BATCH_KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch: missing keys {missing}; expected {_BATCH_KEYS} (+ optional 'weights')")
    unknown = sorted(set(batch) - set(_BATCH_KEYS) - {"weights"})
    if unknown:
        raise ValueError(f"batch: unknown keys {unknown}; expected {_BATCH_KEYS} (+ optional 'weights')")
    check_array("batch['prompt']", batch["prompt"], ndim=2, kind="iu")
    n = batch["prompt"].shape[0]
    check_array("batch['completion']", batch["completion"], ndim=2, shape=(n, None), kind="iu")
    shape = tuple(batch["completion"].shape)
    check_array("batch['mask']", batch["mask"], shape=shape, finite=False)
    for k in ("logp_old", "advantages") + (("weights",) if "weights" in batch else ()):
        check_array(f"batch[{k!r}]", batch[k], shape=shape, kind="f")
    return n


def grpo_update(
    params: dict,
    opt_state: Any,
    ref_params: dict | None,
    batch: dict,
    *,
    lm_cfg: tl.TinyLMConfig,
    loss_cfg: gc.LossConfig,
    optimizer: optax.GradientTransformation,
    ppo_epochs: int = 1,
    minibatches: int = 1,
    temperature: float = 1.0,
) -> tuple[dict, Any, dict]:
    """One GRPO update on a batch of N sampled sequences.

    batch: ``prompt`` i32[N, Lp], ``completion`` i32[N, T], ``mask`` bool[N, T], ``logp_old`` f32[N, T]
    (the sampler's log-probs), ``advantages`` f32[N, T] (already broadcast), optional ``weights`` f32[N, T].

    ℓ_ref = completion_logprobs(ref_params) once (only when ``loss_cfg`` uses the KL; ``ref_params``
    may then not be None); then ``ppo_epochs`` passes over ``minibatches`` contiguous slices
    (N divisible by it; keep G | N/minibatches so groups stay whole), each:
    ℓ = completion_logprobs(θ) (and the entropy if ``entropy_coef`` > 0), loss = grpo_objective,
    θ ← optax update. ``temperature`` must be the sampling temperature. Metrics: the objective's,
    ``loss`` and ``grad_norm``, averaged over the passes.
    """
    n = _check_batch(batch)
    _pos_int("ppo_epochs", ppo_epochs)
    _pos_int("minibatches", minibatches)
    if n % minibatches:
        raise ValueError(f"minibatches: expected a divisor of the batch size N={n}, got {minibatches}")
    if not isinstance(loss_cfg, gc.LossConfig):
        raise ValueError(f"loss_cfg: expected a LossConfig, got {type(loss_cfg).__name__}")
    if not hasattr(optimizer, "update") or not hasattr(optimizer, "init"):
        raise ValueError(f"optimizer: expected an optax GradientTransformation, got {type(optimizer).__name__}")
    use_kl = loss_cfg.uses_kl()
    if use_kl and ref_params is None:
        raise ValueError("ref_params: required when loss_cfg.kl_coef != 0")
    use_ent = is_traced(loss_cfg.entropy_coef) or loss_cfg.entropy_coef != 0
    batch = dict(batch)
    if use_kl:
        batch["logp_ref"] = jax.lax.stop_gradient(tl.completion_logprobs(
            ref_params, batch["prompt"], batch["completion"], cfg=lm_cfg, temperature=temperature))
    mb = n // minibatches

    def loss_fn(p, b):
        if use_ent:
            logp, ent = tl.completion_logprobs_and_entropy(p, b["prompt"], b["completion"], cfg=lm_cfg,
                                                           temperature=temperature)
        else:
            logp, ent = tl.completion_logprobs(p, b["prompt"], b["completion"], cfg=lm_cfg,
                                               temperature=temperature), None
        return gc.grpo_objective(logp, b["logp_old"], b.get("logp_ref"), b["advantages"], b["mask"],
                                 cfg=loss_cfg, weights=b.get("weights"), entropy=ent)

    def one(carry, i):
        p, s = carry
        start = (i % minibatches) * mb
        b = jax.tree_util.tree_map(lambda x: jax.lax.dynamic_slice_in_dim(x, start, mb, axis=0), batch)
        (loss, m), g = jax.value_and_grad(loss_fn, has_aux=True)(p, b)
        upd, s = optimizer.update(g, s, p)
        m = dict(m, loss=loss, grad_norm=optax.tree.norm(g))
        return (optax.apply_updates(p, upd), s), m

    (params, opt_state), ms = jax.lax.scan(one, (params, opt_state), jnp.arange(ppo_epochs * minibatches))
    return params, opt_state, jax.tree_util.tree_map(lambda x: x.mean(0), ms)


# ----------------------------------------------------------------------------- reference run


@dataclasses.dataclass(frozen=True, kw_only=True)
class GRPOReverseConfig:
    """Sizes of `run_grpo_reverse` (static). ``hparams`` may override ``lr`` and ``kl_coef`` (traced)."""

    task: rv.ReverseConfig = rv.ReverseConfig()
    d_model: int = 48
    kind: str = "gru"
    n_demos: int = 512
    sft_steps: int = 600
    sft_lr: float = 1e-2
    sft_batch: int = 64
    rl_steps: int = 80
    prompts_per_step: int = 16
    G: int = 8
    lr: float = 3e-3
    temperature: float = 1.0
    adv_norm: str = "std"
    eps: float = 1e-6
    loss: gc.LossConfig = gc.LossConfig()
    n_eval: int = 256

    def __post_init__(self):
        for name in ("d_model", "n_demos", "sft_steps", "sft_batch", "rl_steps", "prompts_per_step", "n_eval"):
            _pos_int(name, getattr(self, name))
        if isinstance(self.G, bool) or not isinstance(self.G, int) or self.G < 2:
            raise ValueError(f"G: expected an int >= 2, got {self.G!r}")
        check_choice("kind", self.kind, tl.KINDS)
        check_choice("adv_norm", self.adv_norm, gc.NORMS)
        check_range("sft_lr", self.sft_lr, low=0.0, low_inclusive=False)
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        check_range("temperature", self.temperature, low=0.0, low_inclusive=False)
        check_range("eps", self.eps, low=0.0, low_inclusive=False)

    @property
    def lm(self) -> tl.TinyLMConfig:
        return tl.TinyLMConfig(vocab=rv.vocab_size(self.task), d_model=self.d_model, kind=self.kind,
                               n_heads=4 if self.d_model % 4 == 0 else 1, max_len=4 * self.task.length + 4,
                               pad_id=rv.PAD_ID, eos_id=rv.EOS_ID)


def exact_match(params: dict, key: jax.Array, prompts: jax.Array, *, cfg: GRPOReverseConfig,
                greedy: bool = False) -> jax.Array:
    """Fraction of prompts whose (sampled at τ, or greedy) completion is exactly the reversal."""
    if not isinstance(cfg, GRPOReverseConfig):
        raise ValueError(f"cfg: expected a GRPOReverseConfig, got {type(cfg).__name__}")
    ro = tl.sample(params, key, prompts, cfg=cfg.lm, max_new=cfg.task.target_len + 1,
                   temperature=cfg.temperature, greedy=greedy)
    return rv.reverse_reward(prompts, ro.tokens, ro.mask, cfg=cfg.task).mean()


def run_grpo_reverse(key: jax.Array, hparams: dict | None = None, *,
                     cfg: GRPOReverseConfig = GRPOReverseConfig()) -> tuple[dict, dict]:
    """Plain GRPO on the reverse task as one pure function (vmap it with `zoo.train.population`
    through ``functools.partial(run_grpo_reverse, cfg=cfg)``).

    init → SFT on ``n_demos`` noisy demonstrations → ``rl_steps`` GRPO updates (each: fresh prompts,
    G samples each, exact-match reward, group advantages, one `grpo_update`) → evaluation.
    hparams: None or a dict with optional traced ``lr`` / ``kl_coef`` overriding ``cfg``, and
    ``sft_steps`` / ``rl_steps`` (ints <= the cfg's, may be traced: the loops become while loops, so
    one compiled program serves runs of several lengths; history entries past ``rl_steps`` are 0).

    Returns ``(params, metrics)``: ``base_exact`` / ``final_exact`` (sampled exact match on
    ``n_eval`` held-out prompts, same eval key before and after RL), ``base_greedy`` /
    ``final_greedy``, and per RL step ``reward`` f32[rl_steps], ``loss``, ``clip_frac``, ``kl``.
    """
    if not isinstance(cfg, GRPOReverseConfig):
        raise ValueError(f"cfg: expected a GRPOReverseConfig, got {type(cfg).__name__}")
    if hparams is not None and not isinstance(hparams, dict):
        raise ValueError(f"hparams: expected None or a dict, got {type(hparams).__name__}")
    hp = {} if hparams is None else dict(hparams)
    unknown = sorted(set(hp) - {"lr", "kl_coef", "sft_steps", "rl_steps"})
    if unknown:
        raise ValueError(
            f"hparams: unknown keys {unknown}; expected a subset of ['kl_coef', 'lr', 'rl_steps', 'sft_steps']")
    for name, low, strict in (("lr", 0.0, True), ("kl_coef", 0.0, False), ("sft_steps", 0, False),
                              ("rl_steps", 0, False)):  # fmt: skip
        v = hp.get(name)
        if v is None or is_traced(v):
            continue
        if np.ndim(v) != 0 or not np.isfinite(float(v)):
            raise ValueError(f"hparams[{name!r}]: expected a finite scalar, got {v!r}")
        check_range(f"hparams[{name!r}]", float(v), low=low, low_inclusive=not strict)
    lm_cfg = cfg.lm
    loss_cfg = cfg.loss if "kl_coef" not in hp else dataclasses.replace(cfg.loss, kl_coef=hp["kl_coef"])
    k_init, k_demo, k_sft, k_rl, k_eval = jax.random.split(key, 5)

    params = tl.init_tiny_lm(k_init, lm_cfg)
    data = rv.sample_batch(k_demo, cfg.n_demos + cfg.n_eval, cfg.task)  # one draw: SFT demos + eval prompts
    demos = {k: v[: cfg.n_demos] for k, v in data.items()}
    params = sft_fit(k_sft, params, demos["prompt"], demos["demo"], demos["demo_mask"], cfg=lm_cfg,
                     steps=cfg.sft_steps, lr=cfg.sft_lr, batch_size=cfg.sft_batch, active_steps=hp.get("sft_steps"))
    ref_params = params
    eval_prompts = data["prompt"][cfg.n_demos:]
    evaluate = functools.partial(exact_match, key=k_eval, prompts=eval_prompts, cfg=cfg)

    optimizer = optax.adam(hp.get("lr", cfg.lr))
    B, G = cfg.prompts_per_step, cfg.G

    rl_keys = jax.random.split(k_rl, (cfg.rl_steps, 2))

    def rl_step(carry, k):
        p, s = carry
        k_p, k_s = k[0], k[1]
        prompts = rv.sample_batch(k_p, B, cfg.task)["prompt"]
        ro = group_rollout(p, k_s, prompts, cfg=lm_cfg, G=G, max_new=cfg.task.target_len + 1,
                           temperature=cfg.temperature)
        rep = jnp.repeat(prompts, G, axis=0)
        r = rv.reverse_reward(rep, ro.tokens, ro.mask, cfg=cfg.task)
        adv = gc.group_advantages(r.reshape(B, G), norm=cfg.adv_norm, eps=cfg.eps)
        batch = {"prompt": rep, "completion": ro.tokens, "mask": ro.mask, "logp_old": ro.logp,
                 "advantages": adv.reshape(B * G, 1) * ro.mask}
        p, s, m = grpo_update(p, s, ref_params, batch, lm_cfg=lm_cfg, loss_cfg=loss_cfg, optimizer=optimizer,
                              temperature=cfg.temperature)
        return (p, s), {"reward": r.mean(), "loss": m["loss"], "clip_frac": m["clip_frac"], "kl": m["kl"]}

    names = ("reward", "loss", "clip_frac", "kl")
    hist0 = {k: jnp.zeros((cfg.rl_steps,), jnp.result_type(float)) for k in names}

    def rl_body(i, carry):
        p, s, hist = carry
        (p, s), m = rl_step((p, s), rl_keys[i])
        return p, s, {k: hist[k].at[i].set(m[k]) for k in names}

    stop = cfg.rl_steps if "rl_steps" not in hp else jnp.minimum(hp["rl_steps"], cfg.rl_steps)
    params, _, hist = jax.lax.fori_loop(0, stop, rl_body, (params, optimizer.init(params), hist0))
    # evaluate {SFT base, final} x {sampled, greedy} in one vmapped call (same eval key and prompts)
    both = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b, a, b]), ref_params, params)
    ex = jax.vmap(lambda p, g: evaluate(p, greedy=g))(both, jnp.array([False, False, True, True]))
    metrics = dict(hist, base_exact=ex[0], final_exact=ex[1], base_greedy=ex[2], final_greedy=ex[3])
    return params, metrics
