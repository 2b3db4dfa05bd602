"""Benchmark: fused k-means assignment (``zoo.kernels.kmeans``) vs the jitted jnp references.

    python benchmarks/kmeans.py                 # GPU: N = 10^6, D = 64, K in {2, 64, 1024}
    python benchmarks/kmeans.py --quick         # GPU: fewer repeats (~1 minute)
    python benchmarks/kmeans.py --k 2 16 --n 1048576 --block-n 128
    python benchmarks/kmeans.py --json out.json # also write the rows as JSON

On a CPU-only machine it runs a tiny interpret-mode sanity version instead (checks that kernel and
reference agree); its timings mean nothing.

Printed per op (``assign``, ``assign_accumulate``) and K: best-of-R wall time of the jitted reference
and kernel (after warm-up, ``block_until_ready``), their ratio, and the fraction of the roofline floor
reached by the kernel,

    floor = max(bytes / peak_bandwidth, flops / peak_flops),
    bytes = 4 N D (read x once) + 4 K D (c) + 8 N (labels, d2) [+ 4 K (D + 1) sums, counts],
    flops = 2 N K D (the distance GEMM, at the dense TF32 peak: f32 inputs run on TF32 tensor cores),

with peaks from ``zoo.kernels._common.PEAKS`` keyed by the device kind, plus the peak temporary memory of each
(XLA's ``memory_analysis``; the reference materialises the N x K distance matrix, 4 N K bytes).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

import jax
import jax.numpy as jnp

from zoo.kernels import _common
from zoo.kernels import kmeans as km

def _temp_bytes(f, *args) -> int | None:
    """Peak temporary (scratch) bytes XLA allocates for ``f(*args)``; None if the backend won't say."""
    try:
        stats = f.lower(*args).compile().memory_analysis()
        return int(stats.temp_size_in_bytes)
    except Exception:  # memory_analysis is optional per backend
        return None


def _floor_seconds(n, k, d, *, accumulate, bw, peak) -> float | None:
    if bw is None or peak is None:
        return None
    nbytes = 4 * n * d + 4 * k * d + 8 * n + (4 * k * (d + 1) if accumulate else 0)
    flops = 2 * n * k * d
    return max(nbytes / bw, flops / peak)




def run(
    *,
    n: int,
    d: int,
    ks: list[int],
    block_n: int,
    block_k: int,
    warmup: int,
    repeats: int,
    interpret: bool,
    seed: int = 0,
) -> list[dict]:
    """Time kernel vs reference for every K; return one row (dict) per (op, K)."""
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", str(dev))
    pk = _common.device_peaks(kind)
    label, bw, peak = pk["label"], pk["bw"], pk["tf32"]
    key = jax.random.PRNGKey(seed)
    x = jax.random.normal(key, (n, d), jnp.float32)
    rows = []
    for k in ks:
        c = x[jax.random.choice(jax.random.fold_in(key, k), n, (k,), replace=False)] + 0.01
        ops = [("assign", km.assign_reference, km.assign)]
        if k <= km.MAX_ACCUMULATE_K:
            ops.append(("assign_accumulate", km.assign_accumulate_reference, km.assign_accumulate))
        for name, ref_fn, ker_fn in ops:
            ref = jax.jit(ref_fn)
            ker = jax.jit(functools.partial(ker_fn, block_n=block_n, block_k=block_k, interpret=interpret))
            out_r, out_k = ref(x, c), ker(x, c)
            match = float(jnp.mean(out_r[0] == out_k[0]))
            t_ref = _common.best_time(ref, x, c, warmup=warmup, repeats=repeats)
            t_ker = _common.best_time(ker, x, c, warmup=warmup, repeats=repeats)
            floor = _floor_seconds(n, k, d, accumulate=name != "assign", bw=bw, peak=peak)
            p = km.plan(n, k, d, block_n=block_n, block_k=block_k, target="interpret" if interpret else "triton")
            rows.append(
                dict(
                    device=label,
                    op=name,
                    n=n,
                    d=d,
                    k=k,
                    ref_ms=1e3 * t_ref,
                    kernel_ms=1e3 * t_ker,
                    ratio=t_ref / t_ker,
                    floor_ms=None if floor is None else 1e3 * floor,
                    roofline_frac=None if floor is None else floor / t_ker,
                    ref_temp_mb=_mb(_temp_bytes(ref, x, c), fallback=4 * n * k),
                    kernel_temp_mb=_mb(
                        _temp_bytes(ker, x, c), fallback=p.workspace_bytes(n, k, d, accumulate=name != "assign")
                    ),
                    labels_match=match,
                    block_n=p.block_n,
                    block_k=p.block_k,
                    x_padded=(p.n_pad, p.d_pad) != (n, d),
                )
            )
    return rows


