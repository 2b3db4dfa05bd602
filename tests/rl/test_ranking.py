"""Ranking metrics (zoo.rl.ranking): NDCG@k and Recall@k against brute-force loop references (every tie-break
order), scikit-learn, and their properties."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from zoo.rl import ranking as rk

# ----------------------------------------------------------------------------- numpy references


def ndcg_ref(scores, gains, k, tie="average", gain="linear"):
    """Loop reference: 'average' = mean over every tie-break permutation (brute force), 'stable' = input order."""
    s, g = np.asarray(scores, float), np.asarray(gains, float)
    gg = 2.0**g - 1 if gain == "exp" else g
    m = len(s)
    disc = np.array([1 / np.log2(r + 2) if r < k else 0.0 for r in range(m)])
    ideal = sum(sorted(gg, reverse=True)[r] * disc[r] for r in range(m))
    if ideal == 0:
        return 0.0

    def dcg(order):
        return sum(gg[j] * disc[r] for r, j in enumerate(order))

    if tie == "stable":
        order = sorted(range(m), key=lambda j: (-s[j], j))
        return dcg(order) / ideal
    vals = [dcg(p) for p in itertools.permutations(range(m)) if all(s[p[i]] >= s[p[i + 1]] for i in range(m - 1))]
    return float(np.mean(vals)) / ideal


def recall_ref(scores, rel, k):
    s, rel = np.asarray(scores, float), np.asarray(rel, bool)
    if rel.sum() == 0:
        return 0.0
    m = len(s)
    vals = []
    for p in itertools.permutations(range(m)):
        if all(s[p[i]] >= s[p[i + 1]] for i in range(m - 1)):
            vals.append(sum(rel[j] for j in p[:k]) / rel.sum())
    return float(np.mean(vals))


@pytest.fixture(scope="module")
def small_cases():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, (12, 5)).astype(np.float32)  # many ties
    grades = rng.integers(0, 4, (12, 5))
    grades[0] = 0  # one group without relevant items
    return scores, grades


# ----------------------------------------------------------------------------- NDCG / recall


@pytest.mark.parametrize("tie", ["average", "stable"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_ndcg_matches_loop_reference(small_cases, tie, k):
    s, g = small_cases
    got = np.asarray(rk.ndcg_at_k(s, g, k, tie=tie))
    want = np.array([ndcg_ref(a, b, k, tie) for a, b in zip(s, g)])
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_ndcg_exp_gain_and_sklearn(small_cases):
    from sklearn.metrics import ndcg_score

    s, g = small_cases
    got = np.asarray(rk.ndcg_at_k(s, g, 3, gain="exp"))
    np.testing.assert_allclose(got, [ndcg_ref(a, b, 3, gain="exp") for a, b in zip(s, g)], atol=1e-6)
    rng = np.random.default_rng(1)
    s2 = rng.integers(0, 11, (40, 10)).astype(np.float32)
    g2 = rng.integers(0, 4, (40, 10))
    g2[:, 0] = np.maximum(g2[:, 0], 1)  # sklearn averages over all queries; keep IDCG > 0
    for k in (3, 10):
        per_q = np.asarray(rk.ndcg_at_k(s2, g2, k))
        assert abs(per_q.mean() - ndcg_score(g2, s2, k=k, ignore_ties=False)) < 1e-6
    # hand values: exp vs linear gain for a reversed order
    lin = float(rk.ndcg_at_k(np.array([1.0, 2.0]), np.array([2, 1]), 2))
    exp = float(rk.ndcg_at_k(np.array([1.0, 2.0]), np.array([2, 1]), 2, gain="exp"))
    d = 1 / np.log2(3)
    assert abs(lin - (1 + 2 * d) / (2 + d)) < 1e-6 and abs(exp - (1 + 3 * d) / (3 + d)) < 1e-6


def test_ndcg_properties():
    rng = np.random.default_rng(2)
    g = rng.integers(0, 4, (20, 8))
    g[:, 0] = 3
    s = rng.normal(size=(20, 8)).astype(np.float32)
    np.testing.assert_allclose(rk.ndcg_at_k(g.astype(np.float32), g, 5, tie="stable"), 1.0, atol=1e-6)  # ideal order
    np.testing.assert_allclose(rk.ndcg_at_k(s, g, 5), rk.ndcg_at_k(np.exp(3 * s) + 2, g, 5), atol=1e-6)  # monotone
    assert float(rk.ndcg_at_k(s[0], np.zeros(8), 5)) == 0.0
    # masked candidates (-inf score, 0 gain) change nothing
    pad_s = np.concatenate([s, np.full((20, 3), -np.inf, np.float32)], 1)
    pad_g = np.concatenate([g, np.zeros((20, 3), int)], 1)
    np.testing.assert_allclose(rk.ndcg_at_k(pad_s, pad_g, 5), rk.ndcg_at_k(s, g, 5), atol=1e-6)
    # jit / vmap / values in [0, 1]
    jitted = jax.jit(lambda a, b: rk.ndcg_at_k(a, b, 5))
    np.testing.assert_allclose(jitted(s, g), rk.ndcg_at_k(s, g, 5), atol=1e-6)
    v = jax.vmap(lambda a, b: rk.ndcg_at_k(a, b, 5))(s, g)
    np.testing.assert_allclose(v, rk.ndcg_at_k(s, g, 5), atol=1e-6)
    assert np.all((np.asarray(v) >= 0) & (np.asarray(v) <= 1 + 1e-6))


def test_all_tie_group_average_vs_stable():
    g = np.array([0, 0, 3, 1, 0, 2])
    s = np.zeros(6, np.float32)
    avg = float(rk.ndcg_at_k(s, g, 6))
    stable = float(rk.ndcg_at_k(s, g, 6, tie="stable"))
    assert abs(avg - ndcg_ref(s, g, 6)) < 1e-6 and abs(stable - ndcg_ref(s, g, 6, "stable")) < 1e-6
    assert avg != pytest.approx(stable)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_recall_matches_reference(small_cases, k):
    s, g = small_cases
    got = np.asarray(rk.recall_at_k(s, g > 0, k))
    np.testing.assert_allclose(got, [recall_ref(a, b > 0, k) for a, b in zip(s, g)], atol=1e-6)
    stable = np.asarray(rk.recall_at_k(s, g > 0, k, tie="stable"))
    for a, b, r in zip(s, g, stable):
        order = sorted(range(5), key=lambda j: (-a[j], j))[:k]
        assert r == pytest.approx(sum(b[j] > 0 for j in order) / max((b > 0).sum(), 1))


def test_recall_properties():
    rng = np.random.default_rng(3)
    s = rng.normal(size=(30, 7)).astype(np.float32)
    rel = rng.random((30, 7)) < 0.4
    rs = np.stack([np.asarray(rk.recall_at_k(s, rel, k)) for k in range(1, 9)])
    assert np.all((rs >= 0) & (rs <= 1)) and np.all(np.diff(rs, axis=0) >= -1e-7)
    has = rel.any(1)
    np.testing.assert_allclose(rs[-2:, has], 1.0)
    assert np.all(rs[:, ~has] == 0)
