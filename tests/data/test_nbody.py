"""The charged N-body simulator (zoo.data.nbody) against a numpy port of the official ChargedParticlesSim,
force clipping, and the dataset-level statistics of spec papers/ponita.md §5a."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.data import nbody


def official_trajectory(rs, T=5000, sample_freq=100, n=5):
    """Independent numpy port of ``ChargedParticlesSim.sample_trajectory`` (box 5, loc_std 1, vel_norm 0.5,
    dt 1e-3, max force 100, noise variance 0); returns loc, vel f[49, n, 3] and charges f[n]."""
    t_save = T // sample_freq - 1
    charges = rs.choice(np.array([-1.0, 0.0, 1.0]), size=(n, 1), p=[0.5, 0, 0.5])
    edges = charges.dot(charges.T)
    loc, vel = np.zeros((t_save, 3, n)), np.zeros((t_save, 3, n))
    x = rs.randn(3, n) * 1.0
    v = rs.randn(3, n)
    v = v * 0.5 / np.sqrt((v**2).sum(axis=0)).reshape(1, -1)
    over = x > 5
    x[over], v[over] = 10 - x[over], -np.abs(v[over])
    under = x < -5
    x[under], v[under] = -10 - x[under], np.abs(v[under])

    def force(x):
        a = x.T
        nrm = (a**2).sum(1)
        d2 = nrm[:, None] + nrm[None, :] - 2 * a.dot(a.T)
        with np.errstate(divide="ignore", invalid="ignore"):
            size = edges / np.power(d2, 1.5)
        np.fill_diagonal(size, 0)
        f = (size[None] * np.stack([np.subtract.outer(x[k], x[k]) for k in range(3)])).sum(-1)
        return np.clip(f, -100, 100)

    v = v + 1e-3 * force(x)
    c = 0
    for i in range(1, T):
        x = x + 1e-3 * v
        if i % sample_freq == 0:
            loc[c], vel[c] = x, v
            c += 1
        v = v + 1e-3 * force(x)
    rs.randn(t_save, 3, n)
    rs.randn(t_save, 3, n)
    return loc.transpose(0, 2, 1), vel.transpose(0, 2, 1), charges[:, 0]


def test_first_trajectory_matches_official_reference():
    loc, vel, q = official_trajectory(np.random.RandomState(43))
    ic = nbody.draw_initial_conditions(np.random.RandomState(43), 2)
    np.testing.assert_array_equal(ic["charges"][0], q)
    with jax.enable_x64(True):
        out = nbody.simulate_charged(jnp.asarray(ic["charges"]), jnp.asarray(ic["x0"]), jnp.asarray(ic["v0"]))
    assert out["loc"].shape == (2, 49, 5, 3)
    np.testing.assert_allclose(np.asarray(out["loc"][0]), loc, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(out["vel"][0]), vel, rtol=0, atol=1e-9)
    # the stream continues exactly: the second draw of both generators agrees
    rs = np.random.RandomState(43)
    official_trajectory(rs)
    q2 = rs.choice(np.array([-1.0, 0.0, 1.0]), size=(5, 1), p=[0.5, 0, 0.5])[:, 0]
    np.testing.assert_array_equal(ic["charges"][1], q2)


def test_force_clipping_and_symmetry():
    q = jnp.array([[1.0, 1.0, -1.0]])
    x = jnp.array([[[0.0, 0, 0], [0.01, 0, 0], [3.0, 0, 0]]])
    f = nbody.charged_forces(q, x)
    assert float(f[0, 0, 0]) == -100.0 and float(f[0, 1, 0]) == 100.0  # clipped (unclipped ~1e4)
    far = nbody.charged_forces(q, x.at[0, 1, 0].set(1.0))
    np.testing.assert_allclose(far.sum(1), 0.0, atol=1e-6)  # Newton's third law without clipping
    with pytest.raises(ValueError, match="x0: expected shape"):
        nbody.simulate_charged(q, x[:, :2], x)


@pytest.mark.slow
def test_dataset_statistics_match_spec():
    """Spec §5a: zero-motion 0.2715, constant velocity 0.1101, x + gamma v 0.0847 (gamma 0.7246) on the 2,000 test
    trajectories. ~4% of trajectories are chaotic and rounding-sensitive, so the velocity-based MSEs carry a few
    percent of spread between implementations (ours: 0.2716 / 0.1066 / 0.0828, gamma 0.7234)."""
    d = nbody.nbody_small_arrays(43)
    assert d["train"]["pos"].shape == (3000, 5, 3) and d["test"]["target"].shape == (2000, 5, 3)
    b = nbody.baseline_mse(d["train"], d["test"])
    assert b["zero"] == pytest.approx(0.2715, rel=0.005)
    assert b["gamma"] == pytest.approx(0.7246, rel=0.005)
    assert b["const_vel"] == pytest.approx(0.1101, rel=0.05)
    assert b["linear"] == pytest.approx(0.0847, rel=0.05)
    assert b["linear"] < b["const_vel"] < b["zero"]
