"""AdaDim: per-IC / per-OC grouping and the adaptive choice (spec papers/adadim.md §6), against float64 numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.quant import adadim as A
from zoo.quant import core

K = N = 32
G = 8


def _w(seed, shape=(K, N)):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32) / np.sqrt(shape[0])


def ref_awq_rows(w, bits, g):
    """float64 numpy of the official ``pseudo_quantize_tensor`` on torch-layout rows [rows, cols]:
    groups of g consecutive entries of a row, lo/hi without zero, range floor 1e-5."""
    w = np.asarray(w, np.float64)
    r, c = w.shape
    v = w.reshape(r, c // g, g)
    lo, hi = v.min(-1, keepdims=True), v.max(-1, keepdims=True)
    qmax = 2**bits - 1
    s = np.maximum(hi - lo, 1e-5) / qmax
    z = np.clip(-np.round(lo / s), 0, qmax)
    return (s * (np.clip(np.round(v / s) + z, 0, qmax) - z)).reshape(r, c)


def test_group_rtn_matches_reference_and_transpose():
    w = _w(0)
    ic, qp_ic = A.group_rtn(w, bits=3, group_size=G, dim="ic", style="awq")
    oc, qp_oc = A.group_rtn(w, bits=3, group_size=G, dim="oc", style="awq")
    assert qp_ic.scale.shape == (K, N // G) and qp_oc.scale.shape == (K // G, N)
    # per-IC = groups along a row of our W (torch: along a column) -> the reference on W's rows
    np.testing.assert_allclose(ic, ref_awq_rows(w, 3, G), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(oc, ref_awq_rows(np.asarray(w).T, 3, G).T, rtol=1e-5, atol=1e-6)
    # Q_ic(W) == Q_oc(Wᵀ)ᵀ exactly (both styles)
    for style in ("awq", "gptq"):
        a, _ = A.group_rtn(w, bits=3, group_size=G, dim="ic", style=style)
        b, _ = A.group_rtn(w.T, bits=3, group_size=G, dim="oc", style=style)
        np.testing.assert_array_equal(a, b.T)


def test_gptq_style_is_exact_on_constant_groups():
    w = jnp.full((K, N), 0.25)
    gq, _ = A.group_rtn(w, bits=3, group_size=G, dim="ic", style="gptq")
    np.testing.assert_allclose(gq, w, rtol=1e-6)
    aq, _ = A.group_rtn(w, bits=3, group_size=G, dim="ic", style="awq")
    assert float(jnp.abs(aq - w).max()) > 0.1  # the AWQ-style quantizer collapses constant groups (spec §7)


def test_equivariance():
    w = _w(1)
    d = jnp.exp(jax.random.normal(jax.random.key(2), (K,)))  # positive, arbitrary
    d2 = 2.0 ** jnp.round(3 * jax.random.normal(jax.random.key(3), (N,)))  # powers of two: exact in f32
    for style in ("awq", "gptq"):
        q, _ = A.group_rtn(w, bits=3, group_size=G, dim="ic", style=style)
        qd, _ = A.group_rtn(d[:, None] * w, bits=3, group_size=G, dim="ic", style=style)
        np.testing.assert_allclose(qd, d[:, None] * q, rtol=1e-5, atol=1e-7)
        q, _ = A.group_rtn(w, bits=3, group_size=G, dim="oc", style=style)
        qd, _ = A.group_rtn(w * d2[None], bits=3, group_size=G, dim="oc", style=style)
        np.testing.assert_array_equal(qd, q * d2[None])
        # and the other way round it is not equivariant
        qx, _ = A.group_rtn(d[:, None] * w, bits=3, group_size=G, dim="oc", style=style)
        assert not np.allclose(qx, d[:, None] * q, rtol=1e-3)


def test_select_dim_is_the_argmin_and_ties_go_to_oc():
    w, x = _w(4), jax.random.normal(jax.random.key(5), (64, K))
    dim, errs = A.select_dim(w, x, bits=3, group_size=G)
    assert dim == min(errs, key=errs.get) and set(errs) == {"oc", "ic"}
    want = {d: float(jnp.mean((x @ A.group_rtn(w, bits=3, group_size=G, dim=d)[0] - x @ w) ** 2)) for d in A.DIMS}
    np.testing.assert_allclose([errs["oc"], errs["ic"]], [want["oc"], want["ic"]], rtol=1e-5)
    dim, errs = A.select_dim(w, x, bits=3, group_size=G, sub_block=lambda wq: jnp.zeros((3,)))
    assert dim == "oc" and errs == {"oc": 0.0, "ic": 0.0}
    dim, _ = A.select_dim(w, x, bits=3, group_size=G, sub_block=lambda wq: jnp.zeros((3,)), candidates=("ic", "oc"))
    assert dim == "ic"


def _mechanism(seed, factor_in=30.0, sigma_out=0.5, k=64):
    kw, kx, kc = jax.random.split(jax.random.key(seed), 3)
    w = jax.random.normal(kw, (k, k)) / np.sqrt(k)
    x = jax.random.normal(kx, (512, k))
    c = jax.random.choice(kc, k, (2,), replace=False)
    e_in = A.dim_errors(w, x.at[:, c].multiply(factor_in), bits=3, group_size=16, style="awq")
    col = jnp.exp(sigma_out * jax.random.normal(kc, (k,)))  # output-channel outliers (log-normal scales)
    e_out = A.dim_errors(w * col, x, bits=3, group_size=16, style="awq")
    return e_in, e_out


def test_synthetic_mechanism():
    e_in, e_out = jax.jit(jax.vmap(_mechanism))(jnp.arange(4))
    assert np.all(e_in[:, 1] < e_in[:, 0]), e_in  # outlier input channels: per-IC isolates them
    assert np.all(e_out[:, 0] < e_out[:, 1]), e_out  # outlier output channels: per-OC


@pytest.fixture(scope="module")
def gptq_fns():
    def gptq_eq_rtn(w, c):
        H = c * jnp.eye(K)
        out = {}
        for dim, style in (("ic", "awq"), ("oc", "gptq")):
            out[dim] = (A.gptq_dim(w, H, bits=3, group_size=G, dim=dim, style=style),
                        A._fq(w, A.quant_spec(3, G, dim, style)))  # fmt: skip
        return out

    def ada_vs_rtn(seed):
        kw, kx, kc = jax.random.split(jax.random.key(seed), 3)
        w = jax.random.normal(kw, (K, N)) / np.sqrt(K)
        x = jax.random.normal(kx, (128, K)) @ (jnp.eye(K) + 2 * jax.random.normal(kc, (K, K)) / np.sqrt(K))
        g = A.gptq_ada(w, x, bits=3, group_size=G)
        r = A.rtn_ada(w, x, bits=3, group_size=G)
        err = lambda wq: jnp.mean((x @ (wq - w)) ** 2)  # noqa: E731
        return err(g.w_hat), err(r.w_hat), r.errors, err(r.w_hat), g.dim, r.dim

    # lax.map, not vmap: vmapped GPTQ batches Cholesky, and jax 0.10.2's CPU batched LAPACK (ParallelBatchMap)
    # deadlocked in our experiments
    return jax.jit(gptq_eq_rtn), jax.jit(lambda seeds: jax.lax.map(ada_vs_rtn, seeds))


def test_gptq_with_identity_hessian_is_rtn(gptq_fns):
    out = gptq_fns[0](_w(6), 3.0)
    for dim, (g, r) in out.items():
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6, err_msg=dim)


def test_gptq_ada_beats_rtn_ada_and_adaptive_never_loses_on_the_proxy(gptq_fns):
    g_err, r_err, proxy, r_err2, gd, rd = gptq_fns[1](jnp.arange(20))
    assert int(np.sum(np.asarray(g_err) <= np.asarray(r_err))) >= 18
    # RTN-ada's own error is the smaller of the two fixed groupings' (the selection objective)
    np.testing.assert_allclose(r_err2, np.min(np.asarray(proxy), axis=1), rtol=1e-5)
    assert np.array_equal(np.asarray(gd), np.asarray(rd))  # GPTQ-ada chooses with the RTN proxy


def test_greedy_order_spy():
    """Layer 2's sub-block sees layer 1 already quantized; both inputs come from the FP model."""
    kx, k1, k2 = jax.random.split(jax.random.key(7), 3)
    params = {"l1": {"kernel": jax.random.normal(k1, (K, N)) / 6}, "l2": {"kernel": jax.random.normal(k2, (N, N)) / 6}}
    x = jax.random.normal(kx, (32, K))
    seen = []

    def sub2(p, h, w2):
        seen.append(np.asarray(p["l1"]["kernel"]))
        return jnp.tanh(x @ p["l1"]["kernel"]) @ w2

    layers = (
        A.LayerSpec("l1", ("l1", "kernel"), lambda fp, c: c, lambda fp, c: c,
                    lambda p, c, w1: jnp.tanh(c @ w1) @ p["l2"]["kernel"]),
        A.LayerSpec("l2", ("l2", "kernel"), lambda fp, c: jnp.tanh(c @ fp["l1"]["kernel"]),
                    lambda fp, c: jnp.tanh(c @ fp["l1"]["kernel"]), sub2),
    )  # fmt: skip
    q, choices, errors = A.quantize_blocks(layers, params, x, method="rtn_ada", bits=3, group_size=G)
    assert seen and all(np.array_equal(s, np.asarray(q["l1"]["kernel"])) for s in seen)
    assert not np.allclose(seen[0], params["l1"]["kernel"])
    assert set(choices) == {"l1", "l2"} and errors["l1"].shape == (2,)
    d = A.DIMS[int(choices["l1"])]
    np.testing.assert_array_equal(q["l1"]["kernel"], A.group_rtn(params["l1"]["kernel"], bits=3, group_size=G, dim=d)[0])
    q2, c2, _ = A.quantize_blocks(layers, params, x, method="rtn", fixed_dim="ic", bits=3, group_size=G)
    assert all(int(v) == 1 for v in c2.values())


