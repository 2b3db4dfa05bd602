"""Tests for zoo.kernels.fused_logprob: Pallas kernel (interpret mode on CPU) vs the jnp reference.

Interpret mode compiles one program per shape and tiling, so shapes are few, tiny and reused.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.kernels import fused_logprob as fl

# (M, d, V, kwargs): odd M and V; several V tiles, splits (one split empty-ish), d-chunks, backward chunks.
CASES = {
    "V37-tiled": (13, 20, 37, dict(block_m=8, block_v=8, block_d=8, splits=3, chunk_v=16)),
    "V37-one-tile": (5, 16, 37, dict()),
    "V4099": (9, 8, 4099, dict(block_m=16, block_v=512, splits=2, chunk_v=2048)),
}


def _data(m, d, v, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    h = (rng.normal(size=(m, d)) * 0.7).astype(dtype)
    w = (rng.normal(size=(d, v)) * 0.7).astype(dtype)
    t = rng.integers(0, v, m).astype(np.int32)
    return h, w, t


def _loss(fn):
    """A scalar sum(a logp) + sum(b H); per-row weights a, b are arguments, so one compiled function
    checks the cotangent of each output alone and of both together."""

    def f(h, w, t, a, b):
        logp, ent = fn(h, w, t)
        return jnp.sum(a * logp) + jnp.sum(b * ent)

    return f


@functools.lru_cache(maxsize=None)
def _grad_fns(name):
    kw = CASES[name][3]
    ker = jax.jit(jax.value_and_grad(_loss(functools.partial(fl.fused_logprob, **kw)), argnums=(0, 1)))
    ref = jax.jit(jax.value_and_grad(_loss(fl.fused_logprob_reference), argnums=(0, 1)))
    return ker, ref


def _cotangents(m):
    a = np.linspace(-1.0, 2.0, m).astype(np.float32)
    b = np.cos(np.arange(m)).astype(np.float32)
    zero = np.zeros(m, np.float32)
    return {"both": (a, b), "logp only": (a, zero), "entropy only": (zero, b)}


@pytest.mark.parametrize("name", list(CASES))
def test_values_match_reference(name):
    m, d, v, kw = CASES[name]
    h, w, t = _data(m, d, v)
    logp, ent = fl.fused_logprob(h, w, t, **kw)
    rl, re = fl.fused_logprob_reference(jnp.asarray(h), jnp.asarray(w), jnp.asarray(t))
    assert logp.shape == (m,) and ent.shape == (m,) and logp.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(logp), np.asarray(rl), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(np.asarray(ent), np.asarray(re), rtol=1e-5, atol=2e-5)
    assert np.all(np.asarray(logp) <= 0) and np.all(np.asarray(ent) >= 0)


@pytest.mark.parametrize("name", ["V37-tiled", "V4099"])
def test_gradients_match_reference(name):
    """d/dh and d/dw of each output alone (catches a wrong sign or factor on one dz term) and of both."""
    m, d, v, _ = CASES[name]
    h, w, t = _data(m, d, v, seed=1)
    ker, ref = _grad_fns(name)
    for which, (a, b) in _cotangents(m).items():
        (lk, (dh, dw)), (lr, (rh, rw)) = ker(h, w, t, a, b), ref(h, w, t, a, b)
        np.testing.assert_allclose(float(lk), float(lr), rtol=1e-5, atol=1e-5, err_msg=which)
        for got, want in ((dh, rh), (dw, rw)):
            scale = float(np.max(np.abs(np.asarray(want))))
            assert scale > 1e-3, which  # a non-trivial gradient
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5 * scale, err_msg=which)


def test_bf16_inputs_accumulate_in_f32():
    """bf16 h, w: logits accumulate in f32 (reference: bf16 dot with f32 accumulation); dz is bf16."""
    m, d, v, kw = CASES["V37-tiled"]
    h, w, t = _data(m, d, v, seed=3)
    hb, wb = jnp.asarray(h, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
    logp, ent = fl.fused_logprob(hb, wb, t, **kw)
    rl, re = fl.fused_logprob_reference(hb, wb, jnp.asarray(t))
    assert logp.dtype == jnp.float32 and ent.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(logp), np.asarray(rl), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ent), np.asarray(re), rtol=1e-4, atol=1e-4)
    ker, ref = _grad_fns("V37-tiled")
    a, b = _cotangents(m)["both"]
    (_, gk), (_, gr) = ker(hb, wb, t, a, b), ref(hb, wb, t, a, b)
    for got, want in zip(gk, gr):
        assert got.dtype == jnp.bfloat16
        got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
        np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2 * np.abs(want).max())


def test_padded_vocabulary_is_masked():
    """h = 0: all V = 5 logits are 0 though the tile has 8 columns: logp = -log 5, H = log 5 exactly-ish."""
    h = np.zeros((3, 4), np.float32)
    w = np.ones((4, 5), np.float32)
    logp, ent = fl.fused_logprob(h, w, np.array([0, 4, 2]), block_v=8, splits=1)
    np.testing.assert_allclose(np.asarray(logp), -np.log(5.0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ent), np.log(5.0), rtol=1e-6)


def test_large_logits_are_stable():
    """Logits of size ~1e3: the online softmax and u = sum e^(z-m)(z-m) stay finite and accurate."""
    m, d, v, kw = CASES["V37-tiled"]
    h, w, t = _data(m, d, v, seed=4)
    h = h * 300.0
    logp, ent = fl.fused_logprob(h, w, t, **kw)
    rl, re = fl.fused_logprob_reference(jnp.asarray(h), jnp.asarray(w), jnp.asarray(t))
    assert np.isfinite(np.asarray(logp)).all() and np.isfinite(np.asarray(ent)).all()
    np.testing.assert_allclose(np.asarray(logp), np.asarray(rl), rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(np.asarray(ent), np.asarray(re), rtol=1e-3, atol=1e-3)


_jit_kernel = jax.jit(
    fl.fused_logprob, static_argnames=("block_m", "block_v", "block_d", "splits", "chunk_v", "interpret", "return_entropy")
)


def test_jit_and_return_entropy_false():
    m, d, v, kw = CASES["V37-tiled"]
    h, w, t = _data(m, d, v, seed=5)
    eager = fl.fused_logprob(h, w, t, **kw)
    jitted = _jit_kernel(jnp.asarray(h), jnp.asarray(w), jnp.asarray(t), **kw)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    only = fl.fused_logprob(h, w, t, return_entropy=False, **kw)
    assert isinstance(only, jax.Array) and only.shape == (m,)
    np.testing.assert_allclose(np.asarray(only), np.asarray(eager[0]), rtol=1e-6, atol=1e-6)


def test_vmap_over_problems():
    h, w, t = _data(2 * 5, 16, 37, seed=6)
    hb, tb = h.reshape(2, 5, 16), t.reshape(2, 5)
    out = jax.vmap(lambda h, t: fl.fused_logprob(h, w, t, interpret=True))(hb, tb)
    ref = jax.vmap(lambda h, t: fl.fused_logprob_reference(h, jnp.asarray(w), t))(hb, tb)
    for a, b in zip(out, ref):
        assert a.shape == (2, 5)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=2e-5)


# ------------------------------------------------------------------------------------ GPU layout on CPU


def test_triton_plan_in_interpret_mode():
    """The Triton tiling (power-of-two tiles >= 16, V and d padded when no tile divides them, V splits)
    gives the same values and gradients."""
    h, w, t = _data(13, 20, 37, seed=7)
    p = fl.plan(13, 37, 20, target="triton")
    assert (p.block_m, p.block_v, p.block_d) == (16, 64, 32) and (p.v_pad, p.d_pad) == (64, 32)
    a, b = _cotangents(13)["both"]
    ker = jax.jit(jax.value_and_grad(_loss(lambda h, w, t: fl._core(h, w, t, p, True)), (0, 1)))
    (vk, gk), (vr, gr) = ker(h, w, t, a, b), _grad_fns("V37-tiled")[1](h, w, t, a, b)
    np.testing.assert_allclose(float(vk), float(vr), rtol=1e-5)
    for a, b in zip(gk, gr):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_lowers_to_triton():
    """Cross-lower forward and backward for CUDA (no GPU needed): every primitive has a Triton rule."""
    p = fl.plan(300, 1000, 96, target="triton")
    args = (
        jax.ShapeDtypeStruct((300, 96), jnp.bfloat16),
        jax.ShapeDtypeStruct((96, 1000), jnp.bfloat16),
        jax.ShapeDtypeStruct((300,), jnp.int32),
    )
    g = jax.jit(jax.grad(lambda h, w, t: sum(jnp.sum(o) for o in fl._core(h, w, t, p, False)), argnums=(0, 1)))
    text = g.trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    assert text.count("__gpu$xla.gpu.triton") == 2  # forward kernel + dz kernel


def test_plan_rules():
    p = fl.plan(8192, 151_936, 1536, target="triton")  # Qwen2.5-1.5B head: no padded copy of w
    assert (p.block_m, p.block_v, p.block_d) == (128, 128, 64)
    assert (p.m_pad, p.v_pad, p.d_pad, p.splits) == (8192, 151_936, 1536, 4)
    assert p.chunk_v == 16384 and p.tiles_per_split * p.splits >= p.v_tiles
    p = fl.plan(7, 37, 5, target="interpret")
    assert (p.block_m, p.block_v, p.block_d, p.splits, p.m_pad, p.v_pad) == (8, 40, 5, 1, 8, 40)
    assert fl.plan(7, 37, 5, splits=99).splits == 1  # clipped to the V tiles
    m = fl.plan(10, 300, 50, target="mosaic")
    assert m.block_v % 128 == 0 and m.block_d % 128 == 0 and m.block_m % 8 == 0
    assert p.workspace_bytes(backward=True) > p.workspace_bytes()


# ------------------------------------------------------------------------------------ bad input

_H = np.zeros((4, 3), np.float32)
_W = np.zeros((3, 6), np.float32)
_T = np.zeros(4, np.int32)


def _nan(a):
    a = a.copy()
    a.flat[1] = np.nan
    return a


BAD = [
    ("h 1-D", dict(h=np.zeros(4, np.float32)), r"h: expected a 2-D array"),
    ("h int", dict(h=np.zeros((4, 3), np.int32)), r"h: expected dtype kind in 'f'"),
    ("h NaN", dict(h=_nan(_H)), r"h: contains 1 non-finite"),
    ("h no rows", dict(h=np.zeros((0, 3), np.float32), t=np.zeros(0, np.int32)), r"h: expected at least 1 rows"),
    ("w d mismatch", dict(w=np.zeros((4, 6), np.float32)), r"w: expected shape \(3, \*\), got \(4, 6\)"),
    ("w inf", dict(w=np.full((3, 6), np.inf, np.float32)), r"w: contains 18 non-finite"),
    ("targets float", dict(t=np.zeros(4, np.float32)), r"targets: expected dtype kind in 'iu'"),
    ("targets shape", dict(t=np.zeros(5, np.int32)), r"targets: expected shape \(4\), got \(5,\)"),
    ("targets >= V", dict(t=np.array([0, 1, 6, 2])), r"targets: expected token ids in \[0, 6\).*got 6 at index 2"),
    ("targets < 0", dict(t=np.array([0, -1, 0, 0])), r"targets: expected token ids in \[0, 6\).*got -1"),
    ("block_v zero", dict(block_v=0), r"block_v: expected a value in \[1, inf\)"),
    ("block_m float", dict(block_m=8.0), r"block_m: expected a positive int"),
    ("splits zero", dict(splits=0), r"splits: expected a value in \[1, inf\)"),
    ("interpret str", dict(interpret="yes"), r"interpret: expected one of"),
    ("return_entropy str", dict(return_entropy="no"), r"return_entropy: expected one of"),
]


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_input(case):
    _, override, msg = case
    args = dict(h=_H, w=_W, t=_T) | override
    h, w, t = args.pop("h"), args.pop("w"), args.pop("t")
    with pytest.raises(ValueError, match=msg):
        fl.fused_logprob(h, w, t, **args)


def test_shape_checks_run_under_jit():
    with pytest.raises(ValueError, match=r"w: expected shape \(3, \*\)"):
        _jit_kernel(_H, np.zeros((4, 6), np.float32), _T)


# ------------------------------------------------------------------------------------ benchmark smoke test

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "fused_logprob.py"


def test_benchmark_cpu_sanity(capsys):
    spec = importlib.util.spec_from_file_location("fused_logprob_benchmark", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--cpu-sanity", "--modes", "fwd"])
    assert rows and all(r["max_err"] < 1e-3 and r["kernel_ms"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "timings mean nothing" in out and "ref/kern" in out
