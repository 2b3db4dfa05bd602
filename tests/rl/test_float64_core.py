"""float64 end to end for the GRPO-family core (DESIGN.md dtype policy).

Under ``jax.enable_x64`` every main numeric function returns float64 for float64 inputs and agrees
with a float64 numpy reference to ~1e-12 — far below float32's ~1e-7, so nothing inside is cast
down to float32. Default (x64 off) behaviour stays float32: checked once at the end.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.rl import _grpo_reference as ref
from zoo.rl import gigpo as gg
from zoo.rl import grpo_core as gc
from zoo.rl import tiny_lm as tl
from zoo.rl import tw_grpo as tw
from zoo.rl.grpo_envs import gridworld as gw

TOL = dict(rtol=1e-12, atol=1e-12)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _batch(seed, n=4, t=5):
    rng = np.random.default_rng(seed)
    logp = -rng.random((n, t)) * 2
    logp_old = logp + 0.3 * rng.normal(size=(n, t))
    logp_ref = logp + 0.2 * rng.normal(size=(n, t))
    adv = rng.normal(size=(n, t))
    mask = np.arange(t)[None] < rng.integers(1, t + 1, size=(n, 1))
    return logp, logp_old, logp_ref, adv, mask


def _is64(x):
    assert jnp.asarray(x).dtype == jnp.float64, jnp.asarray(x).dtype


# ----------------------------------------------------------------------------- grpo_core


def test_advantages_float64():
    r = np.random.default_rng(0).normal(size=(3, 4)) * 1e-3 + 1.0  # small spread: needs float64 precision
    for norm in gc.NORMS:
        a = gc.group_advantages(r, norm=norm)
        _is64(a)
        np.testing.assert_allclose(a, ref.group_advantages_ref(r, norm=norm), rtol=1e-9, atol=1e-9)
    _is64(gc.group_advantages(np.array([[0, 1], [1, 1]])))  # integer rewards: the default float (float64 here)
    _is64(gc.broadcast_advantages(r, np.ones((3, 4, 2), bool)))


def test_objectives_float64():
    logp, logp_old, logp_ref, adv, mask = _batch(1)
    rho = gc.ratio(logp, logp_old, mask)
    _is64(rho)
    np.testing.assert_allclose(rho, ref.ratio_ref(logp, logp_old, mask), **TOL)
    pg = gc.clipped_pg_loss(logp, logp_old, adv, mask, dual_clip=3.0)
    _is64(pg)
    np.testing.assert_allclose(pg, ref.clipped_pg_loss_ref(logp, logp_old, adv, mask, dual_clip=3.0), **TOL)
    k = gc.kl_penalty(logp, logp_ref)
    _is64(k)
    np.testing.assert_allclose(k, ref.kl_penalty_ref(logp, logp_ref), **TOL)
    for agg in gc.AGGS:
        a = gc.aggregate(pg, mask, agg=agg, weights=np.abs(adv))
        _is64(a)
        np.testing.assert_allclose(a, ref.aggregate_ref(pg, mask, agg=agg, weights=np.abs(adv)), **TOL)
    cfg = gc.LossConfig(kl_coef=0.05, agg="seq_mean_token_mean")
    loss, metrics = jax.jit(gc.grpo_objective, static_argnames="cfg")(logp, logp_old, logp_ref, adv, mask, cfg=cfg)
    _is64(loss)
    assert all(v.dtype == jnp.float64 for v in metrics.values()), {k: v.dtype for k, v in metrics.items()}
    want = ref.grpo_objective_ref(logp, logp_old, logp_ref, adv, mask, kl_coef=0.05, agg="seq_mean_token_mean")
    np.testing.assert_allclose(loss, want, **TOL)
    g = jax.grad(lambda lp: gc.grpo_objective(lp, logp_old, logp_ref, adv, mask, cfg=cfg)[0])(jnp.asarray(logp))
    _is64(g)
    loss_tw, _ = tw.tw_grpo_loss(logp, logp_old, adv[:, 0], mask, np.abs(adv) + 1.0)
    _is64(loss_tw)


# ----------------------------------------------------------------------------- tw_grpo


def _tw_weights_ref(lp, m, alpha, clamp=11.0, eps=1e-8):
    b, g, t, v = lp.shape
    rows = np.where(m[..., None], lp, -np.log(v))
    d = np.clip(rows.mean(1, keepdims=True) - rows, -clamp, clamp)
    dbar = (np.exp(d) - d - 1).sum(-1).mean(1)  # [B, T]
    lo, hi = dbar.min(-1, keepdims=True), dbar.max(-1, keepdims=True)
    return (1 + (alpha - 1) * (dbar - lo) / (hi - lo + eps))[:, None] * m


def test_token_weights_float64():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 3, 4, 5))
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    m = np.arange(4)[None, None] < rng.integers(1, 5, size=(2, 3, 1))
    w = tw.tw_token_weights(lp, m, 1.7)
    _is64(w)
    np.testing.assert_allclose(w, _tw_weights_ref(lp, m, 1.7), rtol=1e-10, atol=1e-10)
    _is64(tw.tw_token_weights(lp, m, 1.7, divergence="kl_to_mixture"))


# ----------------------------------------------------------------------------- gigpo


def _returns_ref(r, m, gamma):
    out = np.zeros_like(r)
    for idx in np.ndindex(r.shape[:2]):
        acc = 0.0
        for t in reversed(range(r.shape[2])):
            acc = m[idx + (t,)] * (r[idx + (t,)] + gamma * acc)
            out[idx + (t,)] = acc
    return out


def _step_adv_ref(ret, anchor, m, eps):
    b, n, t = ret.shape
    out = np.zeros_like(ret)
    for bb in range(b):
        keys = [tuple(anchor[bb, i, s]) for i in range(n) for s in range(t)]
        vals = ret[bb].reshape(-1)
        valid = m[bb].reshape(-1)
        for k in range(n * t):
            grp = [vals[l] for l in range(n * t) if valid[l] and keys[l] == keys[k]]
            if valid[k] and len(grp) >= 2:
                mu, sd = np.mean(grp), np.std(grp, ddof=1)
                out[bb].reshape(-1)[k] = (vals[k] - mu) / (sd + eps)
    return out


def test_step_advantages_float64():
    rng = np.random.default_rng(3)
    r = rng.random((1, 3, 4))
    m = np.arange(4)[None, None] < np.array([4, 3, 2])[None, :, None]
    anchor = rng.integers(0, 2, size=(1, 3, 4, 1)).astype(np.int32)
    ret = gg.discounted_returns(r, m, 0.9)
    _is64(ret)
    np.testing.assert_allclose(ret, _returns_ref(r, m, 0.9), **TOL)
    a_s, _ = gg.step_advantages(ret, anchor, m, norm="std")
    _is64(a_s)
    np.testing.assert_allclose(a_s, _step_adv_ref(np.asarray(ret), anchor, m, 1e-6), rtol=1e-10, atol=1e-10)
    _is64(gg.episode_returns(r, m, invalid=~m, invalid_penalty=0.1))
    _is64(gg.episode_advantages(r, m, norm="std"))
    adv = gg.gigpo_advantages(r, anchor, m, gamma=0.9, omega=0.5)
    _is64(adv)
    _is64(gg.to_token_advantages(adv, np.ones((1, 3, 4, 2), bool)))


# ----------------------------------------------------------------------------- tiny LM log-probs


def _gru_logprobs_ref(p, prompt, comp):
    """numpy float64 GRU forward: log softmax of the head at the positions predicting ``comp``."""
    p = jax.tree.map(np.asarray, p)
    toks = np.concatenate([prompt, comp[:, :-1]], 1)
    d = p["embed"].shape[1]
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    h = np.zeros((toks.shape[0], d))
    tops = []
    for t in range(toks.shape[1]):
        x = p["embed"][toks[:, t]]
        lay = p["layers"][0]
        gx, gh = x @ lay["wx"] + lay["b"], h @ lay["wh"]
        z, r = sig(gx[:, :d] + gh[:, :d]), sig(gx[:, d:2 * d] + gh[:, d:2 * d])
        n = np.tanh(gx[:, 2 * d:] + r * gh[:, 2 * d:])
        h = (1 - z) * n + z * h
        tops.append(h)
    logits = np.stack(tops, 1)[:, prompt.shape[1] - 1:] @ p["head"]
    full = logits - logits.max(-1, keepdims=True)
    full = full - np.log(np.exp(full).sum(-1, keepdims=True))
    return np.take_along_axis(full, comp[..., None], -1)[..., 0]


def test_logprobs_float64():
    cfg = tl.TinyLMConfig(vocab=7, d_model=6)
    params = tl.init_tiny_lm(jax.random.PRNGKey(0), cfg)
    assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(params))  # the default float under x64
    prompt = np.array([[2, 3], [4, 5]], np.int32)
    comp = np.array([[1, 6, 0], [3, 3, 1]], np.int32)
    logp, ent = tl.completion_logprobs_and_entropy(params, prompt, comp, cfg=cfg)
    _is64(logp), _is64(ent)
    np.testing.assert_allclose(logp, _gru_logprobs_ref(params, prompt, comp), **TOL)
    ro = tl.sample(params, jax.random.PRNGKey(1), prompt, cfg=cfg, max_new=3)
    _is64(ro.logp)
    np.testing.assert_allclose(np.where(ro.mask, ro.logp, 0.0),
                               np.where(ro.mask, tl.completion_logprobs(params, prompt, ro.tokens, cfg=cfg), 0.0),
                               **TOL)
    grid = gw.GridConfig(size=3)
    _is64(gw.step(gw.from_cells(grid, [[0, 0]], [[0, 1]]), np.array([3]), cfg=grid)[1])  # env rewards: default float


def test_default_stays_float32():
    with jax.enable_x64(False):
        logp, logp_old, logp_ref, adv, mask = (np.asarray(x, np.float32) if x.dtype == np.float64 else x
                                               for x in _batch(4))
        assert gc.group_advantages(adv).dtype == jnp.float32
        assert gc.grpo_objective(logp, logp_old, None, adv, mask)[0].dtype == jnp.float32
        grid = gw.GridConfig()
        assert gw.step(gw.from_cells(grid, [[0, 0]], [[0, 1]]), np.array([3]), cfg=grid)[1].dtype == jnp.float32
