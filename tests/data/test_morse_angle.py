"""MorseAngle energies and forces (zoo.data.morse_angle): hand values, invariance, F = -grad E, generator."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.data import morse_angle as M

_energy = jax.jit(M.energy)
_energy_and_forces = jax.jit(M.energy_and_forces)


def test_two_and_three_atom_hand_values():
    with jax.enable_x64(True):
        r = 1.3
        two = jnp.array([[0.0, 0, 0], [r, 0, 0]])
        fc = 0.5 * (np.cos(np.pi * r / 2.5) + 1)
        morse = ((1 - np.exp(-2 * (r - 1))) ** 2 - 1) * fc
        assert float(_energy(two)) == pytest.approx(morse, rel=1e-12)
        # right angle at atom 0 with both arms of length 1: cos = 0
        three = jnp.array([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]])
        fc1 = 0.5 * (np.cos(np.pi / 2.5) + 1)
        d12 = np.sqrt(2)
        fc12 = 0.5 * (np.cos(np.pi * d12 / 2.5) + 1)
        pair = 2 * (-1 * fc1) + ((1 - np.exp(-2 * (d12 - 1))) ** 2 - 1) * fc12
        cos45 = np.cos(np.pi / 4)
        ang = 0.5 * (fc1 * fc1 * (0 + 1 / 3) ** 2 + 2 * fc1 * fc12 * (cos45 + 1 / 3) ** 2)
        assert float(_energy(three)) == pytest.approx(pair + ang, rel=1e-12)
        assert float(_energy(jnp.array([[0.0, 0, 0], [3.0, 0, 0]]))) == 0.0  # beyond the cutoff


def test_forces_are_minus_gradient_and_invariant():
    with jax.enable_x64(True):
        d = M.make_morse_angle(1, 8, n_train=3, n_val=1, n_test=1)
        pos = jnp.asarray(d["train"]["pos"][0])
        e, f = _energy_and_forces(pos)
        np.testing.assert_allclose(e, d["train"]["energy"][0], rtol=1e-12)
        np.testing.assert_allclose(f.sum(0), 0.0, atol=1e-10)
        h = 1e-6
        dp = jnp.zeros_like(pos).at[2, 1].set(h)
        fd = -(_energy(pos + dp) - _energy(pos - dp)) / (2 * h)
        assert float(f[2, 1]) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)
        q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
        e2, f2 = _energy_and_forces(pos @ jnp.asarray(q).T + 1.0)
        np.testing.assert_allclose(e2, e, rtol=1e-12)
        np.testing.assert_allclose(f2, f @ jnp.asarray(q).T, atol=1e-10)


def test_generator_splits_and_errors():
    d = M.make_morse_angle(0, 12, n_train=4, n_val=2, n_test=3)
    assert d["train"]["pos"].shape == (4, 12, 3) and d["test"]["forces"].shape == (3, 12, 3)
    assert d["val"]["energy"].shape == (2,) and d["train"]["species"].shape == (4, 12, 1)
    assert np.isfinite(d["train"]["forces"]).all() and np.abs(d["train"]["forces"]).max() > 0.1
    again = M.make_morse_angle(0, 12, n_train=4, n_val=2, n_test=3)
    np.testing.assert_array_equal(again["test"]["pos"], d["test"]["pos"])
    with pytest.raises(ValueError, match="n_atoms: expected one of"):
        M.make_morse_angle(0, 9)
    with pytest.raises(ValueError, match="n_train"):
        M.make_morse_angle(0, 8, n_train=0)
