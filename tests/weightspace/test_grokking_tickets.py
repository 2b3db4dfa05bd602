"""zoo.weightspace.grokking_tickets: data, models vs numpy references, masked training, tickets, controls."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo.weightspace import grokking_tickets as gt
from zoo.weightspace import masks as mk

def _k(i):
    return jax.random.key(i, impl="rbg")  # rbg: much faster to compile than threefry on CPU


CFG = gt.GrokConfig(p=7, d_emb=8, d_model=4)
TCFG = gt.GrokConfig(p=7, model="transformer", d_model=8, d_mlp=6)


def np_mlp(P, x):
    e = P["embed"][:, x[:, 0]].T + P["embed"][:, x[:, 1]].T
    h = np.maximum(e @ P["w_in"].T, 0)
    return (h @ P["w_out"].T) @ P["unembed"]


def np_transformer(P, x):
    """Independent loop implementation: causal attention over 2 tokens, logits at position 1."""
    H, dh, d = P["W_Q"].shape
    out = []
    for a, b in x:
        h = np.stack([P["embed"][:, a], P["embed"][:, b]])  # [2, d]
        z = []
        for i in range(H):
            q, k, v = (h @ P[n][i].T for n in ("W_Q", "W_K", "W_V"))
            s = q[1] @ k.T / np.sqrt(dh)  # last position attends to both
            w = np.exp(s - s.max())
            z.append((w / w.sum()) @ v)
        r = h[1] + P["W_O"] @ np.concatenate(z)
        r = r + P["mlp_out"] @ np.maximum(P["mlp_in"] @ r, 0)
        out.append(r @ P["unembed"])
    return np.stack(out)


@pytest.fixture(scope="module")
def data():
    return gt.modular_pairs(7, frac_train=0.5, seed=0)


@pytest.fixture(scope="module")
def run4(data):
    """jitted 4-step train_run (evaluate every 2 steps), shared by the tests."""
    return jax.jit(lambda p0, m: gt.train_run(CFG, p0, m, data, steps=4, eval_every=2))


def test_modular_pairs_paper_split_sizes():
    d = gt.modular_pairs(67, frac_train=0.4, symmetric=True)
    assert d["train_x"].shape == (911, 2) and d["test_x"].shape == (1367, 2)
    x = np.concatenate([d["train_x"], d["test_x"]])
    y = np.concatenate([d["train_y"], d["test_y"]])
    np.testing.assert_array_equal(y, (x[:, 0] + x[:, 1]) % 67)
    assert np.all(x[:, 0] <= x[:, 1])
    assert len({tuple(r) for r in x}) == 2278  # disjoint and complete
    d2 = gt.modular_pairs(97, frac_train=0.3, symmetric=False, op="sub", seed=3)
    assert d2["train_x"].shape == (2822, 2) and d2["test_x"].shape == (6587, 2)
    np.testing.assert_array_equal(d2["train_y"], (d2["train_x"][:, 0] - d2["train_x"][:, 1]) % 97)
    assert not np.array_equal(d["train_x"], gt.modular_pairs(67, frac_train=0.4, seed=1)["train_x"])


def test_mlp_matches_numpy_and_paper_init_scale():
    P = gt.init_mlp(_k(0), 67)  # paper widths
    assert {k: v.shape for k, v in P.items()} == {"embed": (500, 67), "w_in": (48, 500), "w_out": (500, 48),
                                                  "unembed": (500, 67)}
    for k, fan in (("embed", 67), ("w_in", 500), ("w_out", 48), ("unembed", 500)):
        assert float(jnp.std(P[k])) * np.sqrt(fan) == pytest.approx(1.0, rel=0.05)
    x = np.array([[0, 1], [5, 66], [3, 3]], np.int32)
    Pn = jax.tree.map(np.asarray, P)
    np.testing.assert_allclose(np.asarray(jax.jit(gt.mlp_apply)(P, None, x)), np_mlp(Pn, x), rtol=2e-4, atol=2e-4)


def test_transformer_matches_numpy_loop():
    P = gt.init_params(_k(1), TCFG)
    assert P["W_Q"].shape == (1, 8, 8) and P["W_O"].shape == (8, 8) and P["unembed"].shape == (8, 7)
    x = np.array([[0, 1], [6, 2], [4, 4]], np.int32)
    apply = jax.jit(gt.transformer_apply)
    got = apply(P, None, x)
    np.testing.assert_allclose(np.asarray(got), np_transformer(jax.tree.map(np.asarray, P), x), rtol=1e-4, atol=1e-5)
    # two heads: the same reference on random weights of the 2-head layout (one more compile of apply only)
    r = np.random.default_rng(0)
    P2 = {k: (v.reshape(2, 4, 8) if k in ("W_Q", "W_K", "W_V") else v) for k, v in P.items()}
    P2 = {k: jnp.asarray(r.normal(size=v.shape) / 3, jnp.float32) for k, v in P2.items()}
    np.testing.assert_allclose(np.asarray(apply(P2, None, x)),
                               np_transformer(jax.tree.map(np.asarray, P2), x), rtol=1e-4, atol=1e-5)


def test_masked_forward_ignores_pruned_and_gets_zero_grad(data):
    P = gt.init_params(_k(0), CFG)
    m = mk.magnitude_mask(P, 0.4)
    x, y = data["train_x"], data["train_y"]
    noisy = jax.tree.map(lambda w, mm: jnp.where(mm == 0, 7.0, w), P, m)
    fwd_grad = jax.jit(jax.value_and_grad(lambda q: gt.full_batch_loss(gt.mlp_apply, q, m, x, y)[1]["p_correct"]))
    (pc, g), (pc_noisy, _) = fwd_grad(P), fwd_grad(noisy)
    assert float(pc) == float(pc_noisy)
    for gl, ml in zip(jax.tree.leaves(g), jax.tree.leaves(m)):
        assert np.all(np.asarray(gl)[np.asarray(ml) == 0] == 0)
        assert np.any(np.asarray(gl) != 0)


def test_loss_accuracy_and_float32_saturation():
    logits = jnp.asarray([[30.0, 0.0, 0.0], [0.0, 2.0, 1.0]], jnp.float32)
    y = jnp.asarray([0, 2])
    ref = -np.mean([30 - np.log(np.exp(30) + 2), 1 - np.log(1 + np.e**2 + np.e)])
    assert float(gt.cross_entropy(logits, y)) == pytest.approx(ref, rel=1e-6)
    # chosen behaviour: CE in the logits' dtype; float32 saturates to exactly 0 at margin 30
    assert float(gt.cross_entropy(logits[:1], y[:1])) == 0.0
    loss, aux = gt.full_batch_loss(lambda p, m, x: logits, None, None, jnp.zeros((2, 2), jnp.int32), y)
    assert float(aux["acc"]) == 0.5 and float(loss) == pytest.approx(ref, rel=1e-6)


def test_adamw_one_step_matches_torch_formula():
    cfg = gt.GrokConfig(p=7, lr=1e-2, wd=1.0)
    th = {"w": jnp.asarray([[0.5, -1.0], [2.0, 0.1]])}
    g = {"w": jnp.asarray([[0.3, -0.2], [1e-3, -4.0]])}
    opt = gt.make_optimizer(cfg)
    u, _ = opt.update(g, opt.init(th), th)
    got = np.asarray(optax.apply_updates(th, u)["w"])
    t0, g0 = np.asarray(th["w"]), np.asarray(g["w"])
    # torch AdamW step 1: θ <- θ(1 - lr wd); m̂ = g, v̂ = g²; θ <- θ - lr m̂ / (sqrt(v̂) + eps)
    ref = t0 * (1 - 1e-2) - 1e-2 * g0 / (np.abs(g0) + 1e-8)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)


def test_density_one_ticket_run_equals_dense_bitwise(data, run4):
    P0 = gt.init_params(_k(0), CFG)
    pT, hist = run4(P0, mk.ones_mask(P0))
    assert hist["step"].tolist() == [2, 4] and hist["test_acc"].shape == (2,)
    tp, tm = gt.grokking_ticket(pT, P0, 1.0)
    pT2, hist2 = run4(tp, tm)
    for a, b in zip(jax.tree.leaves(pT), jax.tree.leaves(pT2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a real ticket: rewound to init on kept weights, pruned stay exactly zero after training
    tp, tm = gt.grokking_ticket(pT, P0, 0.4)
    assert float(mk.mask_density(tm)) == pytest.approx(0.4, abs=0.01)
    for a, b, m in zip(jax.tree.leaves(tp), jax.tree.leaves(P0), jax.tree.leaves(tm)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b) * np.asarray(m))
    pT3, _ = run4(tp, tm)
    for w, m in zip(jax.tree.leaves(pT3), jax.tree.leaves(tm)):
        assert np.all(np.asarray(w)[np.asarray(m) == 0] == 0)
    # vmap over seeds equals separate runs
    P1 = gt.init_params(_k(1), CFG)
    stack = jax.tree.map(lambda *a: jnp.stack(a), P0, P1)
    pv, hv = jax.vmap(lambda p: run4(p, mk.ones_mask(p)))(stack)
    pT1, h1 = run4(P1, mk.ones_mask(P1))
    np.testing.assert_allclose(np.asarray(hv["train_loss"][1]), np.asarray(h1["train_loss"]), rtol=1e-5)


def test_control_arms_and_steps_to():
    P0 = gt.init_params(_k(0), CFG)
    _, tm = gt.grokking_ticket(jax.tree.map(lambda w: w + 0.01, P0), P0, 0.4)
    arms = gt.control_arms(_k(5), P0, tm, norms=("l1", "l2"))
    rp, rm = arms["random"]
    assert float(mk.mask_density(rm)) == pytest.approx(float(mk.mask_density(tm)), abs=0.01)
    l2 = lambda t: sum(float(jnp.sqrt(jnp.sum(v**2))) for v in jax.tree.leaves(t))  # noqa: E731
    assert l2(arms["same_norm_l2"][0]) == pytest.approx(l2(mk.apply_mask(P0, tm)), rel=1e-5)
    assert all(float(jnp.min(v)) == 1.0 for v in jax.tree.leaves(arms["same_norm_l1"][1]))
    steps = np.array([10, 20, 30])
    vals = np.array([[0.1, 0.96, 0.5], [0.1, 0.2, 0.3]], np.float32)
    np.testing.assert_array_equal(np.asarray(gt.steps_to(steps, vals, 0.95)), [20, 31])
    assert int(gt.steps_to(steps, vals[1], 0.3)) == 30
