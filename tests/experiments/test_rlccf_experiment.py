"""The `rlccf` experiment end to end at its `test` size (spec papers/rlccf.md §5(b))."""

from __future__ import annotations

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("rlccf", seeds=2)


def test_result_and_plot(test_run):
    out, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("rlccf", "rlccf", "test")
    assert r["seeds"] == [0, 1] and r["config"]["n_models"] == 2 and r["config"]["k"] == 4
    m = r["metrics"]
    assert r["claim_holds"], m
    for arm in ("base", "ttrl", "uniform", "rlccf"):
        assert 0.0 <= m[f"avg_acc_{arm}"] <= 1.0 and 0.0 <= m[f"group_mv_{arm}"] <= 1.0
    for arm in ("ttrl", "uniform", "rlccf"):
        assert m[f"loss_finite_{arm}"] and 0.0 <= m[f"early_label_acc_{arm}"] <= 1.0
        assert len(r["details"]["per_seed"][f"avg_acc_{arm}"]) == 2
        assert len(r["details"]["per_seed"][f"per_model_avg_acc_{arm}"]) == 2  # N = 2 models
    assert (out / "rlccf_summary.png").stat().st_size > 1000


def test_config_validation():
    exp = get("rlccf")
    with pytest.raises(UsageError, match="n_models"):
        apply_overrides(exp.sizes["test"], ["n_models=5"])
    with pytest.raises(UsageError, match="arms: expected one of"):
        apply_overrides(exp.sizes["test"], ["arms=rlccf,empo"])
    with pytest.raises(UsageError, match="k"):
        apply_overrides(exp.sizes["test"], ["k=1"])
    with pytest.raises(UsageError, match="sft_every: expected a divisor"):
        apply_overrides(exp.sizes["quick"], ["sft_every=30"])
    with pytest.raises(UsageError, match="rl_every: expected a divisor"):
        apply_overrides(exp.sizes["quick"], ["rl_every=7"])
    assert exp.resumable
    with pytest.raises(UsageError, match="scope"):
        apply_overrides(exp.sizes["test"], ["scope=global"])
