"""Pruning masks over parameter pytrees: magnitude and random masks, masked training, same-norm rescaling.

Shared by the weight-space papers that prune (``grokking_tickets``; lottery-ticket style studies).
A **mask** is a pytree with the params' structure whose leaves are 0/1 arrays in the params'
dtypes (all ones for a dense net). Leaves that are not *prunable* always get an all-ones mask.

**Which leaves are prunable.** ``prunable=None`` means every leaf with ``ndim >= 2`` (weight
matrices, embeddings, attention kernels; not biases or norm scales); a collection of path strings
(keys joined by ``/``, as in `zoo.weightspace.core.flatten_paths`) names them; a callable
``(path, leaf) -> bool`` decides per leaf.

**Top-k rule** (`topk_mask`), the one of the SynFlow pruning codebase that the grokking-tickets
code uses: over the ``N`` prunable entries (``scope="global"``) or over each prunable tensor on its
own (``"local"``), with ``density`` the fraction kept,

    k = int((1 - density) * N)          (Python float arithmetic, as the official code does)
    thr = k-th smallest score           (torch.kthvalue, 1-based)
    m = 1[score > thr]                  (k = 0: keep everything)

so exactly ``N - k`` entries are kept when the scores are distinct, and **every entry tied with the
threshold is pruned** (fewer than ``N - k`` survive under ties). `magnitude_mask` scores by
``|θ|``; `random_mask` by i.i.d. standard normals (the ``Rand`` pruner).

**Masked training.** `apply_mask(params, mask) = m ⊙ θ`; a masked net's forward uses ``m ⊙ θ``,
so pruned entries get zero gradient. `mask_updates(mask)` is an optax transformation that
multiplies every update by the mask; chained after the optimizer (`masked_optimizer`) it also
stops the decoupled weight decay of AdamW from moving pruned entries, so params that start with
pruned entries at zero keep them exactly zero for the whole run.

**Same-norm rescaling** (`same_norm_rescale`): one scalar for all tensors,
``r = Σ_t ‖m_t ⊙ θ_t‖_q / Σ_t ‖θ_t‖_q`` over the prunable tensors (sum of per-tensor norms, the
official ``get_weight_norm`` bookkeeping; q = 1 or 2), returning ``r · θ`` (every leaf scaled).

All functions are pure; ``density`` / ``scope`` / ``prunable`` are static (Python values), the rest
can be traced, so masks can be computed under ``jit`` and ``vmap`` (e.g. over a population's params).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.checks import check_choice, check_tree_like, is_traced

Params = Any
Mask = Any
Prunable = None | Collection[str] | Callable[[str, Any], bool]

__all__ = [
    "apply_mask",
    "magnitude_mask",
    "mask_density",
    "mask_updates",
    "masked_optimizer",
    "ones_mask",
    "prunable_flags",
    "random_mask",
    "same_norm_rescale",
    "topk_mask",
]


def _path_str(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:  # pragma: no cover - defensive
            parts.append(str(k))
    return "/".join(parts)


def _check_params(name: str, params: Params) -> list:
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError(f"{name}: expected a non-empty pytree of arrays, got {params!r}")
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            raise TypeError(f"{name}{jax.tree_util.keystr(path)}: expected an array leaf, got {type(leaf).__name__}")
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise ValueError(f"{name}{jax.tree_util.keystr(path)}: expected a floating array, got dtype {leaf.dtype}")
    return leaves


def prunable_flags(params: Params, prunable: Prunable = None) -> list[bool]:
    """One bool per leaf (in ``jax.tree.leaves`` order): is the leaf prunable? (see the module docstring)."""
    _check_params("params", params)
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    paths = [_path_str(p) for p, _ in flat]
    if prunable is None:
        flags = [np.ndim(leaf) >= 2 for _, leaf in flat]
    elif callable(prunable):
        flags = [bool(prunable(p, leaf)) for p, (_, leaf) in zip(paths, flat)]
    elif isinstance(prunable, Collection) and not isinstance(prunable, (str, bytes)):
        names = set(prunable)
        unknown = sorted(names - set(paths))
        if unknown:
            raise ValueError(f"prunable: paths {unknown} are not leaves of params; leaves are {paths}")
        flags = [p in names for p in paths]
    else:
        raise TypeError(f"prunable: expected None, a collection of leaf paths or a callable (path, leaf) -> bool, "
                        f"got {type(prunable).__name__}")
    if not any(flags):
        raise ValueError(f"prunable: selects no leaf of params (leaves: {paths})")
    return flags


def _check_density(density: Any) -> float:
    if is_traced(density) or isinstance(density, jax.Array) and density.ndim:
        raise TypeError(f"density: expected a Python float in (0, 1] (static), got {type(density).__name__}")
    if isinstance(density, bool) or not isinstance(density, (int, float, np.floating, np.integer, jax.Array)):
        raise TypeError(f"density: expected a float in (0, 1], got {type(density).__name__}")
    d = float(density)
    if not (0.0 < d <= 1.0):
        raise ValueError(f"density: expected the fraction of weights kept in (0, 1], got {density!r}")
    return d


def _kth_threshold_mask(scores: list[jax.Array], density: float) -> list[jax.Array]:
    """Boolean keep-masks of ``scores`` (pooled): ``score > k-th smallest``, k = int((1 - density) N)."""
    n = sum(int(np.prod(s.shape)) for s in scores)
    k = int((1.0 - density) * n)
    if k == 0:
        return [jnp.ones(s.shape, bool) for s in scores]
    flat = jnp.concatenate([jnp.ravel(s) for s in scores])
    thr = jnp.sort(flat)[k - 1]
    return [s > thr for s in scores]


def topk_mask(scores: Params, density: float, *, scope: str = "global", prunable: Prunable = None) -> Mask:
    """Keep the prunable entries whose score is above the k-th smallest (ties at the threshold pruned).

    Args:
      scores: a pytree of float arrays (e.g. ``|θ|``), the structure of the params it masks.
      density: fraction of prunable entries kept, in (0, 1] (a Python float: the count is static).
      scope: ``"global"`` (one threshold over all prunable entries) or ``"local"`` (one per tensor).
      prunable: which leaves may be pruned (see the module docstring).

    Returns:
      the mask: 0/1 arrays in each score leaf's dtype; non-prunable leaves all ones.
    """
    _check_params("scores", scores)
    density = _check_density(density)
    check_choice("scope", scope, ("global", "local"))
    flags = prunable_flags(scores, prunable)
    leaves, treedef = jax.tree.flatten(scores)
    for leaf in leaves:
        if not is_traced(leaf) and not np.isfinite(np.asarray(leaf)).all():
            raise ValueError("scores: contain non-finite values (NaN or inf)")
    return jax.tree.unflatten(treedef, _topk_leaves(leaves, density, scope, tuple(flags)))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _topk_leaves(leaves, density, scope, flags):
    """The masks of `topk_mask` as a list of leaves (one compiled program per structure and density)."""
    idx = [i for i, f in enumerate(flags) if f]
    if scope == "global":
        keeps = _kth_threshold_mask([leaves[i] for i in idx], density)
    else:
        keeps = [_kth_threshold_mask([leaves[i]], density)[0] for i in idx]
    out = [jnp.ones(leaf.shape, leaf.dtype) for leaf in leaves]
    for i, keep in zip(idx, keeps):
        out[i] = keep.astype(leaves[i].dtype)
    return out


def magnitude_mask(params: Params, density: float, *, scope: str = "global", prunable: Prunable = None) -> Mask:
    """Magnitude pruning: `topk_mask` of ``|θ|`` (global by default, as the grokking-tickets code)."""
    _check_params("params", params)
    return topk_mask(jax.tree.map(jnp.abs, params), density, scope=scope, prunable=prunable)


def random_mask(key: jax.Array, params: Params, density: float, *, scope: str = "global",
                prunable: Prunable = None) -> Mask:
    """Random pruning at the same density: `topk_mask` of i.i.d. N(0, 1) scores (one draw over all leaves)."""
    if not (isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.shape == (2,))):
        raise TypeError(f"key: expected a JAX PRNG key, got {type(key).__name__}")
    leaves, treedef = jax.tree.flatten(params)
    _check_params("params", params)
    sizes = [int(np.prod(leaf.shape)) for leaf in leaves]
    flat = jax.random.normal(key, (sum(sizes),), jnp.result_type(*leaves))  # one draw, cut into leaves
    cuts = np.cumsum(sizes)[:-1]
    scores = [s.reshape(leaf.shape).astype(leaf.dtype) for s, leaf in zip(jnp.split(flat, cuts), leaves)]
    return topk_mask(jax.tree.unflatten(treedef, scores), density, scope=scope, prunable=prunable)


def ones_mask(params: Params) -> Mask:
    """The dense mask: all ones in each leaf's dtype."""
    _check_params("params", params)
    return jax.tree.map(jnp.ones_like, params)


