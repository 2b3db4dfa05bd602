"""``TrainState``: everything a training run carries from one step to the next, as one pytree.

The state is pure data (arrays and containers of arrays), so it can be jitted, donated, vmapped
over seeds, sharded over a mesh and checkpointed as-is. The optimizer (an
``optax.GradientTransformation``) is *not* stored: it is passed to the step functions instead.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax


def _check_key(name: str, key: Any) -> None:
    """A single PRNG key: a typed key array of shape () or a raw ``uint32[2]`` key."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"{name}: expected a single PRNG key (shape ()), got a key array of shape {key.shape}")
        return
    shape = getattr(key, "shape", None)
    dtype = getattr(key, "dtype", None)
    if shape != (2,) or dtype is None or np.dtype(dtype) != np.uint32:
        raise ValueError(
            f"{name}: expected a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), "
            f"got {type(key).__name__} with shape {shape} and dtype {dtype}"
        )


@flax.struct.dataclass
class TrainState:
    """The state of a training run.

    Attributes:
      step: i32[] number of optimizer updates applied so far (0 at creation).
      params: the model's parameter pytree.
      opt_state: the optimizer's state for ``params``.
      rng: PRNG key of the run; step ``s`` uses ``jax.random.fold_in(rng, s)``, so the
        randomness of a step depends only on (rng, s) and a resumed run replays it exactly.
      extras: a dict pytree for anything else a method carries (EMA params, buffers, ...);
        the train step passes it through unchanged.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    extras: dict = flax.struct.field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        params: Any,
        optimizer: optax.GradientTransformation,
        rng: jax.Array,
        extras: dict | None = None,
    ) -> TrainState:
        """A fresh state at step 0 with ``opt_state = optimizer.init(params)``.

        Works under ``jit``/``vmap`` (e.g. inside a population run).
        """
        if not hasattr(optimizer, "init") or not hasattr(optimizer, "update"):
            raise ValueError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
        _check_key("rng", rng)
        if extras is not None and not isinstance(extras, dict):
            raise ValueError(f"extras: expected a dict (or None), got {type(extras).__name__}")
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            rng=rng,
            extras={} if extras is None else extras,
        )
