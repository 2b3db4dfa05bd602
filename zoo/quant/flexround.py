"""FlexRound: learnable rounding by element-wise division, with the RTN / AdaRound / AdaQuant baselines.

Jung Hyun Lee, Jeonghoon Kim, Se Jung Kwon, Dongsoo Lee, "FlexRound: Learnable Rounding based on
Element-wise Division for Post-Training Quantization", ICML 2023, arXiv 2306.00317.
Spec: papers/flexround.md; shared toolkit: `zoo.quant.core` (quantizer, STE, `reconstruct_block`).

Layout: Flax kernels, dense ``w: f32[K, N]`` (K = in, N = out), conv HWIO ``f32[kh, kw, Cin, Cout]``;
"out" is the last axis. torch's per-row ``s3`` is our per-column ``[1, N]``.

Equations -> functions:
  Ŵ = s1 · clip(round(W ⊘ S), qmin − z, qmax − z),  S = s1 · S2 ⊙ s3 [⊙ s4]        -> `flexround_weight`
  log-domain parameters (official code): s1 = exp θ1, S = exp(θ1 + Θ2 + θ3 [+ θ4])  -> `FlexRoundState`
  init: θ1 = log s1 of the initial grid (MSE search / min-max), Θ2 = θ3 = θ4 = 0
        (so FlexRound starts as RTN on that grid); z frozen                          -> `init_flexround`
  codes q = clip(round(W ⊘ S) + z, qmin, qmax), scale s1                              -> `flexround_export`
  AdaRound: Ŵ = s · clip(floor(W/s) + h(V), qmin − z, qmax − z),
            h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1), ζ = 1.1, γ = −0.1                     -> `adaround_weight`
            V_0 with h(V_0) = W/s − floor(W/s)                                        -> `init_adaround`
            reg = Σ (1 − |2h(V) − 1|^β), β: 20 -> 2 after 20 % warm-up               -> `adaround_reg`, `adaround_beta`
  AdaQuant: Ŵ = s · clip(round((W + V)/s), qmin − z, qmax − z), V and s learned      -> `adaquant_weight`
  RTN on the initial grid                                                             -> `rtn_weight`
  block loop (§2.7): per block, FP targets on FP inputs, quantized-prefix inputs,
  Adam on the method's state, freeze hard weights, propagate                          -> `ptq`
  reconstruction loss: mean over samples of the squared error summed over output features
  (``rec_reduction="sum"``, the default: BRECQ / AdaRound / FlexRound code ``lp_loss`` =
  ``.pow(2).sum(1).mean()``)                                                          -> `core.recon_loss`

The reduction is part of the method, not a rescaling to ignore: AdaRound's ``λ = 0.01`` is calibrated
against the *summed* error, so with a per-element mean the regulariser weighs ~``N_out`` times more;
and the mean divides FlexRound's per-weight gradients by ``N_out``, which pushes them towards Adam's
``eps`` (Adam ignores the gradient scale only while ``|g| >> eps``). ``rec_reduction="mean"`` is kept
as an option (it is what this module used before).

Dtypes: states, rounded weights and qparams follow the kernel's float dtype (at least float32;
float64 stays float64); codes are integers.

Choices that are ours (not the paper's):
  - the clip keeps torch.clamp's derivative (1 on the closed range [qmin − z, qmax − z], 0 outside);
    ``jnp.clip`` alone would give 1/2 on the boundary, where many codes sit;
  - FlexRound/AdaRound support the per-tensor and per-output-channel grids only (the paper's two);
  - AdaQuant's two learning rates (1e-3 for V, 1e-4 for log s) come from one Adam LR by storing
    ``10 · log s`` (Adam is invariant to gradient scale, so the step on ``log s`` is LR / 10);
  - AdaRound's schedule counts steps 1..T like BRECQ (its counter is incremented before use):
    ``adaround_beta(t + 1, T)`` at 0-based step t, regulariser weight 0 while ``t + 1 < warmup·T``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced
from zoo.quant import core
from zoo.quant.core import QParams, QuantSpec, clip_codes

GRIDS = ("minmax", "mse", "mse2d", "mse_gptq")
METHODS = ("rtn", "adaround", "adaquant", "flexround")
ZETA, GAMMA = 1.1, -0.1  # AdaRound's rectified-sigmoid stretch


# ------------------------------------------------------------------------------------ helpers


def _check_kernel(w: Any, spec: QuantSpec, name: str = "w") -> None:
    if not isinstance(spec, QuantSpec):
        raise ValueError(f"spec: expected a zoo.quant.core.QuantSpec, got {type(spec).__name__}")
    check_array(name, w, ndim=(2, 4))
    if spec.granularity == "ic" or spec.group_size != -1:
        raise ValueError(
            f"spec: FlexRound/AdaRound use a per-tensor or per-output-channel grid "
            f"(granularity 'tensor' or 'oc' with group_size=-1), got granularity={spec.granularity!r}, "
            f"group_size={spec.group_size}"
        )


def _grid_shape(w_shape: tuple[int, ...], spec: QuantSpec) -> tuple[int, ...]:
    """Broadcastable shape of s1 / z: ``()`` per tensor, ``(1, ..., 1, N)`` per channel."""
    return () if spec.granularity == "tensor" else (1,) * (len(w_shape) - 1) + (w_shape[-1],)


def _init_grid(w: jax.Array, spec: QuantSpec, grid: str) -> tuple[jax.Array, jax.Array]:
    """(scale, zero) of the initial grid in the kernel's broadcastable shape."""
    check_choice("grid", grid, GRIDS)
    qp = core.compute_qparams(w, spec, grid)
    shape = _grid_shape(w.shape, spec)
    return qp.scale.reshape(shape), qp.zero.reshape(shape)


