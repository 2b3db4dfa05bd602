"""Weight-space toolkit shared by the weight-space papers: permutations, interpolation, barriers, merging.

Spec: ``papers/_weightspace_family.md`` §1-§6. Every paper module of ``zoo.weightspace`` (and
``zoo.weightspace.grokking_tickets``) imports these pieces instead of re-implementing them.

**Parameter pytrees** are nested dicts (Flax ``init(...)["params"]``). A leaf is addressed by its
path string, keys joined by ``/`` (``"Dense_0/kernel"``): `flatten_paths` / `unflatten_paths`.
Layouts are Flax's: Dense kernel ``(d_in, d_out)``, Conv kernel ``(kh, kw, c_in, c_out)``,
attention ``query/key/value`` kernels ``(d_model, n_heads, d_head)``, ``out`` ``(n_heads, d_head, d_model)``.

**Permutations.** A permutation of ``n`` units is an int vector ``perm``; applying it to an axis is
``w' = take(w, perm, axis)``: unit ``i`` of the permuted model is unit ``perm[i]`` of the original
(matrix form ``P[i, perm[i]] = 1``; for a math-convention layer ``W' = P_l W P_{l-1}^T``,
``b' = P_l b``). A `PermutationSpec` names, for every leaf and every axis, the permutation acting on
it (or None). `apply_permutation` is pure and jit-able; ``apply(p, apply(q, θ)) = apply(compose_perms(p, q), θ)``
with ``compose_perms(p, q)[k] = q[k][p[k]]``; the inverse is ``argsort``.
Spec builders: `mlp_spec`, `cnn_spec` (VGG chain, global average pool), `transformer_spec` (pre-LN GPT).

**Interpolation** (§5): `lerp(t, pa, pb) = (1 - t) pa + t pb` (t = 0 gives pa; WiSE-FT with
pa = zero-shot, pb = fine-tuned, t = α), `convex_combination`, `merge` (the weighted mean of N
models), and the pytree algebra `tree_add/sub/scale/dot/norm/l2/cosine`, `tree_stack/unstack`.

**Barriers** (§6), for values ``v(t)`` along a path with ``t`` in [0, 1] (endpoints included):
  loss:     B = max_t [L(t) - ((1 - t) L(0) + t L(1))]           -> `barrier_linear(..., kind="loss")`
  accuracy: B = max_t [((1 - t) A(0) + t A(1)) - A(t)]           -> `barrier_linear(..., kind="acc")`
  Frankle:  max_t L(t) - (L(0) + L(1)) / 2                       -> `barrier_mean`
  mc = (v0 + v1)/2 - v(t*) (losses), v(t*) - (v0 + v1)/2 (accs), t* = argmax |v(t) - (v0+v1)/2|
                                                                 -> `mode_connectivity` (negative = barrier)
  N models: L(Σ w_k θ_k) - Σ w_k L(θ_k)                          -> `multi_barrier`
`path_losses(eval_fn, pa, pb, ts)` evaluates ``eval_fn`` (scalar or pytree of scalars, e.g. (loss, acc))
along the line with ``lax.map`` (memory of one model; ``chunk`` vmaps that many points at once).

Our choices (the family spec puts these in several files ``perm_spec.py``, ``permute.py``,
``interp.py``, ``barrier.py``; we keep them in this one module). `transformer_spec` uses ONE
within-head permutation per layer shared by all heads (``P_qk_l`` on the ``d_head`` axis of q and
k, ``P_vo_l`` on that of v and out) instead of one per head: a per-head permutation acts on a
sub-block of an axis, which the axis-wise representation cannot express; ``head_perms=True`` adds
the permutation of heads (then different heads can still be matched to different heads).
Matching (weight matching, STE, MergeMany) lives in `zoo.weightspace.weight_matching_lmc`.
Hessian-vector products, CKA and Bezier curves (spec §7-§9) are not here yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, check_tree_like, is_traced

Params = Any
Perms = dict

__all__ = [
    "PermutationSpec",
    "apply_permutation",
    "barrier_linear",
    "barrier_mean",
    "cnn_spec",
    "compose_perms",
    "convex_combination",
    "flatten_paths",
    "identity_perms",
    "invert_perms",
    "lerp",
    "merge",
    "mlp_spec",
    "mode_connectivity",
    "multi_barrier",
    "path_losses",
    "perm_sizes",
    "random_perms",
    "spec_from_axes",
    "transformer_spec",
    "tree_add",
    "tree_cosine",
    "tree_dot",
    "tree_l2",
    "tree_norm",
    "tree_scale",
    "tree_stack",
    "tree_sub",
    "tree_unstack",
    "unflatten_paths",
    "validate_spec",
]


# ----------------------------------------------------------------------------------- paths


def _is_dict(x) -> bool:
    return isinstance(x, Mapping)


def flatten_paths(tree: Params) -> dict[str, Any]:
    """``{"a/b": leaf}`` for a nested dict of arrays (keys joined by ``/``)."""
    if not _is_dict(tree):
        raise TypeError(f"tree: expected a nested dict of arrays (Flax params), got {type(tree).__name__}")
    out: dict[str, Any] = {}

    def walk(node, prefix):
        for k, v in node.items():
            if not isinstance(k, str) or "/" in k:
                raise ValueError(f"tree: keys must be strings without '/', got {k!r} under {prefix or 'the root'!r}")
            path = f"{prefix}/{k}" if prefix else k
            if _is_dict(v):
                walk(v, path)
            else:
                out[path] = v

    walk(tree, "")
    return out


def unflatten_paths(flat: Mapping[str, Any]) -> dict:
    """The nested dict of ``{"a/b": leaf}`` (inverse of `flatten_paths`)."""
    if not _is_dict(flat):
        raise TypeError(f"flat: expected a dict path -> array, got {type(flat).__name__}")
    out: dict = {}
    for path, v in flat.items():
        if not isinstance(path, str) or not path:
            raise ValueError(f"flat: expected non-empty string paths, got {path!r}")
        node = out
        *heads, last = path.split("/")
        for h in heads:
            node = node.setdefault(h, {})
            if not isinstance(node, dict):
                raise ValueError(f"flat: path {path!r} runs through a leaf")
        node[last] = v
    return out


# ----------------------------------------------------------------------------------- specs


@dataclasses.dataclass(frozen=True)
class PermutationSpec:
    """Which permutation acts on which axis of which leaf (frozen and hashable: a valid static arg).

    Attributes:
      axes_to_perm: ``((path, (perm name | None, ...)), ...)`` sorted by path, one entry per array
        axis of the leaf (a mapping is accepted and normalised).
      frozen: paths of leaves that no permutation touches (a leaf that is neither here nor in
        ``axes_to_perm`` makes `validate_spec` fail).
    """

    axes_to_perm: Any
    frozen: frozenset = frozenset()

    def __post_init__(self):
        a = self.axes_to_perm
        items = a.items() if isinstance(a, Mapping) else a
        try:
            norm = tuple(sorted((str(p), tuple(None if x is None else str(x) for x in axes)) for p, axes in items))
        except (TypeError, ValueError) as e:
            raise TypeError("axes_to_perm: expected a mapping path -> tuple of perm names / None") from e
        if len({p for p, _ in norm}) != len(norm):
            raise ValueError("axes_to_perm: a path appears twice")
        for path, axes in norm:
            named = [x for x in axes if x is not None]
            if len(named) != len(set(named)):
                raise ValueError(f"axes_to_perm[{path!r}]: a permutation appears twice on one leaf {axes}")
        object.__setattr__(self, "axes_to_perm", norm)
        object.__setattr__(self, "frozen", frozenset(str(f) for f in self.frozen))

    @property
    def axes(self) -> dict[str, tuple]:
        return dict(self.axes_to_perm)

    @property
    def perm_to_axes(self) -> dict[str, tuple[tuple[str, int], ...]]:
        """perm name -> ``((path, axis), ...)``."""
        out: dict[str, list] = {}
        for path, axes in self.axes_to_perm:
            for i, p in enumerate(axes):
                if p is not None:
                    out.setdefault(p, []).append((path, i))
        return {k: tuple(v) for k, v in sorted(out.items())}

    @property
    def perm_names(self) -> tuple[str, ...]:
        return tuple(self.perm_to_axes)


def spec_from_axes(axes_to_perm: Mapping[str, Sequence[str | None]], frozen: Sequence[str] = ()) -> PermutationSpec:
    """A `PermutationSpec` from ``{path: (perm | None per axis)}`` and the frozen paths."""
    if not isinstance(axes_to_perm, Mapping):
        raise TypeError(f"axes_to_perm: expected a mapping path -> axes tuple, got {type(axes_to_perm).__name__}")
    return PermutationSpec(axes_to_perm=axes_to_perm, frozen=frozenset(frozen))


def _check_spec(spec: Any) -> None:
    if not isinstance(spec, PermutationSpec):
        raise TypeError(f"spec: expected a PermutationSpec, got {type(spec).__name__}")


def validate_spec(spec: PermutationSpec, params: Params) -> dict[str, int]:
    """Check that ``spec`` covers ``params``; return the size of every permutation.

    Raises ``ValueError`` naming the path when a leaf is neither in the spec nor frozen, a spec path
    is missing from ``params``, an axes tuple's length differs from the leaf's ndim, or one
    permutation meets axes of different sizes.
    """
    _check_spec(spec)
    flat = flatten_paths(params)
    axes = spec.axes
    for path, leaf in flat.items():
        if path in axes:
            if len(axes[path]) != np.ndim(leaf):
                raise ValueError(f"params[{path!r}]: the spec gives {len(axes[path])} axes {axes[path]}, "
                                 f"the leaf has shape {np.shape(leaf)}")
        elif path not in spec.frozen:
            raise ValueError(f"params[{path!r}]: leaf not covered by the permutation spec (neither permuted nor "
                             f"frozen); spec paths: {sorted(axes)}")
    missing = [p for p in axes if p not in flat]
    if missing:
        raise ValueError(f"spec: paths {missing} are not leaves of params (params has {sorted(flat)})")
    sizes: dict[str, int] = {}
    where: dict[str, str] = {}
    for p, locs in spec.perm_to_axes.items():
        for path, ax in locs:
            n = int(np.shape(flat[path])[ax])
            if p in sizes and sizes[p] != n:
                raise ValueError(f"params[{path!r}]: permutation {p!r} acts on axis {ax} of size {n}, "
                                 f"but on size {sizes[p]} at {where[p]!r}")
            sizes.setdefault(p, n)
            where.setdefault(p, path)
    return sizes


def perm_sizes(spec: PermutationSpec, params: Params) -> dict[str, int]:
    """``{perm name: size}`` (validates ``spec`` against ``params``)."""
    return validate_spec(spec, params)


def mlp_spec(n_hidden: int, prefix: str = "Dense_") -> PermutationSpec:
    """Spec of an MLP with ``n_hidden`` hidden layers (``{prefix}i/kernel`` (in, out), ``/bias``).

    Permutation ``P_i`` acts on the output axis of layer ``i`` and the input axis of layer ``i + 1``
    (i < n_hidden); the output layer's outputs are not permuted (git-re-basin's ``mlp_permutation_spec``).
    """
    if isinstance(n_hidden, bool) or not isinstance(n_hidden, int) or n_hidden < 0:
        raise ValueError(f"n_hidden: expected an int >= 0, got {n_hidden!r}")
    axes = {}
    for i in range(n_hidden + 1):
        p_in = f"P_{i - 1}" if i > 0 else None
        p_out = f"P_{i}" if i < n_hidden else None
        axes[f"{prefix}{i}/kernel"] = (p_in, p_out)
        axes[f"{prefix}{i}/bias"] = (p_out,)
    return PermutationSpec(axes_to_perm=axes)


def cnn_spec(n_conv: int, n_dense: int, norm: str | None = None, *, conv_prefix: str = "Conv_",
             dense_prefix: str = "Dense_") -> PermutationSpec:
    """Spec of a VGG-style chain: ``n_conv`` convs (HWIO kernels), global average pool, ``n_dense`` Dense.

    Conv ``i`` has kernel axes ``(None, None, P_{i-1}, P_i)`` and bias ``(P_i,)``; a norm layer after it
    (``"layernorm"``: ``LayerNorm_i/{scale,bias}``; ``"batchnorm"``: ``BatchNorm_i/{scale,bias}``, whose
    ``batch_stats`` collection uses the same paths with ``mean``/``var`` — build its spec with
    `spec_from_axes`) follows ``P_i``. The pool keeps channels, so the first Dense's input axis is
    ``P_{n_conv-1}``; Dense ``j < n_dense - 1`` adds ``P_{n_conv + j}``; the last output is unpermuted.
    A spatial flatten (no pooling) is not supported: its input axis mixes space and channels.
    """
    for name, v, lo in (("n_conv", n_conv, 1), ("n_dense", n_dense, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    check_choice("norm", norm, (None, "layernorm", "batchnorm"))
    axes = {}
    for i in range(n_conv):
        p_in, p_out = (f"P_{i - 1}" if i else None), f"P_{i}"
        axes[f"{conv_prefix}{i}/kernel"] = (None, None, p_in, p_out)
        axes[f"{conv_prefix}{i}/bias"] = (p_out,)
        if norm is not None:
            ln = "LayerNorm" if norm == "layernorm" else "BatchNorm"
            axes[f"{ln}_{i}/scale"] = (p_out,)
            axes[f"{ln}_{i}/bias"] = (p_out,)
    for j in range(n_dense):
        p_in = f"P_{n_conv + j - 1}"
        p_out = f"P_{n_conv + j}" if j < n_dense - 1 else None
        axes[f"{dense_prefix}{j}/kernel"] = (p_in, p_out)
        axes[f"{dense_prefix}{j}/bias"] = (p_out,)
    return PermutationSpec(axes_to_perm=axes)


def transformer_spec(n_layers: int, *, mlp: bool = True, head_perms: bool = False, rope: bool = False,
                     qk_perms: bool | None = None, pos_embedding: bool = True) -> PermutationSpec:
    """Spec of a pre-LN GPT whose params are laid out as follows (Flax names)::

        embed/embedding (V, d)                         pos_embed/embedding (T, d)   (pos_embedding)
        block_l/ln1/{scale,bias} (d,)                  block_l/ln2/{scale,bias} (d,)
        block_l/attn/{query,key,value}/kernel (d, H, dh), .../bias (H, dh)   (nn.MultiHeadDotProductAttention)
        block_l/attn/out/kernel (H, dh, d), .../bias (d,)
        block_l/mlp_in/kernel (d, f), /bias (f,)       block_l/mlp_out/kernel (f, d), /bias (d,)   (mlp)
        ln_f/{scale,bias} (d,)                         unembed/kernel (d, V), /bias (V,)

    ``P_res`` permutes the residual stream everywhere it appears (embeddings' output axis, every LN,
    q/k/v input axis, out and mlp_out output axis, mlp_in and unembed input axis); ``P_mlp_l`` the MLP
    hidden units of layer l; ``P_qk_l`` the ``dh`` axis of q and k (q·k is unchanged), ``P_vo_l`` the
    ``dh`` axis of v and out, both shared by all heads of the layer (see the module docstring);
    ``head_perms`` adds ``P_head_l`` on the ``H`` axis of q, k, v, out. ``rope=True`` drops ``P_qk_l``
    (rotary embeddings pair fixed dimensions); asking for ``qk_perms=True`` with it raises.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers: expected an int >= 1, got {n_layers!r}")
    if qk_perms is None:
        qk_perms = not rope
    if rope and qk_perms:
        raise ValueError("qk_perms: a rotary embedding (rope=True) pairs fixed d_head dimensions; within-head "
                         "q/k permutations would change the function. Use qk_perms=False (the default with rope)")
    R = "P_res"
    axes = {"embed/embedding": (None, R), "ln_f/scale": (R,), "ln_f/bias": (R,),
            "unembed/kernel": (R, None), "unembed/bias": (None,)}
    if pos_embedding:
        axes["pos_embed/embedding"] = (None, R)
    for l in range(n_layers):
        b = f"block_{l}"
        H = f"P_head_{l}" if head_perms else None
        qk = f"P_qk_{l}" if qk_perms else None
        vo = f"P_vo_{l}"
        for ln in ("ln1", "ln2") if mlp else ("ln1",):
            axes[f"{b}/{ln}/scale"] = (R,)
            axes[f"{b}/{ln}/bias"] = (R,)
        for name, p in (("query", qk), ("key", qk), ("value", vo)):
            axes[f"{b}/attn/{name}/kernel"] = (R, H, p)
            axes[f"{b}/attn/{name}/bias"] = (H, p)
        axes[f"{b}/attn/out/kernel"] = (H, vo, R)
        axes[f"{b}/attn/out/bias"] = (R,)
        if mlp:
            m = f"P_mlp_{l}"
            axes[f"{b}/mlp_in/kernel"] = (R, m)
            axes[f"{b}/mlp_in/bias"] = (m,)
            axes[f"{b}/mlp_out/kernel"] = (m, R)
            axes[f"{b}/mlp_out/bias"] = (R,)
    return PermutationSpec(axes_to_perm=axes)


