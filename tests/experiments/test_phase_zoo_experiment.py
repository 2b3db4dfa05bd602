"""The `phase_zoo` experiment end to end at its `test` size."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("phase_zoo")


def test_result(test_run):
    out, r = test_run
    m = r["metrics"]
    assert m["n_models"] == 4 and r["claim_holds"] is True
    assert m["claim_finite"] and m["claim_labels_valid"] and m["claim_roundtrip"]
    phase = np.asarray(m["grid/phase"])
    assert phase.shape == (1, 2) and ((phase >= -1) & (phase <= 4)).all()
    assert np.asarray(m["grid/cka"]).shape == (1, 2)
    cka = np.asarray(m["grid/cka"])
    assert ((cka >= -1e-6) & (cka <= 1 + 1e-6)).all()
    assert len(r["details"]["models"]["width"]) == 4 and (out / "zoo" / "zoo.json").exists()
    assert r["plots"] == ["phase_zoo.png"]


def test_sizes_and_overrides():
    exp = get("phase_zoo")
    q = exp.sizes["quick"]
    assert q.widths == (2, 4, 8, 16, 32, 64) and q.n_seeds == 2 and q.gate
    with pytest.raises(UsageError, match="n_seeds"):
        apply_overrides(exp.sizes["test"], ["n_seeds=1"])
    with pytest.raises(UsageError, match="epochs"):
        apply_overrides(exp.sizes["test"], ["epochs=0"])
