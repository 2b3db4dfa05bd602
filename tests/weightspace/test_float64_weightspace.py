"""Float64 checks of the weight-space toolkit, weight matching and BANG against numpy/scipy references."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from zoo.weightspace import bang, core
from zoo.weightspace import weight_matching_lmc as wm


def test_float64_permutation_barrier_matching_and_bang():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        pa = {"Dense_0": {"kernel": rng.normal(size=(3, 5)), "bias": rng.normal(size=5)},
              "Dense_1": {"kernel": rng.normal(size=(5, 2)), "bias": rng.normal(size=2)}}
        pb = jax.tree.map(lambda a: a + rng.normal(size=a.shape), pa)
        spec = core.mlp_spec(1)
        x = rng.normal(size=(9, 3))

        def f(p, x):
            return np.tanh(x @ np.asarray(p["Dense_0"]["kernel"]) + np.asarray(p["Dense_0"]["bias"])) @ np.asarray(
                p["Dense_1"]["kernel"]) + np.asarray(p["Dense_1"]["bias"])

        pi = core.random_perms(jax.random.key(0), spec, pa)
        pp = core.apply_permutation(spec, pi, pa)
        assert pp["Dense_0"]["kernel"].dtype == jnp.float64
        np.testing.assert_allclose(f(pp, x), f(pa, x), atol=1e-12)
        # interpolation and the loss barrier vs numpy
        ts = jnp.linspace(0, 1, 7)
        loss = lambda p: jnp.mean((jnp.tanh(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]) @ p["Dense_1"]["kernel"]  # noqa: E731
                                   + p["Dense_1"]["bias"]) ** 2)
        v = core.path_losses(loss, pa, pb, ts)
        ref = np.array([np.mean(f(jax.tree.map(lambda a, b: (1 - t) * a + t * b, pa, pb), x) ** 2) for t in np.asarray(ts)])
        np.testing.assert_allclose(v, ref, rtol=1e-12)
        lin = (1 - np.asarray(ts)) * ref[0] + np.asarray(ts) * ref[-1]
        assert abs(float(core.barrier_linear(v, ts)[0]) - np.max(ref - lin)) < 1e-12
        # weight matching == brute force over 5! permutations
        perms = wm.weight_matching(spec, pa, pb, key=jax.random.key(1))
        obj = lambda q: sum(float(np.vdot(a, b)) for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(  # noqa: E731
            core.apply_permutation(spec, {"P_0": jnp.array(q)}, pb))))
        assert abs(obj(np.asarray(perms["P_0"])) - max(obj(q) for q in itertools.permutations(range(5)))) < 1e-10
        # singular values invariant under permutation
        s0 = np.linalg.svd(np.asarray(pa["Dense_0"]["kernel"]), compute_uv=False)
        s1 = np.linalg.svd(np.asarray(pp["Dense_0"]["kernel"]), compute_uv=False)
        np.testing.assert_allclose(s0, s1, atol=1e-12)
        # WiSE-FT and output ensembles
        w = bang.wise_ft(pa, pb, 0.3)
        np.testing.assert_allclose(w["Dense_1"]["bias"], 0.7 * pa["Dense_1"]["bias"] + 0.3 * pb["Dense_1"]["bias"], atol=1e-14)
        t = bang.smooth_labels(jnp.array([1, 0]), 4, 0.2)
        assert t.dtype == jnp.float64 and abs(float(t[0, 1]) - 0.85) < 1e-14
        logits = rng.normal(size=(50, 4)) * 3
        y = rng.integers(0, 4, 50)
        T = float(bang.fit_temperature(jnp.asarray(logits), jnp.asarray(y)))
        from scipy.optimize import minimize_scalar
        from scipy.special import log_softmax

        nll = lambda lt: -np.mean(log_softmax(logits / np.exp(lt), 1)[np.arange(50), y])  # noqa: E731
        ref_T = float(np.exp(minimize_scalar(nll, bounds=(-8, 8), method="bounded", options={"xatol": 1e-12}).x))
        assert abs(T - ref_T) < 1e-6 * ref_T
