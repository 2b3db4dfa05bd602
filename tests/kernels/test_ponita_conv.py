"""Tests for zoo.kernels.ponita_conv: the fused separable group convolution (Pallas, interpret mode
on CPU) against the unfused jnp reference, values and first derivatives.

Interpret mode compiles one program per shape and block setting, so the problems are few and tiny
and every compiled function is built once at module level.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.kernels import ponita_conv as pc


def _graph(n, o, c, bd, e, *, seed=0, masked=True, zero_in=2):
    """Random ragged graph: unsorted edges, the last ``zero_in`` nodes receive nothing, ~25% masked."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, o, c)).astype(np.float32)
    basis = rng.normal(size=(e, o, bd)).astype(np.float32)
    a = (rng.normal(size=(bd, c)) / np.sqrt(bd)).astype(np.float32)
    senders = rng.integers(0, n, e).astype(np.int32)
    receivers = (rng.integers(0, n - zero_in, e) ** 2 % (n - zero_in)).astype(np.int32)  # ragged degrees
    mask = rng.random(e) < 0.75 if masked else None
    fiber = rng.normal(size=(o, o, c)).astype(np.float32)
    bias = rng.normal(size=(c,)).astype(np.float32)
    return dict(x=x, basis=basis, A=a, senders=senders, receivers=receivers, edge_mask=mask, fiber=fiber, bias=bias)


def _args(g, *, use_a=True, fiber=True, bias=True):
    return (
        g["x"],
        g["basis"] if use_a else np.einsum("eob,bc->eoc", g["basis"], g["A"]),
        g["A"] if use_a else None,
        g["senders"],
        g["receivers"],
        g["edge_mask"],
        g["fiber"] if fiber else None,
        g["bias"] if bias else None,
    )


