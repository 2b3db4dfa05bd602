"""The `capsule_dbd` experiment end to end at its `test` size (spec papers/capsule_dbd.md §5)."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("capsule_dbd", seeds=2)


def test_result_and_plot(test_run):
    out, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("capsule_dbd", "capsule_dbd", "test")
    m = r["metrics"]
    assert r["claim_holds"] == (np.isfinite(m["accuracy_ensemble"]) and m["dbd_domain_accuracy"] > 0.8)
    assert m["dbd_domain_accuracy"] > 0.8  # the DBD identifies domains even on 80 training texts each
    assert 0 <= m["accuracy_ensemble"] <= 1 and 0 <= m["accuracy_oracle_domain"] <= 1
    assert len(r["details"]["per_seed_accuracy"]["ensemble"]) == 2
    assert (out / "capsule_dbd_summary.png").stat().st_size > 1000


def test_config_validation():
    exp = get("capsule_dbd")
    with pytest.raises(UsageError, match="data_path"):
        apply_overrides(exp.sizes["test"], ["data=vader"])
    with pytest.raises(UsageError, match="dbd"):
        apply_overrides(exp.sizes["test"], ["dbd=bm25"])
    with pytest.raises(UsageError, match="batch_size"):
        apply_overrides(exp.sizes["test"], ["batch_size=500"])
