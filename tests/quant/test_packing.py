"""zoo.quant.packing: int4/int8 packing, QuantizedLinear, plans."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.quant.core import QuantSpec, compute_qparams, fake_quant, rtn
from zoo.quant.gptq import gptq_quantize
from zoo.quant.packing import (
    QuantizedLinear,
    apply_plan,
    dequantize_linear,
    dequantize_params,
    from_autogptq,
    from_gptq,
    make_plan,
    pack_int4,
    quantized_linear,
    unpack_int4,
)

K, N = 32, 16


@pytest.fixture(scope="module")
def w():
    return jax.random.normal(jax.random.key(0), (K, N))


@pytest.mark.parametrize("container, per, dtype", [("u32", 8, np.uint32), ("u8", 2, np.uint8)])
def test_roundtrip_bit_exact(container, per, dtype):
    q = np.random.default_rng(0).integers(0, 16, (24, 5)).astype(np.uint8)
    q[0, :] = 15  # all-ones nibbles in the top bits
    p = pack_int4(q, container=container)
    assert p.dtype == dtype and p.shape == (24 // per, 5)
    back = unpack_int4(p)
    assert back.dtype == jnp.uint8
    np.testing.assert_array_equal(np.asarray(back), q)


def test_exact_word_values():
    q = np.tile(np.arange(8, dtype=np.uint8)[:, None], (1, 2))
    q[:, 1] = 15 - q[:, 1]
    p = np.asarray(pack_int4(q, container="u32"))
    assert p[0, 0] == 0x76543210 and p[0, 1] == 0x89ABCDEF  # row 8r+j at bits [4j, 4j+4)
    p8 = np.asarray(pack_int4(q, container="u8"))
    np.testing.assert_array_equal(p8[:, 0], [0x10, 0x32, 0x54, 0x76])  # row 2r+j at bits 4j
    np.testing.assert_array_equal(p8[:, 1], [0xEF, 0xCD, 0xAB, 0x89])


def test_packing_bad_input():
    with pytest.raises(ValueError, match=r"q: expected codes in \[0, 15\]"):
        pack_int4(np.full((8, 2), 16, np.uint8))
    with pytest.raises(ValueError, match="q: K=12 rows must be a multiple of 8"):
        pack_int4(np.zeros((12, 2), np.uint8))
    with pytest.raises(ValueError, match="container"):
        pack_int4(np.zeros((8, 2), np.uint8), container="u16")
    with pytest.raises(ValueError, match="packed: expected dtype"):
        unpack_int4(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="q: expected dtype kind"):
        pack_int4(np.zeros((8, 2), np.float32))


SPECS = [
    QuantSpec(bits=4, granularity="oc", group_size=8),
    QuantSpec(bits=3, granularity="ic", group_size=4),
    QuantSpec(bits=8, granularity="oc"),
    QuantSpec(bits=4, granularity="tensor", symmetric=True),
    QuantSpec(bits=6, granularity="ic", symmetric=True),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.granularity}-g{s.group_size}-b{s.bits}-sym{int(s.symmetric)}")
def test_quantized_linear_matches_fake_quant(w, spec):
    codes, qp = rtn(w, spec)
    b = jnp.linspace(-1, 1, N)
    ql = quantized_linear(codes, qp, spec, bias=b)
    assert ql.bits == (4 if spec.bits <= 4 else 8) and ql.shape == (K, N)
    assert ql.zeros.dtype == jnp.uint8
    fq = fake_quant(w, qp, spec)
    np.testing.assert_allclose(np.asarray(dequantize_linear(ql)), np.asarray(fq), rtol=1e-6, atol=1e-7)
    x = jax.random.normal(jax.random.key(1), (3, K))
    np.testing.assert_allclose(np.asarray(ql.apply(x)), np.asarray(x @ fq + b), rtol=1e-5, atol=1e-5)


def test_quantized_linear_is_a_jittable_pytree(w):
    spec = SPECS[0]
    ql = quantized_linear(*rtn(w, spec), spec, container="u8", scale_dtype=jnp.bfloat16)
    assert ql.qweight.shape == (K // 2, N) and ql.scales.dtype == jnp.bfloat16
    leaves = jax.tree.leaves(ql)
    assert len(leaves) == 3  # qweight, scales, zeros (None fields and static bits/axis are not leaves)
    x = jnp.ones((2, K))
    np.testing.assert_allclose(np.asarray(jax.jit(lambda q, v: q.apply(v))(ql, x)), np.asarray(ql.apply(x)), rtol=1e-6)


def test_act_order_gptq_is_stored_permuted():
    # the static config of tests/quant/test_gptq.py::test_codes_in_range_8bit_and_jit (shared compile)
    k, n = 64, 32
    rng = np.random.default_rng(3)
    X = rng.normal(size=(128, k)) * rng.uniform(0.1, 3.0, k)  # distinct diag(H): a real permutation
    w = jnp.asarray(rng.normal(size=(k, n)), jnp.float32)
    H = jnp.asarray(2 * X.T @ X / 128, jnp.float32)
    spec = QuantSpec(bits=8, granularity="oc", group_size=32)
    res = gptq_quantize(w, H, spec, act_order=True)
    assert not np.array_equal(np.asarray(res.g_idx), np.arange(k) // 32)  # groups not contiguous
    ql = from_gptq(res, spec)
    assert ql.perm is not None and ql.g_idx is None and ql.bits == 8
    np.testing.assert_allclose(np.asarray(dequantize_linear(ql)), np.asarray(res.w_hat), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        np.asarray(dequantize_linear(ql, stored=True)), np.asarray(res.w_hat)[np.asarray(ql.perm)], rtol=1e-6, atol=1e-7
    )
    x = jnp.asarray(rng.normal(size=(5, k)), jnp.float32)
    np.testing.assert_allclose(np.asarray(ql.apply(x)), np.asarray(x @ res.w_hat), rtol=1e-5, atol=1e-5)


def test_from_autogptq_v1(w):
    spec = QuantSpec(bits=4, granularity="oc", group_size=8)
    codes, qp = rtn(w, spec)
    z = np.asarray(qp.zero, np.int64)  # [4, N]
    # AutoGPTQ v1 buffers: qweight i32[K/8, N]; qzeros i32[G, N/8] holding z - 1 packed along N
    qweight = np.asarray(pack_int4(np.asarray(codes))).view(np.int32)
    zm1 = (z - 1) & 0xF
    qzeros = np.zeros((z.shape[0], N // 8), np.uint32)
    for j in range(8):
        qzeros |= zm1[:, j::8].astype(np.uint32) << np.uint32(4 * j)
    ql = from_autogptq(qweight, qzeros.view(np.int32), np.asarray(qp.scale), np.arange(K) // 8)
    np.testing.assert_array_equal(np.asarray(ql.zeros), z)
    np.testing.assert_allclose(np.asarray(dequantize_linear(ql)), np.asarray(fake_quant(w, qp, spec)), rtol=1e-6, atol=1e-7)


def test_apply_plan_on_flax_params():
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(N, name="head")(nn.relu(nn.Dense(K, name="body")(x)))

    net = Net()
    x = jax.random.normal(jax.random.key(2), (4, 8))
    params = net.init(jax.random.key(3), x)
    spec = QuantSpec(bits=4, granularity="oc", group_size=4)
    plan = make_plan({"head": None}, default=spec)
    fq = apply_plan(params, plan)
    body, head = params["params"]["body"], params["params"]["head"]
    np.testing.assert_array_equal(np.asarray(fq["params"]["head"]["kernel"]), np.asarray(head["kernel"]))
    np.testing.assert_array_equal(np.asarray(fq["params"]["body"]["bias"]), np.asarray(body["bias"]))
    want = fake_quant(body["kernel"], compute_qparams(body["kernel"], spec), spec)
    np.testing.assert_array_equal(np.asarray(fq["params"]["body"]["kernel"]), np.asarray(want))
    assert net.apply(fq, x).shape == (4, N)
    packed = apply_plan(params, plan, mode="packed")
    assert isinstance(packed["params"]["body"]["kernel"], QuantizedLinear)
    back = dequantize_params(packed)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(fq)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="group_size"):
        apply_plan(params, QuantSpec(bits=4, granularity="oc", group_size=3))
    with pytest.raises(ValueError, match="mode"):
        apply_plan(params, spec, mode="int")
    with pytest.raises(ValueError, match="params/body/kernel: .*non-finite"):
        apply_plan(jax.tree.map(lambda a: a.at[0].set(jnp.nan), params), spec)