def _close(a, b, rtol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


# Cases: (name, graph kwargs, args kwargs, block sizes). Odd N/E/O/C, several node blocks, edge
# chunks and channel tiles; O = 1 and C = 1; O = 20 with C = 64 and no mask; the A = None adapter form.
CASES = {
    "full": (dict(n=9, o=3, c=5, bd=4, e=29), dict(), dict(block_nodes=4, block_edges=3, block_channels=2)),
    "o1-c1": (dict(n=6, o=1, c=1, bd=3, e=11, seed=1), dict(fiber=False), dict(block_nodes=2, block_edges=4)),
    "o20-c64": (dict(n=5, o=20, c=64, bd=8, e=13, seed=2, masked=False), dict(bias=False), dict(block_edges=8)),
    "kernel-given": (dict(n=7, o=4, c=3, bd=2, e=17, seed=3), dict(use_a=False), dict(block_nodes=3, block_edges=5)),
}
GRAPHS = {k: _graph(**v[0]) for k, v in CASES.items()}


@functools.lru_cache(maxsize=None)
def _jitted(name):
    return jax.jit(functools.partial(pc.fused_separable_conv, **CASES[name][2]))


@pytest.mark.parametrize("name", list(CASES))
def test_forward_matches_reference(name):
    g = GRAPHS[name]
    args = _args(g, **CASES[name][1])
    out = _jitted(name)(*args)
    ref = pc.fused_separable_conv_reference(*args)
    assert out.shape == g["x"].shape and out.dtype == jnp.float32
    _close(out, ref)


def test_zero_in_degree_and_masked_edges():
    """Nodes without (unmasked) incoming edges get the bias only; masking an edge removes exactly its
    message (the result equals the reference on the graph without that edge)."""
    g = GRAPHS["full"]
    args = _args(g)
    out = np.asarray(_jitted("full")(*args))
    x, basis, a, s, r, m, f, b = args
    alive = np.zeros(x.shape[0], bool)
    alive[r[m]] = True
    assert (~alive).sum() >= 2
    np.testing.assert_allclose(out[~alive], np.broadcast_to(b, out[~alive].shape), rtol=1e-6)
    keep = np.flatnonzero(m)
    dropped = pc.fused_separable_conv_reference(x, basis[keep], a, s[keep], r[keep], None, f, b)
    _close(out, dropped)


def _loss(fn, x, basis, a, fiber, bias, *, graph):
    h = fn(x, basis, a, graph["senders"], graph["receivers"], graph["edge_mask"], fiber, bias)
    return jnp.sum(jnp.sin(h) * graph["w"])


def _grads(name, fn, argnums):
    g = dict(GRAPHS[name])
    g["w"] = np.random.default_rng(9).normal(size=g["x"].shape).astype(np.float32)
    x, basis, a, _, _, _, fiber, bias = _args(g, **CASES[name][1])
    return jax.jit(jax.grad(functools.partial(_loss, fn, graph=g), argnums=argnums))(x, basis, a, fiber, bias)


@pytest.mark.parametrize(("name", "argnums"), [("full", (0, 1, 2, 3, 4)), ("kernel-given", (0, 1, 3, 4))])
def test_gradients_match_reference(name, argnums):
    """custom_vjp cotangents for x, basis (or k_spatial), A, fiber_kernel, bias == jax.grad of the reference."""
    kern = _grads(name, functools.partial(pc.fused_separable_conv, **CASES[name][2]), argnums)
    ref = _grads(name, pc.fused_separable_conv_reference, argnums)
    for i, gk, gr in zip(argnums, kern, ref):
        assert gk.shape == gr.shape, i
        assert float(jnp.abs(gr).max()) > 0, i  # non-trivial
        _close(gk, gr, rtol=2e-5)
    if name == "full":  # masked edges get exactly zero basis cotangent
        m = GRAPHS[name]["edge_mask"]
        assert float(jnp.abs(kern[1][~m]).max()) == 0.0


def test_eager_equals_jit_and_adapter():
    g = GRAPHS["kernel-given"]
    x, k, _, s, r, m, f, b = _args(g, use_a=False)
    eager = pc.separable_conv(x, k, f, s, r, m, bias=b, **CASES["kernel-given"][2])
    _close(eager, _jitted("kernel-given")(x, k, None, s, r, m, f, b), rtol=1e-7)


def test_vmap_over_graphs():
    g = GRAPHS["o1-c1"]
    x, basis, a, s, r, m, _, _ = _args(g, fiber=False, bias=False)
    xb = np.stack([x, -2 * x])
    fn = functools.partial(pc.fused_separable_conv, **CASES["o1-c1"][2])
    out = jax.jit(jax.vmap(lambda xx: fn(xx, basis, a, s, r, m)))(xb)
    ref = jax.vmap(lambda xx: pc.fused_separable_conv_reference(xx, basis, a, s, r, m))(xb)
    _close(out, ref)


def test_no_edges_gives_bias():
    x = np.ones((3, 2, 4), np.float32)
    out = pc.fused_separable_conv(
        x, np.zeros((0, 2, 5), np.float32), np.ones((5, 4), np.float32), np.zeros(0, np.int32),
        np.zeros(0, np.int32), None, np.ones((2, 2, 4), np.float32), np.arange(4, dtype=np.float32),
    )
    np.testing.assert_array_equal(np.asarray(out), np.broadcast_to(np.arange(4.0), (3, 2, 4)))


def test_second_order_raises_clear_error():
    g = GRAPHS["o1-c1"]
    x, basis, a, s, r, _, _, _ = _args(g, fiber=False, bias=False)

    def f(xx):
        return jnp.sum(pc.fused_separable_conv(xx, basis, a, s, r) ** 2)

    with pytest.raises(NotImplementedError, match="second-order"):
        jax.grad(lambda xx: jnp.sum(jax.grad(f)(xx) ** 2))(x)


# ------------------------------------------------------------------------------------ GPU layout on CPU


def test_triton_layout_in_interpret_mode():
    """The Triton plan (power-of-two tiles >= 16, C and Bd zero-padded, Bd contracted in chunks, the
    dbasis kernel's clamped last row tile) gives the reference values and gradients."""
    g = _graph(n=21, o=3, c=20, bd=24, e=37, seed=4)
    p = pc.plan(21, 20, 24, target="triton")
    assert (p.block_nodes, p.block_edges, p.c_pad, p.bd_pad, p.block_k) == (16, 32, 32, 32, 32)
    x, basis, a, s, r, m, f, b = _args(g)
    w = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)

    def loss(fn, xx, bb, aa, ff):
        return jnp.sum(jnp.sin(fn(xx, bb, aa, s, r, m, ff, b)) * w)

    def kern(xx, bb, aa, ss, rr, mm, ff, bias):  # the internal argument order: arrays, then edges
        return pc._fused(xx, bb, aa, ff, bias, ss, rr, mm, p, True)

    both = jax.jit(
        lambda *t: (jax.value_and_grad(functools.partial(loss, kern), argnums=(0, 1, 2, 3))(*t),
                    jax.value_and_grad(functools.partial(loss, pc.fused_separable_conv_reference),
                                       argnums=(0, 1, 2, 3))(*t))
    )
    (vk, gk), (vr, gr) = both(x, basis, a, f)
    _close(vk, vr)
    for u, v in zip(gk, gr):
        _close(u, v, rtol=2e-5)


