"""Deterministic shuffled batching.

A batch is a pure function of ``(key, step)``: epoch ``e = step // S`` with ``S = N // batch_size``
steps per epoch uses the permutation ``perm_e = permutation(fold_in(key, e), N)`` and batch
``step`` takes rows ``perm_e[(step mod S) * B : (step mod S + 1) * B]`` (the last ``N mod B`` rows
of each epoch are dropped). Because nothing depends on iteration history, a resumed run sees
exactly the batches of an uninterrupted one, and the function runs inside ``jit``/``lax.scan``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range


def _num_rows(arrays: Mapping[str, object]) -> int:
    if not arrays:
        raise ValueError("arrays: expected a non-empty dict of arrays")
    sizes = {k: int(np.shape(v)[0]) if np.ndim(v) else None for k, v in arrays.items()}
    if any(s is None for s in sizes.values()):
        raise ValueError(f"arrays: every array needs a leading row axis, got shapes "
                         f"{ {k: np.shape(v) for k, v in arrays.items()} }")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"arrays: leading dimensions differ: {sizes}")
    return next(iter(sizes.values()))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Number of full batches in one pass over ``n`` rows."""
    check_range("batch_size", batch_size, low=1, high=n)
    return n // batch_size


def batch_indices(key: jax.Array, step, *, n: int, batch_size: int) -> jax.Array:
    """Row indices i32[batch_size] of batch ``step`` (jit-able; ``step`` may be traced)."""
    spe = steps_per_epoch(n, batch_size)
    step = jnp.asarray(step, jnp.int32)
    perm = jax.random.permutation(jax.random.fold_in(key, step // spe), n)
    return jax.lax.dynamic_slice_in_dim(perm, (step % spe) * batch_size, batch_size)


def batch_at(arrays: Mapping[str, jax.Array], step, *, batch_size: int, key: jax.Array) -> dict:
    """Batch number ``step`` of a shuffled, epoch-wise pass over ``arrays`` (dict of f[N, ...]).

    Pure and jit-able in ``step``; use ``functools.partial(batch_at, arrays, batch_size=B, key=k)``
    as the ``batch_fn`` of :func:`zoo.train.fit`.
    """
    n = _num_rows(arrays)
    idx = batch_indices(key, step, n=n, batch_size=batch_size)
    return {k: jnp.take(jnp.asarray(v), idx, axis=0) for k, v in arrays.items()}


def batches(data, batch_size: int, key: jax.Array, *, epochs: int = 1, start_step: int = 0) -> Iterator[dict]:
    """Host-side iterator of numpy batches over a dict of arrays or a ``datasets.Dataset``.

    Yields the same batches as :func:`batch_at` for steps ``start_step, start_step + 1, ...``
    up to ``epochs`` full epochs.
    """
    if hasattr(data, "with_format"):  # a datasets.Dataset
        from .hf import as_arrays

        arrays = as_arrays(data)
    else:
        arrays = {k: np.asarray(v) for k, v in data.items()}
    n = _num_rows(arrays)
    spe = steps_per_epoch(n, batch_size)
    check_range("epochs", epochs, low=1)
    idx_fn = jax.jit(lambda s: batch_indices(key, s, n=n, batch_size=batch_size))
    for step in range(start_step, epochs * spe):
        idx = np.asarray(idx_fn(step))
        yield {k: v[idx] for k, v in arrays.items()}
