"""The shared post-training-quantization (PTQ) toolkit (spec: papers/_quantization_family.md).

Layout: every weight is the Flax ``Dense`` kernel ``w: f32[K, N]`` (K = inputs "IC", N = outputs
"OC", ``y = x @ w``); conv kernels ``[kh, kw, Cin, Cout]`` are viewed as ``[kh*kw*Cin, Cout]``.
"per-output-channel" = one parameter per *column* (``[1, N]``), "per-input-channel" = one per
*row* (``[K, 1]``). torch layers store ``w.T``.

Uniform affine quantizer (§2), codes ``q``, scale ``s``, integer zero point ``z``:

    asymmetric:  q = clip(round(w/s) + z, 0, 2^b - 1)             -> `quantize`
    symmetric:   q = clip(round(w/s), -2^(b-1), 2^(b-1) - 1), z=0
    dequant:     ŵ = s·(q - z)                                     -> `dequantize`, `fake_quant`
    min-max:     s = max(max(hi - lo, range_floor)/(2^b-1), scale_floor), z = clip(round(-lo/s))
                                                                    -> `compute_qparams("minmax")`
    MSE grid:    argmin_a Σ|fq_a(v) - v|^2.4 over shrunk ranges     -> `compute_qparams("mse" | "mse_gptq" | "mse2d")`
    RTN:         (quantize(w, qp), qp)                             -> `rtn`

Straight-through estimators (§3): ``round_ste(x) = x + sg(round(x) - x)`` -> `round_ste`,
`floor_ste`, `fake_quant_ste` (``d fq/dw = 1[inside range]``).

Block reconstruction (§4): ``min_φ recon(f(x; Q_φ(θ)), y) + reg(φ, t)`` with Adam over a
``lax.scan`` of minibatch steps -> `reconstruct_block`; the loss `recon_loss` defaults to the papers'
reduction ``mean_samples Σ_features (ŷ - y)²`` (BRECQ / AdaRound / FlexRound code: ``lp_loss`` with
``reduction='none'`` is ``.pow(2).sum(1).mean()``, axis 1 = the output features/channels in torch's
layout, the last axis in ours). The reduction is not a harmless rescaling: the plain mean divides the
loss, hence every gradient, by ``N_out``, so AdaRound's ``λ = 0.01`` (calibrated against the sum)
weighs ``N_out`` times more, and FlexRound's small per-weight gradients shrink towards Adam's ``eps``
(Adam is scale-invariant only while ``|g| >> eps``). ``reduction="mean"`` remains an option.

Dtypes: scales, zero points, fake-quantized and dequantized values follow the weight's float dtype
(``promote_types(w.dtype, float32)``: float64 stays float64, bf16/f16 compute in float32); codes
are integers (``QuantSpec.code_dtype``).

GPTQ (§5) -> `hessian_init`, `hessian_update`, `gptq_quantize` in ``zoo.quant.gptq``;
packing and the quantized dense layer (§6) -> `pack_int4`, `unpack_int4`, `QuantizedLinear`,
`dequantize_linear`, and quantization plans over a Flax params pytree -> `make_plan`, `apply_plan`,
`dequantize_params`, in ``zoo.quant.packing``. Those modules build on this one; this one imports
neither (import them from where they live).

Choices that are ours: rounding is half-to-even (``jnp.round``, like ``torch.round``); the
grouped axis is reshaped, never gathered; tensors with more than two dims are flattened to
``[prod(shape[:-1]), shape[-1]]`` for grouping, so qparams are always 2-D (``[G, N]`` for
``oc``, ``[K, N/g]`` for ``ic``) or a scalar (``tensor``), and broadcast against the 2-D view.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.checks import check_array, check_choice, check_range, is_traced

Granularity = Literal["tensor", "oc", "ic"]
GRANULARITIES = ("tensor", "oc", "ic")
QPARAM_METHODS = ("minmax", "mse", "mse_gptq", "mse2d")
MSE_NORM = 2.4  # p of the lp-norm in the MSE grid searches (BRECQ/QDrop/GPTQ heritage)


# --------------------------------------------------------------------------------------------
# §2.1 config
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantSpec:
    """Static description of a uniform affine weight quantizer (hashable: a static jit arg).

    Fields:
      bits: 2..8.
      symmetric: signed codes in ``[-2^(b-1), 2^(b-1)-1]`` with ``z = 0``; else unsigned
        codes in ``[0, 2^b - 1]`` with an integer zero point.
      granularity: ``"tensor"`` (one (s, z)), ``"oc"`` (per column of ``W[K, N]``, optionally
        groups of ``group_size`` rows), ``"ic"`` (per row, optionally groups of ``group_size``
        columns).
      group_size: -1 = the whole grouped axis, else a positive divisor of it.
      include_zero: extend the min-max range to contain 0 (GPTQ / FlexRound code style).
      scale_floor: lower clamp on the scale.
      range_floor: lower clamp on ``hi - lo`` before dividing (AdaDim code: 1e-5).
    """

    bits: int
    symmetric: bool = False
    granularity: Granularity = "oc"
    group_size: int = -1
    include_zero: bool = True
    scale_floor: float = 1e-8
    range_floor: float = 0.0

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, int | np.integer):
            raise ValueError(f"QuantSpec.bits: expected an int in [2, 8], got {self.bits!r}")
        check_range("QuantSpec.bits", self.bits, low=2, high=8)
        check_choice("QuantSpec.granularity", self.granularity, GRANULARITIES)
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int | np.integer):
            raise ValueError(f"QuantSpec.group_size: expected -1 or a positive int, got {self.group_size!r}")
        if self.group_size != -1 and self.group_size < 1:
            raise ValueError(f"QuantSpec.group_size: expected -1 (whole axis) or a positive int, got {self.group_size}")
        if self.granularity == "tensor" and self.group_size != -1:
            raise ValueError(
                f"QuantSpec.group_size: must be -1 with granularity='tensor', got {self.group_size}"
            )
        check_range("QuantSpec.scale_floor", self.scale_floor, low=0.0)
        check_range("QuantSpec.range_floor", self.range_floor, low=0.0)

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2**self.bits - 1

    @property
    def code_dtype(self):
        return jnp.int8 if self.symmetric else jnp.uint8


class QParams(NamedTuple):
    """Quantizer state: ``scale`` and integer-valued ``zero`` (float, the weight's dtype), shapes per `qparam_shape`."""

    scale: jax.Array
    zero: jax.Array


def _check_spec(spec: Any) -> None:
    if not isinstance(spec, QuantSpec):
        raise ValueError(f"spec: expected a QuantSpec, got {type(spec).__name__}")


def _fdtype(*xs: Any):
    """The float dtype to compute in: the inputs' float dtype promoted to at least float32 (float64 stays
    float64); JAX's default float when no input is floating."""
    dts = [jnp.result_type(x) for x in xs]
    fl = [d for d in dts if jnp.issubdtype(d, jnp.floating)]
    if not fl:
        return jax.dtypes.canonicalize_dtype(float)
    return jnp.promote_types(jnp.result_type(*fl), jnp.float32)


def _check_shape(name: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple | list) or not all(isinstance(d, int | np.integer) and d >= 0 for d in shape):
        raise ValueError(f"{name}: expected a tuple of non-negative ints, got {shape!r}")
    if len(shape) < 2:
        raise ValueError(f"{name}: expected a kernel shape with >= 2 dims ([K, N] or HWIO), got {tuple(shape)}")
    return tuple(int(d) for d in shape)


def _as2d_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    return (int(np.prod(shape[:-1])), int(shape[-1]))


def qparam_shape(shape: tuple[int, ...], spec: QuantSpec) -> tuple[int, ...]:
    """Shape of ``scale``/``zero`` for a weight of ``shape`` (table of spec §2.1).

    tensor -> ``()``; oc -> ``[K/g, N]`` (``[1, N]`` for g = -1); ic -> ``[K, N/g]`` (``[K, 1]``).
    """
    _check_spec(spec)
    K, N = _as2d_shape(_check_shape("shape", shape))
    if spec.granularity == "tensor":
        return ()
    g = spec.group_size
    if spec.granularity == "oc":
        return (1, N) if g == -1 else (K // g, N)
    return (K, 1) if g == -1 else (K, N // g)


def check_weight(name: str, w: Any, spec: QuantSpec) -> None:
    """Validate a weight against a spec: >= 2-D, finite (eager only), group size divides its axis."""
    _check_spec(spec)
    check_array(name, w, finite=True)
    if jnp.ndim(w) < 2:
        raise ValueError(f"{name}: expected a kernel with >= 2 dims ([K, N] or HWIO), got shape {tuple(jnp.shape(w))}")
    if 0 in jnp.shape(w):
        raise ValueError(f"{name}: expected a non-empty kernel, got shape {tuple(jnp.shape(w))}")
    if not jnp.issubdtype(jnp.result_type(w), jnp.floating):
        raise ValueError(f"{name}: expected a float kernel, got dtype {jnp.result_type(w)}")
    K, N = _as2d_shape(tuple(jnp.shape(w)))
    g = spec.group_size
    if spec.granularity == "oc" and g != -1 and K % g:
        raise ValueError(
            f"spec.group_size: {g} does not divide the input dimension K={K} of {name} "
            f"(shape {tuple(jnp.shape(w))}) grouped by granularity='oc'"
        )
    if spec.granularity == "ic" and g != -1 and N % g:
        raise ValueError(
            f"spec.group_size: {g} does not divide the output dimension N={N} of {name} "
            f"(shape {tuple(jnp.shape(w))}) grouped by granularity='ic'"
        )


def _check_qparams(qp: Any, w_shape: tuple[int, ...], spec: QuantSpec) -> None:
    if not (isinstance(qp, tuple) and len(qp) == 2):
        raise ValueError(f"qp: expected QParams(scale, zero), got {type(qp).__name__}")
    want = qparam_shape(w_shape, spec)
    for field, v in zip(("scale", "zero"), qp):
        if tuple(jnp.shape(v)) != want:
            raise ValueError(
                f"qp.{field}: expected shape {want} for a weight of shape {w_shape} with "
                f"granularity={spec.granularity!r}, group_size={spec.group_size}; got {tuple(jnp.shape(v))}"
            )
        check_array(f"qp.{field}", v, finite=True)
    if not is_traced(qp[0]):
        s = np.asarray(qp[0])
        if s.size and not (s > 0).all():
            raise ValueError(f"qp.scale: expected positive scales, got {int((s <= 0).sum())} value(s) <= 0 "
                             f"(min {s.min()!r})")  # fmt: skip


# --------------------------------------------------------------------------------------------
# grouping: reshape so that each group is one axis
# --------------------------------------------------------------------------------------------


def _group_view(w2: jax.Array, spec: QuantSpec) -> tuple[jax.Array, int]:
    """``w2: f[K, N]`` -> (view, axis) with each group along ``axis`` of ``view``.

    tensor: ``[K*N]``, axis 0; oc: ``[K/g, g, N]``, axis 1; ic: ``[K, N/g, g]``, axis 2.
    """
    K, N = w2.shape
    if spec.granularity == "tensor":
        return w2.reshape(-1), 0
    g = spec.group_size
    if spec.granularity == "oc":
        g = K if g == -1 else g
        return w2.reshape(K // g, g, N), 1
    g = N if g == -1 else g
    return w2.reshape(K, N // g, g), 2


def expand(qparam: jax.Array, spec: QuantSpec, shape: tuple[int, ...]) -> jax.Array:
    """Repeat a grouped qparam (``qparam_shape(shape, spec)``) back to the 2-D view ``[K, N]``."""
    want = qparam_shape(shape, spec)
    if tuple(jnp.shape(qparam)) != want:
        raise ValueError(f"qparam: expected shape {want} (qparam_shape of {tuple(shape)}), "
                         f"got {tuple(jnp.shape(qparam))}")  # fmt: skip
    K, N = _as2d_shape(tuple(shape))
    if spec.granularity == "tensor":
        return jnp.broadcast_to(qparam, (K, N))
    if spec.granularity == "oc":
        return jnp.repeat(qparam, K // qparam.shape[0], axis=0)
    return jnp.repeat(qparam, N // qparam.shape[1], axis=1)


def _bcast(qparam: jax.Array, spec: QuantSpec, shape2: tuple[int, int]) -> jax.Array:
    """``qparam`` reshaped to broadcast against the group view of a ``[K, N]`` array."""
    K, N = shape2
    if spec.granularity == "tensor":
        return qparam
    if spec.granularity == "oc":
        return qparam[:, None, :]
    return qparam[:, :, None]


# --------------------------------------------------------------------------------------------
# §2.2 parameters from data
# --------------------------------------------------------------------------------------------


def _minmax_from_range(lo, hi, spec: QuantSpec) -> QParams:
    """(s, z) from a range; ``lo, hi`` any (equal) shape. Asymmetric uses ``lo, hi`` as given."""
    if spec.symmetric:
        amax = jnp.maximum(jnp.abs(lo), jnp.abs(hi))
        s = jnp.maximum(amax / spec.qmax, spec.scale_floor)
        return QParams(s, jnp.zeros_like(s))
    levels = 2**spec.bits - 1
    s = jnp.maximum(jnp.maximum(hi - lo, spec.range_floor) / levels, spec.scale_floor)
    z = jnp.clip(jnp.round(-lo / s), 0, levels)
    return QParams(s, z)


def _group_range(view: jax.Array, axis: int, spec: QuantSpec):
    lo = jnp.min(view, axis=axis)
    hi = jnp.max(view, axis=axis)
    if spec.include_zero and not spec.symmetric:
        lo, hi = jnp.minimum(lo, 0.0), jnp.maximum(hi, 0.0)
    return lo, hi


def _fq_view(view, s, z, spec: QuantSpec):
    q = jnp.clip(jnp.round(view / s) + z, spec.qmin, spec.qmax)
    return s * (q - z)


def _lp_err(view, axis, s, z, spec):
    """Σ_group |fq(v) - v|^p with (s, z) of the group shape (broadcast on ``axis``)."""
    se, ze = jnp.expand_dims(s, axis), jnp.expand_dims(z, axis)
    return jnp.sum(jnp.abs(_fq_view(view, se, ze, spec) - view) ** MSE_NORM, axis=axis)


def _search(view, axis, spec, candidates) -> QParams:
    """Scan ``candidates: f[C]``-indexed qparam builders; keep the first strict minimum."""

    def body(best, qp):
        err = _lp_err(view, axis, qp.scale, qp.zero, spec)
        better = err < best[0]
        return (
            jnp.where(better, err, best[0]),
            jnp.where(better, qp.scale, best[1]),
            jnp.where(better, qp.zero, best[2]),
        ), None

    shape = candidates.scale.shape[1:]
    init = (jnp.full(shape, jnp.inf, view.dtype), candidates.scale[0], candidates.zero[0])
    (_, s, z), _ = jax.lax.scan(body, init, candidates)
    return QParams(s, z)


def _qparams_2d(w2: jax.Array, spec: QuantSpec, method: str) -> QParams:
    view, axis = _group_view(w2, spec)
    lo, hi = _group_range(view, axis, spec)
    if method == "minmax":
        return _minmax_from_range(lo, hi, spec)
    if method in ("mse", "mse_gptq"):
        if method == "mse":
            a = jnp.arange(1, 101, dtype=w2.dtype) / 100.0
        else:
            a = 1.0 - jnp.arange(0, 80, dtype=w2.dtype) / 100.0
        cands = jax.vmap(lambda ai: _minmax_from_range(ai * lo, ai * hi, spec))(a)
        return _search(view, axis, spec, cands)
    # mse2d (FlexRound code perform_2D_search / perform_1D_search)
    levels = 2**spec.bits - 1
    frac = jnp.arange(1, 101, dtype=w2.dtype) / 100.0
    if spec.symmetric:
        cands = jax.vmap(lambda ai: _minmax_from_range(ai * lo, ai * hi, spec))(frac)
        return _search(view, axis, spec, cands)
    xmin, xmax = jnp.min(view, axis=axis), jnp.max(view, axis=axis)
    mixed = (xmin < 0) & (xmax > 0)
    amax = jnp.maximum(jnp.abs(xmin), xmax)
    zs = jnp.arange(levels + 1, dtype=w2.dtype)

    def cand2d(f):  # width (hi - lo)·f, every integer zero point
        s = jnp.maximum((xmax - xmin) * f / levels, spec.scale_floor)
        return jax.vmap(lambda z: QParams(s, jnp.broadcast_to(z, s.shape)))(zs)

    def cand1d(f):  # one-sided: [-t, 0] or [0, t], t = amax·f
        t = amax * f
        lo1 = jnp.where(xmin < 0, -t, 0.0)
        hi1 = jnp.where(xmax > 0, t, 0.0)
        return _minmax_from_range(lo1, hi1, spec)

    c2 = jax.vmap(cand2d)(frac)  # [100, Z, ...]
    c2 = QParams(*(x.reshape((-1,) + x.shape[2:]) for x in c2))
    c1 = jax.vmap(cand1d)(frac)
    qp2, qp1 = _search(view, axis, spec, c2), _search(view, axis, spec, c1)
    return QParams(jnp.where(mixed, qp2.scale, qp1.scale), jnp.where(mixed, qp2.zero, qp1.zero))


@functools.partial(jax.jit, static_argnames=("spec", "method"))
def _compute_qparams(w, spec, method):
    w2 = w.reshape(_as2d_shape(w.shape)).astype(_fdtype(w))
    return _qparams_2d(w2, spec, method)


def compute_qparams(w: jax.Array, spec: QuantSpec, method: str = "minmax") -> QParams:
    """Quantizer parameters from data, one (s, z) per group of ``spec``.

    Args:
      w: f32[K, N] (or HWIO, viewed as ``[kh*kw*Cin, Cout]``).
      spec: the quantizer.
      method: ``"minmax"`` (§2.2 formula), ``"mse"`` (shrink ``a = i/100``, i = 1..100),
        ``"mse_gptq"`` (``a = 1 - i/100``, i = 0..79), ``"mse2d"`` (width × every zero point
        for mixed-sign groups, 1-D symmetric shrink for one-sided ones). The MSE searches keep
        the first ``a`` with the smallest ``Σ|fq(v) - v|^2.4`` (strict improvement).

    Returns:
      ``QParams(scale, zero)``, both of ``qparam_shape(w.shape, spec)`` in ``w``'s float dtype
      (at least float32); ``zero`` holds integers.
    """
    check_weight("w", w, spec)
    check_choice("method", method, QPARAM_METHODS)
    return _compute_qparams(jnp.asarray(w), spec, method)


# --------------------------------------------------------------------------------------------
# §2.3 quantize / dequantize / fake-quant / RTN
# --------------------------------------------------------------------------------------------


def _codes_2d(w2, qp: QParams, spec: QuantSpec):
    view, _ = _group_view(w2, spec)
    s, z = _bcast(qp.scale, spec, w2.shape), _bcast(qp.zero, spec, w2.shape)
    q = jnp.clip(jnp.round(view / s) + z, spec.qmin, spec.qmax)
    return q.reshape(w2.shape)


@functools.partial(jax.jit, static_argnames=("spec",))
def _quantize(w, qp, spec):
    return _codes_2d(w.reshape(_as2d_shape(w.shape)), qp, spec).reshape(w.shape).astype(spec.code_dtype)


@functools.partial(jax.jit, static_argnames=("spec",))
def _dequantize(q, qp, spec):
    q2 = q.reshape(_as2d_shape(q.shape)).astype(_fdtype(qp.scale))
    s, z = expand(qp.scale, spec, q2.shape), expand(qp.zero, spec, q2.shape)
    return (s * (q2 - z)).reshape(q.shape)


def fake_quant_raw(w: jax.Array, qp: QParams, spec: QuantSpec) -> jax.Array:
    """Traceable `fake_quant` for use inside other methods' jitted code: only the static checks run
    (``spec``'s type, ``w``'s rank, the qparam shapes); values (finite, positive scales) are not checked."""
    _check_spec(spec)
    if jnp.ndim(w) < 2:
        raise ValueError(f"w: expected a kernel with >= 2 dims ([K, N] or HWIO), got shape {tuple(jnp.shape(w))}")
    want = qparam_shape(tuple(jnp.shape(w)), spec)
    if not isinstance(qp, tuple) or len(qp) != 2 or any(tuple(jnp.shape(v)) != want for v in qp):
        got = [tuple(jnp.shape(v)) for v in qp] if isinstance(qp, tuple) else type(qp).__name__
        raise ValueError(f"qp: expected QParams of shape {want} for a weight of shape {tuple(jnp.shape(w))}, got {got}")
    w2 = w.reshape(_as2d_shape(w.shape))
    view, _ = _group_view(w2, spec)
    s, z = _bcast(qp.scale, spec, w2.shape), _bcast(qp.zero, spec, w2.shape)
    return _fq_view(view, s, z, spec).reshape(w.shape)


_fake_quant = jax.jit(fake_quant_raw, static_argnames=("spec",))


def quantize(w: jax.Array, qp: QParams, spec: QuantSpec) -> jax.Array:
    """Integer codes ``q = clip(round(w/s) + z, qmin, qmax)``.

    w: f32[K, N] (or HWIO); qp: shapes ``qparam_shape(w.shape, spec)``.
    Returns u8[w.shape] (asymmetric) or i8[w.shape] (symmetric).
    """
    check_weight("w", w, spec)
    _check_qparams(qp, tuple(jnp.shape(w)), spec)
    return _quantize(jnp.asarray(w), qp, spec)


def dequantize(q: jax.Array, qp: QParams, spec: QuantSpec) -> jax.Array:
    """``ŵ = s·(q - z)``: float[q.shape] (the scale's float dtype) from codes (u8/i8/any int) and their qparams."""
    _check_spec(spec)
    check_array("q", q, kind="iuf")
    if jnp.ndim(q) < 2:
        raise ValueError(f"q: expected codes with >= 2 dims, got shape {tuple(jnp.shape(q))}")
    _check_qparams(qp, tuple(jnp.shape(q)), spec)
    return _dequantize(jnp.asarray(q), qp, spec)


def fake_quant(w: jax.Array, qp: QParams, spec: QuantSpec) -> jax.Array:
    """``dequantize(quantize(w))`` in float: ``s·(clip(round(w/s) + z, qmin, qmax) - z)``, float[w.shape].

    Equal bit-for-bit to the FlexRound clamp form ``s·clip(round(w/s), -z, qmax - z)``.
    """
    check_weight("w", w, spec)
    _check_qparams(qp, tuple(jnp.shape(w)), spec)
    return _fake_quant(jnp.asarray(w), qp, spec)


def rtn(w: jax.Array, spec: QuantSpec, method: str = "minmax") -> tuple[jax.Array, QParams]:
    """Round-to-nearest: ``qp = compute_qparams(w, spec, method)``; returns ``(quantize(w, qp), qp)``."""
    qp = compute_qparams(w, spec, method)
    return _quantize(jnp.asarray(w), qp, spec), qp


# --------------------------------------------------------------------------------------------
# §3 straight-through estimators
# --------------------------------------------------------------------------------------------


def _check_numeric(name: str, x: Any) -> None:
    dt = getattr(x, "dtype", None)
    if dt is None:
        try:
            dt = np.asarray(x).dtype
        except Exception:
            dt = None
    numeric = dt is not None and (np.dtype(dt).kind in "iuf" or jnp.issubdtype(dt, jnp.floating))
    if not numeric:
        raise ValueError(f"{name}: expected a numeric array, got {type(x).__name__}"
                         + (f" of dtype {dt}" if dt is not None else ""))  # fmt: skip


def round_ste(x: jax.Array) -> jax.Array:
    """``round(x)`` in value (half-to-even), identity in gradient: ``x + sg(round(x) - x)``."""
    _check_numeric("x", x)
    return x + jax.lax.stop_gradient(jnp.round(x) - x)


def floor_ste(x: jax.Array) -> jax.Array:
    """``floor(x)`` in value, identity in gradient."""
    _check_numeric("x", x)
    return x + jax.lax.stop_gradient(jnp.floor(x) - x)


def clip_codes(r: jax.Array, lo: Any, hi: Any) -> jax.Array:
    """``clip(r, lo, hi)`` with torch.clamp's derivative: 1 on the closed range ``[lo, hi]``, 0 outside
    (``jnp.clip`` would give 1/2 at a value equal to a bound). ``lo <= hi`` (checked when concrete)."""
    _check_numeric("r", r)
    if not (is_traced(lo) or is_traced(hi)) and np.any(np.asarray(lo) > np.asarray(hi)):
        raise ValueError(f"lo: expected lo <= hi, got lo={np.asarray(lo)!r} > hi={np.asarray(hi)!r}")
    inside = (r >= lo) & (r <= hi)
    return jnp.where(inside, r, jax.lax.stop_gradient(jnp.clip(r, lo, hi)))


def fake_quant_ste(
    w: jax.Array, qp: QParams, spec: QuantSpec, *, clip_grad: bool = True, learn_qparams: bool = False
) -> jax.Array:
    """Fake quantization with a straight-through ``round``: float[w.shape].

    ``fq = s·(clip(round_ste(w/s) + z, qmin, qmax) - z)``; with ``clip_grad`` the clip keeps its
    true derivative, so ``d fq/d w = 1[qmin <= round(w/s) + z <= qmax]``; without, ``d fq/d w = 1``.
    ``qp`` is ``stop_gradient``-ed unless ``learn_qparams`` (the zero point always is).
    Traceable and unchecked inside a trace; eager calls are validated.
    """
    if not is_traced(w):
        check_weight("w", w, spec)
        _check_qparams(qp, tuple(jnp.shape(w)), spec)
    w2 = w.reshape(_as2d_shape(w.shape))
    view, _ = _group_view(w2, spec)
    s, z = _bcast(qp.scale, spec, w2.shape), _bcast(qp.zero, spec, w2.shape)
    z = jax.lax.stop_gradient(z)
    if not learn_qparams:
        s = jax.lax.stop_gradient(s)
    u = round_ste(view / s) + z
    if clip_grad:
        q = clip_codes(u, spec.qmin, spec.qmax)
    else:
        q = u + jax.lax.stop_gradient(jnp.clip(u, spec.qmin, spec.qmax) - u)
    return (s * (q - z)).reshape(w.shape)


# --------------------------------------------------------------------------------------------
# §4 block-wise output reconstruction
# --------------------------------------------------------------------------------------------

RECON_SCHEDULES = ("cosine", "constant")
RECON_REDUCTIONS = ("sum", "mean", "sum_axis1_mean")


def recon_loss(y: jax.Array, y_tgt: jax.Array, reduction: str = "sum") -> jax.Array:
    """Reconstruction error of a block output ``y: float[B, ..., F]`` against ``y_tgt`` (same shape).

    - ``"sum"`` (default, the papers'): ``mean_{b, ...} Σ_f (y - y_tgt)²``, summed over the output
      features (the last axis; torch's axis 1 for ``[B, F]`` / NCHW, as in BRECQ's ``lp_loss``) and
      averaged over samples (and positions / tokens);
    - ``"mean"``: the mean over every element (= ``"sum"`` / F);
    - ``"sum_axis1_mean"``: a literal ``.sum(1).mean()`` on our layout (for ``[B, T, D]`` LM blocks
      this sums over tokens, as the FlexRound LLM code does on its ``[B, T, D]`` outputs).
    A 1-D ``y: [B]`` has one feature per sample (all three equal the mean). Computes in the inputs'
    float dtype (at least float32).
    """
    check_choice("reduction", reduction, RECON_REDUCTIONS)
    if tuple(jnp.shape(y_tgt)) != tuple(jnp.shape(y)):
        raise ValueError(f"y_tgt: expected the shape of y {tuple(jnp.shape(y))}, got {tuple(jnp.shape(y_tgt))}")
    if jnp.ndim(y) == 0 or jnp.size(y) == 0:
        raise ValueError(f"y: expected a non-empty batch [B, ...], got shape {tuple(jnp.shape(y))}")
    dt = _fdtype(y, y_tgt)
    d2 = jnp.square(jnp.asarray(y, dt) - jnp.asarray(y_tgt, dt))
    if d2.ndim >= 2 and reduction != "mean":
        return jnp.mean(jnp.sum(d2, axis=-1 if reduction == "sum" else 1))
    return jnp.mean(d2)


@functools.partial(
    jax.jit,
    static_argnames=("apply_q", "reg_fn", "steps", "batch_size", "schedule", "reduction", "p_drop"),
)
def _reconstruct(apply_q, qstate0, frozen, x_in, y_tgt, x_fp, lr, key, *, steps, batch_size, schedule,
                 reg_fn, reduction, p_drop):
    from zoo.train import TrainState, scan_steps

    if schedule == "cosine":
        sched = optax.cosine_decay_schedule(lr, steps)
    else:
        sched = optax.constant_schedule(lr)
    opt = optax.adam(sched)
    n = x_in.shape[0]
    k_batch, k_state = jax.random.split(key)

    def batch_fn(step):
        kb = jax.random.fold_in(k_batch, step)
        idx = jax.random.choice(kb, n, (batch_size,), replace=False)
        xb = x_in[idx]
        if x_fp is not None:  # QDrop: per element, FP input with prob p_drop
            keep_fp = jax.random.bernoulli(jax.random.fold_in(kb, 1), p_drop, xb.shape)
            xb = jnp.where(keep_fp, x_fp[idx], xb)
        return xb, y_tgt[idx], step

    def loss_fn(qstate, batch, rng):
        xb, yb, step = batch
        rec = recon_loss(apply_q(qstate, frozen, xb), yb, reduction)
        reg = jnp.zeros((), rec.dtype) if reg_fn is None else jnp.asarray(reg_fn(qstate, step), rec.dtype)
        return rec + reg, {"recon": rec, "reg": reg}

    state = TrainState.create(params=qstate0, optimizer=opt, rng=k_state)
    state, metrics = scan_steps(loss_fn, opt, batch_fn, steps)(state)
    return state.params, metrics


def reconstruct_block(
    apply_q: Callable,
    qstate0: Any,
    frozen: Any,
    x_in: jax.Array,
    y_tgt: jax.Array,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    schedule: str = "cosine",
    key: jax.Array,
    reg_fn: Callable | None = None,
    reduction: str = "sum",
    x_fp: jax.Array | None = None,
    p_drop: float = 0.0,
) -> tuple[Any, dict]:
    """Optimise a block's quantizer state to reproduce its FP outputs (BRECQ-style, spec §4).

        L(φ) = recon_loss(apply_q(φ, frozen, x_b), y_b) + reg_fn(φ, t)

    minimised with Adam for ``steps`` steps (``lax.scan``; learning rate ``lr``, cosine-annealed
    to 0 or constant); each step draws ``batch_size`` distinct calibration rows with
    ``jax.random.choice(fold_in(key, t), Ncal, replace=False)``.

    Args:
      apply_q: ``(qstate, frozen, x: f32[B, ...]) -> f32[B, ...]`` the quantized block forward
        (a static argument: pass a module-level function or one stable object to avoid retraces).
      qstate0: the initial quantizer state (any pytree of float arrays); it is what is learned.
      frozen: a pytree the block needs but does not learn (FP weights, biases, zero points).
      x_in: f32[Ncal, ...] inputs of the block (the quantized prefix's outputs).
      y_tgt: f32[Ncal, ...] targets (the FP block on FP inputs).
      steps, batch_size: positive ints (``batch_size <= Ncal``).
      lr: peak learning rate (> 0; may be a traced value, e.g. vmapped over).
      key: PRNG key (vmap over keys for seeds).
      reg_fn: optional ``(qstate, step: i32[]) -> f32[]`` regulariser (e.g. AdaRound's).
      reduction: ``"sum"`` (the papers': sum over output features, mean over samples), ``"mean"`` or
        ``"sum_axis1_mean"`` (see `recon_loss`).
      x_fp, p_drop: QDrop — per element, use ``x_fp`` (FP-prefix inputs) with probability ``p_drop``.

    Returns:
      ``(qstate, metrics)`` with ``metrics["loss" | "recon" | "reg"]: float[steps]`` (``y_tgt``'s float dtype).
    """
    if not callable(apply_q):
        raise ValueError(f"apply_q: expected a callable (qstate, frozen, x) -> y, got {type(apply_q).__name__}")
    if reg_fn is not None and not callable(reg_fn):
        raise ValueError(f"reg_fn: expected None or a callable (qstate, step) -> scalar, got {type(reg_fn).__name__}")
    for name, v in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    check_choice("schedule", schedule, RECON_SCHEDULES)
    check_choice("reduction", reduction, RECON_REDUCTIONS)
    check_array("x_in", x_in, min_size=1)
    if jnp.ndim(x_in) == 0 or jnp.shape(x_in)[0] == 0:
        raise ValueError("x_in: the calibration set is empty")
    n = jnp.shape(x_in)[0]
    check_array("y_tgt", y_tgt)
    if jnp.ndim(y_tgt) == 0 or jnp.shape(y_tgt)[0] != n:
        raise ValueError(f"y_tgt: expected {n} rows like x_in, got shape {tuple(jnp.shape(y_tgt))}")
    if batch_size > n:
        raise ValueError(f"batch_size: expected at most the calibration size {n}, got {batch_size}")
    if not is_traced(lr):
        check_range("lr", float(lr), low=0.0, low_inclusive=False)
    check_range("p_drop", p_drop, low=0.0, high=1.0)
    if x_fp is not None:
        check_array("x_fp", x_fp, shape=tuple(jnp.shape(x_in)))
    for leaf in jax.tree.leaves(qstate0):
        check_array("qstate0", leaf)
    return _reconstruct(
        apply_q, qstate0, frozen, x_in, y_tgt, x_fp if p_drop > 0 else None, jnp.asarray(lr, _fdtype(y_tgt)), key,
        steps=int(steps), batch_size=int(batch_size), schedule=schedule, reg_fn=reg_fn, reduction=reduction,
        p_drop=float(p_drop),
    )


__all__ = [
    "QParams", "QuantSpec", "check_weight", "clip_codes", "compute_qparams", "dequantize", "expand", "fake_quant",
    "fake_quant_raw", "fake_quant_ste", "floor_ste", "qparam_shape", "quantize", "recon_loss", "reconstruct_block",
    "round_ste", "rtn",
]
