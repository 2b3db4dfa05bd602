"""The tanglenas experiment at test size: benchmark, three searches, discretised architectures."""


def test_tanglenas_test_size(run_test_size):
    _, result = run_test_size("tanglenas", seeds=2)
    m, d = result["metrics"], result["details"]
    assert result["claim_holds"] is True
    assert m["n_architectures"] == 4 and len(d["benchmark_test_acc"]) == 4
    assert 0 <= m["bench_min"] <= m["bench_mean"] <= m["bench_max"] <= 100
    assert m["alpha_moved_drnas"] > 0 and m["alpha_moved_darts"] > 0 and m["alpha_moved_spos"] == 0
    for method in ("drnas", "darts", "spos"):
        assert len(d["chosen"][method]) == 2
        for arch in d["chosen"][method]:
            assert arch["channels"][0] in (2, 4) and arch["kernels"][0] in (1, 3)
        assert m["bench_min"] <= m[f"acc_{method}"] <= m["bench_max"]
