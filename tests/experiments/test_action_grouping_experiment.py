"""The `action_grouping` experiment end to end at its `test` size (spec §5b)."""

import numpy as np
import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("action_grouping")


def test_result_and_claims(test_run):
    out, r = test_run
    m, d = r["metrics"], r["details"]
    assert m["n_seeds"] == 5 and d["Gs"] == [1, 2, 4, 8, 16] and d["budgets"] == [96, 1536]
    # the test size checks only the approximation part (U-shape / argmin need the quick grid)
    assert m["claim_U1"] is None and m["claim_U2"] is None and m["claim_S"] is None
    assert m["claim_A"] is True and r["claim_holds"] is True
    approx = np.asarray(d["approx_mean"])
    assert approx[-1] == pytest.approx(0, abs=1e-5) and np.all(np.diff(approx) < 0)
    loss = np.asarray(d["mean_loss"])
    assert loss.shape == (2, 5) and np.all(loss >= approx - 1e-5)
    # more samples help at every G > 1 on average, and G = 1 does not depend on the budget much
    assert loss[1, 1:].mean() < loss[0, 1:].mean()
    assert d["N"] == [[max(1, B // (6 * g)) for g in d["Gs"]] for B in d["budgets"]]
    assert r["plots"] == ["action_grouping.png"]


def test_sizes_and_bad_overrides():
    exp = get("action_grouping")
    q = exp.sizes["quick"]
    assert q.Gs == (1, 2, 4, 8, 16, 32, 64) and q.budgets == (640, 2560, 10240, 40960, 163840) and q.S == 10
    with pytest.raises(UsageError, match="Gs"):
        apply_overrides(exp.sizes["test"], ["Gs=1,3"])
    with pytest.raises(UsageError, match="budgets"):
        apply_overrides(exp.sizes["test"], ["budgets=100,10"])
