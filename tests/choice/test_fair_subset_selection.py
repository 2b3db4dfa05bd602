"""zoo.choice.fair_subset_selection against brute-force python references, closed forms and its properties."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.choice import fair_subset_selection as fs

RNG = np.random.default_rng(0)
KEY = jax.random.key(0)


def _rand_positions(n, m):
    return np.argsort(RNG.random((n, m)), axis=1).argsort(axis=1).astype(np.int32)


def _ref_score(pos, S, base, t, owa):
    """Independent python reference: mean over voters of the OWA of the members' sorted utilities."""
    n, m = pos.shape
    tot = 0.0
    for v in range(n):
        u = sorted(((m - 1 - pos[v, c]) if base == "borda" else float(pos[v, c] < t)) for c in S)[::-1]
        tot += sum(w * x for w, x in zip(owa, u))
    return tot / n


RULES3 = {"sntv": fs.sntv(3), "bloc": fs.bloc(3), "k_borda": fs.k_borda(3), "borda_cc": fs.borda_cc(3),
          "approval_cc": fs.approval_cc(3, 2), "pav": fs.pav(3, 2), "owa": fs.geometric_owa(3, 0.5)}


@pytest.fixture(scope="module")
def small():
    pos = _rand_positions(9, 6)
    C = fs.enumerate_committees(6, 3)
    return pos, C


def test_hand_example_every_rule(small):
    pos, C = small
    assert C.shape == (math.comb(6, 3), 3)
    for name, rule in RULES3.items():
        got = np.asarray(fs.committee_score(pos, C, rule))
        ref = [_ref_score(pos, S, rule.base, int(rule.t), np.asarray(rule.owa)) for S in C]
        np.testing.assert_allclose(got, ref, rtol=1e-6, err_msg=name)


def test_reductions_chunking_and_invariances(small):
    pos, C = small
    sc = lambda r, p=pos, c=C: np.asarray(fs.committee_score(p, c, r))  # noqa: E731
    np.testing.assert_allclose(sc(fs.geometric_owa(3, 0.0)), sc(fs.borda_cc(3)), rtol=1e-6)
    np.testing.assert_allclose(sc(fs.geometric_owa(3, 1.0)), sc(fs.k_borda(3)), rtol=1e-6)
    C1 = fs.enumerate_committees(6, 1)
    np.testing.assert_allclose(sc(fs.pav(1, 2), c=C1), sc(fs.approval_cc(1, 2), c=C1))
    rule = fs.geometric_owa(3, 0.5)
    np.testing.assert_allclose(np.asarray(fs.committee_score(pos, C, rule, chunk=4)), sc(rule), rtol=1e-6)
    np.testing.assert_allclose(sc(rule, p=pos[RNG.permutation(9)]), sc(rule), rtol=1e-6)  # voters
    perm = RNG.permutation(6)  # relabel item c -> perm[c]
    pos2 = np.empty_like(pos)
    pos2[:, perm] = pos
    np.testing.assert_allclose(sc(rule, p=pos2, c=perm[C]), sc(rule), rtol=1e-6)
    pre = np.asarray(fs.prefix_committee_scores(pos, C, rule, (1, 4, 9), chunk=4))
    for row, g in zip(pre, (1, 4, 9)):
        np.testing.assert_allclose(row, sc(rule, p=pos[:g]), rtol=1e-6)


def test_marginal_gains_submodular_and_exact(small):
    pos, C = small
    for rule in (fs.borda_cc(3), fs.pav(3, 2), fs.geometric_owa(3, 0.5)):
        A = np.zeros(6, bool)
        A[1] = True
        B = A.copy()
        B[4] = True
        gA, gB = np.asarray(fs.marginal_gains(pos, A, rule)), np.asarray(fs.marginal_gains(pos, B, rule))
        assert (gA >= -1e-6).all() and (gB >= -1e-6).all()  # monotone
        assert (gA[~B] >= gB[~B] - 1e-6).all()  # submodular
        for c in np.flatnonzero(~B):  # F(B + c) - F(B) by the reference
            ref = _ref_score(pos, [1, 4, c], rule.base, int(rule.t), np.asarray(rule.owa)) - _ref_score(
                pos, [1, 4], rule.base, int(rule.t), np.asarray(rule.owa)[:3])
            assert gB[c] == pytest.approx(ref, rel=1e-5, abs=1e-6)


def test_plackett_luce_closed_forms():
    log_w = jnp.asarray([0.5, 0.0, -1.0])
    n = 20000
    pos = np.asarray(fs.sample_positions(KEY, log_w, n))
    p = np.exp(log_w) / np.exp(log_w).sum()
    freq = (pos == 0).mean(0)
    assert (np.abs(freq - p) <= 3 * np.sqrt(p * (1 - p) / n) + 1e-3).all()
    w = np.exp(np.asarray(log_w))
    orders = np.argsort(pos, axis=1)
    for sigma in itertools.permutations(range(3)):
        prob = np.prod([w[sigma[j]] / w[list(sigma[j:])].sum() for j in range(3)])
        emp = (orders == sigma).all(1).mean()
        assert abs(emp - prob) <= 4 * np.sqrt(prob * (1 - prob) / n), sigma
    # Delta = 0: the biased sampler is the unbiased one
    inst = fs.init_instance(4, (2, 2))
    np.testing.assert_array_equal(fs.biased_log_weights(inst, 0.0), inst.w)
    lb = fs.biased_log_weights(inst, 2.0)
    np.testing.assert_allclose(lb, np.asarray(inst.w) - 2.0 * np.array([0, 0, 1, 1]))


