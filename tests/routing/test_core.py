"""`zoo.routing.core`: dynamic routing against a plain numpy loop, and its defining properties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.routing import core


def np_routing(u, r, *, b0=None, mask=None, phi="sabour", agreement="accumulate", prev=None, beta=0.9, eps=1e-7,
               inside=True):
    """Independent reference: one sample, explicit loops over inputs i and outputs j."""
    u = np.asarray(u, np.float64)
    I, J, D = u.shape
    b = np.zeros((I, J)) if b0 is None else np.array(b0, np.float64)
    m = np.ones(I) if mask is None else np.asarray(mask, np.float64)
    v_prev = None if prev is None else np.array(prev, np.float64)
    for _ in range(r):
        c = np.zeros((I, J))
        for i in range(I):
            e = np.exp(b[i] - b[i].max())
            c[i] = m[i] * e / e.sum()
        s = np.zeros((J, D))
        for j in range(J):
            for i in range(I):
                s[j] += c[i, j] * u[i, j]
        v = np.zeros((J, D))
        for j in range(J):
            n2 = s[j] @ s[j]
            if phi == "sabour":
                v[j] = n2 / (1 + n2) * s[j] / np.sqrt(n2 + eps)
            elif phi == "unit":
                v[j] = s[j] / np.sqrt(n2 + eps)
            elif phi == "none":
                v[j] = s[j]
            else:
                w = beta * v_prev[j] + (1 - beta) * s[j] if inside else s[j]
                v[j] = w / max(np.sqrt(w @ w), 1e-12)
        if phi == "ema_l2" and inside:
            v_prev = v
        a = np.array([[u[i, j] @ v[j] for j in range(J)] for i in range(I)])
        b = b + a if agreement == "accumulate" else a
    if phi == "ema_l2" and not inside:
        w = beta * prev + (1 - beta) * v
        v = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    e = np.exp(b - b.max(1, keepdims=True))
    c_final = m[:, None] * e / e.sum(1, keepdims=True)
    return v, c, c_final


@pytest.fixture(scope="module")
def u3():
    return np.random.default_rng(0).normal(size=(3, 2, 2)).astype(np.float32)


@pytest.mark.parametrize("phi,agreement", [("sabour", "accumulate"), ("unit", "replace"), ("none", "accumulate")])
def test_matches_numpy_loop(u3, phi, agreement):
    out = core.dynamic_routing(u3, 3, nonlinearity=phi, agreement=agreement)
    v, c, cf = np_routing(u3, 3, phi=phi, agreement=agreement)
    np.testing.assert_allclose(out.v, v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.c, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.c_final, cf, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.c.sum(-1), 1.0, rtol=1e-6)  # couplings of each input sum to one


def test_adaptdhm_route_matches_reference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    C = rng.normal(size=(2, 3))
    C = (C / np.linalg.norm(C, axis=1, keepdims=True)).astype(np.float32)
    assign, coeff, newc = core.adaptdhm_route(x, C, 0.9, 3, train=True)
    # the Scenario-Wise-Rec loop, written directly: softmax, batch sum, EMA + normalise, r times; then softmax
    cen = C.astype(np.float64)
    for _ in range(3):
        s = x @ cen.T
        r = np.exp(s - s.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        w = 0.9 * cen + 0.1 * (r.T @ x)
        cen = w / np.linalg.norm(w, axis=1, keepdims=True)
    s = x @ cen.T
    r = np.exp(s - s.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    np.testing.assert_allclose(newc, cen, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(coeff, r, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(assign, r.argmax(1))
    np.testing.assert_allclose(np.linalg.norm(newc, axis=1), 1.0, rtol=1e-6)
    # eval: one similarity pass with the stored centres, no update
    a2, c2, n2 = core.adaptdhm_route(x, C, 0.9, 3, train=False)
    s0 = x @ C.T
    r0 = np.exp(s0 - s0.max(1, keepdims=True))
    np.testing.assert_allclose(c2, r0 / r0.sum(1, keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(n2, C)
    # beta = 1: centres never move; permuting the batch leaves the new centres unchanged
    np.testing.assert_allclose(core.adaptdhm_route(x, C, 1.0, 3)[2], C, atol=1e-7)
    np.testing.assert_allclose(core.adaptdhm_route(x[[3, 1, 0, 2]], C, 0.9, 3)[2], newc, rtol=1e-5, atol=1e-6)


def test_adl_variant_and_mean_aggregate():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    C = rng.normal(size=(2, 3))
    C = (C / np.linalg.norm(C, axis=1, keepdims=True)).astype(np.float32)
    # ADL with r = 1: coefficients from the old centres, centres = normalize(β C + (1-β) normalize(Rᵀ X))
    _, coeff, newc = core.adaptdhm_route(x, C, 0.9, 1, ema_inside_loop=False)
    s = x @ C.T
    r = np.exp(s - s.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    agg = r.T @ x
    agg /= np.linalg.norm(agg, axis=1, keepdims=True)
    w = 0.9 * C + 0.1 * agg
    np.testing.assert_allclose(coeff, r, rtol=1e-5)
    np.testing.assert_allclose(newc, w / np.linalg.norm(w, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    v, _, _ = np_routing(np.repeat(x[:, None], 2, 1), 3, b0=x @ C.T, phi="ema_l2", agreement="replace", prev=C,
                         inside=False)
    np.testing.assert_allclose(core.adaptdhm_route(x, C, 0.9, 3, ema_inside_loop=False)[2], v, rtol=1e-5, atol=1e-6)
    # mean aggregate: the batch sum divided by the coefficient mass of each cluster
    _, _, cm = core.adaptdhm_route(x, C, 0.5, 1, mean_aggregate=True)
    w = 0.5 * C + 0.5 * (r.T @ x) / r.sum(0)[:, None]
    np.testing.assert_allclose(cm, w / np.linalg.norm(w, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_squash_closed_form_and_zero():
    np.testing.assert_allclose(core.squash(jnp.array([3.0, 4.0])), [0.576923, 0.769231], rtol=1e-5)
    s = (np.random.default_rng(0).normal(size=(100, 4)) * np.logspace(-3, 3, 100)[:, None]).astype(np.float32)
    n = np.linalg.norm(core.squash(s), axis=-1)
    ns = np.linalg.norm(np.asarray(s, np.float64), axis=-1)
    assert np.all(n < 1.0)
    np.testing.assert_allclose(n, ns**2 / (1 + ns**2), rtol=1e-4, atol=1e-7)
    g = jax.grad(lambda s: jnp.sum(core.squash(s)))(jnp.zeros(3))
    assert np.all(np.isfinite(g)) and np.all(core.squash(jnp.zeros(3)) == 0)
    np.testing.assert_allclose(np.linalg.norm(core.squash(s[50:], kind="unit"), axis=-1), 1.0, rtol=1e-5)


def test_one_iteration_is_uniform_coupling(u3):
    out = core.dynamic_routing(u3, 1)
    np.testing.assert_allclose(out.c, 0.5)
    np.testing.assert_allclose(out.v, core.squash(u3.sum(0) / 2), rtol=1e-6)


def test_permutation_equivariance(u3):
    base = core.capsule_routing(u3, 3)
    perm_i = core.capsule_routing(u3[[2, 0, 1]], 3)
    np.testing.assert_allclose(perm_i.v, base.v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(perm_i.c, np.asarray(base.c)[[2, 0, 1]], rtol=1e-5, atol=1e-6)
    perm_j = core.capsule_routing(u3[:, [1, 0]], 3)
    np.testing.assert_allclose(perm_j.v, np.asarray(base.v)[[1, 0]], rtol=1e-5, atol=1e-6)


def test_mask_and_empty(u3):
    pad = np.concatenate([u3, 100 * np.ones((2, 2, 2), np.float32)])
    mask = np.array([True, True, True, False, False])
    out = core.capsule_routing(pad, 3, input_mask=mask)
    np.testing.assert_allclose(out.v, core.capsule_routing(u3, 3).v, rtol=1e-5, atol=1e-6)
    assert np.all(out.c[3:] == 0) and np.all(out.c_final[3:] == 0)
    empty = core.capsule_routing(u3, 3, input_mask=np.zeros(3, bool))
    assert np.all(empty.v == 0) and np.all(np.isfinite(empty.b))
    C = np.eye(2, dtype=np.float32)
    _, _, cen = core.adaptdhm_route(u3[:, 0], C, 0.9, 3, input_mask=np.zeros(3, bool))
    np.testing.assert_allclose(cen, C)  # no sample: the centres stay (no NaN)


def test_broadcast_equals_materialised_and_ema_properties():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    prev = rng.normal(size=(3, 4)).astype(np.float32)
    prev /= np.linalg.norm(prev, axis=1, keepdims=True)
    kw = dict(nonlinearity="ema_l2", agreement="replace", prev_outputs=prev, logits_init=x @ prev.T)
    a = core.dynamic_routing(x[:, None], 3, num_outputs=3, **kw)
    b = core.dynamic_routing(np.repeat(x[:, None], 3, 1), 3, **kw)
    for p, q in zip(a, b):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a.v, axis=-1), 1.0, rtol=1e-6)
    v0 = core.dynamic_routing(x[:, None], 1, num_outputs=3, nonlinearity="ema_l2", agreement="replace",
                              prev_outputs=prev, ema=0.0).v
    s = np.full((6, 3), 1 / 3).T @ x
    np.testing.assert_allclose(v0, s / np.linalg.norm(s, axis=1, keepdims=True), rtol=1e-5)


def test_gradient_options_jit_vmap(u3):
    f = lambda u, mode: jnp.sum(core.capsule_routing(u, 3, stop_gradient_routing=mode).v ** 2)  # noqa: E731
    g_all = jax.grad(f)(u3, "all")
    assert np.all(g_all == 0)
    g_none, g_logits = jax.grad(f)(u3, "none"), jax.grad(f)(u3, "logits")
    assert np.all(np.isfinite(g_none)) and not np.allclose(g_none, g_logits)
    batch = np.stack([u3, 2 * u3])
    vm = jax.jit(jax.vmap(lambda u: core.capsule_routing(u, 3).v))(batch)
    np.testing.assert_allclose(vm[1], core.capsule_routing(2 * u3, 3).v, rtol=1e-5, atol=1e-6)
    lead = core.capsule_routing(batch, 3).v  # leading dims are batch dims
    np.testing.assert_allclose(lead, vm, rtol=1e-5, atol=1e-6)
    kt = core.keras_text_capsule_routing(u3, 2)
    np.testing.assert_allclose(kt.v, np_routing(u3, 2, phi="unit", agreement="replace")[0], rtol=1e-5, atol=1e-6)
