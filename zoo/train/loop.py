"""`fit`: the training loop around `scan_steps` — eval hooks, metric history, progress bar,
checkpoints with resume, and a non-finite guard.

The loop dispatches chunks of up to ``steps_per_dispatch`` steps, each one jitted ``lax.scan``
(tiny models on CPU are dispatch-bound). A chunk is cut short where an event falls: an eval
step (a multiple of ``eval_every``), a checkpoint step (a multiple of ``checkpoint_every``) or
``num_steps``; so a remainder is simply a shorter chunk, and every distinct chunk length is
compiled once. The chunk lengths are a function of the step the loop starts from and the event
schedule only, so a run resumed from a checkpoint replays exactly the dispatches of an
uninterrupted run and ends with bit-identical parameters.

History (``dict[str, np.ndarray]``):
  ``"step"``: i32[T] the 0-based index of each training step (step ``s`` maps params after ``s``
  updates to params after ``s + 1``); ``"loss"`` and every aux metric: [T], aligned with it.
  ``"eval/step"``: i32[E] the number of updates done when each eval ran; ``"eval/<name>"``: [E].
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax

from zoo.checks import check_range

from .runner import Loop, NonFiniteError, first_non_finite
from .state import TrainState
from .step import BatchFn, LossFn, make_scan_steps


# ----------------------------------------------------------------------------------- validation


def _positive_int(name: str, value: Any, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected a positive int{' or None' if optional else ''}, got {value!r}")
    check_range(name, int(value), low=1)


def _validate(state, loss_fn, optimizer, batch_fn, num_steps, steps_per_dispatch, eval_fn, eval_every,
              checkpoint_dir, checkpoint_every, keep, progress) -> None:
    if not isinstance(state, TrainState):
        raise ValueError(f"state: expected a zoo.train.TrainState, got {type(state).__name__}")
    if np.shape(state.step) != ():
        raise ValueError(
            f"state: expected a single run (step of shape ()), got step of shape {np.shape(state.step)}; "
            "a population's stacked states are trained with zoo.train.population"
        )
    for name, fn in (("loss_fn", loss_fn), ("batch_fn", batch_fn)):
        if not callable(fn):
            raise ValueError(f"{name}: expected a callable, got {type(fn).__name__}")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")
    _positive_int("num_steps", num_steps)
    _positive_int("steps_per_dispatch", steps_per_dispatch)
    if eval_fn is not None and not callable(eval_fn):
        raise ValueError(f"eval_fn: expected a callable params -> dict, got {type(eval_fn).__name__}")
    _positive_int("eval_every", eval_every, optional=True)
    if eval_every is not None and eval_fn is None:
        raise ValueError("eval_every: given without eval_fn; pass eval_fn=params -> dict of metrics")
    _positive_int("checkpoint_every", checkpoint_every, optional=True)
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError("checkpoint_every: given without checkpoint_dir; pass checkpoint_dir=<directory>")
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise ValueError(f"checkpoint_dir: expected a path, got {type(checkpoint_dir).__name__}")
    _positive_int("keep", keep)
    if progress is not None and not isinstance(progress, bool):
        raise ValueError(f"progress: expected True, False or None (auto: on when stderr is a TTY), got {progress!r}")


# ----------------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=32)
def _cached_chunk(loss_fn, optimizer, batch_fn, k, batch_sharding):
    return make_scan_steps(loss_fn, optimizer, batch_fn, k, donate=True, batch_sharding=batch_sharding)


def _compiled_chunk(loss_fn, optimizer, batch_fn, k, batch_sharding):
    """The jitted, donating k-step scan; cached so repeated `fit` calls reuse compilations."""
    try:
        return _cached_chunk(loss_fn, optimizer, batch_fn, k, batch_sharding)
    except TypeError:  # an unhashable argument: no cache
        return make_scan_steps(loss_fn, optimizer, batch_fn, k, donate=True, batch_sharding=batch_sharding)


def _next_event(step: int, num_steps: int, *everys: int | None) -> int:
    """The first event step after ``step``: a multiple of any ``every`` or ``num_steps``."""
    nxt = num_steps
    for every in everys:
        if every is not None:
            nxt = min(nxt, (step // every + 1) * every)
    return nxt


def _is_event(step: int, num_steps: int, every: int | None) -> bool:
    """Evals and checkpoints happen at multiples of ``every`` and at the last step."""
    return step == num_steps or (every is not None and step % every == 0)


def _to_host(metrics: Mapping[str, jax.Array]) -> dict[str, np.ndarray]:
    """Stacked metrics [k] as numpy, ``"loss"`` first (jax returns dicts with sorted keys)."""
    metrics = dict(jax.device_get(metrics))
    return {"loss": np.asarray(metrics.pop("loss")), **{k: np.asarray(v) for k, v in metrics.items()}}


class _History:
    """Accumulates per-chunk metrics on the host; `arrays` builds the history dict."""

    def __init__(self, restored: Mapping[str, np.ndarray] | None):
        self.train: dict[str, list[np.ndarray]] = {}
        self.evals: dict[str, list[np.ndarray]] = {}
        for k, v in (restored or {}).items():
            (self.evals if k.startswith("eval/") else self.train).setdefault(k, []).append(np.asarray(v))

    def add_train(self, start: int, metrics: Mapping[str, np.ndarray]) -> None:
        n = len(next(iter(metrics.values())))
        self.train.setdefault("step", []).append(np.arange(start, start + n, dtype=np.int32))
        for k, v in metrics.items():
            self.train.setdefault(k, []).append(np.asarray(v))

    def add_eval(self, step: int, metrics: Mapping[str, Any]) -> None:
        self.evals.setdefault("eval/step", []).append(np.asarray([step], np.int32))
        for k, v in metrics.items():
            self.evals.setdefault(f"eval/{k}", []).append(np.asarray(v).reshape(1))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in {**self.train, **self.evals}.items()}


def _raise_if_non_finite(start: int, metrics: Mapping[str, np.ndarray], history: _History) -> None:
    """Raise `NonFiniteError` for the first NaN/inf in a chunk of metrics that began at ``start``."""
    bad = first_non_finite(metrics)
    if bad is None:
        return
    i, name, value = bad
    if i > 0:  # keep the finite steps of this chunk in the error's history
        history.add_train(start, {k: v[:i] for k, v in metrics.items()})
    raise NonFiniteError(
        f"non-finite {name} = {value} at step {start + i} (0-based: the first step whose {name} is not "
        "finite); lower the learning rate, check the data, or pass guard=False to record NaNs",
        step=start + i, metric=name, value=value, history=history.arrays(),
    )


# ----------------------------------------------------------------------------------- fit


def fit(
    state: TrainState,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_fn: BatchFn,
    *,
    num_steps: int,
    steps_per_dispatch: int = 1,
    eval_fn: Callable[[Any], Mapping[str, Any]] | None = None,
    eval_every: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    keep: int = 3,
    resume: bool = True,
    progress: bool | None = None,
    guard: bool = True,
    mesh: jax.sharding.Mesh | None = None,
    data_axis: str = "data",
) -> tuple[TrainState, dict[str, np.ndarray]]:
    """Train ``state`` until ``state.step == num_steps``; return ``(state, history)``.

    Args:
      state: the starting `TrainState` (not modified: the loop donates a copy).
      loss_fn: ``(params, batch, rng) -> (loss, aux dict)``.
      optimizer: the optax transformation ``state.opt_state`` belongs to.
      batch_fn: pure ``step -> batch``, deterministic in the step.
      num_steps: total number of steps of the run (counting the steps already in ``state``).
      steps_per_dispatch: steps per jitted ``lax.scan``; chunks are cut short at events.
      eval_fn: ``params -> dict of scalars``, run every ``eval_every`` steps and at the end.
      checkpoint_dir: save ``state`` and history there every ``checkpoint_every`` steps and at
        the end; keep the newest ``keep``. With ``resume`` (default), training restarts from the
        latest checkpoint found there (``state`` serves as the restore template). With
        ``resume=False`` an existing checkpoint is an error (to avoid mixing two runs).
      progress: tqdm bar; ``None``: shown only when stderr is a TTY.
      guard: after each dispatch, raise `NonFiniteError` naming the first step and metric
        that is NaN/inf (train metrics; eval metrics are recorded as they are).
      mesh: train data-parallel over ``mesh``: state replicated, each batch sharded along its
        leading axis over the mesh axis ``data_axis`` (see `zoo.train.sharding`).

    Returns:
      The final state and the history (see the module docstring). If the checkpoint found on
      resume is already at or beyond ``num_steps``, it is returned without training.
    """
    _validate(state, loss_fn, optimizer, batch_fn, num_steps, steps_per_dispatch, eval_fn, eval_every,
              checkpoint_dir, checkpoint_every, keep, progress)
    num_steps, k = int(num_steps), int(steps_per_dispatch)
    batch_sharding = None
    if mesh is not None:
        from .sharding import batch_sharding as _bs
        from .sharding import put, replicated

        target = replicated(mesh)
        batch_sharding = _bs(mesh, data_axis)
    # The loop donates its own copy. It is committed to its devices, like a restored checkpoint,
    # so that a resumed run hits the same compiled chunks (jit's cache keys on committedness).
    if mesh is not None:
        state = put(state, target, may_alias=False)
    else:
        state = jax.tree.map(lambda x: jax.device_put(x, x.sharding, may_alias=False), state)

    with Loop(total=num_steps, checkpoint_dir=checkpoint_dir, keep=keep, resume=resume, progress=progress,
              desc="fit", unit="step") as loop:
        restored = loop.restore(state)
        restored_history = None
        if restored is not None:
            state, restored_history = restored
        history = _History(restored_history)
        step = int(jax.device_get(state.step))
        if step >= num_steps:
            return state, history.arrays()
        loop.start(step)
        while step < num_steps:
            n = min(k, _next_event(step, num_steps, eval_every, checkpoint_every) - step)
            state, metrics = _compiled_chunk(loss_fn, optimizer, batch_fn, n, batch_sharding)(state)
            metrics = _to_host(metrics)
            if guard:
                _raise_if_non_finite(step, metrics, history)
            history.add_train(step, metrics)
            step += n
            loop.advance(n, loss=float(metrics["loss"][-1]))
            if eval_fn is not None and _is_event(step, num_steps, eval_every):
                result = eval_fn(state.params)
                if not isinstance(result, Mapping):
                    raise ValueError(
                        f"eval_fn: expected it to return a dict of scalars, got {type(result).__name__}"
                    )
                history.add_eval(step, jax.device_get(dict(result)))
            if _is_event(step, num_steps, checkpoint_every):
                loop.save(state, history.arrays())
        return state, history.arrays()
