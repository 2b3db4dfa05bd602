"""zoo.quant under float64 (``jax.enable_x64``, formerly ``jax.experimental.enable_x64``): scales, fake-quantized and dequantized values,
GPTQ and FlexRound's rounding stay float64 (codes stay integer) and match float64 numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.quant import _reference as ref
from zoo.quant import adadim as A
from zoo.quant import flexround as F
from zoo.quant.core import QuantSpec, compute_qparams, dequantize, expand, fake_quant, quantize, recon_loss, rtn
from zoo.quant.gptq import gptq_quantize, hessian_init, hessian_update
from zoo.quant.packing import dequantize_linear, quantized_linear

K, N = 16, 8
RNG = np.random.default_rng(0)
W = RNG.normal(size=(K, N))  # float64
X = RNG.normal(size=(32, K))
SPECS = [QuantSpec(bits=3, granularity="tensor"), QuantSpec(bits=4, granularity="oc", group_size=4),
         QuantSpec(bits=4, granularity="ic", group_size=4, symmetric=True)]  # fmt: skip


@pytest.mark.parametrize("spec", SPECS, ids=["tensor", "oc-g4", "ic-g4-sym"])
def test_qparams_fake_quant_rtn_dequantize(spec):
    s_ref, z_ref = ref.ref_qparams(W, spec)
    with jax.enable_x64(True):
        w = jnp.asarray(W)
        assert w.dtype == jnp.float64
        qp = compute_qparams(w, spec)
        assert qp.scale.dtype == qp.zero.dtype == jnp.float64
        np.testing.assert_allclose(qp.scale, s_ref, rtol=1e-14)
        np.testing.assert_array_equal(qp.zero, z_ref)
        fq = fake_quant(w, qp, spec)
        assert fq.dtype == jnp.float64
        s_full, z_full = (np.asarray(expand(jnp.asarray(a), spec, W.shape)) for a in (s_ref, z_ref))
        np.testing.assert_allclose(fq, ref.ref_fake_quant(W, s_full, z_full, spec), rtol=0, atol=1e-14)
        codes, qp2 = rtn(w, spec)
        assert jnp.issubdtype(codes.dtype, jnp.integer) and qp2.scale.dtype == jnp.float64
        np.testing.assert_array_equal(codes, quantize(w, qp, spec))
        deq = dequantize(codes, qp, spec)
        assert deq.dtype == jnp.float64
        np.testing.assert_array_equal(deq, fq)


def test_recon_loss_and_hessian():
    Y = RNG.normal(size=(4, N))
    with jax.enable_x64(True):
        loss = recon_loss(jnp.asarray(W[:4]), jnp.asarray(Y))
        assert loss.dtype == jnp.float64
        np.testing.assert_allclose(loss, ((W[:4] - Y) ** 2).sum(1).mean(), rtol=1e-14)
        H, n = hessian_init(K, jnp.float64)
        H, n = hessian_update(H, n, jnp.asarray(X))
        assert H.dtype == jnp.float64
        np.testing.assert_allclose(H, 2.0 * X.T @ X / len(X), rtol=1e-13)
        H0, _ = hessian_init(K)  # default float: float64 under x64
        assert H0.dtype == jnp.float64
        np.testing.assert_allclose(A.hessian(jnp.asarray(X)), H, rtol=1e-13)


def test_gptq_float64_matches_numpy_reference():
    spec = QuantSpec(bits=3, granularity="oc", group_size=8)
    H = 2.0 * X.T @ X / len(X)
    want = ref.ref_gptq(W, H, spec, blocksize=8)
    with jax.enable_x64(True):
        res = gptq_quantize(jnp.asarray(W), jnp.asarray(H), spec, blocksize=8)
        assert res.w_hat.dtype == res.qparams.scale.dtype == res.loss.dtype == jnp.float64
        assert jnp.issubdtype(res.codes.dtype, jnp.integer)
        np.testing.assert_allclose(res.w_hat, want["w_hat"], rtol=0, atol=1e-12)
        ql = quantized_linear(res.codes, res.qparams, spec, g_idx=res.g_idx)
        assert ql.scales.dtype == jnp.float64
        deq = dequantize_linear(ql)
        assert deq.dtype == jnp.float64
        np.testing.assert_allclose(deq, want["w_hat"], rtol=0, atol=1e-12)


def test_flexround_rounding_float64():
    spec = QuantSpec(bits=3, granularity="oc")
    with jax.enable_x64(True):
        w = jnp.asarray(W)
        st = F.init_flexround(w, spec, grid="minmax")
        assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(st))
        wq = F.flexround_weight(w, st, spec)
        assert wq.dtype == jnp.float64
        s, z = (np.asarray(a).reshape(1, N) for a in (jnp.exp(st.log_s1), st.zero))
        np.testing.assert_allclose(wq, ref.ref_fake_quant(W, s, z, spec), rtol=0, atol=1e-14)  # starts at RTN
        g = jax.grad(lambda t: jnp.sum(F.flexround_weight(w, t, spec) ** 2))(st)
        assert g.log_S2.dtype == jnp.float64
        codes, qp = F.flexround_export(w, st, spec)
        assert jnp.issubdtype(codes.dtype, jnp.integer) and qp.scale.dtype == jnp.float64
        assert F.rtn_weight(w, spec, grid="minmax").dtype == jnp.float64
        assert F.adaround_beta(3, 10).dtype == jnp.float64
        ar = F.init_adaround(w, spec, grid="minmax")
        assert F.adaround_weight(w, ar, spec, hard=True).dtype == jnp.float64


def test_adadim_float64():
    with jax.enable_x64(True):
        w = jnp.asarray(W)
        wq, qp = A.group_rtn(w, bits=3, group_size=4, dim="ic")
        assert wq.dtype == qp.scale.dtype == jnp.float64
        r = A.rtn_ada(w, jnp.asarray(X), bits=3, group_size=4)
        assert r.w_hat.dtype == r.errors.dtype == jnp.float64
