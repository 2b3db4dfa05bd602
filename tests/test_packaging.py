"""Packaging guards: every package directory is installed, under the zoo namespace only."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    dirs = {"zoo": "zoo", "kernels": "zoo.kernels", "experiments": "zoo.experiments"}
    found = set()
    for top, name in dirs.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    assert found - listed == set(), f"add these to [tool.setuptools] packages in pyproject.toml: {found - listed}"
    assert all(p == "zoo" or p.startswith("zoo.") for p in listed)
    assert cfg["package-dir"] == {"zoo": "zoo", "zoo.kernels": "kernels", "zoo.experiments": "experiments"}


def test_kernels_and_experiments_import_under_zoo_only(tmp_path):
    code = (
        "import importlib.util as u, zoo.kernels, zoo.experiments; "
        "print(u.find_spec('kernels') is None, u.find_spec('experiments') is None, zoo.kernels.__file__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    no_kernels, no_experiments, path = out.stdout.split()
    assert (no_kernels, no_experiments) == ("True", "True")
    assert Path(path).name == "__init__.py" and Path(path).parent.name == "kernels"