def _check_mask(params: Params, mask: Mask) -> None:
    check_tree_like("mask", mask, params, "params")


def apply_mask(params: Params, mask: Mask) -> Params:
    """``m ⊙ θ`` leaf by leaf (in the params' dtypes)."""
    _check_params("params", params)
    _check_mask(params, mask)
    return jax.tree.map(lambda p, m: p * m.astype(p.dtype), params, mask)


def mask_density(mask: Mask, *, params: Params | None = None, prunable: Prunable = None) -> jax.Array:
    """Fraction of prunable entries kept (nonzero) in ``mask``; prunable leaves chosen on ``params`` (or the mask)."""
    ref = mask if params is None else params
    _check_params("mask", mask)
    if params is not None:
        _check_mask(params, mask)
    flags = prunable_flags(ref, prunable)
    leaves = [m for m, f in zip(jax.tree.leaves(mask), flags) if f]
    kept = sum(jnp.sum(m != 0) for m in leaves)
    return kept / sum(int(np.prod(m.shape)) for m in leaves)


def mask_updates(mask: Mask) -> optax.GradientTransformation:
    """Stateless optax transformation ``u -> m ⊙ u`` (pruned entries never move)."""
    _check_params("mask", mask)

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        check_tree_like("mask", mask, updates, "updates")
        return jax.tree.map(lambda u, m: u * m.astype(u.dtype), updates, mask), state

    return optax.GradientTransformation(init, update)