def test_lowers_to_triton():
    """Cross-lower forward and backward for CUDA at the n-body shapes (no GPU needed): every primitive
    in both kernel bodies has a Triton rule and every in-kernel tensor has power-of-two size."""
    n, o, c, bd, e = 500, 16, 128, 256, 2500
    p = pc.plan(n, c, bd, target="triton")
    S = jax.ShapeDtypeStruct
    f32 = jnp.float32
    args = (S((n, o, c), f32), S((e, o, bd), f32), S((bd, c), f32), S((o, o, c), f32), S((c,), f32),
            S((e,), jnp.int32), S((e,), jnp.int32), S((e,), jnp.bool_))

    def loss(*t):
        return jnp.sum(pc._fused(*t, p, False) ** 2)

    text = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4))).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    assert text.count("__gpu$xla.gpu.triton") == 3  # forward, dx, dbasis/dA


def test_plan_rules():
    p = pc.plan(500, 128, 256, target="triton")  # defaults sized to fit an H200's shared memory
    assert (p.block_nodes, p.block_edges, p.block_channels, p.n_pad, p.node_blocks, p.channel_tiles) == (
        16, 32, 64, 512, 32, 2)
    assert p.block_basis == 64
    p = pc.plan(5, 3, 7, block_nodes=100, block_edges=10, block_channels=200, target="triton")
    assert (p.block_nodes, p.block_edges, p.block_channels, p.c_pad, p.bd_pad) == (16, 16, 16, 16, 16)
    p = pc.plan(9, 6, 4, block_nodes=4, block_channels=4)
    assert (p.block_nodes, p.block_channels, p.n_pad, p.block_k) == (4, 3, 12, 2)
    p = pc.plan(10, 3, 5, target="mosaic")
    assert p.c_pad % 128 == 0 and p.block_nodes % 8 == 0


# ------------------------------------------------------------------------------------ bad input


def _ok():
    return _args(GRAPHS["full"])


@pytest.mark.parametrize(
    ("i", "value", "match"),
    [
        (0, np.zeros((0, 3, 5), np.float32), "empty graph"),
        (0, np.zeros((9, 5), np.float32), "x: expected a 3-D"),
        (1, np.zeros((29, 2, 4), np.float32), r"basis: expected shape \(\*, 3, \*\)"),
        (2, np.zeros((4, 6), np.float32), r"A: expected shape \(4, 5\)"),
        (3, np.full(29, 9, np.int32), r"senders: node indices must lie in \[0, 9\)"),
        (4, np.zeros(28, np.int32), r"receivers: expected shape \(29\)"),
        (4, np.zeros(29, np.float32), "receivers: expected dtype kind"),
        (5, np.ones(29, np.int32), "edge_mask: expected dtype kind"),
        (6, np.zeros((3, 2, 5), np.float32), "fiber_kernel: expected shape"),
        (7, np.zeros(4, np.float32), "bias: expected shape"),
    ],
)
def test_bad_input(i, value, match):
    args = list(_ok())
    args[i] = value
    with pytest.raises(ValueError, match=match):
        pc.fused_separable_conv(*args)


def test_bad_values_and_options():
    args = list(_ok())
    args[0] = args[0].copy()
    args[0][1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="x: contains 1 non-finite"):
        pc.fused_separable_conv(*args)
    with pytest.raises(ValueError, match="block_edges"):
        pc.fused_separable_conv(*_ok(), block_edges=0)
    with pytest.raises(ValueError, match="interpret"):
        pc.fused_separable_conv(*_ok(), interpret="yes")
    with pytest.raises(ValueError, match=r"basis: expected shape \(\*, 3, 5\)"):
        pc.separable_conv(_ok()[0], _ok()[1], None, _ok()[3], _ok()[4])
