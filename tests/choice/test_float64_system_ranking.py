"""Float64 end to end for zoo.choice.system_ranking and zoo.choice.core: float64 in, float64 out, equal to
numpy/scipy float64 references at 1e-10."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as ss

from zoo.choice import core
from zoo.choice import system_ranking as sr

RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_float64_matches_scipy_and_numpy():
    n, t = 7, 5
    S = np.round(RNG.normal(size=(n, t)), 1) + 1e-9 * RNG.random((n, t))  # near-ties float32 cannot resolve
    mask = RNG.random((n, t)) < 0.8
    mask[:, 0] = True
    m = sr.mean_aggregate(S, mask=mask)
    assert m.dtype == jnp.float64
    np.testing.assert_allclose(m, [S[i, mask[i]].mean() for i in range(n)], rtol=0, atol=1e-12)
    B = core.borda_count(S)
    assert B.dtype == jnp.float64
    np.testing.assert_allclose(B, sum(ss.rankdata(c) for c in S.T), atol=1e-12)
    tau = core.kendall_tau_b(S[:, 0], S[:, 1])
    assert tau.dtype == jnp.float64 and abs(float(tau) - ss.kendalltau(S[:, 0], S[:, 1]).statistic) < 1e-10
    # task-removal curve of the mean, against a scipy loop over the same random orders
    key = jax.random.key(3, impl="rbg")
    c = sr.task_removal_curve(key, S, 2, "mean")
    assert c.dtype == jnp.float64
    orders = np.argsort(np.asarray(jax.random.uniform(key, (2, t))), -1)
    ref = [[ss.kendalltau(S[:, o[:k]].mean(1), S.mean(1)).statistic for k in range(1, t + 1)] for o in orders]
    np.testing.assert_allclose(c, ref, atol=1e-10)
    P = sr.plackett_luce_scores(key, n, t, 0.5, dtype=jnp.float64)
    assert P.dtype == jnp.float64
