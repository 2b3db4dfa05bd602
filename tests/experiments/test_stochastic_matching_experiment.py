"""The `stochastic_matching` experiment end to end at its `test` size (spec section 5b)."""

from __future__ import annotations

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("stochastic_matching", seeds=2)


def test_result_and_claims(test_run):
    out, r = test_run
    m, d = r["metrics"], r["details"]
    assert d["h1"] == pytest.approx({"opt": 0.75, "sclp": 0.75, "config_lp": 1.0, "budget_lp": 1.0})
    assert m["claim_C1"] is True and m["claim_C2"] is None and m["claim_C3"] is None
    assert m["runs_per_instance_alg"] == 1000 and m["instances"] == 5
    for row in d["table"]:
        assert row["opt"] <= row["sclp"] + 1e-6 <= row["budget_lp"] + 2e-6
        assert 0.5 < row["balance"]["vs_sclp"] <= row["balance"]["vs_opt"] <= 1.0 + 1e-6
    rev = next(x for x in d["table"] if x["instance"] == "revUT")
    assert rev["balance"]["vs_opt"] > rev["greedy"]["vs_opt"]  # lowest-index ties are adversarial for greedy
    assert r["claim_holds"] is True and r["plots"] == ["stochastic_matching.png"]


def test_sizes_and_bad_overrides():
    exp = get("stochastic_matching")
    q = exp.sizes["quick"]
    assert (q.n, q.K, q.K_sweep, q.random_K) == (6, 30, (10, 50), 20)
    with pytest.raises(UsageError, match="runs_per_seed"):
        apply_overrides(exp.sizes["test"], ["runs_per_seed=1"])
    with pytest.raises(UsageError, match="n"):
        apply_overrides(exp.sizes["test"], ["n=30"])
