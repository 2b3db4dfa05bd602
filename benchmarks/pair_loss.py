"""Benchmark: the fused MS loss (``zoo.kernels.pair_loss.ms_loss``) vs the jitted jnp reference, value + gradient.

    python benchmarks/pair_loss.py                  # GPU: B in {4096, 8192, 16384}, D = 512
    python benchmarks/pair_loss.py --quick          # GPU: fewer repeats
    python benchmarks/pair_loss.py --b 1024 4096 --d 512 --block-m 64 --block-n 64 --json out.json

On a machine without a GPU it runs a tiny interpret-mode sanity version (B = 37, D = 8) that checks kernel
and reference agree; its timings mean nothing.

Printed per B: best-of-R wall time of ``jit(value_and_grad)`` of the reference and of the kernel (after
warm-up, ``block_until_ready``), their ratio (reference / kernel), the kernel's fraction of the roofline
floor, and each one's peak temporary memory (XLA ``memory_analysis``; the reference materialises several
B x B arrays, the kernel O(B D)):

    floor = max(bytes / peak_bandwidth, flops / peak_flops),
    flops = 12 B^2 D (forward: 2 sweeps x 2 B^2 D; backward: 2 kernels x (S tile 2 B^2 D + G E 2 B^2 D)),
    bytes = 4 B D x (1 + 2 + 2) (E read by the forward and by both backward kernels) + 4 B D (dE).

Labels: ``B / 5`` classes of 5 (the P x K structure of the paper's batches).
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from zoo.kernels import _common
from zoo.kernels import pair_loss as pk


def _temp_bytes(f, *args) -> int | None:
    try:
        return int(f.lower(*args).compile().memory_analysis().temp_size_in_bytes)
    except Exception:  # memory_analysis is optional per backend
        return None


def _inputs(b: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(b, d)).astype(np.float32)
    E = jnp.asarray(z / np.linalg.norm(z, axis=1, keepdims=True))
    y = jnp.asarray(np.arange(b) // 5 % max(b // 5, 2), jnp.int32)
    return E, y


def run(*, bs: list[int], d: int, block_m: int, block_n: int, warmup: int, repeats: int, interpret: bool,
        seed: int = 0) -> list[dict]:
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", str(dev))
    pk_ = _common.device_peaks(kind)
    ref = jax.jit(jax.value_and_grad(lambda E, y: pk.ms_loss_reference(E, y)))
    ker = jax.jit(jax.value_and_grad(
        lambda E, y: pk.ms_loss(E, y, block_m=block_m, block_n=block_n, interpret=interpret)))
    rows = []
    for b in bs:
        E, y = _inputs(b, d, seed)
        (lr, gr), (lk, gk) = ref(E, y), ker(E, y)
        err_v = abs(float(lr) - float(lk)) / max(abs(float(lr)), 1e-12)
        err_g = float(jnp.max(jnp.abs(gr - gk)) / jnp.maximum(jnp.max(jnp.abs(gr)), 1e-12))
        t_ref = _common.best_time(ref, E, y, warmup=warmup, repeats=repeats)
        t_ker = _common.best_time(ker, E, y, warmup=warmup, repeats=repeats)
        flops, nbytes = 12 * b * b * d, 24 * b * d
        floor = None if pk_["bw"] is None else max(nbytes / pk_["bw"], flops / pk_["tf32"])
        tr, tk = _temp_bytes(ref, E, y), _temp_bytes(ker, E, y)
        rows.append(dict(device=pk_["label"], b=b, d=d, ref_ms=1e3 * t_ref, kernel_ms=1e3 * t_ker,
                         ratio=t_ref / t_ker, floor_ms=None if floor is None else 1e3 * floor,
                         roofline_frac=None if floor is None else floor / t_ker,
                         ref_temp_mb=None if tr is None else tr / 2**20,
                         kernel_temp_mb=None if tk is None else tk / 2**20,
                         rel_err_value=err_v, rel_err_grad=err_g))
    return rows


def print_table(rows: list[dict], *, note: str) -> None:
    print(note)
    head = (f"{'B':>6} {'D':>4} {'ref ms':>9} {'kernel ms':>10} {'ref/kern':>8} {'floor ms':>9} {'roofline':>8} "
            f"{'ref tmp MB':>10} {'kern tmp MB':>11} {'rel err v':>9} {'rel err g':>9}")
    print(head)
    print("-" * len(head))
    f = _common.fmt
    for r in rows:
        print(f"{r['b']:>6} {r['d']:>4} {r['ref_ms']:>9.3f} {r['kernel_ms']:>10.3f} {r['ratio']:>8.2f} "
              f"{f(r['floor_ms'], '9.3f'):>9} {f(r['roofline_frac'], '8.2f'):>8} {f(r['ref_temp_mb'], '10.1f'):>10} "
              f"{f(r['kernel_temp_mb'], '11.1f'):>11} {r['rel_err_value']:>9.1e} {r['rel_err_grad']:>9.1e}")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--b", type=int, nargs="+", default=None, help="batch sizes (default 4096 8192 16384 on GPU)")
    ap.add_argument("--d", type=int, default=None, help="embedding width (default 512 on GPU, 8 on CPU)")
    ap.add_argument("--block-m", type=int, default=64)
    ap.add_argument("--block-n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=None, help="timed runs, best kept (default 20; 5 with --quick)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--cpu-sanity", action="store_true", help="force the tiny interpret-mode sanity run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return ap.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    backend = jax.default_backend()
    sanity = args.cpu_sanity or backend not in ("gpu", "cuda", "rocm")
    if sanity:
        bs, d = args.b or [37], args.d or 8
        repeats, warmup = args.repeats or 1, min(args.warmup, 1)
        note = f"CPU sanity run ({backend}, Pallas interpret mode): checks kernel == reference; the timings mean nothing."
    else:
        bs, d = args.b or [4096, 8192, 16384], args.d or 512
        repeats, warmup = args.repeats or (5 if args.quick else 20), args.warmup
        note = ""
    rows = run(bs=bs, d=d, block_m=args.block_m, block_n=args.block_n, warmup=warmup, repeats=repeats,
               interpret=sanity, seed=args.seed)
    note = note or (f"{rows[0]['device']} ({jax.devices()[0].device_kind}), jax {jax.__version__}: D={d}, "
                    f"value_and_grad, best of {repeats} after {warmup} warm-up; roofline = max(bytes/BW, "
                    f"12 B^2 D / TF32 peak) / kernel time")
    print_table(rows, note=note)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(note=note, jax=jax.__version__, rows=rows), fh, indent=2)
    bad = [r for r in rows if r["rel_err_value"] > 1e-4 or r["rel_err_grad"] > 1e-3]
    if bad:
        print(f"MISMATCH: kernel differs from the reference at B = {[r['b'] for r in bad]}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
