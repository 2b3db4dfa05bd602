"""Rows for zoo.choice.facility_location: empty / out-of-domain / NaN profiles, bad phantoms, grids and names."""

import jax
import numpy as np

from zoo.choice import facility_location as fl

from ._row import rows

_F = "zoo.choice.facility_location."
X = np.array([[0.1, 0.5, 0.9]], np.float32)
OUT = np.array([[0.1, 1.5, 0.9]], np.float32)  # outside [0, 1]: never clipped silently
NAN = np.array([[0.1, np.nan, 0.9]], np.float32)
ONE = np.array([[0.3]], np.float32)  # n = 1 < 2
EMPTY = np.zeros((0, 3), np.float32)
Y = np.array([0.5], np.float32)

ROWS = [
    *rows(_F + "uniform_phantom", ("out of range", lambda: fl.uniform_phantom(OUT), r"x: locations must lie in \[0, 1\]"),
          ("NaN", lambda: fl.uniform_phantom(NAN), "x: contains"), ("n < 2", lambda: fl.uniform_phantom(ONE), "x:.*n >= 2"),
          ("empty", lambda: fl.uniform_phantom(EMPTY), "x:.*non-empty"),
          ("wrong type", lambda: fl.uniform_phantom("0.5"), "x", TypeError)),
    *rows(_F + "phantom_mechanism",
          ("wrong length", lambda: fl.phantom_mechanism(X, np.array([0, 0.5, 1.0])), "phantoms: expected n \\+ 1 = 4"),
          ("unsorted", lambda: fl.phantom_mechanism(X, np.array([0, 0.7, 0.3, 1.0])), "phantoms:.*sorted"),
          ("out of range", lambda: fl.phantom_mechanism(X, np.array([0, 0.3, 0.7, 1.2])), r"phantoms:.*\[0, 1\]")),
    *rows(_F + "median", ("out of range", lambda: fl.median(OUT), "x:")),
    *rows(_F + "mean_mechanism", ("NaN", lambda: fl.mean_mechanism(NAN), "x:")),
    *rows(_F + "midpoint_mechanism", ("n < 2", lambda: fl.midpoint_mechanism(ONE), "x:")),
    *rows(_F + "init_uniform_phantoms", ("n < 2", lambda: fl.init_uniform_phantoms(1), "n:"),
          ("wrong type", lambda: fl.init_uniform_phantoms(2.5), "n:", TypeError)),
    *rows(_F + "init_ifs_median_phantoms", ("n < 2", lambda: fl.init_ifs_median_phantoms(0), "n:")),
    *rows(_F + "init_median_phantoms", ("n < 2", lambda: fl.init_median_phantoms(1), "n:")),
    *rows(_F + "ifs_phantom_criterion", ("unsorted", lambda: fl.ifs_phantom_criterion([0, 0.8, 0.2, 1]), "phantoms:"),
          ("too short", lambda: fl.ifs_phantom_criterion([0.5]), "phantoms:")),
    *rows(_F + "feasible_interval", ("unknown axiom", lambda: fl.feasible_interval(X, "envy"), "axiom:"),
          ("out of range", lambda: fl.feasible_interval(OUT, "pf"), "x:"),
          ("negative", lambda: fl.feasible_interval(X, "ufs", tie_tol=-1.0), "tie_tol")),
    *rows(_F + "constrained_optimum", ("unknown axiom", lambda: fl.constrained_optimum(X, "prop"), "axiom:")),
    *rows(_F + "satisfies", ("unknown axiom", lambda: fl.satisfies(X, Y, "core"), "axiom:"),
          ("wrong shape", lambda: fl.satisfies(X, np.ones(3, np.float32), "ifs"), "y:"),
          ("NaN", lambda: fl.satisfies(X, np.array([np.nan], np.float32), "ifs"), "y:"),
          ("negative", lambda: fl.satisfies(X, Y, "ifs", tol=-1.0), "tol")),
    *rows(_F + "total_cost", ("NaN", lambda: fl.total_cost(NAN, Y), "x:")),
    *rows(_F + "social_welfare", ("wrong shape", lambda: fl.social_welfare(X, np.ones((2, 2), np.float32)), "y:")),
    *rows(_F + "approx_ratio", ("unknown objective", lambda: fl.approx_ratio(X, Y, "makespan"), "objective:")),
    *rows(_F + "endpoint_profiles", ("n < 2", lambda: fl.endpoint_profiles(1), "n:")),
    *rows(_F + "worst_endpoint_ratio", ("n < 2", lambda: fl.worst_endpoint_ratio(1), "n:"),
          ("unknown objective", lambda: fl.worst_endpoint_ratio(3, "max"), "objective:")),
    *rows(_F + "manipulation_gain",
          ("grid out of range", lambda: fl.manipulation_gain(fl.mean_mechanism, X, np.array([0.5, 1.5])), r"grid:.*\[0, 1\]"),
          ("grid 2-D", lambda: fl.manipulation_gain(fl.mean_mechanism, X, np.ones((2, 2))), "grid:"),
          ("not callable", lambda: fl.manipulation_gain("mean", X, np.array([0.5])), "mech", TypeError),
          ("bad batch", lambda: fl.manipulation_gain(fl.mean_mechanism, X, np.array([0.5]), batch_size=0), "batch_size")),
    *rows(_F + "phantom_manipulation_gain",
          ("wrong length", lambda: fl.phantom_manipulation_gain(X, np.array([0.0, 1.0])), "phantoms:")),
    *rows(_F + "nash_outcome", ("out of range", lambda: fl.nash_outcome(fl.mean_mechanism, OUT), "x:"),
          ("bad sweeps", lambda: fl.nash_outcome(fl.mean_mechanism, X, n_sweeps=0), "n_sweeps"),
          ("unknown method", lambda: fl.nash_outcome(fl.mean_mechanism, X, method="newton"), "method")),
    *rows(_F + "equilibrium_gap", ("wrong shape", lambda: fl.equilibrium_gap(fl.mean_mechanism, X, X[0]), "reports"),
          ("out of range", lambda: fl.equilibrium_gap(fl.mean_mechanism, X, OUT), "reports")),
    *rows(_F + "sample_profiles", ("unknown kind", lambda: fl.sample_profiles(jax.random.key(0), 4, 3, "normal"), "kind:"),
          ("n < 2", lambda: fl.sample_profiles(jax.random.key(0), 4, 1), "n:"),
          ("empty", lambda: fl.sample_profiles(jax.random.key(0), 0, 3), "batch")),
]
