"""float64: the MLP, the loss and same-norm rescaling against numpy float64 references at ~1e-10."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.weightspace import grokking_tickets as gt
from zoo.weightspace import masks as mk


def test_float64_mlp_loss_and_same_norm():
    with jax.enable_x64(True):
        P = gt.init_mlp(jax.random.key(0, impl="rbg"), 7, d_emb=6, d_model=4, dtype=jnp.float64)
        assert all(v.dtype == jnp.float64 for v in jax.tree.leaves(P))
        d = gt.modular_pairs(7, frac_train=0.5)
        x, y = d["train_x"], d["train_y"]
        m = mk.magnitude_mask(P, 0.5)
        loss, aux = jax.jit(lambda q, mm: gt.full_batch_loss(gt.mlp_apply, q, mm, x, y))(P, m)
        Pn = {k: np.asarray(v) * np.asarray(m[k]) for k, v in P.items()}
        e = Pn["embed"][:, x[:, 0]].T + Pn["embed"][:, x[:, 1]].T
        logits = (np.maximum(e @ Pn["w_in"].T, 0) @ Pn["w_out"].T) @ Pn["unembed"]
        lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
        ref = np.mean(lse - logits[np.arange(len(y)), y])
        assert loss.dtype == jnp.float64
        assert float(loss) == pytest.approx(ref, rel=1e-10, abs=1e-12)
        assert float(aux["acc"]) == pytest.approx(np.mean(logits.argmax(1) == y), abs=1e-12)
        # float64 CE does not saturate at margin 30 (float32 returns exactly 0)
        ce = float(gt.cross_entropy(jnp.asarray([[30.0, 0.0, 0.0]], jnp.float64), jnp.asarray([0])))
        assert ce == pytest.approx(2 * np.exp(-30.0), rel=1e-6) and ce > 0
        q, r = mk.same_norm_rescale(P, m, norm="l1")
        num = sum(np.abs(Pn[k]).sum() for k in Pn)
        den = sum(np.abs(np.asarray(P[k])).sum() for k in P)
        assert float(r) == pytest.approx(num / den, rel=1e-12)
        assert sum(float(jnp.abs(v).sum()) for v in q.values()) == pytest.approx(num, rel=1e-10)
