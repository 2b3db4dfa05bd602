"""A multilayer perceptron: the default tiny model of the zoo's experiments and benchmarks.

    h_0 = x,   h_l = act(h_{l-1} W_l + b_l)  (l < L),   y = h_{L-1} W_L + b_L   -> `MLP.__call__`

No activation after the last layer (it returns logits / raw outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.checks import check_array


class MLP(nn.Module):
    """Dense layers of widths ``features`` with ``activation`` between them (not after the last).

    Attributes:
      features: output width of each layer, e.g. ``(128, 128, 10)`` for a 64-128-128-10 net on
        64-dim inputs (the input width is inferred at ``init``).
      activation: elementwise nonlinearity applied after every layer but the last.
      dtype: computation dtype (``None``: the inputs'/params' promoted dtype).
      param_dtype: parameter dtype (float32 by default).

    Call: ``x: f[..., D_in] -> f[..., features[-1]]``.
    Params: ``{"Dense_i": {"kernel": f[d_i, d_{i+1}], "bias": f[d_{i+1}]}}`` for i = 0..L-1.
    """

    features: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        feats = tuple(self.features) if isinstance(self.features, Sequence) else None
        if not feats:
            raise ValueError(f"features: expected a non-empty sequence of positive ints, got {self.features!r}")
        for i, f in enumerate(feats):
            if isinstance(f, bool) or not isinstance(f, int) or f < 1:
                raise ValueError(f"features[{i}]: expected a positive int, got {f!r}")
        if not callable(self.activation):
            raise ValueError(f"activation: expected a callable, got {self.activation!r}")
        object.__setattr__(self, "features", feats)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_array("x", x, ndim=range(1, 33), finite=False)  # shape only; runs under jit too
        for i, width in enumerate(self.features):
            x = nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype, name=f"Dense_{i}")(x)
            if i < len(self.features) - 1:
                x = self.activation(x)
        return x
