"""Float64 end to end for zoo.choice.fair_subset_selection: committee scores and marginal gains in float64 equal a
python float64 reference to 1e-10."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.choice import fair_subset_selection as fs


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_float64_scores_and_gains():
    rng = np.random.default_rng(3)
    pos = np.argsort(rng.random((7, 5)), 1).argsort(1).astype(np.int32)
    C = fs.enumerate_committees(5, 3)
    rule = fs.geometric_owa(3, 0.3)  # non-integer weights: float64 matters
    assert rule.owa.dtype == jnp.float64
    lam = 0.3 ** np.arange(3)
    ref = [np.mean([np.sort(4 - pos[v, S])[::-1] @ lam for v in range(7)]) for S in C]
    got = fs.committee_score(pos, C, rule)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-10)
    cur = np.zeros(5, bool)
    cur[[0, 2]] = True
    g = fs.marginal_gains(pos, cur, rule)
    base = np.mean([np.sort(4 - pos[v, [0, 2]])[::-1] @ lam[:2] for v in range(7)])
    for c in (1, 3, 4):
        full = np.mean([np.sort(4 - pos[v, [0, 2, c]])[::-1] @ lam for v in range(7)])
        assert abs(float(g[c]) - (full - base)) <= 1e-10
    inst = fs.init_instance(6)
    assert inst.w.dtype == jnp.float64 and fs.biased_log_weights(inst, 1.0).dtype == jnp.float64
