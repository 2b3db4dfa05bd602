"""float64 end to end: schedule, DDIM step, CRPS, FSS and the weight map against numpy float64 at ~1e-10."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.generative import cogdpm as cd
from zoo.generative import diffusion as d
from zoo.generative import metrics as m


def test_float64_against_numpy():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        sch = d.linear_schedule(1000)
        assert sch.abar.dtype == jnp.float64
        ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
        np.testing.assert_allclose(np.asarray(sch.abar), ab, rtol=1e-12)
        x, e = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
        a_t, a_s = ab[499], ab[99]
        x0 = (x - np.sqrt(1 - a_t) * e) / np.sqrt(a_t)
        out = d.ddim_step(jnp.asarray(x), jnp.asarray(e), a_t, a_s, 0.0)
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(out), np.sqrt(a_s) * x0 + np.sqrt(1 - a_s) * e, rtol=1e-10)
        ens, y = rng.normal(size=(6, 5)), rng.normal(size=5)
        ref = np.abs(ens - y).mean(0) - np.abs(ens[:, None] - ens[None]).sum((0, 1)) / (2 * 36)
        got = m.crps_ensemble(jnp.asarray(ens), jnp.asarray(y))
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-10, atol=1e-12)
        cfg = cd.CogDPMConfig(height=8, width=8, widths=(8,), frames_in=1, frames_out=1, smooth=1, w_max=100.0)
        U = rng.uniform(size=(2, 1, 8, 8, 1))
        W = cd.weight_map(jnp.asarray(U), cfg)
        np.testing.assert_allclose(np.asarray(W), (U + 1e-6) / (U.mean(axis=(1, 2, 3, 4), keepdims=True) + 1e-6),
                                   rtol=1e-10)
