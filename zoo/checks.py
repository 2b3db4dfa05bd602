"""Input validation shared by every module: clear ``ValueError``s that name the argument.

These run on the host, outside ``jit``, at the API boundary. Inside a trace (when an
argument is a tracer) value checks such as finiteness are skipped; shape checks still run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import numpy as np


def is_traced(x: Any) -> bool:
    """True when ``x`` is an abstract value inside ``jit``/``vmap``/``grad``."""
    return isinstance(x, jax.core.Tracer)


def _kind(dtype: Any) -> str:
    """numpy's dtype kind, except that the ml_dtypes floats (bfloat16, float8_*: numpy kind "V") are "f"."""
    k = np.dtype(dtype).kind
    if k == "V":
        import jax.numpy as jnp

        return "f" if jnp.issubdtype(dtype, jnp.floating) else k
    return k


def check_array(
    name: str,
    x: Any,
    *,
    ndim: int | Iterable[int] | None = None,
    shape: tuple[int | None, ...] | None = None,
    finite: bool = True,
    min_size: int | None = None,
    kind: str | None = None,
) -> None:
    """Validate an array argument; raise ``ValueError`` naming ``name`` on failure.

    Args:
      name: the argument name used in messages.
      x: the array (numpy, jax, or array-like).
      ndim: required number of dimensions (an int or a collection of allowed ints).
      shape: required shape; ``None`` entries are free.
      finite: require no NaN/inf (skipped for tracers).
      min_size: require ``x.shape[0] >= min_size``.
      kind: numpy dtype kinds allowed, e.g. ``"f"`` or ``"iu"``.
    """
    if not hasattr(x, "shape"):
        try:
            x = np.asarray(x)
        except Exception as e:  # pragma: no cover - defensive
            raise ValueError(f"{name}: expected an array, got {type(x).__name__}") from e
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name}: expected a {want}-D array, got shape {tuple(x.shape)}")
    if shape is not None:
        if len(shape) != x.ndim or any(s is not None and s != d for s, d in zip(shape, x.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")
    if min_size is not None and (x.ndim == 0 or x.shape[0] < min_size):
        got = x.shape[0] if x.ndim else "a scalar"
        raise ValueError(f"{name}: expected at least {min_size} rows, got {got}")
    dkind = _kind(x.dtype)
    if kind is not None and dkind not in kind:
        raise ValueError(f"{name}: expected dtype kind in {kind!r}, got {x.dtype}")
    if finite and not is_traced(x) and dkind in "fc":
        v = np.asarray(x)
        bad = ~np.isfinite(v if v.dtype.kind in "fc" else v.astype(np.float32))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{name}: contains {int(bad.sum())} non-finite value(s) (NaN or inf), first at index {idx}"
            )


def check_range(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise ``ValueError`` unless ``low <= value <= high`` (bounds optional, inclusivity set per side)."""
    lo_ok = low is None or (value >= low if low_inclusive else value > low)
    hi_ok = high is None or (value <= high if high_inclusive else value < high)
    if not (lo_ok and hi_ok):
        lb = "-inf" if low is None else f"{low}"
        hb = "inf" if high is None else f"{high}"
        interval = ("[" if low_inclusive and low is not None else "(") + f"{lb}, {hb}" + (
            "]" if high_inclusive and high is not None else ")"
        )
        raise ValueError(f"{name}: expected a value in {interval}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices`` (which the message lists)."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}; got {value!r}")


def check_float_dtype(name: str, dtype: Any, *, default: Any = float) -> Any:
    """``dtype`` if it is a floating dtype (None: JAX's canonical ``default``); else ``ValueError``."""
    import jax.numpy as jnp

    if dtype is None:
        return jax.dtypes.canonicalize_dtype(default)
    try:
        ok = jnp.issubdtype(dtype, jnp.floating)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name}: expected None or a float dtype, got {dtype!r}")
    return dtype


def check_tree_like(name: str, tree: Any, ref: Any, ref_name: str) -> None:
    """``tree`` has ``ref``'s pytree structure and leaf shapes (no broadcasting); ``ValueError`` naming the leaf."""
    if jax.tree.structure(tree) != jax.tree.structure(ref):
        raise ValueError(f"{name}: expected the pytree structure of {ref_name} {jax.tree.structure(ref)}, "
                         f"got {jax.tree.structure(tree)}")
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(tree)[0], jax.tree.leaves(ref), strict=True):
        if np.shape(a) != np.shape(b):
            raise ValueError(f"{name}{jax.tree_util.keystr(path)}: expected shape {np.shape(b)} (as {ref_name}), "
                             f"got {np.shape(a)}")
