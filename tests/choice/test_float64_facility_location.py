"""Float64 end to end for zoo.choice.facility_location: float64 in, float64 out, equal to numpy float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.choice import facility_location as fl

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_float64_matches_numpy():
    n = 6
    x = np.concatenate([RNG.random((200, n)), RNG.integers(0, 5, (200, n)) / 4])
    xs = np.sort(x, -1)
    k = np.arange(1, n + 1)
    up_ref = np.max(np.minimum(xs, (n - k + 1) / n), -1)
    up = fl.uniform_phantom(x)
    assert up.dtype == jnp.float64
    np.testing.assert_allclose(up, up_ref, atol=1e-12)
    np.testing.assert_allclose(fl.phantom_mechanism(x, fl.init_uniform_phantoms(n, jnp.float64)),
                               np.median(np.concatenate([x, np.broadcast_to(np.arange(n + 1) / n, (400, n + 1))], -1), -1),
                               atol=1e-12)
    lo, hi = fl.feasible_interval(x, "pf")
    assert lo.dtype == jnp.float64
    np.testing.assert_allclose(lo, np.max(xs - (k - 1) / n, -1), atol=1e-12)
    np.testing.assert_allclose(hi, np.min(xs + (n - k) / n, -1), atol=1e-12)
    med = xs[:, (n - 1) // 2]
    sw = lambda y: n - np.abs(y[:, None] - x).sum(-1)  # noqa: E731
    np.testing.assert_allclose(fl.approx_ratio(x, up, "sw"), sw(med) / sw(up_ref), rtol=1e-12)
    for a in fl.AXIOMS:  # tau = 1e-9 in float64
        assert bool(fl.satisfies(x, up, a).all()), a
    y = fl.nash_outcome(fl.mean_mechanism, x[:20], n_bisect=55)[1]
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(y, up_ref[:20], atol=1e-10)