def _to_qparams(scale: jax.Array, zero: jax.Array, w_shape, spec: QuantSpec) -> QParams:
    shape = core.qparam_shape(tuple(w_shape), spec)
    return QParams(jnp.reshape(scale, shape), jnp.reshape(zero, shape))


def _check_state(st: Any, w: Any, fields: dict[str, tuple[int, ...] | None], kind: str) -> None:
    if is_traced(w):
        return
    for f, shape in fields.items():
        v = getattr(st, f)
        if shape is None:
            continue
        if v is None or tuple(jnp.shape(v)) != tuple(shape):
            got = None if v is None else tuple(jnp.shape(v))
            raise ValueError(f"{kind}.{f}: expected shape {tuple(shape)} for a kernel of shape {tuple(w.shape)}, "
                             f"got {got}")  # fmt: skip


# ------------------------------------------------------------------------------------ FlexRound


class FlexRoundState(NamedTuple):
    """FlexRound's parameters for one kernel (a pytree; everything learnable except ``zero``).

    log_s1: f32[] (per tensor) | f32[1, N] (per channel; conv ``[1, 1, 1, Cout]``) — θ1, ``s1 = exp θ1``.
    log_S2: f32[w.shape] — Θ2, one divisor per weight.
    log_s3: f32[1, N] (conv ``[1, 1, 1, Cout]``) — θ3, per output channel.
    log_s4: f32[K, 1] (conv ``[1, 1, Cin, 1]``) or None — θ4, per input channel.
    zero: like ``log_s1``, integer-valued, never learned (stop-gradient).
    """

    log_s1: jax.Array
    log_S2: jax.Array
    log_s3: jax.Array
    log_s4: jax.Array | None
    zero: jax.Array


def _s4_shape(w_shape):
    return (w_shape[0], 1) if len(w_shape) == 2 else (1, 1, w_shape[2], 1)


def init_flexround(w: jax.Array, spec: QuantSpec, *, use_s4: bool | None = None, grid: str = "mse") -> FlexRoundState:
    """FlexRound state with ``S = s1`` (so the initial weight is RTN on the initial grid), §2.3.

    Args:
      w: f32[K, N] or HWIO f32[kh, kw, Cin, Cout].
      spec: per-tensor (``granularity="tensor"``) or per-channel (``"oc"``, ``group_size=-1``) grid.
      use_s4: learn the per-input-channel divisor; default True for conv, False for dense (official LLM code).
      grid: initial grid, ``"mse"`` (BRECQ/QDrop, p = 2.4), ``"minmax"`` (official LLM scripts), ``"mse2d"``, ``"mse_gptq"``.
    """
    _check_kernel(w, spec)
    if use_s4 is None:
        use_s4 = w.ndim == 4
    w = jnp.asarray(w, core._fdtype(w))
    scale, zero = _init_grid(w, spec, grid)
    n = w.shape[-1]
    s3_shape = (1,) * (w.ndim - 1) + (n,)
    return FlexRoundState(
        log_s1=jnp.log(scale),
        log_S2=jnp.zeros(w.shape, w.dtype),
        log_s3=jnp.zeros(s3_shape, w.dtype),
        log_s4=jnp.zeros(_s4_shape(w.shape), w.dtype) if use_s4 else None,
        zero=zero,
    )


