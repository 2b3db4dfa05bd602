"""Linear mode connectivity via permutation weight matching (Ito, Yamada, Kumagai, ICLR 2025).

Paper: *Analysis of Linear Mode Connectivity via Permutation-Based Weight Matching*, Akira Ito,
Masanori Yamada, Atsutoshi Kumagai, arXiv 2402.04051 (2024). Spec: ``papers/weight_matching_lmc.md``.
No official code; the algorithms it analyses are those of Git Re-Basin (Ainsworth et al., ICLR 2023,
``samuela/git-re-basin``, read for understanding only). Shared pieces (permutation specs, applying
permutations, interpolation, barriers, merging) come from `zoo.weightspace.core`.

Equations -> functions:
  §2.2 loss / accuracy barrier along ``(1-λ)θ_a + λθ_b``               -> `barrier_report` (core barriers)
  §2.3 ``argmax_π Σ_l <W^a_l, P_l W^b_l P_{l-1}^T>`` by coordinate descent,
       each step a linear assignment ``max_P <P, C_p>`` (scipy)        -> `weight_matching`, `lap_solve`
  §2.4 ``d_0, d_WM, ρ = d_WM/d_0, r = ||a-b|| / sqrt(||a||²+||b||²)`` -> `distance_report`
  §2.5 ``B̂_mid = ¼(g_a - g_b)ᵀδ + (1/16) δᵀ(H_a + H_b)δ``              -> `taylor_midpoint_barrier`
  §2.6 singular values / vectors: ``M_ij = |u_iᵀũ_j||v_iᵀṽ_j|``, top-k subspace overlaps
       ``O_k = ||U_kᵀŨ_k||_F²/k``, weighted score, rank truncation    -> `svd_alignment`, `merged_alignment`,
                                                                        `truncate_rank`
  §2.7 activation matching ``P_l = LAP(Z_aᵀ Z_b)``                      -> `activation_matching`
  §2.8 straight-through estimator (midpoint loss, WM projection)        -> `ste_matching`
  §2.9 merging 3+ models (reference alignment, MergeMany, plane)        -> `merge_models`, `merge_many`,
                                                                        `plane_losses`
  the MLP of the experiments (ReLU, He-uniform init, zero bias)        -> `mlp`, `loss_and_acc`

Our choices: weight matching updates a permutation only when the assignment gains more than
``tol · max(1, ||C_p||_F)`` on the same cost matrix (git-re-basin replaces it on any gain > 1e-12;
ours never flips between tied optima and always terminates); the cost matrices are built in the
params' dtype by jitted JAX and the assignment is solved in float64 on the host. STE keeps the
permutation with the lowest minibatch midpoint loss, then re-scores it and the last one on
``eval_batch`` (git-re-basin keeps the lowest minibatch loss). The SVD analysis transposes Flax
kernels to ``(out, in)`` and uses only 2-D ``kernel`` leaves. `barrier_report` takes one
``eval_fn -> (loss, acc)`` (one pass per point) instead of two functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_choice, check_range, check_tree_like
from zoo.weightspace import core

__all__ = [
    "activation_matching",
    "barrier_report",
    "distance_report",
    "lap_solve",
    "loss_and_acc",
    "merge_many",
    "merge_models",
    "merged_alignment",
    "mlp",
    "plane_losses",
    "ste_matching",
    "svd_alignment",
    "taylor_midpoint_barrier",
    "truncate_rank",
    "weight_matching",
]

Params = Any


# ----------------------------------------------------------------------------------- model


def mlp(widths: Sequence[int], n_in: int, n_out: int):
    """``(init_fn, apply_fn, spec)`` of a ReLU MLP ``n_in -> widths... -> n_out``.

    ``init_fn(key) -> params`` (He-uniform kernels, zero biases, float32), ``apply_fn(params, x: f[B, n_in])
    -> f[B, n_out]``, ``spec = core.mlp_spec(len(widths))``. Params ``{"Dense_i": {"kernel", "bias"}}``.
    """
    widths = tuple(widths) if isinstance(widths, (list, tuple)) else None
    if widths is None or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths: expected a sequence of positive ints, got {widths!r}")
    for name, v in (("n_in", n_in), ("n_out", n_out)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    dims = (n_in, *widths, n_out)

    def init_fn(key):
        ks = jax.random.split(key, len(dims) - 1)
        out = {}
        for i, (k, a, b) in enumerate(zip(ks, dims[:-1], dims[1:])):
            lim = np.sqrt(6.0 / a)
            out[f"Dense_{i}"] = {"kernel": jax.random.uniform(k, (a, b), jnp.float32, -lim, lim),
                                 "bias": jnp.zeros((b,), jnp.float32)}
        return out

    def apply_fn(params, x):
        h = x
        for i in range(len(dims) - 1):
            layer = params[f"Dense_{i}"]
            h = h @ layer["kernel"] + layer["bias"]
            if i < len(dims) - 2:
                h = jax.nn.relu(h)
        return h

    return init_fn, apply_fn, core.mlp_spec(len(widths))


def loss_and_acc(apply_fn: Callable, params: Params, x: Any, y: Any) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and accuracy of ``apply_fn(params, x)`` logits f[N, K] against ``y: int[N]``."""
    if not callable(apply_fn):
        raise ValueError(f"apply_fn: expected a callable (params, x) -> logits, got {type(apply_fn).__name__}")
    check_array("y", y, ndim=1, kind="iu")
    check_array("x", x, min_size=1)
    if np.shape(x)[0] != np.shape(y)[0]:
        raise ValueError(f"y: expected {np.shape(x)[0]} labels (rows of x), got {np.shape(y)[0]}")
    logits = apply_fn(params, x)
    logp = jax.nn.log_softmax(logits)
    loss = -jnp.mean(jnp.take_along_axis(logp, jnp.asarray(y)[:, None], axis=1))
    acc = jnp.mean((jnp.argmax(logits, -1) == y).astype(logits.dtype))
    return loss, acc


