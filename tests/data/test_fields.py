"""The moving-blobs field generator: rendering closed form, periodic wrap, determinism, the oracle map."""

import numpy as np

from zoo.data.fields import moving_blobs, rain_to_z, render_blobs, z_to_rain


def test_render_closed_form_and_wrap():
    c, s, a = np.array([[1.0, 6.5], [4.0, 2.0]]), np.array([1.5, 2.0]), np.array([5.0, 3.0])
    R = render_blobs(c, s, a, (8, 8), floor=0.0)
    ref = np.zeros((8, 8))
    for i in range(8):
        for j in range(8):
            for k in range(2):
                best = min(((i - c[k, 0] + di) ** 2 + (j - c[k, 1] + dj) ** 2) for di in (-8, 0, 8) for dj in (-8, 0, 8))
                ref[i, j] += a[k] * np.exp(-best / (2 * s[k] ** 2))
    np.testing.assert_allclose(R, ref, rtol=1e-12)
    shifted = render_blobs(c + np.array([8.0, -8.0]), s, a, (8, 8), floor=0.0)
    np.testing.assert_allclose(shifted, R, atol=1e-12)
    assert (render_blobs(c, s, a, (8, 8)) >= 0.1).sum() + (render_blobs(c, s, a, (8, 8)) == 0).sum() == 64


def test_generator_determinism_and_oracle():
    a = moving_blobs(3, 5, frames_in=2, frames_out=2, size=8, oracle_samples=4)
    b = moving_blobs(3, 5, frames_in=2, frames_out=2, size=8, oracle_samples=4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["context"].shape == (5, 2, 8, 8) and a["oracle_spread"].shape == (5, 2, 8, 8)
    assert a["oracle_spread"].max() > 0
    c = moving_blobs(4, 5, frames_in=2, frames_out=2, size=8)
    assert not np.array_equal(a["target"], c["target"])
    det = moving_blobs(3, 5, frames_in=2, frames_out=2, size=8, oracle_samples=4, noise_scale=0.0)
    assert det["oracle_spread"].max() < 1e-4
    # the same oracle dynamics with zero noise continue the true sequence exactly
    np.testing.assert_array_equal(rain_to_z(np.zeros(1)), -1.0)
    np.testing.assert_allclose(z_to_rain(rain_to_z(a["target"].astype(np.float64))), a["target"], rtol=1e-5)
