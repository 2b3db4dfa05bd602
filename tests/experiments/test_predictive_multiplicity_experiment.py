"""The `predictive_multiplicity` experiment end to end at its `test` size (spec section 5b)."""

from __future__ import annotations


import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("predictive_multiplicity")


def test_result_and_claims(test_run):
    out, r = test_run
    assert (r["experiment"], r["size"]) == ("predictive_multiplicity", "test")
    m = r["metrics"]
    assert m["n_eval"] == 60 and m["L0"] == pytest.approx(0.0995913755, abs=1e-9)
    assert m["train_accuracy"] == pytest.approx(0.98594, abs=1e-5)
    # test size evaluates Q1 (5 points vs SLSQP), Q3 and Q4; Q2 and Q5 need the full quick grid
    assert m["claim_Q1"] is True and m["q1_max_abs_dp"] <= 1e-5
    assert m["claim_Q3"] is True and m["claim_Q4"] is True
    assert m["claim_Q2"] is None and m["claim_Q5"] is None
    assert r["claim_holds"] is True
    table = r["details"]["table"]
    assert [t["delta"] for t in table] == [0.05, 0.1, 0.2]
    assert all(t["discrepancy_lb"] <= t["ambiguity"] for t in table)
    assert table[0]["ambiguity"] >= table[1]["ambiguity"] >= table[2]["ambiguity"] > 0
    assert r["plots"] == ["multiplicity.png"] and (out / "multiplicity.png").read_bytes()[:4] == b"\x89PNG"


def test_sizes_and_bad_overrides():
    exp = get("predictive_multiplicity")
    q = exp.sizes["quick"]
    assert q.eps_grid == (0.001, 0.005, 0.01, 0.02) and q.delta_grid == (0.05, 0.1, 0.2) and q.n_eval == 0
    assert q.n_check == 25 and q.lam == 0.01
    with pytest.raises(UsageError, match="eps_grid"):
        apply_overrides(exp.sizes["test"], ["eps_grid=0.02,0.01"])
    with pytest.raises(UsageError, match="delta_grid"):
        apply_overrides(exp.sizes["test"], ["delta_grid=0,0.1"])
    with pytest.raises(UsageError, match="lam"):
        apply_overrides(exp.sizes["test"], ["lam=-1"])
