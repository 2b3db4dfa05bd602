"""The `fedamd` experiment end to end at its `test` size (spec papers/fedamd.md §5(b))."""

from __future__ import annotations


import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("fedamd", seeds=2)


def test_result_and_plot(test_run):
    out, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("fedamd", "fedamd", "test")
    assert r["seeds"] == [0, 1] and r["config"]["num_clients"] == 10 and r["config"]["rounds"] == 20
    m = r["metrics"]
    assert r["claim_holds"] == (m["probe_loss_last_fedamd"] < m["probe_loss_first_fedamd"])
    assert r["claim_holds"], m
    assert m["sample_gradients_fedamd"] > 0 and 0 <= m["final_acc_fedamd"] <= 100
    assert len(r["details"]["curves"]["fedamd"]) == 20
    assert (out / "fedamd_summary.png").stat().st_size > 1000


def test_config_validation():
    exp = get("fedamd")
    with pytest.raises(UsageError, match="num_sampled"):
        apply_overrides(exp.sizes["test"], ["num_sampled=11"])
    with pytest.raises(UsageError, match=r"p: expected a value in \[0.0, 1.0\]"):
        apply_overrides(exp.sizes["test"], ["p=1.5"])
    with pytest.raises(UsageError, match="methods: must include 'fedamd'"):
        apply_overrides(exp.sizes["test"], ["methods=fedavg"])