# ----------------------------------------------------------------------------------- permutations


def _check_perms(spec: PermutationSpec, perms: Any, sizes: Mapping[str, int]) -> None:
    if not isinstance(perms, Mapping):
        raise TypeError(f"perms: expected a dict perm name -> int[n], got {type(perms).__name__}")
    if set(perms) != set(sizes):
        raise ValueError(f"perms: expected the keys {sorted(sizes)}, got {sorted(perms)}")
    for k, n in sizes.items():
        p = perms[k]
        check_array(f"perms[{k!r}]", p, shape=(n,), kind="iu")
        if not is_traced(p):
            a = np.asarray(p)
            if not np.array_equal(np.sort(a), np.arange(n)):
                raise ValueError(f"perms[{k!r}]: expected a permutation of 0..{n - 1}, got {a.tolist()[:10]}...")


def apply_permutation(spec: PermutationSpec, perms: Perms, params: Params) -> Params:
    """``params`` with every axis the spec names re-indexed: ``w' = take(w, perms[p], axis)``.

    Works on any pytree with the spec's paths (params, optimizer moments, gradients); frozen leaves
    pass through. Pure and jit-able (``spec`` static).
    """
    sizes = validate_spec(spec, params)
    _check_perms(spec, perms, sizes)
    axes = spec.axes
    flat = flatten_paths(params)
    out = {}
    for path, w in flat.items():
        w = jnp.asarray(w)
        for ax, p in enumerate(axes.get(path, ())):
            if p is not None:
                w = jnp.take(w, jnp.asarray(perms[p]), axis=ax)
        out[path] = w
    return unflatten_paths(out)