def _flex_u(w, st: FlexRoundState):
    """``u = W ⊘ S`` with ``S = exp(θ1 + Θ2 + θ3 [+ θ4])``."""
    log_S = st.log_s1 + st.log_S2 + st.log_s3
    if st.log_s4 is not None:
        log_S = log_S + st.log_s4
    return w / jnp.exp(log_S)


def _check_flex(w, st, spec):
    _check_kernel(w, spec)
    if not isinstance(st, FlexRoundState):
        raise ValueError(f"st: expected a FlexRoundState, got {type(st).__name__}")
    g = _grid_shape(w.shape, spec)
    fields = {"log_s1": g, "log_S2": w.shape, "log_s3": (1,) * (w.ndim - 1) + (w.shape[-1],), "zero": g}
    if st.log_s4 is not None:
        fields["log_s4"] = _s4_shape(w.shape)
    _check_state(st, w, fields, "FlexRoundState")


def flexround_weight(w: jax.Array, st: FlexRoundState, spec: QuantSpec) -> jax.Array:
    """``Ŵ(θ) = s1 · clip(round_ste(W ⊘ S), qmin − z, qmax − z)``: f32[w.shape], differentiable in ``st``.

    Gradients (STE, inside the range): ``∂Ŵ/∂Θ2 = −s1·u`` (u = W ⊘ S, the "reciprocal rule":
    proportional to W), ``∂Ŵ/∂θ3`` = its column sum, ``∂Ŵ/∂θ1 = Ŵ − s1·u``; outside the range only
    the outer ``s1`` term remains.
    """
    if not is_traced(w):
        _check_flex(w, st, spec)
    return _flexround_weight(w, st, spec)


@functools.partial(jax.jit, static_argnames=("spec",))
def _flexround_weight(w, st, spec):
    z = jax.lax.stop_gradient(st.zero)
    r = core.round_ste(_flex_u(w, st))
    return jnp.exp(st.log_s1) * clip_codes(r, spec.qmin - z, spec.qmax - z)


def flexround_export(w: jax.Array, st: FlexRoundState, spec: QuantSpec) -> tuple[jax.Array, QParams]:
    """Integer codes ``q = clip(round(W ⊘ S) + z, qmin, qmax)`` (u8 / i8 [w.shape]) and ``QParams(exp θ1, z)``
    in `zoo.quant.core`'s qparam shape, so ``core.dequantize(q, qp, spec) == flexround_weight(w, st, spec)``."""
    if not is_traced(w):
        _check_flex(w, st, spec)
    return _flexround_export(w, st, spec)


@functools.partial(jax.jit, static_argnames=("spec",))
def _flexround_export(w, st, spec):
    q = jnp.clip(jnp.round(_flex_u(w, st)) + st.zero, spec.qmin, spec.qmax)
    return q.astype(spec.code_dtype), _to_qparams(jnp.exp(st.log_s1), st.zero, w.shape, spec)


def flexround_flip_stats(w: jax.Array, st: FlexRoundState, spec: QuantSpec) -> dict[str, jax.Array]:
    """How far FlexRound moved the codes from RTN on the same grid ``s1``.

    Returns ``flip_frac`` (fraction of codes ≠ RTN's), ``delta_hist: f32[4]`` (fraction with
    ``|Δcode|`` = 0, 1, 2, ≥ 3; AdaRound can only reach 0 and 1) and ``clip_frac`` (fraction of
    weights whose ``round(W ⊘ S)`` is outside the code range).
    """
    if not is_traced(w):
        _check_flex(w, st, spec)
    return _flip_stats(w, st, spec)


