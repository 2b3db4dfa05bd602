"""Checkpoints of a `TrainState` (and the metric history so far) with orbax.

A thin wrapper over ``orbax.checkpoint.CheckpointManager``: saves are atomic (orbax writes to a
temporary directory and renames it on commit), the newest ``keep`` checkpoints are kept, and
`Checkpoints.restore` uses the *current* state as its template, so the restored pytree has the
template's structure, dtypes and shardings and the saved arrays bit for bit.

On disk a state is stored as a flat dict ``{"000000": leaf, ...}`` in ``jax.tree`` leaf order
(typed PRNG keys as their raw key data; zero-size leaves are not stored and come back as
zeros of the template's shape), next to a JSON record of the leaf paths, shapes and dtypes that
`restore` checks against the template before loading anything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_range

_FORMAT = 1


def _ocp():
    """orbax, imported on first use (it is slow to import and most users never checkpoint)."""
    import orbax.checkpoint as ocp

    return ocp


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _snapshot(x: Any) -> Any:
    """A private copy of a leaf for an asynchronous save.

    Orbax writes in a background thread after `save` returns. On CPU its "copy to host" can be a
    view of the device buffer, which the caller's next jitted step may donate and overwrite (seen:
    NaNs in the next chunk's output). A fresh buffer with the same sharding (every process copies
    its own shards) is never donated; numpy leaves are copied so later in-place updates do not leak.
    """
    if isinstance(x, jax.Array):
        return jax.device_put(x, x.sharding, may_alias=False)
    return np.array(x, copy=True)


def _leaf_info(tree: Any) -> tuple[list[str], list[Any], Any]:
    """(path strings, leaves, treedef) of ``tree``."""
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [jax.tree_util.keystr(p) for p, _ in with_path]
    return paths, [leaf for _, leaf in with_path], treedef


def _describe(leaf: Any) -> tuple[list[int], str]:
    if _is_key(leaf):
        return list(leaf.shape), f"key<{jax.random.key_impl(leaf)}>"
    return list(np.shape(leaf)), str(np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype)


def _history_to_json(history: Mapping[str, np.ndarray]) -> dict:
    return {k: {"dtype": str(np.asarray(v).dtype), "values": np.asarray(v).tolist()} for k, v in history.items()}


def _history_from_json(data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v["values"], dtype=v["dtype"]) for k, v in data.items()}


class Checkpoints:
    """Save / restore `TrainState` checkpoints under ``directory`` (created if missing).

    Use as a context manager, or call `close` (it waits for pending asynchronous saves).
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, async_save: bool = True):
        if not isinstance(directory, (str, os.PathLike)):
            raise ValueError(f"checkpoint_dir: expected a path, got {type(directory).__name__}")
        if isinstance(keep, bool) or not isinstance(keep, int):
            raise ValueError(f"keep: expected a positive int, got {keep!r}")
        check_range("keep", keep, low=1)
        self.directory = Path(directory).expanduser().absolute()
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"checkpoint_dir: {self.directory} exists and is not a directory")
        ocp = _ocp()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=async_save
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    # -- queries
    def latest_step(self) -> int | None:
        """The step of the newest committed checkpoint, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    # -- save / restore
    def save(self, state: Any, history: Mapping[str, np.ndarray] | None = None, *, step: int | None = None) -> None:
        """Save ``state`` (and ``history``) as checkpoint number ``step`` (default ``int(state.step)``).

        Asynchronous by default: the leaves are copied (`_snapshot`) before this returns, so the
        caller may donate ``state`` right after; the files are written in the background.
        """
        step = int(jax.device_get(state.step)) if step is None else int(step)
        paths, leaves, _ = _leaf_info(state)
        shapes, dtypes = zip(*(_describe(x) for x in leaves), strict=True) if leaves else ((), ())
        arrays = {
            f"{i:06d}": _snapshot(jax.random.key_data(x) if _is_key(x) else x)
            for i, x in enumerate(leaves)
            if np.size(x) > 0
        }
        meta = {
            "format": _FORMAT,
            "step": step,
            "paths": paths,
            "shapes": list(shapes),
            "dtypes": list(dtypes),
            "history": _history_to_json(history or {}),
        }
        ocp = _ocp()
        args = {"meta": ocp.args.JsonSave(meta)}
        if arrays:
            args["arrays"] = ocp.args.StandardSave(arrays)
        self._manager.save(step, args=ocp.args.Composite(**args))

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, np.ndarray]]:
        """Restore checkpoint ``step`` (default: the latest) into the structure of ``template``.

        Returns ``(state, history)``. Raises ``FileNotFoundError`` when there is no checkpoint
        and ``ValueError`` when the checkpoint's leaves do not match the template's.
        """
        ocp = _ocp()
        self._manager.wait_until_finished()
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(f"checkpoint_dir: no checkpoint in {self.directory}")
        elif step not in self._manager.all_steps():
            raise ValueError(f"step: no checkpoint for step {step} in {self.directory}; have {self.all_steps()}")
        meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        paths, leaves, treedef = _leaf_info(template)
        shapes, dtypes = zip(*(_describe(x) for x in leaves), strict=True) if leaves else ((), ())
        self._check_template(step, meta, paths, list(shapes), list(dtypes))
        abstract = {
            f"{i:06d}": ocp.utils.to_shape_dtype_struct(jax.random.key_data(x) if _is_key(x) else x)
            for i, x in enumerate(leaves)
            if np.size(x) > 0
        }
        restored = {}
        if abstract:
            args = ocp.args.Composite(arrays=ocp.args.StandardRestore(abstract))
            restored = self._manager.restore(step, args=args).arrays
        out = []
        for i, x in enumerate(leaves):
            name = f"{i:06d}"
            if name not in restored:  # zero-size leaf
                out.append(jnp.zeros_like(x) if hasattr(x, "dtype") else x)
            elif _is_key(x):
                out.append(jax.random.wrap_key_data(restored[name], impl=jax.random.key_impl(x)))
            else:
                out.append(restored[name])
        return jax.tree_util.tree_unflatten(treedef, out), _history_from_json(meta["history"])

    def _check_template(self, step: int, meta: dict, paths: list, shapes: list, dtypes: list) -> None:
        """ValueError naming the first leaf where the template differs from checkpoint ``step``."""
        for what, saved, now in (("leaf paths", meta["paths"], paths), ("shapes", meta["shapes"], shapes),
                                 ("dtypes", meta["dtypes"], dtypes)):
            if list(saved) == list(now):
                continue
            pairs = enumerate(zip(saved, now, strict=False))
            i = next((i for i, (a, b) in pairs if a != b), min(len(saved), len(now)))
            where = paths[i] if i < len(paths) else f"leaf #{i}"
            raise ValueError(
                f"template: does not match the checkpoint at step {step} in {self.directory}: {what} differ "
                f"at {where} (checkpoint: {saved[i] if i < len(saved) else 'missing'}, "
                f"template: {now[i] if i < len(now) else 'missing'})"
            )

    # -- lifecycle
    def wait(self) -> None:
        """Block until pending asynchronous saves are committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