def identity_perms(spec: PermutationSpec, params: Params) -> Perms:
    """``{p: arange(n_p)}`` (int32)."""
    return {k: jnp.arange(n, dtype=jnp.int32) for k, n in validate_spec(spec, params).items()}


def random_perms(key: jax.Array, spec: PermutationSpec, params: Params) -> Perms:
    """Independent uniform permutations; perm ``i`` (sorted by name) uses ``fold_in(key, i)``."""
    sizes = validate_spec(spec, params)
    return {k: jax.random.permutation(jax.random.fold_in(key, i), n).astype(jnp.int32)
            for i, (k, n) in enumerate(sorted(sizes.items()))}


def invert_perms(perms: Perms) -> Perms:
    """``{p: argsort(perm)}``: ``apply(invert(π), apply(π, θ)) = θ``."""
    if not isinstance(perms, Mapping):
        raise TypeError(f"perms: expected a dict perm name -> int[n], got {type(perms).__name__}")
    for k, v in perms.items():
        check_array(f"perms[{k!r}]", v, ndim=1, kind="iu")
    return {k: jnp.argsort(jnp.asarray(v)).astype(jnp.int32) for k, v in perms.items()}


def compose_perms(p: Perms, q: Perms) -> Perms:
    """The permutation "``q`` first, then ``p``": ``apply(p, apply(q, θ)) = apply(compose_perms(p, q), θ)``."""
    for name, x in (("p", p), ("q", q)):
        if not isinstance(x, Mapping):
            raise TypeError(f"{name}: expected a dict perm name -> int[n], got {type(x).__name__}")
    if set(p) != set(q):
        raise ValueError(f"q: expected the same perm names as p {sorted(p)}, got {sorted(q)}")
    for k in p:
        check_array(f"p[{k!r}]", p[k], ndim=1, kind="iu")
        check_array(f"q[{k!r}]", q[k], shape=(np.shape(p[k])[0],), kind="iu")
    return {k: jnp.asarray(q[k])[jnp.asarray(p[k])] for k in p}


