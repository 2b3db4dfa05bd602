"""Rows for zoo.generative (diffusion core, CogDPM, metrics) and zoo.data.fields."""

import jax
import jax.numpy as jnp
import numpy as np

from zoo.data import fields
from zoo.generative import cogdpm as cd
from zoo.generative import diffusion as d
from zoo.generative import metrics as m

from ._row import rows

_k = jax.random.PRNGKey(0)
_S = d.linear_schedule(10)
_CFG = cd.CogDPMConfig(frames_in=1, frames_out=1, height=8, width=8, widths=(8,), blocks=1, T=10, sample_steps=3,
                       ensemble_size=2)
_x = jnp.zeros((2, 1, 8, 8, 1))
_nan = _x.at[0, 0, 0, 0, 0].set(jnp.nan)
_f = np.ones((2, 8, 8), np.float32)
_eps = lambda x, t: x  # noqa: E731

ROWS = [
    *rows("zoo.generative.diffusion.linear_schedule",
          ("out of range", lambda: d.linear_schedule(0), "T"),
          ("out of range", lambda: d.linear_schedule(10, beta_start=0.5, beta_end=0.1), "beta_end"),
          ("wrong dtype", lambda: d.linear_schedule(10, dtype=jnp.int32), "dtype")),
    *rows("zoo.generative.diffusion.level_times",
          ("out of range", lambda: d.level_times(10, 11), "S"),
          ("bad choice", lambda: d.level_times(10, 3, "cosine"), "spacing")),
    *rows("zoo.generative.diffusion.x0_from_eps", ("NaN", lambda: d.x0_from_eps(_nan, 1.0, 0.5), "x_t")),
    *rows("zoo.generative.diffusion.eps_from_x0", ("NaN", lambda: d.eps_from_x0(_nan, 1.0, 0.5), "x_t")),
    *rows("zoo.generative.diffusion.q_sample", ("NaN", lambda: d.q_sample(_nan, 1.0, 0.5), "x0")),
    *rows("zoo.generative.diffusion.eps_loss",
          ("not callable", lambda: d.eps_loss(1, _S, _k, jnp.zeros((2, 3))), "eps_fn", TypeError),
          ("NaN", lambda: d.eps_loss(_eps, _S, _k, jnp.array([[jnp.nan]])), "x0")),
    *rows("zoo.generative.diffusion.ddim_step",
          ("out of range", lambda: d.ddim_step(jnp.zeros(2), jnp.zeros(2), 0.5, 0.9, eta=2.0), "eta"),
          ("missing key", lambda: d.ddim_step(jnp.zeros(2), jnp.zeros(2), 0.5, 0.9, eta=1.0), "key")),
    *rows("zoo.generative.diffusion.ddim_sample",
          ("bad levels", lambda: d.ddim_sample(_eps, _S, _k, (2,), levels=[3, 2]), "levels"),
          ("out of range", lambda: d.ddim_sample(_eps, _S, _k, (2,), levels=[1, 11]), "levels"),
          ("not callable", lambda: d.ddim_sample(None, _S, _k, (2,), levels=[1]), "eps_fn", TypeError)),
    *rows("zoo.generative.diffusion.ensemble",
          ("out of range", lambda: d.ensemble(lambda k: k, _k, 0), "M"),
          ("not callable", lambda: d.ensemble(3, _k, 2), "sample_fn", TypeError)),
    *rows("zoo.generative.cogdpm.CogDPMConfig",
          ("out of range", lambda: cd.CogDPMConfig(guidance_w=-1.0), "guidance_w"),
          ("out of range", lambda: cd.CogDPMConfig(T=10, sample_steps=11), "sample_steps"),
          ("too few members", lambda: cd.CogDPMConfig(estimator="ensemble", ensemble_size=1), "ensemble_size"),
          ("bad choice", lambda: cd.CogDPMConfig(mode="both"), "mode"),
          ("indivisible", lambda: cd.CogDPMConfig(height=30, widths=(8, 16, 32)), "height")),
    *rows("zoo.generative.cogdpm.schedule", ("wrong dtype", lambda: cd.schedule(_CFG, jnp.int32), "dtype")),
    *rows("zoo.generative.cogdpm.levels", ("wrong type", lambda: cd.levels(None), "cfg", TypeError)),
    *rows("zoo.generative.cogdpm.init", ("wrong type", lambda: cd.init(_k, None), "cfg", TypeError)),
    *rows("zoo.generative.cogdpm.denoise",
          ("frames mismatch", lambda: cd.denoise({}, _CFG, jnp.zeros((2, 2, 8, 8, 1)), jnp.ones(2, int), _x,
                                                 jnp.ones(2, bool)), "x_t.*frames_out"),
          ("batch mismatch", lambda: cd.denoise({}, _CFG, _x, jnp.ones(3, int), _x, jnp.ones(2, bool)), "t")),
    *rows("zoo.generative.cogdpm.loss",
          ("frames mismatch", lambda: cd.loss({}, _CFG, _k, {"context": jnp.zeros((2, 3, 8, 8, 1)), "target": _x}),
           "context.*frames_in"),
          ("NaN", lambda: cd.loss({}, _CFG, _k, {"context": _x, "target": _nan}), "target"),
          ("missing key", lambda: cd.loss({}, _CFG, _k, {"target": _x}), "batch")),
    *rows("zoo.generative.cogdpm.sample",
          ("NaN", lambda: cd.sample({}, _CFG, _k, _nan), "context"),
          ("frames mismatch", lambda: cd.sample({}, _CFG, _k, jnp.zeros((2, 1, 4, 8, 1))), "context"),
          ("bad choice", lambda: cd.sample({}, _CFG, _k, _x, mode="x"), "mode")),
    *rows("zoo.generative.cogdpm.sample_modes",
          ("empty", lambda: cd.sample_modes({}, _CFG, _k, _x, ()), "modes"),
          ("bad choice", lambda: cd.sample_modes({}, _CFG, _k, _x, ("pw", "x")), "modes")),
    *rows("zoo.generative.cogdpm.init_uncertainty", ("wrong shape", lambda: cd.init_uncertainty(jnp.zeros(())), "x0_like")),
    *rows("zoo.generative.cogdpm.update_uncertainty",
          ("shape mismatch", lambda: cd.update_uncertainty(cd.init_uncertainty(jnp.zeros(3)), jnp.zeros(4), 0, _CFG),
           "state"),
          ("NaN", lambda: cd.update_uncertainty(cd.init_uncertainty(_x), _nan, 0, _CFG), "x0_k")),
    *rows("zoo.generative.cogdpm.precision",
          ("out of range", lambda: cd.precision(jnp.zeros(3), -1.0), "delta"),
          ("NaN", lambda: cd.precision(jnp.array([jnp.nan])), "U")),
    *rows("zoo.generative.cogdpm.weight_map",
          ("negative", lambda: cd.weight_map(-jnp.ones((1, 1, 8, 8, 1)), _CFG), "U"),
          ("wrong shape", lambda: cd.weight_map(jnp.ones((8, 8)), _CFG), "U")),
    *rows("zoo.generative.cogdpm.guided_eps",
          ("out of range", lambda: cd.guided_eps(_x, _x, 1.0, -0.5), "w"),
          ("shape mismatch", lambda: cd.guided_eps(_x, _x[:1], 1.0, 1.0), "eps_c, eps_u"),
          ("NaN", lambda: cd.guided_eps(_nan, _x, 1.0, 1.0), "eps_c")),
    *rows("zoo.generative.metrics.csi_counts",
          ("negative threshold", lambda: m.csi_counts(_f, _f, -1.0), "threshold"),
          ("NaN threshold", lambda: m.csi_counts(_f, _f, float("nan")), "threshold"),
          ("pool not dividing", lambda: m.csi_counts(_f, _f, 1.0, pool=3), "pool"),
          ("shape mismatch", lambda: m.csi_counts(_f, _f[:1], 1.0), "pred, obs")),
    *rows("zoo.generative.metrics.csi", ("NaN", lambda: m.csi(_f * np.nan, _f, 1.0), "pred")),
    *rows("zoo.generative.metrics.fss_sums", ("even window", lambda: m.fss_sums(_f, _f, 1.0, 4), "window")),
    *rows("zoo.generative.metrics.fss",
          ("even window", lambda: m.fss(_f, _f, 1.0, 2), "window"),
          ("negative threshold", lambda: m.fss(_f, _f, -0.1, 3), "threshold")),
    *rows("zoo.generative.metrics.crps_ensemble",
          ("fair with one member", lambda: m.crps_ensemble(_f[:1], _f[0], fair=True), "ens"),
          ("shape mismatch", lambda: m.crps_ensemble(_f, _f), "ens, obs"),
          ("NaN", lambda: m.crps_ensemble(_f, _f[0] * np.nan), "obs")),
    *rows("zoo.generative.metrics.max_pool", ("pool not dividing", lambda: m.max_pool(_f, 3), "pool")),
    *rows("zoo.generative.metrics.moving_average", ("even window", lambda: m.moving_average(_f, 2), "window")),
    *rows("zoo.data.fields.moving_blobs",
          ("out of range", lambda: fields.moving_blobs(0, 0), "n"),
          ("out of range", lambda: fields.moving_blobs(0, 2, noise_scale=-1.0), "noise_scale")),
    *rows("zoo.data.fields.render_blobs",
          ("shape mismatch", lambda: fields.render_blobs(np.zeros((2, 2)), np.ones(3), np.ones(2), (8, 8)),
           "centres, widths, amps"),
          ("non-positive width", lambda: fields.render_blobs(np.zeros((1, 2)), np.zeros(1), np.ones(1), (8, 8)),
           "widths")),
]

EXEMPT = {
    "zoo.generative.cogdpm.UNet": "a flax module class; its inputs are checked by init / denoise",
    "zoo.generative.cogdpm.PrecisionState": "a NamedTuple container; checked by update_uncertainty",
    "zoo.generative.diffusion.Schedule": "a NamedTuple container; built and checked by linear_schedule",
}
