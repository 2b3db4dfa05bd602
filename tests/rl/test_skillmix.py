"""Skillmix task (zoo.rl.grpo_envs.skillmix): gold/misconception tables, SFT targets, tokens, answer extraction."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.rl.grpo_envs import skillmix as sm


def test_all_questions_and_answer_tables():
    q = sm.all_questions()
    assert q["prompt"].shape == (400, 4) and len({tuple(r) for r in q["prompt"]}) == 400
    for t, x, y, f, g in zip(q["types"], q["x"], q["y"], q["gold"], q["misconception"]):
        want_f = [(x + y) % 10, (x * y) % 10, (x - y) % 10, (2 * x + y) % 10][t]
        want_g = [(x + y + 1) % 10, (x + y) % 10, (y - x) % 10, (x + 2 * y) % 10][t]
        assert (f, g) == (want_f, want_g)
    assert q["prompt"].max() < sm.VOCAB and q["prompt"][:, 3].tolist() == [sm.EQ] * 400


def test_target_distribution():
    q = sm.all_questions()
    for s in range(4):
        p = sm.target_distribution(q["types"], q["x"], q["y"], s)
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
        strong = q["types"] == s
        np.testing.assert_allclose(p[strong, q["gold"][strong]], 0.5)
        weak = ~strong
        merged = weak & (q["gold"] == q["misconception"])
        sep = weak & ~merged
        np.testing.assert_allclose(p[sep, q["gold"][sep]], 0.10, atol=1e-6)
        np.testing.assert_allclose(p[sep, q["misconception"][sep]], 0.25, atol=1e-6)
        np.testing.assert_allclose(p[merged, q["gold"][merged]], 0.35, atol=1e-6)
    d = sm.generate(0)
    acc = d["targets"][np.arange(400), :, d["gold"]].mean()
    assert acc == pytest.approx(0.216, abs=5e-4)  # the spec's mean per-model accuracy of the targets
    assert np.array_equal(np.sort(sm.generate(1)["prompt"], 0), np.sort(d["prompt"], 0))  # a permutation


def test_extract_and_reward():
    toks = np.array([[sm.DIGIT0 + 3, sm.EOS], [sm.EOS, sm.PAD], [sm.TYPE0, sm.EOS], [sm.DIGIT0 + 9, sm.DIGIT0]])
    a = np.asarray(sm.extract_answers(toks))
    assert a.tolist() == [3, -1, -1, 9]
    mask = np.array([[False, False], [True, False], [True, True], [True, True]])
    assert np.asarray(sm.extract_answers(toks, mask)).tolist() == [-1, -1, -1, 9]
    assert np.asarray(sm.exact_match(a, np.array([3, -1, 0, 9]))).tolist() == [1.0, 0.0, 0.0, 1.0]


def test_dataset_and_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    ds = sm.make_dataset(0, 8)
    assert len(ds) == 8 and np.asarray(ds["prompt"]).shape == (8, 4)
    with pytest.raises(ValueError, match="x: expected values"):
        sm.gold_answer(np.array([0]), np.array([10]), np.array([1]))
    with pytest.raises(ValueError, match="types"):
        sm.prompt_tokens(np.array([4]), np.array([1]), np.array([1]))
    with pytest.raises(ValueError, match="weak_misconception"):
        sm.SkillmixConfig(weak_gold=0.8, weak_misconception=0.3)
    with pytest.raises(ValueError, match="strong_type"):
        sm.target_distribution(np.array([0]), np.array([1]), np.array([1]), 5)
