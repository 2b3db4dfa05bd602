"""Deterministic shuffled batching.

A batch is a pure function of ``(key, step)``: epoch ``e = step // S`` with ``S = N // batch_size``
steps per epoch uses a pseudo-random permutation ``pi_e`` of ``[0, N)`` keyed by ``fold_in(key, e)``,
and batch ``step`` takes rows ``pi_e(j)`` for ``j`` in ``[(step mod S) B, (step mod S + 1) B)`` (the
last ``N mod B`` positions of each epoch are dropped). Because nothing depends on iteration history,
a resumed run sees exactly the batches of an uninterrupted one, and the function runs inside
``jit``/``lax.scan``.

``pi_e`` is evaluated only at the ``B`` positions a batch needs (O(B) work, no O(N log N) shuffle
per step): a 4-round Feistel network on ``2h >= ceil(log2 N)`` bits whose round function is an
integer hash of (half-word XOR round key), restricted to ``[0, N)`` by cycle walking (re-apply
until the value falls below ``N``; a bijection of the larger domain walks every point of ``[0, N)``
to a distinct point of ``[0, N)``). The round keys come from ``jax.random.bits``. Quality is
that of a keyed pseudo-random permutation, ample for SGD shuffling; it is not ``jax.random.permutation``.
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


_ROUNDS = 4


def _hash32(x: jax.Array) -> jax.Array:
    """A 32-bit integer mixing function (xorshift-multiply, 'lowbias32'); uint32 -> uint32."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def permute_index(key: jax.Array, i: jax.Array, n: int) -> jax.Array:
    """``pi(i)`` for a keyed pseudo-random bijection ``pi`` of ``[0, n)``; ``i: int[...]`` in ``[0, n)``.

    Work is proportional to ``i.size`` (see the module docstring for the construction).
    """
    check_range("n", n, low=1, high=2**31 - 1)
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = jnp.uint32((1 << half) - 1)
    round_keys = jax.random.bits(key, (_ROUNDS,), jnp.uint32)

    def feistel(x):
        left, right = x >> half, x & mask
        for r in range(_ROUNDS):
            left, right = right, left ^ (_hash32(right ^ round_keys[r]) & mask)
        return (left << half) | right

    x = feistel(jnp.asarray(i, jnp.uint32))
    x = jax.lax.while_loop(lambda x: jnp.any(x >= n), lambda x: jnp.where(x >= n, feistel(x), x), x)
    return x.astype(jnp.int32)


def batch_indices(key: jax.Array, step, *, n: int, batch_size: int) -> jax.Array:
    """Row indices i32[batch_size] of batch ``step`` (jit-able; ``step`` may be traced)."""
    spe = steps_per_epoch(n, batch_size)
    step = jnp.asarray(step, jnp.int32)
    positions = (step % spe) * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
    return permute_index(jax.random.fold_in(key, step // spe), positions, n)


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
