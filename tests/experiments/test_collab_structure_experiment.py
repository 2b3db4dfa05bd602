"""The `collab_structure` experiment end to end at its `test` size (spec §5b)."""

import math

import pytest

from zoo.registry import UsageError, apply_overrides, get

pytest.importorskip("networkx")


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("collab_structure")


def test_result_and_claims(test_run):
    out, r = test_run
    m, d = r["metrics"], r["details"]
    assert m["n_seeds"] == 1 and list(d["per_seed"]) == ["beta3"]
    row = d["per_seed"]["beta3"][0]
    reg = row["regression"]
    # beta = 3 builds "popular -> modular, not hierarchical" in: the size-controlled sign is negative
    assert m["claim_C_test"] is True and reg["degree_centralization"]["coef_pop"] < 0
    assert r["claim_holds"] is True and "C1" not in {k[6:] for k in m if k.startswith("claim_")}
    for v in reg.values():
        assert v["n"] >= 25 and math.isfinite(v["t_pop"])
    assert 0 <= row["raw_modularity_mw_p"] <= 1 and row["corr_lnP_ln1n"] > 0.5
    assert r["plots"] == ["collab_structure.png"]


def test_sizes_and_bad_overrides():
    exp = get("collab_structure")
    q = exp.sizes["quick"]
    assert q.n_topics == 150 and q.betas == (0.0, 3.0) and (q.p_low, q.p_high) == (15, 400)
    with pytest.raises(UsageError, match="p_high"):
        apply_overrides(exp.sizes["test"], ["p_high=10"])
    with pytest.raises(UsageError, match="buckets"):
        apply_overrides(exp.sizes["test"], ["buckets=128,64"])
