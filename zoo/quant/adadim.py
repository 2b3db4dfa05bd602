"""AdaDim: per-IC group quantization and the adaptive choice of the grouping dimension.

Jung Hwan Heo, Jeonghoon Kim, Beomseok Kwon, Byeongwook Kim, Se Jung Kwon, Dongsoo Lee,
"Rethinking Channel Dimensions to Isolate Outliers for Low-bit Weight Quantization of Large
Language Models", ICLR 2024, arXiv 2309.15531. Spec: papers/adadim.md; toolkit: `zoo.quant.core`.

Layout: Flax ``W: f32[K, N]`` (K = input channels "IC", N = output channels "OC"), ``y = x @ W``.
  per-OC, group g: g consecutive rows of one column, qparams ``[K/g, N]`` (the usual group-wise)
  per-IC, group g: g consecutive columns of one row, qparams ``[K, N/g]`` (AdaDim's)

Equations -> functions:
  RTN with grouping d, style "awq" (lo = min, hi = max, hi − lo ≥ 1e-5) or "gptq" (0 in range)
                                                                      -> `group_rtn`, `quant_spec`
  d* = argmin_{d ∈ (oc, ic)} mean ‖F_n(X; W) − F_n(X; Q_d(W))‖² (ties -> oc)   -> `dim_errors`, `select_dim`
  RTN-ada: Ŵ = Q_{d*}(W)                                               -> `rtn_ada`
  GPTQ-ada: H = (2/n) Σ x xᵀ; d* by the RTN proxy; GPTQ with d* (oc: act-order + static groups;
            ic: act-order, per-row qparams from the error-compensated row)  -> `gptq_dim`, `gptq_ada`
  block loop: layers in module order, greedy (earlier layers of the sub-block already quantized),
            inputs from the FP model (no quantized-prefix propagation)     -> `quantize_blocks`
  Q_ic(D W) = D Q_ic(W), Q_oc(W D) = Q_oc(W) D for positive diagonal D  (tested)

Everything is traceable: the choice is an index ``i32[]`` into ``DIMS = ("oc", "ic")`` (or the
``candidates`` given) and the quantized weight is selected with ``jnp.where``, so whole runs
``jit`` and ``vmap`` over calibration seeds; `select_dim` is the eager wrapper returning a name.

Choices that are ours: the default quantizer style is "gptq" (zero in range) everywhere, which is exact
on constant groups; ``parity_mode=True`` reproduces the official mismatch (AWQ-style RTN, i.e. the RTN
baseline, RTN-ada and the selection proxy alike, and per-IC GPTQ; GPTQ-style per-OC GPTQ) and warns
(``RuntimeWarning``, eager calls only) when a kernel has constant nonzero groups, which the AWQ-style
quantizer collapses (spec §7). Dtypes: the dequantized weights, errors and Hessians follow the
kernel's float dtype (at least float32). Functions return the dequantized weight (and the choice) rather than a
packed ``QuantizedLinear``: the qparam shape depends on the (traced) choice. Pack with
`zoo.quant.core` once the choice is concrete.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, is_traced
from zoo.quant import core
from zoo.quant.core import QParams, QuantSpec
from zoo.quant.gptq import gptq_quantize, hessian_init, hessian_update

Dim = Literal["oc", "ic"]
DIMS = ("oc", "ic")
STYLES = ("awq", "gptq")
METHODS = ("rtn", "gptq", "rtn_ada", "gptq_ada")
AWQ_RANGE_FLOOR = 1e-5


def quant_spec(bits: int, group_size: int, dim: str, style: str = "gptq") -> QuantSpec:
    """The asymmetric min-max quantizer of one grouping: ``style="awq"`` (official RTN path:
    zero not forced into the range, ``hi − lo ≥ 1e-5``) or ``"gptq"`` (zero in the range)."""
    check_choice("dim", dim, DIMS)
    check_choice("style", style, STYLES)
    for name, v in (("bits", bits), ("group_size", group_size)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{name}: expected an int, got {v!r}")
    check_range("bits", bits, low=2, high=8)
    if group_size != -1 and group_size < 1:
        raise ValueError(f"group_size: expected -1 (whole axis) or a positive int, got {group_size}")
    if style == "awq":
        return QuantSpec(bits=bits, granularity=dim, group_size=group_size, include_zero=False,
                         range_floor=AWQ_RANGE_FLOOR)  # fmt: skip
    return QuantSpec(bits=bits, granularity=dim, group_size=group_size, include_zero=True)


def _check_w(w, bits, group_size, dims=DIMS, style="gptq"):
    check_array("w", w, ndim=2)
    for d in dims:
        check_choice("dim", d, DIMS)
        core.check_weight("w", w, quant_spec(bits, group_size, d, style))


def _check_x(x, K):
    check_array("x", x, ndim=2)
    if x.shape[0] == 0:
        raise ValueError("x: the calibration set is empty")
    if x.shape[-1] != K:
        raise ValueError(f"x: expected {K} input features (w.shape[0]), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("x: the calibration set is empty")


def _warn_constant_groups(w, bits: int, group_size: int, where: str) -> None:
    """Parity mode: warn when an AWQ-style group of ``w`` (either dim) is constant and nonzero
    (``hi − lo < 1e-5``), which that quantizer collapses to about ±1e-5 (spec §7)."""
    if is_traced(w):
        return
    wn = np.asarray(w, np.float64)
    K, N = wn.shape
    found = []
    for d, view in (("oc", wn.T), ("ic", wn)):  # rows of view = groups' parent axis
        g = view.shape[1] if group_size == -1 else group_size
        if view.shape[1] % g:
            continue
        grp = view.reshape(view.shape[0], -1, g)
        const = (grp.max(-1) - grp.min(-1) < AWQ_RANGE_FLOOR) & (np.abs(grp).max(-1) > 0)
        if const.any():
            found.append(f"{int(const.sum())} per-{d} group(s)")
    if found:
        warnings.warn(
            f"w: {where}: parity_mode uses the AWQ-style quantizer, which collapses constant nonzero groups "
            f"(hi - lo < {AWQ_RANGE_FLOOR:g}) to about ±{AWQ_RANGE_FLOOR:g}; found {', '.join(found)} "
            "(the default style='gptq', parity_mode=False, is exact on them)",
            RuntimeWarning, stacklevel=3,
        )


def _fq(w, spec):
    """Traceable min-max RTN fake-quant."""
    return core.fake_quant_raw(w, core._compute_qparams(w, spec, "minmax"), spec)


def group_rtn(w: jax.Array, *, bits: int, group_size: int, dim: str, style: str = "gptq") -> tuple[jax.Array, QParams]:
    """RTN with grouping ``dim``: ``(Ŵ: f32[K, N], QParams)``, qparams ``[K/g, N]`` (oc) or ``[K, N/g]`` (ic).

    ``group_rtn(w, dim="ic") == group_rtn(w.T, dim="oc")`` transposed (the official code transposes).
    """
    check_choice("dim", dim, DIMS)
    spec = quant_spec(bits, group_size, dim, style)
    check_array("w", w, ndim=2)
    core.check_weight("w", w, spec)
    w = jnp.asarray(w, core._fdtype(w))
    qp = core.compute_qparams(w, spec, "minmax")
    return core.fake_quant_raw(w, qp, spec), qp


def _linear(x, w):
    return x @ w


def dim_errors(w: jax.Array, x: jax.Array, *, bits: int, group_size: int,
               sub_block: Callable[[jax.Array], jax.Array] | None = None,
               candidates: Sequence[str] = DIMS, style: str = "gptq") -> jax.Array:  # fmt: skip
    """``f32[len(candidates)]``: ``mean ‖F(W) − F(Q_d(W))‖²`` per candidate grouping (RTN proxy).

    ``sub_block(W')`` returns ``F_n`` with ``W'`` substituted (closing over its calibration inputs and the
    current, partially quantized sibling layers); None -> the linear output ``x @ W'``. Traceable
    (eager calls are validated).
    """
    if not candidates:
        raise ValueError("candidates: expected at least one dim")
    if sub_block is not None and not callable(sub_block):
        raise ValueError(f"sub_block: expected None or a callable W' -> F(W'), got {type(sub_block).__name__}")
    if not is_traced(w):
        _check_w(w, bits, group_size, tuple(candidates), style)
        if (x is not None or sub_block is None) and not is_traced(x):
            _check_x(x, w.shape[0])
    F = sub_block if sub_block is not None else (lambda wq: x @ wq)
    ref = F(w)
    errs = [jnp.mean((F(_fq(w, quant_spec(bits, group_size, d, style))) - ref) ** 2) for d in candidates]
    return jnp.stack(errs)


def _argmin_first(errs):
    """Index of the smallest error; ties -> the first (so ``oc`` with the default candidates)."""
    return jnp.argmin(errs).astype(jnp.int32)  # argmin returns the first minimum


def select_dim(w: jax.Array, x: jax.Array, *, bits: int, group_size: int,
               sub_block: Callable[[jax.Array], jax.Array] | None = None,
               candidates: Sequence[str] = DIMS, style: str = "gptq") -> tuple[str, dict[str, jax.Array]]:  # fmt: skip
    """Eager AdaDim selection: ``(d*, {d: error})`` with ``d* = argmin`` (ties -> the first candidate, ``oc``)."""
    if not candidates:
        raise ValueError("candidates: expected at least one dim")
    _check_w(w, bits, group_size, tuple(candidates), style)
    _check_x(x, w.shape[0])
    dt = core._fdtype(w, x)
    errs = dim_errors(jnp.asarray(w, dt), jnp.asarray(x, dt), bits=bits, group_size=group_size,
                      sub_block=sub_block, candidates=tuple(candidates), style=style)  # fmt: skip
    errs = np.asarray(errs)
    return candidates[int(np.argmin(errs))], {d: float(e) for d, e in zip(candidates, errs)}


class AdaDimResult(NamedTuple):
    """``dim: i32[]`` (index into ``DIMS``), ``w_hat: f32[K, N]`` (dequantized), ``errors: f32[2]`` (RTN proxy)."""

    dim: jax.Array
    w_hat: jax.Array
    errors: jax.Array


def rtn_ada(w: jax.Array, x: jax.Array, *, bits: int, group_size: int,
            sub_block: Callable[[jax.Array], jax.Array] | None = None, style: str = "gptq") -> AdaDimResult:  # fmt: skip
    """RTN-ada: RTN with the grouping of smallest sub-block error. Traceable."""
    if not is_traced(w):
        _check_w(w, bits, group_size, DIMS, style)
        _check_x(x, w.shape[0])
    w = jnp.asarray(w, core._fdtype(w))
    errs = dim_errors(w, x, bits=bits, group_size=group_size, sub_block=sub_block, style=style)
    d = _argmin_first(errs)
    w_oc, w_ic = (_fq(w, quant_spec(bits, group_size, dd, style)) for dd in DIMS)
    return AdaDimResult(d, jnp.where(d == 0, w_oc, w_ic), errs)


def hessian(x: jax.Array) -> jax.Array:
    """``H = (2/n) Σ_t x_t x_tᵀ: float[K, K]`` from ``x: float[n, K]`` (`zoo.quant.gptq.hessian_update` from
    zero, in ``x``'s float dtype)."""
    if not is_traced(x):
        check_array("x", x, ndim=2)
    if jnp.ndim(x) != 2:
        raise ValueError(f"x: expected a 2-D [n, K] calibration batch, got shape {tuple(jnp.shape(x))}")
    H, n = hessian_init(int(jnp.shape(x)[-1]), core._fdtype(x))
    return hessian_update(H, n, x)[0]


def gptq_dim(w: jax.Array, H: jax.Array, *, bits: int, group_size: int, dim: str, style: str = "gptq",
             act_order: bool = True, blocksize: int = 128, percdamp: float = 0.01) -> jax.Array:  # fmt: skip
    """GPTQ with grouping ``dim`` (spec §2.4): ``oc`` -> act-order + static groups (qparams of the
    original W per group of input channels); ``ic`` -> act-order, each row quantized with per-IC groups
    computed from the current, error-compensated row. Returns ``Ŵ: float[K, N]``."""
    spec = quant_spec(bits, group_size, dim, style)
    res = gptq_quantize(w, H, spec, blocksize=blocksize, percdamp=percdamp, act_order=act_order,
                             static_groups=dim == "oc" and act_order)  # fmt: skip
    return res.w_hat


def gptq_ada(w: jax.Array, x: jax.Array, *, bits: int, group_size: int,
             sub_block: Callable[[jax.Array], jax.Array] | None = None, act_order: bool = True,
             blocksize: int = 128, percdamp: float = 0.01, select_with: str = "rtn", style: str = "gptq",
             parity_mode: bool = False) -> AdaDimResult:  # fmt: skip
    """GPTQ-ada: choose the grouping with the RTN proxy (``select_with="gptq"``: with GPTQ itself, an
    extension), then run GPTQ with it. ``parity_mode``: AWQ-style proxy and per-IC GPTQ, GPTQ-style
    per-OC GPTQ (the official code's mix). Traceable (both GPTQ runs are computed, one is kept)."""
    check_choice("select_with", select_with, ("rtn", "gptq"))
    if not is_traced(w):
        _check_w(w, bits, group_size, DIMS, style)
        _check_x(x, w.shape[0])
        check_range("percdamp", percdamp, low=0.0, low_inclusive=False)
        check_range("blocksize", blocksize, low=1)
        if parity_mode:
            _warn_constant_groups(w, bits, group_size, "gptq_ada")
    w = jnp.asarray(w, core._fdtype(w))
    H = hessian(jnp.asarray(x, core._fdtype(x)))
    styles = {"oc": "gptq", "ic": "awq"} if parity_mode else {"oc": style, "ic": style}
    proxy_style = "awq" if parity_mode else style
    w_q = [gptq_dim(w, H, bits=bits, group_size=group_size, dim=d, style=styles[d], act_order=act_order,
                    blocksize=blocksize, percdamp=percdamp) for d in DIMS]  # fmt: skip
    if select_with == "rtn":
        errs = dim_errors(w, x, bits=bits, group_size=group_size, sub_block=sub_block, style=proxy_style)
    else:
        F = sub_block if sub_block is not None else (lambda wq: x @ wq)
        ref = F(w)
        errs = jnp.stack([jnp.mean((F(wq) - ref) ** 2) for wq in w_q])
    d = _argmin_first(errs)
    return AdaDimResult(d, jnp.where(d == 0, w_q[0], w_q[1]), errs)


# ------------------------------------------------------------------------------------ block loop


class LayerSpec(NamedTuple):
    """One quantizable linear layer of a block, in module order.

    name: a label (e.g. ``"Dense_0"`` or ``"block_0/qkv"``).
    path: keys of its kernel ``f32[K, N]`` inside the params pytree (nested dicts).
    inputs: ``(fp_params, calib) -> f32[..., K]`` its input on the FP model (X_n; GPTQ's Hessian).
    sub_input: ``(fp_params, calib) -> array`` the FP input of the smallest sub-block containing it
      (q/k/v: the attention's input; up/gate: the MLP's; o/down: X_n itself).
    sub_block: ``(params, sub_x, W') -> f32[...]`` that sub-block's output ``F_n`` with ``W'`` substituted
      and every other weight read from ``params`` (the current, partially quantized params: greedy order).
    """

    name: str
    path: tuple[str, ...]
    inputs: Callable[[Any, Any], jax.Array]
    sub_input: Callable[[Any, Any], Any]
    sub_block: Callable[[Any, Any, jax.Array], jax.Array]


def get_path(tree, path: Sequence[str]):
    """``tree[path[0]][path[1]]...`` of nested dicts."""
    _check_tree_path(tree, path)
    for k in path:
        tree = tree[k]
    return tree


def _check_tree_path(tree, path) -> None:
    if isinstance(path, str) or not isinstance(path, Sequence):
        raise ValueError(f"path: expected a sequence of keys, got {type(path).__name__} {path!r}")
    t = tree
    for i, k in enumerate(path):
        if not hasattr(t, "keys") or k not in t:
            raise ValueError(f"path: key {k!r} (position {i} of {tuple(path)}) is not in the tree")
        t = t[k]


def set_path(tree, path: Sequence[str], value):
    """A copy of nested-dict ``tree`` with ``tree[path] = value`` (other leaves shared)."""
    _check_tree_path(tree, path)
    if not path:
        return value
    out = dict(tree)
    out[path[0]] = set_path(tree[path[0]], path[1:], value)
    return out


def quantize_blocks(layers: Sequence[LayerSpec], params: Any, calib: Any, *, method: str, fixed_dim: str = "oc",
                    bits: int = 3, group_size: int = 128, style: str = "gptq", parity_mode: bool = False,
                    act_order: bool = True, blocksize: int = 128, percdamp: float = 0.01,
                    select_with: str = "rtn") -> tuple[Any, dict[str, jax.Array], dict[str, jax.Array]]:  # fmt: skip
    """Quantize every layer of ``layers`` in order with ``method`` ∈ {rtn, gptq, rtn_ada, gptq_ada}.

    Inputs ``X_n`` and GPTQ Hessians come from the FP model (``layers[i].inputs(params, calib)``); the
    selection of layer n sees the layers before it already quantized. ``fixed_dim`` is the grouping of
    the non-adaptive methods. ``parity_mode``: the official quantizer styles (AWQ-style RTN for the RTN
    baseline, RTN-ada and the selection proxy; GPTQ-style per-OC and AWQ-style per-IC GPTQ), with a
    warning on constant groups. Traceable (vmap over calibration sets).

    Returns ``(quantized params, choices {name: i32[] index into DIMS}, errors {name: f32[2]})``
    (errors are the RTN-proxy sub-block errors; computed for every method, used by the adaptive ones).
    """
    check_choice("method", method, METHODS)
    check_choice("fixed_dim", fixed_dim, DIMS)
    check_choice("style", style, STYLES)
    check_range("bits", bits, low=2, high=8)
    if not layers:
        raise ValueError("layers: expected at least one LayerSpec")
    for layer in layers:
        if not isinstance(layer, LayerSpec):
            raise ValueError(f"layers: expected LayerSpec entries, got {type(layer).__name__}")
    rtn_style = "awq" if parity_mode else style  # the official RTN path (baseline and RTN-ada) is AWQ-style
    fp = params
    cur = params
    choices, errors = {}, {}
    for layer in layers:
        w = get_path(fp, layer.path)
        w = jnp.asarray(w, core._fdtype(w))
        x = layer.inputs(fp, calib)
        x = x.reshape(-1, x.shape[-1])
        sub_x = layer.sub_input(fp, calib)
        if not is_traced(w):
            _check_w(w, bits, group_size, DIMS, style)
            _check_x(x, w.shape[0])
            if parity_mode:
                _warn_constant_groups(w, bits, group_size, f"quantize_blocks, layer {layer.name!r}")
        sub = (lambda f, cur_, sx: lambda wq: f(cur_, sx, wq))(layer.sub_block, cur, sub_x)
        errs = dim_errors(w, x, bits=bits, group_size=group_size, sub_block=sub, style=rtn_style)
        if method == "rtn":
            d = jnp.asarray(DIMS.index(fixed_dim), jnp.int32)
            w_hat = _fq(w, quant_spec(bits, group_size, fixed_dim, rtn_style))
        elif method == "rtn_ada":  # = rtn_ada(w, x, ..., sub_block=sub), reusing the proxy errors
            d = _argmin_first(errs)
            w_oc, w_ic = (_fq(w, quant_spec(bits, group_size, dd, rtn_style)) for dd in DIMS)
            w_hat = jnp.where(d == 0, w_oc, w_ic)
        elif method == "gptq":
            d = jnp.asarray(DIMS.index(fixed_dim), jnp.int32)
            st = ("gptq" if fixed_dim == "oc" else "awq") if parity_mode else style
            w_hat = gptq_dim(w, hessian(x), bits=bits, group_size=group_size, dim=fixed_dim, style=st,
                             act_order=act_order, blocksize=blocksize, percdamp=percdamp)  # fmt: skip
        else:
            r = gptq_ada(w, x, bits=bits, group_size=group_size, sub_block=sub, act_order=act_order,
                         blocksize=blocksize, percdamp=percdamp, select_with=select_with, style=style,
                         parity_mode=parity_mode)  # fmt: skip
            d, w_hat = r.dim, r.w_hat
        cur = set_path(cur, layer.path, w_hat)
        choices[layer.name] = d
        errors[layer.name] = errs
    return cur, choices, errors
