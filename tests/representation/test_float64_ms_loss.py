"""float64 end to end (under ``jax.enable_x64``) for zoo.representation.ms_loss: every loss equals its
numpy float64 loop to 1e-10, the MS gradient equals central finite differences and the closed-form GPW
weights, and the weights' row sums are strictly below 1."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.representation import ms_loss as M

from .test_ms_loss import batch, np_binomial, np_contrastive, np_lifted, np_ms, np_recall, np_triplet


def test_float64_losses_gradients_and_weights():
    E32, y = batch(B=10, D=3, seed=7)
    E = E32.astype(np.float64)
    E = E / np.linalg.norm(E, axis=1, keepdims=True)
    with jax.enable_x64(True):
        Ej = jnp.asarray(E)

        @jax.jit
        def everything(Ej, y):
            losses = [
                M.ms_loss(Ej, y), M.ms_loss(Ej, y, mining=False, **M.PRESETS["paper"]), M.contrastive_loss(Ej, y),
                M.triplet_loss(Ej, y, mining="semihard"), M.triplet_loss(Ej, y, mining="hard", reduction="mean_active"),
                M.binomial_deviance_loss(Ej, y), M.lifted_structure_loss(Ej, y),
                M.lifted_structure_loss(Ej, y, form="song2016"),
            ]
            S = Ej @ Ej.T
            wp, wn = M.ms_pair_weights(S, y)
            return losses, M.recall_at_k(Ej, y, ks=(1, 3)), jax.grad(M.ms_loss)(Ej, y), wp, wn

        losses, r, g, wp, wn = everything(Ej, y)
        wants = [np_ms(E, y), np_ms(E, y, mining=False, **M.PRESETS["paper"]), np_contrastive(E, y),
                 np_triplet(E, y, mining="semihard"), np_triplet(E, y, mining="hard", reduction="mean_active"),
                 np_binomial(E, y), np_lifted(E, y), np_lifted(E, y, form="song2016")]
        for got, want in zip(losses, wants, strict=True):
            assert got.dtype == jnp.float64
            np.testing.assert_allclose(float(got), want, rtol=1e-10, atol=1e-12)
        assert r[1].dtype == jnp.float64
        want = np_recall(E, y, (1, 3))
        assert [float(r[k]) for k in (1, 3)] == pytest.approx([want[1], want[3]], abs=1e-12)

        # gradient: autodiff = (G + G^T) E from the closed-form weights = central finite differences
        G = (wn - wp) / len(y)
        np.testing.assert_allclose(g, np.asarray((G + G.T) @ Ej), rtol=1e-10, atol=1e-13)
        fj = jax.jit(lambda e: M.ms_loss(e, y))
        g = np.asarray(g)
        h = 1e-6
        for d in np.random.default_rng(0).normal(size=(3, *E.shape)):  # directional central differences
            fd = (float(fj(jnp.asarray(E + h * d))) - float(fj(jnp.asarray(E - h * d)))) / (2 * h)
            assert float(np.sum(g * d)) == pytest.approx(fd, abs=1e-7)
        for w in (wp, wn):
            assert float(w.sum(1).max()) < 1.0 and float(w.min()) >= 0.0
