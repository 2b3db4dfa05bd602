"""Latent-topic retrieval task (zoo.rl.grpo_envs.retrieval): shapes, grades, the topic nuisance, dataset."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.rl.grpo_envs import retrieval as rt


def test_generate_shapes_grades_and_determinism():
    cfg = rt.RetrievalConfig(dim=16, n_candidates=12)
    d = rt.generate(3, 200, cfg)
    assert d["q"].shape == (200, 16) and d["docs"].shape == (200, 12, 16) and d["grades"].shape == (200, 12)
    assert d["q"].dtype == np.float32 and d["grades"].dtype == np.int32
    assert d["grades"].min() >= 0 and d["grades"].max() <= 3 and np.all(d["grades"].max(1) >= 1)
    np.testing.assert_array_equal(d["grades"], rt.grade_of(d["relevance"]))
    np.testing.assert_allclose(d["retriever"], np.einsum("nd,nmd->nm", d["q"], d["docs"]), rtol=1e-5, atol=1e-5)
    e = rt.generate(3, 200, cfg)
    assert all(np.array_equal(d[k], e[k]) for k in d)
    assert not np.array_equal(rt.generate(4, 200, cfg)["q"], d["q"])
    frac = (d["relevance"] > 0).mean()
    assert 0.1 < frac < 0.25  # ≈ 0.15 plus the forced ones


def test_topic_component_is_shared():
    """Candidates share the query's topic: the group mean is close to the topic direction c (|cos| high)."""
    d = rt.generate(0, 300)
    dbar = d["docs"].mean(1)
    cos_q = np.sum(dbar * d["q"], 1) / np.linalg.norm(dbar, axis=1) / np.linalg.norm(d["q"], axis=1)
    assert np.median(cos_q) > 0.5  # q = u + c shares c with the group mean
    from zoo.rl.grouprank import full_list_ndcg

    assert 0.2 < float(full_list_ndcg(d["retriever"], d["grades"])) < 0.6  # the dot product is a weak ranker


def test_reward_dataset_and_bad_input(tmp_path, monkeypatch):
    d = rt.generate(0, 4, rt.RetrievalConfig(n_candidates=6))
    r = np.asarray(rt.reward(d["grades"].astype(np.float32), d["grades"]))
    np.testing.assert_allclose(r, 1.0, atol=1e-6)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    ds = rt.make_dataset(0, 5, rt.RetrievalConfig(dim=8, n_candidates=4))
    assert len(ds) == 5 and np.asarray(ds["docs"]).shape == (5, 4, 8)
    with pytest.raises(ValueError, match="p_irrelevant"):
        rt.RetrievalConfig(p_irrelevant=1.0)
    with pytest.raises(ValueError, match="n_candidates"):
        rt.RetrievalConfig(n_candidates=1)
    with pytest.raises(ValueError, match="n: expected"):
        rt.generate(0, 0)