# ----------------------------------------------------------------------------------- weight matching


def lap_solve(C: Any, *, maximize: bool = True) -> np.ndarray:
    """Column index per row of the optimal assignment of a square cost ``C: f[n, n]`` (scipy, host)."""
    check_array("C", C, ndim=2)
    if np.shape(C)[0] != np.shape(C)[1]:
        raise ValueError(f"C: expected a square matrix, got shape {np.shape(C)}")
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(np.asarray(C, np.float64), maximize=bool(maximize))
    assert np.array_equal(rows, np.arange(len(rows)))
    return cols.astype(np.int32)


def _unit_matrix(w, axis):
    w = jnp.moveaxis(w, axis, 0)
    return w.reshape(w.shape[0], -1)


@functools.lru_cache(maxsize=64)
def _cost_fn(spec: core.PermutationSpec, p: str):
    """Jitted ``(flat_a, flat_b, perms) -> C_p = Σ A_leaf B̃_leafᵀ`` (rows: units of model a)."""
    axes = spec.axes
    locs = spec.perm_to_axes[p]

    def cost(flat_a, flat_b, perms):
        C = 0.0
        for path, ax in locs:
            wb = flat_b[path]
            for other_ax, q in enumerate(axes[path]):
                if q is not None and other_ax != ax:
                    wb = jnp.take(wb, perms[q], axis=other_ax)
            C = C + _unit_matrix(flat_a[path], ax) @ _unit_matrix(wb, ax).T
        return C

    return jax.jit(cost)


def _check_finite_tree(name, tree):
    for path, x in core.flatten_paths(tree).items():
        check_array(f"{name}[{path!r}]", x)