@functools.partial(jax.jit, static_argnames=("spec",))
def _flip_stats(w, st, spec):
    q, _ = _flexround_export(w, st, spec)
    s1 = jnp.exp(st.log_s1)
    q_rtn = jnp.clip(jnp.round(w / s1) + st.zero, spec.qmin, spec.qmax)
    d = jnp.abs(q.astype(q_rtn.dtype) - q_rtn)
    raw = jnp.round(_flex_u(w, st)) + st.zero
    return {
        "flip_frac": jnp.mean(d > 0),
        "delta_hist": jnp.stack([jnp.mean(d == 0), jnp.mean(d == 1), jnp.mean(d == 2), jnp.mean(d >= 3)]),
        "clip_frac": jnp.mean((raw < spec.qmin) | (raw > spec.qmax)),
    }


# ------------------------------------------------------------------------------------ RTN


def rtn_weight(w: jax.Array, spec: QuantSpec, *, grid: str = "mse") -> jax.Array:
    """RTN on the initial grid: ``s · clip(round(W/s), qmin − z, qmax − z)`` (= `core.fake_quant`)."""
    _check_kernel(w, spec)
    w = jnp.asarray(w, core._fdtype(w))
    scale, zero = _init_grid(w, spec, grid)
    return _fake_quant(w, _to_qparams(scale, zero, w.shape, spec), spec)


_fake_quant = jax.jit(core.fake_quant_raw, static_argnames=("spec",))


# ------------------------------------------------------------------------------------ AdaRound


class AdaRoundState(NamedTuple):
    """AdaRound: ``V: f32[w.shape]`` (learned); ``scale``, ``zero`` of the fixed grid (f32[] or ``[1, N]``)."""

    V: jax.Array
    scale: jax.Array
    zero: jax.Array


def rectified_sigmoid(V: jax.Array) -> jax.Array:
    """``h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1)``."""
    core._check_numeric("V", V)
    return jnp.clip(jax.nn.sigmoid(V) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def init_adaround(w: jax.Array, spec: QuantSpec, *, grid: str = "mse") -> AdaRoundState:
    """``V_0 = −log((ζ − γ)/(r − γ) − 1)`` with ``r = W/s − floor(W/s)``, so ``h(V_0) = r`` and the soft
    weight starts at ``W`` wherever it is inside the range."""
    _check_kernel(w, spec)
    w = jnp.asarray(w, core._fdtype(w))
    scale, zero = _init_grid(w, spec, grid)
    return AdaRoundState(V=_adaround_v0(w, scale), scale=scale, zero=zero)


@jax.jit
def _adaround_v0(w, scale):
    x = w / scale
    rest = x - jnp.floor(x)
    return -jnp.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0)


def adaround_weight(w: jax.Array, st: AdaRoundState, spec: QuantSpec, *, hard: bool) -> jax.Array:
    """``Ŵ = s · clip(floor(W/s) + h, qmin − z, qmax − z)`` with ``h = h(V)`` (soft, differentiable in V)
    or ``h = 1[V ≥ 0]`` (``hard``, the exported weight). f32[w.shape]."""
    if not is_traced(w):
        _check_kernel(w, spec)
        if not isinstance(st, AdaRoundState):
            raise ValueError(f"st: expected an AdaRoundState, got {type(st).__name__}")
        g = _grid_shape(w.shape, spec)
        _check_state(st, w, {"V": w.shape, "scale": g, "zero": g}, "AdaRoundState")
    return _adaround_weight(w, st, spec, hard)


@functools.partial(jax.jit, static_argnames=("spec", "hard"))
def _adaround_weight(w, st, spec, hard):
    s = jax.lax.stop_gradient(st.scale)
    z = jax.lax.stop_gradient(st.zero)
    h = (st.V >= 0).astype(w.dtype) if hard else rectified_sigmoid(st.V)
    return s * clip_codes(jnp.floor(w / s) + h, spec.qmin - z, spec.qmax - z)


def adaround_reg(st: AdaRoundState, beta: jax.Array) -> jax.Array:
    """AdaRound's rounding regulariser ``Σ (1 − |2 h(V) − 1|^β)`` (0 when every h ∈ {0, 1}); ``β > 0``."""
    if not isinstance(st, AdaRoundState):
        raise ValueError(f"st: expected an AdaRoundState, got {type(st).__name__}")
    if not is_traced(beta):
        check_array("beta", beta, finite=True)
        if np.any(np.asarray(beta) <= 0):
            raise ValueError(f"beta: expected a positive exponent, got {beta!r}")
    h = rectified_sigmoid(st.V)
    return jnp.sum(1.0 - jnp.abs(2.0 * h - 1.0) ** beta)


