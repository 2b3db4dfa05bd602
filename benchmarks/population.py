"""Population training throughput on CPU: 32 seeds of a 64-128-128-10 MLP on sklearn digits.

Three ways to train the same 32 runs (batch 64, 200 Adam steps each, identical results):

  loop        a jitted step called from Python, per seed per step (what most users write)
  scan/seed   one jitted ``lax.scan`` over all 200 steps, called once per seed
  population  ``zoo.train.population``: one jitted program, whole runs vmapped over the seeds

It prints the time of each (steady state; the first call, with compilation, reported apart), the speedups,
and the population's achieved GFLOP/s (analytic matmul FLOPs of forward + backward) as a
fraction of a large f32 matmul's GFLOP/s measured in this same process.

Targets: population >= 8x loop, >= 1.5x scan/seed, >= 50% of the matmul rate.

Run:  python benchmarks/population.py [--seeds 32] [--steps 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.data import batch_at, load_digits
from zoo.nn import MLP
from zoo.train import TrainState, make_run, population, train_step

HIDDEN = (128, 128, 10)
BATCH = 64


def matmul_flops_per_step(d_in: int, widths=HIDDEN, batch: int = BATCH) -> int:
    """Matmul FLOPs of one training step of one member (bias/activation/Adam terms excluded).

    Forward ``2 B d_l d_{l+1}`` per layer; backward the same again for each weight gradient, and
    once more for each input gradient except the first layer's (the data needs none).
    """
    dims = (d_in, *widths)
    per_layer = [2 * batch * a * b for a, b in zip(dims[:-1], dims[1:], strict=True)]
    return 2 * sum(per_layer) + sum(per_layer[1:])


def timed(fn) -> float:
    """Wall time of one call of ``fn`` (which must block on its result)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def matmul_fn(n: int = 2048):
    """A blocking jitted f32 ``[n, n] @ [n, n]`` and its FLOPs (the machine's practical matmul peak)."""
    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    return (lambda: mm(a, b).block_until_ready()), 2 * n**3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3, help="timed rounds of all three ways (best is kept)")
    args = p.parse_args()

    data = {k: jnp.asarray(v) for k, v in load_digits().items()}
    d_in = data["x"].shape[1]
    model = MLP(HIDDEN)
    optimizer = optax.adam(1e-3)
    batch_fn = functools.partial(batch_at, data, batch_size=BATCH, key=jax.random.key(0))

    def init_fn(key):
        return model.init(key, jnp.zeros((1, d_in), jnp.float32))

    def loss_fn(params, batch, rng):
        logits = model.apply(params, batch["x"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}

    run = make_run(init_fn, loss_fn, lambda _: optimizer, batch_fn, args.steps)
    keys = jax.random.split(jax.random.key(42), args.seeds)

    # -- 1. Python loop: a jitted step per seed per step (the batch is gathered inside the step).
    step = train_step(loss_fn, optimizer)

    @jax.jit
    def init_state(key):  # the same key use as make_run's runs, so all three give the same result
        init_key, rng_key, _ = jax.random.split(key, 3)
        return TrainState.create(params=init_fn(init_key), optimizer=optimizer, rng=rng_key)

    step_jit = jax.jit(lambda s: step(s, batch_fn(s.step)), donate_argnums=0)

    def python_loop():
        finals = []
        for key in keys:
            s = init_state(key)
            for _ in range(args.steps):
                s, m = step_jit(s)
            finals.append(m["loss"])
        return np.asarray(jax.block_until_ready(finals))

    # -- 2. one scanned run per seed.
    run_jit = jax.jit(run)

    def scan_per_seed():
        return np.asarray(jax.block_until_ready([run_jit(k)[1]["loss"][-1] for k in keys]))

    # -- 3. the population.
    def vmapped():
        return np.asarray(jax.block_until_ready(population(run, keys)[1]["loss"][:, -1]))

    matmul, matmul_flops = matmul_fn()
    batch_jit = jax.jit(batch_fn)
    ways = {"loop": python_loop, "scan/seed": scan_per_seed, "population": vmapped}

    compile_s = {}
    for name, fn in (("loop", lambda: step_jit(init_state(keys[0]))[1]["loss"].block_until_ready()),
                     ("scan/seed", lambda: run_jit(keys[0])[1]["loss"].block_until_ready()),
                     ("population", vmapped), ("matmul", matmul), ("batch", lambda: batch_jit(0))):
        compile_s[name] = timed(fn)

    # Round-robin rounds, best of each: the fairest estimate on a machine shared with other work.
    times = {name: float("inf") for name in (*ways, "matmul", "batch")}
    finals = {}
    for _ in range(args.repeats):
        times["matmul"] = min(times["matmul"], min(timed(matmul) for _ in range(3)))
        times["batch"] = min(times["batch"], timed(lambda: [batch_jit(i)["x"].block_until_ready()
                                                               for i in range(100)]) / 100)
        for name, fn in ways.items():
            t0 = time.perf_counter()
            finals[name] = fn()
            times[name] = min(times[name], time.perf_counter() - t0)
    max_rel = max(float(np.max(np.abs(finals[n] - finals["population"]) / np.abs(finals["population"])))
                  for n in ways)

    peak = matmul_flops / times["matmul"] / 1e9
    total_flops = matmul_flops_per_step(d_in) * args.steps * args.seeds
    pop_gflops = total_flops / times["population"] / 1e9
    member_steps = args.seeds * args.steps

    print(f"# population benchmark: {args.seeds} seeds x {args.steps} Adam steps, MLP {d_in}-"
          f"{'-'.join(map(str, HIDDEN))}, batch {BATCH}, f32, sklearn digits; best of {args.repeats} rounds")
    print(f"# jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.2f} at the end, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"# final losses: max relative difference between the ways {max_rel:.1e} (float summation order)")
    print(f"{'way':<12}{'seconds':>9}{'us/member-step':>16}{'GFLOP/s':>9}{'1st call s':>11}{'population is':>15}")
    for name in ways:
        t = times[name]
        print(f"{name:<12}{t:>9.3f}{1e6 * t / member_steps:>16.1f}{total_flops / t / 1e9:>9.2f}"
              f"{compile_s[name]:>11.2f}{t / times['population']:>14.2f}x")
    print(f"matmul 2048^3 f32: {peak:.1f} GFLOP/s; population: {pop_gflops:.1f} GFLOP/s = "
          f"{100 * pop_gflops / peak:.1f}% of it ({total_flops / 1e9:.1f} GFLOP of matmuls in total)")
    print(f"zoo.data.batch_at alone (jitted, one call): {1e6 * times['batch']:.0f} us; the loop and scan/seed pay it "
          f"per member-step, the population once per step for all {args.seeds} members")
    print(f"targets: >= 8x loop: {times['loop'] / times['population']:.1f}x; >= 1.5x scan/seed: "
          f"{times['scan/seed'] / times['population']:.2f}x; >= 50% of matmul: {100 * pop_gflops / peak:.1f}%")


if __name__ == "__main__":
    main()
