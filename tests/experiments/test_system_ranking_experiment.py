"""The ``system_ranking`` experiment at its test size: runner contract, claims, and numbers that could fail."""

import numpy as np
import pytest

from zoo.experiments import system_ranking as exp


def test_system_ranking_test_size(run_test_size):
    out, result = run_test_size("system_ranking")
    m = result["metrics"]
    assert result["claim_holds"] is True
    assert m["n_synthetic_tables"] == 20
    assert m["err_mean_c1"] == 1.0 and m["err_borda_c1"] < 0.2  # the corrupted task dictates the mean only
    assert m["instance_one_level_err"] == 1.0 and m["instance_two_level_err"] == 0.0
    assert abs(m["glue_tau_mean_borda"] - 0.9153) < 1e-3  # recomputed from the official GLUE snapshot
    assert m["glue_top1_overlap"] == 1 and m["glue_top10_overlap"] == 8
    assert 0.0 < m["glue_removal_tau_mean_k3"] < 1.0 and "claim_C4" not in m  # theorems skipped at test size
    assert result["plots"] == ["system_ranking.png"]


def test_tables_and_config_validation():
    shapes = {name: exp.load_table(name).shape for name in exp.TABLE_NAMES}
    assert shapes == {"glue": (105, 14), "superglue": (24, 14), "xtreme": (15, 4)}
    assert np.isfinite(exp.load_table("glue")).all()
    with pytest.raises(ValueError, match="corrupt_levels"):
        exp.SystemRankingConfig(corrupt_levels=(0, 2))
    with pytest.raises(ValueError, match="n_systems"):
        exp.SystemRankingConfig(n_systems=17)
    with pytest.raises(ValueError, match="tables"):
        exp.SystemRankingConfig(tables=("mnist",))
