"""The data layer: pure generators of a seed, bundled real data, HF ``datasets`` caching, batching.

``datasets`` is imported lazily inside :mod:`zoo.data.hf`; importing this package does not import it.
"""

from .batching import batch_at, batch_indices, batches, permute_index, steps_per_epoch
from .bundled import BUNDLED, load_bundled, load_digits
from .generators import blobs
from .hf import as_arrays, cache_dir, cached_dataset, to_dataset

__all__ = [
    "BUNDLED",
    "as_arrays",
    "batch_at",
    "batch_indices",
    "batches",
    "blobs",
    "cache_dir",
    "cached_dataset",
    "load_bundled",
    "load_digits",
    "permute_index",
    "steps_per_epoch",
    "to_dataset",
]
