"""Shared fixtures for experiment tests: run an experiment at its `test` size once and check the
runner's contract (every required key of result.json, real PNG plots)."""

import json

import pytest

from zoo.registry import run_experiment

REQUIRED = ("experiment", "paper", "size", "claim", "claim_holds", "metrics", "config", "seeds", "seconds", "env")


@pytest.fixture(scope="session")
def run_test_size(tmp_path_factory):
    """``run_test_size(name, **run_experiment_kwargs) -> (out_dir, result dict)``."""

    def run(name: str, **kwargs):
        out = tmp_path_factory.mktemp(name.replace("/", "_") + "_test")
        run_experiment(name, size="test", out=out, **kwargs)
        result = json.loads((out / "result.json").read_text())
        missing = [k for k in REQUIRED if k not in result]
        assert not missing, f"{name}: result.json lacks {missing}"
        assert (result["experiment"], result["size"]) == (name, "test")
        assert isinstance(result["claim_holds"], bool)
        for plot in result["plots"]:
            data = (out / plot).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, f"{name}: {plot} is not a PNG"
        return out, result

    return run
