"""The toy multiple-choice task of TW-GRPO (spec papers/tw_grpo.md §3)."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.rl.grpo_envs import multichoice as mc

CFG = mc.MultiChoiceConfig()


def test_vocab_and_lengths():
    g = mc.grammar(CFG)
    assert mc.vocab_size(CFG) == 30 and CFG.prompt_len == 6 and CFG.max_completion == 12
    ids = [g.pad, g.eos, g.think, g.endthink, *g.fillers, *g.letters]
    assert len(set(ids)) == len(ids) and max(ids) < mc.qtype_token(CFG, "MAX")


def test_items_are_consistent_and_deterministic():
    items = mc.make_items(0, 400, CFG, qai_p=0.5)
    again = mc.make_items(0, 400, CFG, qai_p=0.5)
    for k in items:
        np.testing.assert_array_equal(items[k], again[k])
    np.testing.assert_array_equal(mc.answer_from_prompt(CFG, items["prompt"]), items["gt"])
    multi, gt, present = items["multi"], items["gt"], mc.present_options(items)
    assert 0.35 < multi.mean() < 0.65
    assert np.all(gt[~multi].sum(1) == 1) and np.all(present[~multi])
    k = gt[multi].sum(1)
    assert k.min() >= 1 and k.max() <= CFG.n_options - 1
    assert np.all(present[multi].sum(1) == k + 1)  # exactly one present option is wrong
    assert np.all(present[multi][:, 0])  # present options are packed first
    assert set(np.unique(items["qtype"][multi])) == {2, 3} and set(np.unique(items["qtype"][~multi])) == {0, 1}


def test_train_and_eval_digit_sets_are_disjoint():
    tr = mc.make_items(1, 300, CFG, qai_p=0.0, split="train")
    ev = mc.make_items(2, 300, CFG, qai_p=0.0, split="eval")
    key = lambda d: {tuple(sorted(r)) for r in d}  # noqa: E731
    assert not key(tr["digits"]) & key(ev["digits"])


def test_demo_completions_follow_the_grammar():
    items = mc.make_items(3, 200, CFG)
    tok, mask = mc.demo_completions(4, items["gt"], mc.present_options(items), CFG, p_correct=0.5)
    g = mc.grammar(CFG)
    assert tok.shape == (200, CFG.max_completion)
    assert np.all(tok[:, :4] == [g.think, *g.fillers[:3]])  # the generic fixed prefix
    lengths = mask.sum(1)
    assert np.all(tok[np.arange(200), lengths - 1] == g.eos) and np.all(tok[~mask] == g.pad)
    letters = np.isin(tok, g.letters)
    pred = np.stack([(tok == l).any(1) for l in g.letters], 1)
    assert letters.sum(1).min() >= 1
    correct = np.all(pred == items["gt"], 1).mean()
    assert 0.45 < correct < 0.85  # p_correct = 0.5 plus lucky random subsets


def test_make_dataset_and_bad_input():
    ds = mc.make_dataset(0, 8, CFG)
    assert len(ds) == 8 and ds[0:2]["prompt"].shape == (2, 6)
    with pytest.raises(ValueError, match="split"):
        mc.make_items(0, 4, CFG, split="test")
    with pytest.raises(ValueError, match="qai_p"):
        mc.make_items(0, 4, CFG, qai_p=1.5)
    with pytest.raises(ValueError, match="n_options"):
        mc.MultiChoiceConfig(n_options=1)
    with pytest.raises(ValueError, match="qtype"):
        mc.qtype_token(CFG, "MEDIAN")


def test_imports_point_down_and_qai_invert_is_shared():
    """The task module never imports the paper module (no cycle); tw_grpo re-exports the one qai_invert."""
    import subprocess
    import sys

    code = ("import sys, zoo.rl.grpo_envs.multichoice as mc; "
            "assert 'zoo.rl.tw_grpo' not in sys.modules, 'multichoice imported tw_grpo'; "
            "mc.make_items(0, 4, mc.MultiChoiceConfig(), qai_p=1.0); "
            "assert 'zoo.rl.tw_grpo' not in sys.modules, 'make_items imported tw_grpo'")
    subprocess.run([sys.executable, "-c", code], check=True)
    from zoo.rl import tw_grpo

    assert tw_grpo.qai_invert is mc.qai_invert
    new, letters = mc.qai_invert([5, 7, 9], 1, keep=[2], order=[1, 0])
    assert new == [9, 7] and letters == ["A"]
