"""zoo.rl.train (SFT, group rollout, GRPO update, the reference GRPO run) and the reverse task."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo.rl import grpo_core as gc
from zoo.rl import tiny_lm as tl
from zoo.rl import train as rt
from zoo.rl.grpo_envs import reverse as rv
from zoo.train import population

TASK = rv.ReverseConfig()
LM = tl.TinyLMConfig(vocab=rv.vocab_size(TASK), d_model=8)
_reward = jax.jit(functools.partial(rv.reverse_reward, cfg=TASK))


# ----------------------------------------------------------------------------- the reverse task


def test_reverse_generator_and_reward():
    d = rv.generate(0, 200, TASK)
    assert d["prompt"].shape == d["target"].shape == (200, 5) and d["prompt"].dtype == np.int32
    assert np.all(d["prompt"][:, -1] == rv.SEP_ID) and np.all(d["target"][:, -1] == rv.EOS_ID)
    np.testing.assert_array_equal(d["target"][:, :4], d["prompt"][:, 3::-1])
    n_bad = (d["demo"] != d["target"]).any(1).mean()
    assert 0.3 < n_bad < 0.5  # noise 0.5, a replacement equals the original 1/5 of the time
    assert np.all((d["prompt"][:, :4] >= rv.FIRST_SYMBOL) & (d["prompt"][:, :4] < rv.vocab_size(TASK)))
    # reward: clean targets (+ trailing padding) score 1, demos score 1 exactly when clean
    comp = np.concatenate([d["demo"], np.zeros((200, 1), np.int32)], 1)
    mask = np.concatenate([d["demo_mask"], np.zeros((200, 1), bool)], 1)
    r = np.asarray(_reward(d["prompt"], comp, mask))
    np.testing.assert_array_equal(r, (d["demo"] == d["target"]).all(1))
    short = mask.copy()
    short[:, 4] = False  # EOS not in the mask -> not an exact match
    assert np.asarray(_reward(d["prompt"], comp, short)).sum() == 0
    j = jax.jit(rv.sample_batch, static_argnums=(1, 2))(jax.random.key(0), 300, TASK)
    np.testing.assert_array_equal(np.asarray(j["target"])[:, :4], np.asarray(j["prompt"])[:, 3::-1])
    assert np.all(np.asarray(j["prompt"])[:, :4] < rv.vocab_size(TASK))
    with pytest.raises(ValueError, match="completion"):
        rv.reverse_reward(d["prompt"], comp[:, :3], mask[:, :3], cfg=TASK)
    with pytest.raises(ValueError, match="noise"):
        rv.ReverseConfig(noise=1.5)


# ----------------------------------------------------------------------------- rollout + update


@functools.partial(jax.jit, static_argnames=("minibatches", "ppo_epochs", "loss_cfg"))
def _rollout_update(params, key, prompts, loss_cfg, minibatches=1, ppo_epochs=1):
    G = 4
    ro = rt.group_rollout(params, key, prompts, cfg=LM, G=G, max_new=6)
    rep = jnp.repeat(prompts, G, axis=0)
    r = rv.reverse_reward(rep, ro.tokens, ro.mask, cfg=TASK)
    # a dense synthetic reward so that every group has signal: number of correct leading tokens
    r = r + (ro.tokens[:, 0] == rep[:, 3]).astype(jnp.float32)
    adv = gc.group_advantages(r.reshape(-1, G))
    batch = {"prompt": rep, "completion": ro.tokens, "mask": ro.mask, "logp_old": ro.logp,
             "advantages": adv.reshape(-1, 1) * ro.mask}
    opt = optax.sgd(0.1)
    new, _, m = rt.grpo_update(params, opt.init(params), params, batch, lm_cfg=LM, loss_cfg=loss_cfg, optimizer=opt,
                               ppo_epochs=ppo_epochs, minibatches=minibatches)
    return ro, rep, batch, new, m


def test_group_rollout_layout_and_update_is_reinforce():
    params = tl.init_tiny_lm(jax.random.key(0), LM)
    prompts = rv.sample_batch(jax.random.key(1), 3, TASK)["prompt"]
    cfg = gc.LossConfig()
    ro, rep, batch, new, m = _rollout_update(params, jax.random.key(2), prompts, cfg)
    assert ro.tokens.shape == (12, 6)
    np.testing.assert_array_equal(rep[:4], np.repeat(np.asarray(prompts)[:1], 4, 0))  # members contiguous
    assert float(m["ratio_mean"]) == pytest.approx(1.0, abs=1e-5) and float(m["clip_frac"]) == 0.0
    # rho = 1: the update's log-probs are the sampler's, and the loss is the REINFORCE surrogate's value
    # -sum(A m)/sum(m) (its gradient identity is tested in test_grpo_core.py)
    mask = np.asarray(batch["mask"], np.float32)
    assert float(m["pg_loss"]) == pytest.approx(-(np.asarray(batch["advantages"]) * mask).sum() / mask.sum(),
                                                 abs=1e-5)
    assert abs(float(m["pg_loss"])) > 1e-3 or np.abs(np.asarray(batch["advantages"])).sum() == 0
    assert np.abs(np.asarray(batch["advantages"])).sum() > 0  # the groups carry signal
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(new),
                                                     jax.tree_util.tree_leaves(params)))
    # several epochs / minibatches and a KL + entropy term run and move the ratio away from 1
    cfg2 = gc.LossConfig(kl_coef=0.1, entropy_coef=0.01)
    _, _, _, _, m2 = _rollout_update(params, jax.random.key(2), prompts, cfg2, minibatches=3, ppo_epochs=2)
    assert float(m2["ratio_mean"]) != pytest.approx(1.0, abs=1e-6)
    assert float(m2["entropy"]) > 0 and float(m2["kl"]) >= 0


def test_update_bad_inputs():
    params = tl.init_tiny_lm(jax.random.key(0), LM)
    opt = optax.sgd(0.1)
    z = np.zeros((4, 3), np.float32)
    batch = {"prompt": np.full((4, 5), 3, np.int32), "completion": np.full((4, 3), 3, np.int32),
             "mask": np.ones((4, 3), bool), "logp_old": z, "advantages": z}
    kw = dict(lm_cfg=LM, loss_cfg=gc.LossConfig(), optimizer=opt)
    with pytest.raises(ValueError, match="batch: missing"):
        rt.grpo_update(params, opt.init(params), None, {k: batch[k] for k in ("prompt", "mask")}, **kw)
    with pytest.raises(ValueError, match=r"batch\['advantages'\]"):
        rt.grpo_update(params, opt.init(params), None, dict(batch, advantages=z[:, :2]), **kw)
    with pytest.raises(ValueError, match="minibatches"):
        rt.grpo_update(params, opt.init(params), None, batch, minibatches=3, **kw)
    with pytest.raises(ValueError, match="ref_params"):
        rt.grpo_update(params, opt.init(params), None, batch, **dict(kw, loss_cfg=gc.LossConfig(kl_coef=0.1)))
    with pytest.raises(ValueError, match="G"):
        rt.group_rollout(params, jax.random.key(0), batch["prompt"], cfg=LM, G=1, max_new=3)
    with pytest.raises(ValueError, match="temperature"):
        rt.group_rollout(params, jax.random.key(0), batch["prompt"], cfg=LM, G=2, max_new=3, temperature=0.0)
    with pytest.raises(ValueError, match="steps"):
        rt.sft_fit(jax.random.key(0), params, batch["prompt"], batch["completion"], batch["mask"], cfg=LM,
                   steps=0, lr=0.1, batch_size=2)
    with pytest.raises(ValueError, match="hparams"):
        rt.run_grpo_reverse(jax.random.key(0), {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="adv_norm"):
        rt.GRPOReverseConfig(adv_norm="zscore")


# ----------------------------------------------------------------------------- the reference run


CFG = rt.GRPOReverseConfig()
_RUN = functools.partial(rt.run_grpo_reverse, cfg=CFG)
KEYS = jax.random.split(jax.random.key(0), 2)


def _steps(sft, rl, n=2):
    return {"sft_steps": jnp.full((n,), sft), "rl_steps": jnp.full((n,), rl)}


def test_grpo_raises_exact_match_above_sft_base():
    m = population(_RUN, KEYS, _steps(CFG.sft_steps, CFG.rl_steps))[1]
    base, final = np.asarray(m["base_exact"]), np.asarray(m["final_exact"])
    assert np.all(base > 0.1) and np.all(base < 0.9)  # SFT gives a non-zero but imperfect pass rate
    assert np.all(final > base), (base, final)
    assert np.all(np.asarray(m["base_greedy"]) < np.asarray(m["final_greedy"]))
    r = np.asarray(m["reward"])
    assert r.shape == (2, CFG.rl_steps) and np.all(r[:, -20:].mean(1) > r[:, :20].mean(1))


def test_population_equals_separate_runs():
    # short runs through the same compiled population (step counts are traced hparams): over hundreds
    # of steps, float differences between batched and unbatched matmuls flip near-tied sampled tokens
    params, m = population(_RUN, KEYS, _steps(30, 3))
    single = jax.jit(_RUN)
    for i in range(2):
        params_i, mi = single(KEYS[i], {"sft_steps": 30, "rl_steps": 3})
        for k in ("base_exact", "final_exact", "reward", "loss"):
            np.testing.assert_allclose(np.asarray(m[k])[i], np.asarray(mi[k]), atol=1e-5, err_msg=k)
        for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(params_i)):
            np.testing.assert_allclose(np.asarray(a)[i], b, rtol=1e-3, atol=1e-4)
    assert np.all(np.asarray(mi["reward"])[3:] == 0)  # history past rl_steps stays 0
    head = np.asarray(params["head"])
    assert not np.allclose(head[0], head[1])  # the seeds differ
