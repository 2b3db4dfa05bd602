"""The packed layout of zoo.quant (QuantizedLinear) is the layout zoo.kernels.dequant_matmul reads."""

import jax.numpy as jnp
import numpy as np
import pytest

from zoo.quant import core, packing

RNG = np.random.default_rng(0)
W = jnp.asarray(RNG.normal(size=(64, 48)), jnp.float32)
X = jnp.asarray(RNG.normal(size=(2, 3, 64)), jnp.float32)


@pytest.mark.parametrize(
    "bits,granularity,group_size,symmetric",
    [(4, "oc", 16, False), (4, "oc", -1, False), (3, "oc", 32, True), (8, "oc", -1, False), (4, "ic", 16, False)],
)
def test_quantized_linear_apply_with_kernel_matches_dequantized_matmul(bits, granularity, group_size, symmetric):
    spec = core.QuantSpec(bits=bits, granularity=granularity, group_size=group_size, symmetric=symmetric)
    qp = core.compute_qparams(W, spec)
    ql = packing.quantized_linear(core.quantize(W, qp, spec), qp, spec, bias=jnp.arange(48.0))
    want = X @ packing.dequantize_linear(ql) + jnp.arange(48.0)
    got = ql.apply(X, use_kernel=True)
    assert got.shape == (2, 3, 48)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(ql.apply(X), want, atol=2e-5, rtol=1e-5)
