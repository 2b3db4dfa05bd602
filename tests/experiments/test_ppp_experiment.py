"""The `ppp` experiment end to end at its `test` size (spec papers/ppp.md section 5)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("ppp")


def test_result_json_has_every_required_key(test_run):
    _, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("ppp", "ppp", "test")
    assert isinstance(r["claim_holds"], bool) and r["claim"].startswith("PPP finds")
    assert r["seeds"] == list(range(10))
    assert r["config"]["n_samples"] == 300 and r["config"]["centers"] == 3
    m = r["metrics"]
    for k in ("k_mode", "k_correct_fraction", "ari_truth_mean", "pairwise_ari_ppp", "pairwise_ari_kmeans",
              "seconds_per_fit", "split_test_compilations"):  # fmt: skip
        assert k in m, k
    assert r["claim_holds"] == (m["claim1_k_and_ari"] and m["claim2_repeatability"])
    assert m["split_test_compilations"] <= 1  # one compiled node function for all nodes and seeds
    assert len(r["details"]["k_per_seed"]) == 10


def test_plots_exist(test_run):
    out, r = test_run
    assert r["plots"] and "ppp_summary.png" in r["plots"]
    for name in r["plots"]:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_sizes_and_bad_overrides():
    exp = get("ppp")
    assert exp.default_seeds == 10 and set(exp.sizes) == {"test", "quick", "paper"}
    assert (exp.sizes["quick"].n_samples, exp.sizes["quick"].centers, exp.sizes["quick"].n_features) == (4000, 8, 10)
    assert exp.sizes["paper"].n_samples == 1_000_000
    assert apply_overrides(exp.sizes["test"], ["min_size=20"]).min_size == 20
    with pytest.raises(UsageError, match="cov_type"):
        apply_overrides(exp.sizes["test"], ["cov_type=spherical"])
    with pytest.raises(UsageError, match="min_size"):
        apply_overrides(exp.sizes["test"], ["min_size=0"])


def test_importing_the_experiment_is_light():
    code = (
        "import sys, zoo, zoo.experiments.ppp; "
        "bad = [m for m in ('matplotlib', 'datasets', 'sklearn') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
