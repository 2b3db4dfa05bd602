"""Tests for zoo.kernels.kmeans: the Pallas kernels (interpret mode on CPU) against the jnp references.

Interpret mode compiles a new program per shape, so shapes are few, tiny and reused.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.kernels import _common
from zoo.kernels import kmeans as km

# (N, K, D, block_n, block_k): odd sizes, several N and K tiles, K = 1, N = 1.
SHAPES = [
    (1, 1, 1, 256, 128),
    (7, 3, 5, 256, 128),
    (7, 3, 5, 2, 1),  # 4 row tiles, 3 K tiles of one centroid
    (300, 130, 33, 64, 32),  # 5 x 5 tiles, padding on N and K
]
SHAPE_IDS = [f"N{n}-K{k}-D{d}-bn{bn}-bk{bk}" for n, k, d, bn, bk in SHAPES]


def _random(n, k, d, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    c = rng.normal(size=(k, d)).astype(np.float32)
    mask = rng.random(n) < 0.7
    return x, c, mask


def _integer_ties(n=37, k=9, d=3, seed=1):
    """Integer-valued data with exact ties: duplicated centroids (across and within K tiles) and
    points on the bisector of two centroids."""
    rng = np.random.default_rng(seed)
    c = rng.integers(-3, 4, size=(k, d)).astype(np.float32)
    c[4] = c[1]  # duplicate: label must be 1, never 4
    c[5] = c[4]
    c[8] = c[0]
    x = rng.integers(-4, 5, size=(n, d)).astype(np.float32)
    x[:5] = c[[1, 4, 5, 0, 8]]  # points exactly on duplicated centroids (d2 = 0)
    x[5] = (c[2] + c[3]) / 2  # midpoint: equidistant from 2 and 3 (ties unless another wins)
    x[6] = c[2] + 0.5 * (c[3] - c[2])
    mask = rng.random(n) < 0.8
    mask[:6] = True
    return x, c, mask


def _assert_close(out, ref, rtol=1e-5):
    labels, d2 = out[:2]
    np.testing.assert_array_equal(np.asarray(labels), np.asarray(ref[0]))
    np.testing.assert_allclose(np.asarray(d2), np.asarray(ref[1]), rtol=rtol, atol=1e-6)
    if len(out) == 4:
        scale = max(1.0, float(np.max(np.abs(np.asarray(ref[2])))))
        np.testing.assert_allclose(np.asarray(out[2]), np.asarray(ref[2]), rtol=rtol, atol=rtol * scale)
        np.testing.assert_array_equal(np.asarray(out[3]), np.asarray(ref[3]))


def _assert_exact(out, ref):
    for name, a, b in zip(("labels", "d2", "sums", "counts"), out, ref):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


# ------------------------------------------------------------------------------------ agreement


@pytest.mark.parametrize("masked", [False, True], ids=["all", "masked"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_matches_reference_random(shape, masked):
    n, k, d, bn, bk = shape
    x, c, mask = _random(n, k, d)
    m = mask if masked else None
    acc = km.assign_accumulate(x, c, m, block_n=bn, block_k=bk)
    _assert_close(acc, km.assign_accumulate_reference(x, c, m))
    labels, d2 = km.assign(x, c, m, block_n=bn, block_k=bk)
    ref = km.assign_reference(x, c, m)
    _assert_close((labels, d2), ref)
    assert labels.dtype == jnp.int32 and d2.dtype == jnp.float32
    assert labels.shape == (n,) and d2.shape == (n,)
    if masked:
        assert np.all(np.asarray(labels)[~mask] == -1) and np.all(np.asarray(d2)[~mask] == 0.0)
        assert float(acc[3].sum()) == int(mask.sum())


@pytest.mark.parametrize("blocks", [(256, 128), (8, 2), (8, 1)], ids=["one-tile", "k-tiles-2", "k-tiles-1"])
def test_integer_ties_exact(blocks):
    """Integer data: every operation is exact, so kernel and reference must agree bit for bit, and
    ties (within a K tile and across K tiles) must go to the lowest index."""
    x, c, mask = _integer_ties()
    bn, bk = blocks
    for m in (None, mask):
        out = km.assign_accumulate(x, c, m, block_n=bn, block_k=bk)
        _assert_exact(out, km.assign_accumulate_reference(x, c, m))
    labels = np.asarray(out[0])
    np.testing.assert_array_equal(labels[:5], [1, 1, 1, 0, 0])  # duplicates -> lowest index
    assert not np.isin(labels, [4, 5, 8]).any()  # a duplicate of a lower centroid never wins


def test_accumulate_has_float32_accuracy():
    """The fused sums keep full f32 accuracy (the bf16 three-way split of x is exact): error against
    a float64 segment sum is a few ulps of sum |x| per cluster, like XLA's own f32 segment sum."""
    x, c, _ = _random(300, 130, 33)
    labels, _, sums, _ = km.assign_accumulate(x, c, block_n=64, block_k=32)
    labels = np.asarray(labels)
    exact = np.zeros(c.shape)
    size = np.zeros(c.shape)
    np.add.at(exact, labels, x.astype(np.float64))
    np.add.at(size, labels, np.abs(x.astype(np.float64)))
    err = np.abs(np.asarray(sums, np.float64) - exact) / np.maximum(size, 1e-30)
    assert err.max() <= 4 * np.finfo(np.float32).eps


