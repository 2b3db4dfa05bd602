"""The diffusion core against closed forms: schedule, inverses, DDIM/DDPM, exact-score Gaussian sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.generative import diffusion as d

SCH = d.linear_schedule(1000)


def gaussian_eps(mu, s):
    """The exact noise predictor for x0 ~ N(mu, s^2): sqrt(1-abar)(x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar)."""

    def eps(x, t):
        a = SCH.abar[t - 1][:, None]
        return jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * mu) / (a * s**2 + 1 - a)

    return eps


def test_schedule_closed_form():
    beta = np.linspace(1e-4, 0.02, 1000)
    for t in (1, 10, 250, 500, 1000):
        np.testing.assert_allclose(float(SCH.abar[t - 1]), np.prod(1 - beta[:t]), rtol=1e-5)
    np.testing.assert_allclose(SCH.alpha, 1 - SCH.beta, rtol=1e-6)


def test_level_times():
    q = d.level_times(1000, 50)
    assert q[0] == 1 and q[-1] == 1000 and np.all(np.diff(q) > 0) and len(q) <= 50
    k = np.arange(1, 51)
    ref = np.unique(np.round((1 + (k - 1) * (np.sqrt(1000) - 1) / 49) ** 2).astype(int))
    np.testing.assert_array_equal(q, ref)
    np.testing.assert_array_equal(d.level_times(10, 10, "linear"), np.arange(1, 11))
    assert q[1] < d.level_times(1000, 50, "linear")[1]  # quadratic is denser near t = 0


def test_inverses_and_q_sample():
    k1, k2 = jax.random.split(jax.random.key(0))
    x0, eps = jax.random.normal(k1, (4, 3)), jax.random.normal(k2, (4, 3))
    a = SCH.abar[jnp.array([0, 10, 500, 999])]
    xt = d.q_sample(x0, eps, a)
    np.testing.assert_allclose(d.x0_from_eps(xt, eps, a), x0, atol=2e-4)
    np.testing.assert_allclose(d.eps_from_x0(xt, x0, a), eps, atol=1e-5)


def test_ddim_eta1_adjacent_is_ddpm_posterior():
    t = 300
    a_t, a_s, beta = SCH.abar[t - 1], SCH.abar[t - 2], SCH.beta[t - 1]
    x, eps = jnp.full((20000,), 0.3), jnp.full((20000,), -0.2)
    out = d.ddim_step(x, eps, a_t, a_s, 1.0, jax.random.key(1))
    var_ref = (1 - a_s) / (1 - a_t) * beta
    np.testing.assert_allclose(np.var(np.asarray(out)), var_ref, rtol=0.05)
    # DDPM posterior mean in eps form: (x - beta/sqrt(1-abar_t) eps) / sqrt(alpha_t)
    mean_ref = (0.3 - beta / jnp.sqrt(1 - a_t) * -0.2) / jnp.sqrt(1 - beta)
    np.testing.assert_allclose(np.mean(np.asarray(out)), mean_ref, atol=4 * np.sqrt(var_ref / 20000))
    det = d.ddim_step(x, eps, a_t, a_s, 0.0)
    np.testing.assert_array_equal(det, d.ddim_step(x, eps, a_t, a_s, 0.0))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_exact_score_gaussian_full_chain(eta):
    mu, s, n = 0.5, 0.2, 10_000
    out = np.asarray(d.ddim_sample(gaussian_eps(mu, s), SCH, jax.random.key(2), (n, 1), levels=np.arange(1, 1001),
                                   eta=eta, clip=None))
    assert abs(out.mean() - mu) < 3 * s / np.sqrt(n)
    np.testing.assert_allclose(out.var(), s**2, rtol=0.05)
    few = np.asarray(d.ddim_sample(gaussian_eps(mu, s), SCH, jax.random.key(2), (n, 1),
                                   levels=d.level_times(1000, 50, "linear"), eta=eta, clip=None))
    assert few.var() < out.var()  # few-level DDIM under-disperses (spec §7)


def test_cfg_moves_mean_beyond_condition():
    mu_c, mu_u, s = 0.5, 0.0, 0.2
    ec, eu = gaussian_eps(mu_c, s), gaussian_eps(mu_u, s)
    guided = lambda x, t: ec(x, t) + 1.0 * (ec(x, t) - eu(x, t))  # noqa: E731
    lv = d.level_times(1000, 50)
    out = np.asarray(d.ddim_sample(guided, SCH, jax.random.key(3), (4000, 1), levels=lv, clip=None))
    assert out.mean() > mu_c + 0.05


def test_eps_loss_zero_for_true_eps_and_grad():
    x0 = jnp.zeros((64, 3))
    exact = lambda x, t: x / jnp.sqrt(1 - SCH.abar[t - 1])[:, None]  # noqa: E731  (x0 = 0: x_t = sqrt(1-abar) eps)
    val, aux = d.eps_loss(exact, SCH, jax.random.key(0), x0)
    assert float(val) < 1e-8 and aux["loss"] == val
    g = jax.grad(lambda c: d.eps_loss(lambda x, t: c * x, SCH, jax.random.key(0), x0 + 1.0)[0])(0.5)
    assert np.isfinite(float(g))


def test_ensemble_vmap_and_jit():
    f = jax.jit(lambda k: d.ensemble(lambda kk: d.ddim_sample(gaussian_eps(0.0, 1.0), SCH, kk, (2, 3),
                                                              levels=d.level_times(1000, 5)), k, 3))
    out = f(jax.random.key(0))
    assert out.shape == (3, 2, 3) and not np.allclose(out[0], out[1])
    np.testing.assert_array_equal(out, f(jax.random.key(0)))
