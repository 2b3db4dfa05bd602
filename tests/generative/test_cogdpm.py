"""CogDPM pieces: uncertainty estimators, weight map, guidance, the sampler's special cases, the U-Net."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.generative import cogdpm as cd
from zoo.generative import diffusion as d

CFG = cd.CogDPMConfig(frames_in=2, frames_out=2, height=8, width=8, widths=(8,), blocks=1, sample_steps=8,
                      ensemble_size=3, T=1000)
X0 = jax.random.uniform(jax.random.key(0), (6, 3, 2, 8, 8, 1), minval=-1, maxval=1)  # [levels, M, B, To, H, W, C]
CTX = jax.random.uniform(jax.random.key(1), (2, 2, 8, 8, 1), minval=-1, maxval=1)


def run_levels(cfg, xs, S=6):
    st = cd.init_uncertainty(xs[0])
    for i, x in enumerate(xs):
        st = cd.update_uncertainty(st, x, i, cfg, S)
    return st


def test_trajectory_estimator_matches_loop():
    st = run_levels(CFG, X0)
    b = math.ceil(CFG.burn_in * 6)
    ref = sum((np.asarray(X0[i]) - np.asarray(X0[i - 1])) ** 2 for i in range(b + 1, 6))
    np.testing.assert_allclose(st.U, ref, rtol=1e-6)
    assert int(st.count) == 6 - (b + 1)
    const = run_levels(CFG, jnp.stack([X0[0]] * 6))
    assert float(jnp.abs(const.U).max()) == 0.0
    np.testing.assert_array_equal(cd.weight_map(const.U, CFG), 1.0)
    scaled = run_levels(CFG, 3.0 * X0)
    np.testing.assert_allclose(scaled.U, 9.0 * st.U, rtol=1e-5)
    np.testing.assert_allclose(cd.weight_map(scaled.U, CFG), cd.weight_map(st.U, CFG), rtol=1e-4)
    assert float(st.U.min()) >= 0


def test_ensemble_estimator_is_variance():
    cfg = cd.CogDPMConfig(**{**CFG.__dict__, "estimator": "ensemble"})
    st = run_levels(cfg, X0)
    np.testing.assert_allclose(st.U, jnp.broadcast_to(jnp.var(X0[-1], axis=0), X0[-1].shape), rtol=1e-6)


def test_weight_map_mean_one_and_smoothing():
    U = jax.random.uniform(jax.random.key(2), (2, 2, 8, 8, 1)) + 1.0  # no clipping active (max/mean < 4)
    W = cd.weight_map(U, CFG)
    np.testing.assert_allclose(W.mean(axis=(1, 2, 3, 4)), 1.0, rtol=1e-5)
    # the smoothing is a 3x3 zero-padded mean: compare with a numpy loop at one pixel
    Up = np.pad(np.asarray(U), ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
    Us = sum(Up[:, :, i : i + 8, j : j + 8] for i in range(3) for j in range(3)) / 9
    ref = (Us + CFG.delta) / (Us.mean(axis=(1, 2, 3, 4), keepdims=True) + CFG.delta)
    np.testing.assert_allclose(W, np.clip(ref, 0, CFG.w_max), rtol=1e-5)
    spike = jnp.zeros((1, 1, 8, 8, 1)).at[0, 0, 4, 4, 0].set(1.0)
    assert float(cd.weight_map(spike, CFG).max()) == CFG.w_max
    np.testing.assert_allclose(cd.precision(jnp.zeros(3)), 1e6, rtol=1e-6)


def test_guided_eps_special_cases():
    ec, eu = X0[0], X0[1]
    np.testing.assert_array_equal(cd.guided_eps(ec, eu, jnp.full_like(ec, 2.0), 0.0), ec)
    np.testing.assert_allclose(cd.guided_eps(ec, eu, 1.0, 1.5), ec + 1.5 * (ec - eu), rtol=1e-6)


def stub(mu_c, mu_u, s=0.3):
    """Exact Gaussian scores: conditional mean mu_c, unconditional mu_u (x0 ~ N(mu, s^2) per entry)."""
    abar = cd.schedule(CFG).abar

    def eps(x, t, c, h):
        a = abar[t - 1].reshape(-1, 1, 1, 1, 1)
        mu = jnp.where(h.reshape(-1, 1, 1, 1, 1), mu_c, mu_u)
        return jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * mu) / (a * s**2 + 1 - a)

    return eps


def test_sampler_modes_and_reductions():
    fn = stub(0.4, 0.0)
    k = jax.random.key(5)
    none, _ = cd.sample(None, CFG, k, CTX, "none", eps_fn=fn)
    # 'none' is the plain conditional DDIM chain of the core with the same key
    ref = d.ddim_sample(lambda x, t: fn(x, t, None, jnp.ones(x.shape[0], bool)), cd.schedule(CFG), k,
                        (3 * 2, 2, 8, 8, 1), levels=cd.levels(CFG), clip=1.0)
    np.testing.assert_allclose(none.reshape(ref.shape), ref, atol=1e-6)
    (n2, cfgs, pw), (_, _, U) = cd.sample_modes(None, CFG, k, CTX, ("none", "cfg", "pw"), eps_fn=fn)
    np.testing.assert_allclose(n2, none, atol=1e-5)  # w = 0 through the guided path is the conditional chain
    assert pw.shape == U.shape == (3, 2, 2, 8, 8, 1) and float(U.min()) >= 0 and float(U.max()) > 0
    assert float(cfgs.mean()) > float(none.mean())  # guidance pushes away from the unconditional mean
    assert not np.allclose(pw, cfgs)
    # W == 1 (the burn-in covers every level) makes 'pw' exactly CFG
    late = cd.CogDPMConfig(**{**CFG.__dict__, "burn_in": 0.99})
    c2, p2 = cd.sample_modes(None, late, k, CTX, ("cfg", "pw"), eps_fn=fn)[0]
    np.testing.assert_array_equal(p2, c2)


@pytest.fixture(scope="module")
def params():
    return jax.jit(cd.init, static_argnums=1)(jax.random.key(0), CFG)


def test_unet_denoise_loss_grad(params):
    x = jax.random.normal(jax.random.key(3), (2, 2, 8, 8, 1))
    t = jnp.array([1, 500])
    out = jax.eval_shape(lambda p: cd.denoise(p, CFG, x, t, CTX, jnp.array([True, False])), params)
    assert out.shape == x.shape
    ctx = jnp.concatenate([CTX] * 32)
    batch = {"context": ctx, "target": jnp.zeros((64, 2, 8, 8, 1))}
    (val, aux), g = jax.jit(jax.value_and_grad(lambda p, k: cd.loss(p, CFG, k, batch), has_aux=True))(
        params, jax.random.key(4))
    assert np.isfinite(float(val)) and all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(g))
    # the last conv is zero-initialised: output 0, loss = E eps^2 ~ 1
    assert abs(float(val) - 1.0) < 0.3
    assert 0.75 < float(aux["ctx_fraction"]) < 1.0  # condition dropout p_uncond = 0.1
    assert any(float(jnp.abs(a).max()) > 0 for a in jax.tree.leaves(g))
