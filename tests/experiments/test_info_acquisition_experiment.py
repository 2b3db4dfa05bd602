"""The `info_acquisition` experiment end to end at its `test` size (spec section 5b)."""

from __future__ import annotations

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("info_acquisition", seeds=3)


def test_result_and_claims(test_run):
    out, r = test_run
    m, d = r["metrics"], r["details"]
    assert m["claim_C0"] is True and m["claim_C3"] is None
    for k, v in d["closed_forms_expected"].items():
        assert d["closed_forms"][k] == pytest.approx(v, abs=1e-6)
    assert m["opt"] == pytest.approx(51 / 70, abs=1e-6)
    # robust regret below no-margin regret at T = 1e5 (spec's test-size check) and growing with T
    assert m["regret_robust_T100000"] < m["regret_no_margin_T100000"]
    assert m["regret_robust_T1000"] < m["regret_robust_T10000"] < m["regret_robust_T100000"]
    assert 0.4 < m["slope_robust"] < 0.9 and r["plots"] == ["info_acquisition.png"]


def test_sizes_and_bad_overrides():
    exp = get("info_acquisition")
    q = exp.sizes["quick"]
    assert q.q == (0.85, 0.75) and q.c == (0.05, 0.04) and q.B == 1.0 and q.kappa == 0.1 and q.ic_T == 10**6
    with pytest.raises(UsageError, match="Ts"):
        apply_overrides(exp.sizes["test"], ["Ts=1000"])
    with pytest.raises(UsageError, match="kappa"):
        apply_overrides(exp.sizes["test"], ["kappa=-1"])
