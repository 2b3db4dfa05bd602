"""One optimizer step, and k steps per dispatch.

    rng_s            = fold_in(rng, s)                                  (s = state.step)
    (L, aux), g      = value_and_grad(loss_fn)(params, batch, rng_s)
    u, opt_state'    = optimizer.update(g, opt_state, params)
    params'          = params + u,   step' = s + 1                    -> `train_step`
    k steps in one ``lax.scan``, batch_s = batch_fn(s)                  -> `scan_steps`

`make_step` / `make_scan_steps` are the jitted versions; they donate the input state (its
buffers are reused for the output, so the caller must not touch the old state afterwards).

Contracts:
  ``loss_fn(params, batch, rng) -> (loss f[], aux dict[str, f[]])``; metrics are
  ``{"loss": loss, **aux}``.
  ``batch_fn(step: i32[]) -> batch pytree``: pure and jittable, deterministic in ``step`` (so a
  resumed run sees the same batches as an uninterrupted one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from .state import TrainState

LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, dict]]
BatchFn = Callable[[jax.Array], Any]
StepFn = Callable[[TrainState, Any], tuple[TrainState, dict]]


def _checked_loss(loss_fn: LossFn) -> LossFn:
    """Wrap ``loss_fn`` so that a wrong return structure fails at trace time with a clear message."""

    def wrapped(params, batch, rng):
        out = loss_fn(params, batch, rng)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise ValueError(
                "loss_fn: expected it to return (loss scalar, aux dict of scalars), "
                f"got {type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, tuple) else "")
            )
        loss, aux = out
        if jnp.shape(loss) != ():
            raise ValueError(f"loss_fn: expected a scalar loss, got shape {jnp.shape(loss)}")
        for name, v in aux.items():
            if name in ("loss", "step"):
                raise ValueError(f"loss_fn: aux key {name!r} is reserved; rename it")
            if jnp.shape(v) != ():
                raise ValueError(f"loss_fn: aux[{name!r}] must be a scalar, got shape {jnp.shape(v)}")
        return loss, aux

    return wrapped


def _check_optimizer(optimizer: Any) -> None:
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError(f"optimizer: expected an optax.GradientTransformation, got {type(optimizer).__name__}")


def train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation) -> StepFn:
    """The pure (un-jitted) step ``(state, batch) -> (state', metrics)``; see the module docstring."""
    if not callable(loss_fn):
        raise ValueError(f"loss_fn: expected a callable, got {type(loss_fn).__name__}")
    _check_optimizer(optimizer)
    grad_fn = jax.value_and_grad(_checked_loss(loss_fn), has_aux=True)

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(state.rng, state.step)
        (loss, aux), grads = grad_fn(state.params, batch, rng)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return state, {"loss": loss, **aux}

    return step


def make_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, *, donate: bool = True) -> StepFn:
    """``jax.jit(train_step(loss_fn, optimizer))``, donating the input state when ``donate``."""
    return jax.jit(train_step(loss_fn, optimizer), donate_argnums=(0,) if donate else ())


def _check_k(k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive int (steps per dispatch), got {k!r}")


def scan_steps(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_fn: BatchFn,
    k: int,
    *,
    batch_sharding: Any = None,
) -> Callable[[TrainState], tuple[TrainState, dict]]:
    """Pure ``state -> (state', metrics)`` running ``k`` steps in one ``lax.scan``.

    Step ``s`` trains on ``batch_fn(s)``; ``metrics[name]: f[k]`` stacks the per-step metrics.
    ``batch_sharding`` (optional, e.g. a ``NamedSharding`` over a mesh's data axis) constrains
    every batch leaf, for data-parallel training (see `zoo.train.sharding`).
    """
    if not callable(batch_fn):
        raise ValueError(f"batch_fn: expected a callable step -> batch, got {type(batch_fn).__name__}")
    _check_k(k)
    step = train_step(loss_fn, optimizer)

    def body(state, _):
        batch = batch_fn(state.step)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        return step(state, batch)

    def run(state: TrainState) -> tuple[TrainState, dict]:
        return jax.lax.scan(body, state, None, length=k)

    return run


def make_scan_steps(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_fn: BatchFn,
    k: int,
    *,
    donate: bool = True,
    batch_sharding: Any = None,
) -> Callable[[TrainState], tuple[TrainState, dict]]:
    """The jitted (and state-donating) `scan_steps`: one dispatch runs ``k`` steps."""
    fn = scan_steps(loss_fn, optimizer, batch_fn, k, batch_sharding=batch_sharding)
    return jax.jit(fn, donate_argnums=(0,) if donate else ())
