"""Federated simulator throughput on CPU: rounds per second with 1,000 clients, and 1 -> 4 device scaling.

The workload is the `fedau` experiment's (digits, softmax regression, Q = 5 local steps of B = 16,
Bernoulli participation with label-correlated p_n, FedAU weighting), with N = 1,000 clients.
It times ``--rounds`` rounds run as one jitted `zoo.federated.core.simulate` call (steady state; the
first call, with compilation, is reported apart), for:

  all-N     every client computes, inactive rows masked (``capacity=None``)
  compact   only the active clients compute, in chunks of ``--capacity`` (``capacity=C``)

and then the same under a ``('clients',)`` mesh of 1, 2 and 4 devices (each device count in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``; on CPU the "devices" share the
machine's cores, so this measures the sharded program's overhead more than a real speedup).

Run:  python benchmarks/federated.py [--clients 1000] [--rounds 50] [--capacity 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _setup(num_clients: int, seed: int = 0):
    import warnings

    import numpy as np

    from zoo.data import load_digits
    from zoo.federated import core

    d = load_digits()
    x, y = np.tile(d["x"], (4, 1)), np.tile(d["y"], 4)  # 7,188 rows so that 1,000 clients have data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index, count, hist = core.dirichlet_client_major(y, num_clients, 0.3, seed)
    probs = core.label_correlated_probs(hist, seed=seed).astype(np.float32)
    data = core.federated_data(x, y, index, count, d["x"][:360], d["y"][:360], num_classes=10)
    return data, probs


def _time(num_clients: int, rounds: int, capacity, n_dev, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    from zoo.federated import core, fedau

    data, probs = _setup(num_clients)

    def loss_fn(params, batch):
        logits = batch["x"] @ params["w"] + params["b"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], axis=1))

    params = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}
    alg = fedau.make_algorithm(loss_fn, weighting="fedau", local_lr=0.05, local_steps=5, batch_size=16)
    pcfg = core.ParticipationConfig(kind="bernoulli")
    state = core.init_sim(alg, pcfg, params, data, probs, jax.random.key(0))
    mesh = None
    if n_dev is not None:
        mesh = jax.make_mesh((n_dev,), ("clients",))
        state, data = core.shard_clients(state, data, mesh)
    rf = core.make_round_fn(alg, pcfg, mesh=mesh, capacity=capacity)
    run = jax.jit(lambda s, d, k: core.simulate(rf, s, d, k, num_rounds=rounds))
    t0 = time.perf_counter()
    out = jax.block_until_ready(run(state, data, jax.random.key(1)))
    first = time.perf_counter() - t0
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(state, data, jax.random.key(2 + r)))
        best = min(best, time.perf_counter() - t0)
    return {"rounds_per_s": rounds / best, "first_call_s": first,
            "mean_active": float(out[1]["num_active"].mean())}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--capacity", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # device count, in a subprocess
    a = ap.parse_args()
    if a.child is not None:
        res = {c: _time(a.clients, a.rounds, c, a.child, a.repeats) for c in (None, a.capacity)}
        print("RESULT " + json.dumps({str(k): v for k, v in res.items()}))
        return

    import jax

    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPU cores; "
          f"N = {a.clients} clients, {a.rounds} rounds per call, best of {a.repeats}")  # fmt: skip
    rows = [("1 device, no mesh", {c: _time(a.clients, a.rounds, c, None, a.repeats) for c in (None, a.capacity)})]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    for n in (1, 2, 4):
        cmd = [sys.executable, __file__, "--child", str(n), "--clients", str(a.clients), "--rounds", str(a.rounds),
               "--capacity", str(a.capacity), "--repeats", str(a.repeats)]  # fmt: skip
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        res = json.loads(out.split("RESULT ", 1)[1])
        rows.append((f"mesh of {n} (fake CPU) devices", {None if k == "None" else int(k): v for k, v in res.items()}))
    print(f"{'setting':34s} {'all-N rounds/s':>15s} {'compact rounds/s':>17s} {'first call (s)':>15s}")
    for name, res in rows:
        full, comp = res[None], res[a.capacity]
        print(f"{name:34s} {full['rounds_per_s']:15.1f} {comp['rounds_per_s']:17.1f} "
              f"{full['first_call_s']:7.1f} / {comp['first_call_s']:5.1f}")  # fmt: skip
    print(f"mean active clients per round: {rows[0][1][None]['mean_active']:.1f}")


if __name__ == "__main__":
    main()
