"""Hugging Face ``datasets`` wrapping with an on-disk cache under ``ZOO_CACHE``.

``datasets`` is imported lazily (inside these functions): ``import zoo`` must work without it,
and the GPU image does not have it. Nothing here ever downloads: the data come from our own
generators or from files inside installed packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """``$ZOO_CACHE`` or ``~/.cache/paperzoo``."""
    return Path(os.environ.get("ZOO_CACHE", "~/.cache/paperzoo")).expanduser()


def _require_datasets():
    try:
        import datasets
    except ImportError as e:
        raise ImportError(
            "this needs the Hugging Face 'datasets' package (a core dependency of paperzoo): "
            "pip install datasets"
        ) from e
    datasets.disable_progress_bars()
    return datasets


def _features(datasets, arrays: Mapping[str, np.ndarray]):
    """Exact feature types, so dtypes and fixed row shapes survive a round trip through disk."""
    feats = {}
    for k, v in arrays.items():
        dt = str(v.dtype)
        if v.ndim == 1:
            feats[k] = datasets.Value(dt)
        elif v.ndim == 2:
            feats[k] = datasets.Sequence(datasets.Value(dt), length=v.shape[1])
        elif 3 <= v.ndim <= 6:
            feats[k] = getattr(datasets, f"Array{v.ndim - 1}D")(shape=v.shape[1:], dtype=dt)
        else:
            raise ValueError(f"arrays[{k!r}]: expected 1 to 6 dimensions, got shape {v.shape}")
    return datasets.Features(feats)


def to_dataset(arrays: Mapping[str, np.ndarray]):
    """Wrap a dict of equal-length numpy arrays as a ``datasets.Dataset`` in numpy format."""
    datasets = _require_datasets()
    lens = {k: len(v) for k, v in arrays.items()}
    if len(set(lens.values())) != 1:
        raise ValueError(f"arrays: leading dimensions differ: {lens}")
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    return datasets.Dataset.from_dict(arrays, features=_features(datasets, arrays)).with_format("numpy")


def as_arrays(ds) -> dict[str, np.ndarray]:
    """All columns of a ``datasets.Dataset`` as numpy arrays (row axis first), in their stored dtypes.

    (The numpy formatter of ``datasets`` widens integers to int64; the declared feature dtype is restored.)
    """
    out = {}
    for k, v in ds.with_format("numpy")[:].items():
        feat = ds.features[k]
        dtype = getattr(feat, "dtype", None) or getattr(getattr(feat, "feature", None), "dtype", None)
        out[k] = np.asarray(v, dtype=dtype) if isinstance(dtype, str) else np.asarray(v)
    return out


def _fingerprint(generator: Callable, seed: int, kwargs: Mapping) -> str:
    spec = {
        "fn": f"{generator.__module__}.{generator.__qualname__}",
        "version": getattr(generator, "version", 1),
        "seed": seed,
        "kwargs": {k: kwargs[k] for k in sorted(kwargs)},
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=repr).encode()).hexdigest()[:20]


def cached_dataset(generator: Callable[..., Mapping[str, np.ndarray]], seed: int, *, cache: bool = True, **kwargs):
    """``generator(seed, **kwargs)`` as a ``datasets.Dataset``, built once and cached on disk.

    The cache key is the generator's qualified name, its ``version`` attribute (bump it when the
    generator's output changes), the seed and the keyword arguments. Columns whose leading axis
    differs from the row count (metadata such as ``centers``) are dropped.
    """
    datasets = _require_datasets()
    path = cache_dir() / "datasets" / f"{generator.__name__}-{_fingerprint(generator, seed, kwargs)}"
    if cache and path.exists():
        return datasets.load_from_disk(str(path)).with_format("numpy")
    arrays = dict(generator(seed, **kwargs))
    n = max(len(v) for v in arrays.values())
    ds = to_dataset({k: v for k, v in arrays.items() if len(v) == n})
    if cache:
        tmp = path.with_name(path.name + f".tmp-{uuid.uuid4().hex[:8]}")
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_to_disk(str(tmp))
        try:
            tmp.rename(path)  # atomic publish; a concurrent builder may have won the race
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
        return datasets.load_from_disk(str(path)).with_format("numpy")
    return ds
