"""Fused k-means assignment (PPP's hot loop).

``assign_reference(x, c, mask=None) -> (labels i32[N], d2 f32[N])``:
    d2_ik = ||x_i||^2 - 2 x_i . c_k + ||c_k||^2,  labels_i = argmin_k d2_ik (ties -> lowest k),
    d2_i = min_k d2_ik (clamped at 0). Rows with ``mask`` False get label -1 and d2 0.

The Pallas kernel ``assign`` (same API plus block sizes and ``interpret``) is added below.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def assign_reference(x: jax.Array, c: jax.Array, mask: jax.Array | None = None):
    """Pure-jnp nearest-centroid assignment; materialises the N x K distance matrix.

    Args:
      x: f[N, D] points.  c: f[K, D] centroids.  mask: optional bool[N]; False rows -> label -1.
    Returns:
      (labels i32[N], d2 f[N]) — index of the nearest centroid and squared distance to it.
    """
    xx = jnp.sum(x * x, axis=1, keepdims=True)
    cc = jnp.sum(c * c, axis=1)
    d2 = xx - 2.0 * (x @ c.T) + cc[None, :]
    labels = jnp.argmin(d2, axis=1).astype(jnp.int32)
    dmin = jnp.maximum(jnp.min(d2, axis=1), 0.0)
    if mask is not None:
        labels = jnp.where(mask, labels, -1)
        dmin = jnp.where(mask, dmin, 0.0)
    return labels, dmin
