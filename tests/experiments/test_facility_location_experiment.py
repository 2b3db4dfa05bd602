"""The `facility_location` experiment end to end at its `test` size (spec section 5b)."""

from __future__ import annotations

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("facility_location")


def test_result_and_claims(test_run):
    out, r = test_run
    m = r["metrics"]
    assert r["claim_holds"] is True and all(m[k] is True for k in m if k.startswith("claim_"))
    assert m["axiom_profiles_total"] == 1000 and m["sp_profiles_total"] == 1000
    assert m["sp_max_gain_UP"] <= 1e-7 and m["sp_max_gain_IFS-median"] <= 1e-7
    assert m["sp_share_gain_gt_0.01_mean"] >= 0.5 and 0.1 < m["sp_max_gain_mean"] < 0.25
    assert m["ne_max_abs_error"] <= 1e-6 and m["ne_max_equilibrium_gap"] <= 1e-6
    assert m["uniqueness_vectors_failing"] == m["uniqueness_vectors_tried"] > 40
    (row,) = r["details"]["per_n"]
    assert row["n"] == 4 and row["rho_sw_closed_form"] == pytest.approx(1.2)
    assert row["up_sw_ratio_max"] <= 1.2 + 1e-9 and row["tc_witness_ratio"] == pytest.approx(3.0)
    assert row["median_sw_ratio_max"] == pytest.approx(1.0)  # the median is SW-optimal
    assert r["details"]["sp_paired_mean_vs_up"]["wins"] == r["details"]["sp_paired_mean_vs_up"]["n"] == 10
    assert r["plots"] == ["facility_location.png"]


def test_sizes_and_bad_overrides():
    exp = get("facility_location")
    q = exp.sizes["quick"]
    assert q.ns == tuple(range(2, 11)) and q.n_profiles == 100_000 and q.sp_n == 5 and q.grid == 201
    with pytest.raises(UsageError, match="ns"):
        apply_overrides(exp.sizes["test"], ["ns=1,3"])
    with pytest.raises(UsageError, match="grid"):
        apply_overrides(exp.sizes["test"], ["grid=1"])
