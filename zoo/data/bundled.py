"""Real data sets that ship inside PyPI packages (no download, ever).

scikit-learn bundles small classic sets as files inside the package: digits (1,797 8x8 images,
10 classes), iris, wine, breast_cancer, diabetes. ``load_bundled(name)`` returns them as
``dict(x=f32[N, D], y=...)``.
"""

from __future__ import annotations

import numpy as np

from zoo.checks import check_choice

_SKLEARN = {
    "digits": ("load_digits", "classification"),
    "iris": ("load_iris", "classification"),
    "wine": ("load_wine", "classification"),
    "breast_cancer": ("load_breast_cancer", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}

BUNDLED = tuple(_SKLEARN)


def load_bundled(name: str, *, standardize: bool = False) -> dict[str, np.ndarray]:
    """Load a data set bundled with scikit-learn.

    Args:
      name: one of ``BUNDLED``.
      standardize: z-score each feature (population std; constant features left at 0).
    Returns:
      ``{"x": f32[N, D], "y": i32[N]}`` (``y`` f32 for regression sets).
    """
    check_choice("name", name, BUNDLED)
    try:
        import sklearn.datasets as skd
    except ImportError as e:  # pragma: no cover - scikit-learn is a core dependency
        raise ImportError("load_bundled needs scikit-learn: pip install scikit-learn") from e
    loader, task = _SKLEARN[name]
    bunch = getattr(skd, loader)()
    x = np.asarray(bunch.data, np.float64)
    if standardize:
        sd = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    y = np.asarray(bunch.target, np.int32 if task == "classification" else np.float32)
    return {"x": x.astype(np.float32), "y": y}


def load_digits() -> dict[str, np.ndarray]:
    """scikit-learn's digits: ``x`` f32[1797, 64] scaled to [0, 1] (pixel / 16), ``y`` i32[1797] in 0..9."""
    d = load_bundled("digits")
    return {"x": d["x"] / np.float32(16.0), "y": d["y"]}
