"""The `quantile_aggregation` experiment end to end at its `test` size (spec section 5b)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from zoo.registry import UsageError, apply_overrides, get, run_experiment


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("quantile_aggregation", seeds=3)


def test_result_json_and_test_size_checks(test_run):
    _, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("quantile_aggregation", "quantile_aggregation", "test")
    assert r["seeds"] == [0, 1, 2]
    assert r["config"]["n_synthetic"] == 400 and r["config"]["n_levels"] == 9
    assert r["config"]["base_models"] == ["linear", "knn"]
    m = r["metrics"]
    checks = {k: v for k, v in m.items() if k.startswith("check/")}
    assert set(checks) == {"check/losses_finite", "check/weights_on_simplex", "check/sorted_outputs_monotone",
                           "check/adam_within_2pct_of_lp"}  # fmt: skip
    assert r["claim_holds"] == all(checks.values())
    assert r["claim_holds"], checks
    # the numbers behind the checks: Adam within 2% of the LP optimum, post-sorting never hurts a row
    assert 1.0 - 1e-4 <= m["synthetic/lp_ratio_medium"] <= 1.02
    assert 1.0 - 1e-4 <= m["synthetic/lp_ratio_coarse"] <= 1.02
    assert m["synthetic/sort_increase_rows"] == 0 and m["synthetic/iso_increase_rows"] == 0
    tp = {k.split("/pinball/")[1]: v for k, v in m.items() if "/pinball/" in k}
    assert tp["global_medium/sort"] <= tp["global_medium/raw"] + 1e-12
    assert tp["best_single"] in (tp["base/linear"], tp["base/knn"])  # selected on OOF, not on test
    assert tp["average"] >= min(tp["base/linear"], tp["base/knn"]) - 0.05
    assert 0.5 < m["synthetic/cqr_coverage_80"] <= 1.0
    assert len(r["details"]["synthetic"]["per_seed"]["best_single_idx"]) == 3
    # paired by seed: gain = best single (or average) - aggregate, with its bootstrap interval and wins/n
    assert m["synthetic/medium_sort_gain_vs_best_n"] == 3
    assert m["synthetic/medium_sort_gain_vs_best_ci_low"] <= m["synthetic/medium_sort_gain_vs_best_mean"]
    assert r["details"]["split_seeds"] == [0, 1, 2]


def test_plot_exists(test_run):
    out, r = test_run
    assert r["plots"] == ["quantile_aggregation.png"]
    data = (out / "quantile_aggregation.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_resume_restores_every_phase(test_run, capsys):
    """A resumed run in the same directory restores base models and aggregators: the same metrics."""
    out, r = test_run
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "base_models", "synthetic_cqr_global_medium", "synthetic_global_coarse", "synthetic_global_medium"]
    run_experiment("quantile_aggregation", size="test", seeds=3, out=out, resume=True, progress=True)
    again = json.loads((out / "result.json").read_text())
    assert "fitted" not in capsys.readouterr().err
    assert {k: v for k, v in again["metrics"].items() if not k.endswith("seconds")} == {
        k: v for k, v in r["metrics"].items() if not k.endswith("seconds")}


def test_sizes_and_bad_overrides():
    exp = get("quantile_aggregation")
    assert exp.default_seeds == 5 and exp.resumable and set(exp.sizes) == {"test", "quick", "paper"}
    q = exp.sizes["quick"]
    assert (q.n_synthetic, q.d_synthetic, q.n_levels, q.knn_k, q.gknn_k) == (2000, 4, 19, 20, 30)
    # claim 1 is gated on the set its threshold was calibrated on (HGB 4th); the MLP set is reported
    assert q.base_models == ("linear", "knn", "gknn", "hgb") and q.alt_base_models == ("linear", "knn", "gknn", "mlp")
    assert q.all_base_models == ("linear", "knn", "gknn", "hgb", "mlp")
    assert q.taus[0] == pytest.approx(0.05) and q.taus[-1] == pytest.approx(0.95)
    assert exp.sizes["paper"].n_levels == 99
    assert apply_overrides(q, ["base_models=linear,knn,hgb"]).base_models == ("linear", "knn", "hgb")
    with pytest.raises(UsageError, match="base_models"):
        apply_overrides(q, ["base_models=linear,forest"])
    with pytest.raises(UsageError, match="n_levels"):
        apply_overrides(q, ["n_levels=10"])
    with pytest.raises(UsageError, match="real_data"):
        apply_overrides(q, ["real_data=yacht"])
    with pytest.raises(UsageError, match="alt_base_models"):
        apply_overrides(q, ["alt_base_models=linear,forest"])
    with pytest.raises(UsageError, match="seed_offset"):
        apply_overrides(q, ["seed_offset=-1"])


def test_importing_the_experiment_is_light():
    code = (
        "import sys, zoo, zoo.experiments.quantile_aggregation; "
        "bad = [m for m in ('matplotlib', 'datasets', 'sklearn', 'scipy.optimize') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
