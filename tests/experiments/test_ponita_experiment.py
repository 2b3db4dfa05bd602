"""The `ponita` and `ponita/md_substitute` experiments end to end at their `test` sizes (spec papers/ponita.md §5)."""

from __future__ import annotations

import math

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def nbody_run(run_test_size):
    return run_test_size("ponita", seeds=2)


@pytest.fixture(scope="module")
def md_run(run_test_size):
    return run_test_size("ponita/md_substitute", seeds=2)


def test_nbody_test_size(nbody_run):
    out, r = nbody_run
    m = r["metrics"]
    assert r["seeds"] == [0, 1] and r["config"]["n_train"] == 64 and r["config"]["num_ori"] == 4
    assert all(math.isfinite(v) for v in m.values() if isinstance(v, float))
    assert r["claim_holds"] == (m["ponita_train_loss_last"] < m["ponita_train_loss_first"])
    assert r["claim_holds"], m
    assert len(r["details"]["ponita_per_seed_test_mse"]) == 2
    assert 0 < m["baseline_linear_mse"] < m["baseline_const_vel_mse"] < m["baseline_zero_mse"]
    assert (out / "ponita_nbody.png").stat().st_size > 1000


def test_md_test_size(md_run):
    out, r = md_run
    m = r["metrics"]
    assert r["claim_holds"], m  # both arms lower their loss, nothing NaN
    for arm in ("ponita", "pnita"):
        assert m[f"{arm}_train_loss_last"] < m[f"{arm}_train_loss_first"]
        assert math.isfinite(m[f"{arm}_force_mae"]) and m[f"{arm}_force_mae"] > 0
    assert m["zero_force_mae"] > 0 and (out / "ponita_md_substitute.png").stat().st_size > 1000
    # force non-invariance of the finite grid, at init and after training: positive, finite, a relative size
    for k in ("ponita_init_force_noninvariance", "ponita_final_force_noninvariance"):
        assert 0 < m[k] < 5, (k, m[k])
    assert len(r["details"]["ponita_per_seed_init_force_noninvariance"]) == 2
    # the comparison paired by seed: margin = 0.8 pnita - ponita per seed
    p = r["details"]["paired_margin_ratio_max_pnita_minus_ponita"]
    pon, pni = r["details"]["ponita_per_seed_force_mae"], r["details"]["pnita_per_seed_force_mae"]
    d = [0.8 * b - a for a, b in zip(pon, pni)]
    assert p["n"] == 2 and abs(p["mean"] - sum(d) / 2) < 1e-6 and p["ci_low"] <= p["mean"] <= p["ci_high"]
    assert p["wins"] == sum(x > 0 for x in d)


def test_config_validation():
    nb, md = get("ponita"), get("ponita/md_substitute")
    with pytest.raises(UsageError, match="eval_chunks: expected a divisor"):
        apply_overrides(nb.sizes["quick"], ["eval_chunks=7"])
    with pytest.raises(UsageError, match="n_train"):
        apply_overrides(nb.sizes["test"], ["n_train=20000"])
    with pytest.raises(UsageError, match="n_atoms: expected 8 or 12"):
        apply_overrides(md.sizes["test"], ["n_atoms=9"])
    with pytest.raises(UsageError, match="num_ori"):
        apply_overrides(md.sizes["test"], ["num_ori=0"])
    assert nb.sizes["paper"].num_ori == 16 and nb.sizes["paper"].hidden_dim == 128
    assert md.sizes["paper"].num_ori == 20 and md.sizes["paper"].ema == 0.99
    assert md.sizes["quick"].num_ori == 20  # the official rMD17 grid
