"""The universality-lens experiments end to end at their `test` size (spec papers/universality_lens.md §5)."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from zoo.registry import UsageError, apply_overrides, get


@pytest.fixture(scope="module")
def lens_run(run_test_size):
    return run_test_size("universality_lens")


@pytest.fixture(scope="module")
def exact_run(run_test_size):
    return run_test_size("universality_lens/exact")


def _png_ok(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_sgld_mixture_test_size(lens_run):
    out, r = lens_run
    assert (r["experiment"], r["paper"], r["size"]) == ("universality_lens", "universality_lens", "test")
    assert r["seeds"] == list(range(10)) and r["details"]["seeds_used"] == [0]  # test size: 1 seed
    assert r["details"]["teacher_seeds"] == [1000]
    m = r["metrics"]
    for k in ("width8/gd_regret", "width8/mixture_regret", "width8/sample_mean_regret", "width8/mixture_log_loss",
              "width8/sample_mean_log_loss", "width8/gd_train_nll", "width8/final_potential"):  # fmt: skip
        assert k in m and np.isfinite(m[k]), k
    # the spec's test-size assertions: finite losses, mixture log-loss <= members' mean
    assert m["sanity_finite"] and m["width8/finite"] and m["width8/gd_finite"]
    assert m["width8/mixture_log_loss"] <= m["width8/sample_mean_log_loss"]
    assert m["sanity_mixture_log_loss_le_members"] is True
    assert r["claim_holds"] == (m["sanity_finite"] and m["sanity_mixture_log_loss_le_members"])
    # the full gate's pieces are recorded too: paired per-width statistics; one teacher is not enough to gate on
    assert m["teachers"] == 1 and m["enough_teachers"] is False
    p = r["details"]["paired"]["half_gd_minus_mixture/width8"]
    assert p["n"] == 1 and p["ci_low"] == p["mean"] == p["ci_high"]
    np.testing.assert_allclose(p["mean"], 0.5 * m["width8/gd_regret"] - m["width8/mixture_regret"], rtol=1e-5)
    # regret = log-loss − teacher entropy, and every regret is >= 0
    regret = m["width8/mixture_log_loss"] - m["width8/teacher_entropy"]
    np.testing.assert_allclose(regret, m["width8/mixture_regret"], rtol=1e-4)
    assert 0 <= m["width8/mixture_regret"] <= m["width8/sample_mean_regret"]
    assert r["plots"] == ["universality_lens.png"] and _png_ok(out / "universality_lens.png")


def test_exact_theory_test_size(exact_run):
    out, r = exact_run
    assert r["experiment"] == "universality_lens/exact" and r["claim_holds"] is True
    m = r["metrics"]
    for n in (10, 100, 1000):
        assert m[f"grid/n{n}/regret"] <= m[f"grid/n{n}/bound"]
    assert m["grid/n10/regret"] > m["grid/n100/regret"] > m["grid/n1000/regret"]
    # the spec's exact numbers (Bates toy, n = 100), to the digits printed there
    assert abs(m["bates/D1/regret_theta0.5"] - 0.0159) < 1e-4 and abs(m["bates/D16/regret_theta0.5"] - 0.0023) < 1e-4
    assert abs(m["bates/D1/regret_theta0.9"] - 0.021) < 1e-3 and abs(m["bates/D16/regret_theta0.9"] - 0.135) < 1e-3
    assert m["chain_rule_abs_error"] < 1e-10
    assert m["batch_regret_uniform_theta0.5_t1"] < m["batch_regret_uniform_theta0.5_t2"]  # not monotone
    assert _png_ok(out / "universality_lens_exact.png")


def test_sizes_follow_the_spec_and_bad_overrides_fail():
    lens, exact = get("universality_lens"), get("universality_lens/exact")
    assert lens.default_seeds == 10 and exact.default_seeds == 3  # E2's claims are paired over >= 10 teachers
    q = lens.sizes["quick"]
    assert (q.widths, q.n_trains, q.d, q.n_test, q.gd_lr, q.gd_steps) == ((8, 64, 256, 1024), (256,), 10, 4000, 0.5,
                                                                          4000)  # fmt: skip
    assert (q.sgld_steps, q.burn_in, q.thin, q.alpha_n, q.temperatures, q.gate) == (6000, 3000, 30, 0.5, (1.0,), "full")
    assert (q.sgld_steps - q.burn_in) // q.thin == 100 and q.gd_models == 1  # 100 samples; no deep ensemble
    t = lens.sizes["test"]
    assert (t.widths, t.sgld_steps, t.gd_steps, t.max_seeds) == ((8,), 500, 200, 1)
    p = lens.sizes["paper"]
    assert p.widths == (16, 64, 256, 1024, 4096) and p.depths == (1, 3) and p.mnist1d and p.num_chains == 8
    assert exact.sizes["quick"].ns == (10, 100, 1000) and exact.sizes["quick"].bates_dims == (1, 2, 4, 8, 16)
    assert apply_overrides(t, ["widths=4,8", "temperatures=1,0.3"]).widths == (4, 8)
    for bad, match in (("widths=0", "widths"), ("burn_in=500", "burn_in"), ("samplers=hmc", "samplers"),
                       ("temperatures=0", "temperatures"), ("gate=none", "gate"), ("thin=0", "thin")):  # fmt: skip
        with pytest.raises(UsageError, match=match):
            apply_overrides(t, [bad])
    with pytest.raises(UsageError, match="theta0"):
        apply_overrides(exact.sizes["test"], ["theta0=1.5"])


def test_mnist1d_missing_is_skipped_with_a_clear_message(monkeypatch):
    from zoo.experiments import universality_lens as exp

    monkeypatch.setitem(sys.modules, "mnist1d", None)  # `import mnist1d` raises ImportError
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    details, metrics = {}, {}
    exp._mnist1d_part(exp.SIZES["paper"], (0,), details, metrics)
    assert metrics["mnist1d_skipped"] is True
    assert "mnist1d" in details["mnist1d"] and "not installed" in details["mnist1d"]


def test_mnist1d_part_runs_on_a_stand_in_package(monkeypatch):
    """The paper-size mnist1d code path, on a tiny stand-in for mnist1d.data.make_dataset."""
    import dataclasses

    from zoo.experiments import universality_lens as exp

    rng = np.random.default_rng(0)

    def make_dataset(args):
        n = int(args.num_samples * 0.8)
        return {"x": rng.normal(size=(n, 40)), "y": rng.integers(0, 10, n),
                "x_test": rng.normal(size=(20, 40)), "y_test": rng.integers(0, 10, 20)}  # fmt: skip

    data_mod = types.ModuleType("mnist1d.data")
    data_mod.get_dataset_args = lambda as_dict=False: types.SimpleNamespace(num_samples=5000)
    data_mod.make_dataset = make_dataset
    pkg = types.ModuleType("mnist1d")
    pkg.data = data_mod
    monkeypatch.setitem(sys.modules, "mnist1d", pkg)
    monkeypatch.setitem(sys.modules, "mnist1d.data", data_mod)
    cfg = dataclasses.replace(exp.SIZES["test"], widths=(4,), gd_steps=3, sgld_steps=6, burn_in=2, thin=2,
                              mnist1d=True, mnist1d_samples=50)  # fmt: skip
    details, metrics = {}, {}
    exp._mnist1d_part(cfg, (0, 1), details, metrics)
    assert details["mnist1d"].startswith("ran")
    for k in ("mnist1d/depth1/width4/gd_test_log_loss", "mnist1d/depth1/width4/sgld_mixture_test_log_loss"):
        assert np.isfinite(metrics[k]) and metrics[k] > 0


def test_importing_the_experiment_is_light():
    code = (
        "import sys, zoo, zoo.experiments.universality_lens, zoo.stats.universality_lens; "
        "bad = [m for m in ('matplotlib', 'datasets', 'sklearn') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

