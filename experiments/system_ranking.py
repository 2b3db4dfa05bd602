"""Experiment ``system_ranking``: rank aggregation of NLP benchmarks (Colombo et al., NeurIPS 2022, arXiv 2202.03799).

Spec: ``papers/system_ranking.md`` section 5. Everything is a pure computation (no training):

1. Synthetic benchmarks with a known true ranking (``zoo.choice.system_ranking.plackett_luce_scores``:
   ``S_nt = -phi n + Gumbel``, truth = identity): ``n_systems x n_tasks`` tables, ``c`` tasks corrupted
   into ``scale * (0, 1, ..., N-1)`` (the true order reversed at a huge scale). Error = normalised
   Kendall distance to the truth (`ranking_error`) of the mean, Borda and exact Kemeny aggregates.
   One vmapped call per corruption level over ``len(seeds) * n_tables`` tables (table ``i`` of seed
   ``s`` uses ``key(100000 (s + seed_offset) + i, impl="rbg")``; the same tables at every level, so
   levels are paired); Kemeny is the host DP per table.
2. Instance level, by construction: task 0 has 100 instances voting the reversed order, tasks 1 and 2
   have 5 instances each voting the truth: two-level Borda must return the truth, one-level the reverse.
3. Theorems as empirical checks on ``n_theorem`` random Plackett–Luce profiles (7 systems x 5 tasks,
   phi = 0.3): Borda is invariant to a strictly increasing map of one column (x -> 1000 x^3 + 7);
   Kemeny exact ranks every Condorcet winner first; cost(Kemeny) <= cost(local search) <= cost(Borda)
   <= 5 cost(Kemeny); two-level Borda is invariant to duplicating the instances of one task.
4. Real leaderboards (numbers only, embedded below; source: the official repo's ``data/glue.data``,
   ``data/superglue.data``, ``data/xtrem.data``, i.e. the gluebenchmark.com, super.gluebenchmark.com
   and XTREME leaderboards as captured early 2022; row 0 = leaderboard row 1; the ``Score`` column is
   dropped as in the official code; XTREME is parsed with its 4 task families, the spec's corrected
   parse): tau-b(mean, Borda), top-k overlaps, task-removal curves (``n_orders`` random column orders,
   mean tau per kept-task count) and system-addition curves (``n_reps`` random system orders).

Claims (gated at every size; thresholds fixed before the gated run):
  C1 c = 1 corrupted task: mean error >= 0.99 (1.00 by construction: the 1000x column dictates the
     mean) and Borda mean error <= 0.10 (spec pilot: numpy reference 0.066 on 200 tables, other RNG);
     paired over tables with ``zoo.claims.paired_summary(mean_err, borda_err)``, ci_low > 0.
  C2 c = 0: mean and Borda mean errors both <= 0.06 (spec pilot: 0.048 / 0.047).
  C3 instance example: two-level error 0 and one-level error 1 (exact by construction).
  C4 every theorem check holds on every profile.
  C5 GLUE tau-b(mean, Borda) = 0.915 +- 0.001 (deterministic recomputation from the official data: 0.9153).
  C6 GLUE robustness (the paper's qualitative claim that the rank aggregate is more robust): the tau of
     the k-task aggregate to the full-table one, averaged over random task orders, is higher for Borda
     than for the mean by >= 0.01 at k = 3 (paired over orders, bootstrap ci_low > 0), and not lower
     by more than 0.005 at any k >= 3. Calibrated on pilots at quick size with other seeds
     (``--set seed_offset=100``): pilot 1 (float32 tables) k = 3 gap 0.026 [0.023, 0.030], 168/200
     orders won, smallest gap over k >= 3 +0.0001 (at k = T, where both are 1 up to float32 ties) ->
     the spec's "at least as stable at every k >= 3" was too tight to gate and was restated as above
     before any gated run; pilot 2 (float64 tables, the gated code): see ``PILOT``.
  The real tables are aggregated in float64 (``jax.enable_x64``): in float32 distinct leaderboard
  means round together (GLUE tau-b(mean, Borda) = 0.9149 in float32 vs 0.9153 in float64).
Secondary (reported, never gated): Kemeny errors, c = 2, 3, missing-score robustness (30 % of the
scores dropped), SuperGLUE/XTREME numbers, system-addition curves (the mean is IIA: its curve is 1).
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from zoo.checks import check_range
from zoo.plotting import pyplot, save
from zoo.registry import Experiment, Outcome, RunContext, register

TITLE = "What are the best systems? New perspectives on NLP Benchmarking"
CLAIM = (
    "Synthetic benchmarks (10 systems x 10 tasks, phi = 0.5): with one task corrupted to the reversed order at "
    "1000x scale the mean's normalised Kendall error is >= 0.99 while Borda's is <= 0.10 (paired CI above 0); "
    "uncorrupted both are <= 0.06; two-level instance Borda returns the truth where one-level returns the "
    "reverse; every theorem check holds; GLUE tau-b(mean, Borda) = 0.915 +- 0.001 and Borda is at least as "
    "stable as the mean under task removal (by >= 0.01 tau at k = 3 kept tasks, never < -0.005 for k >= 3)."
)

# Claim thresholds (module docstring): fixed before the gated run, never tuned.
C1_MEAN_MIN, C1_BORDA_MAX = 0.99, 0.10
C2_MAX = 0.06
C5_TAU, C5_TOL = 0.915, 0.001
C6_K_MIN = 3
C6_K3_MIN_DIFF = 0.01  # Borda minus mean, mean tau over orders at k = 3 (pilot: 0.026)
C6_GAP_MIN = -0.005  # Borda minus mean at every k >= 3 (pilot: >= 0.0001)
PILOT = ("pilot 2 (quick, --set seed_offset=100, float64 tables, this code): GLUE k = 3 Borda - mean tau "
         "0.0330 [0.0293, 0.0366], 178/200 orders won, smallest gap over k >= 3 = 0.0 (k = T); synthetic c = 1: "
         "mean 1.00 / Borda 0.067; c = 0: 0.044 / 0.048")

TABLE_NAMES = ("glue", "superglue", "xtreme")
PRNG_IMPL = "rbg"  # JAX's RngBitGenerator-based keys: same statistics, a third of threefry's CPU compile time
KS = (1, 3, 5, 10)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SystemRankingConfig:
    n_systems: int = 10  # synthetic systems (<= 16: exact Kemeny)
    n_tasks: int = 10
    phi: float = 0.5  # Plackett-Luce dispersion of the synthetic tasks
    n_tables: int = 100  # synthetic tables per seed
    corrupt_levels: tuple[int, ...] = (0, 1, 2, 3)
    scale: float = 1000.0  # the corrupted columns' scale
    missing_frac: float = 0.3  # dropped scores in the missing-score check
    kemeny: bool = True  # exact Kemeny on every synthetic table
    n_theorem: int = 200  # random profiles for the theorem checks (0: skipped, C4 not evaluated)
    tables: tuple[str, ...] = TABLE_NAMES  # real leaderboards
    n_orders: int = 200  # random task orders (task removal)
    n_reps: int = 15  # random system orders (system addition; 0: skipped)
    phi_grid: tuple[float, ...] = ()  # extra sweep of the c = 1 errors over phi (paper size)
    seed_offset: int = 0  # added to every seed (pilot runs use other seeds)

    def __post_init__(self):
        check_range("n_systems", self.n_systems, low=3, high=16)
        check_range("n_tasks", self.n_tasks, low=2)
        check_range("phi", self.phi, low=0.0)
        check_range("n_tables", self.n_tables, low=1)
        if 0 not in self.corrupt_levels or 1 not in self.corrupt_levels or any(
                not 0 <= c <= self.n_tasks for c in self.corrupt_levels):
            raise ValueError(f"corrupt_levels: expected levels in [0, n_tasks] including 0 and 1, got "
                             f"{self.corrupt_levels}")
        check_range("scale", self.scale, low=0.0, low_inclusive=False)
        check_range("missing_frac", self.missing_frac, low=0.0, high=1.0, high_inclusive=False)
        check_range("n_theorem", self.n_theorem, low=0)
        if not set(self.tables) <= set(TABLE_NAMES):
            raise ValueError(f"tables: expected a subset of {TABLE_NAMES}, got {self.tables}")
        check_range("n_orders", self.n_orders, low=1)
        check_range("n_reps", self.n_reps, low=0)
        if any(p < 0 for p in self.phi_grid):
            raise ValueError(f"phi_grid: expected values >= 0, got {self.phi_grid}")
        check_range("seed_offset", self.seed_offset, low=0)


SIZES = {
    # test: the theorem checks (C4) and system addition are covered by the unit tests; skipped for CI time
    "test": SystemRankingConfig(n_tables=10, corrupt_levels=(0, 1), kemeny=False, n_theorem=0, tables=("glue",),
                                n_orders=20, n_reps=0),
    "quick": SystemRankingConfig(),
    "paper": SystemRankingConfig(n_tables=500, n_theorem=2000, n_orders=1000, phi_grid=(0.01, 0.1, 0.5)),
}


def load_table(name: str) -> np.ndarray:
    """A leaderboard as f64[N, T] (numbers only; rows in leaderboard order)."""
    text = {"glue": _GLUE, "superglue": _SUPERGLUE, "xtreme": _XTREME}[name]
    return np.array([[float(v) for v in line.split()] for line in text.strip().splitlines()])


# ----------------------------------------------------------------------------- synthetic


@functools.cache
def _jit(fn, static=()):
    """``jax.jit(fn)`` built on first use (importing this module does not import JAX)."""
    import jax

    return jax.jit(fn, static_argnames=static)


def _synthetic_batch(table_seeds, c, n, t, phi, scale, frac):
    """Per table: errors of mean / Borda with ``c`` corrupted tasks (``c`` traced: one compile for every
    level; the same tables at every level, so levels are paired), the pairwise matrix (for Kemeny),
    and the uncorrupted table's errors with a fraction ``frac`` of the scores missing."""
    import jax

    from zoo.choice import core
    from zoo.choice import system_ranking as sr

    def one(seed):
        k1, k2, k3 = jax.random.split(jax.random.key(seed, impl=PRNG_IMPL), 3)
        S = sr.plackett_luce_scores(k1, n, t, phi)
        C = sr.corrupt(S, k2, c, scale=scale)
        m = sr.drop_scores(k3, S, frac)
        return (sr.ranking_error(sr.mean_aggregate(C)), sr.ranking_error(core.borda_count(C)),
                core.pairwise_preferences(C), sr.ranking_error(sr.mean_aggregate(S, mask=m)),
                sr.ranking_error(core.borda_count(S, mask=m)))

    return jax.vmap(one)(table_seeds)