def _mb(measured: int | None, *, fallback: int) -> float:
    return (fallback if measured is None else measured) / 2**20


def print_table(rows: list[dict], *, note: str) -> None:
    print(note)
    head = (
        f"{'op':<18} {'K':>5} {'ref ms':>9} {'kernel ms':>10} {'ref/kern':>8} {'floor ms':>9} "
        f"{'roofline':>8} {'ref tmp MB':>10} {'kern tmp MB':>11} {'labels=':>7} {'tiles':>9} {'x pad':>5}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['op']:<18} {r['k']:>5} {r['ref_ms']:>9.3f} {r['kernel_ms']:>10.3f} {r['ratio']:>8.2f} "
            f"{_common.fmt(r['floor_ms'], '9.3f'):>9} {_common.fmt(r['roofline_frac'], '8.2f'):>8} "
            f"{r['ref_temp_mb']:>10.1f} {r['kernel_temp_mb']:>11.1f} {r['labels_match']:>7.4f} "
            f"{str(r['block_n']) + 'x' + str(r['block_k']):>9} {'yes' if r['x_padded'] else 'no':>5}"
        )


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=None, help="points (default 10^6 on GPU, 1000 on CPU)")
    ap.add_argument("--d", type=int, default=None, help="dimensions (default 64 on GPU, 8 on CPU)")
    ap.add_argument("--k", type=int, nargs="+", default=None, help="centroid counts (default 2 64 1024 on GPU)")
    ap.add_argument("--block-n", type=int, default=256)
    ap.add_argument("--block-k", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=None, help="timed runs, best kept (default 20; 5 with --quick)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer repeats: a ~1 minute GPU run")
    ap.add_argument("--cpu-sanity", action="store_true", help="force the tiny interpret-mode sanity run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return ap.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    backend = jax.default_backend()
    sanity = args.cpu_sanity or backend not in ("gpu", "cuda", "rocm")
    if sanity:
        n, d, ks = args.n or 1000, args.d or 8, args.k or [2, 8, 64]
        repeats, warmup = args.repeats or 1, min(args.warmup, 1)
        note = (
            f"CPU sanity run ({backend}, Pallas interpret mode): checks kernel == reference; "
            "the timings mean nothing."
        )
    else:
        n, d, ks = args.n or 1_000_000, args.d or 64, args.k or [2, 64, 1024]
        repeats = args.repeats or (5 if args.quick else 20)
        warmup = args.warmup
        note = ""
    rows = run(
        n=n,
        d=d,
        ks=ks,
        block_n=args.block_n,
        block_k=args.block_k,
        warmup=warmup,
        repeats=repeats,
        interpret=sanity,
        seed=args.seed,
    )
    dev = rows[0]["device"] if rows else backend
    note = note or (
        f"{dev} ({jax.devices()[0].device_kind}), jax {jax.__version__}: N={n} D={d}, best of {repeats} after "
        f"{warmup} warm-up; roofline = max(bytes/BW, 2NKD/TF32 peak) / kernel time"
    )
    print_table(rows, note=note)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(note=note, jax=jax.__version__, rows=rows), fh, indent=2)
    if sanity and any(r["labels_match"] != 1.0 for r in rows):
        print("MISMATCH: kernel labels differ from the reference", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