def test_padded_centroids_never_win():
    """K padded up to the K tile: padded centroids (zero rows) would be nearest to x ~ 0 if they
    could win; x = 0 and a single far centroid must still give label 0."""
    x = np.zeros((5, 2), np.float32)
    c = np.full((1, 2), 100.0, np.float32)
    labels, d2, sums, counts = km.assign_accumulate(x, c, block_k=8)
    np.testing.assert_array_equal(np.asarray(labels), 0)
    np.testing.assert_array_equal(np.asarray(d2), 20000.0)
    np.testing.assert_array_equal(np.asarray(counts), [5.0])


def test_clamps_negative_distance_to_zero():
    """Cancellation in ||x||^2 - 2 x.c + ||c||^2 goes below 0 for points on top of large centroids;
    the min is clamped at 0 like the reference, and agrees with it to the cancellation error."""
    rng = np.random.default_rng(3)
    c = (rng.normal(size=(4, 8)) * 1e3).astype(np.float32)
    x = c[np.arange(40) % 4] + np.float32(1e-4) * rng.normal(size=(40, 8)).astype(np.float32)
    xx = np.sum(x * x, axis=1)
    raw = np.min(xx[:, None] - 2.0 * (x @ c.T) + np.sum(c * c, axis=1)[None, :], axis=1)
    assert (raw < 0).any()  # the case is exercised
    labels, d2 = km.assign(x, c)
    ref = km.assign_reference(x, c)
    np.testing.assert_array_equal(np.asarray(labels), np.asarray(ref[0]))
    assert np.all(np.asarray(d2) >= 0.0)
    atol = 8 * np.finfo(np.float32).eps * xx.max()  # a few ulps of ||x||^2
    np.testing.assert_allclose(np.asarray(d2), np.asarray(ref[1]), rtol=0, atol=atol)


@settings(max_examples=5, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 40),
    k=st.integers(1, 12),
    d=st.integers(1, 4),
    bn=st.sampled_from([8, 16]),
    bk=st.sampled_from([1, 4, 8]),
    seed=st.integers(0, 2**16),
)
def test_property_integer_data_exact(n, k, d, bn, bk, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=(n, d)).astype(np.float32)
    c = rng.integers(-3, 4, size=(k, d)).astype(np.float32)
    mask = rng.random(n) < 0.8
    out = km.assign_accumulate(x, c, mask, block_n=bn, block_k=bk)
    _assert_exact(out, km.assign_accumulate_reference(x, c, mask))


def test_deterministic_bitwise():
    x, c, mask = _random(300, 130, 33, seed=5)
    a = km.assign_accumulate(x, c, mask, block_n=64, block_k=32)
    b = km.assign_accumulate(x, c, mask, block_n=64, block_k=32)
    for u, v in zip(a, b):
        assert np.asarray(u).tobytes() == np.asarray(v).tobytes()


# ------------------------------------------------------------------------------------ jit / vmap / dtypes

_jit_assign = jax.jit(km.assign, static_argnames=("block_n", "block_k", "interpret"))
_jit_accumulate = jax.jit(km.assign_accumulate, static_argnames=("block_n", "block_k", "interpret"))