def weight_matching(spec: core.PermutationSpec, params_a: Params, params_b: Params, *, key: jax.Array,
                    max_iter: int = 100, init_perms: dict | None = None, tol: float = 1e-12,
                    return_trace: bool = False):
    """Permutations ``π`` of model b maximising ``Σ_leaves <θ_a, π(θ_b)>`` (so ``||θ_a - π(θ_b)||`` is minimal).

    Coordinate descent (spec §2.3): each sweep visits the permutations in a random order (``fold_in(key,
    sweep)``); for permutation p with all others fixed the objective is ``<P, C_p>``, solved exactly by
    `lap_solve`; p changes only when that gains more than ``tol · max(1, ||C_p||_F)``; stop after a sweep
    without change or ``max_iter`` sweeps. Host loop (not jit-able).

    Returns ``perms`` (``{name: int32[n]}``; apply with ``core.apply_permutation(spec, perms, params_b)``),
    and with ``return_trace`` also the objective after each sweep (non-decreasing).
    """
    sizes = core.validate_spec(spec, params_a)
    check_tree_like("params_b", params_b, params_a, "params_a")
    core.validate_spec(spec, params_b)
    _check_finite_tree("params_a", params_a)
    _check_finite_tree("params_b", params_b)
    check_range("max_iter", max_iter, low=1)
    check_range("tol", tol, low=0.0)
    perms = {k: np.arange(n, dtype=np.int32) for k, n in sizes.items()}
    if init_perms is not None:
        core._check_perms(spec, init_perms, sizes)
        perms = {k: np.asarray(v, np.int32) for k, v in init_perms.items()}
    flat_a = {k: jnp.asarray(v) for k, v in core.flatten_paths(params_a).items()}
    flat_b = {k: jnp.asarray(v) for k, v in core.flatten_paths(params_b).items()}
    names = sorted(sizes)
    trace = []
    for it in range(int(max_iter)):
        progress = False
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, it), len(names)))
        for j in order:
            p = names[int(j)]
            C = np.asarray(_cost_fn(spec, p)(flat_a, flat_b, {k: jnp.asarray(v) for k, v in perms.items()}),
                           np.float64)
            new = lap_solve(C)
            rows = np.arange(len(new))
            gain = C[rows, new].sum() - C[rows, perms[p]].sum()
            if gain > tol * max(1.0, float(np.linalg.norm(C))):
                perms[p] = new
                progress = True
        if return_trace:
            pb = core.apply_permutation(spec, perms, params_b)
            trace.append(float(sum(np.vdot(np.asarray(a, np.float64), np.asarray(b, np.float64))
                                   for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(pb)))))
        if not progress:
            break
    out = {k: jnp.asarray(v) for k, v in perms.items()}
    return (out, trace) if return_trace else out


def activation_matching(spec: core.PermutationSpec, feats_fn: Callable, params_a: Params, params_b: Params,
                        x: Any, *, method: str = "inner") -> dict:
    """One assignment per permutation from features: ``P_p = LAP(Z_aᵀ Z_b)`` (spec §2.7).

    ``feats_fn(params, x) -> {perm name: f[N, n]}`` gives the post-activation features of the units
    each permutation acts on; ``method="corr"`` standardises the columns first (correlation).
    """
    if not callable(feats_fn):
        raise ValueError(f"feats_fn: expected a callable (params, x) -> dict of features, got {type(feats_fn).__name__}")
    check_choice("method", method, ("inner", "corr"))
    sizes = core.validate_spec(spec, params_a)
    check_tree_like("params_b", params_b, params_a, "params_a")
    check_array("x", x, min_size=1)
    za, zb = feats_fn(params_a, x), feats_fn(params_b, x)
    if set(za) != set(sizes):
        raise ValueError(f"feats_fn: expected features for the perms {sorted(sizes)}, got {sorted(za)}")
    perms = {}
    for p in sizes:
        a, b = np.asarray(za[p], np.float64), np.asarray(zb[p], np.float64)
        if method == "corr":
            a = (a - a.mean(0)) / (a.std(0) + 1e-12)
            b = (b - b.mean(0)) / (b.std(0) + 1e-12)
        perms[p] = jnp.asarray(lap_solve(a.T @ b))
    return perms


# ----------------------------------------------------------------------------------- STE


