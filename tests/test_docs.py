"""The docs cannot rot.

- every fenced ```python block in README.md and docs/ runs, and every relative link points to a file that
  exists (cheap, one test per page);
- the Sphinx site builds with warnings as errors, executing every notebook under docs/notebooks/ (one test:
  the build is the expensive part, so it runs once, in one xdist worker);
- its API reference documents every public function of the library (read from the built objects inventory).
"""

import os
import posixpath
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _public_api import modules_under
from _public_api import public_functions as _public_functions

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)])
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
BUILD_COMMAND = "sphinx-build -W --keep-going -b html docs docs/_build/html"  # what README.md documents


def _pages_with_code():
    return [p for p in PAGES if FENCE.search(p.read_text())]


@pytest.mark.parametrize("page", _pages_with_code(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    namespace = {"__name__": "__docs__"}
    for i, block in enumerate(FENCE.findall(page.read_text())):
        try:
            exec(compile(block, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # name the page and block, then re-raise
            raise AssertionError(f"{page.relative_to(ROOT)} block {i} failed: {e!r}\n{block}") from e


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = FENCE.sub("", page.read_text())
    missing = [t for t in LINK.findall(text)
               if "://" not in t and not t.startswith("mailto:") and not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_build_command_is_documented():
    for page in (ROOT / "README.md", DOCS / "getting-started.md"):
        assert BUILD_COMMAND in page.read_text(), f"{page.name} must document `{BUILD_COMMAND}`"


# ------------------------------------------------------------------------------------ the Sphinx site


def public_functions() -> list[str]:
    """Every public function of the library (``zoo.experiments`` is not API)."""
    return _public_functions(modules_under("zoo", skip=("zoo.experiments",)))


def _build_site(out: Path) -> Path:
    """Build the site: notebooks executed (fresh, no cache), warnings are errors."""
    env = dict(os.environ, ZOO_DOCS_EXECUTE="force", JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q", str(DOCS), str(out / "html"),
           "-d", str(out / "doctrees"), "-D", f"nb_execution_cache_path={out / 'jupyter_cache'}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"sphinx-build failed ({seconds:.0f} s):\n{proc.stderr[-20000:]}"
    return out / "html"


def test_site_builds_notebooks_run_and_api_covers_every_public_function(tmp_path):
    """One test (the build is the expensive part; one xdist worker runs it once)."""
    pytest.importorskip("myst_nb", reason="the docs extra is not installed: pip install -e '.[docs]'")
    built_site = _build_site(tmp_path)
    for page in ("index", "api/index", "results", "benchmarks", "notebooks/index",
                 *(f"papers/{p.stem}" for p in (DOCS / "papers").glob("*.md")),
                 *(f"notebooks/{p.stem}" for p in (DOCS / "notebooks").glob("*.md"))):
        assert (built_site / f"{page}.html").exists(), f"{page}.html missing from the built site"
    for nb in (DOCS / "notebooks").glob("*.md"):
        if nb.stem == "index":
            continue
        html = (built_site / "notebooks" / f"{nb.stem}.html").read_text()
        assert "cell_output" in html, f"notebooks/{nb.stem}: no executed output in the page"
        assert "Traceback" not in html, f"notebooks/{nb.stem}: an error in the executed output"
    _check_api_coverage(built_site)


def _check_api_coverage(built_site: Path) -> None:
    from sphinx.util.inventory import InventoryFile

    with open(built_site / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", posixpath.join)
    data = inventory.data if hasattr(inventory, "data") else inventory  # Sphinx >= 8.2 / older
    documented = {name for kind, objects in data.items() if kind.startswith("py:") for name in objects}
    functions = public_functions()
    missing = [f for f in functions if f not in documented]
    assert not missing, (f"{len(missing)} of {len(functions)} public functions are not in the API reference "
                         f"(add their module to a page under docs/api/): {missing}")
