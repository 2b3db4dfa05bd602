"""Every registered experiment keeps the runner's contract (cheap: nothing is run here)."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zoo import registry

ROOT = Path(__file__).resolve().parents[2]
SLUGS = set(re.findall(r"^\| \[?(\w+)\]?", (ROOT / "docs/index.md").read_text(), re.M)) - {"slug"}
NAMES = registry.names()


def test_slugs_parsed():
    assert len(SLUGS) == 32


@pytest.mark.parametrize("name", NAMES)
def test_experiment_contract(name):
    exp = registry.get(name)
    assert exp.paper in SLUGS, f"{name}: paper {exp.paper!r} is not a slug of docs/index.md"
    assert name == exp.paper or name.startswith(exp.paper + "/"), "name must be <slug> or <slug>/<variant>"
    assert (ROOT / "docs/papers" / f"{exp.paper}.md").exists(), f"docs/papers/{exp.paper}.md is missing"
    assert exp.claim.strip() and exp.title.strip()
    assert exp.default_seeds >= 1
    for size in registry.SIZES:
        cfg = exp.sizes[size]
        assert dataclasses.is_dataclass(cfg) and type(cfg).__dataclass_params__.frozen, f"{size}: frozen dataclass"
        assert registry.apply_overrides(cfg, []) == cfg  # every config round-trips through validation


def test_every_main_experiment_has_its_slug():
    papers = {registry.get(n).paper for n in NAMES}
    assert papers <= set(NAMES), f"papers without a main experiment named by their slug: {papers - set(NAMES)}"


def test_loading_all_experiments_is_light():
    code = (
        "import sys; from zoo import registry; registry.load_all(); "
        "bad = [m for m in ('matplotlib', 'datasets', 'sklearn', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
