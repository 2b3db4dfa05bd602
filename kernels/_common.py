"""Helpers shared by every kernel module.

- ``default_interpret``: resolve ``interpret=None`` (interpret on CPU, compile on GPU/TPU).
- ``kernel_target``: which lowering a call will use ("interpret", "triton" or "mosaic"), so a
  kernel can pick block/padding rules per backend behind one switch.
- ``cdiv`` / ``round_up`` / ``next_pow2``: static (Python int) size arithmetic for padding.
- ``tree_sum``: a fixed-order pairwise sum over a leading axis, used to reduce per-tile partial
  results without atomics (bit-reproducible on every backend).
- ``pow2_tile`` / ``divisor_tile``: tile sizes that divide an axis (Triton: powers of two >= 16;
  interpret mode: any divisor), so large operands need no padded copy.
- ``device_peaks``: HBM bandwidth and dense TF32/bf16 peaks by ``device_kind`` (for benchmarks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

TARGETS = ("interpret", "triton", "mosaic")


def default_interpret(interpret: bool | None) -> bool:
    """Resolve the ``interpret`` flag: ``None`` -> interpret unless a GPU/TPU backend is active."""
    if interpret is not None:
        return bool(interpret)
    return jax.default_backend() not in ("gpu", "cuda", "rocm", "tpu")


def kernel_target(interpret: bool) -> str:
    """The lowering a ``pallas_call`` will use: ``"interpret"``, ``"triton"`` (GPU) or ``"mosaic"`` (TPU)."""
    if interpret:
        return "interpret"
    return "mosaic" if jax.default_backend() == "tpu" else "triton"


def cdiv(a: int, b: int) -> int:
    """Ceiling division for static (Python int) sizes."""
    return -(-a // b)


def round_up(a: int, b: int) -> int:
    """Smallest multiple of ``b`` that is ``>= a`` (static ints)."""
    return cdiv(a, b) * b


def next_pow2(a: int) -> int:
    """Smallest power of two ``>= a`` (``a >= 1``)."""
    return 1 << max(int(a) - 1, 0).bit_length()


def prev_pow2(a: int) -> int:
    """Largest power of two ``<= a`` (``a >= 1``)."""
    return 1 << (int(a).bit_length() - 1)


def tree_sum(p: jax.Array) -> jax.Array:
    """Sum ``p: [G, ...]`` over its leading axis in a fixed pairwise order -> ``[...]``.

    Level by level, ``p <- p[:G/2] + p[G/2:]`` (an odd ``G`` gets a zero slab appended first).
    Only elementwise adds are used, so the result is the same bits on every run and backend
    (no atomics, no backend-chosen reduction tree), and pairwise summation keeps the rounding
    error at O(log G) ulps.
    """
    while p.shape[0] > 1:
        if p.shape[0] % 2:
            p = jnp.concatenate([p, jnp.zeros_like(p[:1])], axis=0)
        half = p.shape[0] // 2
        p = p[:half] + p[half:]
    return p[0]


def pow2_tile(extent: int, cap: int, *, minimum: int = 16) -> int:
    """Triton tile for an axis of ``extent``: the largest power of two ``<= cap`` that divides ``extent``.

    Falls back to ``max(minimum, min(prev_pow2(cap), next_pow2(extent)))`` (which then needs padding)
    when no power of two ``>= minimum`` divides ``extent``.
    """
    t = prev_pow2(max(cap, minimum))
    while t >= minimum:
        if extent % t == 0:
            return t
        t //= 2
    return max(minimum, min(prev_pow2(max(cap, minimum)), next_pow2(extent)))


def divisor_tile(extent: int, cap: int, *, multiple_of: int = 1) -> int | None:
    """Largest ``t <= cap`` with ``t | extent`` and ``multiple_of | t`` (interpret mode: any size); None if none."""
    for t in range(min(cap, extent), 0, -1):
        if extent % t == 0 and t % multiple_of == 0:
            return t
    return None


# device-kind substring -> (label, HBM bytes/s, dense TF32 flop/s, dense bf16 flop/s); first match wins.
PEAKS: tuple[tuple[tuple[str, ...], str, float, float, float], ...] = (
    (("h200",), "H200", 4.8e12, 495e12, 989e12),
    (("h100", "pcie"), "H100 PCIe", 2.0e12, 378e12, 756e12),
    (("h100",), "H100 SXM", 3.35e12, 495e12, 989e12),
)


def device_peaks(kind: str) -> dict:
    """Peaks for a ``device_kind`` string: ``dict(label, bw, tf32, bf16)`` (B/s, flop/s); None values if unknown."""
    low = kind.lower()
    for keys, label, bw, tf32, bf16 in PEAKS:
        if all(k in low for k in keys):
            return dict(label=label, bw=bw, tf32=tf32, bf16=bf16)
    return dict(label=f"{kind} (unknown peak)", bw=None, tf32=None, bf16=None)


# ------------------------------------------------------------------------------ benchmark helpers


def best_time(f, *args, warmup: int, repeats: int) -> float:
    """Best wall time in seconds of ``f(*args)`` (each ending in ``block_until_ready``) over ``repeats``
    calls, after ``warmup`` untimed calls. Used by every script in ``benchmarks/``."""
    import time

    for _ in range(warmup):
        jax.block_until_ready(f(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def fmt(v, spec: str, missing: str = "n/a") -> str:
    """``format(v, spec)``, or ``missing`` when ``v`` is None (a benchmark table cell)."""
    return missing if v is None else format(v, spec)
