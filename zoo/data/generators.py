"""Pure data generators: each is a function of a seed (and size parameters) returning numpy arrays.

Generators use ``np.random.default_rng(seed)`` only, so the same arguments give the same arrays
on every machine; wrap one in :func:`zoo.data.cached_dataset` to keep it on disk as a Hugging
Face ``datasets.Dataset``. Paper-specific generators live beside their papers and follow this
contract: ``gen(seed: int, **sizes) -> dict[str, np.ndarray]`` with a shared leading row axis.
"""

from __future__ import annotations

import numpy as np

from zoo.checks import check_range


def blobs(
    seed: int,
    *,
    n_samples: int = 1000,
    centers: int = 3,
    n_features: int = 2,
    cluster_std: float = 1.0,
    center_box: tuple[float, float] = (-10.0, 10.0),
) -> dict[str, np.ndarray]:
    """Isotropic Gaussian blobs: centres ~ U(center_box)^D, x = centre_y + cluster_std * N(0, I).

    Returns ``{"x": f32[n_samples, n_features], "y": i32[n_samples], "centers": f32[centers, n_features]}``
    with ``y`` balanced (sizes differ by at most 1) and rows shuffled. ``centers`` is per-row
    only in the sense of being broadcast-free metadata: it has its own leading axis, so drop it
    before batching.
    """
    check_range("n_samples", n_samples, low=1)
    check_range("centers", centers, low=1, high=n_samples)
    check_range("n_features", n_features, low=1)
    check_range("cluster_std", cluster_std, low=0.0)
    rng = np.random.default_rng(seed)
    c = rng.uniform(center_box[0], center_box[1], size=(centers, n_features))
    y = np.arange(n_samples) % centers
    rng.shuffle(y)
    x = c[y] + cluster_std * rng.standard_normal((n_samples, n_features))
    return {"x": x.astype(np.float32), "y": y.astype(np.int32), "centers": c.astype(np.float32)}
