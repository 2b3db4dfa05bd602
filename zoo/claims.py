"""Shared statistics for stating a paper's claim fairly (DESIGN.md, "Claims").

Comparisons are paired by seed: for per-seed values ``a[s]`` (the method) and ``b[s]`` (a
baseline, same seed, same data), ``d = a - b``; `paired_summary` reports the mean of ``d``, its
percentile-bootstrap 95 % interval (seeds resampled with replacement from a fixed generator, so
the numbers are reproducible), ``wins = #{d > 0}`` and ``n``. An experiment gates on the mean
reaching the paper's effect (or a pilot-calibrated one) and, where it says so, on the interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def paired_summary(a: Any, b: Any, *, n_boot: int = 10_000, seed: int = 0) -> dict:
    """Mean of ``d = a - b`` (per seed), its bootstrap 95 % interval, wins (``d > 0``) and n.

    Args:
      a, b: per-seed values, f[S] each (S >= 1, finite).
      n_boot: bootstrap resamples; seed: the resampling generator's seed.

    Returns:
      ``{"mean", "ci_low", "ci_high", "wins", "n"}`` as Python numbers.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"a, b: expected two 1-D arrays of the same non-zero length, got shapes {a.shape}, {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a, b: contain non-finite values (NaN or inf)")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot: expected a positive int, got {n_boot!r}")
    d = a - b
    boots = d[np.random.default_rng(seed).integers(0, d.size, (int(n_boot), d.size))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"mean": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi), "wins": int((d > 0).sum()),
            "n": int(d.size)}