def test_bad_inputs():
    w, x = _w(8), jnp.ones((16, K))
    with pytest.raises(ValueError, match="group_size"):
        A.group_rtn(w, bits=3, group_size=5, dim="ic")
    with pytest.raises(ValueError, match="group_size"):
        A.select_dim(_w(8, (K, 12)), x, bits=3, group_size=8)  # 8 divides K but not N (per-IC)
    with pytest.raises(ValueError, match="x: expected 32 input features"):
        A.select_dim(w, jnp.ones((16, 7)), bits=3, group_size=G)
    with pytest.raises(ValueError, match="non-finite"):
        A.rtn_ada(w.at[1, 1].set(jnp.nan), x, bits=3, group_size=G)
    with pytest.raises(ValueError, match="non-finite"):
        A.gptq_ada(w, x.at[0, 0].set(jnp.inf), bits=3, group_size=G)
    with pytest.raises(ValueError, match="bits"):
        A.group_rtn(w, bits=1, group_size=G, dim="oc")
    with pytest.raises(ValueError, match="dim"):
        A.group_rtn(w, bits=3, group_size=G, dim="row")
    with pytest.raises(ValueError, match="calibration set is empty"):
        A.select_dim(w, jnp.ones((0, K)), bits=3, group_size=G)
    with pytest.raises(ValueError, match="percdamp"):
        A.gptq_ada(w, x, bits=3, group_size=G, percdamp=0.0)
    with pytest.raises(ValueError, match="method"):
        A.quantize_blocks([], {}, x, method="awq")