# ----------------------------------------------------------------------------------- pytree algebra


def _check_pair(pa, pb, na="pa", nb="pb"):
    for n, t in ((na, pa), (nb, pb)):
        if not jax.tree.leaves(t):
            raise ValueError(f"{n}: expected a non-empty pytree of arrays")
    check_tree_like(nb, pb, pa, na)


def _check_tree(name, t):
    leaves = jax.tree.leaves(t)
    if not leaves:
        raise ValueError(f"{name}: expected a non-empty pytree of arrays")
    for path, x in jax.tree_util.tree_flatten_with_path(t)[0]:
        check_array(f"{name}{jax.tree_util.keystr(path)}", x)


def tree_add(pa: Params, pb: Params) -> Params:
    """Leafwise ``pa + pb``."""
    _check_pair(pa, pb)
    return jax.tree.map(jnp.add, pa, pb)


def tree_sub(pa: Params, pb: Params) -> Params:
    """Leafwise ``pa - pb``."""
    _check_pair(pa, pb)
    return jax.tree.map(jnp.subtract, pa, pb)


def tree_scale(c: Any, tree: Params) -> Params:
    """``c * tree`` (``c`` a scalar, cast to each leaf's dtype)."""
    check_array("c", c, shape=())
    _check_tree("tree", tree)
    return jax.tree.map(lambda x: jnp.asarray(c, jnp.result_type(x)) * x, tree)