def _check_schedule(total, warmup, start, end) -> None:
    if isinstance(total, bool) or not isinstance(total, int | np.integer) or total < 1:
        raise ValueError(f"total: expected a positive int (the number of steps), got {total!r}")
    check_range("warmup", warmup, low=0.0, high=1.0, high_inclusive=False)
    check_range("start", start, low=0.0, low_inclusive=False)
    check_range("end", end, low=0.0, low_inclusive=False)


def adaround_beta(step, total: int, *, warmup: float = 0.2, start: float = 20.0, end: float = 2.0) -> jax.Array:
    """BRECQ's linear temperature decay: ``start`` until ``warmup·total``, then linearly to ``end`` at
    ``step = total`` (steps count 1..total). ``total``: a positive int; ``warmup`` in [0, 1)."""
    _check_schedule(total, warmup, start, end)
    if not is_traced(step):
        check_array("step", step, kind="iuf")
    t0 = warmup * total
    rel = (jnp.asarray(step, core._fdtype(step)) - t0) / max(total - t0, 1e-9)
    return end + (start - end) * jnp.clip(1.0 - rel, 0.0, 1.0)


def adaround_reg_fn(total: int, *, lam: float = 0.01, warmup: float = 0.2, start: float = 20.0, end: float = 2.0,
                    weight_fn: Callable[[Any], list[AdaRoundState]] = lambda st: jax.tree.leaves(
                        st, is_leaf=lambda x: isinstance(x, AdaRoundState))) -> Callable:  # fmt: skip
    """``reg_fn(qstate, step)`` for `core.reconstruct_block`: ``λ Σ_kernels reg(V, β(step + 1))``,
    0 while ``step + 1 < warmup·total``. ``qstate`` may be any pytree holding AdaRoundStates."""
    _check_schedule(total, warmup, start, end)
    check_range("lam", lam, low=0.0)
    if not callable(weight_fn):
        raise ValueError(f"weight_fn: expected a callable qstate -> [AdaRoundState], got {type(weight_fn).__name__}")

    def reg_fn(qstate, step):
        t = step + 1
        beta = adaround_beta(t, total, warmup=warmup, start=start, end=end)
        reg = sum(adaround_reg(s, beta) for s in weight_fn(qstate))
        return jnp.where(t < warmup * total, 0.0, lam * reg)

    return reg_fn


# ------------------------------------------------------------------------------------ AdaQuant

ADAQUANT_SCALE_LR_RATIO = 10.0  # log s is stored ×10: its Adam step is LR/10 (1e-4 when V gets 1e-3)


class AdaQuantState(NamedTuple):
    """AdaQuant: continuous ``V: f32[w.shape]`` (init 0) and ``log_scale10 = 10 · log s`` (learned); ``zero`` fixed."""

    V: jax.Array
    log_scale10: jax.Array
    zero: jax.Array


def init_adaquant(w: jax.Array, spec: QuantSpec, *, grid: str = "mse") -> AdaQuantState:
    """AdaQuant's state: ``V = 0``, ``log_scale10 = 10 · log s`` of the initial grid, ``zero`` fixed."""
    _check_kernel(w, spec)
    w = jnp.asarray(w, core._fdtype(w))
    scale, zero = _init_grid(w, spec, grid)
    return AdaQuantState(V=jnp.zeros_like(w), log_scale10=ADAQUANT_SCALE_LR_RATIO * jnp.log(scale), zero=zero)


def adaquant_weight(w: jax.Array, st: AdaQuantState, spec: QuantSpec) -> jax.Array:
    """``Ŵ = s · clip(round_ste((W + V)/s), qmin − z, qmax − z)``, ``s = exp(log_scale10 / 10)``."""
    if not is_traced(w):
        _check_kernel(w, spec)
        g = _grid_shape(w.shape, spec)
        _check_state(st, w, {"V": w.shape, "log_scale10": g, "zero": g}, "AdaQuantState")
    return _adaquant_weight(w, st, spec)


