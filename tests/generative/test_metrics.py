"""Forecast metrics vs independent numpy/scipy references."""

import itertools

import jax
import numpy as np
from scipy.ndimage import uniform_filter

from zoo.generative import metrics as m

RNG = np.random.default_rng(0)
PRED = RNG.gamma(0.6, 3.0, (3, 2, 8, 8)).astype(np.float32)
OBS = RNG.gamma(0.6, 3.0, (3, 2, 8, 8)).astype(np.float32)


def np_csi(p, o, tau, pool):
    if pool > 1:
        sh = p.shape[:-2] + (p.shape[-2] // pool, pool, p.shape[-1] // pool, pool)
        p, o = p.reshape(sh).max((-3, -1)), o.reshape(sh).max((-3, -1))
    P, O = p >= tau, o >= tau
    return (P & O).sum(), (P & ~O).sum(), (~P & O).sum()


def test_csi_counts_and_pooling():
    for tau, pool in itertools.product((1.0, 4.0), (1, 2, 4)):
        got = [int(v) for v in m.csi_counts(PRED, OBS, tau, pool)]
        ref = np_csi(PRED, OBS, tau, pool)
        assert got == [int(v) for v in ref]
        tp, fp, fn = ref
        np.testing.assert_allclose(float(m.csi(PRED, OBS, tau, pool)), tp / (tp + fp + fn), rtol=1e-6)
    assert float(m.csi(OBS, OBS, 1.0)) == 1.0
    assert np.isnan(float(m.csi(PRED * 0, OBS * 0, 1.0)))


def test_fss_vs_scipy():
    for tau, n in itertools.product((1.0, 4.0), (1, 3, 5)):
        fp = np.stack([uniform_filter((f >= tau).astype(np.float64), n, mode="constant") for f in PRED.reshape(-1, 8, 8)])
        fo = np.stack([uniform_filter((f >= tau).astype(np.float64), n, mode="constant") for f in OBS.reshape(-1, 8, 8)])
        ref = 1 - ((fp - fo) ** 2).sum() / ((fp**2).sum() + (fo**2).sum())
        np.testing.assert_allclose(float(m.fss(PRED, OBS, tau, n)), ref, rtol=1e-5)
    assert float(m.fss(OBS, OBS, 1.0, 3)) == 1.0


def test_crps_pairwise_sorted_integral():
    ens, y = RNG.normal(size=(5, 7)), RNG.normal(size=7)
    pair = np.abs(ens - y).mean(0) - np.abs(ens[:, None] - ens[None]).sum((0, 1)) / (2 * 25)
    np.testing.assert_allclose(m.crps_ensemble(ens, y), pair, rtol=1e-5, atol=1e-6)
    fair = np.abs(ens - y).mean(0) - np.abs(ens[:, None] - ens[None]).sum((0, 1)) / (2 * 5 * 4)
    np.testing.assert_allclose(m.crps_ensemble(ens, y, fair=True), fair, rtol=1e-5, atol=1e-6)
    z = np.linspace(-8, 8, 40001)  # integral of (F_ens(z) - H(z - y))^2
    F = (ens[:, 0][:, None] <= z).mean(0)
    integ = np.sum((F - (z >= y[0])) ** 2) * (z[1] - z[0])
    np.testing.assert_allclose(float(m.crps_ensemble(ens, y)[0]), integ, atol=2e-3)
    np.testing.assert_allclose(m.crps_ensemble(ens[:1], y), np.abs(ens[0] - y), rtol=1e-6)
    np.testing.assert_allclose(m.crps_ensemble(np.stack([y] * 3), y), 0.0, atol=1e-7)


def test_jit():
    f = jax.jit(lambda p, o: (m.csi(p, o, 1.0, 2), m.fss(p, o, 1.0, 3), m.crps_ensemble(p, o[0]).mean()))
    a, b, c = f(PRED, OBS)
    np.testing.assert_allclose(float(a), float(m.csi(PRED, OBS, 1.0, 2)))
    assert np.isfinite(float(b)) and np.isfinite(float(c))
