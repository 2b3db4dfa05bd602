"""zoo.choice.info_acquisition against closed forms (spec 2.2), an independent brute-force IC check over
every (effort, reporting map) deviation, monotonicity, orderings, the product-case decomposition and
the regret accounting."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.choice import info_acquisition as ia

TWO = ia.binary_accuracy_instance([0.85, 0.75], [0.05, 0.04])


def _brute_force_gain(inst, mech):
    """Max over agents, recommendations, efforts and ALL reporting maps of (deviation - obedience), with the
    margin-relevant effort-deviation gains returned separately. Pure numpy on the joint law."""
    n = len(inst.costs)
    A = inst.pi.shape[:n]
    S = inst.pi.shape[n + 1:]
    mu, pi = np.asarray(inst.mu, np.float64), np.asarray(inst.pi, np.float64)
    phi = np.asarray(mech.phi, np.float64).reshape(A)
    gam = np.asarray(mech.gamma, np.float64).reshape((n,) + A + S + (len(mu),))
    worst, effort_gains = -np.inf, []
    for i in range(n):
        for ai in range(A[i]):
            def payoff(ap, sigma):
                tot = 0.0
                for a in itertools.product(*map(range, A)):
                    if a[i] != ai or phi[a] == 0:
                        continue
                    act = list(a)
                    act[i] = ap
                    for s in itertools.product(*map(range, S)):
                        rep = list(s)
                        rep[i] = sigma[s[i]]
                        for th in range(len(mu)):
                            tot += phi[a] * mu[th] * pi[tuple(act) + (th,) + s] * gam[(i,) + a + tuple(rep) + (th,)]
                Phi = phi.take(ai, axis=i).sum()
                return tot - float(inst.costs[i][ap]) * Phi, Phi
            obey, Phi = payoff(ai, tuple(range(S[i])))
            for ap in range(A[i]):
                for sigma in itertools.product(range(S[i]), repeat=S[i]):
                    g = payoff(ap, sigma)[0] - obey
                    worst = max(worst, g)
                    if ap != ai:
                        effort_gains.append((g, Phi))
    return worst, effort_gains


def _random_joint(seed):
    """2 agents x 2 efforts x 2 signals x 2 states, a random joint pi with externalities, 2 decisions."""
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(4), size=(2, 2, 2)).reshape(2, 2, 2, 2, 2)
    pi[0, 0] = 0.25  # both shirk: uninformative
    return ia.make_instance([0.4, 0.6], pi, [[0.0, 0.03], [0.0, 0.02]], rng.uniform(0, 1, (2, 2)))


def test_single_agent_closed_forms():
    one = ia.binary_accuracy_instance([0.8], [0.1])
    assert ia.solve_optimal_mechanism(one)[0] == pytest.approx(8 / 15, abs=1e-6)
    assert ia.solve_optimal_mechanism(ia.binary_accuracy_instance([0.8], [0.2]))[0] == pytest.approx(0.5, abs=1e-6)
    assert ia.solve_optimal_mechanism(one, B=0.30)[0] == pytest.approx(0.5, abs=1e-6)
    assert ia.solve_optimal_mechanism(one, B=0.34)[0] == pytest.approx(8 / 15, abs=1e-6)
    assert ia.solve_optimal_mechanism(one, margin=0.01)[0] == pytest.approx(0.8 - 0.8 * 0.11 / 0.3, abs=1e-6)
    _, m = ia.solve_optimal_mechanism(one)
    g = np.asarray(m.gamma)[0, 1]  # recommended work: pay c / (q - 1/2) = 1/3 on a correct report
    assert g[0, 0] + g[1, 1] == pytest.approx(2 / 3, abs=1e-5) and abs(g[0, 1]) + abs(g[1, 0]) < 1e-7


def test_multi_agent_optima_and_values():
    v, m = ia.solve_optimal_mechanism(TWO, B=1.0)
    assert v == pytest.approx(51 / 70, abs=1e-6)
    np.testing.assert_allclose(np.asarray(m.phi), [0, 0, 1, 0], atol=1e-7)  # (work, shirk)
    three = ia.binary_accuracy_instance([0.7] * 3, [0.01] * 3)
    v3, m3 = ia.solve_optimal_mechanism(three)
    assert v3 == pytest.approx(0.679, abs=1e-6) and float(m3.phi[-1]) == pytest.approx(1.0)
    V = np.asarray(ia.value_of_information(three))
    np.testing.assert_allclose(sorted(set(np.round(V.ravel(), 5))), [0.5, 0.7, 0.784], atol=1e-6)
    d = np.asarray(ia.decision_rule(TWO))
    assert (d[1, 0, :, 0] == [0, 1]).all()  # agent 1 works: follow its signal


@pytest.mark.parametrize("margin", [0.0, 0.005])
def test_brute_force_ic_and_payment_recovery(margin):
    for inst, B in ((TWO, 1.0), (_random_joint(0), None), (_random_joint(1), 2.0)):
        v, m = ia.solve_optimal_mechanism(inst, margin=margin, B=B)
        worst, eff = _brute_force_gain(inst, m)
        assert worst <= 1e-6
        assert all(g <= -margin * Phi + 1e-6 for g, Phi in eff)
        viol = ia.ic_violation(inst, m)
        assert all(float(x.max()) <= 1e-6 and float(x.min()) >= -1e-6 for x in viol)
        g = np.asarray(m.gamma)
        assert g.min() >= 0 and (B is None or g.max() <= B + 1e-9)
        assert float(ia.principal_utility(inst, m)) == pytest.approx(v, abs=1e-5)
        eff_br, rep = ia.best_responses(inst, m)
        for e, r in zip(eff_br, rep):
            np.testing.assert_array_equal(e, np.arange(2))  # obedient
            np.testing.assert_array_equal(r, np.tile(np.arange(2), (2, 1)))  # truthful


def test_monotonicity():
    base = ia.solve_optimal_mechanism(TWO, B=1.0)[0]
    null = float(np.asarray(ia.value_of_information(TWO))[0, 0])
    costlier = ia.binary_accuracy_instance([0.85, 0.75], [0.08, 0.04])
    sharper = ia.binary_accuracy_instance([0.9, 0.75], [0.05, 0.04])
    assert ia.solve_optimal_mechanism(costlier, B=1.0)[0] <= base + 1e-9
    assert ia.solve_optimal_mechanism(sharper, B=1.0)[0] >= base - 1e-9
    assert ia.solve_optimal_mechanism(TWO, margin=0.01, B=1.0)[0] <= base + 1e-9
    assert ia.solve_optimal_mechanism(TWO, B=0.2)[0] <= base + 1e-9
    assert base >= null - 1e-9


def test_ordering_and_product_decomposition():
    inst = _random_joint(2)
    corr = ia.solve_optimal_mechanism(inst)[0]
    unc, phi = ia.best_uncorrelated(inst, grid_size=3)
    det = max(ia.solve_optimal_mechanism(inst, phi_fixed=np.eye(4)[k])[0] for k in range(4))
    fixed = ia.solve_optimal_mechanism(inst, phi_fixed=np.full(4, 0.25))[0]
    assert corr >= unc - 1e-9 and unc >= det - 1e-9 and unc >= fixed - 1e-9 and phi.sum() == pytest.approx(1)
    # product instance without externalities: the LP optimum is the best single profile
    v = ia.solve_optimal_mechanism(TWO, B=1.0)[0]
    det2 = max(ia.solve_optimal_mechanism(TWO, B=1.0, phi_fixed=np.eye(4)[k])[0] for k in range(4))
    assert v == pytest.approx(det2, abs=1e-7)


def test_regret_accounting_and_vmap():
    T = 10**4
    r = ia.etc_regret(jax.random.PRNGKey(0), TWO, T, kappa=0.0, c1=0.0, known_pi=True)
    assert r["T1"] == 0 and abs(r["regret"]) <= 1e-6 * T
    r = ia.etc_regret(jax.random.PRNGKey(0), TWO, T)
    assert r["T1"] == 465 and r["regret"] > 0 and r["u_explore"] == pytest.approx(-0.75, abs=1e-6)
    # principal_utility is pure jnp: vmap over a stack of mechanisms equals the loop
    mechs = [ia.solve_optimal_mechanism(ia.binary_accuracy_instance(q, [0.05, 0.04]), B=1.0)[1]
             for q in ([0.85, 0.75], [0.8, 0.8], [0.7, 0.9])]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *mechs)
    vm = jax.vmap(lambda m: ia.principal_utility(TWO, m))(stacked)
    np.testing.assert_allclose(vm, [float(ia.principal_utility(TWO, m)) for m in mechs], atol=1e-6)
