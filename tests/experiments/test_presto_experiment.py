"""The `presto` experiment end to end at its `test` size (spec papers/presto.md section 5)."""

from __future__ import annotations


import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("presto")


def test_result_json_and_test_size_claim(test_run):
    _, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("presto", "presto", "test")
    assert r["config"]["n"] == 600 and r["config"]["K"] == 3 and r["config"]["n_lambda"] == 8
    m, per = r["metrics"], r["details"]["per_replicate"]
    assert m["replicates"] == 1 and len(per["mse_presto"]) == 1
    # the spec's test-size assertions: finite CV table, lambda* in the grid, Brier below intercept-only
    assert per["cv_finite"] == [True]
    assert 0 <= per["lam_index"][0] < 8
    assert per["brier_presto"][0] < per["brier_intercept"][0]
    assert r["claim_holds"] is True and m["pipeline_sanity"] is True
    assert m["full_data_paths_converged"] == 1 and per["path_converged"] == [True]
    for k in ("mse_presto_mean", "mse_po_mean", "mse_logistic_mean"):
        assert 0 < m[k] < 0.01, k
    assert m["ratio_vs_po"] == pytest.approx(m["mse_presto_mean"] / m["mse_po_mean"])
    assert m["ratio_vs_logistic"] == pytest.approx(m["mse_presto_mean"] / m["mse_logistic_mean"])
    assert m["wins_needed"] == 1
    pv = m["paired_vs_po"]
    assert pv["n"] == 1 and pv["ci95"][0] <= pv["mean_diff"] <= pv["ci95"][1]
    assert pv["mean_diff"] == pytest.approx(per["mse_presto"][0] - per["mse_po"][0])
    assert "skipped" in r["details"]["soup"]


def test_plot_written(test_run):
    out, r = test_run
    assert r["plots"] == ["presto_mse.png"]
    data = (out / "presto_mse.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_sizes_and_bad_overrides():
    exp = get("presto")
    assert exp.default_seeds == 50
    q = exp.sizes["quick"]
    assert (q.n, q.p, q.K, q.intercepts, q.design, q.dev_prob) == (2500, 10, 4, (0.0, 3.0, 5.0), "sparse", 0.5)
    assert (q.n_lambda, q.min_ratio, q.n_folds, q.soup_splits, q.tol) == (20, 0.01, 5, 20, 1e-9)
    assert (q.chunk, q.sequential_folds) == (1, True)  # CPU: no vmapped stragglers (see the config)
    assert exp.sizes["paper"].paper_grid is True and exp.sizes["paper"].soup_splits == 350
    assert apply_overrides(exp.sizes["test"], ["n_folds=4"]).n_folds == 4
    with pytest.raises(UsageError, match="intercepts"):
        apply_overrides(exp.sizes["test"], ["intercepts=0,3,5"])  # K = 3 needs 2 intercepts
    with pytest.raises(UsageError, match="n_folds"):
        apply_overrides(exp.sizes["test"], ["n_folds=1"])
    with pytest.raises(UsageError, match="design"):
        apply_overrides(exp.sizes["test"], ["design=medium"])
