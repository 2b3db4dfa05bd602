"""The `adaptdhm` experiment end to end at its `test` size (spec papers/adaptdhm.md §5(b))."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("adaptdhm", seeds=2)


def test_result_and_plot(test_run):
    out, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("adaptdhm", "adaptdhm", "test")
    m = r["metrics"]
    assert r["claim_holds"] and np.isfinite(m["auc_adaptdhm"]) and 0.3 < m["auc_adaptdhm"] < 1
    assert 0.5 < m["bayes_auc"] <= 1
    assert -1 <= m["routing_ari"] <= 1 and 0 <= m["routing_nmi"] <= 1
    assert 0 <= m["min_cluster_usage_test"] <= 1 / 3 + 1e-9
    assert len(r["details"]["per_seed_auc"]["adaptdhm"]) == 2
    assert (out / "adaptdhm_summary.png").stat().st_size > 1000


def test_config_validation():
    exp = get("adaptdhm")
    with pytest.raises(UsageError, match="methods"):
        apply_overrides(exp.sizes["test"], ["methods=dnn"])
    with pytest.raises(UsageError, match="beta"):
        apply_overrides(exp.sizes["test"], ["beta=1.5"])
    with pytest.raises(UsageError, match="batch_size"):
        apply_overrides(exp.sizes["test"], ["batch_size=100000"])
