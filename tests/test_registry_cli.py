"""The experiment registry and the `zoo` command, on a tiny stand-in experiment."""

import dataclasses
import json
from typing import Literal

import pytest

from zoo import cli, registry


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Cfg:
    n: int = 3
    scale: float = 1.0
    mode: Literal["a", "b"] = "a"
    flag: bool = False
    dims: tuple[int, ...] = (2, 3)

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n: expected >= 1, got {self.n}")


def _run(cfg, ctx):
    (ctx.out_dir / "plot.png").write_bytes(b"\x89PNG")
    total = cfg.n * cfg.scale * len(ctx.seeds)
    return registry.Outcome(metrics={"total": total, "dims": sum(cfg.dims)}, claim_holds=total > 5, plots=["plot.png"])


@pytest.fixture(autouse=True)
def _dummy():
    registry.load_all()
    exp = registry.register(registry.Experiment(
        name="_dummy/x", paper="_dummy", title="A stand-in", claim="total exceeds 5",
        sizes={"test": _Cfg(), "quick": _Cfg(n=10), "paper": _Cfg(n=100)}, run=_run, default_seeds=2))
    yield exp
    registry._REGISTRY.pop("_dummy/x", None)


REQUIRED = {"experiment", "paper", "size", "claim", "claim_holds", "metrics", "config", "seeds", "seconds", "env"}


def test_run_writes_result(tmp_path, capsys):
    assert cli.main(["run", "_dummy/x", "--size", "test", "--out", str(tmp_path), "--set", "scale=0.5",
                     "--set", "mode=b", "--set", "flag=true", "--set", "dims=4,5,6", "--seeds", "3"]) == 0
    res = json.loads((tmp_path / "result.json").read_text())
    assert REQUIRED <= set(res)
    assert res["config"] == {"n": 3, "scale": 0.5, "mode": "b", "flag": True, "dims": [4, 5, 6]}
    assert res["seeds"] == [0, 1, 2] and res["metrics"]["total"] == 4.5 and res["claim_holds"] is False
    assert res["env"]["backend"] == "cpu" and res["plots"] == ["plot.png"]
    assert "verdict: DOES NOT HOLD" in capsys.readouterr().out


def test_list_shows_experiments(capsys):
    assert cli.main(["list"]) == 0
    assert "_dummy/x" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["run", "nope"], "choose one of:"),
    (["run", "_dummy/x", "--size", "huge"], "choose from 'test', 'quick', 'paper'"),
    (["run", "_dummy/x", "--set", "bogus=1"], "valid keys: n, scale, mode, flag, dims"),
    (["run", "_dummy/x", "--set", "n=abc"], "expected an int"),
    (["run", "_dummy/x", "--set", "mode=c"], "expected one of a, b"),
    (["run", "_dummy/x", "--set", "flag=maybe"], "expected a bool"),
    (["run", "_dummy/x", "--set", "n=0"], "n: expected >= 1"),
    (["run", "_dummy/x", "--set", "n"], "expected key=value"),
    (["run", "_dummy/x", "--seeds", "0"], "--seeds"),
    (["run", "_dummy/x", "--frobnicate"], "valid options of `zoo run`"),
    (["frob"], "invalid choice"),
])
def test_usage_errors_one_line_exit_2(argv, needle, capsys, tmp_path):
    try:  # argparse's own errors exit; the registry's return the code
        rc = cli.main(argv + (["--out", str(tmp_path)] if argv[0] == "run" else []))
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def test_report_collects_latest(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    registry.run_experiment("_dummy/x", size="quick", out=tmp_path / "runs/_dummy/x/quick-20260101-000000")
    assert cli.main(["report", "--out", "report.md"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| _dummy/x | quick | 2 | total exceeds 5 | holds |" in text
    assert "](img/results/_dummy__x/plot.png)" in text  # plots copied beside the report
    assert (tmp_path / "img/results/_dummy__x/plot.png").read_bytes() == b"\x89PNG"


def test_resume_of_an_experiment_that_does_not_checkpoint_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    registry.run_experiment("_dummy/x", size="test", out=tmp_path / "runs/_dummy/x/test-20260101-000000")
    assert cli.main(["run", "_dummy/x", "--size", "test", "--resume"]) == 2
    assert "cannot resume" in capsys.readouterr().err


def _chunked_run(cfg, ctx):
    """A resumable stand-in: a population of one counter per seed, one chunk per step."""
    import jax
    import jax.numpy as jnp

    from zoo.train import run_population

    keys = jax.vmap(jax.random.key)(jnp.asarray(ctx.seeds, jnp.uint32))
    init = lambda k, h: jax.random.uniform(k)  # noqa: E731
    chunk = lambda s, h, c: (s * 0.5 + c, s)  # noqa: E731
    state, outs = run_population(init, chunk, keys, num_chunks=cfg.n, **ctx.runner("count"))
    return registry.Outcome(metrics={"final": float(state.sum()), "first": float(outs[:, 0].sum())}, claim_holds=True)


@pytest.fixture
def _resumable():
    registry.register(registry.Experiment(
        name="_dummy/resumable", paper="_dummy", title="A resumable stand-in", claim="always",
        sizes={"test": _Cfg(n=4), "quick": _Cfg(n=4), "paper": _Cfg(n=4)}, run=_chunked_run, resumable=True))
    yield
    registry._REGISTRY.pop("_dummy/resumable", None)


def test_resume_reuses_latest_dir_and_checks_settings(tmp_path, monkeypatch, capsys, _resumable):
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "runs/_dummy/resumable/test-20260101-000000"
    full = registry.run_experiment("_dummy/resumable", size="test", out=first)
    (first / "result.json").unlink()  # as if killed before the end: report skips it, resume finds it
    assert cli.main(["report", "--size", "test", "--out", "r.md"]) == 0
    assert "_dummy/resumable" not in (tmp_path / "r.md").read_text()
    assert cli.main(["run", "_dummy/resumable", "--size", "test", "--resume", "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs/_dummy/resumable").iterdir()) == [first.name]
    assert json.loads((first / "result.json").read_text())["metrics"] == full["metrics"]
    assert cli.main(["run", "_dummy/resumable", "--size", "test", "--resume", "--seeds", "5"]) == 2
    assert "another seeds" in capsys.readouterr().err
    assert cli.main(["run", "_dummy/resumable", "--size", "test", "--out", str(first)]) == 2
    assert "holds checkpoints" in capsys.readouterr().err


def test_cached_phase_is_computed_once_and_restored_on_resume(tmp_path):
    import numpy as np

    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(3.0), "b": np.array([[1, 2]])}

    ctx = registry.RunContext(out_dir=tmp_path, seeds=(0,), size="test")
    first = ctx.cached("phase/x", compute)
    assert (tmp_path / "checkpoints" / "phase" / "x.npz").exists()
    assert not list((tmp_path / "checkpoints" / "phase").glob("*.tmp"))  # written atomically
    again = ctx.cached("phase/x", compute)  # a new run (no resume) computes again
    resumed = dataclasses.replace(ctx, resume=True).cached("phase/x", compute)  # a resumed run restores
    assert len(calls) == 2
    for got in (again, resumed):
        assert set(got) == {"a", "b"} and all(np.array_equal(got[k], first[k]) for k in first)
    off = dataclasses.replace(ctx, checkpoints=False, resume=True, out_dir=tmp_path / "off")
    off.cached("phase/x", compute)
    assert len(calls) == 3 and not (tmp_path / "off").exists()
