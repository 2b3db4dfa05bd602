"""Rows for zoo.choice.info_acquisition."""

import jax
import numpy as np

from zoo.choice import info_acquisition as ia

from ._row import rows

_key = jax.random.PRNGKey(0)
_two = ia.binary_accuracy_instance([0.85, 0.75], [0.05, 0.04])
_v, _mech = ia.solve_optimal_mechanism(_two, B=1.0)
_pi_bad = np.asarray(_two.pi).copy()
_pi_bad[0, 0, 0, 0, 0] += 0.1
_unnorm = ia.Instance(_two.mu, _pi_bad, _two.costs, _two.U)
_negc = ia.Instance(_two.mu, _two.pi, (np.array([0.0, -0.1]), _two.costs[1]), _two.U)
_mech_bad = ia.Mechanism(_mech.phi[:3], _mech.gamma, _mech.decision)
_per = [np.stack([np.full((2, 2), 0.5), np.eye(2)])]
_big = ia.Instance(np.array([0.5, 0.5]), np.broadcast_to(np.float64(0.0), (6,) * 4 + (2,) + (6,) * 4),
                   tuple(np.zeros(6) for _ in range(4)), np.eye(2))  # n |A| |S| K = 13.4M payment variables

ROWS = [
    *rows("zoo.choice.info_acquisition.make_instance",
          ("mu off simplex", lambda: ia.make_instance([0.5, 0.6], _two.pi, list(_two.costs), _two.U), r"inst\.mu: expected a distribution"),
          ("pi not normalized", lambda: ia.make_instance(_two.mu, _pi_bad, list(_two.costs), _two.U), r"inst\.pi: expected pi"),
          ("negative cost", lambda: ia.make_instance(_two.mu, _two.pi, [[0.0, -1.0], [0.0, 0.1]], _two.U), r"inst\.costs\[0\]: expected costs >= 0"),
          ("costs/pi shape mismatch", lambda: ia.make_instance(_two.mu, _two.pi, [[0.0, 0.1, 0.2], [0.0, 0.1]], _two.U), r"inst\.costs\[0\]: expected shape"),
          ("costs wrong type", lambda: ia.make_instance(_two.mu, _two.pi, 0.1, _two.U), r"costs: expected", TypeError)),
    *rows("zoo.choice.info_acquisition.product_instance",
          ("empty", lambda: ia.product_instance([0.5, 0.5], [], [], np.eye(2)), r"per_agent_pi")),
    *rows("zoo.choice.info_acquisition.binary_accuracy_instance",
          ("q <= 1/2", lambda: ia.binary_accuracy_instance([0.4], [0.1]), r"q: expected"),
          ("exploration not implementable", lambda: ia.binary_accuracy_instance([0.6], [0.2], B=1.0), r"B: exploration")),
    *rows("zoo.choice.info_acquisition.value_of_information",
          ("pi not normalized", lambda: ia.value_of_information(_unnorm), r"inst\.pi")),
    *rows("zoo.choice.info_acquisition.decision_rule",
          ("negative cost", lambda: ia.decision_rule(_negc), r"inst\.costs\[0\]")),
    *rows("zoo.choice.info_acquisition.build_lp",
          ("B <= 0", lambda: ia.build_lp(_two, B=0.0), r"B: expected"),
          ("margin < 0", lambda: ia.build_lp(_two, margin=-0.1), r"margin: expected"),
          ("too large", lambda: ia.build_lp(_big), r"inst: the dense LP .* product")),
    *rows("zoo.choice.info_acquisition.solve_optimal_mechanism",
          ("infeasible margin", lambda: ia.solve_optimal_mechanism(_two, margin=0.5, B=1.0), r"LP infeasible .*margin"),
          ("bad phi_fixed", lambda: ia.solve_optimal_mechanism(_two, phi_fixed=[0.5, 0.5, 0.5, 0.5]), r"phi_fixed")),
    *rows("zoo.choice.info_acquisition.deviation_payoffs",
          ("phi shape", lambda: ia.deviation_payoffs(_two, _mech_bad), r"mech\.phi: expected shape")),
    *rows("zoo.choice.info_acquisition.ic_violation",
          ("mech wrong type", lambda: ia.ic_violation(_two, (1, 2, 3)), r"mech: expected", TypeError)),
    *rows("zoo.choice.info_acquisition.best_responses",
          ("tol < 0", lambda: ia.best_responses(_two, _mech, tol=-1.0), r"tol: expected")),
    *rows("zoo.choice.info_acquisition.principal_utility",
          ("inst wrong type", lambda: ia.principal_utility("inst", _mech), r"inst_true: expected", TypeError)),
    *rows("zoo.choice.info_acquisition.best_uncorrelated",
          ("grid_size < 2", lambda: ia.best_uncorrelated(_two, grid_size=1), r"grid_size")),
    *rows("zoo.choice.info_acquisition.etc_regret",
          ("T < 2", lambda: ia.etc_regret(_key, _two, 1), r"T: expected"),
          ("kappa < 0", lambda: ia.etc_regret(_key, _two, 100, kappa=-0.1), r"kappa: expected"),
          ("B <= 0", lambda: ia.etc_regret(_key, _two, 100, B=0.0), r"B: expected")),
    *rows("zoo.choice.info_acquisition.regret_curve",
          ("one horizon", lambda: ia.regret_curve(_key, _two, [100], 2), r"Ts: expected"),
          ("n_seeds < 1", lambda: ia.regret_curve(_key, _two, [100, 1000], 0), r"n_seeds")),
]