def tree_dot(pa: Params, pb: Params) -> jax.Array:
    """``Σ_leaves <pa, pb>``."""
    _check_pair(pa, pb)
    return sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)))


def tree_norm(tree: Params) -> jax.Array:
    """Euclidean norm over all leaves."""
    _check_tree("tree", tree)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def tree_l2(pa: Params, pb: Params) -> jax.Array:
    """``||pa - pb||_2`` over all leaves."""
    _check_pair(pa, pb)
    return jnp.sqrt(sum(jnp.sum(jnp.square(a - b)) for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb))))


def tree_cosine(pa: Params, pb: Params) -> jax.Array:
    """``<pa, pb> / (||pa|| ||pb||)``."""
    _check_pair(pa, pb)
    return tree_dot(pa, pb) / (tree_norm(pa) * tree_norm(pb))


def tree_stack(trees: Sequence[Params]) -> Params:
    """Stack a list of same-structure pytrees on a new leading axis."""
    if not isinstance(trees, (list, tuple)) or not trees:
        raise ValueError(f"trees: expected a non-empty list of pytrees, got {type(trees).__name__}")
    for i, t in enumerate(trees[1:], 1):
        check_tree_like(f"trees[{i}]", t, trees[0], "trees[0]")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def tree_unstack(tree: Params) -> list[Params]:
    """The list of slices along the leading axis (inverse of `tree_stack`)."""
    leaves = jax.tree.leaves(tree)
    if not leaves or any(np.ndim(x) == 0 for x in leaves):
        raise ValueError("tree: expected a non-empty pytree whose leaves share a leading axis")
    n = {np.shape(x)[0] for x in leaves}
    if len(n) != 1:
        raise ValueError(f"tree: leading axes differ across leaves: {sorted(n)}")
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n.pop())]


