"""Rows for zoo.weightspace.core, weight_matching_lmc and bang (and zoo.data.colored_digits)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.data import colored_digits as cd
from zoo.weightspace import bang, core
from zoo.weightspace import weight_matching_lmc as wm

from ._row import rows

_k = jax.random.PRNGKey(0)
_p = {"Dense_0": {"kernel": jnp.ones((3, 4)), "bias": jnp.zeros(4)},
      "Dense_1": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)}}
_other = {"Dense_0": {"kernel": jnp.ones((3, 5)), "bias": jnp.zeros(5)},
          "Dense_1": {"kernel": jnp.ones((5, 2)), "bias": jnp.zeros(2)}}
_nan = {"Dense_0": {"kernel": jnp.full((3, 4), jnp.nan), "bias": jnp.zeros(4)},
        "Dense_1": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)}}
_spec = core.mlp_spec(1)
_partial = core.spec_from_axes({"Dense_0/kernel": (None, "P_0"), "Dense_0/bias": ("P_0",)})
_perms = {"P_0": jnp.arange(4)}
_apply = lambda p, x: x @ p["Dense_0"]["kernel"] @ p["Dense_1"]["kernel"]  # noqa: E731
_ev = lambda p: (jnp.sum(p["Dense_1"]["bias"]), jnp.float32(1.0))  # noqa: E731
_x = jnp.ones((5, 3))
_y = jnp.zeros(5, jnp.int32)

ROWS = [
    # core
    *rows("zoo.weightspace.core.flatten_paths", ("wrong type", lambda: core.flatten_paths([1, 2]), "tree", TypeError)),
    *rows("zoo.weightspace.core.unflatten_paths", ("wrong type", lambda: core.unflatten_paths([1]), "flat", TypeError)),
    *rows("zoo.weightspace.core.spec_from_axes",
          ("wrong type", lambda: core.spec_from_axes([("a", ("P",))]), "axes_to_perm", TypeError),
          ("same perm twice", lambda: core.spec_from_axes({"w": ("P", "P")}), "axes_to_perm")),
    *rows("zoo.weightspace.core.validate_spec",
          ("spec does not cover params", lambda: core.validate_spec(_partial, _p), "Dense_1.*not covered"),
          ("wrong type", lambda: core.validate_spec("spec", _p), "spec", TypeError)),
    *rows("zoo.weightspace.core.perm_sizes", ("spec does not cover params", lambda: core.perm_sizes(_partial, _p), "params")),
    *rows("zoo.weightspace.core.mlp_spec", ("out of range", lambda: core.mlp_spec(-1), "n_hidden")),
    *rows("zoo.weightspace.core.cnn_spec", ("bad choice", lambda: core.cnn_spec(2, 1, norm="groupnorm"), "norm"),
          ("out of range", lambda: core.cnn_spec(0, 1), "n_conv")),
    *rows("zoo.weightspace.core.transformer_spec", ("rope with qk perms", lambda: core.transformer_spec(2, rope=True, qk_perms=True), "qk_perms"),
          ("out of range", lambda: core.transformer_spec(0), "n_layers")),
    *rows("zoo.weightspace.core.apply_permutation",
          ("spec does not cover params", lambda: core.apply_permutation(_partial, {"P_0": jnp.arange(4)}, _p), "params"),
          ("not a permutation", lambda: core.apply_permutation(_spec, {"P_0": jnp.zeros(4, jnp.int32)}, _p), "perms"),
          ("missing perm", lambda: core.apply_permutation(_spec, {}, _p), "perms")),
    *rows("zoo.weightspace.core.identity_perms", ("spec does not cover params", lambda: core.identity_perms(_partial, _p), "params")),
    *rows("zoo.weightspace.core.random_perms", ("spec does not cover params", lambda: core.random_perms(_k, _partial, _p), "params")),
    *rows("zoo.weightspace.core.invert_perms", ("wrong type", lambda: core.invert_perms([1]), "perms", TypeError),
          ("float perm", lambda: core.invert_perms({"P": jnp.ones(3)}), "perms")),
    *rows("zoo.weightspace.core.compose_perms", ("different names", lambda: core.compose_perms(_perms, {"Q": jnp.arange(4)}), "q"),
          ("different sizes", lambda: core.compose_perms(_perms, {"P_0": jnp.arange(3)}), "q")),
    *rows("zoo.weightspace.core.tree_add", ("structures differ", lambda: core.tree_add(_p, _other), "pb")),
    *rows("zoo.weightspace.core.tree_sub", ("structures differ", lambda: core.tree_sub(_p, {"a": 1.0}), "pb")),
    *rows("zoo.weightspace.core.tree_scale", ("not a scalar", lambda: core.tree_scale(jnp.ones(2), _p), "c")),
    *rows("zoo.weightspace.core.tree_dot", ("structures differ", lambda: core.tree_dot(_p, _other), "pb")),
    *rows("zoo.weightspace.core.tree_norm", ("NaN", lambda: core.tree_norm(_nan), "tree")),
    *rows("zoo.weightspace.core.tree_l2", ("structures differ", lambda: core.tree_l2(_p, _other), "pb")),
    *rows("zoo.weightspace.core.tree_cosine", ("structures differ", lambda: core.tree_cosine(_p, _other), "pb")),
    *rows("zoo.weightspace.core.tree_stack", ("empty", lambda: core.tree_stack([]), "trees"),
          ("structures differ", lambda: core.tree_stack([_p, _other]), "trees")),
    *rows("zoo.weightspace.core.tree_unstack", ("no shared axis", lambda: core.tree_unstack({"a": jnp.ones(2), "b": jnp.ones(3)}), "tree")),
    *rows("zoo.weightspace.core.lerp", ("structures differ", lambda: core.lerp(0.5, _p, _other), "pb"),
          ("t not scalar", lambda: core.lerp(jnp.ones(2), _p, _p), "t")),
    *rows("zoo.weightspace.core.convex_combination",
          ("negative weights", lambda: core.convex_combination(jnp.array([1.5, -0.5]), core.tree_stack([_p, _p])), "weights")),
    *rows("zoo.weightspace.core.merge", ("empty", lambda: core.merge([]), "params_list"),
          ("weights do not sum to 1", lambda: core.merge([_p, _p], [0.2, 0.2]), "weights")),
    *rows("zoo.weightspace.core.path_losses", ("ts outside [0, 1]", lambda: core.path_losses(_ev, _p, _p, jnp.array([0.0, 1.5])), "ts"),
          ("structures differ", lambda: core.path_losses(_ev, _p, _other), "pb"),
          ("not callable", lambda: core.path_losses(3, _p, _p), "eval_fn")),
    *rows("zoo.weightspace.core.barrier_linear", ("unsorted ts", lambda: core.barrier_linear(jnp.ones(3), jnp.array([0.0, 0.7, 0.5])), "ts"),
          ("NaN", lambda: core.barrier_linear(jnp.array([0.0, jnp.nan, 1.0])), "values"),
          ("bad kind", lambda: core.barrier_linear(jnp.ones(3), kind="err"), "kind")),
    *rows("zoo.weightspace.core.barrier_mean", ("too short", lambda: core.barrier_mean(jnp.ones(1)), "values")),
    *rows("zoo.weightspace.core.mode_connectivity", ("bad kind", lambda: core.mode_connectivity(jnp.ones(3), kind="x"), "kind")),
    *rows("zoo.weightspace.core.multi_barrier", ("one model", lambda: core.multi_barrier(lambda p: 0.0, [_p]), "params_list")),
    # weight_matching_lmc
    *rows("zoo.weightspace.weight_matching_lmc.mlp", ("bad widths", lambda: wm.mlp((0,), 3, 2), "widths"),
          ("bad n_in", lambda: wm.mlp((4,), 0, 2), "n_in")),
    *rows("zoo.weightspace.weight_matching_lmc.loss_and_acc", ("label count", lambda: wm.loss_and_acc(_apply, _p, _x, _y[:3]), "y")),
    *rows("zoo.weightspace.weight_matching_lmc.lap_solve", ("not square", lambda: wm.lap_solve(np.ones((2, 3))), "C"),
          ("NaN", lambda: wm.lap_solve(np.array([[0.0, np.nan], [1.0, 0.0]])), "C")),
    *rows("zoo.weightspace.weight_matching_lmc.weight_matching",
          ("NaN params", lambda: wm.weight_matching(_spec, _p, _nan, key=_k), "params_b"),
          ("structures differ", lambda: wm.weight_matching(_spec, _p, _other, key=_k), "params_b"),
          ("spec does not cover params", lambda: wm.weight_matching(_partial, _p, _p, key=_k), "params")),
    *rows("zoo.weightspace.weight_matching_lmc.activation_matching",
          ("bad method", lambda: wm.activation_matching(_spec, lambda p, x: {}, _p, _p, _x, method="cka"), "method")),
    *rows("zoo.weightspace.weight_matching_lmc.ste_matching",
          ("bad optimizer", lambda: wm.ste_matching(_spec, lambda p, b: 0.0, _p, _p, [], key=_k, optimizer=None), "optimizer"),
          ("no batches", lambda: wm.ste_matching(_spec, lambda p, b: 0.0, _p, _p, [], key=_k, optimizer=optax.sgd(0.1)), "batches")),
    *rows("zoo.weightspace.weight_matching_lmc.barrier_report",
          ("ts outside [0, 1]", lambda: wm.barrier_report(_ev, _p, _p, jnp.array([-0.5, 1.0])), "ts")),
    *rows("zoo.weightspace.weight_matching_lmc.distance_report",
          ("not a permutation", lambda: wm.distance_report(_spec, _p, _p, {"P_0": jnp.zeros(4, jnp.int32)}), "perms")),
    *rows("zoo.weightspace.weight_matching_lmc.svd_alignment",
          ("k too large", lambda: wm.svd_alignment(_spec, _p, _p, _perms, k=9), "k")),
    *rows("zoo.weightspace.weight_matching_lmc.merged_alignment",
          ("unknown layer", lambda: wm.merged_alignment(_spec, _p, _p, _perms, k=1, layers=["nope"]), "layers")),
    *rows("zoo.weightspace.weight_matching_lmc.truncate_rank", ("rank 0", lambda: wm.truncate_rank(_p, 0), "rank")),
    *rows("zoo.weightspace.weight_matching_lmc.taylor_midpoint_barrier",
          ("structures differ", lambda: wm.taylor_midpoint_barrier(lambda p: 0.0, _p, _other), "params_b")),
    *rows("zoo.weightspace.weight_matching_lmc.merge_many", ("one model", lambda: wm.merge_many(_spec, [_p], key=_k), "params_list")),
    *rows("zoo.weightspace.weight_matching_lmc.merge_models", ("bad method", lambda: wm.merge_models(_spec, [_p, _p], "avg", key=_k), "method"),
          ("one model", lambda: wm.merge_models(_spec, [_p], key=_k), "params_list"),
          ("structures differ", lambda: wm.merge_models(_spec, [_p, _other], key=_k), "params_list")),
    *rows("zoo.weightspace.weight_matching_lmc.plane_losses", ("empty grid", lambda: wm.plane_losses(lambda p: 0.0, _p, _p, _p, jnp.ones(0)), "grid")),
    # bang
    *rows("zoo.weightspace.bang.wise_ft", ("alpha outside [0, 1]", lambda: bang.wise_ft(_p, _p, 1.5), "alpha"),
          ("NaN alpha", lambda: bang.wise_ft(_p, _p, float("nan")), "alpha"),
          ("structures differ", lambda: bang.wise_ft(_p, _other, 0.5), "theta1")),
    *rows("zoo.weightspace.bang.output_ensemble", ("shapes differ", lambda: bang.output_ensemble(jnp.ones((3, 2)), jnp.ones((3, 4))), "logits1")),
    *rows("zoo.weightspace.bang.outcome_table", ("shapes differ", lambda: bang.outcome_table(_y, _y, _y[:2], _y), "pred1")),
    *rows("zoo.weightspace.bang.fft_ratio", ("float labels", lambda: bang.fft_ratio(jnp.ones(5), _y, _y, _y), "y")),
    *rows("zoo.weightspace.bang.smooth_labels", ("eta outside [0, 1]", lambda: bang.smooth_labels(_y, 3, 1.5), "eta"),
          ("label out of range", lambda: bang.smooth_labels(_y + 5, 3), "y")),
    *rows("zoo.weightspace.bang.mixup", ("negative a", lambda: bang.mixup(_k, _x, jnp.ones((5, 2)), -1.0), "a"),
          ("rows differ", lambda: bang.mixup(_k, _x, jnp.ones((4, 2)), 0.2), "t")),
    *rows("zoo.weightspace.bang.bang_loss", ("label count", lambda: bang.bang_loss(_apply, _p, _k, _x, _y[:2], num_classes=2), "y")),
    *rows("zoo.weightspace.bang.temperature_scale_head", ("unknown head", lambda: bang.temperature_scale_head(_p, "head", 2.0), "head_path"),
          ("T <= 0", lambda: bang.temperature_scale_head(_p, "Dense_1", 0.0), "T")),
    *rows("zoo.weightspace.bang.fit_temperature", ("label count", lambda: bang.fit_temperature(jnp.ones((5, 3)), _y[:2]), "y"),
          ("NaN", lambda: bang.fit_temperature(jnp.full((5, 3), jnp.nan), _y), "logits")),
    *rows("zoo.weightspace.bang.theory_sim", ("overlap > n_sp", lambda: bang.theory_sim(_k, 10, overlap=7), "overlap"),
          ("p outside [0, 1]", lambda: bang.theory_sim(_k, 10, p=2.0), "p")),
    # zoo.data.colored_digits (not a family module; rows kept here for its bad inputs)
    *rows("zoo.data.colored_digits.make_multicolor",
          ("rho outside [0, 1]", lambda: cd.make_multicolor(_k, jnp.ones((2, 8, 8)), jnp.zeros(2, jnp.int32), cd.color_maps(_k), 1.5), "rho"),
          ("non-square", lambda: cd.make_multicolor(_k, jnp.ones((2, 8, 6)), jnp.zeros(2, jnp.int32), cd.color_maps(_k), 0.5), "images")),
    *rows("zoo.data.colored_digits.color_maps", ("classes > colours", lambda: cd.color_maps(_k, num_classes=12), "num_classes")),
    *rows("zoo.data.colored_digits.multicolor_digits", ("p outside [0, 1]", lambda: cd.multicolor_digits(_k, p=1.2), "p")),
]