def test_mallows():
    log_w = jnp.asarray([3.0, 2.0, 1.0, 0.0])
    tight = np.asarray(fs.sample_positions(KEY, log_w, 2000, model="mallows", phi=0.05))
    assert (tight == np.arange(4)).all(1).mean() > 0.8  # the central ranking, not its reverse
    flat = np.asarray(fs.sample_positions(KEY, log_w, 2000, model="mallows", phi=1.0))
    assert np.abs((flat == 0).mean(0) - 0.25).max() < 0.05  # phi = 1: uniform
    assert (np.sort(flat, 1) == np.arange(4)).all()


def test_selection_greedy_exact_additive():
    m, k = 8, 4
    pos = _rand_positions(40, m)
    groups = np.repeat([0, 1], 4)
    lower, upper = np.array([2, 1]), np.array([3, 2])
    C = fs.enumerate_committees(m, k)
    feas = np.asarray(fs.feasibility_mask(C, groups, lower, upper))
    counts = np.stack([(groups[C] == j).sum(1) for j in (0, 1)], 1)
    np.testing.assert_array_equal(feas, ((counts >= lower) & (counts <= upper)).all(1))
    for name, rule in (("Bloc", fs.bloc(k)), ("Borda-CC", fs.borda_cc(k))):  # additive / submodular
        sc = np.asarray(fs.committee_score(pos, C, rule))
        best = sc[feas].max()
        g = np.asarray(fs.greedy_select(KEY, pos, rule, groups, lower, upper, k))
        gc = [(groups[g] == j).sum() for j in (0, 1)]
        assert lower[0] <= gc[0] <= upper[0] and lower[1] <= gc[1] <= upper[1] and len(set(g)) == k
        gval = sc[np.flatnonzero((C == g).all(1))[0]]
        e = np.asarray(fs.exact_select(pos, rule, C, feas, KEY))
        assert sc[np.flatnonzero((C == e).all(1))[0]] == pytest.approx(best, rel=1e-6)
        if name != "Borda-CC":  # additive: greedy and the closed form are exact
            assert gval == pytest.approx(best, rel=1e-6)
            items = np.asarray(fs.item_utilities(pos, rule)).mean(0)
            a = np.asarray(fs.additive_select(jnp.asarray(items, jnp.float32), groups, lower, upper, k))
            assert sc[np.flatnonzero((C == a).all(1))[0]] == pytest.approx(best, rel=1e-6)
        else:
            assert gval >= 0.5 * best and gval >= 0.9 * best  # 1/2 guaranteed; near-exact in practice
    # unconstrained greedy of an additive rule = the top-k items
    u = fs.greedy_select(KEY, pos, fs.k_borda(k), groups, None, None, k)
    top = np.sort(np.argsort(-np.asarray(fs.item_utilities(pos, fs.k_borda(k))).mean(0), kind="stable")[:k])
    np.testing.assert_array_equal(u, top)


def test_random_tie_break():
    scores = jnp.asarray([1.0, 3.0, 3.0, 3.0, 2.0])
    picks = {int(fs.best_committee(k, scores)) for k in jax.random.split(KEY, 30)}
    assert picks == {1, 2, 3}
    feas = jnp.asarray([True, False, False, True, True])
    assert {int(fs.best_committee(k, scores, feas)) for k in jax.random.split(KEY, 4)} == {3}


def test_ratios_and_rankings_needed():
    inst = fs.init_instance(6, (3, 3))
    C = fs.enumerate_committees(6, 2)
    feas = fs.feasibility_mask(C, inst.groups, [1, 1], [1, 1])
    rule = fs.k_borda(2)
    q = fs.true_quality(KEY, inst, rule, C, n_eval=4000)
    np.testing.assert_allclose(q, fs.committee_score(fs.sample_positions(KEY, inst.w, 4000), C, rule), rtol=1e-6)
    keys = jax.random.split(KEY, 6)
    unc, fair = (jnp.stack(v) for v in zip(*(fs.selection_ratio(k, inst, rule, 4.0, 64, C, feas, q) for k in keys)))
    assert unc.shape == (6,) and (np.asarray(fair) <= 1 + 1e-6).all() and (np.asarray(unc) > 0).all()
    assert float(fair.mean()) > float(unc.mean())  # strong bias: the constraint helps
    assert fs.rankings_needed(np.array([0.5, 0.97, 0.99, 1.0]), (1, 4, 16, 64)) == 16
    assert fs.rankings_needed(np.array([0.5, 0.9]), (1, 4)) is None
    sm = fs.empirical_smoothness(KEY, fs.init_instance(8), fs.k_borda(3), 2.0, jnp.asarray([0]), n_eval=4000)
    assert 0.2 < float(sm["s"]) <= 1.2 and np.isfinite(float(sm["n_req"]))