def _kemeny_errors(W):
    from zoo.choice import core
    from zoo.choice import system_ranking as sr

    scores = np.stack([-np.argsort(core.kemeny_exact(w)) for w in np.asarray(W)]).astype(np.float32)
    return np.asarray(sr.ranking_error(scores))


def _synthetic(cfg, keys, ctx):
    res, missing = {}, {}
    f = _jit(_synthetic_batch, ("n", "t"))
    for c in cfg.corrupt_levels:
        em, eb, W, mm, mb = f(keys, c, cfg.n_systems, cfg.n_tasks, cfg.phi, cfg.scale, cfg.missing_frac)
        if c == 0:
            missing = {"mean": float(np.mean(mm)), "borda": float(np.mean(mb))}
        res[c] = {"mean": np.asarray(em, np.float64), "borda": np.asarray(eb, np.float64)}
        if cfg.kemeny:
            res[c]["kemeny"] = _kemeny_errors(W).astype(np.float64)
        ctx.note(f"synthetic c={c}: mean {res[c]['mean'].mean():.3f}  borda {res[c]['borda'].mean():.3f}")
    sweep = {}
    for phi in cfg.phi_grid:
        em, eb, *_ = f(keys, 1, cfg.n_systems, cfg.n_tasks, phi, cfg.scale, cfg.missing_frac)
        sweep[f"{phi:g}"] = {"mean": float(np.mean(em)), "borda": float(np.mean(eb))}
    return res, missing, sweep