def ste_matching(spec: core.PermutationSpec, loss_fn: Callable, params_a: Params, params_b: Params,
                 batches: Iterable, *, key: jax.Array, optimizer: Any, eval_batch: Any = None,
                 return_trace: bool = False):
    """Straight-through estimator (Ainsworth et al.; spec §2.8): permutations minimising the midpoint loss.

    Free params ``φ ← θ_a``; per batch: ``π ← WM(φ, θ_b)`` (warm start), ``θ_ste = π(θ_b) + φ - sg(φ)``,
    loss ``loss_fn(½(θ_a + θ_ste), batch)`` (forward at the projection, gradient to φ: ½∇L at the
    midpoint), optimizer step on φ. Keeps the permutation with the lowest minibatch loss; with
    ``eval_batch`` the best and the last are re-scored there and the better is returned.
    ``loss_fn(params, batch) -> scalar``; ``batches``: an iterable of batches (one step each).
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn: expected a callable (params, batch) -> scalar, got {type(loss_fn).__name__}")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
    try:
        batches = iter(batches)
    except TypeError as e:
        raise ValueError(f"batches: expected an iterable of batches, got {type(batches).__name__}") from e
    sizes = core.validate_spec(spec, params_a)
    check_tree_like("params_b", params_b, params_a, "params_a")
    _check_finite_tree("params_a", params_a)
    _check_finite_tree("params_b", params_b)
    import optax

    @jax.jit
    def step(phi, opt_state, proj, batch):
        def f(phi):
            ste = jax.tree.map(lambda pr, ph: pr + ph - jax.lax.stop_gradient(ph), proj, phi)
            return loss_fn(jax.tree.map(lambda a, s: 0.5 * (a + s), params_a, ste), batch)

        loss, g = jax.value_and_grad(f)(phi)
        upd, opt_state = optimizer.update(g, opt_state, phi)
        return optax.apply_updates(phi, upd), opt_state, loss

    phi = jax.tree.map(jnp.asarray, params_a)
    opt_state = optimizer.init(phi)
    perms = {k: jnp.arange(n, dtype=jnp.int32) for k, n in sizes.items()}
    best, best_loss, losses = perms, np.inf, []
    for i, batch in enumerate(batches):
        perms = weight_matching(spec, phi, params_b, key=jax.random.fold_in(key, i), init_perms=perms)
        proj = core.apply_permutation(spec, perms, params_b)
        phi, opt_state, loss = step(phi, opt_state, proj, batch)
        loss = float(loss)
        losses.append(loss)
        if not np.isfinite(loss):
            raise FloatingPointError(f"ste_matching: non-finite midpoint loss {loss} at step {i}")
        if loss < best_loss:
            best, best_loss = perms, loss
    if not losses:
        raise ValueError("batches: expected at least one batch")
    chosen = best
    if eval_batch is not None:
        def score(p):
            mid = core.lerp(0.5, params_a, core.apply_permutation(spec, p, params_b))
            return float(loss_fn(mid, eval_batch))
        chosen = perms if score(perms) < score(best) else best
    return (chosen, losses) if return_trace else chosen


# ----------------------------------------------------------------------------------- measurements


def barrier_report(eval_fn: Callable, params_a: Params, params_b: Params, ts: Any = None) -> dict:
    """Loss and accuracy along ``(1-t)θ_a + tθ_b`` and their barriers (spec §2.2).

    ``eval_fn(params) -> (loss, acc)``. Returns ``{"ts", "losses", "accs", "barrier_loss", "t_loss",
    "barrier_acc", "t_acc"}`` (barriers from `core.barrier_linear`, accuracy barrier in accuracy units).
    """
    if ts is None:
        ts = jnp.linspace(0.0, 1.0, 25)
    losses, accs = core.path_losses(eval_fn, params_a, params_b, ts)
    bl, tl = core.barrier_linear(losses, ts, kind="loss")
    ba, ta = core.barrier_linear(accs, ts, kind="acc")
    return {"ts": ts, "losses": losses, "accs": accs, "barrier_loss": bl, "t_loss": tl, "barrier_acc": ba,
            "t_acc": ta}


def distance_report(spec: core.PermutationSpec, params_a: Params, params_b: Params, perms: dict, *,
                    key: jax.Array | None = None) -> dict:
    """L2 distances before and after permuting model b (spec §2.4), over ALL leaves.

    ``{"d0", "d_wm", "ratio" = d_wm/d0, "r0", "r_wm"}`` with ``r = ||a - b|| / sqrt(||a||² + ||b||²)``,
    ``"per_leaf": {path: (before, after)}``, and with ``key`` ``"d_random"``: the distance after a
    uniformly random permutation (baseline).
    """
    pb = core.apply_permutation(spec, perms, params_b)
    d0, dw = core.tree_l2(params_a, params_b), core.tree_l2(params_a, pb)
    scale = jnp.sqrt(core.tree_norm(params_a) ** 2 + core.tree_norm(params_b) ** 2)
    fa, fb, fp = (core.flatten_paths(t) for t in (params_a, params_b, pb))
    out = {"d0": d0, "d_wm": dw, "ratio": dw / d0, "r0": d0 / scale, "r_wm": dw / scale,
           "per_leaf": {k: (jnp.linalg.norm((fa[k] - fb[k]).ravel()), jnp.linalg.norm((fa[k] - fp[k]).ravel()))
                        for k in fa}}
    if key is not None:
        out["d_random"] = core.tree_l2(params_a, core.apply_permutation(spec, core.random_perms(key, spec, params_b),
                                                                        params_b))
    return out


def _kernels(spec, params, layers):
    flat = core.flatten_paths(params)
    names = [k for k, v in flat.items() if k.endswith("kernel") and np.ndim(v) == 2] if layers is None else list(layers)
    for k in names:
        if k not in flat or np.ndim(flat[k]) != 2:
            raise ValueError(f"layers: {k!r} is not a 2-D leaf of the params (2-D leaves: "
                             f"{[p for p, v in flat.items() if np.ndim(v) == 2]})")
    return names, flat


def _overlap(Ua, Ub, k):
    return jnp.sum(jnp.square(Ua[:, :k].T @ Ub[:, :k])) / k


def svd_alignment(spec: core.PermutationSpec, params_a: Params, params_b: Params, perms: dict, *, k: int = 10,
                  ks: Sequence[int] = (1, 5, 20), layers: Sequence[str] | None = None) -> dict:
    """Singular-value / singular-vector agreement of each layer of θ_a and π(θ_b) (spec §2.6).

    For every 2-D kernel (transposed to ``(out, in)``): ``W^a = U S Vᵀ``, ``W̃^b = Ũ T Ṽᵀ``;
    ``M_ij = |u_iᵀ ũ_j| |v_iᵀ ṽ_j|`` for the top ``k``; ``diag_mean = mean_i M_ii``; ``weighted = Σ s_i M_ii / Σ s_i``;
    ``overlap_u[j] = ||U_jᵀ Ũ_j||_F² / j`` and ``overlap_v[j]`` for j in ``ks`` (random baseline j/d:
    ``baseline_u[j] = j / d_out``, ``baseline_v[j] = j / d_in``); ``sv_a``, ``sv_b``: singular values.
    Returns ``{path: {...}}``. Pass identity perms for the unaligned pair.
    """
    check_range("k", k, low=1)
    names, _ = _kernels(spec, params_a, layers)
    pb = core.apply_permutation(spec, perms, params_b)
    fa, fb = core.flatten_paths(params_a), core.flatten_paths(pb)
    out = {}
    for name in names:
        A, B = jnp.asarray(fa[name]).T, jnp.asarray(fb[name]).T
        r = min(A.shape)
        if k > r:
            raise ValueError(f"k: expected at most min(d_out, d_in) = {r} for layer {name!r}, got {k}")
        Ua, sa, Vat = jnp.linalg.svd(A, full_matrices=False)
        Ub, sb, Vbt = jnp.linalg.svd(B, full_matrices=False)
        M = jnp.abs(Ua[:, :k].T @ Ub[:, :k]) * jnp.abs(Vat[:k] @ Vbt[:k].T)
        kk = [j for j in ks if j <= r]
        out[name] = {"M": M, "diag_mean": jnp.mean(jnp.diag(M)),
                     "weighted": jnp.sum(sa[:k] * jnp.diag(M)) / jnp.sum(sa[:k]),
                     "overlap_u": {j: _overlap(Ua, Ub, j) for j in kk},
                     "overlap_v": {j: _overlap(Vat.T, Vbt.T, j) for j in kk},
                     "baseline_u": {j: j / A.shape[0] for j in kk}, "baseline_v": {j: j / A.shape[1] for j in kk},
                     "sv_a": sa, "sv_b": sb}
    return out


def merged_alignment(spec: core.PermutationSpec, params_a: Params, params_b: Params, perms: dict, *,
                     k: int = 10, ks: Sequence[int] = (1, 5, 20), layers: Sequence[str] | None = None) -> dict:
    """`svd_alignment` of θ_a against the merged ``½(θ_a + π(θ_b))`` (spec §2.6 item 4)."""
    merged = core.lerp(0.5, params_a, core.apply_permutation(spec, perms, params_b))
    return svd_alignment(spec, params_a, merged, core.identity_perms(spec, params_a), k=k, ks=ks, layers=layers)


def truncate_rank(params: Params, rank: int, layers: Sequence[str] | None = None) -> Params:
    """Every 2-D kernel (or those in ``layers``) replaced by its best rank-``rank`` approximation (SVD)."""
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"rank: expected a positive int, got {rank!r}")
    names, flat = _kernels(None, params, layers)
    out = dict(flat)
    for name in names:
        W = jnp.asarray(flat[name])
        U, s, Vt = jnp.linalg.svd(W, full_matrices=False)
        r = min(int(rank), s.shape[0])
        out[name] = (U[:, :r] * s[:r]) @ Vt[:r]
    return core.unflatten_paths(out)


def taylor_midpoint_barrier(loss_fn: Callable, params_a: Params, params_b: Params) -> dict:
    """Second-order estimate of the midpoint barrier vs the measured one (spec §2.5).

    ``δ = θ_b - θ_a``: ``estimate = ¼(g_a - g_b)ᵀδ + (1/16)(δᵀH_aδ + δᵀH_bδ)``, ``measured = L(m) - ½(L_a + L_b)``
    with ``m = θ_a + δ/2``; ``δᵀHδ`` by one forward-over-reverse HVP per end. Exact for quadratics.
    Returns ``{"estimate", "measured", "delta_norm", "grad_term", "curv_term"}``.
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn: expected a callable params -> scalar, got {type(loss_fn).__name__}")
    core._check_pair(params_a, params_b, "params_a", "params_b")
    delta = core.tree_sub(params_b, params_a)
    grad = jax.grad(loss_fn)

    def g_and_curv(p):
        g, hd = jax.jvp(grad, (p,), (delta,))
        return g, core.tree_dot(delta, hd)

    ga, ca = g_and_curv(params_a)
    gb, cb = g_and_curv(params_b)
    grad_term = 0.25 * core.tree_dot(core.tree_sub(ga, gb), delta)
    curv_term = (ca + cb) / 16.0
    mid = core.lerp(0.5, params_a, params_b)
    measured = loss_fn(mid) - 0.5 * (loss_fn(params_a) + loss_fn(params_b))
    return {"estimate": grad_term + curv_term, "measured": measured, "delta_norm": core.tree_norm(delta),
            "grad_term": grad_term, "curv_term": curv_term}


