"""Populations: a whole training run (init + every step) vmapped over seeds and/or hyperparameters.

    run(key, hparams) -> (final TrainState, metrics[num_steps])          -> `make_run`
    population(run, keys[S])                  -> leaves [S, ...]          -> `population`
    population(run, key, hparams[H])          -> leaves [H, ...]
    population(run, keys[S], hparams[S])      -> leaves [S, ...]   (zipped: run i gets keys[i], hparams[i])
    population(run, keys[S], hparams[H], grid=True) -> leaves [S, H, ...]  (outer product)

One compiled program trains the whole population: each matmul of the model becomes a batched
matmul over the population axis, a batch shared by all members stays unbatched (it is gathered
once per step, and the first layer's matmul becomes one wide matmul), and the per-step costs
(dispatch, batch gathering, loop overhead) are paid once per step for all members.
See ``benchmarks/population.py`` for measured speedups.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .state import TrainState
from .step import LossFn, scan_steps

RunFn = Callable[[jax.Array, Any], tuple[TrainState, dict]]


def make_run(
    init_fn: Callable[[jax.Array], Any],
    loss_fn: LossFn,
    optimizer_fn: Callable[[Any], optax.GradientTransformation],
    batch_fn: Callable[..., Any],
    num_steps: int,
    *,
    per_seed_data: bool = False,
) -> RunFn:
    """A pure ``run(key, hparams=None) -> (state, metrics)`` training ``num_steps`` steps in one scan.

    ``key`` is split into (init, train-rng, data) keys; ``params = init_fn(init_key)``;
    ``optimizer = optimizer_fn(hparams)`` is built from (possibly traced) hyperparameters,
    e.g. ``lambda h: optax.adam(h["lr"])`` makes the learning rate a vmappable axis
    (``hparams`` is None when the population has no hyperparameter axis).
    ``batch_fn(step)`` gives the batch of a step, shared by every member; with
    ``per_seed_data=True`` it is called as ``batch_fn(step, data_key)`` so each seed sees its
    own data order. ``metrics[name]: f[num_steps]``.
    """
    for name, fn in (("init_fn", init_fn), ("loss_fn", loss_fn), ("optimizer_fn", optimizer_fn),
                     ("batch_fn", batch_fn)):
        if not callable(fn):
            raise ValueError(f"{name}: expected a callable, got {type(fn).__name__}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps: expected a positive int, got {num_steps!r}")
    num_steps = int(num_steps)

    def run(key: jax.Array, hparams: Any = None) -> tuple[TrainState, dict]:
        init_key, rng_key, data_key = jax.random.split(key, 3)
        optimizer = optimizer_fn(hparams)
        state = TrainState.create(params=init_fn(init_key), optimizer=optimizer, rng=rng_key)
        batches = (lambda step: batch_fn(step, data_key)) if per_seed_data else batch_fn
        return scan_steps(loss_fn, optimizer, batches, num_steps)(state)

    return run


def _key_axis(keys: Any) -> int | None:
    """Size of the leading key axis (None for a single key); ValueError for anything else."""
    if isinstance(keys, jax.Array) and jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        if keys.ndim == 0:
            return None
        if keys.ndim == 1 and keys.shape[0] >= 1:
            return keys.shape[0]
    elif getattr(keys, "dtype", None) is not None and np.dtype(keys.dtype) == np.uint32:
        if keys.shape == (2,):
            return None
        if keys.ndim == 2 and keys.shape[1] == 2 and keys.shape[0] >= 1:
            return keys.shape[0]
    raise ValueError(
        "keys: expected PRNG keys with one leading population axis (e.g. jax.random.split(key, S): "
        f"key[S] or uint32[S, 2]) or a single key, got {type(keys).__name__} of shape "
        f"{getattr(keys, 'shape', None)} and dtype {getattr(keys, 'dtype', None)}"
    )


def _hparam_axis(hparams: Any) -> int | None:
    if hparams is None:
        return None
    leaves = jax.tree_util.tree_flatten_with_path(hparams)[0]
    if not leaves:
        raise ValueError("hparams: expected a pytree of arrays with a leading population axis, got no leaves")
    sizes = {}
    for path, leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"hparams{jax.tree_util.keystr(path)}: expected an array with a leading population axis, got a scalar"
            )
        sizes[jax.tree_util.keystr(path)] = shape[0]
    if len(set(sizes.values())) != 1:
        raise ValueError(f"hparams: all leaves need the same leading size, got {sizes}")
    return next(iter(sizes.values()))


@functools.lru_cache(maxsize=32)
def _compiled(run_fn: RunFn, key_batched: bool, hp_batched: bool, grid: bool) -> Callable:
    if grid:
        fn = jax.vmap(jax.vmap(run_fn, in_axes=(None, 0)), in_axes=(0, None))
    else:
        fn = jax.vmap(run_fn, in_axes=(0 if key_batched else None, 0 if hp_batched else None))
    return jax.jit(fn)


def population(run_fn: RunFn, keys: jax.Array, hparams: Any = None, *, grid: bool = False) -> Any:
    """Run ``run_fn(key, hparams)`` for a whole population in one jitted, vmapped program.

    Args:
      run_fn: a pure ``(key, hparams) -> outputs`` (e.g. from `make_run`).
      keys: ``key[S]`` (or raw ``uint32[S, 2]``) — one per member; or a single key shared by all.
      hparams: optional pytree whose leaves all have the same leading size H, e.g.
        ``{"lr": f32[H]}``; None means no hyperparameter axis (``run_fn`` gets None).
      grid: with both axes, train every (seed, hparams) pair: outputs get leading axes [S, H].
        Without it, S must equal H and member i gets ``(keys[i], hparams[i])``.

    Returns:
      ``run_fn``'s outputs with the population axis (or axes) leading every leaf.
    """
    if not callable(run_fn):
        raise ValueError(f"run_fn: expected a callable (key, hparams) -> outputs, got {type(run_fn).__name__}")
    s, h = _key_axis(keys), _hparam_axis(hparams)
    if s is None and h is None:
        raise ValueError(
            "keys: got a single key and no hparams axis, so there is nothing to vmap over; "
            "pass keys=jax.random.split(key, S) or hparams with a leading axis"
        )
    if grid and (s is None or h is None):
        raise ValueError("grid: True needs both a key axis and an hparams axis")
    if not grid and s is not None and h is not None and s != h:
        raise ValueError(
            f"hparams: leading size {h} differs from the {s} keys; give equal sizes to zip them, "
            "or grid=True for every (key, hparams) pair"
        )
    fn = _compiled(run_fn, s is not None, h is not None, bool(grid))
    return fn(keys, hparams)
