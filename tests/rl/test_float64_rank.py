"""Dtype policy for GroupRank and RLCCF: rewards and votes compute in float64 under ``jax.enable_x64``
(``jax.experimental.enable_x64`` in older JAX), and stay float32 by default."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.rl import grouprank as gr
from zoo.rl import rlccf as rc

_rng = np.random.default_rng(0)
BINS = _rng.integers(0, 11, (3, 2, 5)).astype(np.int32)  # [Q, G, m]
GRADES = np.broadcast_to(_rng.integers(0, 4, (3, 1, 5)), BINS.shape).astype(np.int32)
ANSWERS = _rng.integers(-1, 4, (3, 2, 6)).astype(np.int32)  # [N, Q, K]


def _rank_outputs(scores):
    """Every ranking reward on float scores (in their dtype) and on integer bins."""
    r, parts = gr.grouprank_reward(BINS, GRADES)
    out = {"reward": r, **{f"part_{k}": v for k, v in parts.items()}}
    out["ndcg"] = gr.ndcg_at_k(scores, GRADES, 3)
    out["ndcg_exp_stable"] = gr.ndcg_at_k(scores, GRADES, 5, tie="stable", gain="exp")
    out["recall"] = gr.recall_at_k(scores, GRADES > 0, 2)
    for kind in ("mae", "js", "w1"):
        out[f"dist_{kind}"] = gr.distribution_reward(scores, GRADES / 3, kind=kind)
    out["full"] = gr.full_list_ndcg(scores.reshape(6, 5), GRADES.reshape(6, 5), 4)
    return out


def _vote_outputs():
    counts = rc.answer_counts(ANSWERS, n_answers=4)
    sc = rc.self_consistency(counts, 6)
    labels, scores = rc.collective_vote(counts, sc)
    _, uscores = rc.collective_vote(counts, weighting="uniform")
    rewards = rc.consistency_rewards(ANSWERS, labels)
    return {"sc": sc, "scores": scores, "uscores": uscores, "rewards": rewards,
            "adv": rc.rlccf_advantages(rewards), "label_acc": rc.label_accuracy(labels, labels),
            "avg_acc": rc.avg_accuracy(ANSWERS, labels)}  # fmt: skip


@pytest.fixture(scope="module")
def f32():
    scores = jnp.asarray(_rng.random(BINS.shape), jnp.float32)
    return scores, _rank_outputs(scores), _vote_outputs()


def test_default_is_float32(f32):
    _, rank, votes = f32
    for name, v in {**rank, **votes}.items():
        assert v.dtype == jnp.float32, name


def test_rank_rewards_float64(f32):
    scores32, rank32, _ = f32
    with jax.enable_x64(True):
        scores = jnp.asarray(np.asarray(scores32), jnp.float64)
        rank = _rank_outputs(scores)
        for name, v in rank.items():
            assert v.dtype == jnp.float64, name
            np.testing.assert_allclose(np.asarray(v), np.asarray(rank32[name]), rtol=2e-5, atol=2e-6, err_msg=name)
        # precision beyond float32: NDCG of a permutation of the ideal order, by hand in float64
        g = np.array([3.0, 2.0, 1.0, 0.0])
        s = jnp.asarray([0.4, 0.3, 0.2, 0.1 + 1e-12])
        assert float(gr.ndcg_at_k(s, g, 4)) == 1.0
        s = jnp.asarray([0.3, 0.4, 0.2, 0.1])  # swap the top two
        disc = 1 / np.log2(np.arange(2, 6))
        want = (2 * disc[0] + 3 * disc[1] + 1 * disc[2]) / (g * disc).sum()
        np.testing.assert_allclose(float(gr.ndcg_at_k(s, g, 4)), want, rtol=1e-14)
        # distribution reward: differences of 1e-12 are resolved
        d = gr.distribution_reward(jnp.asarray([0.5, 0.5]), jnp.asarray([0.5, 0.5 + 2e-12]))
        np.testing.assert_allclose(1.0 - float(d), 1e-12, rtol=1e-3)


def test_rlccf_votes_float64(f32):
    _, _, votes32 = f32
    with jax.enable_x64(True):
        votes = _vote_outputs()
        for name, v in votes.items():
            assert v.dtype == jnp.float64, name
            np.testing.assert_allclose(np.asarray(v), np.asarray(votes32[name]), rtol=1e-5, atol=1e-5, err_msg=name)
        # a float64 self-consistency weight keeps its precision in the vote scores
        counts = jnp.asarray([[[2, 1]], [[1, 2]]])
        sc = jnp.asarray([[0.5 + 1e-12], [0.5]])
        label, scores = rc.collective_vote(counts, sc)
        assert scores.dtype == jnp.float64 and int(label[0]) == 0
        np.testing.assert_allclose(float(scores[0, 0] - scores[0, 1]), 1e-12, rtol=1e-3)