# ----------------------------------------------------------------------------------- merging


def merge_many(spec: core.PermutationSpec, params_list: Sequence[Params], *, key: jax.Array,
               max_iter: int = 100) -> list[Params]:
    """MergeMany (git-re-basin): align each model in turn to the mean of the others by weight matching.

    Sweeps in a random order (``fold_in(key, sweep)``) until no model's distance to the others' mean
    drops by more than 1e-12 (or ``max_iter`` sweeps). Returns the aligned models; merge with `core.merge`.
    """
    if not isinstance(params_list, (list, tuple)) or len(params_list) < 2:
        raise ValueError("params_list: expected a list of at least 2 models")
    check_range("max_iter", max_iter, low=1)
    for i, p in enumerate(params_list[1:], 1):
        check_tree_like(f"params_list[{i}]", p, params_list[0], "params_list[0]")
    aligned = [jax.tree.map(jnp.asarray, p) for p in params_list]
    n = len(aligned)
    for it in range(int(max_iter)):
        progress = False
        for k in np.asarray(jax.random.permutation(jax.random.fold_in(key, it), n)):
            k = int(k)
            others = core.merge([aligned[j] for j in range(n) if j != k])
            perms = weight_matching(spec, others, aligned[k], key=jax.random.fold_in(key, 1000 * it + k))
            new = core.apply_permutation(spec, perms, aligned[k])
            if float(core.tree_l2(others, new)) < float(core.tree_l2(others, aligned[k])) - 1e-12:
                progress = True
            aligned[k] = new
        if not progress:
            break
    return aligned


