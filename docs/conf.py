"""Sphinx configuration of the paperzoo documentation site.

Build (warnings are errors): ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
Pages are MyST markdown; notebooks under ``notebooks/`` are MyST notebooks (text) executed by myst-nb;
the API reference under ``api/`` is generated from the docstrings by autodoc + napoleon.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a plain checkout works too; an editable install is the same tree
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # notebooks and autodoc imports: CPU, quiet
os.environ.setdefault("MPLBACKEND", "Agg")

project = "paperzoo"
author = "paperzoo contributors"
copyright = "paperzoo contributors, Apache-2.0"
try:
    from zoo import __version__ as release
except Exception:  # pragma: no cover - the build still documents what it can
    release = "0.1.0"
version = release

extensions = [
    "myst_nb",  # MyST markdown pages + MyST notebooks (includes myst_parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "zoo_docstrings",  # docs/_ext: plain-text docstrings render verbatim instead of failing the build
]

source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", ".jupyter_cache", "README.md"]

# --- MyST ---------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "attrs_inline", "attrs_block"]
myst_heading_anchors = 3  # `[x](page.md#a-heading)` links resolve
myst_dmath_double_inline = True

# --- notebooks (myst-nb) ------------------------------------------------------------------------
# "cache": executed once, re-executed only when a notebook's code changes (jupyter-cache under
# docs/_build/.jupyter_cache). tests/test_docs.py overrides this to "force" with a fresh cache.
nb_execution_mode = os.environ.get("ZOO_DOCS_EXECUTE", "cache")
nb_execution_cache_path = str(ROOT / "docs" / "_build" / ".jupyter_cache")
nb_execution_timeout = 180
nb_execution_raise_on_error = True  # a failing cell fails the build
nb_execution_show_tb = True
nb_merge_streams = True

# --- autodoc / napoleon -------------------------------------------------------------------------
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "member-order": "bysource",
}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"  # types beside the documented Args, no bare lists
autodoc_typehints_format = "short"
autodoc_preserve_defaults = False  # True fails on some signatures ("pop from empty list")
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
napoleon_use_ivar = True  # "Attributes:" as fields: no duplicate entries beside the dataclass fields
autosummary_generate = False
python_use_unqualified_type_names = True
nitpicky = False
default_role = "py:obj"  # `name` in a docstring links to the object when it exists, else shows as code

# --- HTML -----------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "paperzoo"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "home_page_in_toc": True,
    "secondary_sidebar_items": {"**": ["page-toc"], "index": [], "results": ["page-toc"]},
}
html_last_updated_fmt = None
suppress_warnings = []
