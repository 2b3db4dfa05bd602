"""Plot helpers for experiments: matplotlib is imported lazily (``import zoo`` never imports it)."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend (headless machines, CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, out_dir: str | Path, name: str, *, dpi: int = 80) -> str:
    """Write ``fig`` as ``out_dir/name`` (PNG), close it, and return ``name`` for ``Outcome.plots``."""
    fig.savefig(Path(out_dir) / name, dpi=dpi)
    pyplot().close(fig)
    return name
