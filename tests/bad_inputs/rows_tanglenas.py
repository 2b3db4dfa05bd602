"""Rows for zoo.weightspace.tanglenas."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.weightspace import tanglenas as tn

from ._row import rows

M = "zoo.weightspace.tanglenas."
_sp = tn.SearchSpace(channels=(2, 4), kernels=(1, 3), n_layers=1, num_classes=3)
_key = jax.random.key(0)
_p = jnp.array([0.5, 0.5])
_x = jnp.zeros((2, 5))
_probs = {"channels": jnp.full((1, 2), 0.5), "kernels": jnp.full((1, 2), 0.5)}
_arch = {"channels": jnp.array([0]), "kernels": jnp.array([1])}
_nan_alpha = {"channels": jnp.array([[np.nan, 0.0]]), "kernels": jnp.zeros((1, 2))}
_b = {"x": _x, "y": jnp.zeros(2, jnp.int32)}

ROWS = [
    *rows(M + "SearchSpace",
          ("unsorted", lambda: tn.SearchSpace(channels=(16, 8)), "channels"),
          ("even kernel", lambda: tn.SearchSpace(kernels=(3, 4)), "kernels"),
          ("out of range", lambda: tn.SearchSpace(n_layers=0), "n_layers")),
    *rows(M + "SearchConfig",
          ("bad choice", lambda: tn.SearchConfig(method="enas"), "method"),
          ("out of range", lambda: tn.SearchConfig(a_lr=0.0), "a_lr")),
    *rows(M + "coeff_channels",
          ("exceeds super-weight", lambda: tn.coeff_channels(_p, (8, 64), 32), "values"),
          ("wrong length", lambda: tn.coeff_channels(jnp.ones(3) / 3, (8, 16), 32), "p")),
    *rows(M + "coeff_kernel",
          ("even kernel", lambda: tn.coeff_kernel(_p, (2, 4), 5), "values"),
          ("NaN", lambda: tn.coeff_kernel(jnp.array([np.nan, 1.0]), (1, 3), 3), "p")),
    *rows(M + "mixed_conv_weight",
          ("wrong ndim", lambda: tn.mixed_conv_weight(jnp.ones((3, 3))), "theta"),
          ("wrong length", lambda: tn.mixed_conv_weight(jnp.ones((3, 2, 4)), p_out=jnp.ones(3) / 3,
                                                        out_values=(2, 4)), "p")),
    *rows(M + "mixed_dense_weight",
          ("wrong ndim", lambda: tn.mixed_dense_weight(jnp.ones(3)), "theta")),
    *rows(M + "output_superposition",
          ("not callables", lambda: tn.output_superposition([1, 2], _p, _x), "fns", TypeError),
          ("wrong length", lambda: tn.output_superposition([jnp.sin], _p, _x), "w")),
    *rows(M + "sparsemax", ("wrong dtype", lambda: tn.sparsemax(jnp.arange(3)), "z")),
    *rows(M + "mixture_weights",
          ("NaN", lambda: tn.mixture_weights(jnp.array([np.nan, 0.0]), _key), "alpha"),
          ("bad choice", lambda: tn.mixture_weights(_p, _key, method="enas"), "method")),
    *rows(M + "init_supernet", ("wrong type", lambda: tn.init_supernet(_key, "space"), "space", TypeError)),
    *rows(M + "init_ws_supernet", ("wrong type", lambda: tn.init_ws_supernet(_key, None), "space", TypeError)),
    *rows(M + "supernet_apply",
          ("wrong probs shape", lambda: tn.supernet_apply(tn.init_supernet(_key, _sp), _x,
                                                          {"channels": jnp.ones((1, 3)), "kernels": jnp.ones((1, 2))},
                                                          _sp), "probs"),
          ("NaN", lambda: tn.supernet_apply(tn.init_supernet(_key, _sp), _x.at[0, 0].set(np.nan), _probs, _sp), "x")),
    *rows(M + "ws_supernet_apply",
          ("wrong ndim", lambda: tn.ws_supernet_apply(tn.init_ws_supernet(_key, _sp), jnp.zeros(5), _probs, _sp), "x")),
    *rows(M + "param_count",
          ("index out of range", lambda: tn.param_count({"channels": jnp.array([5]), "kernels": jnp.array([0])}, _sp),
           "arch")),
    *rows(M + "init_alpha", ("wrong type", lambda: tn.init_alpha(_key, 3), "space", TypeError)),
    *rows(M + "init_search", ("wrong type", lambda: tn.init_search(_key, _sp, "drnas"), "cfg", TypeError)),
    *rows(M + "search_step",
          ("missing key", lambda: tn.search_step(None, {"x": _x}, _b, _sp, tn.SearchConfig()), "batch_train"),
          ("float labels", lambda: tn.search_step(None, _b, {"x": _x, "y": jnp.zeros(2)}, _sp, tn.SearchConfig()),
           "batch_val")),
    *rows(M + "discretize",
          ("NaN", lambda: tn.discretize(_nan_alpha, _sp), "alpha"),
          ("wrong keys", lambda: tn.discretize({"channels": jnp.zeros((1, 2))}, _sp), "alpha")),
    *rows(M + "onehot_probs", ("negative index", lambda: tn.onehot_probs({**_arch, "kernels": jnp.array([-1])}, _sp),
                               "arch")),
    *rows(M + "arch_values", ("wrong shape", lambda: tn.arch_values({**_arch, "channels": jnp.array([0, 1])}, _sp),
                              "arch")),
    *rows(M + "enumerate_architectures", ("wrong type", lambda: tn.enumerate_architectures({}), "space", TypeError)),
    *rows(M + "accuracy",
          ("label count", lambda: tn.accuracy(tn.init_supernet(_key, _sp), _x, jnp.zeros(3, jnp.int32), _probs, _sp),
           "y")),
    *rows(M + "spos_random_search",
          ("out of range", lambda: tn.spos_random_search({}, _x, _b["y"], _key, _sp, n_samples=0), "n_samples")),
]
