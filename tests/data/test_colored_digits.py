"""zoo.data.colored_digits: geometry, colour statistics, control mode, determinism, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.data import colored_digits as cd


@pytest.fixture(scope="module")
def setup():
    key = jax.random.key(0)
    maps = cd.color_maps(key)
    imgs = jax.random.uniform(jax.random.key(1), (400, 8, 8))
    y = jax.random.randint(jax.random.key(2), (400,), 0, 10)
    return maps, imgs, y


def test_geometry_and_rho_one(setup):
    maps, imgs, y = setup
    assert all(sorted(np.asarray(r).tolist()) == list(range(10)) for r in maps)
    x = np.asarray(cd.make_multicolor(jax.random.key(3), imgs, y, maps, 1.0))
    assert x.shape == (400, 24, 24, 3)
    np.testing.assert_allclose(x[:, 8:16, 8:16, 0], imgs, rtol=1e-6)
    np.testing.assert_allclose(x[:, 8:16, 8:16, 2], imgs, rtol=1e-6)
    idx = cd.patch_index(8)
    assert sorted(set(idx.ravel().tolist())) == list(range(-1, 32)) and idx[0, 4] == 1 and idx[4, 0] == 2
    for j in (0, 13, 31):
        r, c = np.argwhere(idx == j)[0]
        np.testing.assert_allclose(x[:, r, c], cd.PALETTE10[np.asarray(maps)[j, np.asarray(y)]])
        patch = x[:, idx == j]
        assert np.all(patch == patch[:, :1])  # each patch constant


def test_colour_statistics_and_single_colour(setup):
    maps, _, _ = setup
    y = jnp.zeros(20000, jnp.int32)
    for rho in (0.0, 0.3):
        col = np.asarray(cd.sample_patch_colors(jax.random.key(4), y, maps, rho))
        agree = (col == np.asarray(maps)[:, 0][None]).mean()
        p = rho + (1 - rho) / 10
        assert abs(agree - p) < 5 * np.sqrt(p * (1 - p) / col.size)
    counts = np.bincount(col[:, 5], minlength=10)
    assert counts.min() > 0
    single = np.asarray(cd.sample_patch_colors(jax.random.key(5), y[:50], maps, 0.5, single_color=True))
    assert np.all(single == single[:, :1])
    a = cd.sample_patch_colors(jax.random.key(6), y[:50], maps, 0.5)
    assert np.array_equal(a, cd.sample_patch_colors(jax.random.key(6), y[:50], maps, 0.5))


def test_bad_inputs(setup):
    maps, imgs, y = setup
    with pytest.raises(ValueError, match="rho"):
        cd.make_multicolor(jax.random.key(0), imgs, y, maps, 1.5)
    with pytest.raises(ValueError, match="labels"):
        cd.make_multicolor(jax.random.key(0), imgs, y + 10, maps, 0.5)
    with pytest.raises(ValueError, match="images"):
        cd.make_multicolor(jax.random.key(0), imgs[:, :, :6], y, maps, 0.5)
    with pytest.raises(ValueError, match="palette"):
        cd.make_multicolor(jax.random.key(0), imgs, y, maps, 0.5, palette=cd.PALETTE10[:5])
    with pytest.raises(ValueError, match="h"):
        cd.patch_index(7)
