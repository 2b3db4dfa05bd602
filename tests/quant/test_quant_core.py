"""zoo.quant.core: quantizer config, qparams, quantize/dequantize, RTN, STE, block reconstruction."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.quant import _reference as ref
from zoo.quant.core import (
    QParams,
    QuantSpec,
    compute_qparams,
    dequantize,
    fake_quant,
    fake_quant_raw,
    fake_quant_ste,
    floor_ste,
    qparam_shape,
    quantize,
    reconstruct_block,
    round_ste,
    rtn,
)

K, N = 16, 12
SPECS = [
    QuantSpec(bits=3, granularity="tensor"),
    QuantSpec(bits=4, granularity="oc"),
    QuantSpec(bits=2, granularity="oc", group_size=4),
    QuantSpec(bits=5, granularity="ic"),
    QuantSpec(bits=3, granularity="ic", group_size=4, include_zero=False, range_floor=1e-5),
    QuantSpec(bits=4, granularity="oc", group_size=8, symmetric=True),
]
IDS = [f"{s.granularity}-g{s.group_size}-b{s.bits}{'-sym' if s.symmetric else ''}{'' if s.include_zero else '-noz'}" for s in SPECS]


@pytest.fixture(scope="module")
def w():
    return jax.random.normal(jax.random.key(0), (K, N)) + 0.3


# ---------------------------------------------------------------- config and bad input


@pytest.mark.parametrize("bits", [1, 9, 0, 2.5, True])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match="bits"):
        QuantSpec(bits=bits)


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(granularity="row"), "granularity"),
        (dict(group_size=0), "group_size"),
        (dict(group_size=-2), "group_size"),
        (dict(granularity="tensor", group_size=4), "group_size"),
        (dict(scale_floor=-1.0), "scale_floor"),
    ],
)
def test_spec_bad_fields(kw, field):
    with pytest.raises(ValueError, match=field):
        QuantSpec(bits=4, **kw)


def test_group_size_must_divide(w):
    with pytest.raises(ValueError, match=r"group_size.*K=16"):
        compute_qparams(w, QuantSpec(bits=4, granularity="oc", group_size=5))
    with pytest.raises(ValueError, match=r"group_size.*N=12"):
        rtn(w, QuantSpec(bits=4, granularity="ic", group_size=5))


def test_nan_weight_and_bad_method(w):
    bad = w.at[3, 4].set(jnp.nan)
    with pytest.raises(ValueError, match=r"w: .*non-finite.*\(3, 4\)"):
        compute_qparams(bad, SPECS[1])
    with pytest.raises(ValueError, match="w: .*non-finite"):
        fake_quant(bad.at[3, 4].set(jnp.inf), compute_qparams(w, SPECS[1]), SPECS[1])
    with pytest.raises(ValueError, match="method"):
        compute_qparams(w, SPECS[1], method="l2")
    with pytest.raises(ValueError, match="w: expected a kernel"):
        compute_qparams(w[0], SPECS[1])
    with pytest.raises(ValueError, match=r"qp.scale: expected shape \(1, 12\)"):
        quantize(w, QParams(jnp.ones((1, 3)), jnp.zeros((1, 3))), SPECS[1])


def test_qparam_shapes_table():
    shape = (256, 384)
    table = {
        ("tensor", -1): (),
        ("oc", -1): (1, 384),
        ("oc", 128): (2, 384),
        ("ic", -1): (256, 1),
        ("ic", 128): (256, 3),
    }
    for (gran, g), want in table.items():
        assert qparam_shape(shape, QuantSpec(bits=4, granularity=gran, group_size=g)) == want


# ---------------------------------------------------------------- qparams


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_minmax_matches_numpy_loops(w, spec):
    qp = compute_qparams(w, spec)
    s, z = ref.ref_qparams(np.asarray(w), spec)
    assert qp.scale.shape == np.shape(s) and qp.zero.shape == np.shape(z)
    np.testing.assert_allclose(qp.scale, s, rtol=1e-6)
    np.testing.assert_array_equal(qp.zero, z)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_roundtrip_properties(w, spec):
    codes, qp = rtn(w, spec)
    assert codes.dtype == (jnp.int8 if spec.symmetric else jnp.uint8)
    c = np.asarray(codes, np.int64)
    assert c.min() >= spec.qmin and c.max() <= spec.qmax
    fq = np.asarray(fake_quant(w, qp, spec))
    np.testing.assert_array_equal(fq, np.asarray(dequantize(codes, qp, spec)))
    # <= 2^b distinct values per group (check per column for oc / per row for ic)
    if spec.granularity == "oc":
        g = K if spec.group_size == -1 else spec.group_size
        for grp in fq.reshape(K // g, g, N).transpose(0, 2, 1).reshape(-1, g):
            assert len(np.unique(grp)) <= 2**spec.bits
    if spec.include_zero:  # min-max range covers every entry: error at most s/2
        s = np.asarray(qp.scale)
        if spec.granularity == "oc":
            s = np.repeat(s, K // s.shape[0], 0)
        elif spec.granularity == "ic":
            s = np.repeat(s, N // s.shape[1], 1)
        assert np.all(np.abs(fq - np.asarray(w)) <= s / 2 * (1 + 1e-5) + 1e-7)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_quantize_dequantize_exact_on_representable(spec):
    rng = np.random.default_rng(1)
    shape = qparam_shape((K, N), spec)
    s = rng.uniform(0.01, 0.5, shape).astype(np.float32)
    z = (np.zeros(shape) if spec.symmetric else rng.integers(0, 2**spec.bits, shape)).astype(np.float32)
    q = rng.integers(spec.qmin, spec.qmax + 1, (K, N))
    from zoo.quant.core import expand

    w = np.asarray(expand(jnp.asarray(s), spec, (K, N)) * (q - expand(jnp.asarray(z), spec, (K, N))))
    qp = QParams(jnp.asarray(s), jnp.asarray(z))
    np.testing.assert_array_equal(np.asarray(quantize(w, qp, spec), np.int64), q)
    np.testing.assert_array_equal(np.asarray(dequantize(jnp.asarray(q, spec.code_dtype), qp, spec)), w)
    np.testing.assert_array_equal(np.asarray(fake_quant(w, qp, spec)), w)


def test_clamp_form_is_bit_identical(w):
    spec = QuantSpec(bits=3, granularity="oc")
    qp = compute_qparams(w, spec, method="mse")
    s, z = qp
    clamp_form = s * jnp.clip(jnp.round(w / s), -z, spec.qmax - z)
    np.testing.assert_array_equal(np.asarray(fake_quant(w, qp, spec)), np.asarray(clamp_form))


def test_half_to_even_ties():
    spec = QuantSpec(bits=4, granularity="tensor")
    qp = QParams(jnp.asarray(1.0), jnp.asarray(3.0))
    w = jnp.asarray([[0.5, 1.5, 2.5, -0.5, -1.5, 3.5]])
    # round-half-to-even: 0, 2, 2, -0, -2, 4 ; + z = 3
    np.testing.assert_array_equal(np.asarray(quantize(w, qp, spec)), [[3, 5, 5, 3, 1, 7]])


def test_ic_is_oc_of_transpose(w):
    ic = QuantSpec(bits=3, granularity="ic", group_size=4)
    oc = QuantSpec(bits=3, granularity="oc", group_size=4)
    qi, qo = compute_qparams(w, ic), compute_qparams(w.T, oc)
    np.testing.assert_array_equal(np.asarray(qi.scale), np.asarray(qo.scale).T)
    np.testing.assert_array_equal(np.asarray(fake_quant(w, qi, ic)), np.asarray(fake_quant(w.T, qo, oc)).T)


def test_conv_hwio_matches_torch_per_row():
    rng = np.random.default_rng(2)
    w_torch = rng.normal(size=(8, 3, 2, 2)).astype(np.float32)  # (Cout, Cin, kh, kw)
    w_hwio = np.transpose(w_torch, (2, 3, 1, 0))
    spec = QuantSpec(bits=4, granularity="oc")
    qp = compute_qparams(w_hwio, spec)
    s_ref, z_ref = ref.ref_minmax(w_torch.reshape(8, -1), spec, axis=1)  # torch per-output-channel
    np.testing.assert_allclose(np.asarray(qp.scale)[0], s_ref, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(qp.zero)[0], z_ref)
    fq = np.asarray(fake_quant(w_hwio, qp, spec))
    assert fq.shape == w_hwio.shape
    # row index of the [kh*kw*Cin, Cout] view = (i, j, c) row-major = torch flatten(1) after the permute
    flat_t = np.transpose(w_hwio, (3, 0, 1, 2)).reshape(8, -1)  # torch W permuted to (Cout, kh, kw, Cin)
    np.testing.assert_array_equal(w_hwio.reshape(-1, 8), flat_t.T)
    np.testing.assert_array_equal(fq.reshape(-1, 8), np.asarray(fake_quant(w_hwio.reshape(-1, 8), qp, spec)))


@pytest.mark.parametrize("spec", [SPECS[2], SPECS[4]], ids=[IDS[2], IDS[4]])
def test_mse_never_worse_than_minmax(w, spec):
    from zoo.quant.core import _group_view

    def err(qp):
        d = np.abs(np.asarray(fake_quant(w, qp, spec)) - np.asarray(w)) ** 2.4
        view, axis = _group_view(jnp.asarray(d), spec)
        return np.asarray(jnp.sum(view, axis=axis))

    e0 = err(compute_qparams(w, spec))
    for method in ("mse", "mse_gptq", "mse2d"):
        e = err(compute_qparams(w, spec, method=method))
        assert np.all(e <= e0 * (1 + 1e-5) + 1e-6), method
    assert np.sum(err(compute_qparams(w, spec, method="mse"))) < np.sum(e0)  # and strictly better overall


def test_mse2d_one_sided_uses_1d_search():
    spec = QuantSpec(bits=3, granularity="oc")
    w = jnp.abs(jax.random.normal(jax.random.key(3), (K, N))) + 0.1  # all positive columns
    qp = compute_qparams(w, spec, method="mse2d")
    np.testing.assert_array_equal(np.asarray(qp.zero), 0.0)  # range [0, t]: zero point 0


# ---------------------------------------------------------------- jit / vmap


def test_jit_and_vmap_of_rtn():
    spec = SPECS[2]
    ws = jax.random.normal(jax.random.key(4), (3, K, N))

    @jax.jit
    def f(wi):
        codes, qp = rtn(wi, spec)
        return fake_quant_raw(wi, qp, spec), codes

    fq_v, codes_v = jax.vmap(f)(ws)
    c, qp = rtn(ws[2], spec)
    np.testing.assert_array_equal(np.asarray(codes_v[2]), np.asarray(c))
    np.testing.assert_allclose(np.asarray(fq_v[2]), np.asarray(fake_quant(ws[2], qp, spec)), rtol=1e-6, atol=1e-7)
    assert not np.array_equal(np.asarray(codes_v[0]), np.asarray(codes_v[1]))


# ---------------------------------------------------------------- STE


def test_round_floor_ste():
    x = jnp.asarray([0.2, 0.7, -1.3, 2.5])
    np.testing.assert_array_equal(np.asarray(round_ste(x)), [0.0, 1.0, -1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(floor_ste(x)), [0.0, 0.0, -2.0, 2.0])
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda v: jnp.sum(round_ste(v) * v))(x)), np.asarray(round_ste(x) + x))
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda v: jnp.sum(floor_ste(v)))(x)), 1.0)


def test_fake_quant_ste_gradient_is_inside_indicator(w):
    spec = QuantSpec(bits=3, granularity="oc")
    qp = compute_qparams(w, spec, method="mse")  # shrunk range: some entries clip
    val = fake_quant_ste(w, qp, spec)
    np.testing.assert_array_equal(np.asarray(val), np.asarray(fake_quant(w, qp, spec)))
    g = np.asarray(jax.jit(jax.grad(lambda v: jnp.sum(fake_quant_ste(v, qp, spec))))(w))
    u = np.round(np.asarray(w) / np.asarray(qp.scale)) + np.asarray(qp.zero)
    inside = ((u >= spec.qmin) & (u <= spec.qmax)).astype(np.float32)
    assert 0 < inside.sum() < inside.size  # the test sees both cases
    np.testing.assert_array_equal(g, inside)
    g_noclip = jax.grad(lambda v: jnp.sum(fake_quant_ste(v, qp, spec, clip_grad=False)))(w)
    np.testing.assert_array_equal(np.asarray(g_noclip), 1.0)
    # qparams are stop-gradiented unless asked for
    gs = jax.grad(lambda s: jnp.sum(fake_quant_ste(w, QParams(s, qp.zero), spec)))(qp.scale)
    np.testing.assert_array_equal(np.asarray(gs), 0.0)
    gs = jax.grad(lambda s: jnp.sum(fake_quant_ste(w, QParams(s, qp.zero), spec, learn_qparams=True)))(qp.scale)
    assert np.any(np.asarray(gs) != 0)


# ---------------------------------------------------------------- block reconstruction

RSPEC = QuantSpec(bits=2, granularity="oc")


def _apply_q(a, frozen, x):
    """Quantized linear with a learned per-column log-scale multiplier: x @ fq_ste(W; s·exp(a))."""
    w, qp = frozen
    return x @ fake_quant_ste(w, QParams(qp.scale * jnp.exp(a), qp.zero), RSPEC, learn_qparams=True)


def _reg(v, step):
    return 1e-4 * jnp.sum(v**2) * (step >= 0)


@pytest.fixture(scope="module")
def recon_problem():
    k1, k2 = jax.random.split(jax.random.key(5))
    x = jax.random.normal(k1, (64, K))
    w = jax.random.normal(k2, (K, N))
    qp = compute_qparams(w, RSPEC)
    return x, w, qp, x @ w


RECON_KW = dict(steps=60, batch_size=16, lr=1e-2)


def test_reconstruct_block_reduces_error(recon_problem):
    x, w, qp, y = recon_problem
    v0 = jnp.zeros((1, N))
    v, m = reconstruct_block(_apply_q, v0, (w, qp), x, y, key=jax.random.key(0), reg_fn=_reg, **RECON_KW)
    assert set(m) == {"loss", "recon", "reg"} and m["loss"].shape == (60,)
    e_rtn = float(jnp.mean((_apply_q(v0, (w, qp), x) - y) ** 2))
    e_rec = float(jnp.mean((_apply_q(v, (w, qp), x) - y) ** 2))
    assert e_rec < 0.9 * e_rtn, (e_rec, e_rtn)
    assert float(m["reg"][-1]) > 0


def test_reconstruct_block_vmaps_over_seeds(recon_problem):
    x, w, qp, y = recon_problem
    keys = jax.random.split(jax.random.key(1), 3)
    run = functools.partial(reconstruct_block, _apply_q, jnp.zeros((1, N)), (w, qp), x, y, reg_fn=_reg, **RECON_KW)
    vs, ms = jax.vmap(lambda k: run(key=k))(keys)
    assert vs.shape == (3, 1, N)
    assert not np.allclose(vs[0], vs[1])
    v1, m1 = run(key=keys[1])
    np.testing.assert_allclose(np.asarray(vs[1]), np.asarray(v1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ms["recon"][1]), np.asarray(m1["recon"]), rtol=1e-4)


def test_reconstruct_block_bad_input(recon_problem):
    x, w, qp, y = recon_problem
    v0 = jnp.zeros((1, N))
    key = jax.random.key(0)
    kw = dict(RECON_KW)
    with pytest.raises(ValueError, match="x_in"):
        reconstruct_block(_apply_q, v0, (w, qp), x[:0], y[:0], key=key, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        reconstruct_block(_apply_q, v0, (w, qp), x[:8], y[:8], key=key, **kw)
    with pytest.raises(ValueError, match="y_tgt"):
        reconstruct_block(_apply_q, v0, (w, qp), x, y[:10], key=key, **kw)
    with pytest.raises(ValueError, match="steps"):
        reconstruct_block(_apply_q, v0, (w, qp), x, y, key=key, **{**kw, "steps": 0})
    with pytest.raises(ValueError, match="lr"):
        reconstruct_block(_apply_q, v0, (w, qp), x, y, key=key, **{**kw, "lr": 0.0})
    with pytest.raises(ValueError, match="schedule"):
        reconstruct_block(_apply_q, v0, (w, qp), x, y, key=key, schedule="step", **kw)
    with pytest.raises(ValueError, match="x_in: .*non-finite"):
        reconstruct_block(_apply_q, v0, (w, qp), x.at[0, 0].set(jnp.nan), y, key=key, **kw)


def test_clip_codes_has_clamp_derivative_at_the_bounds():
    from zoo.quant.core import clip_codes

    r = jnp.array([-1.0, 0.0, 1.5, 3.0, 4.0])
    np.testing.assert_array_equal(clip_codes(r, 0.0, 3.0), [0.0, 0.0, 1.5, 3.0, 3.0])
    g = jax.grad(lambda v: jnp.sum(clip_codes(v, 0.0, 3.0)))(r)
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0, 1.0, 0.0])  # jnp.clip gives 0.5 at 0.0 and 3.0


def _shift(b, frozen, x):
    return x + b


def test_recon_loss_default_is_the_papers_sum_over_features_mean_over_samples():
    """BRECQ / AdaRound / FlexRound ``lp_loss(reduction='none')`` = ``.pow(2).sum(1).mean()`` (features summed)."""
    from zoo.quant.core import recon_loss

    rng = np.random.default_rng(3)
    y, t = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    np.testing.assert_allclose(recon_loss(y, t), ((y - t) ** 2).sum(axis=1).mean(), rtol=1e-6)
    np.testing.assert_allclose(recon_loss(y, t, "mean"), ((y - t) ** 2).mean(), rtol=1e-6)
    y3, t3 = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    np.testing.assert_allclose(recon_loss(y3, t3), ((y3 - t3) ** 2).sum(-1).mean(), rtol=1e-6)
    np.testing.assert_allclose(recon_loss(y3, t3, "sum_axis1_mean"), ((y3 - t3) ** 2).sum(1).mean(), rtol=1e-6)
    np.testing.assert_allclose(recon_loss(y[:, 0], t[:, 0]), ((y[:, 0] - t[:, 0]) ** 2).mean(), rtol=1e-6)


def test_reconstruct_block_default_reduction_is_the_sum():
    """The recorded loss of step 0 (the whole calibration set as the batch) is Σ_features, mean_samples."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(6, 5)).astype(np.float32)
    kw = dict(steps=1, batch_size=6, lr=1e-3, key=jax.random.key(0))
    _, m = reconstruct_block(_shift, jnp.zeros(5), None, x, y, **kw)
    np.testing.assert_allclose(m["recon"][0], ((x - y) ** 2).sum(1).mean(), rtol=1e-5)
    _, m = reconstruct_block(_shift, jnp.zeros(5), None, x, y, reduction="mean", **kw)
    np.testing.assert_allclose(m["recon"][0], ((x - y) ** 2).mean(), rtol=1e-5)


def test_bad_qparams_and_empty_kernel_fail_clearly():
    w = jnp.ones((4, 3))
    spec = QuantSpec(bits=4)
    with pytest.raises(ValueError, match="w: expected a non-empty kernel"):
        compute_qparams(jnp.zeros((0, 3)), spec)
    with pytest.raises(ValueError, match="qp.scale: expected positive"):
        fake_quant(w, QParams(jnp.zeros((1, 3)), jnp.zeros((1, 3))), spec)
