"""The `flexround` experiment end to end at its `test` size (spec papers/flexround.md §5(b))."""

from __future__ import annotations

import pytest

from zoo.registry import UsageError, apply_overrides, get, run_experiment


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("flexround", seeds=1)


def test_result_and_plot(test_run):
    out, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("flexround", "flexround", "test")
    assert r["seeds"] == [0] and r["config"]["steps"] == 200 and r["config"]["n_calib"] == 64
    m = r["metrics"]
    assert m["fp_acc"] > 0.9
    assert r["claim_holds"] == (m["logit_mse_flexround_3"] < m["logit_mse_rtn_3"])
    assert r["claim_holds"], m  # 200 steps of FlexRound beat RTN on the same grid
    assert 0 < m["flip_frac_flexround_3"] < 0.5
    assert m["recon_final_flexround_3"] < m["recon_final_rtn_3"]
    assert len(r["details"]["per_seed"]["flexround_3"]["acc"]) == 1
    assert (out / "flexround_summary.png").stat().st_size > 1000
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["flexround_3", "rtn_3"]  # one per phase


def test_resume_restores_finished_phases(test_run):
    out, r = test_run
    again = run_experiment("flexround", size="test", seeds=1, out=out, resume=True)
    assert again["metrics"] | {k: 0 for k in again["metrics"] if k.startswith("seconds")} == r["metrics"] | {
        k: 0 for k in r["metrics"] if k.startswith("seconds")}
    assert again["metrics"]["seconds_ptq"] < r["metrics"]["seconds_ptq"]  # restored, not recomputed


def test_paired_gate():
    from zoo.experiments.flexround import _paired_gate, paired

    m = {}
    s = paired([0.99, 0.98, 0.99, 0.97], [0.97, 0.97, 0.98, 0.96], 100.0)  # +1.25 pp, every seed above
    assert s["wins"] == 4 and s["n"] == 4 and abs(s["mean"] - 1.25) < 1e-9 and s["ci_low"] > 0
    assert _paired_gate(m, "d", s, 1.0) and m["d_wins"] == 4
    assert not _paired_gate(m, "d", s, 1.5)  # mean below the threshold
    s = paired([0.99, 0.95], [0.96, 0.97], 100.0)  # +0.5 pp on average, one loss: interval spans 0
    assert not _paired_gate(m, "d", s, 0.1)


def test_config_validation():
    exp = get("flexround")
    assert exp.sizes["quick"].bits == (2, 3) and exp.sizes["quick"].granularity == "tensor"
    assert exp.default_seeds >= 10 and exp.resumable and get("flexround/lm").resumable
    with pytest.raises(UsageError, match="bits"):
        apply_overrides(exp.sizes["test"], ["bits=1"])
    with pytest.raises(UsageError, match="methods: expected one of"):
        apply_overrides(exp.sizes["test"], ["methods=rtn,brecq"])
    with pytest.raises(UsageError, match="methods: must include 'flexround'"):
        apply_overrides(exp.sizes["test"], ["methods=rtn"])
    with pytest.raises(UsageError, match="batch_size"):
        apply_overrides(exp.sizes["test"], ["batch_size=100"])


def test_lm_variant(run_test_size):
    out, r = run_test_size("flexround/lm", seeds=1)
    m = r["metrics"]
    assert r["paper"] == "flexround" and r["config"]["granularity"] == "oc" and r["config"]["grid"] == "minmax"
    assert 1.0 < m["fp_ppl"] < 13.0  # better than uniform over the 13 symbols
    assert m["fp_ppl"] <= m["ppl_flexround_3"] * 1.05
    assert r["claim_holds"] == (m["ppl_flexround_3"] <= m["ppl_rtn_3"])
    assert (out / "flexround_lm.png").stat().st_size > 1000
