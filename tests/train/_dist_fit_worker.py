"""One process of the 2-process data-parallel test (tests/train/test_distributed.py).

    python _dist_fit_worker.py OUT CKPT NUM_PROCESSES PROCESS_ID PORT NUM_STEPS

A single run (`zoo.train.fit` with ``mesh``) whose batches are split over every process's devices.
"""

import sys

import numpy as np

out, ckpt, n, pid, port, num_steps = sys.argv[1:7]
n, pid, num_steps = int(n), int(pid), int(num_steps)

from zoo.train import distributed  # noqa: E402

if n > 1:
    distributed.initialize(f"localhost:{port}", n, pid)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

from zoo.train import TrainState, fit  # noqa: E402
from zoo.train.sharding import shard_batch  # noqa: E402

X = jax.random.normal(jax.random.key(0), (64, 3))
Y = X @ jnp.array([1.0, -2.0, 0.5])


def loss_fn(p, b, r):
    return jnp.mean((b[0] @ p["w"] - b[1]) ** 2) + 0.0 * jax.random.normal(r, ()), {}


def batch_fn(t):
    i = (t * 8) % 64
    return jax.lax.dynamic_slice_in_dim(X, i, 8), jax.lax.dynamic_slice_in_dim(Y, i, 8)


mesh = Mesh(np.asarray(jax.devices()), ("data",))
assert jax.process_count() == n and len(mesh.devices) == n
local = shard_batch(batch_fn(0), mesh)[0]  # this process holds 8 / n rows of a batch
assert [s.data.shape for s in local.addressable_shards] == [(8 // n, 3)], local.addressable_shards

opt = optax.sgd(0.05)
state = TrainState.create(params={"w": jnp.zeros(3)}, optimizer=opt, rng=jax.random.key(1))
ckpt_args = {} if ckpt == "-" else {"checkpoint_dir": ckpt, "checkpoint_every": 10}
state, hist = fit(state, loss_fn, opt, batch_fn, num_steps=num_steps, steps_per_dispatch=5, mesh=mesh,
                  progress=False, **ckpt_args)
if distributed.is_primary():
    np.savez(out, loss=hist["loss"], w=np.asarray(state.params["w"]), step=int(state.step))
