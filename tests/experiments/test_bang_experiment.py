"""The `bang` experiment end to end at its `test` size (theory exact parts + the WiSE-FT/BANG part)."""

from __future__ import annotations

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("bang")


def test_result(test_run):
    out, r = test_run
    m = r["metrics"]
    assert m["claim_A2_ttf_zero"] and m["claim_A3_zero_at_full_overlap"] and m["claim_finite"]
    assert m["A/gain_overlap6"] == 0.0 and m["A/gain_overlap0"] > 0
    c = r["details"]["C"]
    assert {x["variant"] for x in c} == {"ft", "ls", "mixup", "bang"}
    for x in c:
        assert len(x["ood_acc"]) == 3 and all(0 <= a <= 1 for a in x["ood_acc"]) and x["ttf"] >= 0
    assert "temperature" in [x for x in c if x["variant"] == "ft"][0]
    assert m["C/bang_minus_wiseft_ood_best_n"] == 1
    assert r["plots"] == ["bang.png"]


def test_sizes_and_overrides():
    exp = get("bang")
    q = exp.sizes["quick"]
    assert q.steps_b == 1500 and q.seeds_b == 5 and q.p == 0.7 and q.parts == ("A", "B", "C")
    with pytest.raises(UsageError, match="steps_b"):
        apply_overrides(exp.sizes["quick"], ["steps_b=1501"])
    with pytest.raises(UsageError, match="parts"):
        apply_overrides(exp.sizes["quick"], ["parts=B,C"])
