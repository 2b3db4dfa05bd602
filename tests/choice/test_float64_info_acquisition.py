"""Float64 end to end: the LP reproduces the single-agent closed forms to ~1e-9 and principal_utility /
value_of_information keep float64 and match a numpy float64 reference to 1e-10."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from zoo.choice import info_acquisition as ia


def test_float64_closed_forms_and_utility():
    with jax.enable_x64(True):
        one = ia.binary_accuracy_instance([0.8], [0.1])
        assert one.pi.dtype == jnp.float64
        v, m = ia.solve_optimal_mechanism(one)
        assert abs(v - 8 / 15) < 1e-9
        assert abs(ia.solve_optimal_mechanism(one, margin=0.01)[0] - (0.8 - 0.8 * 0.11 / 0.3)) < 1e-9
        two = ia.binary_accuracy_instance([0.85, 0.75], [0.05, 0.04])
        v2, m2 = ia.solve_optimal_mechanism(two, B=1.0)
        assert abs(v2 - 51 / 70) < 1e-9
        u = ia.principal_utility(two, m2)
        assert u.dtype == jnp.float64
        # numpy reference: obedient, truthful agents under the LP's (phi, gamma, decision)
        mu, pi = np.asarray(two.mu), np.asarray(two.pi).reshape(4, 2, 4)
        phi, gam, dec = np.asarray(m2.phi), np.asarray(m2.gamma), np.asarray(m2.decision)
        ref = sum(phi[a] * mu[k] * pi[a, k, s] * (float(k == dec[a, s]) - gam[:, a, s, k].sum())
                  for a in range(4) for k in range(2) for s in range(4))
        assert abs(float(u) - ref) < 1e-10 and abs(ref - v2) < 1e-9
        V = ia.value_of_information(two)
        assert V.dtype == jnp.float64 and abs(float(V[1, 1]) - 0.85) < 1e-12 and abs(float(V[0, 0]) - 0.5) < 1e-12