# ----------------------------------------------------------------------------------- interpolation


def lerp(t: Any, pa: Params, pb: Params) -> Params:
    """``(1 - t) pa + t pb`` leafwise (``t`` scalar; t = 0 gives ``pa``, t = 1 gives ``pb``); vmap over t."""
    check_array("t", t, shape=())
    _check_pair(pa, pb)

    def f(a, b):
        tt = jnp.asarray(t, jnp.result_type(a))
        return (1 - tt) * a + tt * b

    return jax.tree.map(f, pa, pb)


def _check_weights(weights, k, allow_extrapolation):
    check_array("weights", weights, shape=(k,))
    if not allow_extrapolation and not is_traced(weights):
        w = np.asarray(weights, np.float64)
        if (w < 0).any() or abs(w.sum() - 1) > 1e-6:
            raise ValueError(f"weights: expected non-negative weights summing to 1 (or allow_extrapolation=True), "
                             f"got {w.tolist()}")


def convex_combination(weights: Any, params_stacked: Params, *, allow_extrapolation: bool = False) -> Params:
    """``Σ_k w_k θ_k`` for params stacked on a leading K axis (`tree_stack`); weights f[K]."""
    _check_tree("params_stacked", params_stacked)
    ks = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(params_stacked)}
    if len(ks) != 1 or None in ks:
        raise ValueError(f"params_stacked: expected leaves with one shared leading axis, got sizes {ks}")
    _check_weights(weights, ks.pop(), allow_extrapolation)
    return jax.tree.map(lambda x: jnp.tensordot(jnp.asarray(weights, jnp.result_type(x)), x, axes=1), params_stacked)


