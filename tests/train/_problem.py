"""A tiny classification problem shared by the trainer tests (module-level functions, so the
jitted chunks that `fit` caches are reused across tests). Imported as ``_problem`` (pytest puts
this directory on sys.path); not a conftest, so it cannot clash with other test packages."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.data import batch_at
from zoo.nn import MLP
from zoo.train import TrainState

N, D, C, BATCH = 48, 4, 3, 8
MODEL = MLP((8, C))
DATA_KEY = jax.random.key(123)


def _make_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    w = rng.normal(size=(D, C)).astype(np.float32)
    y = np.argmax(x @ w, axis=1).astype(np.int32)
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}


DATA = _make_data()


def batch_fn(step):
    return batch_at(DATA, step, batch_size=BATCH, key=DATA_KEY)


def slice_batch_fn(step):
    """Consecutive rows, no shuffling: cheaper to compile (for the tests that compile a lot)."""
    i = (step % (N // BATCH)) * BATCH
    return {k: jax.lax.dynamic_slice_in_dim(v, i, BATCH) for k, v in DATA.items()}


def plain_loss_fn(params, batch, rng):
    """Cross-entropy without randomness (cheaper to compile)."""
    logits = MODEL.apply(params, batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), {}


def loss_fn(params, batch, rng):
    """Cross-entropy with input noise drawn from the per-step rng (so the rng matters)."""
    x = batch["x"] + 0.1 * jax.random.normal(rng, batch["x"].shape)
    logits = MODEL.apply(params, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
    acc = jnp.mean(jnp.argmax(logits, -1) == batch["y"])
    return loss, {"accuracy": acc}


@jax.jit
def init_params(key):
    return MODEL.init(key, jnp.zeros((1, D)))


def eval_fn(params):
    logits = MODEL.apply(params, DATA["x"])
    return {"accuracy": jnp.mean(jnp.argmax(logits, -1) == DATA["y"])}


OPTIMIZER = optax.adam(1e-2)


@jax.jit
def _new_state(key):
    k_init, k_rng = jax.random.split(key)
    return TrainState.create(params=init_params(k_init), optimizer=OPTIMIZER, rng=k_rng)


def new_state(seed: int = 0) -> TrainState:
    return _new_state(jax.random.key(seed))
