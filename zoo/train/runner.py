"""The chunked runner: the one host loop behind `fit` and `run_population`.

A long run is ``init``, then a sequence of chunks, each chunk one jitted dispatch that advances the
whole state (one run, or every member of a population) by some steps:

    state_0            = init(keys, hparams)                        (vmapped over members)
    state_{c+1}, out_c = chunk(state_c, hparams, c)                 (vmapped; c = chunk index)
    outs               = stack_c out_c                              leaves [S, num_chunks, ...]

`Loop` is the host side that both `fit` and `run_population` drive: a tqdm bar over steps (or
rounds), an orbax checkpoint of the whole state and the outputs so far every ``checkpoint_every``
chunks (written atomically by orbax: a temporary directory renamed on commit), and resume from the
latest checkpoint. Because chunk ``c`` is a pure function of ``(state_c, hparams, c)`` and every
chunk has the same compiled program, a run resumed at chunk ``c`` replays exactly the dispatches
of an uninterrupted run: its final state and outputs are bit-identical.

The non-finite guard looks at every floating output of each chunk (or at what ``guard`` selects)
and raises `NonFiniteError` naming the member, the chunk, its steps and the output.

Beyond one process: with ``mesh`` (a mesh over all devices of all processes, after
``jax.distributed.initialize``; see `zoo.train.distributed`), members are sharded over the mesh
axis ``member_axis``: every process runs the same program on its own members, outputs are gathered
to every process, and orbax writes each checkpoint once, by the processes together.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .checkpoint import Checkpoints


class NonFiniteError(FloatingPointError):
    """A training metric became NaN or inf.

    Attributes: ``step`` (the first bad step), ``metric`` (its name), ``value``, ``member`` (the
    population member, None for a single run) and ``history`` (what was recorded before it).
    """

    def __init__(self, message: str, *, step: int, metric: str, value: float, history: Any = None,
                 member: int | None = None):
        super().__init__(message)
        self.step = step
        self.metric = metric
        self.value = value
        self.member = member
        self.history = history if history is not None else {}


def show_progress(progress: bool | None) -> bool:
    """``progress`` itself, or (None) whether stderr is a TTY."""
    if progress is not None:
        return bool(progress)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Loop:
    """The host side of a chunked run, shared by `fit` and `run_population`.

    Args:
      total: the run's length in ``unit`` (steps or rounds), for the progress bar.
      checkpoint_dir: where to save (None: no checkpoints).
      keep: number of checkpoints kept.
      resume: restore the latest checkpoint in ``checkpoint_dir`` if there is one; with False an
        existing checkpoint is an error (two runs are never mixed).
      progress: show a tqdm bar (None: when stderr is a TTY).
      min_interval: seconds; a save asked for sooner than this after the previous one (or the
        start) is skipped unless forced (the last one always is). An orbax save costs tens of
        milliseconds of CPU however small the state, so tiny chunks should not all be saved.
    """

    def __init__(self, *, total: int, checkpoint_dir: str | os.PathLike | None = None, keep: int = 3,
                 resume: bool = True, progress: bool | None = None, desc: str = "train", unit: str = "step",
                 min_interval: float = 0.0):
        self.total = int(total)
        self.min_interval = float(min_interval)
        self._last_save = time.monotonic()
        self.resume = bool(resume)
        self.ckpt = Checkpoints(checkpoint_dir, keep=keep) if checkpoint_dir is not None else None
        self.bar = None
        self._progress, self._desc, self._unit = show_progress(progress), desc, unit

    # -- resume
    def restore(self, template: Any) -> tuple[Any, dict] | None:
        """``(state, history)`` from the latest checkpoint, or None when there is none to resume."""
        if self.ckpt is None or self.ckpt.latest_step() is None:
            return None
        if not self.resume:
            raise ValueError(
                f"checkpoint_dir: {self.ckpt.directory} already holds checkpoints (latest step "
                f"{self.ckpt.latest_step()}); pass resume=True to continue that run, or use an empty directory"
            )
        return self.ckpt.restore(template)

    # -- progress
    def start(self, done: int) -> None:
        if self._progress and self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=done, desc=self._desc, unit=self._unit, dynamic_ncols=True,
                            file=sys.stderr, disable=jax.process_index() != 0)

    def advance(self, n: int, **postfix: Any) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    # -- checkpoints
    def save(self, state: Any, history: Mapping[str, np.ndarray] | None = None, *, step: int | None = None,
             force: bool = False) -> bool:
        """Checkpoint now (unless within ``min_interval`` of the last save and not ``force``); True if saved."""
        if self.ckpt is None or (not force and time.monotonic() - self._last_save < self.min_interval):
            return False
        self.ckpt.save(state, history, step=step)
        self._last_save = time.monotonic()
        return True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.ckpt is not None:
            self.ckpt.close()
            self.ckpt = None

    def __enter__(self) -> Loop:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------------- the guard


def first_non_finite(metrics: Mapping[str, np.ndarray]) -> tuple[int, str, float] | None:
    """``(index, name, value)`` of the earliest non-finite entry of stacked metrics ``[k]``, or None.

    At equal index, the first metric in dict order wins (``"loss"`` comes first).
    """
    best = None
    for name, values in metrics.items():
        values = np.asarray(values).reshape(-1)
        if values.dtype.kind not in "fc":
            continue
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size and (best is None or bad[0] < best[0]):
            best = (int(bad[0]), name, float(values[bad[0]]))
    return best


def _first_bad_member(out: Any, members: int) -> tuple[int, str, float] | None:
    """``(member, output path, value)`` of the first member whose chunk output has a NaN/inf."""
    worst = None
    for path, leaf in jax.tree_util.tree_flatten_with_path(out)[0]:
        a = np.asarray(leaf)
        if a.dtype.kind not in "fc" or a.size == 0:
            continue
        bad = ~np.isfinite(a.reshape(members, -1))
        rows = np.flatnonzero(bad.any(axis=1))
        if rows.size and (worst is None or rows[0] < worst[0]):
            m = int(rows[0])
            worst = (m, jax.tree_util.keystr(path), float(a.reshape(members, -1)[m][bad[m]][0]))
    return worst


# ----------------------------------------------------------------------------------- populations


def _sharded(mesh, axis):
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    return NamedSharding(mesh, P(axis)), NamedSharding(mesh, P())


@functools.lru_cache(maxsize=8)  # the functions close over their data: keep few
def _programs(init_fn, chunk_fn, key_batched: bool, hp_batched: bool, mesh, member_axis):
    """The jitted, vmapped init and (state-donating) chunk programs of a population."""
    k_ax, h_ax = (0 if key_batched else None), (0 if hp_batched else None)
    init = jax.vmap(init_fn, in_axes=(k_ax, h_ax))
    chunk = jax.vmap(chunk_fn, in_axes=(0, h_ax, None))
    if mesh is None:
        return jax.jit(init), jax.jit(chunk, donate_argnums=(0,))
    members, rep = _sharded(mesh, member_axis)
    k_s, h_s = (members if key_batched else rep), (members if hp_batched else rep)
    return (jax.jit(init, in_shardings=(k_s, h_s), out_shardings=members),
            jax.jit(chunk, in_shardings=(members, h_s, rep), out_shardings=(members, members), donate_argnums=(0,)))


def _to_host(tree: Any, mesh) -> Any:
    """Every leaf as numpy on this process (gathered from all processes when sharded over them)."""
    if mesh is not None and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _members(keys: Any, hparams: Any) -> tuple[int, bool, bool]:
    from .population import _hparam_axis, _key_axis

    s, h = _key_axis(keys), _hparam_axis(hparams)
    if s is None and h is None:
        raise ValueError(
            "keys: got a single key and no hparams axis, so there is no population; "
            "pass keys=jax.random.split(key, S) or hparams with a leading axis"
        )
    if s is not None and h is not None and s != h:
        raise ValueError(f"hparams: leading size {h} differs from the {s} keys; give one per member")
    return (s if s is not None else h), s is not None, h is not None


def run_population(
    init_fn: Callable[[jax.Array, Any], Any],
    chunk_fn: Callable[[Any, Any, jax.Array], tuple[Any, Any]],
    keys: jax.Array,
    hparams: Any = None,
    *,
    num_chunks: int,
    steps_per_chunk: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    checkpoint_seconds: float = 0.0,
    keep: int = 2,
    resume: bool = True,
    progress: bool | None = None,
    guard: bool | Callable[[Any], Any] = True,
    desc: str = "population",
    unit: str = "step",
    mesh: jax.sharding.Mesh | None = None,
    member_axis: str = "members",
    callback: Callable[[int, Any], None] | None = None,
) -> tuple[Any, Any]:
    """Train a population (or one run: a population of one) in checkpointed, resumable chunks.

    Args:
      init_fn: pure ``(key, hparams) -> state`` of one member (``hparams`` is None without an axis).
      chunk_fn: pure ``(state, hparams, c: i32[]) -> (state', out)``: chunk ``c`` of one member
        (e.g. ``scan_steps`` over its ``steps_per_chunk`` steps, then an eval); ``out`` is any
        pytree (metrics per step, eval results, ...). Must not depend on anything but its arguments.
      keys: ``key[S]`` (one per member) or a single key shared by all members.
      hparams: optional pytree whose leaves have a leading member axis S (data, learning rates...).
      num_chunks: chunks in the whole run; ``steps_per_chunk`` only scales the progress bar.
      checkpoint_dir: save ``{state of every member, outputs so far}`` every ``checkpoint_every``
        chunks (skipping those within ``checkpoint_seconds`` of the previous save) and at the end,
        keeping ``keep``; with ``resume`` continue from the latest one.
      guard: True checks every floating leaf of each chunk's ``out``; a callable
        ``out -> pytree`` checks what it selects; False checks nothing.
      mesh, member_axis: shard the members over this mesh axis (their number must divide evenly).
      callback: called as ``callback(c, out)`` (host numpy ``out``) after chunk ``c`` is recorded
        and checkpointed, e.g. to log; an exception it raises stops the run there.

    Returns:
      ``(state, outs)``: the final states (leaves ``[S, ...]``, on device) and the outputs as
      numpy, leaves ``[S, num_chunks, ...]``.
    """
    for name, fn in (("init_fn", init_fn), ("chunk_fn", chunk_fn)):
        if not callable(fn):
            raise ValueError(f"{name}: expected a callable, got {type(fn).__name__}")
    for name, v in (("num_chunks", num_chunks), ("steps_per_chunk", steps_per_chunk),
                    ("checkpoint_every", checkpoint_every), ("keep", keep)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if isinstance(checkpoint_seconds, bool) or not isinstance(checkpoint_seconds, (int, float)) or not (
            0 <= checkpoint_seconds < float("inf")):
        raise ValueError(f"checkpoint_seconds: expected a finite number >= 0, got {checkpoint_seconds!r}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback: expected a callable (chunk, out) -> None, got {type(callback).__name__}")
    if not (isinstance(guard, bool) or callable(guard)):
        raise ValueError(f"guard: expected True, False or a callable out -> pytree to check, got {guard!r}")
    S, key_batched, hp_batched = _members(keys, hparams)
    if mesh is not None:
        if member_axis not in mesh.axis_names:
            raise ValueError(f"member_axis: expected one of the mesh's axes {mesh.axis_names}, got {member_axis!r}")
        if S % mesh.shape[member_axis]:
            raise ValueError(f"keys: {S} members do not split evenly over the {mesh.shape[member_axis]} devices "
                             f"of mesh axis {member_axis!r}")
    num_chunks, steps_per_chunk = int(num_chunks), int(steps_per_chunk)
    init, chunk = _programs(init_fn, chunk_fn, key_batched, hp_batched, mesh, member_axis)

    state = init(keys, hparams)
    out_shape = jax.eval_shape(chunk, state, hparams, jnp.int32(0))[1]
    outs = jax.tree.map(lambda s: np.zeros((s.shape[0], num_chunks, *s.shape[1:]), s.dtype), out_shape)
    done = 0
    with Loop(total=num_chunks * steps_per_chunk, checkpoint_dir=checkpoint_dir, keep=keep, resume=resume,
              progress=progress, desc=desc, unit=unit, min_interval=checkpoint_seconds) as loop:
        restored = loop.restore({"state": state, "outs": outs})
        if restored is not None:
            saved = restored[0]
            state, outs = saved["state"], jax.tree.map(np.array, saved["outs"])
            done = int(restored[1]["chunks_done"][0])
        loop.start(done * steps_per_chunk)
        for c in range(done, num_chunks):
            state, out = chunk(state, hparams, jnp.int32(c))
            out = _to_host(out, mesh)
            if guard is not False:
                bad = _first_bad_member(guard(out) if callable(guard) else out, S)
                if bad is not None:
                    m, where, value = bad
                    lo, hi = c * steps_per_chunk, (c + 1) * steps_per_chunk - 1
                    raise NonFiniteError(
                        f"non-finite output{where} = {value} for member {m} in chunk {c} ({unit}s {lo}..{hi}); "
                        "lower the learning rate, check the data, or pass guard=False to record NaNs",
                        step=lo, metric=where, value=value, member=m,
                        history=jax.tree.map(lambda a: a[:, :c], outs),
                    )
            jax.tree.map(lambda buf, o: buf.__setitem__((slice(None), c), o), outs, out)
            loop.advance(steps_per_chunk)
            if (c + 1) % checkpoint_every == 0 or c + 1 == num_chunks:
                loop.save({"state": state, "outs": outs}, {"chunks_done": np.asarray([c + 1])}, step=c + 1,
                          force=c + 1 == num_chunks)
            if callback is not None:
                callback(c, out)
    return state, outs


def run_population_once(run_fn: Callable[[jax.Array, Any], Any], keys: jax.Array, hparams: Any = None,
                        **kwargs: Any) -> Any:
    """``run_fn(key, hparams)`` for every member as ONE checkpointed chunk; outputs as numpy ``[S, ...]``.

    For the cells of a sweep, each one whole (short) population run: a resumed sweep restores the
    cells it finished instead of running them again. ``kwargs`` go to `run_population` (the guard
    is off unless asked for: sweeps report their own finiteness).
    """
    if not callable(run_fn):
        raise ValueError(f"run_fn: expected a callable (key, hparams) -> outputs, got {type(run_fn).__name__}")
    kwargs.setdefault("guard", False)
    _, outs = run_population(_Keep(), _Once(run_fn), keys, hparams, num_chunks=1, **kwargs)
    return jax.tree.map(lambda a: a[:, 0], outs)


class _Keep:
    """init: the member's key is its whole state (hashable, so compiled programs are reused)."""

    def __call__(self, key, hparams):
        return key

    def __eq__(self, other):
        return isinstance(other, _Keep)

    def __hash__(self):
        return hash(_Keep)


class _Once:
    """chunk 0: the whole run."""

    def __init__(self, run_fn):
        self.run_fn = run_fn

    def __call__(self, key, hparams, c):
        return key, self.run_fn(key, hparams)

    def __eq__(self, other):
        return isinstance(other, _Once) and other.run_fn is self.run_fn

    def __hash__(self):
        return hash((_Once, id(self.run_fn)))