def test_jit_matches_eager():
    x, c, mask = _random(7, 3, 5)
    eager = km.assign_accumulate(x, c, mask, block_n=2, block_k=1)
    jitted = _jit_accumulate(jnp.asarray(x), jnp.asarray(c), jnp.asarray(mask), block_n=2, block_k=1)
    _assert_exact(jitted, eager)
    labels, d2 = _jit_assign(x, c, block_n=2, block_k=1)
    _assert_exact((labels, d2), km.assign(x, c, block_n=2, block_k=1))


def test_vmap_over_problems():
    rng = np.random.default_rng(7)
    xb = rng.integers(-3, 4, size=(3, 11, 2)).astype(np.float32)
    cb = rng.integers(-3, 4, size=(3, 4, 2)).astype(np.float32)
    mb = rng.random((3, 11)) < 0.7
    f = jax.vmap(functools.partial(km.assign_accumulate, block_n=8, block_k=2, interpret=True))
    out = f(xb, cb, mb)
    assert out[0].shape == (3, 11) and out[2].shape == (3, 4, 2) and out[3].shape == (3, 4)
    _assert_exact(out, jax.vmap(km.assign_accumulate_reference)(xb, cb, mb))


def test_float64_inputs_compute_in_float64():
    x, c, _ = _random(7, 3, 5)
    with jax.enable_x64(True):
        x64, c64 = jnp.asarray(x, jnp.float64), jnp.asarray(c, jnp.float64)
        labels, d2, sums, _ = km.assign_accumulate(x64, c64)
        ref = km.assign_accumulate_reference(x64, c64)
        assert d2.dtype == jnp.float64 and sums.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(labels), np.asarray(ref[0]))
        np.testing.assert_allclose(np.asarray(d2), np.asarray(ref[1]), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(sums), np.asarray(ref[2]), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------ GPU layout on CPU


def test_triton_layout_in_interpret_mode():
    """The Triton plan (power-of-two tiles >= 16, D zero-padded to 16) gives the same answer."""
    x, c, mask = _integer_ties(n=21)
    out = km._fused(x, c, mask, block_n=256, block_k=128, interpret=True, target="triton", accumulate=True)
    _assert_exact(out, km.assign_accumulate_reference(x, c, mask))


@pytest.mark.parametrize("accumulate", [False, True])
def test_lowers_to_triton(accumulate):
    """Cross-lower for CUDA (no GPU needed): every primitive in the kernel body has a Triton rule and
    every in-kernel tensor has power-of-two dims."""
    x = jax.ShapeDtypeStruct((1000, 5), jnp.float32)
    c = jax.ShapeDtypeStruct((3, 5), jnp.float32)
    mask = jax.ShapeDtypeStruct((1000,), jnp.bool_)
    f = jax.jit(
        functools.partial(
            km._fused, block_n=256, block_k=128, interpret=False, target="triton", accumulate=accumulate
        )
    )
    text = f.trace(x, c, mask).lower(lowering_platforms=("cuda",)).as_text()
    assert "__gpu$xla.gpu.triton" in text


def test_plan_rules():
    p = km.plan(1000, 3, 5, target="triton")
    assert (p.block_n, p.block_k, p.d_pad) == (256, 16, 16) and p.n_pad == 1024 and p.k_pad == 16
    p = km.plan(1000, 1024, 64, block_n=200, block_k=100, target="triton")
    assert (p.block_n, p.block_k, p.d_pad) == (128, 64, 64)
    p = km.plan(7, 3, 5, target="interpret")
    assert (p.block_n, p.block_k, p.n_pad, p.k_pad, p.d_pad) == (8, 8, 8, 8, 5)
    p = km.plan(300, 130, 33, block_n=64, block_k=32)
    assert (p.grid, p.k_tiles) == (5, 5)
    p = km.plan(10, 3, 5, target="mosaic")
    assert p.block_k % 128 == 0 and p.d_pad % 128 == 0 and p.block_n % 8 == 0
    assert p.workspace_bytes(10, 3, 5, accumulate=True) > p.workspace_bytes(10, 3, 5, accumulate=False)


def test_tree_sum_fixed_order():
    p = jnp.arange(7 * 3, dtype=jnp.float32).reshape(7, 3)
    np.testing.assert_array_equal(np.asarray(_common.tree_sum(p)), np.asarray(p).sum(0))
    # pairwise order: ((a0 + a2) + (a1 + a3)) -- differs from the left-to-right sum here
    q = jnp.asarray([1.0, 1e8, -1e8, 1.0], jnp.float32)[:, None]
    assert float(_common.tree_sum(q)[0]) == 0.0  # (1 + -1e8) + (1e8 + 1) in f32
    assert _common.next_pow2(5) == 8 and _common.prev_pow2(5) == 4 and _common.round_up(5, 4) == 8


# ------------------------------------------------------------------------------------ bad input

_X = np.zeros((4, 3), np.float32)
_C = np.zeros((2, 3), np.float32)


def _nan(a, idx):
    a = a.copy()
    a[idx] = np.nan
    return a


BAD = [
    ("x 1-D", dict(x=np.zeros(4, np.float32)), r"x: expected a 2-D array"),
    ("x no rows", dict(x=np.zeros((0, 3), np.float32)), r"x: expected at least 1 rows"),
    ("x no columns", dict(x=np.zeros((4, 0), np.float32), c=np.zeros((2, 0), np.float32)), r"x.shape\[1\] \(D\)"),
    ("x int", dict(x=np.zeros((4, 3), np.int32)), r"x: expected dtype kind in 'f'"),
    ("x NaN", dict(x=_nan(_X, (2, 1))), r"x: contains 1 non-finite.*\(2, 1\)"),
    ("c 1-D", dict(c=np.zeros(3, np.float32)), r"c: expected a 2-D array"),
    ("c no rows", dict(c=np.zeros((0, 3), np.float32)), r"c: expected at least 1 rows"),
    ("c D mismatch", dict(c=np.zeros((2, 4), np.float32)), r"c: expected shape \(\*, 3\), got \(2, 4\)"),
    ("c inf", dict(c=np.full((2, 3), np.inf, np.float32)), r"c: contains 6 non-finite"),
    ("mask shape", dict(mask=np.ones(5, bool)), r"mask: expected shape \(4\)"),
    ("mask dtype", dict(mask=np.ones(4, np.float32)), r"mask: expected dtype kind in 'b'"),
    ("block_n zero", dict(block_n=0), r"block_n: expected a value in \[1, inf\)"),
    ("block_k negative", dict(block_k=-8), r"block_k: expected a value in \[1, inf\)"),
    ("block_n float", dict(block_n=8.0), r"block_n: expected a positive int"),
    ("interpret str", dict(interpret="yes"), r"interpret: expected one of"),
]


@pytest.mark.parametrize("fn", [km.assign, km.assign_accumulate], ids=["assign", "assign_accumulate"])
@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_input(fn, case):
    _, override, msg = case
    args = dict(x=_X, c=_C, mask=None, block_n=8, block_k=8, interpret=None) | override
    x, c, mask = args.pop("x"), args.pop("c"), args.pop("mask")
    with pytest.raises(ValueError, match=msg):
        fn(x, c, mask, **args)


def test_accumulate_rejects_large_k():
    c = np.zeros((km.MAX_ACCUMULATE_K + 1, 3), np.float32)
    with pytest.raises(ValueError, match=r"c.shape\[0\] \(K\) for assign_accumulate: expected a value in \[1, 1024\]"):
        km.assign_accumulate(_X, c)


def test_shape_checks_run_under_jit():
    with pytest.raises(ValueError, match=r"c: expected shape \(\*, 3\)"):
        _jit_assign(_X, np.zeros((2, 4), np.float32))
    # value checks are skipped for tracers: NaN passes through jit without a host sync
    labels, _ = _jit_assign(_nan(_X, (0, 0)), _C, block_n=8, block_k=8)
    assert labels.shape == (4,)


def test_plan_rejects_unknown_target():
    with pytest.raises(ValueError, match=r"target: expected one of"):
        km.plan(4, 2, 3, target="cuda")


def test_accepts_array_likes():
    labels, d2 = km.assign([[0.0, 1.0], [2.0, 2.0]], [[0.0, 0.0], [2.0, 2.0]], [True, False])
    np.testing.assert_array_equal(np.asarray(labels), [0, -1])
    np.testing.assert_array_equal(np.asarray(d2), [1.0, 0.0])
