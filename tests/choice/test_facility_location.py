"""zoo.choice.facility_location against numpy / brute-force references and its defining properties."""

from __future__ import annotations

import itertools
from fractions import Fraction
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.choice import facility_location as fl

RNG = np.random.default_rng(0)


def _grid_profiles(b, n, levels=5):
    return (RNG.integers(0, levels, (b, n)) / (levels - 1)).astype(np.float32)


def _np_phantom(x, p):  # independent reference: sort-based median of the 2n+1 values
    v = np.concatenate([x, np.broadcast_to(p, x.shape[:-1] + p.shape)], axis=-1)
    return np.median(v, axis=-1)


@pytest.fixture(scope="module")
def profiles():
    out = {}
    for n in (3, 5):
        u = RNG.random((60, n)).astype(np.float32)
        out[n] = np.concatenate([u, _grid_profiles(60, n), RNG.integers(0, 2, (20, n)).astype(np.float32)])
    return out


def test_phantom_mechanisms_match_numpy_median(profiles):
    for n, x in profiles.items():
        up = np.asarray(fl.uniform_phantom(x))
        np.testing.assert_allclose(up, _np_phantom(x, np.arange(n + 1) / n), atol=1e-6)
        # the second closed form, min_k max(x_(k), (n-k)/n)
        xs = np.sort(x, -1)
        np.testing.assert_allclose(up, np.min(np.maximum(xs, (n - 1 - np.arange(n)) / n), -1), atol=1e-6)
        np.testing.assert_allclose(np.asarray(fl.phantom_mechanism(x, fl.init_uniform_phantoms(n))), up, atol=1e-6)
        np.testing.assert_allclose(np.asarray(fl.phantom_mechanism(x, fl.init_median_phantoms(n))),
                                   xs[:, (n - 1) // 2], atol=0)
        np.testing.assert_allclose(np.asarray(fl.median(x)), xs[:, (n - 1) // 2])
        p = np.sort(RNG.random(n + 1)).astype(np.float32)
        np.testing.assert_allclose(np.asarray(fl.phantom_mechanism(x, p)), _np_phantom(x, p), atol=1e-7)


def test_phantom_vectors():
    np.testing.assert_allclose(fl.init_ifs_median_phantoms(4), [0, .25, .25, .75, 1])
    np.testing.assert_allclose(fl.init_ifs_median_phantoms(5), [0, .2, .2, .8, .8, 1])
    assert bool(fl.ifs_phantom_criterion(fl.init_ifs_median_phantoms(7)))
    assert bool(fl.ifs_phantom_criterion(fl.init_uniform_phantoms(7)))
    assert not bool(fl.ifs_phantom_criterion(fl.init_median_phantoms(5)))


def test_endpoint_profiles_and_axioms_of_up():
    for n in (3, 5):
        e = fl.endpoint_profiles(n)
        np.testing.assert_allclose(fl.uniform_phantom(e), e.sum(-1) / n, atol=1e-7)
        assert bool(fl.satisfies(e, fl.uniform_phantom(e), "prop").all())
        # the median fails IFS on (0^{n-1}, 1) for every n
        assert not bool(fl.satisfies(e, fl.median(e), "ifs")[n - 1])  # the profile (0^{n-1}, 1)


def _brute_interval(x, axiom):
    """Axiom interval by enumerating agents (IFS), locations (UFS) or every subset (PF)."""
    n = len(x)
    lo, hi = -np.inf, np.inf
    groups = [[i] for i in range(n)] if axiom == "ifs" else (
        [[j for j in range(n) if x[j] == x[i]] for i in range(n)] if axiom == "ufs" else
        [list(s) for r in range(1, n + 1) for s in itertools.combinations(range(n), r)])
    for S in groups:
        need = (1 if axiom == "ifs" else len(S)) / n - (x[S].max() - x[S].min() if axiom == "pf" else 0.0)
        lo, hi = max(lo, x[S].max() - (1 - need)), min(hi, x[S].min() + (1 - need))
    return lo, hi


def test_intervals_match_brute_force_and_nest(profiles):
    for n in (3, 5):
        x = profiles[n]
        ints = {a: np.asarray(fl.feasible_interval(x, a), dtype=np.float64) for a in fl.INTERVAL_AXIOMS}
        for a in fl.INTERVAL_AXIOMS:
            ref = np.array([_brute_interval(r, a) for r in x]).T
            np.testing.assert_allclose(ints[a], ref, atol=1e-6, err_msg=a)
        tol = 1e-6
        assert (ints["pf"][0] >= ints["ufs"][0] - tol).all() and (ints["pf"][1] <= ints["ufs"][1] + tol).all()
        assert (ints["ufs"][0] >= ints["ifs"][0] - tol).all() and (ints["ufs"][1] <= ints["ifs"][1] + tol).all()
        up = np.asarray(fl.uniform_phantom(x))
        for a in fl.AXIOMS:
            assert bool(fl.satisfies(x, up, a).all()), a
        assert bool(fl.satisfies(x, fl.mean_mechanism(x), "ufs").all())
        co = np.asarray(fl.constrained_optimum(x, "pf"))
        assert bool(fl.satisfies(x, co, "pf").all())
        # clip(median) is TC-optimal inside the interval: no point of a dense grid in it does better
        ys = np.linspace(0, 1, 201)
        tc = np.abs(ys[None, :, None] - x[:, None, :]).sum(-1)
        inside = (ys[None] >= ints["pf"][0][:, None] - 1e-6) & (ys[None] <= ints["pf"][1][:, None] + 1e-6)
        best = np.where(inside, tc, np.inf).min(1)
        assert (np.asarray(fl.total_cost(x, co)) <= best + 1e-5).all()


def test_anonymity_reflection_unanimity_monotonicity(profiles):
    x = profiles[5]
    perm = RNG.permutation(5)
    mechs = (fl.uniform_phantom, fl.median, fl.mean_mechanism, fl.midpoint_mechanism)
    for m in mechs:
        np.testing.assert_allclose(m(x[:, perm]), m(x), atol=1e-6)
        np.testing.assert_allclose(m(1 - x), 1 - np.asarray(m(x)), atol=1e-6)  # n = 5 odd: median too
    z = RNG.random(x.shape[0]).astype(np.float32)
    for p in (None, fl.init_ifs_median_phantoms(5)):
        prof = np.repeat(z[:, None], 5, 1)
        y = fl.uniform_phantom(prof) if p is None else fl.phantom_mechanism(prof, p)
        np.testing.assert_allclose(y, z, atol=1e-7)
    raised = np.minimum(x + RNG.random(x.shape).astype(np.float32) * (RNG.random(x.shape) < 0.3), 1)
    assert (np.asarray(fl.uniform_phantom(raised)) >= np.asarray(fl.uniform_phantom(x)) - 1e-7).all()


def test_grad_is_one_hot_or_zero():
    g = jax.grad(lambda x: fl.uniform_phantom(x))
    for x in (jnp.array([0.1, 0.45, 0.9]), jnp.array([0.05, 0.1, 0.95])):  # picks agent 0.45; picks phantom 1/3
        y = float(fl.uniform_phantom(x))
        picks_agent = bool(np.isclose(np.asarray(x), y).any())
        gx = np.asarray(g(x))
        assert gx.sum() == pytest.approx(1.0 if picks_agent else 0.0)
        assert ((gx == 0) | (gx == 1)).all()


def test_jit_and_vmap_over_phantoms(profiles):
    x = profiles[3]
    ps = jnp.sort(jnp.asarray(RNG.random((3, 4)), jnp.float32), -1)
    out = jax.jit(jax.vmap(fl.phantom_mechanism, in_axes=(None, 0)))(x, ps)
    ref = np.stack([_np_phantom(x, np.asarray(p)) for p in ps])
    np.testing.assert_allclose(out, ref, atol=1e-7)
    np.testing.assert_allclose(jax.jit(fl.uniform_phantom)(x), fl.uniform_phantom(x))
    lo, hi = jax.vmap(lambda r: fl.feasible_interval(r, "pf"))(x)
    np.testing.assert_allclose(lo, fl.feasible_interval(x, "pf")[0])


def test_manipulation_gain(profiles):
    x = profiles[5]
    n = 5
    grid = jnp.linspace(0, 1, 41)
    for mech in (fl.uniform_phantom, partial(fl.phantom_mechanism, phantoms=fl.init_ifs_median_phantoms(n))):
        assert float(fl.manipulation_gain(mech, x, grid).max()) <= 1e-6
    assert float(jnp.abs(fl.phantom_manipulation_gain(x, fl.init_ifs_median_phantoms(n))).max()) <= 1e-6
    # mean: agent i moves the outcome within [S_-i/n, (S_-i + 1)/n]; exact gain vs. the grid search
    g = np.asarray(fl.manipulation_gain(fl.mean_mechanism, x, grid))
    s = x.sum(-1, keepdims=True) - x
    lo, hi = s / n, (s + 1) / n
    exact = np.abs(x.mean(-1, keepdims=True) - x) - np.maximum(np.maximum(lo - x, x - hi), 0)
    assert (g <= exact + 1e-6).all() and (g >= exact - 1.0 / 40 / n - 1e-6).all()
    assert (g.max(-1) > 0.01).mean() > 0.3
    assert float(fl.manipulation_gain(fl.midpoint_mechanism, x, grid).max()) > 0.1


def test_nash_outcome_of_the_mean_is_up(profiles):
    x = profiles[5][::7]
    r, y = fl.nash_outcome(fl.mean_mechanism, x, n_bisect=30)
    np.testing.assert_allclose(y, fl.uniform_phantom(x), atol=1e-6)
    assert float(fl.equilibrium_gap(fl.mean_mechanism, x, r, n_bisect=30).max()) <= 1e-6  # a true equilibrium
    assert float(fl.equilibrium_gap(fl.mean_mechanism, x, x, n_bisect=30).max()) > 0.01  # truth is not one
    _, yd = fl.nash_outcome(fl.mean_mechanism, x[:8], method="dynamics", n_sweeps=40, n_bisect=30)
    np.testing.assert_allclose(yd, fl.uniform_phantom(x[:8]), atol=1e-3)
    # a continuous, strictly monotone mechanism that is NOT UFS: sum / (n + 1). Its equilibrium outcome is the
    # phantom mechanism with phantoms k/(n+1), not UP: the theorem's UFS premise matters
    shrunk = lambda v: jnp.sum(v, axis=-1) / (v.shape[-1] + 1)  # noqa: E731
    _, ys = fl.nash_outcome(shrunk, x, n_bisect=30)
    np.testing.assert_allclose(ys, _np_phantom(x, np.arange(6) / 6), atol=1e-6)
    assert np.abs(np.asarray(ys) - np.asarray(fl.uniform_phantom(x))).max() > 0.01


def test_ratios():
    expect = {2: 1, 3: Fraction(6, 5), 4: Fraction(6, 5), 5: Fraction(20, 17), 6: Fraction(6, 5),
              7: Fraction(35, 29), 8: Fraction(6, 5), 9: Fraction(6, 5), 10: Fraction(35, 29)}
    for n, v in expect.items():
        assert fl.worst_endpoint_ratio(n, "sw", exact=True) == v
        assert fl.worst_endpoint_ratio(n, "tc") == pytest.approx(2 - 2 / n)
    for n in (3, 5):
        x = np.concatenate([RNG.random((3000, n)), _grid_profiles(1000, n)]).astype(np.float32)  # 4000 profiles
        r = np.asarray(fl.approx_ratio(x, fl.uniform_phantom(x), "sw"))
        assert r.max() <= fl.worst_endpoint_ratio(n) + 1e-5 and r.min() >= 1 - 1e-6
        e = fl.endpoint_profiles(n)
        assert float(fl.approx_ratio(e, fl.uniform_phantom(e), "sw").max()) == pytest.approx(
            fl.worst_endpoint_ratio(n), abs=1e-6)
        w = np.where(np.asarray(e) == 1, 0.1, 0.0)[n - 1:n + 1]  # (0^{n-1}, 0.1): TC ratio n - 1; (0^n): 0/0 := 1
        np.testing.assert_allclose(fl.approx_ratio(w, fl.uniform_phantom(w), "tc"), [n - 1, 1.0], rtol=1e-5)
    u = np.full((1, 3), 0.3, np.float32)
    np.testing.assert_allclose(fl.social_welfare(u, 0.5), 3 - fl.total_cost(u, 0.5))


def test_ifs_criterion_and_uniqueness():
    n = 5
    x = jnp.asarray(np.concatenate([RNG.random((400, n)), _grid_profiles(400, n),
                                    np.asarray(fl.endpoint_profiles(n))]), jnp.float32)
    e = fl.endpoint_profiles(n)
    for _ in range(12):
        p = jnp.asarray(np.sort(RNG.random(n + 1)), jnp.float32)
        emp = bool(fl.satisfies(x, fl.phantom_mechanism(x, p), "ifs").all())
        assert emp == bool(fl.ifs_phantom_criterion(p))
        ye = fl.phantom_mechanism(e, p)  # T1: a non-uniform vector fails UFS or Proportionality
        assert not bool(fl.satisfies(e, ye, "ufs").all() and fl.satisfies(e, ye, "prop").all())


def test_sample_profiles():
    for kind in ("mixed", "beta"):
        x = np.asarray(fl.sample_profiles(jax.random.key(1), 200, 4, kind))
        assert x.shape == (200, 4) and (x >= 0).all() and (x <= 1).all(), kind
    g = np.asarray(fl.sample_profiles(jax.random.key(1), 200, 4, "mixed"))
    on_grid = ((g * 4) % 1 == 0).all(-1)
    assert 0.1 < on_grid.mean() < 0.9 and ((g == 0) | (g == 1)).all(-1).any()
