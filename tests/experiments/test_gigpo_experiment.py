"""The `gigpo` experiment end to end at its `test` size (spec papers/gigpo.md §5(b))."""

from __future__ import annotations

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("gigpo", seeds=2)


def test_result_and_plot(test_run):
    out, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("gigpo", "gigpo", "test")
    assert r["seeds"] == [0, 1] and r["config"]["n_tasks"] == 4 and r["config"]["iterations"] == 5
    m = r["metrics"]
    for arm in ("grpo_none", "gigpo_none"):
        assert m[f"loss_finite_{arm}"] is True
        assert m[f"mean_anchor_group_size_{arm}"] > 1.0  # states recur: anchor groups are non-trivial
        assert 0.0 <= m[f"singleton_fraction_{arm}"] < 0.5
        assert 0.0 <= m[f"success_final_{arm}"] <= 100.0
        assert len(r["details"]["per_seed"][arm]) == 2 and len(r["details"]["per_seed"][arm][0]) == 2
        assert 0.0 <= m[f"auc_{arm}"] <= 100.0
    # the paired AUC comparison (the quick claim's statistic) is reported at every size
    assert m["auc_gain_n_none"] == 2 and 0 <= m["auc_gain_wins_none"] <= 2
    assert m["auc_gain_ci_low_none"] <= m["auc_gain_mean_none"] <= m["auc_gain_ci_high_none"]
    assert m["auc_gain_mean_none"] == pytest.approx(m["auc_gigpo_none"] - m["auc_grpo_none"], abs=1e-9)
    assert r["claim_holds"]
    assert (out / "gigpo_success.png").stat().st_size > 1000


def test_keydoor_variant_runs(run_test_size):
    _, r = run_test_size("gigpo/keydoor", seeds=1)
    assert r["config"]["key_door"] is True and r["claim_holds"], r["metrics"]


def test_paired_summary_and_auc():
    import numpy as np

    from zoo.experiments.gigpo import paired_summary, success_auc

    p = paired_summary([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])
    assert (p["mean"], p["wins"], p["n"]) == (3.0, 3, 3) and 2.0 <= p["ci_low"] <= p["ci_high"] <= 4.0
    acc = np.array([[0.0, 0.5, 1.0, 1.0]])  # iterations 0, 10, 20, 30
    assert success_auc(acc, [0, 10, 20, 30], 20)[0] == pytest.approx(50.0)  # trapezoid over 0..20


def test_config_validation():
    exp = get("gigpo")
    with pytest.raises(UsageError, match="eval_every: expected a divisor"):
        apply_overrides(exp.sizes["test"], ["eval_every=3"])
    with pytest.raises(UsageError, match="group_size"):
        apply_overrides(exp.sizes["test"], ["group_size=1"])
    with pytest.raises(UsageError, match="norms: expected one of"):
        apply_overrides(exp.sizes["test"], ["norms=batch"])
    with pytest.raises(UsageError, match="gamma"):
        apply_overrides(exp.sizes["test"], ["gamma=0"])
    with pytest.raises(UsageError, match="auc_iterations: expected a multiple"):
        apply_overrides(exp.sizes["quick"], ["auc_iterations=55"])
    assert exp.resumable and exp.default_seeds >= 10