def _instance_example(n):
    from zoo.choice import system_ranking as sr

    K = 100
    S = np.zeros((n, 3, K), np.float32)
    S[:, 0, :] = np.arange(n)[:, None]  # task 0: 100 instances voting the reversed order
    S[:, 1:, :] = -np.arange(n)[:, None, None]  # tasks 1, 2: the truth
    mask = np.zeros((3, K), bool)
    mask[0] = True
    mask[1:, :5] = True
    return (float(sr.ranking_error(sr.one_level_borda(S, mask))), float(sr.ranking_error(sr.two_level_borda(S, mask))))


def _theorem_batch(profile_seeds):
    import jax
    import jax.numpy as jnp

    from zoo.choice import core
    from zoo.choice import system_ranking as sr

    def one(seed):
        k1, k2 = jax.random.split(jax.random.key(seed, impl=PRNG_IMPL))
        S = sr.plackett_luce_scores(k1, 7, 5, 0.3)
        S2 = S.at[:, 0].set(1000 * S[:, 0] ** 3 + 7)  # strictly increasing map of one column
        b1, b2 = core.borda_count(S), core.borda_count(S2)
        order = core.scores_to_order
        mean_changed = jnp.any(order(sr.mean_aggregate(S)) != order(sr.mean_aggregate(S2)))
        W = core.pairwise_preferences(S)
        bo = core.scores_to_order(b1)
        ls = core.kemeny_local_search(W, bo)
        I = sr.plackett_luce_instances(k2, 7, 3, 4, 0.3)
        m1 = jnp.zeros((3, 4), bool).at[:, :2].set(True)
        I2 = I.at[:, 0, 2:].set(I[:, 0, :2])  # task 0's two instances, duplicated
        m2 = m1.at[0, 2:].set(True)
        two_inv = jnp.all(sr.two_level_borda(I, m1) == sr.two_level_borda(I2, m2))
        one_changed = jnp.any(core.scores_to_order(sr.one_level_borda(I, m1))
                              != core.scores_to_order(sr.one_level_borda(I2, m2)))
        return (jnp.all(b1 == b2), mean_changed, W, bo, core.kemeny_cost(bo, W), core.kemeny_cost(ls, W),
                core.condorcet_winner(W), two_inv, one_changed)

    return jax.vmap(one)(profile_seeds)


def _theorems(keys):
    from zoo.choice import core

    inv, mean_changed, W, bo, cost_b, cost_ls, cw, two_inv, one_changed = map(np.asarray, _jit(_theorem_batch)(keys))
    cost_k = np.array([float(core.kemeny_cost(core.kemeny_exact(w), w)) for w in W])
    k_first = np.array([core.kemeny_exact(w)[0] for w in W])
    has_cw = cw >= 0
    tol = 1e-6
    return {
        "profiles": int(len(W)),
        "borda_scale_invariant": bool(inv.all()),
        "mean_order_changed_frac": float(mean_changed.mean()),
        "condorcet_profiles": int(has_cw.sum()),
        "kemeny_condorcet_consistent": bool((k_first[has_cw] == cw[has_cw]).all()),
        "borda_misses_condorcet_frac": float((bo[has_cw, 0] != cw[has_cw]).mean()) if has_cw.any() else 0.0,
        "cost_order_holds": bool((cost_k <= cost_ls + tol).all() and (cost_ls <= cost_b + tol).all()
                                 and (cost_b <= 5 * cost_k + tol).all()),
        "borda_over_kemeny_cost_max": float(np.max(np.where(cost_k > 0, cost_b / np.maximum(cost_k, 1e-12), 1.0))),
        "two_level_duplication_invariant": bool(two_inv.all()),
        "one_level_changed_frac": float(one_changed.mean()),
    }


# ----------------------------------------------------------------------------- real tables


def _real(cfg, seed, ctx):
    import jax

    from zoo.choice import core
    from zoo.choice import system_ranking as sr

    out = {}
    for name in cfg.tables:
        with jax.enable_x64(True):  # leaderboard ties: float32 means round distinct rows together
            out[name] = _real_table(cfg, name, seed, ctx)
    return out


