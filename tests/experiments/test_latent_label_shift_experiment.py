"""The `latent_label_shift` experiment end to end at its `test` size (spec papers/latent_label_shift.md §5(b))."""

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("latent_label_shift", seeds=1)


def test_result_and_plot(test_run):
    out, r = test_run
    m = r["metrics"]
    assert r["config"]["k"] == 3 and r["config"]["r"] == 6
    assert r["claim_holds"] == (m["acc_ddfa_alpha0.5"] > m["acc_kmeans_alpha0.5"])
    assert r["claim_holds"], m  # DDFA beats k-means on raw features where similarity does not reflect classes
    assert 0.2 <= m["acc_kmeans_alpha0.5"] <= 0.8 and m["acc_oracle_alpha0.5"] > 0.8
    assert 0 <= m["prior_l1_per_domain_ddfa_alpha0.5"] <= 2
    assert len(r["details"]["val_loss_curve"]) == 5
    assert (out / "latent_label_shift_summary.png").stat().st_size > 1000


def test_config_validation():
    exp = get("latent_label_shift")
    with pytest.raises(UsageError, match="m"):
        apply_overrides(exp.sizes["test"], ["m=2"])
    with pytest.raises(UsageError, match="alphas"):
        apply_overrides(exp.sizes["test"], ["alphas=0"])