def merge_models(spec: core.PermutationSpec, params_list: Sequence[Params], method: str = "wm_ref", *,
                 key: jax.Array, loss_fn: Callable | None = None, batches: Callable[[int], Iterable] | None = None,
                 optimizer: Any = None, max_iter: int = 100) -> tuple[Params, list[Params]]:
    """Merge 2+ models: ``(merged = uniform mean of the aligned models, aligned list)`` (spec §2.9).

    ``method``: ``"naive"`` (no alignment), ``"wm_ref"`` (align every model to ``params_list[0]`` by
    weight matching), ``"ste_ref"`` (by `ste_matching`; needs ``loss_fn``, ``optimizer`` and
    ``batches(i) -> iterable of batches`` for model i), ``"merge_many"`` (`merge_many`).
    """
    check_choice("method", method, ("naive", "wm_ref", "ste_ref", "merge_many"))
    if not isinstance(params_list, (list, tuple)) or len(params_list) < 2:
        raise ValueError("params_list: expected a list of at least 2 models")
    for i, p in enumerate(params_list[1:], 1):
        check_tree_like(f"params_list[{i}]", p, params_list[0], "params_list[0]")
    ref = params_list[0]
    if method == "naive":
        aligned = list(params_list)
    elif method == "merge_many":
        aligned = merge_many(spec, params_list, key=key, max_iter=max_iter)
    elif method == "wm_ref":
        aligned = [ref] + [core.apply_permutation(spec, weight_matching(
            spec, ref, p, key=jax.random.fold_in(key, i), max_iter=max_iter), p)
            for i, p in enumerate(params_list[1:], 1)]
    else:
        if loss_fn is None or optimizer is None or not callable(batches):
            raise ValueError("loss_fn: method 'ste_ref' needs loss_fn, optimizer and batches(i) -> iterable")
        aligned = [ref] + [core.apply_permutation(spec, ste_matching(
            spec, loss_fn, ref, p, batches(i), key=jax.random.fold_in(key, i), optimizer=optimizer), p)
            for i, p in enumerate(params_list[1:], 1)]
    return core.merge(aligned), aligned


def plane_losses(eval_fn: Callable, p0: Params, p1: Params, p2: Params, grid: Any) -> jax.Array:
    """``eval_fn(θ_0 + u(θ_1 - θ_0) + v(θ_2 - θ_0))`` on the grid ``u, v in grid``: f[G, G] (rows u)."""
    if not callable(eval_fn):
        raise ValueError(f"eval_fn: expected a callable params -> scalar, got {type(eval_fn).__name__}")
    core._check_pair(p0, p1, "p0", "p1")
    core._check_pair(p0, p2, "p0", "p2")
    check_array("grid", grid, ndim=1, min_size=1)
    g = jnp.asarray(grid)
    u, v = jnp.meshgrid(g, g, indexing="ij")
    d1, d2 = core.tree_sub(p1, p0), core.tree_sub(p2, p0)

    def at(uv):
        return eval_fn(jax.tree.map(lambda a, x, y: a + uv[0].astype(a.dtype) * x + uv[1].astype(a.dtype) * y,
                                    p0, d1, d2))

    return jax.lax.map(at, jnp.stack([u.ravel(), v.ravel()], 1)).reshape(g.shape[0], g.shape[0])
