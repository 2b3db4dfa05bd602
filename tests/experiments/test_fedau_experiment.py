"""The `fedau` experiment end to end at its `test` size (spec papers/fedau.md §5(b))."""

from __future__ import annotations


import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("fedau", seeds=2)


def test_result_and_plot(test_run):
    out, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("fedau", "fedau", "test")
    assert r["seeds"] == [0, 1] and r["config"]["num_clients"] == 20 and r["config"]["rounds"] == 50
    m = r["metrics"]
    assert r["claim_holds"] == (m["final_acc_min"] > 0.1)
    assert r["claim_holds"], m  # above chance after 50 rounds
    assert 0 <= m["omega_rel_error"] < 10 or m["omega_clients_counted"] == 0
    assert len(r["details"]["per_seed"]["fedau"]) == 2
    errs = r["details"]["omega_rel_error_vs_round"]["error"]
    assert len(errs) == 5 and all(e >= 0 for e in errs)
    assert (out / "fedau_summary.png").stat().st_size > 1000


def test_config_validation():
    exp = get("fedau")
    with pytest.raises(UsageError, match="num_clients"):
        apply_overrides(exp.sizes["test"], ["num_clients=0"])
    with pytest.raises(UsageError, match="methods: expected one of"):
        apply_overrides(exp.sizes["test"], ["methods=fedau,fedprox"])
    with pytest.raises(UsageError, match="eval_every: expected a divisor"):
        apply_overrides(exp.sizes["test"], ["eval_every=7"])
    with pytest.raises(UsageError, match="p_min"):
        apply_overrides(exp.sizes["test"], ["p_min=1.5"])
