"""Benchmark: fused dequantize-and-matmul (``zoo.kernels.dequant_matmul``) vs XLA.

    python benchmarks/dequant_matmul.py             # GPU: M in {1, 16, 64}, K = N in {4096, 8192}, int4 + int8
    python benchmarks/dequant_matmul.py --quick     # GPU: M in {1, 16, 64}, K = N = 4096, int4 g=128 (< 1 minute)
    python benchmarks/dequant_matmul.py --m 1 16 --kn 4096 --bits 4 --block-n 64 --split-k 8 --json out.json

On a CPU-only machine it runs a tiny interpret-mode sanity version (kernel == reference); its timings
mean nothing.

Compared, all jitted, bf16 activations:
  kernel  ``dequant_matmul`` (unpacks and dequantizes inside each K tile; the weight is read once, packed);
  xla     dequantize to a dense bf16 [K, N] in XLA, then a bf16 matmul (XLA does not fuse the nibble
          unpacking into the GEMM's operand load, so the dense copy is written and read back);
  bf16    a plain bf16 matmul with an unquantized bf16 weight of the same shape.
Floor = (packed codes + scales + zeros + x + y bytes) / peak HBM bandwidth (decode is bandwidth bound;
2 M K N flops are negligible at M <= 64); ``roofline`` = floor / kernel time. Target: kernel >= 1.5x
faster than ``xla`` at M <= 16.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from zoo.kernels import _common
from zoo.kernels import dequant_matmul as dq






def make_layer(seed: int, k: int, n: int, *, bits: int, group_size: int | None):
    """Random packed weights in the §6 layout: u32[K/8, N] (4-bit) or u8[K, N] (8-bit), bf16 scales [K/g, N],
    u8 zeros (numpy RNG on the host: no per-op compiles)."""
    g = group_size or k
    rng = np.random.default_rng(seed)
    if bits == 4:
        qweight = rng.integers(0, 2**32, (k // 8, n), dtype=np.uint32)  # every word = 8 random nibbles
    else:
        qweight = rng.integers(0, 256, (k, n), dtype=np.uint8)
    scales = jnp.asarray(rng.uniform(0.002, 0.02, (k // g, n)).astype(np.float32), jnp.bfloat16)
    zeros = rng.integers(0, 2**bits, (k // g, n)).astype(np.uint8)
    return jnp.asarray(qweight), scales, jnp.asarray(zeros)


def _per_call(op, x, stacked, *, warmup: int, repeats: int) -> float:
    """Device time of one ``op(x, *w_s)``: a jitted ``lax.scan`` over S stacked weight copies (their bytes
    exceed the L2 cache, so every call streams its weights from HBM), divided by S. A single timed call
    would mostly measure host dispatch at these microsecond sizes."""
    f = jax.jit(lambda x, st: jax.lax.scan(lambda c, a: (c, op(x, *a)), 0, st, unroll=True)[1])
    s = jax.tree.leaves(stacked)[0].shape[0]
    return _common.best_time(f, x, stacked, warmup=warmup, repeats=repeats) / s


def run(*, ms, kns, bit_list, group_size, kernel_kw, warmup, repeats, interpret, copies=1, seed=0) -> list[dict]:
    dev = jax.devices()[0]
    peaks = _common.device_peaks(getattr(dev, "device_kind", str(dev)))
    rng = np.random.default_rng(seed)
    rows = []
    for kn in kns:
        k = n = kn
        for bits in bit_list:
            g = group_size if bits == 4 else None  # int8: per output channel
            layers = [make_layer(seed + kn * 10 + bits + 1000 * c, k, n, bits=bits, group_size=g) for c in range(copies)]
            qweight, scales, zeros = layers[0]
            stacked = tuple(jnp.stack(a) for a in zip(*layers))  # S copies: [S, ...] each
            qkw = dict(bits=bits, group_size=g)
            deq = lambda q, s, z: dq.dequantize_reference(q, s, z, **qkw).astype(jnp.bfloat16)  # noqa: E731
            w_bf16 = jax.jit(jax.vmap(deq))(*stacked)  # [S, K, N]
            kernel_op = lambda x, q, s, z: dq.dequant_matmul(x, q, s, z, interpret=interpret, **qkw, **kernel_kw)  # noqa: E731
            xla_op = lambda x, q, s, z: x @ deq(q, s, z)  # noqa: E731
            kernel = jax.jit(kernel_op)
            ref = jax.jit(lambda x, q, s, z: dq.dequant_matmul_reference(x.astype(jnp.float32), q, s, z, **qkw))
            for m in ms:
                x = jnp.asarray(rng.normal(size=(m, k)).astype(np.float32), jnp.bfloat16)
                args = (x, qweight, scales, zeros)
                y_ref = ref(*args)
                err = float(jnp.max(jnp.abs(kernel(*args).astype(jnp.float32) - y_ref)) / jnp.max(jnp.abs(y_ref)))
                timing = dict(warmup=warmup, repeats=repeats)
                t_ker = _per_call(kernel_op, x, stacked, **timing)
                t_xla = _per_call(xla_op, x, stacked, **timing)
                t_bf16 = _per_call(lambda x, w: x @ w, x, (w_bf16,), **timing)
                nbytes = qweight.nbytes + scales.nbytes + zeros.nbytes + x.nbytes + m * n * 2
                floor = None if peaks["bw"] is None else nbytes / peaks["bw"]
                p = dq.plan(m, n, k, bits=bits, pack=dq.packing_of(qweight.dtype, bits), group_size=g,
                            target="interpret" if interpret else "triton", **kernel_kw)  # fmt: skip
                rows.append(
                    dict(
                        device=peaks["label"], bits=bits, group=g or k, m=m, k=k, n=n,
                        kernel_us=1e6 * t_ker, xla_us=1e6 * t_xla, bf16_us=1e6 * t_bf16,
                        xla_ratio=t_xla / t_ker, bf16_ratio=t_bf16 / t_ker,
                        floor_us=None if floor is None else 1e6 * floor,
                        roofline_frac=None if floor is None else floor / t_ker,
                        rel_err=err, tiles=f"{p.block_m}x{p.block_n}x{p.block_k}/s{p.split_k}",
                    )  # fmt: skip
                )
    return rows


def print_table(rows: list[dict], *, note: str) -> None:
    print(note)
    head = (
        f"{'bits':>4} {'g':>5} {'M':>4} {'K=N':>6} {'kernel us':>10} {'xla us':>9} {'bf16 us':>9} {'xla/kern':>8} "
        f"{'bf16/kern':>9} {'floor us':>9} {'roofline':>8} {'rel err':>9} {'tiles':>16}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['bits']:>4} {r['group']:>5} {r['m']:>4} {r['k']:>6} {r['kernel_us']:>10.1f} {r['xla_us']:>9.1f} "
            f"{r['bf16_us']:>9.1f} {r['xla_ratio']:>8.2f} {r['bf16_ratio']:>9.2f} {_common.fmt(r['floor_us'], '9.1f'):>9} "
            f"{_common.fmt(r['roofline_frac'], '8.2f'):>8} {r['rel_err']:>9.2e} {r['tiles']:>16}"
        )


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--m", type=int, nargs="+", default=None, help="batch rows (default 1 16 64)")
    ap.add_argument("--kn", type=int, nargs="+", default=None, help="K = N (default 4096 8192; 4096 with --quick)")
    ap.add_argument("--bits", type=int, nargs="+", choices=[4, 8], default=None, help="default 4 8; 4 with --quick")
    ap.add_argument("--group-size", type=int, default=128, help="int4 group size along K (int8: per channel)")
    ap.add_argument("--block-m", type=int, default=None)
    ap.add_argument("--block-n", type=int, default=None, help="default: 64 at M <= 16, else 128")
    ap.add_argument("--block-k", type=int, default=128)
    ap.add_argument("--split-k", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None, help="timed scans, best kept (default 20; 5 with --quick)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="K = N = 4096, int4 only: < 1 minute on an H100")
    ap.add_argument("--cpu-sanity", action="store_true", help="force the tiny interpret-mode sanity run")
    ap.add_argument("--copies", type=int, default=None, help="weight copies timed per scan (default 32; 16 --quick)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return ap.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    backend = jax.default_backend()
    sanity = args.cpu_sanity or backend not in ("gpu", "cuda", "rocm")
    kernel_kw = dict(block_m=args.block_m, block_n=args.block_n, block_k=args.block_k, split_k=args.split_k)
    if sanity:
        ms, kns, bit_list = args.m or [1, 3], args.kn or [256], args.bits or [4]
        repeats, warmup, group = args.repeats or 1, 1, min(args.group_size, 128)
        copies = args.copies or 2
        note = f"CPU sanity run ({backend}, Pallas interpret mode): checks kernel == reference; the timings mean nothing."
    else:
        ms = args.m or [1, 16, 64]
        kns = args.kn or ([4096] if args.quick else [4096, 8192])
        bit_list = args.bits or ([4] if args.quick else [4, 8])
        repeats, warmup, group = args.repeats or (5 if args.quick else 20), args.warmup, args.group_size
        copies = args.copies or (16 if args.quick else 32)
        note = ""
    rows = run(
        ms=ms, kns=kns, bit_list=bit_list, group_size=group, kernel_kw=kernel_kw, warmup=warmup, repeats=repeats,
        interpret=sanity, copies=copies,
    )  # fmt: skip
    note = note or (
        f"{rows[0]['device']} ({jax.devices()[0].device_kind}), jax {jax.__version__}: bf16 x, int4 with bf16 "
        f"scales + u8 zeros per {group} rows (int8 per channel); per-call device time from a lax.scan over {copies} weight copies (> L2), best of "
        f"{repeats} after {warmup} warm-up; "
        "floor = (packed W + scales + zeros + x + y bytes) / peak HBM bandwidth"
    )
    print_table(rows, note=note)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(note=note, jax=jax.__version__, rows=rows), fh, indent=2)
    if any(r["rel_err"] > 2e-2 for r in rows):
        print("MISMATCH: kernel differs from the reference by more than 2e-2 (relative to max |y|)", file=sys.stderr)
    return rows


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
