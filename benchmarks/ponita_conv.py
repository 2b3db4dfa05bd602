"""Benchmark: fused separable group convolution (``zoo.kernels.ponita_conv``) vs the jitted XLA reference,
and the full PONITA n-body training step with ``use_kernel`` False / True.

    python benchmarks/ponita_conv.py            # GPU: both conv settings, 3 block configs, + --model step
    python benchmarks/ponita_conv.py --quick    # GPU: < 60 s incl. compile (3 block configs, fewer repeats)
    python benchmarks/ponita_conv.py --no-model # conv only
    python benchmarks/ponita_conv.py --json out.json

On a machine without a GPU it runs a tiny interpret-mode sanity version (kernel == reference; the
timings mean nothing) and skips the model step unless ``--model`` is given.

Conv settings (C = 128, Bd = 256, fiber mix + bias, random ragged receivers):
  large:  E*O = 10^6 (E = 62500, O = 16, N = 2500, mean in-degree 25)   target ref/kern >= 1.8x
  n-body: E = 2500, O = 16, N = 500 (100 complete 5-node graphs with self-loops)

Each conv row: best-of-R time of the jitted reference (``fused_separable_conv_reference``: an einsum
writing K [E, O, C], a gather-multiply writing the messages, a segment_sum, the fiber einsum) and of
the kernel, forward ("fwd") and forward+backward w.r.t. x, basis, A, F, bias ("fwd+bwd"), their ratio,
and the roofline fraction of the kernel with

    fwd:     bytes = 4 (E O Bd + 2 N O C + Bd C + O O C),  flops = 2 E O Bd C
    fwd+bwd: bytes = 4 (3 E O Bd + 6 N O C + 2 Bd C),       flops = 4 * 2 E O Bd C
             (basis read in the forward and the backward, dbasis written; K formed for the forward,
              for dx, for dbasis and for dA), flops at the dense TF32 peak,

floor = max(bytes / BW, flops / peak). Several block configurations are timed; the best is marked.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from zoo.kernels import _common
from zoo.kernels import ponita_conv as pc

# device-kind substring -> (HBM bytes/s, dense TF32 flop/s, dense bf16 flop/s); first match wins.
PEAKS: tuple[tuple[tuple[str, ...], str, float, float, float], ...] = (
    (("h200",), "H200", 4.8e12, 495e12, 989e12),
    (("h100", "pcie"), "H100 PCIe", 2.0e12, 378e12, 756e12),
    (("h100",), "H100 SXM", 3.35e12, 495e12, 989e12),
)

# (block_nodes, block_edges, block_channels)
# On an H200 (jax 0.11.2, Triton) 16/64/128 and 32/128/128 exceed the 227 KB of shared memory per block:
# the forward holds the whole [Bd, Ct] slice of A.
CONFIGS_FULL = ((16, 32, 64), (16, 32, 32), (16, 64, 64), (32, 32, 32))
CONFIGS_QUICK = ((16, 32, 64), (16, 32, 32), (16, 64, 64))


def device_peaks(kind: str) -> tuple[str, float | None, float | None]:
    """(label, bandwidth B/s, TF32 flop/s) for a ``device_kind``; (kind + ' (unknown peak)', None, None) if unknown."""
    low = kind.lower()
    for keys, label, bw, tf32, _bf16 in PEAKS:
        if all(k in low for k in keys):
            return label, bw, tf32
    return f"{kind} (unknown peak)", None, None


def conv_cost(n: int, e: int, o: int, c: int, bd: int, *, backward: bool) -> tuple[float, float]:
    """(bytes, flops) lower bounds of one conv call (see the module docstring)."""
    if backward:
        return 4.0 * (3 * e * o * bd + 6 * n * o * c + 2 * bd * c), 4 * 2.0 * e * o * bd * c
    return 4.0 * (e * o * bd + 2 * n * o * c + bd * c + o * o * c), 2.0 * e * o * bd * c




def make_problem(n: int, e: int, o: int, c: int, bd: int, *, complete_graphs: int = 0, seed: int = 0):
    """Random conv inputs. ``complete_graphs`` > 0: that many complete graphs (with self-loops) of
    n / complete_graphs nodes, receiver-major (the n-body layout); else random ragged receivers."""
    rng = np.random.default_rng(seed)
    if complete_graphs:
        k = n // complete_graphs
        base = np.arange(complete_graphs)[:, None, None] * k
        r = (base + np.arange(k)[None, :, None] + 0 * np.arange(k)[None, None, :]).reshape(-1)
        s = (base + 0 * np.arange(k)[None, :, None] + np.arange(k)[None, None, :]).reshape(-1)
        assert s.size == e, (s.size, e)
    else:
        s = rng.integers(0, n, e)
        r = rng.integers(0, n, e)
    f32 = np.float32
    return dict(
        x=jnp.asarray(rng.normal(size=(n, o, c)).astype(f32)),
        basis=jnp.asarray(rng.normal(size=(e, o, bd)).astype(f32)),
        A=jnp.asarray((rng.normal(size=(bd, c)) / np.sqrt(bd)).astype(f32)),
        fiber=jnp.asarray(rng.normal(size=(o, o, c)).astype(f32)),
        bias=jnp.asarray(rng.normal(size=(c,)).astype(f32)),
        senders=jnp.asarray(s.astype(np.int32)),
        receivers=jnp.asarray(r.astype(np.int32)),
        mask=jnp.asarray(np.ones(e, bool)),
    )


def _fns(conv):
    """(forward, forward+backward) jitted functions of the float inputs for one conv implementation."""

    def fwd(x, basis, a, fiber, bias, s, r, m):
        return conv(x, basis, a, s, r, m, fiber, bias)

    def loss(x, basis, a, fiber, bias, s, r, m, w):
        return jnp.vdot(w, conv(x, basis, a, s, r, m, fiber, bias))

    return jax.jit(fwd), jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))


def _max_rel(a, b) -> float:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return max(
        float(jnp.max(jnp.abs(u - v)) / jnp.maximum(jnp.max(jnp.abs(v)), 1e-30)) for u, v in zip(leaves_a, leaves_b)
    )


def bench_conv(name, prob, *, configs, warmup, repeats, interpret, bw, peak) -> list[dict]:
    """Time reference and kernel (each block config) forward and forward+backward on one problem."""
    n, o, c = prob["x"].shape
    e, _, bd = prob["basis"].shape
    args = (prob["x"], prob["basis"], prob["A"], prob["fiber"], prob["bias"], prob["senders"], prob["receivers"],
            prob["mask"])
    w = jax.random.normal(jax.random.PRNGKey(1), prob["x"].shape, jnp.float32)
    ref_fwd, ref_grad = _fns(pc.fused_separable_conv_reference)
    out_ref = ref_fwd(*args)
    grad_ref = ref_grad(*args, w)
    t_ref = {"fwd": _common.best_time(ref_fwd, *args, warmup=warmup, repeats=repeats),
             "fwd+bwd": _common.best_time(ref_grad, *args, w, warmup=warmup, repeats=repeats)}
    rows = []
    for cfg in configs:
        bn, be, bc = cfg
        conv = functools.partial(
            pc.fused_separable_conv, interpret=interpret, block_nodes=bn, block_edges=be, block_channels=bc
        )
        ker_fwd, ker_grad = _fns(conv)
        for mode, kf, ref_out, extra in (("fwd", ker_fwd, out_ref, ()), ("fwd+bwd", ker_grad, grad_ref, (w,))):
            row = dict(setting=name, mode=mode, n=n, e=e, o=o, c=c, bd=bd, blocks=f"{bn}/{be}/{bc}",
                       ref_ms=1e3 * t_ref[mode])
            try:
                err = _max_rel(kf(*args, *extra), ref_out)
                t = _common.best_time(kf, *args, *extra, warmup=warmup, repeats=repeats)
            except Exception as ex:  # a block config that does not compile on this card: report, go on
                row.update(kernel_ms=None, ratio=None, roofline=None, max_rel_err=None,
                           error=f"{type(ex).__name__}: {str(ex).splitlines()[0][:160]}")
                rows.append(row)
                continue
            nbytes, flops = conv_cost(n, e, o, c, bd, backward=mode != "fwd")
            floor = None if bw is None else max(nbytes / bw, flops / peak)
            row.update(kernel_ms=1e3 * t, ratio=t_ref[mode] / t, roofline=None if floor is None else floor / t,
                       max_rel_err=err, error=None)
            rows.append(row)
    for mode in ("fwd", "fwd+bwd"):  # mark the best config per (setting, mode)
        ok = [r for r in rows if r["mode"] == mode and r["kernel_ms"] is not None]
        if ok:
            min(ok, key=lambda r: r["kernel_ms"])["best"] = True
    return rows


def bench_model(*, warmup, repeats, quick) -> list[dict]:
    """Full PONITA n-body training step (100 graphs x 5 nodes, num_ori 16, hidden 128, basis 256,
    5 layers; Adam + clip + weight decay) with use_kernel False and True."""
    import optax

    from zoo.geometric import ponita as P

    rows = []
    k = jax.random.split(jax.random.PRNGKey(0), 6)
    b, nn = 100, 5
    batch = {"pos": jax.random.normal(k[0], (b, nn, 3)), "vel": 0.5 * jax.random.normal(k[1], (b, nn, 3)),
             "charges": jnp.sign(jax.random.normal(k[2], (b, nn, 1))), "target": jax.random.normal(k[3], (b, nn, 3))}
    for use_kernel in (False, True):
        cfg = P.PonitaConfig(dim=3, in_scalar=1, in_vector=1, out_scalar=0, out_vector=1, hidden_dim=128,
                             basis_dim=256, num_layers=5, num_ori=16, degree=3, layer_scale=1e-6, task_level="node",
                             use_kernel=use_kernel)
        params = P.init(k[4], cfg, P.nbody_graph(batch))
        opt = P.make_optimizer(1e-3, weight_decay=1e-10, clip_norm=0.5)
        opt_state = opt.init(params)

        def step(params, opt_state, batch, key, cfg=cfg, opt=opt):
            (loss, _), g = jax.value_and_grad(P.nbody_loss, has_aux=True)(params, cfg, batch, key)
            u, opt_state = opt.update(g, opt_state, params)
            return optax.apply_updates(params, u), opt_state, loss

        step = jax.jit(step)
        fwd = jax.jit(lambda p, bt, cfg=cfg: P.nbody_predict(p, cfg, bt))
        row = dict(setting="model n-body step", use_kernel=use_kernel)
        try:
            t0 = time.perf_counter()
            jax.block_until_ready(step(params, opt_state, batch, k[5]))
            row["compile_s"] = time.perf_counter() - t0
            row["step_ms"] = 1e3 * _common.best_time(step, params, opt_state, batch, k[5], warmup=warmup, repeats=repeats)
            row["forward_ms"] = 1e3 * _common.best_time(fwd, params, batch, warmup=warmup, repeats=repeats)
            row["loss"] = float(step(params, opt_state, batch, k[5])[2])
            row["error"] = None
        except Exception as ex:
            row.update(step_ms=None, forward_ms=None, error=f"{type(ex).__name__}: {str(ex).splitlines()[0][:200]}")
        rows.append(row)
    return rows




def print_conv(rows, note):
    print(note)
    head = (f"{'setting':<8} {'mode':<8} {'E':>6} {'O':>3} {'blocks R/Et/Ct':>15} {'ref ms':>8} {'kernel ms':>9} "
            f"{'ref/kern':>8} {'roofline':>8} {'max rel err':>11}")
    print(head)
    print("-" * len(head))
    for r in rows:
        mark = " *" if r.get("best") else ""
        if r["kernel_ms"] is None:
            print(f"{r['setting']:<8} {r['mode']:<8} {r['e']:>6} {r['o']:>3} {r['blocks']:>15} {r['ref_ms']:>8.3f} "
                  f"FAILED {r['error']}")
            continue
        print(f"{r['setting']:<8} {r['mode']:<8} {r['e']:>6} {r['o']:>3} {r['blocks']:>15} {r['ref_ms']:>8.3f} "
              f"{r['kernel_ms']:>9.3f} {r['ratio']:>8.2f} {_common.fmt(r['roofline'], '8.2f'):>8} "
              f"{r['max_rel_err']:>11.2e}{mark}")
    print("(* = fastest block config for that setting and mode)")


def print_model(rows):
    print("\nPONITA n-body training step (100 x 5 nodes, E = 2500, O = 16, C = 128, Bd = 256, 5 layers):")
    for r in rows:
        if r["step_ms"] is None:
            print(f"  use_kernel={r['use_kernel']!s:<5}  FAILED {r['error']}")
        else:
            print(f"  use_kernel={r['use_kernel']!s:<5}  step {r['step_ms']:8.3f} ms   forward {r['forward_ms']:8.3f} ms"
                  f"   (compile {r['compile_s']:.1f} s, loss {r['loss']:.4g})")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 block configs, fewer repeats: < 60 s on an H100/H200")
    ap.add_argument("--model", dest="model", action="store_true", default=None, help="also time the model step")
    ap.add_argument("--no-model", dest="model", action="store_false", help="skip the model step")
    ap.add_argument("--cpu-sanity", action="store_true", help="force the tiny interpret-mode sanity run")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs, best kept (default 20; 5 with --quick)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write all rows to this JSON file")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    backend = jax.default_backend()
    sanity = args.cpu_sanity or backend not in ("gpu", "cuda", "rocm")
    kind = getattr(jax.devices()[0], "device_kind", backend)
    label, bw, peak = device_peaks(kind)
    if sanity:
        settings = [("tiny", dict(n=12, e=40, o=3, c=8, bd=16), 0)]
        configs, repeats, warmup = ((4, 8, 8),), args.repeats or 1, min(args.warmup, 1)
        note = f"CPU sanity run ({backend}, Pallas interpret mode): checks kernel == reference; the timings mean nothing."
        bw = peak = None
    else:
        settings = [("large", dict(n=2500, e=62500, o=16, c=128, bd=256), 0),
                    ("n-body", dict(n=500, e=2500, o=16, c=128, bd=256), 100)]
        configs = CONFIGS_QUICK if args.quick else CONFIGS_FULL
        repeats, warmup = args.repeats or (5 if args.quick else 20), args.warmup
        note = (f"{label} ({kind}), jax {jax.__version__}: best of {repeats} after {warmup} warm-up; "
                "roofline = max(bytes/BW, flops/TF32 peak) / kernel time")
    conv_rows = []
    for name, shape, graphs in settings:
        prob = make_problem(**shape, complete_graphs=graphs)
        conv_rows += bench_conv(name, prob, configs=configs, warmup=warmup, repeats=repeats, interpret=sanity,
                                bw=bw, peak=peak)
    print_conv(conv_rows, note)
    model_rows = []
    if args.model or (args.model is None and not sanity):
        model_rows = bench_model(warmup=warmup, repeats=repeats, quick=args.quick)
        print_model(model_rows)
    out = dict(note=note, device=label, jax=jax.__version__, conv=conv_rows, model=model_rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    bad = [r for r in conv_rows if r["max_rel_err"] is not None and r["max_rel_err"] > (1e-4 if sanity else 2e-2)]
    if bad:
        print(f"MISMATCH: {len(bad)} kernel rows differ from the reference", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
