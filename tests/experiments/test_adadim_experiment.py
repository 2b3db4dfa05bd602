"""The `adadim` experiment end to end at its `test` size (spec papers/adadim.md §5(b))."""

from __future__ import annotations

import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def test_run(run_test_size):
    return run_test_size("adadim", seeds=2)


def test_result_and_plot(test_run):
    out, r = test_run
    assert (r["experiment"], r["paper"], r["size"]) == ("adadim", "adadim", "test")
    assert r["seeds"] == [0, 1] and r["config"]["task"] == "synthetic"
    m = r["metrics"]
    assert r["claim_holds"] == (m["frac_ic_lower_mse_outlier_input"] == 1.0
                                and m["frac_select_ic_outlier_input"] == 1.0
                                and m["frac_select_oc_outlier_output"] == 1.0)  # fmt: skip
    assert r["claim_holds"], m
    assert m["mse_ic_outlier_input"] < m["mse_oc_outlier_input"]
    assert m["mse_oc_outlier_output"] < m["mse_ic_outlier_output"]
    assert (out / "adadim_synthetic.png").stat().st_size > 1000


def test_config_validation():
    exp = get("adadim")
    q = exp.sizes["quick"]
    assert (q.task, q.bits, q.group_size, q.style) == ("mlp", 3, 16, "awq")
    with pytest.raises(UsageError, match="group_size"):
        apply_overrides(q, ["group_size=24"])
    with pytest.raises(UsageError, match="methods: expected one of"):
        apply_overrides(q, ["methods=rtn_ada,awq"])
    with pytest.raises(UsageError, match="task"):
        apply_overrides(q, ["task=lm"])
    with pytest.raises(UsageError, match="bits"):
        apply_overrides(q, ["bits=9"])
    assert q.scope == "logits" and exp.default_seeds >= 10
    with pytest.raises(UsageError, match="scope"):
        apply_overrides(q, ["scope=layer"])


def test_mlp_scopes_judge_at_the_logits():
    """With the FP kernel substituted, the "logits" scope of either layer is the MLP's output."""
    import jax
    import numpy as np

    from zoo.experiments.adadim import mlp_layers
    from zoo.quant import models

    k = jax.random.split(jax.random.key(0), 4)
    params = {f"Dense_{i}": {"kernel": jax.random.normal(k[i], (a, b)) / np.sqrt(a),
                             "bias": np.full((b,), 0.1, np.float32)}
              for i, (a, b) in enumerate(((64, 16), (16, 16), (16, 10)))}  # fmt: skip
    x = jax.random.uniform(k[3], (8, 64))
    logits = models.mlp_apply(params, x)
    for lay in mlp_layers("logits"):
        out = lay.sub_block(params, lay.sub_input(params, x), params[lay.path[0]]["kernel"])
        np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-5)
    up, down = mlp_layers("subblock")
    assert up.sub_block(params, x, params["Dense_0"]["kernel"]).shape == (8, 16)  # layer 2's pre-activation


def test_lm_variant(run_test_size):
    out, r = run_test_size("adadim/lm", seeds=1)
    m = r["metrics"]
    assert r["paper"] == "adadim" and r["config"]["group_size"] == 16
    assert abs(m["fp_ppl_outliers"] - m["fp_ppl"]) < 1e-3 * m["fp_ppl"]  # the outliers preserve the function
    assert r["claim_holds"] == (m["ppl_outliers_rtn_ada"] <= m["ppl_outliers_rtn_oc"])  # the paper's baseline: per-OC
    assert m["gain_ppl_outliers_rtn_ada_vs_oc_n"] == 1
    assert 0.0 <= m["ic_frac_outliers_rtn_ada"] <= 1.0
    assert (out / "adadim_lm.png").stat().st_size > 1000
