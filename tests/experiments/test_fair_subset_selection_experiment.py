"""The `fair_subset_selection` experiment end to end at its `test` size (spec section 5b: k-Borda vs SNTV n*)."""

from __future__ import annotations

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("fair_subset_selection")


def test_result_and_claims(test_run):
    out, r = test_run
    m = r["metrics"]
    assert r["claim_holds"] is True and m["claim_test_ordering"] is True
    assert m["replicates"] == 20
    assert m["nstar_k_borda_delta4"] is not None
    assert m["nstar_sntv_delta4"] is None or m["nstar_k_borda_delta4"] <= m["nstar_sntv_delta4"]
    for rule in ("k_borda", "sntv"):  # paired comparison at Delta = 4, n = 256: the constraint helps
        h = r["details"]["help"][rule]
        assert h["n"] == 20 and 0 < h["unconstrained_mean"] <= h["fair_mean"] <= 1 + 1e-6
        assert r["details"]["ceiling"][rule] == pytest.approx(1.0, abs=2e-3)  # balanced optimum is feasible
    assert m["help_gap_k_borda"] > 0.02
    assert r["plots"] == ["fair_subset_selection.png"]


def test_sizes_and_bad_overrides():
    exp = get("fair_subset_selection")
    q = exp.sizes["quick"]
    assert (q.m, q.k, q.deltas, q.n_grid[-1], q.help_n, q.n_eval) == (12, 4, (1.0, 3.0, 5.0), 16384, 1024, 100_000)
    with pytest.raises(UsageError, match="k"):
        apply_overrides(exp.sizes["test"], ["k=3"])
    with pytest.raises(UsageError, match="help_n"):
        apply_overrides(exp.sizes["test"], ["help_n=100"])
    with pytest.raises(UsageError, match="rules"):
        apply_overrides(exp.sizes["test"], ["rules=sntv"])
