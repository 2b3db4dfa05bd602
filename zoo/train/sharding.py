"""Data-parallel training over a ``jax.sharding.Mesh``.

The state is replicated on every device, each batch is split along its leading axis over the
mesh axis ``axis``; ``jax.jit`` with ``NamedSharding`` in/out shardings compiles one SPMD
program in which XLA inserts the all-reduce of the gradient (the loss is a mean over the batch,
so each device's partial sums are reduced). Up to float summation order, the result equals
single-device training on the whole batch:

    g = (1/B) sum_b grad l(params, x_b) = sum_d (1/B) sum_{b in shard d} grad l(params, x_b)

`data_parallel_step` is the per-batch step; `zoo.train.fit(..., mesh=mesh)` runs scanned chunks
the same way. On CPU, test with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.

Across processes (after `zoo.train.distributed.initialize`, with a mesh over every process's
devices): every process runs the same program on the same host values (same seeds, same data),
and `put` builds each global array from the shards this process holds, so `replicate`,
`shard_batch` and ``fit(..., mesh=...)`` work unchanged. Each process then computes the gradient
of its part of every batch and XLA's all-reduce crosses the processes.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from zoo.checks import check_range

from .step import LossFn, StepFn, train_step


def make_mesh(n_devices: int | None = None, *, axis: str = "data") -> Mesh:
    """A 1-D mesh over the first ``n_devices`` devices (default: all) with axis name ``axis``."""
    available = jax.device_count()
    if n_devices is None:
        n_devices = available
    if isinstance(n_devices, bool) or not isinstance(n_devices, (int, np.integer)):
        raise ValueError(f"n_devices: expected a positive int or None, got {n_devices!r}")
    check_range("n_devices", int(n_devices), low=1, high=available)
    if not isinstance(axis, str) or not axis:
        raise ValueError(f"axis: expected a non-empty str, got {axis!r}")
    return Mesh(np.asarray(jax.devices()[: int(n_devices)]), (axis,))


def _check_axis(mesh: Mesh, axis: str) -> None:
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh: expected a jax.sharding.Mesh, got {type(mesh).__name__}")
    if axis not in mesh.axis_names:
        raise ValueError(f"axis: expected one of the mesh's axes {mesh.axis_names}, got {axis!r}")


def put(tree: Any, sharding: jax.sharding.Sharding, *, may_alias: bool | None = None) -> Any:
    """Every leaf of ``tree`` placed with ``sharding``, also when it spans several processes.

    Within one process this is ``jax.device_put``. When ``sharding`` has devices of other
    processes, every process must call it with the same host value: this process's shards are
    cut from it (``jax.make_array_from_callback``); PRNG key leaves go through their key data.
    """
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding, may_alias=may_alias)

    def leaf(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(leaf(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return jax.device_put(x, sharding, may_alias=may_alias)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(leaf, tree)


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that puts a full copy of an array on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, axis: str = "data") -> NamedSharding:
    """The sharding that splits an array's leading axis over the mesh axis ``axis``."""
    _check_axis(mesh, axis)
    return NamedSharding(mesh, P(axis))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copy every leaf of ``tree`` to every device of ``mesh``."""
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh: expected a jax.sharding.Mesh, got {type(mesh).__name__}")
    return put(tree, replicated(mesh))


def shard_batch(batch: Any, mesh: Mesh, axis: str = "data") -> Any:
    """Split every leaf of ``batch`` along its leading axis over ``mesh``'s axis ``axis``.

    Each leaf's leading size must be divisible by the axis size (no silent padding).
    """
    _check_axis(mesh, axis)
    n = mesh.shape[axis]
    for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]:
        shape = np.shape(leaf)
        if len(shape) == 0 or shape[0] % n:
            raise ValueError(
                f"batch{jax.tree_util.keystr(path)}: expected a leading axis divisible by the {n} devices of "
                f"mesh axis {axis!r}, got shape {shape}"
            )
    return put(batch, batch_sharding(mesh, axis))


def data_parallel_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    axis: str = "data",
    *,
    donate: bool = True,
) -> StepFn:
    """Jitted ``(state, batch) -> (state', metrics)``: state replicated, batch sharded over ``axis``.

    Pass a state from `replicate` and a batch from `shard_batch` (other placements are resharded
    by ``jit``, at a copy's cost). The output state and metrics are replicated.
    """
    _check_axis(mesh, axis)
    rep, data = replicated(mesh), batch_sharding(mesh, axis)
    return jax.jit(
        train_step(loss_fn, optimizer),
        in_shardings=(rep, data),
        out_shardings=(rep, rep),
        donate_argnums=(0,) if donate else (),
    )
