"""Rows for zoo.weightspace.masks and zoo.weightspace.grokking_tickets."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.weightspace import grokking_tickets as gt
from zoo.weightspace import masks as mk

from ._row import rows

_P = {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)}
_M = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
_BAD_M = {"w": jnp.ones((4, 3)), "b": jnp.ones(4)}
_NAN = {"w": jnp.full((3, 4), jnp.nan), "b": jnp.zeros(4)}
_KEY = jax.random.key(0)
_CFG = gt.GrokConfig(p=5, d_emb=4, d_model=3)
_MLP = {"embed": jnp.ones((4, 5)), "w_in": jnp.ones((3, 4)), "w_out": jnp.ones((4, 3)), "unembed": jnp.ones((4, 5))}
_X = np.zeros((3, 2), np.int32)
_DATA = {"train_x": _X, "train_y": np.zeros(3, np.int32), "test_x": _X, "test_y": np.zeros(3, np.int32)}

ROWS = [
    # ---- masks
    *rows("zoo.weightspace.masks.topk_mask",
          ("density 0", lambda: mk.topk_mask(_P, 0.0), "density"),
          ("density > 1", lambda: mk.topk_mask(_P, 1.5), "density"),
          ("NaN scores", lambda: mk.topk_mask(_NAN, 0.5), "scores"),
          ("bad scope", lambda: mk.topk_mask(_P, 0.5, scope="layer"), "scope")),
    *rows("zoo.weightspace.masks.magnitude_mask",
          ("density negative", lambda: mk.magnitude_mask(_P, -0.1), "density"),
          ("density wrong type", lambda: mk.magnitude_mask(_P, "half"), "density", TypeError),
          ("empty params", lambda: mk.magnitude_mask({}, 0.5), "params"),
          ("int params", lambda: mk.magnitude_mask({"w": jnp.ones((2, 2), jnp.int32)}, 0.5), "params"),
          ("unknown prunable path", lambda: mk.magnitude_mask(_P, 0.5, prunable=["nope"]), "prunable"),
          ("prunable selects nothing", lambda: mk.magnitude_mask(_P, 0.5, prunable=lambda p, x: False), "prunable")),
    *rows("zoo.weightspace.masks.random_mask",
          ("not a key", lambda: mk.random_mask(3, _P, 0.5), "key", TypeError),
          ("density 0", lambda: mk.random_mask(_KEY, _P, 0.0), "density")),
    *rows("zoo.weightspace.masks.apply_mask",
          ("mask structure differs", lambda: mk.apply_mask(_P, {"w": jnp.ones((3, 4))}), "mask"),
          ("mask shape differs", lambda: mk.apply_mask(_P, _BAD_M), "mask")),
    *rows("zoo.weightspace.masks.ones_mask", ("empty params", lambda: mk.ones_mask([]), "params")),
    *rows("zoo.weightspace.masks.mask_density",
          ("mask differs from params", lambda: mk.mask_density(_BAD_M, params=_P), "mask")),
    *rows("zoo.weightspace.masks.mask_updates", ("empty mask", lambda: mk.mask_updates({}), "mask")),
    *rows("zoo.weightspace.masks.masked_optimizer",
          ("not an optimizer", lambda: mk.masked_optimizer("adam", _M), "optimizer", TypeError)),
    *rows("zoo.weightspace.masks.prunable_flags",
          ("prunable wrong type", lambda: mk.prunable_flags(_P, 3), "prunable", TypeError)),
    *rows("zoo.weightspace.masks.same_norm_rescale",
          ("bad norm", lambda: mk.same_norm_rescale(_P, _M, norm="linf"), "norm"),
          ("mask shape differs", lambda: mk.same_norm_rescale(_P, _BAD_M), "mask")),
    # ---- grokking tickets
    *rows("zoo.weightspace.grokking_tickets.modular_pairs",
          ("p < 2", lambda: gt.modular_pairs(1), "p"),
          ("frac_train 1", lambda: gt.modular_pairs(7, frac_train=1.0), "frac_train"),
          ("frac_train too small", lambda: gt.modular_pairs(7, frac_train=0.01), "frac_train"),
          ("unknown op", lambda: gt.modular_pairs(7, op="div"), "op"),
          ("p wrong type", lambda: gt.modular_pairs(7.0), "p", TypeError)),
    *rows("zoo.weightspace.grokking_tickets.init_mlp",
          ("d_emb 0", lambda: gt.init_mlp(_KEY, 5, d_emb=0), "d_emb"),
          ("not a key", lambda: gt.init_mlp(0, 5), "key", TypeError),
          ("int dtype", lambda: gt.init_mlp(_KEY, 5, dtype=jnp.int32), "dtype")),
    *rows("zoo.weightspace.grokking_tickets.init_transformer",
          ("n_heads 0", lambda: gt.init_transformer(_KEY, 5, n_heads=0), "n_heads")),
    *rows("zoo.weightspace.grokking_tickets.init_params",
          ("cfg wrong type", lambda: gt.init_params(_KEY, {"p": 5}), "cfg", TypeError)),
    *rows("zoo.weightspace.grokking_tickets.mlp_apply",
          ("missing leaf", lambda: gt.mlp_apply({"embed": jnp.ones((4, 5))}, None, _X), "params"),
          ("mask structure differs", lambda: gt.mlp_apply(_MLP, {"embed": jnp.ones((4, 5))}, _X), "mask"),
          ("float tokens", lambda: gt.mlp_apply(_MLP, None, np.zeros((3, 2))), "x"),
          ("three tokens", lambda: gt.mlp_apply(_MLP, None, np.zeros((3, 3), np.int32)), "x")),
    *rows("zoo.weightspace.grokking_tickets.transformer_apply",
          ("mlp params", lambda: gt.transformer_apply(_MLP, None, _X), "params")),
    *rows("zoo.weightspace.grokking_tickets.cross_entropy",
          ("label shape", lambda: gt.cross_entropy(jnp.ones((3, 5)), jnp.zeros(2, jnp.int32)), "y"),
          ("NaN logits", lambda: gt.cross_entropy(jnp.full((3, 5), jnp.nan), jnp.zeros(3, jnp.int32)), "logits")),
    *rows("zoo.weightspace.grokking_tickets.full_batch_loss",
          ("apply not callable", lambda: gt.full_batch_loss(None, _MLP, None, _X, np.zeros(3, np.int32)), "apply_fn",
           TypeError),
          ("label shape", lambda: gt.full_batch_loss(gt.mlp_apply, _MLP, None, _X, np.zeros(2, np.int32)), "y")),
    *rows("zoo.weightspace.grokking_tickets.GrokConfig",
          ("unknown model", lambda: gt.GrokConfig(model="cnn"), "model"),
          ("negative wd", lambda: gt.GrokConfig(wd=-1.0), "wd"),
          ("bad betas", lambda: gt.GrokConfig(betas=(0.9, 1.0)), "betas"),
          ("lr 0", lambda: gt.GrokConfig(lr=0.0), "lr")),
    *rows("zoo.weightspace.grokking_tickets.make_optimizer",
          ("negative wd", lambda: gt.make_optimizer(_CFG, wd=-0.5), "wd")),
    *rows("zoo.weightspace.grokking_tickets.init_state",
          ("mask shape differs", lambda: gt.init_state(_CFG, _MLP, {**_MLP, "w_in": jnp.ones((4, 3))}), "mask")),
    *rows("zoo.weightspace.grokking_tickets.train_chunk",
          ("k 0", lambda: gt.train_chunk(_CFG, None, _MLP, _DATA, 0), "k"),
          ("data missing keys", lambda: gt.train_chunk(_CFG, None, _MLP, {"train_x": _X}, 2), "data")),
    *rows("zoo.weightspace.grokking_tickets.evaluate",
          ("data missing keys", lambda: gt.evaluate(_CFG, _MLP, None, {}), "data")),
    *rows("zoo.weightspace.grokking_tickets.train_run",
          ("steps not a multiple", lambda: gt.train_run(_CFG, _MLP, None, _DATA, steps=5, eval_every=2), "steps"),
          ("eval_every 0", lambda: gt.train_run(_CFG, _MLP, None, _DATA, steps=4, eval_every=0), "eval_every")),
    *rows("zoo.weightspace.grokking_tickets.grokking_ticket",
          ("density 0", lambda: gt.grokking_ticket(_P, _P, 0.0), "density"),
          ("density > 1", lambda: gt.grokking_ticket(_P, _P, 2.0), "density"),
          ("structures differ", lambda: gt.grokking_ticket(_P, {"w": jnp.ones((3, 4))}, 0.5), "params0")),
    *rows("zoo.weightspace.grokking_tickets.control_arms",
          ("bad norm", lambda: gt.control_arms(_KEY, _P, _M, norms=("l3",)), "norms"),
          ("empty mask", lambda: gt.control_arms(_KEY, _P, {"w": jnp.zeros((3, 4)), "b": jnp.ones(4)}), "mask"),
          ("mask shape differs", lambda: gt.control_arms(_KEY, _P, _BAD_M), "mask")),
    *rows("zoo.weightspace.grokking_tickets.steps_to",
          ("length mismatch", lambda: gt.steps_to(np.arange(3), np.zeros(4)), "values"),
          ("thr > 1", lambda: gt.steps_to(np.arange(3), np.zeros(3), 1.5), "thr"),
          ("empty steps", lambda: gt.steps_to(np.zeros(0, np.int32), np.zeros(0)), "steps")),
]

EXEMPT = {
    "zoo.weightspace.grokking_tickets.OnlyMLP": "a flax module class; its inputs are checked by init_mlp / mlp_apply",
    "zoo.weightspace.grokking_tickets.Transformer": "a flax module class; inputs checked by init_transformer / "
                                                    "transformer_apply",
}
