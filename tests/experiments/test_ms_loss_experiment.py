"""The `ms_loss` experiment end to end at its `test` size (spec papers/ms_loss.md §5(b)), plus its generator."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("ms_loss", seeds=2)


def test_result_and_plot(test_run):
    out, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("ms_loss", "ms_loss", "test")
    assert r["seeds"] == [0, 1] and r["config"]["num_classes"] == 20 and r["config"]["methods"] == ["ms_code"]
    m = r["metrics"]
    assert r["claim_holds"] == (m["all_losses_decreased"] and m["R@1_ms_code"] > 0.4)
    assert r["claim_holds"], m  # the loss decreases and MS retrieves unseen classes far above chance (0.1)
    assert m["loss_last_tenth_ms_code"] < m["loss_first_tenth_ms_code"]
    for name in ("ms_code", "raw"):
        rk = [m[f"R@{k}_{name}"] for k in (1, 2, 4, 8)]
        assert rk == sorted(rk) and 0 < rk[0] <= 1  # Recall@K is monotone in K
    assert len(r["details"]["per_seed_R@1"]["ms_code"]) == 2
    assert "ms_code-raw" in r["details"]["paired"]
    assert (out / "ms_loss_quick.png").stat().st_size > 1000


def test_generator_and_config_validation():
    from zoo.experiments.ms_loss import make_many_class_1d

    x, y = make_many_class_1d(6, 4, seed=3)
    assert x.shape == (24, 40) and x.dtype == np.float32 and np.isfinite(x).all()
    assert np.bincount(y).tolist() == [4] * 6
    x2, _ = make_many_class_1d(6, 4, seed=3)
    np.testing.assert_array_equal(x, x2)  # a pure function of the seed
    assert not np.allclose(x, make_many_class_1d(6, 4, seed=4)[0])
    exp = get("ms_loss")
    with pytest.raises(UsageError, match="methods: expected one of"):
        apply_overrides(exp.sizes["test"], ["methods=ms_code,npair"])
    with pytest.raises(UsageError, match="chunk_steps: expected a divisor"):
        apply_overrides(exp.sizes["test"], ["chunk_steps=7"])
    with pytest.raises(UsageError, match="num_classes: expected an even"):
        apply_overrides(exp.sizes["test"], ["num_classes=21"])
    with pytest.raises(UsageError, match="methods: must include 'ms_code'"):
        apply_overrides(exp.sizes["test"], ["methods=triplet"])
