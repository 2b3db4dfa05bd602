"""Benchmark: fused LM-head log-prob + entropy (``zoo.kernels.fused_logprob``) vs the jitted jnp reference.

    python benchmarks/fused_logprob.py            # GPU: d = 1536, V = 151,936, 8192 tokens, bf16 and f32
    python benchmarks/fused_logprob.py --quick    # GPU: 2048 tokens, fewer repeats (< 1 minute)
    python benchmarks/fused_logprob.py --tokens 4096 --dtypes bf16 --block-m 64 --block-v 128 --json out.json

On a CPU-only machine it runs a tiny interpret-mode sanity version (kernel == reference); its timings
mean nothing.

Printed per dtype and mode ("fwd": logp + entropy; "fwd+bwd": value and gradient w.r.t. h and w of
sum(logp) + sum(entropy)): best-of-R wall time of the jitted reference and kernel, their ratio, the
roofline fraction of the kernel,

    floor = flops / peak_flops,   flops = 2 M d V (fwd) or 6 M d V (fwd + the two backward GEMMs),

at the dense bf16 (bf16 inputs) or TF32 (f32 inputs) peak (the kernel's backward also recomputes the
logits, 8 M d V in all: that recomputation is counted against it), XLA's peak temporary memory of each
(the reference holds the M x V logits, 4 M V bytes, and in fwd+bwd their gradient too), and the max
abs difference of logp (fwd) or of dh (fwd+bwd) from the reference.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

import jax
import jax.numpy as jnp

from zoo.kernels import _common
from zoo.kernels import fused_logprob as fl

DTYPES = {"bf16": jnp.bfloat16, "f32": jnp.float32}




def _compile(f, *args):
    """AOT-compile once: the compiled function is timed and asked for its temporary memory."""
    return jax.jit(f).lower(*args).compile()


def _temp_mb(compiled) -> float | None:
    try:
        return compiled.memory_analysis().temp_size_in_bytes / 2**20
    except Exception:  # memory_analysis is optional per backend
        return None




def _loss(fn):
    def f(h, w, t):
        logp, ent = fn(h, w, t)
        return jnp.sum(logp) + jnp.sum(ent)

    return f


def run(*, m, d, v, dtypes, modes, kernel_kw, warmup, repeats, interpret, seed=0) -> list[dict]:
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", str(dev))
    peaks = _common.device_peaks(kind)
    key = jax.random.PRNGKey(seed)
    kh, kw_, kt = jax.random.split(key, 3)
    rows = []
    for name in dtypes:
        dt = DTYPES[name]
        h = jax.random.normal(kh, (m, d), jnp.float32).astype(dt)
        w = (jax.random.normal(kw_, (d, v), jnp.float32) / jnp.sqrt(d)).astype(dt)
        t = jax.random.randint(kt, (m,), 0, v, jnp.int32)
        ker_fn = functools.partial(fl.fused_logprob, interpret=interpret, **kernel_kw)
        peak = peaks["bf16"] if name == "bf16" else peaks["tf32"]
        for mode in modes:
            if mode == "fwd":
                ref, ker = _compile(fl.fused_logprob_reference, h, w, t), _compile(ker_fn, h, w, t)
                err = float(jnp.max(jnp.abs(ref(h, w, t)[0] - ker(h, w, t)[0])))
                flops = 2 * m * d * v
            else:
                ref = _compile(jax.value_and_grad(_loss(fl.fused_logprob_reference), argnums=(0, 1)), h, w, t)
                ker = _compile(jax.value_and_grad(_loss(ker_fn), argnums=(0, 1)), h, w, t)
                dh_r, dh_k = ref(h, w, t)[1][0], ker(h, w, t)[1][0]
                err = float(jnp.max(jnp.abs(dh_r.astype(jnp.float32) - dh_k.astype(jnp.float32))))
                flops = 6 * m * d * v
            t_ref = _common.best_time(ref, h, w, t, warmup=warmup, repeats=repeats)
            t_ker = _common.best_time(ker, h, w, t, warmup=warmup, repeats=repeats)
            floor = None if peak is None else flops / peak
            rows.append(
                dict(
                    device=peaks["label"],
                    dtype=name,
                    mode=mode,
                    m=m,
                    d=d,
                    v=v,
                    ref_ms=1e3 * t_ref,
                    kernel_ms=1e3 * t_ker,
                    ratio=t_ref / t_ker,
                    floor_ms=None if floor is None else 1e3 * floor,
                    roofline_frac=None if floor is None else floor / t_ker,
                    ref_temp_mb=_temp_mb(ref),
                    kernel_temp_mb=_temp_mb(ker),
                    logits_mb=4 * m * v / 2**20,
                    max_err=err,
                )
            )
    return rows


def print_table(rows: list[dict], *, note: str) -> None:
    print(note)
    head = (
        f"{'dtype':<5} {'mode':<8} {'tokens':>7} {'ref ms':>9} {'kernel ms':>10} {'ref/kern':>8} {'floor ms':>9} "
        f"{'roofline':>8} {'ref tmp MB':>10} {'kern tmp MB':>11} {'logits MB':>9} {'max err':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['dtype']:<5} {r['mode']:<8} {r['m']:>7} {r['ref_ms']:>9.3f} {r['kernel_ms']:>10.3f} {r['ratio']:>8.2f} "
            f"{_common.fmt(r['floor_ms'], '9.3f'):>9} {_common.fmt(r['roofline_frac'], '8.2f'):>8} "
            f"{_common.fmt(r['ref_temp_mb'], '10.1f'):>10} {_common.fmt(r['kernel_temp_mb'], '11.1f'):>11} "
            f"{r['logits_mb']:>9.1f} {r['max_err']:>9.2e}"
        )


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=None, help="M (default 8192 on GPU, 2048 with --quick)")
    ap.add_argument("--d", type=int, default=None, help="hidden size (default 1536)")
    ap.add_argument("--v", type=int, default=None, help="vocabulary (default 151936)")
    ap.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=None, help="default: bf16 f32")
    ap.add_argument("--modes", nargs="+", choices=["fwd", "fwd+bwd"], default=["fwd", "fwd+bwd"])
    ap.add_argument("--block-m", type=int, default=128)
    ap.add_argument("--block-v", type=int, default=128)
    ap.add_argument("--block-d", type=int, default=64)
    ap.add_argument("--splits", type=int, default=None)
    ap.add_argument("--chunk-v", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=None, help="timed runs, best kept (default 10; 3 with --quick)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="fewer tokens and repeats: < 1 minute on an H100")
    ap.add_argument("--cpu-sanity", action="store_true", help="force the tiny interpret-mode sanity run")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return ap.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    backend = jax.default_backend()
    sanity = args.cpu_sanity or backend not in ("gpu", "cuda", "rocm")
    kernel_kw = dict(block_m=args.block_m, block_v=args.block_v, block_d=args.block_d, splits=args.splits)
    kernel_kw["chunk_v"] = args.chunk_v
    if sanity:
        m, d, v = args.tokens or 16, args.d or 32, args.v or 300
        dtypes, repeats, warmup = args.dtypes or ["f32"], args.repeats or 1, 0
        note = f"CPU sanity run ({backend}, Pallas interpret mode): checks kernel == reference; the timings mean nothing."
    else:
        m = args.tokens or (2048 if args.quick else 8192)
        d, v = args.d or 1536, args.v or 151_936
        dtypes = args.dtypes or ["bf16", "f32"]
        repeats, warmup = args.repeats or (3 if args.quick else 10), args.warmup
        note = ""
    rows = run(
        m=m, d=d, v=v, dtypes=dtypes, modes=args.modes, kernel_kw=kernel_kw, warmup=warmup, repeats=repeats,
        interpret=sanity,
    )  # fmt: skip
    p = fl.plan(m, v, d, target="interpret" if sanity else "triton", **kernel_kw)
    note = note or (
        f"{rows[0]['device']} ({jax.devices()[0].device_kind}), jax {jax.__version__}: M={m} d={d} V={v}, best of "
        f"{repeats} after {warmup} warm-up; tiles bm={p.block_m} bv={p.block_v} bd={p.block_d} splits={p.splits} "
        f"chunk_v={p.chunk_v}; roofline = flops / dense peak (bf16 or TF32) / kernel time"
    )
    print_table(rows, note=note)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(note=note, jax=jax.__version__, rows=rows), fh, indent=2)
    if any(r["max_err"] > (1e-3 if r["dtype"] == "f32" and sanity else 1e9) for r in rows):
        print("MISMATCH: kernel differs from the reference", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