@functools.partial(jax.jit, static_argnames=("spec",))
def _adaquant_weight(w, st, spec):
    s = jnp.exp(st.log_scale10 / ADAQUANT_SCALE_LR_RATIO)
    z = jax.lax.stop_gradient(st.zero)
    return s * clip_codes(core.round_ste((w + st.V) / s), spec.qmin - z, spec.qmax - z)


# ------------------------------------------------------------------------------------ block loop


def is_kernel(path: str, leaf: Any) -> bool:
    """Default `ptq` filter: leaves named ``kernel`` with 2 or 4 dims."""
    if not isinstance(path, str):
        raise ValueError(f"path: expected a '/'-joined str, got {type(path).__name__}")
    return path.split("/")[-1] == "kernel" and jnp.ndim(leaf) in (2, 4)


def _leaf_paths(tree) -> list[tuple[str, Any]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [("/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path), leaf) for path, leaf in flat]


def _set_leaves(tree, values: dict[str, jax.Array]):
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    out = []
    for path, leaf in flat:
        p = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        out.append(values.get(p, leaf))
    return jax.tree_util.tree_unflatten(treedef, out)


def _init_state(method, w, spec, grid, use_s4):
    if method == "flexround":
        return init_flexround(w, spec, use_s4=use_s4, grid=grid)
    if method == "adaround":
        return init_adaround(w, spec, grid=grid)
    return init_adaquant(w, spec, grid=grid)


def _method_weight(method, w, st, spec, *, hard):
    if method == "flexround":
        return flexround_weight(w, st, spec)
    if method == "adaround":
        return adaround_weight(w, st, spec, hard=hard)
    return adaquant_weight(w, st, spec)


class _BlockForward:
    """The quantized block forward handed to `core.reconstruct_block` (hashable by value, so equal
    blocks reuse one compiled program)."""

    def __init__(self, apply_block, path, method, spec):
        self.key = (apply_block, path, method, spec)

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _BlockForward) and self.key == other.key

    def __call__(self, qstate, frozen, x):
        apply_block, path, method, spec = self.key
        ws = {p: _method_weight(method, frozen["kernels"][p], st, spec, hard=False) for p, st in qstate.items()}
        return apply_block(path, _set_leaves(frozen["block"], ws), x)


def ptq(
    apply_block: Callable[[str, Any, jax.Array], jax.Array],
    params: Any,
    block_paths: Sequence[str],
    calib_x: jax.Array,
    *,
    method: str,
    spec: QuantSpec,
    steps: int,
    batch_size: int,
    lr: float,
    key: jax.Array,
    quantize_filter: Callable[[str, Any], bool] = is_kernel,
    grid: str = "mse",
    use_s4: bool | None = None,
    schedule: str = "cosine",
    rec_reduction: str = "sum",
    lam: float = 0.01,
    warmup: float = 0.2,
) -> tuple[Any, dict]:
    """Quantize ``params`` block by block (BRECQ-style, spec §2.7 / family §4).

    For block ``l = block_paths[i]`` (a key of ``params``): targets ``y = f_l(a_fp)`` (FP block, FP
    input); inputs ``a_q`` (output of the already-quantized prefix); every leaf of ``params[l]``
    that ``quantize_filter(path, leaf)`` accepts gets the method's state, trained with Adam by
    `core.reconstruct_block` (AdaRound adds ``λ · reg`` after the warm-up); the block's kernels are
    then replaced by their hard quantized values and ``a_q ← f_l(a_q)``, ``a_fp ← y``.

    Args:
      apply_block: ``(path, block_params, x: f32[B, ...]) -> f32[B, ...]``, the FP block forward.
      params: the model's params; blocks not in ``block_paths`` are returned unchanged.
      calib_x: f32[Ncal, ...] inputs of the first block (already embedded).
      method: ``"rtn"`` (no training), ``"adaround"``, ``"adaquant"``, ``"flexround"``.
      spec: per-tensor or per-channel weight quantizer (see `init_flexround`).
      steps, batch_size, lr, key, schedule: passed to `core.reconstruct_block`.
      rec_reduction: the reconstruction loss's reduction (`core.recon_loss`): ``"sum"`` (default, the
        papers': sum over output features, mean over samples), ``"mean"`` or ``"sum_axis1_mean"``.
      grid, use_s4: initial grid and FlexRound's s4 (see `init_flexround`); lam, warmup: AdaRound's λ
        and warm-up fraction.

    Returns:
      ``(params with quantized (dequantized, float) kernels, metrics)`` where ``metrics[block]`` holds
      ``recon: f32[steps]`` (absent for RTN), ``recon_final`` (block-output MSE of the hard weights on
      the calibration inputs), ``codes`` and ``qparams`` per kernel path, and for FlexRound ``flip_frac``.
    """
    check_choice("method", method, METHODS)
    check_choice("grid", grid, GRIDS)
    check_choice("rec_reduction", rec_reduction, core.RECON_REDUCTIONS)
    check_choice("schedule", schedule, core.RECON_SCHEDULES)
    if not callable(apply_block):
        raise ValueError(f"apply_block: expected a callable (path, block_params, x) -> y, got {apply_block!r}")
    if not isinstance(spec, QuantSpec):
        raise ValueError(f"spec: expected a zoo.quant.core.QuantSpec, got {type(spec).__name__}")
    if not block_paths:
        raise ValueError("block_paths: expected at least one block")
    for p in block_paths:
        if p not in params:
            raise ValueError(f"block_paths: {p!r} is not a key of params; keys are {sorted(params)}")
    check_array("calib_x", calib_x, min_size=1)
    n = int(jnp.shape(calib_x)[0])
    if n == 0:
        raise ValueError("calib_x: the calibration set is empty")
    for name, v in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if batch_size > n:
        raise ValueError(f"batch_size: expected at most the calibration size {n}, got {batch_size}")
    if not is_traced(lr):
        check_range("lr", float(lr), low=0.0, low_inclusive=False)
    check_range("lam", lam, low=0.0)
    check_range("warmup", warmup, low=0.0, high=1.0, high_inclusive=False)

    out = dict(params)
    a_fp = a_q = jnp.asarray(calib_x, core._fdtype(calib_x))
    metrics: dict[str, dict] = {}
    for i, path in enumerate(block_paths):
        bp = params[path]
        kernels = {p: jnp.asarray(v, core._fdtype(v)) for p, v in _leaf_paths(bp) if quantize_filter(p, v)}
        if not kernels:
            raise ValueError(f"quantize_filter: selected no leaf of block {path!r}")
        y = apply_block(path, bp, a_fp)
        m: dict[str, Any] = {}
        if method == "rtn":
            hard = {p: rtn_weight(w, spec, grid=grid) for p, w in kernels.items()}
            exports = {p: core.rtn(w, spec, grid) for p, w in kernels.items()}
        else:
            st0 = {p: _init_state(method, w, spec, grid, use_s4) for p, w in kernels.items()}
            reg_fn = adaround_reg_fn(steps, lam=lam, warmup=warmup) if method == "adaround" else None
            st, hist = core.reconstruct_block(
                _BlockForward(apply_block, path, method, spec), st0, {"block": bp, "kernels": kernels}, a_q, y,
                steps=steps, batch_size=batch_size, lr=lr, schedule=schedule, key=jax.random.fold_in(key, i),
                reg_fn=reg_fn, reduction=rec_reduction,
            )  # fmt: skip
            m["recon"] = hist["recon"]
            hard = {p: _method_weight(method, w, st[p], spec, hard=True) for p, w in kernels.items()}
            if method == "flexround":
                exports = {p: flexround_export(w, st[p], spec) for p, w in kernels.items()}
                m["flip_frac"] = {p: flexround_flip_stats(w, st[p], spec)["flip_frac"] for p, w in kernels.items()}
            elif method == "adaround":
                exports = {p: _adaround_export(w, st[p], spec) for p, w in kernels.items()}
            else:
                exports = {}
        bq = _set_leaves(bp, hard)
        a_q = apply_block(path, bq, a_q)
        m["recon_final"] = jnp.mean((a_q - y) ** 2)
        m["codes"] = {p: e[0] for p, e in exports.items()}
        m["qparams"] = {p: e[1] for p, e in exports.items()}
        metrics[path] = m
        out[path] = bq
        a_fp = y
    return out, metrics


def _adaround_export(w, st: AdaRoundState, spec: QuantSpec):
    h = (st.V >= 0).astype(w.dtype)
    q = jnp.clip(jnp.floor(w / st.scale) + h + st.zero, spec.qmin, spec.qmax)
    return q.astype(spec.code_dtype), _to_qparams(st.scale, st.zero, w.shape, spec)
