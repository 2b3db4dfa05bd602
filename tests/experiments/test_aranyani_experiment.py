"""The `aranyani` experiment end to end at its `test` size (spec papers/aranyani.md §5(b))."""

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("aranyani", seeds=1)


def test_result_and_plot(test_run):
    out, r = test_run
    m = r["metrics"]
    assert m["n_stream"] == 2000 and r["config"]["lams"] == [0.0, 10.0]
    assert r["claim_holds"] == (m["dp_lam10"] < m["dp_lam0"] and m["exact_rel_diff"] <= 1e-4)
    assert r["claim_holds"], m
    assert 0.5 < m["acc_lam0"] < 1 and m["acc_lam10"] > 0.5
    assert (out / "aranyani_tradeoff.png").stat().st_size > 1000


def test_config_validation():
    exp = get("aranyani")
    with pytest.raises(UsageError, match="lams"):
        apply_overrides(exp.sizes["test"], ["lams=1.0"])
    with pytest.raises(UsageError, match="dataset"):
        apply_overrides(exp.sizes["test"], ["dataset=compas"])
