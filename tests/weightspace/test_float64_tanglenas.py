"""Float64: the weight-entangled supernet under arbitrary (non-one-hot) mixture weights equals a numpy
float64 reference that sums every candidate's masked super-weight explicitly (no coefficient maps)."""

import itertools

import jax
import numpy as np

from zoo.weightspace import tanglenas as tn

from .test_tanglenas import np_conv1d


def test_supernet_matches_explicit_candidate_sum_float64():
    space = tn.SearchSpace(channels=(1, 3), kernels=(1, 3), n_layers=2, num_classes=2)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        params = tn.init_supernet(jax.random.key(0), space, dtype=np.float64)
        x = rng.normal(size=(3, 6))
        probs = {"channels": rng.dirichlet(np.ones(2), size=2), "kernels": rng.dirichlet(np.ones(2), size=2)}
        got = tn.supernet_apply(params, x, probs, space)
        assert got.dtype == np.float64
        h, pin, cin_vals = x[..., None], None, None
        for l in range(2):
            th = np.asarray(params[f"conv{l}"]["w"])
            w, b = np.zeros_like(th), np.zeros(3)
            cands = itertools.product(enumerate(space.channels), enumerate(space.kernels),
                                      enumerate(cin_vals) if pin is not None else [(0, th.shape[1])])
            for (a, c), (kk, k), (bi, ci) in cands:
                wt = probs["channels"][l][a] * probs["kernels"][l][kk] * (1.0 if pin is None else pin[bi])
                m = np.zeros_like(th)
                m[(3 - k) // 2 : (3 - k) // 2 + k, :ci, :c] = 1
                w += wt * m * th
            for a, c in enumerate(space.channels):
                b[:c] += probs["channels"][l][a] * np.asarray(params[f"conv{l}"]["b"])[:c]
            h = np.maximum(np_conv1d(h, w) + b, 0)
            pin, cin_vals = probs["channels"][l], space.channels
        hw = sum(pin[a] * np.where(np.arange(3)[:, None] < c, np.asarray(params["head"]["w"]), 0)
                 for a, c in enumerate(space.channels))
        ref = h.mean(1) @ hw + np.asarray(params["head"]["b"])
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-10, atol=1e-12)
