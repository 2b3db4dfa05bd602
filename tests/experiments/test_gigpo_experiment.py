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
    assert r["claim_holds"]
    assert (out / "gigpo_success.png").stat().st_size > 1000


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
