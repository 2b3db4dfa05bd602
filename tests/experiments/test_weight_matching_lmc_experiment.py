"""The `weight_matching_lmc` experiment end to end at its `test` size."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("weight_matching_lmc")


def test_result(test_run):
    out, r = test_run
    m = r["metrics"]
    assert m["n_pairs"] == 1 and r["claim_holds"] is True
    assert m["claim_wm_not_worse"] and m["claim_finite"]
    pair = r["details"]["per_pair"][0]
    assert pair["wm_train_barrier_loss"] <= pair["naive_train_barrier_loss"] + 1e-6
    assert 0 < pair["d_wm"] <= pair["d0"] and pair["ratio"] == pytest.approx(pair["d_wm"] / pair["d0"], rel=1e-5)
    assert np.isfinite(list(pair.values())).all()
    assert r["plots"] == ["weight_matching_lmc.png"]


def test_sizes_and_overrides():
    exp = get("weight_matching_lmc")
    q = exp.sizes["quick"]
    assert q.widths == (256, 256) and q.epochs == 40 and q.n_ts == 25 and q.k_overlap == 5
    with pytest.raises(UsageError, match="k_overlap"):
        apply_overrides(exp.sizes["test"], ["k_overlap=100"])
    with pytest.raises(UsageError, match="epochs"):
        apply_overrides(exp.sizes["test"], ["epochs=0"])
