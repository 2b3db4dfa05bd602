"""zoo.quant.gptq: GPTQ vs a float64 numpy port of the reference loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.quant._reference import ref_gptq
from zoo.quant.core import QuantSpec, rtn
from zoo.quant.gptq import gptq_quantize, hessian_init, hessian_update

K, N = 64, 32


def _problem(seed, n=256, k=K, nout=N):
    """Correlated calibration inputs X: [n, k], a random layer w: [k, nout] and H = 2/n XᵀX."""
    rng = np.random.default_rng(seed)
    X = 0.3 * rng.normal(size=(n, k)) @ rng.normal(size=(k, k)) + rng.normal(size=(n, k))
    return X, rng.normal(size=(k, nout)), 2.0 * X.T @ X / n


REF_CASES = [
    (QuantSpec(bits=3, granularity="oc", group_size=16), dict(blocksize=24, act_order=True)),  # padding, dynamic groups
    (QuantSpec(bits=4, granularity="oc", group_size=16), dict(blocksize=32, act_order=True, static_groups=True)),
    (QuantSpec(bits=4, granularity="ic", group_size=8, include_zero=False, range_floor=1e-5), dict(blocksize=20, act_order=True)),
]


@pytest.mark.parametrize("spec, kw", REF_CASES, ids=["oc-dyn-actorder", "oc-static-actorder", "ic-actorder"])
def test_equals_float64_numpy_reference(spec, kw):
    X, w, H = _problem(0)
    H[5, :] = H[:, 5] = 0.0  # a dead input
    want = ref_gptq(w, H, spec, **kw)
    with jax.enable_x64(True):
        got = gptq_quantize(jnp.asarray(w), jnp.asarray(H), spec, **kw)
        assert got.w_hat.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(got.w_hat), want["w_hat"], rtol=0, atol=1e-10)
        np.testing.assert_array_equal(np.asarray(got.codes, np.int64), want["codes"])
        np.testing.assert_array_equal(np.asarray(got.g_idx), want["g_idx"])
        np.testing.assert_allclose(float(got.loss), want["loss"], rtol=1e-10)
    np.testing.assert_array_equal(want["w_hat"][5], 0.0 if spec.include_zero else want["w_hat"][5])


def test_float32_close_to_reference():
    spec, kw = QuantSpec(bits=3, granularity="oc", group_size=16), dict(blocksize=16)
    X, w, H = _problem(1)
    want = ref_gptq(w, H, spec, **kw)
    got = gptq_quantize(jnp.asarray(w, jnp.float32), jnp.asarray(H, jnp.float32), spec, **kw)
    assert got.w_hat.dtype == jnp.float32
    same = np.mean(np.asarray(got.codes, np.int64) == want["codes"])
    assert same >= 0.99, same
    np.testing.assert_allclose(float(got.loss), want["loss"], rtol=1e-3)


def test_identity_hessian_is_rtn():
    X, w, _ = _problem(2)
    w = jnp.asarray(w, jnp.float32)
    spec = QuantSpec(bits=3, granularity="oc", group_size=16)
    res = gptq_quantize(w, 3.0 * jnp.eye(K), spec, blocksize=16)
    codes, qp = rtn(w, spec)
    np.testing.assert_array_equal(np.asarray(res.codes), np.asarray(codes))
    np.testing.assert_array_equal(np.asarray(res.qparams.scale), np.asarray(qp.scale))


def test_blocksize_does_not_change_the_result():
    """Lazy batch updates reorder the same arithmetic (groups aligned with blocks)."""
    spec = QuantSpec(bits=3, granularity="oc", group_size=16)
    X, w, H = _problem(3)
    w, H = jnp.asarray(w, jnp.float32), jnp.asarray(H, jnp.float32)
    r16 = gptq_quantize(w, H, spec, blocksize=16)
    r8 = gptq_quantize(w, H, spec, blocksize=8)
    assert np.mean(np.asarray(r16.codes) == np.asarray(r8.codes)) > 0.995
    np.testing.assert_allclose(float(r16.loss), float(r8.loss), rtol=1e-3)


@jax.jit
def _gptq_vs_rtn(w, X):
    spec = QuantSpec(bits=3, granularity="oc")
    H = 2.0 * X.T @ X / X.shape[0]
    w_g = gptq_quantize(w, H, spec, blocksize=16).w_hat
    codes, qp = rtn(w, spec)
    w_r = qp.scale * (codes.astype(jnp.float32) - qp.zero)
    err = lambda wh: jnp.sum((X @ (wh - w)) ** 2)
    return err(w_g), err(w_r)


def test_gptq_beats_rtn_on_random_correlated_problems():
    Xs, ws = zip(*[_problem(100 + i, n=128, k=32, nout=16)[:2] for i in range(20)])
    e_g, e_r = jax.vmap(_gptq_vs_rtn)(jnp.asarray(np.stack(ws), jnp.float32), jnp.asarray(np.stack(Xs), jnp.float32))
    wins = int(np.sum(np.asarray(e_g) <= np.asarray(e_r)))
    assert wins >= 18, (wins, np.asarray(e_g / e_r))


def test_codes_in_range_8bit_and_jit():
    spec = QuantSpec(bits=8, granularity="oc", group_size=32)
    X, w, H = _problem(4)
    w, H = jnp.asarray(w, jnp.float32), jnp.asarray(H, jnp.float32)
    res = gptq_quantize(w, H, spec, act_order=True)
    assert res.codes.dtype == jnp.uint8 and res.qparams.scale.shape == (2, N)
    # dequantization through g_idx reproduces w_hat
    s, z = res.qparams.scale[res.g_idx], res.qparams.zero[res.g_idx]
    np.testing.assert_allclose(np.asarray(s * (res.codes.astype(jnp.float32) - z)), np.asarray(res.w_hat), rtol=1e-6, atol=1e-7)
    assert float(jnp.max(jnp.abs(res.w_hat - w))) < 0.1  # 8 bits: close to w


def test_hessian_streaming():
    X, _, H_full = _problem(5, n=96)
    H, n = hessian_init(K)
    H, n = hessian_update(H, n, jnp.asarray(X[:40], jnp.float32))
    H, n = hessian_update(H, n, jnp.asarray(X[40:], jnp.float32))
    assert int(n) == 96
    np.testing.assert_allclose(np.asarray(H), H_full, rtol=1e-4, atol=1e-4)
    # [m, T, K] input: all tokens enter XᵀX, n counts sequences
    H3, n3 = hessian_update(*hessian_init(K), jnp.asarray(X.reshape(8, 12, K), jnp.float32))
    assert int(n3) == 8
    np.testing.assert_allclose(np.asarray(H3), 2.0 * X.T @ X / 8, rtol=1e-4, atol=1e-3)


def test_bad_input():
    X, w, H = _problem(6, n=80)
    w, H = jnp.asarray(w, jnp.float32), jnp.asarray(H, jnp.float32)
    spec = QuantSpec(bits=4)
    with pytest.raises(ValueError, match="H: expected shape"):
        gptq_quantize(w, H[:, :10], spec)
    with pytest.raises(ValueError, match=r"H: expected shape \(32, 32\)"):
        gptq_quantize(w[:32], H, spec)
    with pytest.raises(ValueError, match="H: .*non-finite"):
        gptq_quantize(w, H.at[2, 2].set(jnp.nan), spec)
    with pytest.raises(ValueError, match="w: .*non-finite"):
        gptq_quantize(w.at[0, 1].set(jnp.inf), H, spec)
    with pytest.raises(ValueError, match="percdamp"):
        gptq_quantize(w, H, spec, percdamp=0.0)
    with pytest.raises(ValueError, match="blocksize"):
        gptq_quantize(w, H, spec, blocksize=0)
    with pytest.raises(ValueError, match="group_size"):
        gptq_quantize(w, H, QuantSpec(bits=4, group_size=48))
    with pytest.raises(ValueError, match="H: Cholesky"):  # same static config as the 8-bit test: no recompile
        gptq_quantize(w, -jnp.eye(K), QuantSpec(bits=8, granularity="oc", group_size=32), act_order=True)
    with pytest.raises(ValueError, match="x: expected last dim"):
        hessian_update(H, 0, jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="x: the calibration batch is empty"):
        hessian_update(H, 0, jnp.ones((0, K)))
