"""The `tw_grpo` experiment end to end at its `test` size (spec papers/tw_grpo.md §5(b))."""

from __future__ import annotations

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("tw_grpo", seeds=1)


def test_result_and_plot(test_run):
    out, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("tw_grpo", "tw_grpo", "test")
    m = r["metrics"]
    arms = ("grpo_binary", "grpo_soft", "token_mean_soft", "tw_grpo")
    assert all(m[f"loss_finite_{a}"] for a in arms) and m["weights_in_range"]
    assert r["claim_holds"]
    # α = 1 arms have weight exactly 1 everywhere; the TW arm has weight 1 at position 0 and > 1 elsewhere
    for a in arms[:3]:
        assert m[f"weight_answer_train_{a}"] == pytest.approx(1.0)
    assert m["weight_pos0_train_tw_grpo"] == 1.0 and m["sft_weight_pos0"] == 1.0
    assert 1.0 < m["weight_answer_train_tw_grpo"] <= 1.7
    for a in arms:
        assert 0.0 <= m[f"strict_final_{a}"] <= 100.0
    # the SFT base's sampled accuracy is recorded; C2's weights over all-active positions lie in [1, α]
    assert 0.0 <= m["sft_sampled_strict_pct"] <= 100.0 and isinstance(m["sft_in_band"], bool)
    for k in ("prefix", "filler", "answer"):
        assert 1.0 - 1e-6 <= m[f"sft_live_weight_{k}"] <= 1.7 + 1e-6
    assert (out / "tw_grpo_accuracy.png").stat().st_size > 1000


def test_config_validation():
    exp = get("tw_grpo")
    with pytest.raises(UsageError, match="alpha"):
        apply_overrides(exp.sizes["test"], ["alpha=0.5"])
    with pytest.raises(UsageError, match="eval_every: expected a divisor"):
        apply_overrides(exp.sizes["test"], ["eval_every=3"])
    with pytest.raises(UsageError, match="group_size"):
        apply_overrides(exp.sizes["test"], ["group_size=1"])
    assert exp.resumable
