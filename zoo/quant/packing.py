"""int4/int8 storage of quantized dense layers and quantization plans over Flax params (spec §6).
Built on ``zoo.quant.core``. Dequantized values follow the scales' float dtype (at least float32).

Packing (the contract with ``zoo.kernels.dequant_matmul``):

    u32 container: qweight[r, n] = Σ_{j<8} q[8r + j, n] << 4j      (AutoGPTQ ``qweight`` layout) -> `pack_int4`
    u8  container: qweight[r, n] = q[2r, n] | q[2r + 1, n] << 4                                  -> `pack_int4`
    inverse: q[8r + j, n] = (qweight[r, n] >> 4j) & 0xF                                            -> `unpack_int4`

Quantized dense layer (`QuantizedLinear`), ``W: [K, N]`` Flax layout, codes unsigned:

    ŵ[k, n] = scales[G(k), n]·(q[k, n] - zeros[G(k), n])      oc groups, G(k) = k // g or g_idx[k]
    ŵ[k, n] = scales[k, n // g]·(q[k, n] - zeros[k, n // g])   ic groups
    y = x[:, perm] @ ŵ + b   (``perm`` = stored row order; None = identity)  -> `dequantize_linear`, `QuantizedLinear.apply`

Plans: a plan maps a parameter path (``"Dense_0/kernel"``) and its array to a `QuantSpec` or
``None`` (leave in float) -> `make_plan`; `apply_plan` fake-quantizes (``mode="fake"``) or packs
(``mode="packed"``) every selected leaf; `dequantize_params` turns packed leaves back into arrays.

Ours: symmetric (signed) codes are stored offset by ``2^(b-1)`` with that offset as the zero
point, so storage is always unsigned; quantizers with ``bits <= 4`` use the 4-bit container,
``bits in 5..8`` the 8-bit one (``QuantizedLinear.bits`` is the container width); act-order
layers whose groups are not contiguous are stored with their rows permuted so they are
(``perm = argsort(g_idx)``), and the activations are permuted instead. AutoGPTQ's v1
"stored zero = z - 1" is undone by `from_autogptq`, never reproduced.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_float_dtype, is_traced
from zoo.quant.core import (
    QParams,
    QuantSpec,
    QPARAM_METHODS,
    _check_spec,
    _fdtype,
    check_weight,
    compute_qparams,
    fake_quant,
    qparam_shape,
    quantize,
)

CONTAINERS = ("u32", "u8")
_PER_WORD = {"u32": 8, "u8": 2}
_DTYPE = {"u32": jnp.uint32, "u8": jnp.uint8}


# --------------------------------------------------------------------------------------------
# int4 packing
# --------------------------------------------------------------------------------------------


def _check_codes(name, q, high):
    check_array(name, q, ndim=2, kind="iu")
    if not is_traced(q):
        qn = np.asarray(q)
        if qn.size and (qn.min() < 0 or qn.max() > high):
            raise ValueError(f"{name}: expected codes in [0, {high}], got values in [{qn.min()}, {qn.max()}]")


@jax.jit
def _pack_u32(q):
    K, N = q.shape
    nib = q.astype(jnp.uint32).reshape(K // 8, 8, N)
    shifts = (4 * jnp.arange(8, dtype=jnp.uint32))[None, :, None]
    # disjoint bit fields: the sum is a bitwise or
    return jnp.sum(nib << shifts, axis=1, dtype=jnp.uint32)


@jax.jit
def _pack_u8(q):
    K, N = q.shape
    nib = q.astype(jnp.uint8).reshape(K // 2, 2, N)
    return nib[:, 0] | (nib[:, 1] << 4)


def pack_int4(q: jax.Array, *, container: str = "u32") -> jax.Array:
    """Pack 4-bit codes along K: ``q: u8[K, N]`` (values 0..15) -> ``u32[K/8, N]`` or ``u8[K/2, N]``.

    Row ``k = P·r + j`` (P = 8 per u32 word, 2 per byte) lands in word ``r`` at bits ``[4j, 4j + 4)``.
    """
    check_choice("container", container, CONTAINERS)
    _check_codes("q", q, 15)
    K = jnp.shape(q)[0]
    per = _PER_WORD[container]
    if K % per:
        raise ValueError(f"q: K={K} rows must be a multiple of {per} to pack into the {container} container")
    return (_pack_u32 if container == "u32" else _pack_u8)(jnp.asarray(q))


@jax.jit
def _unpack(p):
    per = 8 if p.dtype == jnp.uint32 else 2
    R, N = p.shape
    shifts = (4 * jnp.arange(per, dtype=p.dtype))[None, :, None]
    nib = (p[:, None, :] >> shifts) & jnp.asarray(0xF, p.dtype)
    return nib.reshape(R * per, N).astype(jnp.uint8)


def unpack_int4(packed: jax.Array) -> jax.Array:
    """Inverse of `pack_int4`: ``u32[K/8, N]`` or ``u8[K/2, N]`` (container from the dtype) -> ``u8[K, N]``."""
    check_array("packed", packed, ndim=2)
    if jnp.dtype(packed.dtype) not in (jnp.dtype(jnp.uint32), jnp.dtype(jnp.uint8)):
        raise ValueError(f"packed: expected dtype uint32 or uint8 (packed int4), got {packed.dtype}")
    return _unpack(jnp.asarray(packed))


# --------------------------------------------------------------------------------------------
# QuantizedLinear
# --------------------------------------------------------------------------------------------


@flax.struct.dataclass
class QuantizedLinear:
    """A quantized dense layer ``y = x @ ŵ + b`` as a pytree (module docstring for ŵ).

    Fields:
      qweight: u32[K/8, N] or u8[K/2, N] (bits = 4, packed, see `pack_int4`) | u8[K, N] (bits = 8).
      scales: f16|bf16|f32 [G, N] (oc groups, G = K/g; per-column G = 1) or [K, N/g] (ic groups).
      zeros: u8, same shape as ``scales`` (integer zero points, unpacked).
      g_idx: i32[K] group of each *stored* row for non-contiguous oc groups, else None.
      bias: f[N] | None.
      perm: i32[K] | None; stored row k holds original row ``perm[k]`` (act-order storage).
      bits: static container width, 4 or 8.
      group_axis: static, ``"oc"`` or ``"ic"``.
    """

    qweight: jax.Array
    scales: jax.Array
    zeros: jax.Array
    g_idx: jax.Array | None = None
    bias: jax.Array | None = None
    perm: jax.Array | None = None
    bits: int = flax.struct.field(pytree_node=False, default=4)
    group_axis: str = flax.struct.field(pytree_node=False, default="oc")

    @property
    def shape(self) -> tuple[int, int]:
        """``(K, N)`` of the dense kernel."""
        R, N = self.qweight.shape
        if self.bits == 8:
            return R, N
        return R * (8 if self.qweight.dtype == jnp.uint32 else 2), N

    @property
    def group_size(self) -> int:
        K, N = self.shape
        return K // self.scales.shape[0] if self.group_axis == "oc" else N // self.scales.shape[1]

    def apply(self, x: jax.Array, *, use_kernel: bool = False) -> jax.Array:
        """``x: f[..., K] -> f[..., N]``: ``x[..., perm] @ ŵ_stored + b`` in the promoted float dtype of ``x``
        and the scales (at least float32), cast to ``x.dtype``.

        ``use_kernel=True`` runs `zoo.kernels.dequant_matmul` (dequantized inside the matmul tiles;
        interpret mode on CPU) on the stored codes instead of materialising ``ŵ``.
        """
        check_array("x", x, kind="iuf", finite=False)
        K, N = self.shape
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != K:
            raise ValueError(f"x: expected last dim K={K} (the layer's input features), "
                             f"got shape {tuple(jnp.shape(x))}")  # fmt: skip
        xs = x if self.perm is None else jnp.take(x, self.perm, axis=-1)
        dt = _fdtype(x, self.scales)
        if use_kernel:
            from zoo.kernels.dequant_matmul import dequant_matmul

            gs = self.group_size
            group_size = None if (self.group_axis == "oc" and gs == K) else gs
            # the kernel computes in float32 (its contract), whatever x's dtype
            y = dequant_matmul(xs.reshape(-1, K).astype(jnp.float32), self.qweight, self.scales, self.zeros,
                               bits=self.bits, group_size=group_size, group_axis=self.group_axis)  # fmt: skip
            y = y.reshape(*x.shape[:-1], N)
        else:
            y = xs.astype(dt) @ dequantize_linear(self, stored=True).astype(dt)
        if self.bias is not None:
            y = y + self.bias.astype(y.dtype)
        return y.astype(x.dtype)

    __call__ = apply


def storage_bits(bits: int) -> int:
    """Container width for a quantizer of ``bits``: 4 for 2..4, 8 for 5..8."""
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 2 <= bits <= 8:
        raise ValueError(f"bits: expected an int in [2, 8], got {bits!r}")
    return 4 if bits <= 4 else 8


def dequantize_linear(ql: QuantizedLinear, *, stored: bool = False) -> jax.Array:
    """The jnp reference dequantization: float[K, N] (the scales' float dtype, at least float32).

    ``stored=False`` (default): rows in the original order, so ``x @ dequantize_linear(ql) + b``
    is the layer's output. ``stored=True``: rows as stored (``perm`` order), what a kernel
    multiplies ``x[:, perm]`` with.
    """
    if not isinstance(ql, QuantizedLinear):
        raise ValueError(f"ql: expected a QuantizedLinear, got {type(ql).__name__}")
    dt = _fdtype(ql.scales)
    q = unpack_int4(ql.qweight) if ql.bits == 4 else ql.qweight
    q = q.astype(dt)
    K, N = q.shape
    s, z = ql.scales.astype(dt), ql.zeros.astype(dt)
    if ql.group_axis == "oc":
        if ql.g_idx is not None:
            s, z = s[ql.g_idx], z[ql.g_idx]
        else:
            rep = K // s.shape[0]
            s, z = jnp.repeat(s, rep, axis=0), jnp.repeat(z, rep, axis=0)
    else:
        rep = N // s.shape[1]
        s, z = jnp.repeat(s, rep, axis=1), jnp.repeat(z, rep, axis=1)
    w = s * (q - z)
    if ql.perm is not None and not stored:
        w = w[jnp.argsort(ql.perm)]
    return w


def _is_contiguous(g_idx: np.ndarray, G: int) -> bool:
    K = g_idx.shape[0]
    return K % G == 0 and np.array_equal(g_idx, np.arange(K) // (K // G))


def quantized_linear(
    codes: jax.Array,
    qparams: QParams,
    spec: QuantSpec,
    *,
    g_idx: jax.Array | None = None,
    bias: jax.Array | None = None,
    scale_dtype: Any = None,
    container: str = "u32",
) -> QuantizedLinear:
    """Build a `QuantizedLinear` from codes ``[K, N]`` and their qparams (from `rtn`, `gptq_quantize`, ...).

    Args:
      codes: u8/i8[K, N] in the original row order; qparams: shapes per ``spec`` (``oc`` groups:
        ``[G, N]``, row k uses ``qparams[g_idx[k]]``).
      g_idx: i32[K] for oc groups that are not ``k // g`` (GPTQ act-order with dynamic groups);
        the rows are then stored permuted by ``perm = argsort(g_idx)`` so groups are contiguous.
      bias: f[N] | None. scale_dtype: storage dtype of the scales (None: their float dtype, at least
        float32). container: ``"u32"`` | ``"u8"`` (4-bit).
    Eager only (reads ``g_idx`` on the host).
    """
    _check_spec(spec)
    check_choice("container", container, CONTAINERS)
    check_array("codes", codes, ndim=2, kind="iu")
    K, N = jnp.shape(codes)
    if not (isinstance(qparams, tuple) and len(qparams) == 2):
        raise ValueError(f"qparams: expected QParams(scale, zero), got {type(qparams).__name__}")
    want = qparam_shape((K, N), spec)
    for f, v in zip(("scale", "zero"), qparams):
        if tuple(jnp.shape(v)) != tuple(want):
            raise ValueError(f"qparams.{f}: expected shape {tuple(want)} for codes of shape {(K, N)}, got "
                             f"{tuple(jnp.shape(v))}")  # fmt: skip
        check_array(f"qparams.{f}", v)
    dt = _fdtype(qparams.scale)
    scale_dtype = dt if scale_dtype is None else scale_dtype
    q = jnp.asarray(codes).astype(jnp.int32)
    s, z = jnp.asarray(qparams.scale, dt), jnp.asarray(qparams.zero, dt)
    if spec.symmetric:  # signed -> unsigned with the offset as zero point
        off = 2 ** (spec.bits - 1)
        q, z = q + off, z + off
    axis = "ic" if spec.granularity == "ic" else "oc"
    if spec.granularity == "tensor":
        s, z = jnp.broadcast_to(s, (1, N)), jnp.broadcast_to(z, (1, N))
    perm = None
    if g_idx is not None and axis == "oc":
        check_array("g_idx", g_idx, shape=(K,), kind="iu")
        gi = np.asarray(g_idx)
        if not _is_contiguous(gi, s.shape[0]):
            perm_np = np.argsort(gi, kind="stable")
            if not _is_contiguous(gi[perm_np], s.shape[0]):
                raise ValueError("g_idx: groups must all have K/G rows")
            perm = jnp.asarray(perm_np, jnp.int32)
            q = q[perm]
    bits = storage_bits(spec.bits)
    if bits == 4:
        if K % _PER_WORD[container]:
            raise ValueError(f"codes: K={K} must be a multiple of {_PER_WORD[container]} for 4-bit packing")
        qweight = pack_int4(q.astype(jnp.uint8), container=container)
    else:
        qweight = q.astype(jnp.uint8)
    if bias is not None:
        check_array("bias", bias, shape=(N,))
    return QuantizedLinear(
        qweight=qweight, scales=s.astype(scale_dtype), zeros=z.astype(jnp.uint8), g_idx=None,
        bias=None if bias is None else jnp.asarray(bias), perm=perm, bits=bits, group_axis=axis,
    )


def from_gptq(res: Any, spec: QuantSpec, **kw) -> QuantizedLinear:
    """`quantized_linear` from a `GPTQResult` (passes its ``g_idx`` for oc groups)."""
    if not all(hasattr(res, f) for f in ("codes", "qparams", "g_idx")):
        raise ValueError(f"res: expected a GPTQResult (codes, qparams, g_idx), got {type(res).__name__}")
    _check_spec(spec)
    g_idx = res.g_idx if (spec.granularity == "oc" and spec.group_size != -1) else None
    return quantized_linear(res.codes, res.qparams, spec, g_idx=g_idx, **kw)


def from_autogptq(qweight, qzeros, scales, g_idx=None, *, bias=None, v1: bool = True) -> QuantizedLinear:
    """Import AutoGPTQ buffers (torch layout already transposed by their packer: ``qweight: i32[K/8, N]``,
    ``qzeros: i32[G, N/8]`` packed along N, ``scales: [G, N]``, ``g_idx: i32[K]``). ``v1`` adds
    back the 1 that AutoGPTQ's v1 format subtracts from every stored zero point."""
    check_array("qweight", qweight, ndim=2, kind="iu")
    check_array("qzeros", qzeros, ndim=2, kind="iu")
    check_array("scales", scales, ndim=2)
    G = jnp.shape(scales)[0]
    if jnp.shape(qzeros) != (G, jnp.shape(scales)[1] // 8) or jnp.shape(scales)[1] % 8:
        raise ValueError(f"qzeros: expected shape ({G}, N/8) with N={jnp.shape(scales)[1]} a multiple of 8 "
                         f"(scales' shape {tuple(jnp.shape(scales))}), got {tuple(jnp.shape(qzeros))}")  # fmt: skip
    if jnp.shape(qweight)[1] != jnp.shape(scales)[1]:
        raise ValueError(f"qweight: expected N={jnp.shape(scales)[1]} columns like scales, got shape "
                         f"{tuple(jnp.shape(qweight))}")  # fmt: skip
    if g_idx is not None:
        check_array("g_idx", g_idx, shape=(8 * jnp.shape(qweight)[0],), kind="iu")
        gi_np = np.asarray(g_idx)
        if gi_np.size and (gi_np.min() < 0 or gi_np.max() >= G):
            raise ValueError(f"g_idx: expected group ids in [0, {G}), got values in [{gi_np.min()}, {gi_np.max()}]")
    qw = jax.lax.bitcast_convert_type(jnp.asarray(qweight, jnp.int32), jnp.uint32)
    qz = jax.lax.bitcast_convert_type(jnp.asarray(qzeros, jnp.int32), jnp.uint32)
    z = unpack_int4(qz.T).T.astype(jnp.int32) + (1 if v1 else 0)  # packed along N: transpose, unpack rows
    gi = None if g_idx is None else np.asarray(g_idx)
    perm = None
    if gi is not None and not _is_contiguous(gi, G):
        perm_np = np.argsort(gi, kind="stable")
        perm = jnp.asarray(perm_np, jnp.int32)
        qw = pack_int4(unpack_int4(qw)[perm], container="u32")
    return QuantizedLinear(
        qweight=qw, scales=jnp.asarray(scales), zeros=z.astype(jnp.uint8), g_idx=None,
        bias=None if bias is None else jnp.asarray(bias), perm=perm, bits=4, group_axis="oc",
    )


# --------------------------------------------------------------------------------------------
# plans over Flax params pytrees
# --------------------------------------------------------------------------------------------

QuantPlan = Callable[[str, jax.Array], "QuantSpec | None"]
PLAN_MODES = ("fake", "packed")


def path_str(path: Sequence[Any]) -> str:
    """A ``jax.tree_util`` key path as ``"Dense_0/kernel"``."""
    if isinstance(path, str) or not isinstance(path, Sequence):
        raise ValueError(f"path: expected a sequence of jax.tree_util keys, got {type(path).__name__}")
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def is_kernel(path: str, x: Any) -> bool:
    """Default filter: a leaf named ``kernel`` with >= 2 dims (Flax Dense / Conv weights)."""
    if not isinstance(path, str):
        raise ValueError(f"path: expected a '/'-joined str (see path_str), got {type(path).__name__}")
    return path.split("/")[-1] == "kernel" and jnp.ndim(x) >= 2


def make_plan(
    rules: Mapping[str, QuantSpec | None] | Sequence[tuple[str, QuantSpec | None]] = (),
    *,
    default: QuantSpec | None = None,
    where: Callable[[str, Any], bool] = is_kernel,
) -> QuantPlan:
    """A plan ``(path, x) -> QuantSpec | None``: leaves failing ``where`` stay float; otherwise the
    first rule whose regex ``re.search``-es the path decides (``None`` = keep float, e.g.
    ``{"head": QuantSpec(bits=8)}``), else ``default``."""
    items = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
    if not callable(where):
        raise ValueError(f"where: expected a callable (path, x) -> bool, got {type(where).__name__}")
    compiled = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"rules: expected (regex str, QuantSpec | None) pairs, got {item!r}")
        pat, spec = item
        if spec is not None:
            _check_spec(spec)
        try:
            compiled.append((re.compile(pat), spec))
        except re.error as e:
            raise ValueError(f"rules: bad regex {pat!r}: {e}") from e
    if default is not None:
        _check_spec(default)

    def plan(path: str, x: Any) -> QuantSpec | None:
        if not where(path, x):
            return None
        for rx, spec in compiled:
            if rx.search(path):
                return spec
        return default

    return plan


def _as_plan(plan: Any) -> QuantPlan:
    if isinstance(plan, QuantSpec):
        return make_plan(default=plan)
    if isinstance(plan, Mapping):
        return make_plan(plan)
    if callable(plan):
        return plan
    raise ValueError(f"plan: expected a QuantSpec, a mapping regex -> QuantSpec, or a callable, got {type(plan).__name__}")


def apply_plan(
    params: Any,
    plan: Any,
    *,
    method: str = "minmax",
    mode: str = "fake",
    scale_dtype: Any = None,
) -> Any:
    """Quantize the selected leaves of a params pytree with RTN (``compute_qparams(method)``).

    Args:
      params: any pytree (e.g. Flax ``{"params": {...}}``).
      plan: a `QuantSpec` (every kernel), a mapping ``regex -> QuantSpec | None``, or a callable
        ``(path, x) -> QuantSpec | None`` (see `make_plan`).
      method: qparams search (``"minmax" | "mse" | "mse_gptq" | "mse2d"``).
      mode: ``"fake"`` -> same structure, selected leaves replaced by ``ŵ`` (same dtype), ready
        for ``model.apply``; ``"packed"`` -> selected 2-D leaves replaced by `QuantizedLinear`
        (HWIO kernels are packed as their ``[kh*kw*Cin, Cout]`` view; `dequantize_params`
        restores the shape only for 2-D leaves, so pack convs only for storage).
    """
    check_choice("mode", mode, PLAN_MODES)
    check_choice("method", method, QPARAM_METHODS)
    plan = _as_plan(plan)

    def one(path, x):
        p = path_str(path)
        spec = plan(p, x)
        if spec is None:
            return x
        check_weight(p, x, spec)
        qp = compute_qparams(x, spec, method)
        if mode == "fake":
            return fake_quant(x, qp, spec).astype(x.dtype)
        w2 = jnp.asarray(x).reshape(-1, jnp.shape(x)[-1])
        return quantized_linear(quantize(w2, qp, spec), qp, spec, scale_dtype=scale_dtype)

    return jax.tree_util.tree_map_with_path(one, params)


def dequantize_params(params: Any, dtype: Any = None) -> Any:
    """Replace every `QuantizedLinear` leaf by ``dequantize_linear(leaf).astype(dtype)`` (None: keep the
    dequantized float dtype, that of the scales promoted to at least float32)."""
    if dtype is not None:
        check_float_dtype("dtype", dtype)
    return jax.tree_util.tree_map(
        lambda x: (dequantize_linear(x) if dtype is None else dequantize_linear(x).astype(dtype))
        if isinstance(x, QuantizedLinear) else x,
        params,
        is_leaf=lambda x: isinstance(x, QuantizedLinear),
    )