def masked_optimizer(optimizer: optax.GradientTransformation, mask: Mask) -> optax.GradientTransformation:
    """``optax.chain(optimizer, mask_updates(mask))``: masked training, weight decay included."""
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
    return optax.chain(optimizer, mask_updates(mask))


def same_norm_rescale(params0: Params, mask: Mask, *, norm: str = "l2",
                      prunable: Prunable = None) -> tuple[Params, jax.Array]:
    """The dense init rescaled to the ticket's norm: ``(r · θ0, r)``, ``r = Σ‖m_t ⊙ θ0_t‖ / Σ‖θ0_t‖``.

    Args:
      params0: the dense initialisation θ0.
      mask: the ticket's mask (structure of ``params0``).
      norm: ``"l1"`` or ``"l2"`` (per-tensor norm, summed over the prunable tensors).
      prunable: which tensors enter the norms (see the module docstring); every leaf is rescaled.

    Returns:
      ``(r · θ0, r)`` with ``r: f[]``.
    """
    _check_params("params0", params0)
    _check_mask(params0, mask)
    check_choice("norm", norm, ("l1", "l2"))
    flags = prunable_flags(params0, prunable)
    return _same_norm(params0, mask, norm, tuple(flags))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _same_norm(params0, mask, norm, flags):
    def tnorm(x):
        return jnp.sum(jnp.abs(x)) if norm == "l1" else jnp.sqrt(jnp.sum(jnp.square(x)))

    pl, ml = jax.tree.leaves(params0), jax.tree.leaves(mask)
    num = sum(tnorm(p * m.astype(p.dtype)) for p, m, f in zip(pl, ml, flags) if f)
    den = sum(tnorm(p) for p, f in zip(pl, flags) if f)
    r = num / den
    return jax.tree.map(lambda p: p * r.astype(p.dtype), params0), r
