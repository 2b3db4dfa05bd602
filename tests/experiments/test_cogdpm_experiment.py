"""The cogdpm experiment at test size: runs, scores are finite and well-formed, the three modes share noise."""

import numpy as np


def test_cogdpm_test_size(run_test_size):
    out, res = run_test_size("cogdpm")
    m = res["metrics"]
    for mode in ("none", "cfg", "pw"):
        assert np.isfinite(m[f"crps_{mode}"]) and m[f"crps_{mode}"] >= 0
        assert -1 <= m[f"rho_err_{mode}"] <= 1 and -1 <= m[f"rho_oracle_{mode}"] <= 1
    assert 0 <= m["csi_none"] <= 1
    assert m["sample_steps"] <= 5 and m["ensemble_size"] == 2
    assert res["claim_holds"] is True  # at test size: every score finite
    pc = res["details"]["per_context"]
    assert len(pc["pw"]["crps"]) == 4
    assert "rho_err_pw" in res["details"]["claims"] and res["details"]["claims"]["rho_err_pw"]["n"] == 4
    assert {"cogdpm_quick.png", "cogdpm_scores.png"} <= set(res["plots"])