def _one_linear():
    return (A.LayerSpec("l", ("l", "kernel"), lambda fp, c: c, lambda fp, c: c, lambda p, c, w: c @ w),)


def _positive_w_with_constant_group():
    w = jnp.abs(_w(11)) + 0.5  # one-signed groups: the AWQ and GPTQ styles differ
    return w.at[:G, 0].set(0.7)  # a constant per-OC group, collapsed by the AWQ style


def test_parity_mode_rtn_baseline_uses_the_rtn_ada_quantizer():
    """Parity mode: the fixed RTN baseline and RTN-ada quantize with the same (AWQ-style) quantizer."""
    import warnings

    w = _positive_w_with_constant_group()
    x = jax.random.normal(jax.random.key(12), (64, K))
    params = {"l": {"kernel": w}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for dim in A.DIMS:
            q, _, _ = A.quantize_blocks(_one_linear(), params, x, method="rtn", fixed_dim=dim, bits=3, group_size=G,
                                        parity_mode=True)  # fmt: skip
            np.testing.assert_array_equal(q["l"]["kernel"], A._fq(w, A.quant_spec(3, G, dim, "awq")))
        qa, ch, _ = A.quantize_blocks(_one_linear(), params, x, method="rtn_ada", bits=3, group_size=G,
                                      parity_mode=True)  # fmt: skip
        qr, _, _ = A.quantize_blocks(_one_linear(), params, x, method="rtn", fixed_dim=A.DIMS[int(ch["l"])], bits=3,
                                     group_size=G, parity_mode=True)  # fmt: skip
    np.testing.assert_array_equal(qa["l"]["kernel"], qr["l"]["kernel"])


def test_parity_mode_warns_on_constant_groups():
    import warnings

    w = _positive_w_with_constant_group()
    x = jax.random.normal(jax.random.key(13), (64, K))
    with pytest.warns(RuntimeWarning, match="constant"):
        A.quantize_blocks(_one_linear(), {"l": {"kernel": w}}, x, method="rtn", bits=3, group_size=G, parity_mode=True)
    with pytest.warns(RuntimeWarning, match="1 per-oc group"):
        A.gptq_ada(w, x, bits=3, group_size=G, blocksize=16, parity_mode=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A.quantize_blocks(_one_linear(), {"l": {"kernel": w}}, x, method="rtn", bits=3, group_size=G)
        A.quantize_blocks(_one_linear(), {"l": {"kernel": _w(14)}}, x, method="rtn", bits=3, group_size=G,
                          parity_mode=True)  # fmt: skip
