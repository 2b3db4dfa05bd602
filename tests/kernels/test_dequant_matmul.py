"""Tests for zoo.kernels.dequant_matmul: packing layout, Pallas kernel (interpret mode) vs the jnp reference.

The packer here is an independent numpy implementation of ``_quantization_family.md`` §6.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.kernels import dequant_matmul as dq


def pack(q: np.ndarray, bits: int, layout: str) -> np.ndarray:
    """Codes int[K, N] (unsigned, or signed two's complement) -> the §6 storage."""
    k, n = q.shape
    q = q.astype(np.int64) & ((1 << bits) - 1)
    if bits == 8:
        return q.astype(np.uint8)
    per = {"u32": 8, "u8": 2}[layout]
    out = np.zeros((k // per, n), np.uint64)
    for r in range(k // per):
        for j in range(per):
            out[r] |= q[per * r + j].astype(np.uint64) << np.uint64(4 * j)
    return out.astype(np.uint32 if per == 8 else np.uint8)


def make(m, k, n, *, bits, layout, axis, g, signed=False, zeros=True, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    q = rng.integers(lo, hi, size=(k, n))
    gg = g or (k if axis == "oc" else n)
    shape = (k // gg, n) if axis == "oc" else (k, n // gg)
    s = rng.uniform(0.01, 0.1, shape).astype(np.float32)
    z = rng.integers(0, 1 << bits, shape).astype(np.uint8) if zeros else None
    b = rng.normal(size=n).astype(np.float32) if bias else None
    x = rng.normal(size=(m, k)).astype(np.float32)
    return x, pack(q, bits, layout), s, z, b, q


# ------------------------------------------------------------------------------------ layout


def test_exact_word_values_on_fixed_pattern():
    """Row k = 8r + j sits in bits [4j, 4j + 4) of word r (AutoGPTQ), little nibble first."""
    q = np.tile(np.arange(16)[:, None], (1, 2)) % 16  # rows 0..15, two columns
    words = pack(q, 4, "u32")
    assert words.dtype == np.uint32 and words.shape == (2, 2)
    assert words[0, 0] == 0x76543210 and words[1, 0] == 0xFEDCBA98
    np.testing.assert_array_equal(np.asarray(dq.unpack_codes(words, bits=4)), q)
    np.testing.assert_array_equal(np.asarray(dq.unpack_codes(words.view(np.int32), bits=4)), q)  # AutoGPTQ int32
    bytes_ = pack(q, 4, "u8")
    assert bytes_.shape == (8, 2) and bytes_[0, 0] == 0x10 and bytes_[7, 0] == 0xFE
    np.testing.assert_array_equal(np.asarray(dq.unpack_codes(bytes_, bits=4)), q)
    signed = np.array([[-8], [-1], [0], [7], [3], [-5], [1], [-2]])
    np.testing.assert_array_equal(np.asarray(dq.unpack_codes(pack(signed, 4, "u32"), bits=4, signed=True)), signed)
    i8 = np.array([[-128, 127], [-1, 0]], np.int8)
    np.testing.assert_array_equal(np.asarray(dq.unpack_codes(i8, bits=8, signed=True)), i8)
    np.testing.assert_array_equal(np.asarray(dq.unpack_codes(i8.view(np.uint8), bits=8)), i8.view(np.uint8))


def test_dequantize_reference_groups():
    x, qw, s, z, _, q = make(1, 32, 12, bits=4, layout="u32", axis="oc", g=8)
    w = np.asarray(dq.dequantize_reference(qw, s, z, bits=4, group_size=8))
    np.testing.assert_allclose(w[9, 5], s[1, 5] * (q[9, 5] - float(z[1, 5])), rtol=1e-6)
    _, qw, s, z, _, q = make(1, 16, 12, bits=8, layout="u8", axis="ic", g=4)
    w = np.asarray(dq.dequantize_reference(qw, s, z, bits=8, group_size=4, group_axis="ic"))
    np.testing.assert_allclose(w[3, 9], s[3, 2] * (q[3, 9] - float(z[3, 2])), rtol=1e-6)


# ------------------------------------------------------------------------------------ kernel == reference

# (M, K, N, bits, layout, group_axis, g, signed, zeros, bias, kernel kwargs)
CASES = {
    "M1-int4u32-oc32-gemv-Npad": (1, 64, 37, 4, "u32", "oc", 32, False, True, True, dict(block_n=16, block_k=16)),
    "M3-int4u8-ic8-split3": (3, 48, 40, 4, "u8", "ic", 8, False, True, False, dict(block_k=16, split_k=3)),
    "M17-int8-perOC-split2": (17, 64, 24, 8, "u8", "oc", None, False, True, True, dict(block_k=32, split_k=2)),
    "M17-int8-signed-perIC": (17, 32, 32, 8, "i8", "ic", None, True, False, False, dict()),
    "M7-int4-signed-oc16": (7, 32, 20, 4, "u32", "oc", 16, True, False, True, dict(block_k=8)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference_f32(name):
    m, k, n, bits, layout, axis, g, signed, has_z, has_b, kw = CASES[name]
    x, qw, s, z, b, _ = make(m, k, n, bits=bits, layout=layout, axis=axis, g=g, signed=signed, zeros=has_z, bias=has_b)
    if layout == "i8":
        qw = qw.view(np.int8)
    qkw = dict(bits=bits, group_size=g, group_axis=axis, signed=signed)
    y = dq.dequant_matmul(x, qw, s, z, b, **qkw, **kw)
    ref = dq.dequant_matmul_reference(jnp.asarray(x), qw, s, z, b, **qkw)
    assert y.shape == (m, n) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-5, atol=1e-5 * np.sqrt(k))


def test_bf16_activations():
    """bf16 x: the oc path multiplies exact integer (q - z) in bf16 and scales in f32; bound of §7:
    rtol 2e-2, atol 2e-2 sqrt(K) max|x| max|W|."""
    x, qw, s, z, b, _ = make(16, 128, 32, bits=4, layout="u32", axis="oc", g=64, seed=3)
    xb = jnp.asarray(x, jnp.bfloat16)
    y = dq.dequant_matmul(xb, qw, s, z, b, bits=4, group_size=64)
    ref = dq.dequant_matmul_reference(xb, qw, s, z, b, bits=4, group_size=64)
    assert y.dtype == jnp.bfloat16
    wmax = float(jnp.max(jnp.abs(dq.dequantize_reference(qw, s, z, bits=4, group_size=64))))
    atol = 2e-2 * np.sqrt(128) * float(jnp.max(jnp.abs(xb.astype(jnp.float32)))) * wmax
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(ref, np.float32), rtol=2e-2, atol=atol)
    rel = float(jnp.max(jnp.abs(y.astype(jnp.float32) - ref.astype(jnp.float32))) / jnp.max(jnp.abs(ref.astype(jnp.float32))))
    assert rel < 1e-2  # in practice: bf16 output rounding only


_jit_kernel = jax.jit(
    dq.dequant_matmul,
    static_argnames=("bits", "group_size", "group_axis", "signed", "block_m", "block_n", "block_k", "split_k", "interpret"),
)


def test_jit_matches_eager():
    m, k, n, bits, layout, axis, g, signed, has_z, has_b, kw = CASES["M3-int4u8-ic8-split3"]
    x, qw, s, z, b, _ = make(m, k, n, bits=bits, layout=layout, axis=axis, g=g, seed=4, bias=has_b)
    qkw = dict(bits=bits, group_size=g, group_axis=axis)
    eager = dq.dequant_matmul(x, qw, s, z, **qkw, **kw)
    jitted = _jit_kernel(jnp.asarray(x), jnp.asarray(qw), jnp.asarray(s), jnp.asarray(z), **qkw, **kw)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))


# ------------------------------------------------------------------------------------ GPU layout on CPU


@pytest.mark.parametrize("m", [1, 3])
def test_triton_plan_in_interpret_mode(m):
    """Triton tiling (power-of-two tiles, bm = 1 GEMV or 16, N padded 40 -> 64, default split-K) on CPU."""
    x, qw, s, z, b, _ = make(m, 256, 40, bits=4, layout="u32", axis="oc", g=128, seed=5)
    p = dq.plan(m, 40, 256, bits=4, pack=8, group_size=128, target="triton")
    assert (p.block_n, p.block_k, p.n_pad, p.split_k) == (64, 128, 64, 2) and p.block_m == (1 if m == 1 else 16)
    y = dq._fused(*map(jnp.asarray, (x, qw, s, z, b)), p=p, bits=4, signed=False, interpret=True)
    ref = dq.dequant_matmul_reference(jnp.asarray(x), qw, s, z, b, bits=4, group_size=128)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ref), rtol=1e-5, atol=1e-5 * 16)


@pytest.mark.parametrize(
    "m,qdt,bits,axis,g",
    [(1, jnp.uint32, 4, "oc", 128), (16, jnp.uint8, 4, "ic", 128), (64, jnp.int8, 8, "oc", None)],
)
def test_lowers_to_triton(m, qdt, bits, axis, g):
    """Cross-lower for CUDA (no GPU needed): unpacking (broadcast + reshape + shifts) has Triton rules."""
    k = n = 512
    pack_ = dq.packing_of(qdt, bits)
    p = dq.plan(m, n, k, bits=bits, pack=pack_, group_size=g, group_axis=axis, target="triton")
    gg = g or (k if axis == "oc" else n)
    qs = (k // gg, n) if axis == "oc" else (k, n // gg)
    args = (
        jax.ShapeDtypeStruct((m, k), jnp.bfloat16),
        jax.ShapeDtypeStruct((k // pack_, n), qdt),
        jax.ShapeDtypeStruct(qs, jnp.bfloat16),
        jax.ShapeDtypeStruct(qs, jnp.uint8),
        jax.ShapeDtypeStruct((n,), jnp.float32),
    )
    lowered = dq._fused.trace(*args, p=p, bits=bits, signed=False, interpret=False).lower(lowering_platforms=("cuda",))
    assert "__gpu$xla.gpu.triton" in lowered.as_text()


def test_plan_rules():
    p = dq.plan(1, 4096, 4096, bits=4, pack=8, group_size=128, target="triton")
    assert (p.block_m, p.block_n, p.block_k, p.split_k, p.n_pad) == (1, 64, 128, 8, 4096) and not p.use_dot
    p = dq.plan(64, 4096, 4096, bits=4, pack=8, group_size=128, target="triton")
    assert (p.block_m, p.block_n, p.split_k) == (64, 128, 4) and p.use_dot
    p = dq.plan(16, 4096, 4096, bits=4, pack=8, group_size=32, target="triton")
    assert p.block_k == 32  # one scale row per K tile
    p = dq.plan(16, 4096, 4096, bits=4, pack=8, group_size=64, group_axis="ic", target="triton")
    assert p.block_n == 64  # one scale column per N tile
    assert dq.plan(7, 37, 48, bits=4, pack=8, block_k=16, split_k=5).split_k == 3  # lowered to a divisor of 3 K tiles
    assert p.weight_bytes(bits=4) == 4096 * 4096 // 2 + 3 * 4096 * 64
    with pytest.raises(ValueError, match=r"K: 40 has no power-of-two K tile"):
        dq.plan(1, 32, 40, bits=8, pack=1, target="triton")
    with pytest.raises(ValueError, match=r"group_size: 24 has no power-of-two N tile"):
        dq.plan(1, 48, 32, bits=8, pack=1, group_size=24, group_axis="ic", target="triton")


# ------------------------------------------------------------------------------------ bad input

_X = np.zeros((2, 16), np.float32)
_Q = np.zeros((2, 4), np.uint32)  # K/8 = 2, N = 4
_S = np.ones((1, 4), np.float32)
_Z = np.zeros((1, 4), np.uint8)


def _nan(a):
    a = a.copy()
    a.flat[0] = np.nan
    return a


BAD = [
    ("bits 3", dict(bits=3), r"bits: expected one of 4, 8; got 3"),
    ("bits 16", dict(bits=16), r"bits: expected one of 4, 8; got 16"),
    ("qweight float", dict(q=np.zeros((2, 4), np.float32)), r"qweight: expected dtype kind in 'iu'"),
    ("qweight u8 for int4 rows", dict(q=np.zeros((2, 4), np.uint8)), r"qweight: expected shape \(8, \*\), got \(2, 4\)"),
    ("qweight int16", dict(q=np.zeros((2, 4), np.int16)), r"qweight: for bits=4 expected uint32/int32"),
    ("qweight u32 for int8", dict(bits=8), r"qweight: for bits=8 expected uint8/int8"),
    ("qweight K mismatch", dict(q=np.zeros((3, 4), np.uint32)), r"qweight: expected shape \(2, \*\), got \(3, 4\)"),
    ("K not packable", dict(x=np.zeros((2, 12), np.float32)), r"x.shape\[1\] \(K\): expected a multiple of 8"),
    ("group not dividing K", dict(group_size=6), r"group_size: expected a divisor of K = 16"),
    ("group not dividing N", dict(group_size=3, group_axis="ic"), r"group_size: expected a divisor of N = 4"),
    ("group zero", dict(group_size=0), r"group_size: expected None or a positive int"),
    ("group_axis", dict(group_axis="row"), r"group_axis: expected one of 'oc', 'ic'"),
    ("scales shape", dict(s=np.ones((2, 4), np.float32)), r"scales: expected shape \(1, 4\), got \(2, 4\)"),
    ("scales ic shape", dict(group_axis="ic"), r"scales: expected shape \(16, 1\), got \(1, 4\)"),
    ("scales int", dict(s=np.ones((1, 4), np.int32)), r"scales: expected dtype kind in 'f'"),
    ("scales NaN", dict(s=_nan(_S)), r"scales: contains 1 non-finite"),
    ("zeros shape", dict(z=np.zeros((1, 5), np.uint8)), r"zeros: expected shape \(1, 4\), got \(1, 5\)"),
    ("bias shape", dict(b=np.zeros(3, np.float32)), r"bias: expected shape \(4\), got \(3,\)"),
    ("x 1-D", dict(x=np.zeros(16, np.float32)), r"x: expected a 2-D array"),
    ("x int", dict(x=np.zeros((2, 16), np.int32)), r"x: expected dtype kind in 'f'"),
    ("x NaN", dict(x=_nan(_X)), r"x: contains 1 non-finite"),
    ("x bf16 NaN", dict(x=jnp.asarray(_nan(_X), jnp.bfloat16)), r"x: contains 1 non-finite"),
    ("block_k zero", dict(block_k=0), r"block_k: expected a positive int"),
    ("interpret str", dict(interpret="yes"), r"interpret: expected one of"),
]


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_input(case):
    _, override, msg = case
    args = dict(x=_X, q=_Q, s=_S, z=_Z, b=None, bits=4) | override
    x, q, s, z, b = (args.pop(k) for k in ("x", "q", "s", "z", "b"))
    with pytest.raises(ValueError, match=msg):
        dq.dequant_matmul(x, q, s, z, b, **args)


def test_shape_checks_run_under_jit():
    with pytest.raises(ValueError, match=r"scales: expected shape \(1, 4\)"):
        _jit_kernel(_X, _Q, np.ones((2, 4), np.float32), _Z, bits=4)


# ------------------------------------------------------------------------------------ benchmark smoke test

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "dequant_matmul.py"


def test_benchmark_cpu_sanity(capsys):
    spec = importlib.util.spec_from_file_location("dequant_matmul_benchmark", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--cpu-sanity", "--m", "1", "--kn", "128", "--group-size", "64"])
    assert len(rows) == 1 and rows[0]["rel_err"] < 1e-2 and rows[0]["kernel_us"] > 0
    out = capsys.readouterr().out
    assert "timings mean nothing" in out and "xla/kern" in out
