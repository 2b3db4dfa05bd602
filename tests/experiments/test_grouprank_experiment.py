"""The `grouprank` experiment end to end at its `test` size (spec papers/grouprank.md §5(b))."""

from __future__ import annotations

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("grouprank", seeds=2)


def test_result_and_plot(test_run):
    out, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("grouprank", "grouprank", "test")
    assert r["seeds"] == [0, 1] and r["config"]["n_candidates"] == 10 and r["config"]["steps"] == 5
    m = r["metrics"]
    assert r["claim_holds"], m  # the run works: finite loss, rewards and NDCG in range
    assert m["loss_finite_groupwise"] and 0.0 <= m["ndcg_groupwise"] <= 1.0
    assert 0.0 <= m["train_reward_end_groupwise"] <= 2.0 and 0.0 <= m["calib_error_groupwise"] <= 1.0
    assert len(r["details"]["per_seed"]["ndcg_groupwise"]) == 2
    assert len(r["details"]["curve_ndcg_groupwise"]) == 5
    assert (out / "grouprank_summary.png").stat().st_size > 1000


def test_config_validation():
    exp = get("grouprank")
    assert set(exp.sizes["quick"].arms) >= {"pointwise", "groupwise", "groupwise_nodist"}
    with pytest.raises(UsageError, match="arms: expected one of"):
        apply_overrides(exp.sizes["test"], ["arms=groupwise,listwise"])
    with pytest.raises(UsageError, match="interval"):
        apply_overrides(exp.sizes["test"], ["eval_interval=11"])
    with pytest.raises(UsageError, match="log_every: expected a divisor"):
        apply_overrides(exp.sizes["quick"], ["log_every=7"])
    with pytest.raises(UsageError, match="chunk_steps: expected a divisor"):
        apply_overrides(exp.sizes["quick"], ["chunk_steps=70"])
    assert exp.resumable
    with pytest.raises(UsageError, match="weights"):
        apply_overrides(exp.sizes["test"], ["weights=1,0.5"])
