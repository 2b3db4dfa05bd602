"""Float64 end to end: the clairvoyant DP, the B3 pricing DP and the simulation keep float64 and match
numpy float64 references (plain recursion, subset enumeration) to ~1e-10."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from zoo.choice import stochastic_matching as sm


def test_float64_dp_pricing_and_lp():
    rng = np.random.default_rng(0)
    adj = rng.random((3, 6)) < 0.6
    p = rng.uniform(0.1, 0.9, (3, 6))
    w = rng.uniform(0.5, 2.0, 3)

    @functools.lru_cache(maxsize=None)
    def V(t, M):
        if t == 6:
            return 0.0
        return max([V(t + 1, M)] + [p[u, t] * (w[u] + V(t + 1, M | 1 << u)) + (1 - p[u, t]) * V(t + 1, M)
                                    for u in range(3) if adj[u, t] and not (M >> u) & 1])

    with jax.enable_x64(True):
        inst = sm.make_instance(adj, jnp.asarray(p), jnp.asarray(w))
        assert inst.p.dtype == jnp.float64
        opt = sm.clairvoyant_opt(inst)
        assert opt.dtype == jnp.float64 and abs(float(opt) - V(0, 0)) < 1e-12
        beta = rng.uniform(0, 0.5, 6)
        G, _ = sm.sclp_pricing(jnp.asarray(p[0]), adj[0], w[0], jnp.asarray(beta))
        nb = np.flatnonzero(adj[0])
        best = max([0.0] + [float(np.cumprod(np.r_[1.0, 1 - p[0, list(S)][:-1]]) @ (w[0] * p[0, list(S)] - beta[list(S)]))
                            for r in range(1, nb.size + 1) for S in itertools.combinations(nb, r)])
        assert G.dtype == jnp.float64 and abs(float(G) - best) < 1e-12
        lo, _ = sm.stochastic_config_lp(inst)
        assert abs(lo - sm.stochastic_config_lp(inst, "enumerate")[0]) < 1e-9 and lo >= float(opt) - 1e-10
        out = sm.run_online(jax.random.PRNGKey(0), inst, sm.AlgParams(kind="balance"))
        assert out["gain"].dtype == jnp.float64 and out["load"].dtype == jnp.float64
