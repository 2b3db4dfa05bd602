"""The GRPO-family core: group-relative advantages, clipped surrogate, KL penalty, aggregation.

Shared by GiGPO, TW-GRPO, RLCCF and GroupRank (spec ``papers/_grpo_family.md`` §2–§7). GRPO itself:
Shao et al., "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models",
arXiv 2402.03300. Every function is pure and works under ``jit``/``vmap``/``grad``; keyword options
are static (hashable) unless marked *traced*.

Equations -> functions (n = flattened (b, i), t = completion token, m the completion mask):

- §2 group advantage  A[b,i] = (r[b,i] − μ_b) / (σ_b + ε), σ unbiased   -> `group_advantages`
  (``norm="std"``; ``"none"``: A = r − μ; ``"batch"``: σ over the whole batch)
- §2 token broadcast  A[b,i,t] = A[b,i]·m[b,i,t]                        -> `broadcast_advantages`
- §3 ratio            ρ = exp(ℓ − ℓ_old) (token) or exp(mean_t m(ℓ − ℓ_old)) -> `ratio`
- §3 clipped loss     L = −min(ρA, clip(ρ, 1−ε_lo, 1+ε_hi)A); dual clip  -> `clipped_pg_loss`
- §4 KL estimators    δ = ℓ_ref − ℓ; k1 = −δ, k2 = δ²/2, k3 = e^δ − δ − 1 -> `kl_penalty`
- §5 aggregation      token_mean / seq_mean_token_mean / ... / sum_over_tmax -> `aggregate`
- the whole loss      agg(L + β·k)·w − c_H·agg(H)                         -> `grpo_objective`

Defaults and the anchors they follow (spec §6; each paper module passes its own values):
ε = 1e-6 (verl / verl-agent; TRL and the TW-GRPO code use 1e-4), ε_lo = ε_hi = 0.2, no dual clip
(verl's ``clip_ratio_c = 3`` is ``dual_clip=3.0``), β = 0 (TRL now, TW-GRPO; verl-agent GiGPO uses
0.01 with k3), k3 ("low_var_kl"), ``agg="token_mean"`` (verl ``token-mean`` = TRL ``dapo``), c_H = 0
(verl-agent uses 0.001). Our choices (not the papers'): groups of size 1 are rejected (verl would
leak A = r, TRL gives 0); unequal groups use a ``valid`` mask; members of a group with fewer than
two valid members get A = 0; ratios are exactly 1 on padding; per-token weights multiply the whole
per-token loss (clip term + KL), the denominators stay unweighted mask counts.

Dtypes: every function computes in the promoted dtype of its floating inputs (`float_dtype`; JAX's
default float for integer or bool inputs), so float64 inputs under ``jax.enable_x64`` stay float64.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from zoo.checks import check_array, check_choice, check_range, is_traced

NORMS = ("std", "none", "batch")
LEVELS = ("token", "sequence")
KL_ESTIMATORS = ("k1", "k2", "k3", "k3_st")
AGGS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "const_norm", "sum_over_tmax")

__all__ = [
    "AGGS",
    "KL_ESTIMATORS",
    "LEVELS",
    "NORMS",
    "LossConfig",
    "aggregate",
    "broadcast_advantages",
    "checked_group_advantages",
    "checkify_rewards",
    "clipped_pg_loss",
    "float_dtype",
    "group_advantages",
    "grpo_objective",
    "kl_penalty",
    "ratio",
    "validate_config",
    "validate_rewards",
]


# ----------------------------------------------------------------------------- validation helpers


def _check_mask(name: str, mask: Any, shape: tuple[int, ...]) -> None:
    """``mask``: bool (or 0/1 numeric) array of exactly ``shape``."""
    check_array(name, mask, shape=shape, finite=False)
    kind = np.dtype(mask.dtype).kind
    if kind not in "biuf":
        raise ValueError(f"{name}: expected a bool (or 0/1) mask, got dtype {mask.dtype}")
    if kind != "b" and not is_traced(mask):
        vals = np.asarray(mask)
        if not np.isin(vals, (0, 1)).all():
            bad = vals[~np.isin(vals, (0, 1))].ravel()[0]
            raise ValueError(f"{name}: expected a bool or 0/1 mask, got value {bad!r}")


def _check_logp(name: str, x: Any, shape: tuple[int, ...] | None = None) -> None:
    check_array(name, x, ndim=2, shape=shape, kind="f")


def _static_float(name: str, value: Any, *, low: float, low_inclusive: bool = True) -> None:
    """Range check for an option that may also be traced (then it is skipped)."""
    if value is None or is_traced(value):
        return
    if isinstance(value, bool) or np.ndim(value) != 0:
        raise ValueError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    check_range(name, v, low=low, low_inclusive=low_inclusive)


def _pair(name: str, clamp: Any) -> tuple[float, float] | None:
    """``None`` | c (-> (−c, c)) | (lo, hi) with lo < hi."""
    if clamp is None:
        return None
    if isinstance(clamp, (int, float)) and not isinstance(clamp, bool):
        if clamp <= 0:
            raise ValueError(f"{name}: expected a positive half-width or a (low, high) pair, got {clamp!r}")
        return (-float(clamp), float(clamp))
    if isinstance(clamp, (tuple, list)) and len(clamp) == 2 and all(isinstance(c, (int, float)) for c in clamp):
        lo, hi = float(clamp[0]), float(clamp[1])
        if not lo < hi:
            raise ValueError(f"{name}: expected low < high, got {clamp!r}")
        return (lo, hi)
    raise ValueError(f"{name}: expected None, a positive number or a (low, high) pair, got {clamp!r}")


def float_dtype(*xs: Any) -> Any:
    """The dtype a function computes in: the promoted dtype of its floating inputs, JAX's default
    float (float32, or float64 under ``jax.enable_x64``) when none is floating. ``None`` entries are skipped."""
    xs = [x for x in xs if x is not None]
    for k, x in enumerate(xs):
        if not (hasattr(x, "dtype") or isinstance(x, (bool, int, float, np.number))):
            raise TypeError(f"xs[{k}]: expected an array or a number, got {type(x).__name__}")
    return jnp.result_type(*xs, float)


def _fmask(mask: jax.Array, dtype: Any = None) -> jax.Array:
    return jnp.asarray(mask).astype(float_dtype() if dtype is None else dtype)


# ----------------------------------------------------------------------------- §2 advantages


def validate_rewards(rewards: Any, *, name: str = "rewards") -> None:
    """Host-side checks of a reward matrix ``f32[B, G]``: 2-D, G >= 2, all finite (ValueError)."""
    check_array(name, rewards, ndim=2)
    if rewards.shape[1] < 2:
        raise ValueError(
            f"{name}: expected groups of size G >= 2 (shape [B, G]), got G = {rewards.shape[1]} "
            f"(shape {tuple(rewards.shape)}); a singleton group has no group-relative baseline"
        )


def group_advantages(
    rewards: jax.Array,
    *,
    norm: str = "std",
    eps: float = 1e-6,
    valid: jax.Array | None = None,
) -> jax.Array:
    """Group-relative advantages (spec §2).

    μ_b = mean_i r[b,i];  σ_b = sqrt(Σ_i (r − μ_b)² / (G − 1))  (unbiased; valid members only)

    - ``norm="std"``:   A = (r − μ_b) / (σ_b + ε)
    - ``norm="none"``:  A = r − μ_b                     (Dr.GRPO, GiGPO "w/o std")
    - ``norm="batch"``: A = (r − μ_b) / (σ_all + ε)     (σ over every valid reward of the batch)

    Args:
      rewards: f32[B, G] — B groups of G >= 2 members each (G < 2 is a ValueError at trace time).
      eps: ε > 0 (may be traced).
      valid: optional bool[B, G]; invalid members are excluded from μ and σ and get A = 0.
        A group with fewer than two valid members gets A = 0.

    Returns:
      f32[B, G], Σ_i A[b,i] = 0 for every group; a constant group gives exact zeros.
    """
    validate_rewards(rewards)
    check_choice("norm", norm, NORMS)
    _static_float("eps", eps, low=0.0, low_inclusive=False)
    r = jnp.asarray(rewards)
    r = r.astype(float_dtype(r))
    if valid is None:
        v = jnp.ones_like(r)
    else:
        _check_mask("valid", valid, r.shape)
        v = _fmask(valid, r.dtype)
    r = r * v  # invalid members never enter a sum (and cannot inject NaN via 0 * inf)
    n = v.sum(axis=1, keepdims=True)
    mu = r.sum(axis=1, keepdims=True) / jnp.maximum(n, 1.0)
    centred = (r - mu) * v
    if norm == "none":
        adv = centred
    else:
        if norm == "std":
            var = (centred**2).sum(axis=1, keepdims=True) / jnp.maximum(n - 1.0, 1.0)
        else:  # batch: σ over all valid rewards (unbiased), per-group means stay
            n_all = v.sum()
            mu_all = r.sum() / jnp.maximum(n_all, 1.0)
            var = (((r - mu_all) * v) ** 2).sum() / jnp.maximum(n_all - 1.0, 1.0)
        adv = centred / (jnp.sqrt(var) + eps)
    return jnp.where(n >= 2, adv, 0.0) * v


def broadcast_advantages(adv: jax.Array, mask: jax.Array) -> jax.Array:
    """Outcome advantage on every completion token: A[b,i,t] = A[b,i]·m[b,i,t].

    adv: f32[B, G]; mask: bool[B, G, T] -> f32[B, G, T].
    """
    check_array("adv", adv, ndim=2, kind="f")
    check_array("mask", mask, ndim=3, finite=False)
    _check_mask("mask", mask, (*adv.shape, mask.shape[2]))
    a = jnp.asarray(adv)
    return a[..., None] * _fmask(mask, a.dtype)


def checkify_rewards(rewards: jax.Array) -> None:
    """In-jit check (``jax.experimental.checkify``) that every reward is finite; use inside a
    function wrapped by ``checkify.checkify`` (see `checked_group_advantages`)."""
    check_array("rewards", rewards, kind="fiub", finite=False)
    if not is_traced(rewards):  # called eagerly: the host check gives the usual ValueError
        check_array("rewards", rewards)
        return
    checkify.check(jnp.all(jnp.isfinite(rewards)), "rewards: contains non-finite values (NaN or inf)")


def _checked_adv(rewards, norm, eps, valid):
    checkify_rewards(rewards)
    return group_advantages(rewards, norm=norm, eps=eps, valid=valid)


def checked_group_advantages(
    rewards: jax.Array, *, norm: str = "std", eps: float = 1e-6, valid: jax.Array | None = None
) -> tuple[Any, jax.Array]:
    """`group_advantages` with the finiteness check done inside jit by checkify.

    Returns ``(err, adv)``; ``err.throw()`` raises if any reward was NaN/inf. Jittable::

        err, adv = jax.jit(checked_group_advantages)(r); err.throw()
    """
    fn = checkify.checkify(_checked_adv, errors=checkify.user_checks)
    return fn(rewards, norm, eps, valid)


# ----------------------------------------------------------------------------- §3 ratio and clipping


def _check_pair(logp: Any, logp_old: Any, mask: Any, *, old_name: str = "logp_old") -> tuple[int, int]:
    _check_logp("logp", logp)
    _check_logp(old_name, logp_old, shape=tuple(logp.shape))
    _check_mask("mask", mask, tuple(logp.shape))
    return tuple(logp.shape)


def _ratio(logp, logp_old, m, level):
    diff = jnp.where(m > 0, logp - jax.lax.stop_gradient(logp_old), 0.0)
    if level == "token":
        return jnp.exp(diff)
    seq = diff.sum(axis=1, keepdims=True) / jnp.maximum(m.sum(axis=1, keepdims=True), 1.0)
    return jnp.broadcast_to(jnp.exp(seq), logp.shape)


def ratio(logp: jax.Array, logp_old: jax.Array, mask: jax.Array, *, level: str = "token") -> jax.Array:
    """Importance ratio (spec §3); ``logp_old`` is treated as a constant (stop-gradient).

    - ``level="token"``:    ρ[n,t] = exp(ℓ − ℓ_old)
    - ``level="sequence"``: ρ[n,t] = exp( Σ_t m(ℓ − ℓ_old) / Σ_t m )  (GSPO; same value on every t)

    logp, logp_old: f32[N, T]; mask: bool[N, T] -> f32[N, T] (exactly 1 on padding for token level).
    """
    _check_pair(logp, logp_old, mask)
    check_choice("level", level, LEVELS)
    logp, logp_old = jnp.asarray(logp), jnp.asarray(logp_old)
    return _ratio(logp, logp_old, _fmask(mask, float_dtype(logp, logp_old)), level)


def _validate_clip(clip_low, clip_high, dual_clip):
    _static_float("clip_low", clip_low, low=0.0, low_inclusive=False)
    if clip_low is not None and not is_traced(clip_low) and float(clip_low) >= 1.0:
        raise ValueError(
            f"clip_low: expected a value in (0, 1) (the ratio is clipped below at 1 - clip_low), got {clip_low!r}")
    _static_float("clip_high", clip_high, low=0.0, low_inclusive=False)
    if dual_clip is not None:
        _static_float("dual_clip", dual_clip, low=1.0, low_inclusive=False)


def _clipped(rho, adv, m, clip_low, clip_high, dual_clip):
    """Per-token clipped loss and the masks (clipped, dual-clipped) for metrics."""
    l1 = -adv * rho
    l2 = -adv * jnp.clip(rho, 1.0 - clip_low, 1.0 + clip_high)
    loss = jnp.maximum(l1, l2)
    clipped = l2 > l1
    dual = jnp.zeros_like(clipped)
    if dual_clip is not None:
        l3 = -adv * dual_clip  # = c·|A| where A < 0
        dual = (adv < 0) & (l3 < loss)
        loss = jnp.where(adv < 0, jnp.minimum(loss, l3), loss)
    return loss * m, clipped, dual


def clipped_pg_loss(
    logp: jax.Array,
    logp_old: jax.Array,
    adv: jax.Array,
    mask: jax.Array,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    level: str = "token",
) -> jax.Array:
    """PPO clipped surrogate per token (spec §3), zero on padding.

    L = max(−ρA, −clip(ρ, 1 − ε_lo, 1 + ε_hi)A)        (= −min(ρA, clip(ρ)A))
    dual clip (verl, only where A < 0):  L = min(L, c·|A|),  c = ``dual_clip`` > 1.

    ``adv`` and ``logp_old`` are labels (stop-gradient); only ``logp`` carries gradient. With
    ``logp_old = stop_gradient(logp)`` the ratio is 1 and ∇L = −A∇ℓ (REINFORCE with a baseline).

    logp, logp_old, adv: f32[N, T]; mask: bool[N, T] -> f32[N, T].
    """
    _check_pair(logp, logp_old, mask)
    check_array("adv", adv, shape=tuple(logp.shape), kind="f")
    check_choice("level", level, LEVELS)
    _validate_clip(clip_low, clip_high, dual_clip)
    logp, logp_old, adv = jnp.asarray(logp), jnp.asarray(logp_old), jnp.asarray(adv)
    m = _fmask(mask, float_dtype(logp, logp_old, adv))
    rho = _ratio(logp, logp_old, m, level)
    loss, _, _ = _clipped(rho, jax.lax.stop_gradient(adv), m, clip_low, clip_high, dual_clip)
    return loss


# ----------------------------------------------------------------------------- §4 KL


def kl_penalty(
    logp: jax.Array,
    logp_ref: jax.Array,
    *,
    estimator: str = "k3",
    clamp_delta: float | tuple[float, float] | None = None,
    clamp_out: float | tuple[float, float] | None = None,
) -> jax.Array:
    """Per-token KL(π_θ ‖ π_ref) estimate (spec §4), with δ = ℓ_ref − ℓ (``logp_ref`` stop-gradient):

    k1 = −δ;  k2 = δ²/2;  k3 = e^δ − δ − 1 (≥ 0, "low_var_kl");
    k3_st = k3 in the forward pass with the gradient of k2 (verl ``k3+``).

    ``clamp_delta`` clips δ first (verl (−20, 20), TW-GRPO 11); ``clamp_out`` clips the estimate
    (verl clamps k3 to (−10, 10)); a number c means (−c, c). Not masked (the aggregator masks).

    logp, logp_ref: f32[N, T] -> f32[N, T].
    """
    _check_logp("logp", logp)
    _check_logp("logp_ref", logp_ref, shape=tuple(logp.shape))
    check_choice("estimator", estimator, KL_ESTIMATORS)
    cd, co = _pair("clamp_delta", clamp_delta), _pair("clamp_out", clamp_out)
    return _kl(jnp.asarray(logp), jnp.asarray(logp_ref), estimator, cd, co)


def _kl(logp, logp_ref, estimator, cd, co):
    delta = jax.lax.stop_gradient(logp_ref) - logp
    if cd is not None:
        delta = jnp.clip(delta, *cd)
    if estimator == "k1":
        k = -delta
    elif estimator == "k2":
        k = 0.5 * delta**2
    else:
        k = jnp.expm1(delta) - delta
        if estimator == "k3_st":
            k2 = 0.5 * delta**2
            k = k2 + jax.lax.stop_gradient(k - k2)
    if co is not None:
        k = jnp.clip(k, *co)
    return k


# ----------------------------------------------------------------------------- §5 aggregation


def aggregate(
    loss: jax.Array,
    mask: jax.Array,
    *,
    agg: str = "token_mean",
    t_max: int | None = None,
    weights: jax.Array | None = None,
) -> jax.Array:
    """Reduce a per-token loss f32[N, T] to a scalar (spec §5). With L' = L·m·w (w = 1 if None):

    - ``token_mean``:           Σ L' / Σ m
    - ``seq_mean_token_mean``:  mean_n ( Σ_t L' / Σ_t m )   over sequences with Σ_t m > 0
    - ``seq_mean_token_sum``:   mean_n Σ_t L'               over sequences with Σ_t m > 0
    - ``const_norm``:           Σ L' / (N·T_max)            (TRL ``dr_grpo``)
    - ``sum_over_tmax``:        Σ L' / T_max                (verl ``seq-mean-token-sum-norm``)

    Denominators are unweighted mask counts clamped to >= 1 (``const_norm``: N clamped to >= 1), so a
    fully masked row or an empty batch (N = 0) gives 0, never NaN. ``t_max`` defaults to T.
    weights: optional f32[N, T] (TW-GRPO token weights).
    """
    check_array("loss", loss, ndim=2, kind="f", finite=False)
    _check_mask("mask", mask, tuple(loss.shape))
    check_choice("agg", agg, AGGS)
    if weights is not None:
        check_array("weights", weights, shape=tuple(loss.shape), kind="f")
    if t_max is not None and (isinstance(t_max, bool) or not isinstance(t_max, (int, np.integer)) or t_max < 1):
        raise ValueError(f"t_max: expected a positive int or None, got {t_max!r}")
    loss = jnp.asarray(loss)
    return _aggregate(loss, _fmask(mask, float_dtype(loss, weights)), agg, t_max, weights)


def _aggregate(loss, m, agg, t_max, weights):
    n, t = loss.shape
    lw = jnp.where(m > 0, loss, 0.0) * m  # where(): padding may hold inf/NaN that 0·x would not remove
    if weights is not None:
        lw = lw * weights
    if agg == "token_mean":
        return lw.sum() / jnp.maximum(m.sum(), 1.0)
    if agg in ("const_norm", "sum_over_tmax"):
        tm = float(t if t_max is None else t_max)
        return lw.sum() / (tm * max(n, 1) if agg == "const_norm" else tm)  # N = 0: 0, not 0/0
    count = m.sum(axis=1)
    row = lw.sum(axis=1)
    if agg == "seq_mean_token_mean":
        row = row / jnp.maximum(count, 1.0)
    has = (count > 0).astype(loss.dtype)
    return (row * has).sum() / jnp.maximum(has.sum(), 1.0)


# ----------------------------------------------------------------------------- the objective


@dataclasses.dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Options of `grpo_objective` (static and hashable, except ``kl_coef`` which may be traced).

    clip_low / clip_high: ε_lo ∈ (0, 1), ε_hi > 0 (DAPO clip-higher / TW-GRPO code: 0.28).
    dual_clip: verl's ``clip_ratio_c`` (> 1) or None (off).
    kl_coef: β >= 0; 0 skips the KL term (then ``logp_ref`` may be None).
    kl_estimator: "k1" | "k2" | "k3" | "k3_st".   kl_clamp: clamp of δ (None | c | (lo, hi)).
    kl_clamp_out: clamp of the KL estimate.   agg: one of `AGGS`.   t_max: for const_norm / sum_over_tmax.
    entropy_coef: c_H >= 0 (loss −= c_H·agg(H); needs ``entropy``).   level: "token" | "sequence" ratio.
    """

    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = None
    kl_coef: Any = 0.0
    kl_estimator: str = "k3"
    kl_clamp: float | tuple[float, float] | None = None
    kl_clamp_out: float | tuple[float, float] | None = None
    agg: str = "token_mean"
    t_max: int | None = None
    entropy_coef: float = 0.0
    level: str = "token"

    def __post_init__(self):
        _validate_clip(self.clip_low, self.clip_high, self.dual_clip)
        _static_float("kl_coef", self.kl_coef, low=0.0)
        check_choice("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        _pair("kl_clamp", self.kl_clamp)
        _pair("kl_clamp_out", self.kl_clamp_out)
        check_choice("agg", self.agg, AGGS)
        if self.t_max is not None and (
            isinstance(self.t_max, bool) or not isinstance(self.t_max, (int, np.integer)) or self.t_max < 1
        ):
            raise ValueError(f"t_max: expected a positive int or None, got {self.t_max!r}")
        _static_float("entropy_coef", self.entropy_coef, low=0.0)
        check_choice("level", self.level, LEVELS)

    def uses_kl(self) -> bool:
        """False only when ``kl_coef`` is a concrete 0 (a traced β always computes the KL)."""
        return is_traced(self.kl_coef) or float(self.kl_coef) != 0.0


def validate_config(cfg: Any) -> None:
    """Host-side check that ``cfg`` is a valid `LossConfig` (fields are re-validated)."""
    if not isinstance(cfg, LossConfig):
        raise ValueError(f"cfg: expected a LossConfig, got {type(cfg).__name__}")
    dataclasses.replace(cfg)  # re-runs __post_init__


def grpo_objective(
    logp: jax.Array,
    logp_old: jax.Array,
    logp_ref: jax.Array | None,
    adv: jax.Array,
    mask: jax.Array,
    *,
    cfg: LossConfig = LossConfig(),
    weights: jax.Array | None = None,
    entropy: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The GRPO loss (spec §3–§5):

    L_tok = clipped_pg_loss(ℓ, ℓ_old, A) + β·kl_penalty(ℓ, ℓ_ref)
    loss  = aggregate(L_tok, m, weights=w) − c_H·aggregate(H, m)

    Args:
      logp: f32[N, T] current log-probs (carries the gradient).
      logp_old: f32[N, T] behaviour log-probs; logp_ref: f32[N, T] reference log-probs or None (β = 0).
      adv: f32[N, T] (already broadcast) or f32[N] (one advantage per sequence). Labels: stop-gradient.
      mask: bool[N, T].   weights: optional f32[N, T].   entropy: optional f32[N, T] (H per token).

    Returns:
      (loss f32[], metrics) with metrics ``pg_loss``, ``kl`` (to the reference; 0 if unused),
      ``clip_frac`` and ``dual_clip_frac`` (fractions of valid tokens), ``approx_kl``
      (token mean of ℓ_old − ℓ, verl's ``ppo_kl``), ``ratio_mean``, ``entropy`` (0 if not given).
    """
    if not isinstance(cfg, LossConfig):
        raise ValueError(f"cfg: expected a LossConfig, got {type(cfg).__name__}")
    shape = _check_pair(logp, logp_old, mask)
    check_array("adv", adv, ndim=(1, 2), kind="f")
    if adv.shape not in (shape, shape[:1]):
        raise ValueError(f"adv: expected shape {shape} or ({shape[0]},), got {tuple(adv.shape)}")
    use_kl = cfg.uses_kl()
    if use_kl:
        if logp_ref is None:
            raise ValueError(f"logp_ref: required when cfg.kl_coef != 0 (got kl_coef={cfg.kl_coef!r})")
        _check_logp("logp_ref", logp_ref, shape=shape)
    if weights is not None:
        check_array("weights", weights, shape=shape, kind="f")
    if entropy is not None:
        check_array("entropy", entropy, shape=shape, kind="f")
    elif not is_traced(cfg.entropy_coef) and cfg.entropy_coef != 0:
        raise ValueError(f"entropy: required when cfg.entropy_coef != 0 (got {cfg.entropy_coef!r})")

    logp, logp_old = jnp.asarray(logp), jnp.asarray(logp_old)
    dt = float_dtype(logp, logp_old, adv, logp_ref if use_kl else None, weights, entropy)
    m = _fmask(mask, dt)
    a = jnp.asarray(adv).astype(dt)
    a = jax.lax.stop_gradient(a if a.ndim == 2 else a[:, None] * m)
    w = None if weights is None else jax.lax.stop_gradient(jnp.asarray(weights).astype(dt))

    rho = _ratio(logp, logp_old, m, cfg.level)
    pg, clipped, dual = _clipped(rho, a, m, cfg.clip_low, cfg.clip_high, cfg.dual_clip)
    per_tok = pg
    kl_mean = jnp.zeros((), dt)
    if use_kl:
        k = _kl(logp, jnp.asarray(logp_ref), cfg.kl_estimator, _pair("kl_clamp", cfg.kl_clamp),
                _pair("kl_clamp_out", cfg.kl_clamp_out))
        per_tok = per_tok + cfg.kl_coef * k * m
        kl_mean = _aggregate(k, m, "token_mean", None, None)
    loss = _aggregate(per_tok, m, cfg.agg, cfg.t_max, w)
    ent_mean = jnp.zeros((), dt)
    if entropy is not None:
        h = jnp.asarray(entropy).astype(dt)
        ent_mean = _aggregate(h, m, "token_mean", None, None)
        if is_traced(cfg.entropy_coef) or cfg.entropy_coef != 0:
            loss = loss - cfg.entropy_coef * _aggregate(h, m, cfg.agg, cfg.t_max, None)

    def tok_mean(x):
        return jax.lax.stop_gradient(_aggregate(x.astype(dt), m, "token_mean", None, None))

    metrics = {
        "pg_loss": jax.lax.stop_gradient(_aggregate(pg, m, cfg.agg, cfg.t_max, w)),
        "kl": jax.lax.stop_gradient(kl_mean),
        "clip_frac": tok_mean(clipped),
        "dual_clip_frac": tok_mean(dual),
        "approx_kl": tok_mean(logp_old - logp),
        "ratio_mean": tok_mean(rho),
        "entropy": jax.lax.stop_gradient(ent_mean),
    }
    return loss, metrics