def merge(params_list: Sequence[Params], weights: Any = None, *, allow_extrapolation: bool = False) -> Params:
    """The weighted mean of N models (uniform without ``weights``): ``Σ_k w_k θ_k``."""
    if not isinstance(params_list, (list, tuple)) or len(params_list) < 1:
        raise ValueError(f"params_list: expected a non-empty list of pytrees, got {type(params_list).__name__}")
    k = len(params_list)
    if weights is None:
        weights = np.full(k, 1.0 / k)
    return convex_combination(weights, tree_stack(list(params_list)), allow_extrapolation=allow_extrapolation)


# ----------------------------------------------------------------------------------- paths and barriers


def _check_ts(ts, *, ends=True):
    check_array("ts", ts, ndim=1)
    if np.shape(ts)[0] < 2:
        raise ValueError(f"ts: expected at least 2 points, got {np.shape(ts)[0]}")
    if not is_traced(ts):
        a = np.asarray(ts, np.float64)
        if (a < 0).any() or (a > 1).any():
            raise ValueError(f"ts: expected values in [0, 1], got min {a.min()} max {a.max()}")
        if (np.diff(a) < 0).any():
            raise ValueError("ts: expected sorted (non-decreasing) values")
        if ends and (a[0] != 0 or a[-1] != 1):
            raise ValueError(f"ts: expected the endpoints 0 and 1 first and last, got {a[0]} and {a[-1]}")


def path_losses(eval_fn: Callable[[Params], Any], pa: Params, pb: Params, ts: Any = None, *,
                chunk: int | None = None) -> Any:
    """``eval_fn(lerp(t, pa, pb))`` for every ``t`` in ``ts`` (default ``linspace(0, 1, 25)``).

    ``eval_fn(params)`` returns a scalar or a pytree of scalars (e.g. ``(loss, acc)``); the result has
    the same structure with leaves f[T]. ``lax.map`` over ts (memory of one model); ``chunk`` vmaps
    that many points per step.
    """
    if not callable(eval_fn):
        raise ValueError(f"eval_fn: expected a callable params -> scalar(s), got {type(eval_fn).__name__}")
    _check_pair(pa, pb)
    if ts is None:
        ts = jnp.linspace(0.0, 1.0, 25, dtype=jnp.result_type(jax.tree.leaves(pa)[0]))
    _check_ts(ts, ends=False)
    if chunk is not None:
        check_range("chunk", chunk, low=1)
    return jax.lax.map(lambda t: eval_fn(lerp(t, pa, pb)), jnp.asarray(ts), batch_size=chunk)


