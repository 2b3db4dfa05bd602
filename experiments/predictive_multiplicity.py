"""Experiment ``predictive_multiplicity``: epsilon-Rashomon sets of L2 logistic regression (arXiv 2206.01131).

Spec: ``papers/predictive_multiplicity.md`` section 5b. Data: scikit-learn's bundled breast cancer
(569 x 30, population-SD standardised), lambda = 0.01, intercept unpenalised. For each eps the
viable prediction ranges of the evaluation points are one vmapped call
(:func:`zoo.stats.predictive_multiplicity.viable_prediction_range`); everything runs in float64
(``jax.enable_x64(True)``). The computation is deterministic: the run's seeds pick the random
points of the SLSQP check only (seed ``ctx.seeds[0]``).

Claims (fixed thresholds from the spec, never tuned):
  Q1 JAX VPRs match scipy SLSQP on ``n_check`` random points to |dp| <= 1e-5 for every eps;
  Q2 (only when all 569 points are evaluated and eps = 0.01 is in the grid) ambiguity at
     (eps, delta) = (0.01, 0.1) equals 241/569 +- 2 points;
  Q3 VPRs are nested in eps, contain p0, and ambiguity / mean width are non-decreasing in eps;
  Q4 D_lb <= A for every (eps, delta), and (when (0.01, 0.05) is in the grid) D_lb >= 0.05 there;
  Q5 (when eps = 0.001 is in the grid) Spearman(score half-width, leverage) >= 0.95 at eps = 0.001.
Secondary (reported, never gated): majority/minority synthetic data, mean leverage and ambiguity by group.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from zoo.checks import check_range
from zoo.plotting import pyplot, save
from zoo.registry import Experiment, Outcome, RunContext, register

# Claim thresholds: fixed by the spec (section 5b), never tuned.
Q1_TOL = 1e-5
Q2_REF, Q2_TOL = 241, 2
Q4_DLB_MIN = 0.05
Q5_RHO_MIN = 0.95

TITLE = "Predictive Multiplicity in Probabilistic Classification"
CLAIM = (
    "On breast cancer (lambda = 0.01): JAX viable prediction ranges match scipy SLSQP to 1e-5; ambiguity at "
    "(eps, delta) = (0.01, 0.1) is 241/569 +- 2; ranges are nested in eps; D_lb <= A with D_lb >= 0.05 at "
    "(0.01, 0.05); half-widths follow the leverage (Spearman >= 0.95 at eps = 0.001). Each part is checked "
    "where the size evaluates it."
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MultiplicityConfig:
    lam: float = 1e-2
    eps_grid: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02)
    delta_grid: tuple[float, ...] = (0.05, 0.1, 0.2)
    n_eval: int = 0  # 0: all 569 points; else the first n_eval points
    n_check: int = 25  # random points checked against SLSQP
    batch: int = 64
    two_groups: bool = True

    def __post_init__(self):
        check_range("lam", self.lam, low=0.0, low_inclusive=False)
        if not self.eps_grid or any(e < 0 for e in self.eps_grid) or list(self.eps_grid) != sorted(self.eps_grid):
            raise ValueError(f"eps_grid: expected increasing values >= 0, got {self.eps_grid}")
        if not self.delta_grid or any(not 0 < d <= 1 for d in self.delta_grid):
            raise ValueError(f"delta_grid: expected values in (0, 1], got {self.delta_grid}")
        check_range("n_eval", self.n_eval, low=0, high=569)
        check_range("n_check", self.n_check, low=0)
        check_range("batch", self.batch, low=1)


SIZES = {
    "test": MultiplicityConfig(eps_grid=(0.01,), n_eval=60, n_check=5, two_groups=False),
    "quick": MultiplicityConfig(),
    "paper": MultiplicityConfig(n_check=100),
}


def _slsqp_range(prob, w0, L0, x, eps):
    from scipy.optimize import minimize

    Xt, ys = np.asarray(prob.Xt), np.asarray(prob.ys)
    lam, m = float(prob.lam), np.asarray(prob.pen_mask)

    def loss(w):
        return np.mean(np.logaddexp(0.0, -ys * (Xt @ w))) + 0.5 * lam * np.sum(m * w * w)

    def grad(w):
        r = -ys / (1.0 + np.exp(ys * (Xt @ w)))
        return Xt.T @ r / len(ys) + lam * m * w

    out = []
    for sign in (-1.0, 1.0):
        res = minimize(lambda w: -sign * (x @ w), np.asarray(w0), jac=lambda w: -sign * x, method="SLSQP",
                       constraints=[{"type": "ineq", "fun": lambda w: float(L0) + eps - loss(w),
                                     "jac": lambda w: -grad(w)}], options={"ftol": 1e-14, "maxiter": 500})
        out.append(1 / (1 + np.exp(-(x @ res.x))))
    return out


def _spearman(a, b):
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _two_groups(lam, eps, batch):
    import jax.numpy as jnp

    from zoo.stats import predictive_multiplicity as pm

    d = pm.make_two_groups(0)
    X = (d["x"] - d["x"].mean(0)) / d["x"].std(0)
    prob = pm.make_problem(X, d["y"], lam=lam)
    v = pm.viable_prediction_range(prob, eps, batch=batch)
    lev = np.asarray(pm.leverage(prob, v["w0"], prob.Xt))
    amb = np.asarray(pm.ambiguity_mask(v, 0.1))
    g = d["group"] == 1
    return {
        "eps": eps, "delta": 0.1,
        "leverage_minority": float(lev[g].mean()), "leverage_majority": float(lev[~g].mean()),
        "ambiguity_minority": float(amb[g].mean()), "ambiguity_majority": float(amb[~g].mean()),
        "width_minority": float(jnp.mean((v["hi"] - v["lo"])[g])),
        "width_majority": float(jnp.mean((v["hi"] - v["lo"])[~g])),
    }


def _plot(out_dir, eps_list, widths, lev, half) -> list[str]:
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    ax = axes[0]
    for e, w in zip(eps_list, widths):
        ax.plot(np.sort(w)[::-1], label=f"eps = {e:g}")
    ax.set_xlabel("points (sorted)")
    ax.set_ylabel("VPR width hi - lo")
    ax.set_title("viable prediction range widths")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.loglog(lev, half, ".", ms=3)
    ax.set_xlabel("leverage  x^T H0^-1 x")
    ax.set_ylabel(f"score half-width (eps = {eps_list[0]:g})")
    ax.set_title("multiplicity follows leverage")
    fig.tight_layout()
    save(fig, out_dir, "multiplicity.png", dpi=80)
    return ["multiplicity.png"]


def run(cfg: MultiplicityConfig, ctx: RunContext) -> Outcome:
    import jax
    import jax.numpy as jnp

    from zoo.stats import predictive_multiplicity as pm

    t0 = time.perf_counter()
    with jax.enable_x64(True):
        prob = pm.load_breast_cancer_problem(cfg.lam)
        w0, L0, info = pm.fit_baseline(prob)
        n = prob.Xt.shape[0]
        m = cfg.n_eval or n
        eval_x = prob.Xt[:m]
        acc = float(jnp.mean((prob.Xt @ w0 > 0) == (prob.ys > 0)))
        lev = np.asarray(pm.leverage(prob, w0, eval_x))
        rng = np.random.default_rng(ctx.seeds[0])
        check_idx = np.sort(rng.choice(m, size=min(cfg.n_check, m), replace=False))
        vprs, metrics, table, q1_err = [], {}, [], 0.0
        for eps in cfg.eps_grid:
            v = jax.tree.map(np.asarray, pm.viable_prediction_range(prob, eps, eval_x=eval_x, baseline=(w0, L0),
                                                                     batch=cfg.batch))
            vprs.append(v)
            for i in check_idx:
                lo, hi = _slsqp_range(prob, w0, L0, np.asarray(eval_x[i]), eps)
                q1_err = max(q1_err, abs(lo - v["lo"][i]), abs(hi - v["hi"][i]))
            for delta in cfg.delta_grid:
                A = float(pm.ambiguity(v, delta))
                lb, ub, _ = pm.discrepancy_bounds(prob, v, delta)
                table.append({"eps": eps, "delta": delta, "ambiguity": A, "ambiguity_count": int(round(A * m)),
                              "discrepancy_lb": float(lb), "discrepancy_lb_count": int(round(float(lb) * m)),
                              "discrepancy_ub": float(ub)})
        groups = _two_groups(cfg.lam, 0.01, cfg.batch) if cfg.two_groups else {"skipped": "two_groups = False"}
    seconds = time.perf_counter() - t0
    widths = [v["hi"] - v["lo"] for v in vprs]
    # Q1
    q1 = q1_err <= Q1_TOL
    # Q2
    q2 = None
    row = [r for r in table if r["eps"] == 0.01 and r["delta"] == 0.1]
    if m == 569 and row:
        q2 = abs(row[0]["ambiguity_count"] - Q2_REF) <= Q2_TOL
    # Q3
    nested = all(np.all(b["lo"] <= a["lo"] + 1e-10) and np.all(b["hi"] >= a["hi"] - 1e-10) for a, b in zip(vprs, vprs[1:]))
    contains = all(np.all(v["lo"] <= v["p0"]) and np.all(v["p0"] <= v["hi"]) for v in vprs)
    amb_mono = all(
        all(r2["ambiguity"] >= r1["ambiguity"] for r1, r2 in zip(
            [r for r in table if r["delta"] == d], [r for r in table if r["delta"] == d][1:]))
        for d in cfg.delta_grid)
    width_mono = all(np.mean(b) >= np.mean(a) for a, b in zip(widths, widths[1:]))
    q3 = bool(nested and contains and amb_mono and width_mono)
    # Q4
    q4 = all(r["discrepancy_lb"] <= r["ambiguity"] + 1e-12 for r in table)
    row4 = [r for r in table if r["eps"] == 0.01 and r["delta"] == 0.05]
    if row4:
        q4 = q4 and row4[0]["discrepancy_lb"] >= Q4_DLB_MIN
    # Q5
    q5, rho = None, None
    if 0.001 in cfg.eps_grid:
        v = vprs[list(cfg.eps_grid).index(0.001)]
        rho = _spearman(0.5 * (v["s_hi"] - v["s_lo"]), lev)
        q5 = rho >= Q5_RHO_MIN
    checks = {"Q1": q1, "Q2": q2, "Q3": q3, "Q4": q4, "Q5": q5}
    claim_holds = all(c for c in checks.values() if c is not None)
    plots = _plot(ctx.out_dir, list(cfg.eps_grid), widths, lev, 0.5 * (vprs[0]["s_hi"] - vprs[0]["s_lo"]))
    metrics = {
        "L0": float(L0), "train_accuracy": acc, "baseline_newton_iters": int(info.n_iter),
        "n_eval": m, "q1_max_abs_dp": q1_err, "spearman_halfwidth_leverage": rho,
        **{f"claim_{k}": v for k, v in checks.items()},
        **{f"mean_width_eps{e:g}": float(np.mean(w)) for e, w in zip(cfg.eps_grid, widths)},
        **{f"median_width_eps{e:g}": float(np.median(w)) for e, w in zip(cfg.eps_grid, widths)},
        **{f"ambiguity_eps{r['eps']:g}_delta{r['delta']:g}": r["ambiguity_count"] for r in table},
        **{f"discrepancy_lb_eps{r['eps']:g}_delta{r['delta']:g}": r["discrepancy_lb_count"] for r in table},
        "max_outer_iters": int(max(max(v["iters_lo"].max(), v["iters_hi"].max()) for v in vprs)),
        "seconds_compute": round(seconds, 3),
    }
    details = {"table": table, "two_groups": groups, "check_points": check_idx.tolist(),
               "eps_meaning": "absolute on the mean training objective L (L0 ~ 0.0996)",
               "thresholds": {"q1_tol": Q1_TOL, "q2": [Q2_REF, Q2_TOL], "q4_dlb_min": Q4_DLB_MIN,
                              "q5_rho_min": Q5_RHO_MIN}}
    return Outcome(metrics=metrics, claim_holds=bool(claim_holds), details=details, plots=plots)


register(
    Experiment(
        name="predictive_multiplicity",
        paper="predictive_multiplicity",
        title=TITLE,
        claim=CLAIM,
        sizes=SIZES,
        run=run,
        default_seeds=1,
    )
)
