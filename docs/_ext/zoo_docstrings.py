"""Render paperzoo's docstrings in the API reference as their authors wrote them.

The library's docstrings are written to be read in plain text (``help()``, an editor): Google-style
``Args:`` / ``Returns:`` sections (parsed by napoleon), markdown-like `backticks` for code, ``|x|`` for
absolute values and norms, and aligned "equation -> function" tables in module docstrings. Two steps make
them build cleanly under ``sphinx-build -W``:

1. before napoleon, ``|`` and a word's trailing ``_`` outside code spans are escaped (the library uses no
   reST substitutions or named references, so ``|S|`` means a size, never a substitution);
2. after napoleon, the result is test-parsed with docutils; a docstring that still does not parse as reST
   (an aligned table, a hanging indent) is shown verbatim in a text block below its first line, exactly as
   ``help()`` shows it, instead of being mangled or failing the build.

3. autosummary's one-line summaries are never cut inside inline markup.

The number of docstrings shown verbatim is logged at the end of the build.
"""

from __future__ import annotations

import importlib
import io
import re

from docutils.core import publish_doctree
from docutils.parsers.rst import directives, roles
from sphinx.ext import autosummary
from sphinx.util import logging

logger = logging.getLogger(__name__)

# code spans (``x``, `x`, :role:`x`) are left alone; everything between them is escaped
_CODE = re.compile(r"(:[\w:.-]+:`[^`]*`|``.+?``|`[^`]+`_{0,2})")
_REF_UNDERSCORE = re.compile(r"(?<=[\w)\]])_(?=[\s,.;:)\]]|$)")
# docutils messages that only mean "this is a Sphinx role/directive", unknown to the bare parser
_BENIGN = ("Unknown interpreted text role", "Unknown directive type", 'No role entry', 'No directive entry',
           )
_ORIGINAL: dict[tuple[str, str], list[str]] = {}
_VERBATIM: list[str] = []


def _escape(line: str) -> str:
    parts = _CODE.split(line)
    for i in range(0, len(parts), 2):  # even indices: outside code spans
        parts[i] = _REF_UNDERSCORE.sub(r"\\_", parts[i].replace("\\|", "|").replace("|", "\\|"))
    return "".join(parts)


def _before_napoleon(app, what, name, obj, options, lines):
    _ORIGINAL[(what, name)] = list(lines)
    in_literal = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if in_literal and stripped and not line.startswith((" ", "\t")):
            in_literal = False
        if not in_literal:
            lines[i] = _escape(line)
        if stripped.endswith("::") or stripped.startswith(".. code-block"):
            in_literal = True


def _docutils_directive(name, language_module, document):
    entry = directives._directive_registry.get(name.lower())
    if entry is None:
        return None, []
    module = importlib.import_module(f"docutils.parsers.rst.directives.{entry[0]}")
    return getattr(module, entry[1]), []


def _docutils_role(name, language_module, lineno, reporter):
    fn = roles._role_registry.get((name or roles.DEFAULT_INTERPRETED_ROLE).lower())
    return fn, []


def _problems(text: str) -> list[str]:
    """docutils' complaints about ``text``, parsed by bare docutils (Sphinx's roles/directives unknown)."""
    stream = io.StringIO()
    saved = directives.directive, roles.role
    directives.directive, roles.role = _docutils_directive, _docutils_role
    try:
        publish_doctree(text, settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": stream,
                                                  "file_insertion_enabled": False, "raw_enabled": False})
    finally:
        directives.directive, roles.role = saved
    found = []
    for msg in re.findall(r"\((?:WARNING|ERROR|SEVERE)/\d\) (.*)", stream.getvalue()):
        if not msg.startswith(_BENIGN):
            found.append(msg)
    return found


def _after_napoleon(app, what, name, obj, options, lines):
    if not lines or not _problems("\n".join(lines)):
        return
    original = _ORIGINAL.get((what, name), list(lines))
    blank = next((i for i, line in enumerate(original) if not line.strip()), len(original))
    head = [_escape(line) for line in original[:blank]]
    if _problems("\n".join(head)):
        head, blank = [], 0
    body = original[blank:]
    while body and not body[0].strip():
        body = body[1:]
    new = list(head)
    if body:
        new += ["", ".. code-block:: text", ""] + [("   " + line) if line.strip() else "" for line in body]
    lines[:] = new + [""]
    _VERBATIM.append(name)


def _first_sentence(doc, settings, _original=autosummary.extract_summary):
    """autosummary's one-line summary, never cut inside inline markup (Sphinx checks the whole stanza, not
    the cut sentence, so ``a. b`` inside a literal would end the summary mid-literal)."""
    summary = _original(doc, settings)
    if not _problems(summary):
        return summary
    stanza = []
    for line in doc:
        if not line.strip():
            if stanza:
                break
            continue
        stanza.append(line.strip())
    sentences = autosummary.periods_re.split(" ".join(stanza))
    for i in range(1, len(sentences) + 1):
        candidate = ". ".join(sentences[:i]).rstrip(".") + "."
        if not _problems(candidate):
            return candidate
    return " ".join(stanza)


def _report(app, exception):
    if exception is None and _VERBATIM:
        logger.info("zoo_docstrings: %d docstring(s) shown verbatim (not valid reST): %s", len(_VERBATIM),
                    ", ".join(sorted(set(_VERBATIM))[:50]))


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-docstring", _before_napoleon, priority=400)  # napoleon: 500
    app.connect("autodoc-process-docstring", _after_napoleon, priority=600)
    app.connect("build-finished", _report)
    autosummary.extract_summary = _first_sentence  # module global, looked up at call time
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
