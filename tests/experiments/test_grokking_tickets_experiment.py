"""The grokking_tickets experiment at test size: pipeline invariants, curve shapes, per-seed outputs."""

import zoo.experiments.grokking_tickets as exp


def test_grokking_tickets_test_size(run_test_size):
    out, result = run_test_size("grokking_tickets")
    m, d = result["metrics"], result["details"]
    assert result["claim_holds"] is True  # test size: the pipeline invariants only
    assert abs(m["ticket_density_mean"] - 0.4) <= 0.01
    assert m["ticket_rewound_to_init"] is True and m["pruned_stay_zero"] is True
    cfg = exp.SIZES["test"]
    assert len(d["curves_mean"]["dense"]) == cfg.dense_steps // cfg.eval_every
    for arm in cfg.arms:
        assert len(d["curves_mean"][arm]) == cfg.retrain_steps // cfg.eval_every
        assert len(d["per_seed"][f"{arm}_acc"]) == len(result["seeds"])
    assert set(d["summaries"]) == {"dense", "random", "same_norm_l2"}
    assert all(0.0 <= v <= 1.0 for v in d["curves_mean"]["ticket"])
    assert result["plots"] == ["grokking_tickets_curves.png"]
