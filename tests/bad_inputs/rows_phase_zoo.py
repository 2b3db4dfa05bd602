"""Rows for zoo.weightspace.landscape and zoo.weightspace.phase_zoo."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.weightspace import landscape as ls
from zoo.weightspace import phase_zoo as pz

from ._row import rows

_k = jax.random.key(0)
_p = {"w": jnp.ones(3)}
_nan = {"w": jnp.array([1.0, jnp.nan, 0.0])}
_f = lambda p: jnp.sum(p["w"] ** 2)  # noqa: E731
_apply = lambda p, x: x  # noqa: E731
_data = {"x_train": np.ones((4, 2), np.float32), "y_train": np.zeros(4, np.int32),
         "x_test": np.ones((4, 2), np.float32), "y_test": np.zeros(4, np.int32)}
_m = {"train_loss": np.ones(2), "mc_err": np.zeros(2), "cka": np.ones(2)}
_cfg = pz.ZooConfig(widths=(2,), lrs=(0.1,), epochs=1)

ROWS = [
    *rows("zoo.weightspace.landscape.hvp",
          ("NaN", lambda: ls.hvp(_f, _nan, _p), "params"),
          ("wrong shape", lambda: ls.hvp(_f, _p, {"w": jnp.ones(4)}), "v"),
          ("wrong type", lambda: ls.hvp("f", _p, _p), "loss_fn", TypeError)),
    *rows("zoo.weightspace.landscape.top_eigenvalue",
          ("out of range", lambda: ls.top_eigenvalue(_f, _p, _k, max_iter=0), "max_iter"),
          ("wrong type", lambda: ls.top_eigenvalue(_f, _p, 3), "key", TypeError)),
    *rows("zoo.weightspace.landscape.lanczos_eigenvalues",
          ("m larger than dimension", lambda: ls.lanczos_eigenvalues(_f, _p, _k, m=4), "m")),
    *rows("zoo.weightspace.landscape.hutchinson_trace",
          ("out of range", lambda: ls.hutchinson_trace(_f, _p, _k, max_probes=0), "max_probes"),
          ("negative tol", lambda: ls.hutchinson_trace(_f, _p, _k, tol=-1.0), "tol")),
    *rows("zoo.weightspace.landscape.linear_cka",
          ("rows differ", lambda: ls.linear_cka(np.ones((4, 2)), np.ones((5, 2))), "Y"),
          ("NaN", lambda: ls.linear_cka(np.full((4, 2), np.nan), np.ones((4, 2))), "X"),
          ("wrong shape", lambda: ls.linear_cka(np.ones(4), np.ones((4, 2))), "X")),
    *rows("zoo.weightspace.landscape.minibatch_cka",
          ("wrong shape", lambda: ls.minibatch_cka(np.ones((4, 2)), np.ones((4, 2))), "Xb"),
          ("batches differ", lambda: ls.minibatch_cka(np.ones((2, 4, 2)), np.ones((3, 4, 2))), "Yb")),
    *rows("zoo.weightspace.landscape.loss_barrier",
          ("ts without ends", lambda: ls.loss_barrier(_f, _p, _p, jnp.array([0.2, 0.5])), "ts"),
          ("structure differs", lambda: ls.loss_barrier(_f, _p, {"v": jnp.ones(3)}, None), "pb")),
    *rows("zoo.weightspace.landscape.bezier_point",
          ("t out of range", lambda: ls.bezier_point(jnp.float32(1.5), _p, _p, _p), "t"),
          ("wrong shape", lambda: ls.bezier_point(jnp.float32(0.5), _p, {"w": jnp.ones(2)}, _p), "theta1")),
    *rows("zoo.weightspace.landscape.fit_bezier",
          ("out of range", lambda: ls.fit_bezier(lambda p, b: _f(p), _p, _p, jnp.ones(3), _k, lr=0.0), "lr"),
          ("no steps axis", lambda: ls.fit_bezier(lambda p, b: _f(p), _p, _p, jnp.float32(1.0), _k), "batches")),
    *rows("zoo.weightspace.landscape.bezier_losses",
          ("unsorted ts", lambda: ls.bezier_losses(_f, _p, _p, _p, jnp.array([0.5, 0.2])), "ts"),
          ("wrong type", lambda: ls.bezier_losses(None, _p, _p, _p), "eval_fn", TypeError)),
    # phase_zoo
    *rows("zoo.weightspace.phase_zoo.load_data",
          ("out of range", lambda: pz.load_data(test_frac=1.5), "test_frac")),
    *rows("zoo.weightspace.phase_zoo.make_mlp",
          ("non-positive width", lambda: pz.make_mlp(0), "width"),
          ("wrong type", lambda: pz.make_mlp(2.5), "width", TypeError),
          ("int dtype", lambda: pz.make_mlp(2, dtype=jnp.int32), "dtype")),
    *rows("zoo.weightspace.phase_zoo.train_group",
          ("wrong type", lambda: pz.train_group({"widths": (2,)}, 2, _data, _k), "cfg", TypeError),
          ("missing key", lambda: pz.train_group(_cfg, 2, {"x_train": _data["x_train"]}, _k), "data")),
    *rows("zoo.weightspace.phase_zoo.performance",
          ("wrong type", lambda: pz.performance(None, _p, _data), "apply_fn", TypeError),
          ("NaN", lambda: pz.performance(_apply, _p, {**_data, "x_train": np.full((4, 2), np.nan, np.float32)}),
           "x_train")),
    *rows("zoo.weightspace.phase_zoo.hessian_metrics",
          ("out of range", lambda: pz.hessian_metrics(_f, _p, _k, max_iter=0), "max_iter"),
          ("out of range", lambda: pz.hessian_metrics(_f, _p, _k, max_probes=0), "max_probes")),
    *rows("zoo.weightspace.phase_zoo.cka_logits",
          ("wrong shape", lambda: pz.cka_logits(_apply, _p, _p, np.ones((4, 2))), "x_batches"),
          ("wrong type", lambda: pz.cka_logits(None, _p, _p, np.ones((1, 4, 2))), "apply_fn", TypeError)),
    *rows("zoo.weightspace.phase_zoo.mode_connectivity",
          ("bad choice", lambda: pz.mode_connectivity(lambda p: (_f(p), _f(p)), _p, _p, curve="cubic"), "curve"),
          ("bezier without batches", lambda: pz.mode_connectivity(lambda p: (_f(p), _f(p)), _p, _p), "curve"),
          ("out of range", lambda: pz.mode_connectivity(lambda p: (_f(p), _f(p)), _p, _p, curve="linear", n_ts=2),
           "n_ts")),
    *rows("zoo.weightspace.phase_zoo.classify_phase",
          ("missing metric", lambda: pz.classify_phase({"train_loss": np.ones(2)}), "m"),
          ("shapes differ", lambda: pz.classify_phase({**_m, "cka": np.ones(3)}), "m"),
          ("out of range", lambda: pz.classify_phase(_m, tau_cka=1.5), "tau_cka"),
          ("wrong type", lambda: pz.classify_phase([1, 2]), "m", TypeError)),
    *rows("zoo.weightspace.phase_zoo.phase_components",
          ("wrong shape", lambda: pz.phase_components(np.zeros(3, np.int32)), "labels"),
          ("float labels", lambda: pz.phase_components(np.zeros((2, 2))), "labels")),
    *rows("zoo.weightspace.phase_zoo.build_zoo",
          ("wrong type", lambda: pz.build_zoo(None, _data, _k), "cfg", TypeError)),
    *rows("zoo.weightspace.phase_zoo.save_zoo",
          ("not a zoo", lambda: pz.save_zoo({"params": {}}, "/tmp/never_written_zoo"), "zoo")),
    *rows("zoo.weightspace.phase_zoo.load_zoo",
          ("missing", lambda: pz.load_zoo("/nonexistent/phase_zoo_dir"), "path")),
    *rows("zoo.weightspace.phase_zoo.ZooConfig",
          ("one seed", lambda: pz.ZooConfig(n_seeds=1), "n_seeds"),
          ("unsorted grid", lambda: pz.ZooConfig(widths=(8, 4)), "widths"),
          ("non-positive lr", lambda: pz.ZooConfig(lrs=(0.0, 0.1)), "lrs"),
          ("bad choice", lambda: pz.ZooConfig(curve="cubic"), "curve")),
]
