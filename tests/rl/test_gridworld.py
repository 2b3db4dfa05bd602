"""Gridworld environments of GiGPO (spec papers/gigpo.md §3, §6 'Environment')."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.rl.grpo_envs import gridworld as gw

CFG = gw.GridConfig()
KD = gw.GridConfig(size=4, horizon=20, key_door=True)
step = jax.jit(gw.step, static_argnames="cfg")


def test_moves_walls_and_junk():
    s = gw.from_cells(CFG, [[0, 0], [2, 2], [2, 2]], [[4, 4], [4, 4], [4, 4]])
    s, r, done, inv = step(s, jnp.array([0, 3, 4]), cfg=CFG)  # up off-grid, right, junk
    np.testing.assert_array_equal(s.pos, [[0, 0], [2, 3], [2, 2]])
    np.testing.assert_array_equal(inv, [False, False, True])
    np.testing.assert_array_equal(r, 0.0)
    s, *_ = step(s, jnp.array([2, 1, 1]), cfg=CFG)
    np.testing.assert_array_equal(s.pos, [[0, 0], [3, 3], [3, 2]])


def test_goal_reward_and_latch():
    s = gw.from_cells(CFG, [[3, 4]], [[4, 4]])
    s, r, done, inv = step(s, jnp.array([1]), cfg=CFG)
    assert float(r[0]) == 1.0 and bool(done[0])
    for a in (0, 4, 1):  # after done: no move, no reward, no invalid flag
        s2, r, done, inv = step(s, jnp.array([a]), cfg=CFG)
        assert float(r[0]) == 0.0 and bool(done[0]) and not bool(inv[0])
        np.testing.assert_array_equal(s2.pos, s.pos)


def test_keydoor_needs_the_key():
    s = gw.from_cells(KD, [[0, 0]], [[0, 1]], key=[[1, 0]])  # door right of start, key below
    s1, r, done, _ = step(s, jnp.array([3]), cfg=KD)  # enter the door without the key
    assert float(r[0]) == 0.0 and not bool(done[0])
    s, *_ = step(s, jnp.array([1]), cfg=KD)  # pick up the key
    assert bool(s.has_key[0])
    s, *_ = step(s, jnp.array([0]), cfg=KD)
    s, r, done, _ = step(s, jnp.array([3]), cfg=KD)
    assert float(r[0]) == 1.0 and bool(done[0])


def test_observe_anchor_reset_and_expert():
    s = gw.reset(jax.random.key(0), CFG, 64)
    a = gw.anchor(s, cfg=CFG)
    o = gw.observe(s, cfg=CFG)
    assert a.shape == (64, 4) and o.shape == (64, 4)
    np.testing.assert_array_equal(o - a, np.broadcast_to(CFG.feature_base + 5 * np.arange(4), (64, 4)))  # same content
    assert np.all(np.any(np.asarray(s.pos) != np.asarray(s.goal), -1))
    assert int(o.max()) < gw.vocab_size(CFG) and int(o.min()) >= CFG.feature_base
    np.testing.assert_array_equal(gw.action_tokens(CFG), [2, 3, 4, 5, 6, 7])
    # the expert reaches every goal within the Manhattan distance
    kd = gw.reset(jax.random.key(1), KD, 32)
    assert gw.anchor(kd, cfg=KD).shape == (32, 7)
    for cfg, st in ((CFG, s), (KD, kd)):
        for _ in range(cfg.horizon):
            st, *_ = step(st, gw.expert_action(st, cfg=cfg), cfg=cfg)
        assert bool(np.all(st.done))


def test_replicate_and_vmap():
    s = gw.reset(jax.random.key(2), CFG, 3)
    g = gw.replicate(s, 4)
    assert g.pos.shape == (3, 4, 2)
    np.testing.assert_array_equal(g.goal[:, 0], g.goal[:, 3])
    out = jax.vmap(lambda st, a: gw.step(st, a, cfg=CFG))(g, jnp.zeros((3, 4), jnp.int32))
    assert out[1].shape == (3, 4)


def test_random_policy_calibration():
    # spec: a uniform policy over the 6 action tokens succeeds in ≈ 17 % of GridGoal episodes (24.5 % moves only)
    assert gw.random_policy_success(CFG, n=4000) == pytest.approx(0.17, abs=0.025)


def test_bad_config():
    with pytest.raises(ValueError, match="size"):
        gw.GridConfig(size=1)
    with pytest.raises(ValueError, match="horizon"):
        gw.GridConfig(horizon=0)
    with pytest.raises(ValueError, match="n"):
        gw.reset(jax.random.key(0), CFG, 0)
    with pytest.raises(ValueError, match="key"):
        gw.from_cells(KD, [[0, 0]], [[1, 1]])