def barrier_linear(values: Any, ts: Any = None, *, kind: str = "loss") -> tuple[jax.Array, jax.Array]:
    """``(B, t*)``: the largest gap between the path and the line through its ends (module docstring).

    ``values: f[T]`` at ``ts`` (default equispaced on [0, 1]; first 0, last 1). ``kind="loss"``:
    ``max_t L(t) - lin(t)``; ``kind="acc"``: ``max_t lin(t) - A(t)`` (both >= 0, 0 when linear).
    """
    check_choice("kind", kind, ("loss", "acc"))
    check_array("values", values, ndim=1)
    T = np.shape(values)[0]
    if T < 2:
        raise ValueError(f"values: expected at least 2 points, got {T}")
    v = jnp.asarray(values)
    if ts is None:
        ts = jnp.linspace(0.0, 1.0, T, dtype=v.dtype)
    check_array("ts", ts, shape=(T,))
    _check_ts(ts)
    ts = jnp.asarray(ts, v.dtype)
    lin = (1 - ts) * v[0] + ts * v[-1]
    gap = v - lin if kind == "loss" else lin - v
    i = jnp.argmax(gap)
    return gap[i], ts[i]


def barrier_mean(values: Any, *, kind: str = "loss") -> jax.Array:
    """Frankle-style ``max_t L(t) - (L(0) + L(1))/2`` (``kind="acc"``: ``(A(0)+A(1))/2 - min_t A(t)``)."""
    check_choice("kind", kind, ("loss", "acc"))
    check_array("values", values, ndim=1, min_size=2)
    v = jnp.asarray(values)
    mid = 0.5 * (v[0] + v[-1])
    return jnp.max(v) - mid if kind == "loss" else mid - jnp.min(v)


def mode_connectivity(values: Any, *, kind: str = "loss") -> jax.Array:
    """Signed mode connectivity (phase-zoo convention): negative = barrier, positive = path better than the ends.

    ``t* = argmax_t |v(t) - (v0 + v1)/2|``; losses: ``(v0 + v1)/2 - v(t*)``; accuracies: ``v(t*) - (v0 + v1)/2``.
    """
    check_choice("kind", kind, ("loss", "acc"))
    check_array("values", values, ndim=1, min_size=2)
    v = jnp.asarray(values)
    mid = 0.5 * (v[0] + v[-1])
    vt = v[jnp.argmax(jnp.abs(v - mid))]
    return mid - vt if kind == "loss" else vt - mid


def multi_barrier(eval_fn: Callable[[Params], Any], params_list: Sequence[Params], weights: Any = None) -> jax.Array:
    """``L(Σ w_k θ_k) - Σ w_k L(θ_k)`` (uniform weights by default): the barrier of merging N models."""
    if not callable(eval_fn):
        raise ValueError(f"eval_fn: expected a callable params -> scalar, got {type(eval_fn).__name__}")
    if not isinstance(params_list, (list, tuple)) or len(params_list) < 2:
        raise ValueError(f"params_list: expected a list of at least 2 pytrees, got "
                         f"{len(params_list) if isinstance(params_list, (list, tuple)) else type(params_list).__name__}")
    k = len(params_list)
    w = np.full(k, 1.0 / k) if weights is None else weights
    merged = merge(params_list, w)
    ends = jnp.stack([jnp.asarray(eval_fn(p)) for p in params_list])
    wj = jnp.asarray(w, ends.dtype)
    return jnp.asarray(eval_fn(merged)) - jnp.sum(wj * ends)