def _real_table(cfg, name, seed, ctx):
    import jax

    from zoo.choice import core
    from zoo.choice import system_ranking as sr

    S = load_table(name)
    m, B = sr.mean_aggregate(S), core.borda_count(S)
    ag = {k: float(v) for k, v in sr.agreement(m, B, KS).items()}
    i = TABLE_NAMES.index(name)
    k1, k2 = (jax.random.key(seed + 2 * i + j, impl=PRNG_IMPL) for j in range(2))
    tr = {a: np.asarray(sr.task_removal_curve(k1, S, cfg.n_orders, a), np.float64) for a in ("mean", "borda")}
    sa = {a: (np.asarray(sr.system_addition_curve(k2, S, cfg.n_reps, a), np.float64) if cfg.n_reps
              else np.full((1, S.shape[0] - 1), np.nan)) for a in ("mean", "borda")}
    rec = {"shape": list(S.shape), "agreement": ag, "task_removal": tr, "system_addition": sa}
    if S.shape[0] <= 16:
        ko = sr.kemeny_ranking(S)
        rec["tau_kemeny_borda"] = float(core.kendall_tau_b(-np.argsort(ko).astype(np.float64), B))
    ctx.note(f"{name} {S.shape}: tau_b(mean, Borda) = {ag['tau_b']:.4f}")
    return rec


def _plot(out_dir, cfg, syn, real) -> list[str]:
    plt = pyplot()
    ncol = 2 + ("glue" in real and cfg.n_reps > 0)
    fig, axes = plt.subplots(1, ncol, figsize=(4.2 * ncol, 3.4))
    ax = axes[0]
    cs = list(cfg.corrupt_levels)
    for meth, mk in (("mean", "o-"), ("borda", "s-"), ("kemeny", "^--")):
        if meth in syn[cs[0]]:
            mu = [syn[c][meth].mean() for c in cs]
            se = [syn[c][meth].std() / np.sqrt(len(syn[c][meth])) for c in cs]
            ax.errorbar(cs, mu, yerr=se, fmt=mk, label=meth, capsize=2)
    ax.set_xlabel("corrupted tasks c (reversed, x%g)" % cfg.scale)
    ax.set_ylabel("normalised Kendall error to truth")
    ax.set_title(f"synthetic {cfg.n_systems}x{cfg.n_tasks}, phi={cfg.phi:g}")
    ax.legend(fontsize=8)
    ax = axes[1]
    for name, rec in real.items():
        t = rec["shape"][1]
        k = np.arange(1, t + 1) / t
        for a, ls in (("mean", "--"), ("borda", "-")):
            ax.plot(k, np.nanmean(rec["task_removal"][a], 0), ls, label=f"{name} {a}")
    ax.set_xlabel("fraction of tasks kept k/T")
    ax.set_ylabel("mean tau_b to full-table ranking")
    ax.set_title("robustness to task removal")
    ax.legend(fontsize=7)
    if "glue" in real and cfg.n_reps:
        ax = axes[2]
        rec = real["glue"]
        n = np.arange(2, rec["shape"][0] + 1)
        for a, ls in (("mean", "--"), ("borda", "-")):
            ax.plot(n, np.nanmean(rec["system_addition"][a], 0), ls, label=a)
        ax.set_xlabel("systems kept n")
        ax.set_ylabel("tau_b to full ranking (restricted)")
        ax.set_title("GLUE: robustness to system addition")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return [save(fig, out_dir, "system_ranking.png", dpi=80)]


