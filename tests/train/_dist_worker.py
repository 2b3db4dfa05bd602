"""One process of the 2-process test (tests/train/test_distributed.py); also runs single-process.

    python _dist_worker.py OUT CKPT NUM_PROCESSES PROCESS_ID PORT [KILL_AFTER]
"""

import sys

import numpy as np

out, ckpt, n, pid, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
kill_after = int(sys.argv[6]) if len(sys.argv) > 6 else None

from zoo.train import distributed  # noqa: E402

if n > 1:
    distributed.initialize(f"localhost:{port}", n, pid)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from zoo.train import TrainState, run_population, scan_steps  # noqa: E402

X = jax.random.normal(jax.random.key(0), (32, 3))
Y = X @ jnp.array([1.0, -2.0, 0.5])


def loss_fn(p, b, r):
    return jnp.mean((b[0] @ p["w"] - b[1]) ** 2 + 0.01 * jax.random.normal(r, ())), {}


def init(key, hp):
    return TrainState.create(params={"w": jax.random.normal(key, (3,))}, optimizer=optax.sgd(hp), rng=key)


def chunk(state, hp, c):
    state, m = scan_steps(loss_fn, optax.sgd(hp), lambda t: (X, Y), 4)(state)
    return state, {"loss": m["loss"], "w": state.params["w"]}


def stop(c, o):
    if kill_after is not None and c == kill_after:
        raise SystemExit(3)


keys = jax.random.split(jax.random.key(7), 4)
lrs = jnp.array([0.01, 0.02, 0.05, 0.1])
state, outs = run_population(init, chunk, keys, lrs, num_chunks=5, steps_per_chunk=4, progress=False,
                             checkpoint_dir=ckpt if ckpt != "-" else None, mesh=distributed.member_mesh(),
                             callback=stop)
assert jax.process_count() == n and jax.device_count() == n
if distributed.is_primary():
    np.savez(out, loss=outs["loss"], w=outs["w"])
