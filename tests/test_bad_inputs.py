"""Bad input gets a clear Python error that names the argument — counted, for every paper module.

Rows live in ``tests/bad_inputs/rows_<family>.py`` (each defines ``ROWS: list[Row]``). A new paper
module adds its rows there; `test_every_public_function_has_a_row` fails until it does.
A function that takes no user input worth checking goes in its rows file's ``EXEMPT`` dict
(``"zoo.module.function": "reason"``); exemptions are counted and printed.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _public_api import modules_under  # noqa: E402
from _public_api import public_functions as _public_functions  # noqa: E402
from bad_inputs._row import Row  # noqa: E402

FAMILIES = ("representation", "stats", "federated", "rl", "geometric", "quant", "choice", "weightspace", "routing", "generative")  # grows with the papers

def _load() -> tuple[list[Row], dict[str, str]]:
    import bad_inputs

    rows: list[Row] = []
    exempt: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(bad_inputs.__path__), key=lambda i: i.name):
        if info.name.startswith("rows_"):
            mod = importlib.import_module(f"bad_inputs.{info.name}")
            rows += mod.ROWS
            exempt.update(getattr(mod, "EXEMPT", {}))
    return rows, exempt


ROWS, EXEMPT = _load()


def paper_modules() -> list[str]:
    """Every module of the paper families (and their cores), private ones excluded."""
    return [m for fam in FAMILIES for m in modules_under(f"zoo.{fam}")]


def public_functions() -> list[str]:
    return _public_functions(paper_modules())


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_bad_input_raises_clear_error(row: Row):
    with pytest.raises(row.error) as info:
        row.call()
    msg = str(info.value)
    assert re.search(row.match, msg), f"{row.fn}: message {msg!r} does not match {row.match!r}"
    assert "Traceback" not in msg


def test_rows_name_real_functions():
    missing = []
    for r in ROWS:
        modname, _, name = r.fn.rpartition(".")
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            missing.append(r.fn)
            continue
        if not callable(getattr(mod, name, None)):
            missing.append(r.fn)
    assert not missing, f"rows name functions that do not exist: {sorted(set(missing))}"


def test_every_public_function_has_a_row():
    covered = {r.fn for r in ROWS}
    public = public_functions()
    uncovered = [f for f in public if f not in covered and f not in EXEMPT]
    print(f"\nbad-input table: {len(ROWS)} rows over {len(covered)} functions; "
          f"{len(public)} public functions, {len(EXEMPT)} exempt, {len(uncovered)} uncovered")
    assert not uncovered, f"{len(uncovered)} public functions have no bad-input row: {uncovered}"
