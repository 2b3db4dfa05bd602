"""`Row`: one bad call of one public function, and what it must raise."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Row:
    fn: str  # dotted name of the public function, e.g. "zoo.rl.tw_grpo.qai_negate_question"
    call: Callable[[], Any]  # the bad call, e.g. lambda: f(x_with_nan)
    why: str  # the kind of bad input: "NaN", "wrong shape", "empty", "out of range", "wrong type", ...
    error: type[BaseException] = ValueError
    match: str = ""  # regex searched in the message; must name the argument

    @property
    def id(self) -> str:
        return f"{self.fn.removeprefix('zoo.')}[{self.why}]"


def rows(fn: str, *cases: tuple, error: type[BaseException] = ValueError) -> list[Row]:
    """Several rows of one function: ``cases`` are ``(why, call, match)`` or ``(why, call, match, error)``."""
    out = []
    for c in cases:
        why, call, match, *rest = c
        out.append(Row(fn=fn, call=call, why=why, match=match, error=rest[0] if rest else error))
    return out