def run(cfg: SystemRankingConfig, ctx: RunContext) -> Outcome:
    import jax

    from zoo.claims import paired_summary

    t0 = time.perf_counter()
    seeds = [s + cfg.seed_offset for s in ctx.seeds]
    keys = np.array([s * 100_000 + i for s in seeds for i in range(cfg.n_tables)], np.int32)  # table seeds
    syn, missing, sweep = _synthetic(cfg, keys, ctx)
    one_err, two_err = _instance_example(cfg.n_systems)
    th = {}
    if cfg.n_theorem:
        th = _theorems(np.arange(cfg.n_theorem, dtype=np.int32) + 10**9 + 10**5 * seeds[0])
        ctx.note(f"theorem checks on {th['profiles']} profiles done")
    real = _real(cfg, 2 * 10**9 + 10 * seeds[0], ctx)

    c1 = paired_summary(syn[1]["mean"], syn[1]["borda"])
    checks = {
        "C1": bool(syn[1]["mean"].mean() >= C1_MEAN_MIN and syn[1]["borda"].mean() <= C1_BORDA_MAX
                   and c1["ci_low"] > 0),
        "C2": bool(syn[0]["mean"].mean() <= C2_MAX and syn[0]["borda"].mean() <= C2_MAX),
        "C3": bool(one_err == 1.0 and two_err == 0.0),
    }
    if th:
        checks["C4"] = bool(th["borda_scale_invariant"] and th["kemeny_condorcet_consistent"]
                            and th["cost_order_holds"] and th["two_level_duplication_invariant"])
    metrics = {
        "n_synthetic_tables": int(len(keys)),
        **{f"err_{m}_c{c}": float(v.mean()) for c, r in syn.items() for m, v in r.items()},
        "c1_mean_minus_borda": c1["mean"], "c1_ci_low": c1["ci_low"], "c1_ci_high": c1["ci_high"],
        "c1_wins": c1["wins"], "c1_n": c1["n"],
        "missing_err_mean": missing["mean"], "missing_err_borda": missing["borda"],
        "instance_one_level_err": one_err, "instance_two_level_err": two_err,
        **{f"theorem_{k}": (float(v) if not isinstance(v, bool) else v) for k, v in th.items()},
    }
    for name, rec in real.items():
        metrics[f"{name}_tau_mean_borda"] = rec["agreement"]["tau_b"]
        for k in KS:
            if f"top{k}" in rec["agreement"]:
                metrics[f"{name}_top{k}_overlap"] = rec["agreement"][f"top{k}"]
        t = rec["shape"][1]
        for a in ("mean", "borda"):
            curve = np.nanmean(rec["task_removal"][a], 0)
            for k in sorted({min(3, t), (t + 1) // 2}):
                metrics[f"{name}_removal_tau_{a}_k{k}"] = float(curve[k - 1])
            if cfg.n_reps:
                metrics[f"{name}_addition_tau_{a}_mean"] = float(np.nanmean(rec["system_addition"][a]))
        if "tau_kemeny_borda" in rec:
            metrics[f"{name}_tau_kemeny_borda"] = rec["tau_kemeny_borda"]
    if "glue" in real:
        g = real["glue"]
        checks["C5"] = bool(abs(g["agreement"]["tau_b"] - C5_TAU) <= C5_TOL)
        mb, mm = np.nanmean(g["task_removal"]["borda"], 0), np.nanmean(g["task_removal"]["mean"], 0)
        k3 = paired_summary(g["task_removal"]["borda"][:, C6_K_MIN - 1], g["task_removal"]["mean"][:, C6_K_MIN - 1])
        gap = float((mb - mm)[C6_K_MIN - 1:].min())
        checks["C6"] = bool(k3["mean"] >= C6_K3_MIN_DIFF and k3["ci_low"] > 0 and gap >= C6_GAP_MIN)
        metrics["glue_removal_min_gap_k3plus"] = gap
        metrics.update({f"glue_k3_borda_minus_mean_{k}": v for k, v in k3.items()})
    metrics.update({f"claim_{k}": v for k, v in checks.items()})
    metrics["seconds_compute"] = round(time.perf_counter() - t0, 3)
    plots = _plot(ctx.out_dir, cfg, syn, real)
    details = {
        "thresholds": {"c1_mean_min": C1_MEAN_MIN, "c1_borda_max": C1_BORDA_MAX, "c2_max": C2_MAX,
                       "c5": [C5_TAU, C5_TOL], "c6_k_min": C6_K_MIN, "c6_k3_min_diff": C6_K3_MIN_DIFF,
                       "c6_gap_min": C6_GAP_MIN},
        "pilot": PILOT, "phi_sweep_c1": sweep, "theorems": th,
        "curves": {name: {f"{kind}_{a}": np.nanmean(rec[kind][a], 0).tolist() for kind in ("task_removal",
                          "system_addition") if kind == "task_removal" or cfg.n_reps for a in ("mean", "borda")}
                   for name, rec in real.items()},
        "data_source": "PierreColombo/RankingNLPSystems data/{glue,superglue,xtrem}.data (leaderboards, early 2022)",
    }
    return Outcome(metrics=metrics, claim_holds=all(checks.values()), details=details, plots=plots)


register(
    Experiment(
        name="system_ranking",
        paper="system_ranking",
        title=TITLE,
        claim=CLAIM,
        sizes=SIZES,
        run=run,
        default_seeds=2,
    )
)


# ----------------------------------------------------------------------------- data (numbers only)
# Leaderboard snapshots from PierreColombo/RankingNLPSystems (data/*.data), system names removed,
# the aggregate "Score" column dropped. GLUE columns: CoLA, SST-2, MRPC-F1, MRPC-acc, STS-B-P, STS-B-S,
# QQP-F1, QQP-acc, MNLI-m, MNLI-mm, QNLI, RTE, WNLI, AX. SuperGLUE: BoolQ, CB-F1, CB-acc, COPA, MultiRC-F1a,
# MultiRC-EM, ReCoRD-F1, ReCoRD-acc, RTE, WiC, WSC, AX-b, AX-g-parity, AX-g-acc. XTREME: sentence-pair
# classification, structured prediction, question answering, sentence retrieval.

_GLUE = """
72.6 97.6 93.8 91.7 93.7 93.3 76.4 91.1 92.6 92.4 97.9 94.1 95.9 57
75.5 97.8 93.9 91.8 93 92.6 75.2 90.9 92.3 91.7 97.3 92.6 95.9 51.7
75.3 97.7 93.9 91.9 93.5 93.1 75.6 90.8 91.7 91.5 97.4 92.5 95.2 49.1
74.2 97.5 93.3 91 93.2 92.9 76.4 90.9 92.1 91.7 96.7 93.1 96.6 35.2
71.5 97.5 94 92 92.9 92.6 76.2 90.8 91.9 91.6 99.2 93.2 94.5 53.2
74.8 97 94.5 92.6 92.8 92.6 74.7 90.6 91.3 91.1 97.8 92 94.5 52.6
73.5 97.2 94 92 93 92.4 76.1 91 91.6 91.3 97.5 91.7 94.5 51.2
71.6 97.5 92.8 90.4 93.1 92.8 75.1 90.6 92.2 91.9 96.9 92.8 94.5 53.1
69.5 97.5 93.7 91.6 92.9 92.5 73.9 90.2 91 90.8 99.2 89.7 94.5 50.2
71.7 97.3 93.3 91 92.4 91.9 75.2 90.7 91.5 91.3 96.2 90.3 94.5 47.9
70.5 97.5 93.4 91.2 92.6 92.3 75.4 90.7 91.4 91.1 95.8 90 94.5 51.6
71.7 97.1 93.1 90.7 92.9 92.5 75.6 90.8 91.3 90.8 95.8 89.8 91.8 50.7
70.4 95.8 92.6 90.1 91.2 91.1 75.1 90.5 91.1 90.9 93.8 90.1 91.8 48.2
68 96.8 93.1 90.8 92.3 92.1 74.8 90.3 91.1 90.7 95.6 88.7 89 50.1
68.6 97.1 93 90.7 92.4 92 74.3 90.2 90.7 90.4 95.5 87.9 89 49.3
69.3 95.8 92.2 89.6 91.2 91.1 75.1 90.5 91.1 90.9 93.8 87.9 91.8 48.2
67.8 96.7 92.3 89.8 92.2 91.9 74.3 90.2 90.8 90.2 95.4 88.2 89 48.7
68.4 96.5 92.7 90.3 91.1 90.7 73.7 89.9 87.9 87.4 96 86.3 89 42.8
66.4 97.8 86.3 80.8 92.7 92.6 59.5 80.4 92 92.8 91.2 93.6 95.9 0
73.3 97.2 92.7 90.2 92 91.7 75.3 90.6 90.8 90.3 95.6 86.9 60.3 50
63.9 96.2 94.1 92.3 89.2 88.3 66 85.9 88.1 87.8 92.3 82.7 71.2 51.9
67.8 95.7 91.4 88.3 90.4 89.7 73 90 88.3 87.4 93.2 77.9 65.1 42.9
63.8 96.2 91.5 88.5 90.1 89.7 73.1 89.9 87.6 87.2 93.9 80.9 65.1 39.9
62.9 95.6 90.7 87.1 88.8 88.2 73.2 89.8 89.1 88.5 94 76 71.9 44.7
66.3 95.4 91.6 88.6 90 89.2 73.9 90 88.2 87.7 93.3 78.2 65.1 9.2
62.3 94.6 91.2 88.3 87.8 86.7 72.8 89.8 87.6 86.3 94.6 84.5 65.1 42.4
60.5 95.9 91.6 88.9 90.8 90.3 72.5 89.7 87.6 86.6 93.3 82.4 65.1 9.2
64.3 94.8 90.9 87.9 89.9 89.1 71.9 89.5 88.1 87.7 94.3 79 65.1 45.1
60 95.3 91.9 89.2 90 89.6 73.3 90 87.4 86.5 92.7 81.8 65.1 0
61.5 95.2 91.3 88.3 88.6 87.9 72.5 89.7 86.6 85.8 93.1 80.4 65.1 40.7
63.2 94.5 90.6 87.6 89.4 89.2 72.2 89.4 86.5 85.8 92.5 79.8 65.1 28.3
64 94.7 90.9 87.9 89.4 88.8 72.3 89.5 86.6 86.1 92.6 77 65.1 39.5
62.1 94.3 90.2 86.6 88.7 88.3 71.9 89.4 86.4 85.6 92.7 80.1 65.1 28.3
66.8 96.5 90.9 87.2 91.4 90.8 72.9 89.6 90.2 56.4 94.7 82.8 62.3 9.2
63.6 96.8 91.6 88.6 90.3 89.6 73.2 89.7 90 89.4 95.1 50.3 80.1 50.5
53.9 96.3 88.2 83.9 89.5 88.8 68.6 87.7 88 88.2 93.5 84.3 65.1 41.2
58.6 95.1 91.2 88.1 88.5 88.4 73 89.7 86.2 85.6 92.4 76.6 65.1 20.2
62.6 94.8 89.7 86.1 88.6 87.7 72.5 89.4 87.9 87.7 94 71.6 65.1 0
56.9 94.2 90.7 87.7 89.7 89.1 72.2 89.4 86.1 85.4 92.1 78.5 65.1 40
60 95.2 90.6 87.1 86.3 88.2 72.2 89.5 87.2 86.5 92.6 72.6 65.1 39.4
56.1 93.6 88.6 84.7 88 87.6 71 88.8 85.2 84.5 92.6 80 65.1 9.2
58.9 94.6 89.8 85.9 87.9 86.8 72.5 90.3 87.2 86.4 93 71.2 65.1 39.6
60.5 94.9 89.3 85.4 87.6 86.5 72.1 89.3 86.7 85.9 92.7 70.1 65.1 39.6
61.5 94.6 89.2 85.2 86.4 85 72.2 89.3 86.4 85.7 92.4 68.9 65.1 36.9
59.2 94.3 88.7 84.3 87.3 86.1 71.5 89.4 85.4 85 92.4 71.6 65.1 9.2
55.6 94.5 88.2 83.9 86.3 85.1 71.5 88.9 85.2 83.7 91.2 69.3 73.3 35.6
57 92.9 89.4 86 89.7 88.6 72.7 89.6 85.4 84.9 92.3 71.8 62.3 9.2
59.4 94.6 89.1 85.8 89.8 89.1 71.5 89.4 86.4 85.2 91.6 67.3 62.3 9.2
57.6 94 88.4 84.4 87.5 86.3 70.8 89 85.4 84.5 91.6 70.5 65.1 38.7
52.2 93.4 89.5 85.6 86.6 85.9 71.4 89 84.1 83.5 90.6 75.4 62.3 33.8
48.1 93.4 88.9 85.6 87 86.7 71.4 89 83.9 83.4 90.8 76.7 62.3 33.8
47.5 93.3 89.8 86.4 87.6 86.8 72 89.3 84.7 83.5 90.7 71.7 65.1 9.2
52.7 94.2 88.9 84.8 86.5 85.5 70.8 88.8 83.7 83.6 91 67.6 65.1 35.8
51.1 92.6 88.8 84.5 86.2 84.8 70.5 88.3 84.3 83.4 91.6 70.4 65.1 34.3
56.2 93.9 88.2 83.9 84.2 82.5 70.4 88.7 84.4 84.2 90.1 67 65.1 36.6
51.1 93.1 87.3 82.6 85 83.7 71.6 89.1 84.6 83.2 90.4 70 65.1 9.2
46.5 91.4 89.5 86 87 86.3 71.5 89 82 81.1 90.1 73.2 65.1 35.3
53 92.6 88.3 84.4 86.6 85.9 70 88.5 82.3 82 90.5 72.8 58.2 33.8
49.3 92.4 89 84.6 84.9 84 70.1 88.7 84 82.8 90.1 67.2 65.1 36.1
47.8 92.2 87.6 83.2 85.6 84.1 71.6 89.3 82.4 82.1 89.6 66.2 65.1 9.2
47.7 91 87.8 83 81.2 80.2 69.9 88.1 81.8 81 90.2 59.9 65.1 31.8
57 95.2 91.4 88.4 91.1 90.8 24.2 23.7 87.7 87.3 92.5 81.7 47.9 0.3
45.8 92.3 87.6 83.1 71 71 69.6 88.2 81.6 81.3 88.8 54.1 65.1 31.8
47.9 92.9 86.9 81.9 75 76.3 61.6 84.4 80.9 80.3 87.3 61.7 54.8 -10.3
47.9 92.9 86.9 81.9 75 76.3 61.4 84.2 80.9 80.3 87.3 61.7 54.8 -10.3
36.3 92.9 86.9 81.9 75 76.3 61.6 84.4 80.9 80.3 87.3 61.7 54.8 12.2
36.3 92.9 86.9 81.9 75 76.3 61.4 84.2 80.9 80.3 87.3 61.7 54.8 -10.3
46.5 92.3 83.3 77.7 78.6 79.7 70.2 87.9 82.7 33.1 89.5 53.2 65.1 0
14.3 86.7 82.9 75.2 81.8 80.3 68.3 87.5 79.8 79.7 86.2 60.4 65.1 31
33.6 90.4 84.4 78 74.2 72.3 63.1 84.3 74.1 74.5 79.8 58.9 65.1 21.7
32.1 89.3 84.7 78 70.3 67.8 61.1 82.6 67.2 67.9 75.5 57.4 65.1 21.3
35 90.2 80.2 68.8 55.5 52.5 66.1 86.5 76.9 76.7 76.7 50.3 65.1 27.9
35 90.2 80.8 69 64 60.2 65.6 85.7 72.9 73.4 71.7 50.1 65.1 19.5
7.7 83.1 83 76.6 79.3 79.2 59.8 82.9 71.4 71.3 78.6 59.2 65.1 20.6
18.6 83 83.9 76.2 72.8 70.5 60.1 82.4 67.6 68.3 74.3 58.4 65.1 17.8
11.6 82.8 81.8 74.3 70.3 67.8 62.5 84.2 65.6 66.1 74.6 57.4 65.1 20.3
4.5 85.1 81.2 74.1 75.9 75.3 59.1 81.7 66.1 65.7 72.7 58 65.1 18.3
15.7 85.9 79.4 69.3 66 62.8 61.4 81.7 70.3 70.8 75.7 52.8 62.3 21
14.5 88.5 81.4 73.4 67.2 64.1 59.4 83.3 64.5 64.8 75.4 53.5 61.6 20.6
8.3 80.7 80 71.8 69.8 68.4 60.5 83.4 68.1 68.6 72.9 56 65.1 18.3
14.5 88.5 79.7 68.6 57.2 53.6 60.1 84.1 71.6 71.5 74.5 52.7 64.4 23.8
18.5 81.9 78.7 71.5 64.4 62.7 60.6 84.9 65.4 65.7 70.8 52.7 65.1 17.6
15.7 85.9 80.3 68.5 59.3 55.8 62.9 83.5 74.2 73.8 77.2 51.9 55.5 24.9
4.9 83.7 81.7 74.1 66.1 64.8 59.5 82.6 58.7 59.1 73.9 56.4 65.1 15.9
0 81.8 80.8 71.7 71.8 69.7 56.4 82.2 62.9 62.8 72.9 53.1 65.1 12.2
0 80 81.5 73.4 61.2 58.7 51.4 79.1 56 56.4 72.1 54.1 62.3 9.2
25 87.1 80.7 71.7 79 76.8 66.7 86.5 76.4 75.8 84.2 61.2 56.2 28.5
53.7 92.5 87.2 82.7 0 99.8 69.1 87.5 83.9 82.7 90.8 60 65.1 37.5
54.4 93.5 87.7 83.1 61.2 58.7 72.1 89.3 56 56.4 50.4 54 62.3 9.2
54.5 80 89 84.8 61.2 58.7 66.3 87.1 56 56.4 50.4 68.5 62.3 9.2
54.5 80 89 84.8 61.2 58.7 66.3 87.1 56 56.4 50.4 67.9 62.3 9.2
54.5 80 89 84.8 61.2 58.7 66.3 86.6 56 56.4 50.4 67.9 62.3 9.2
54.5 80 89.1 85 61.2 58.7 66.3 86.6 56 56.4 50.4 66.6 62.3 9.2
51.4 93.4 81.5 73.4 61.2 58.7 51.4 79.1 56 56.4 50.4 71.1 62.3 9.2
51.6 80 81.5 73.4 61.2 58.7 51.4 79.1 56 56.4 50.4 54.1 62.3 9.2
50 80 81.5 73.4 61.2 58.7 51.4 79.1 56 56.4 50.4 54.1 62.3 9.2
0 93.4 89.2 85 61.2 58.7 51.4 79.1 56 56.4 50.4 71.1 62.3 9.2
12.6 85.3 81.5 73.4 61.2 58.7 59.8 82.2 56 56.4 62 54.1 62.3 9.2
0 93.4 81.5 73.4 61.2 58.7 51.4 79.1 56 56.4 50.4 71.2 62.3 9.2
0 93.4 81.5 73.4 61.2 58.7 51.4 79.1 56 56.4 50.4 70.5 62.3 9.2
0 93.4 81.5 73.4 61.2 58.7 51.4 79.1 56 56.4 50.4 69.3 62.3 9.2
0 80 84.2 77.9 61.2 58.7 51.4 79.1 56 56.4 50.4 59.1 62.3 9.2
0 80 81.5 73.4 61.2 58.7 51.4 79.1 56 56.4 50.4 61.2 62.3 9.2
0 80 81.5 73.4 61.2 58.7 51.4 79.1 56 56.4 50.4 54.1 62.3 9.2
0 80 81.5 73.4 61.2 58.7 31.7 24.3 56 56.4 50.4 54.1 62.3 9.2
"""

_SUPERGLUE = """
92.3 96.9 98 99.2 89.2 65.2 95 94.2 93.5 77.4 96.6 72.3 96.1 94.1
92 95.9 97.6 98.2 88.4 63 96.4 95.9 94.1 77.1 97.3 67.8 93.3 95.5
91 98.6 99.2 97.4 88.6 63.2 94.7 94.2 92.6 77.4 97.3 68.6 92.7 94.7
91.4 95.8 97.6 98 88.3 63 94.2 93.5 93 77.9 96.6 69.1 92.7 91.9
90.4 95.7 97.6 98.4 88.2 63.7 94.5 94.1 93.2 77.5 95.9 66.7 93.3 93.8
89 95.8 98.9 100 81.8 51.9 91.7 91.3 93.6 80 100 76.6 99.3 99.7
91.2 93.9 96.8 94.8 88.1 63.3 94.1 93.4 92.5 76.9 93.8 65.6 92.7 91.9
87.8 94.4 96 93.6 84.6 55.1 90.1 89.6 89.1 74.6 93.2 58 87.1 74.4
88.1 92.4 96.4 91.8 84.6 54.7 89 88.3 88.8 74.1 93.2 75.6 98.3 99.2
88.5 93.2 95.2 91.2 86.4 58.2 89.9 89.3 89.9 72.9 89 61.8 88.8 81.5
88.2 92.5 95.6 90.8 84.4 53.4 91.5 91 87.9 74.1 91.8 57.6 89.3 75.6
87.1 92.4 95.6 91.2 85.1 54.3 91.7 91.3 88.1 72.1 91.8 58.5 91 78.1
87.1 90.5 95.2 90.6 84.4 52.5 90.6 90 88.2 69.9 89 57.9 91 78.1
88.1 91.6 94.8 86.8 85.1 54.7 82.8 79.8 88.9 74.1 78.8 100 100 100
78.4 85.9 92 85.6 75.9 35.1 84.3 83.5 74.9 60.9 84.9 -0.4 100 50
80 82.3 92 85.4 76.2 35.7 86.1 85.5 75 53.5 85.6 -0.4 100 50
81.2 79.9 88.8 90.8 74.1 31.7 85.9 85.4 70.8 49.3 88.4 36.2 97.8 57.9
83.7 81.9 86.4 89.6 83.7 54.1 49.8 49 81.2 70.1 65.8 48 96.1 61.5
84.8 89.6 94 73.8 73.2 30.5 74.6 74 84.1 66.2 61 29.6 97.8 57.3
76.4 52 75.6 92 75.4 30.5 91.1 90.2 69 49.4 80.1 21.1 90.4 55.3
79 84.8 90.4 73.8 70 24.1 72 71.3 79 69.6 64.4 38 99.4 51.4
77.4 75.7 83.6 70.6 70 24.1 72 71.3 71.7 69.6 64.4 23 97.8 51.7
62.3 21.7 48.4 50 61.1 0.3 33.4 32.5 50.3 50 65.1 0 100 50
62.2 49 71.2 51.6 0 0.5 14 13.6 49.7 53.1 65.1 -0.4 100 50
"""

_XTREME = """
90.3 81.7 76.3 93.7
90.1 81.4 75 94.2
89.3 75.5 75.2 92.4
89 76.7 73.4 93.3
88.3 80.6 71.9 90.8
88.4 76.2 72.5 93.7
87.9 75.6 72.3 91.9
89 74.4 71.9 92.6
88.8 75.4 72.9 89.3
88.2 74.6 71.7 89
87.5 71.9 68.5 84.4
86.3 90.8 59.7 77.5
83.9 69.4 67.2 76.5
75 65.6 43.9 44.7
75.3 66.9 52.5 18
"""
