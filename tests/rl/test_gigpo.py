"""GiGPO advantages (spec papers/gigpo.md §6): numpy loop references, reductions, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.rl import gigpo

# ----------------------------------------------------------------------------- numpy references


def ref_returns(r, m, gamma):
    out = np.zeros_like(r, dtype=np.float64)
    for b in range(r.shape[0]):
        for i in range(r.shape[1]):
            acc = 0.0
            for t in reversed(range(r.shape[2])):
                if m[b, i, t]:
                    acc = r[b, i, t] + gamma * acc
                    out[b, i, t] = acc
                else:
                    acc = 0.0
    return out


def ref_norm(values, norm, eps):
    """Group normalisation of a list (unbiased std)."""
    v = np.asarray(values, np.float64)
    mu = v.mean()
    if norm == "none":
        return v - mu
    return (v - mu) / (v.std(ddof=1) + eps)


def ref_step_adv(ret, anchor, m, norm, eps):
    out = np.zeros_like(ret, dtype=np.float64)
    size = np.zeros(ret.shape, np.int64)
    for b in range(ret.shape[0]):
        groups: dict[tuple, list] = {}
        for i in range(ret.shape[1]):
            for t in range(ret.shape[2]):
                if m[b, i, t]:
                    groups.setdefault(tuple(anchor[b, i, t]), []).append((i, t))
        for members in groups.values():
            vals = [ret[b, i, t] for i, t in members]
            adv = ref_norm(vals, norm, eps) if len(members) > 1 else np.zeros(1)
            for (i, t), a in zip(members, adv):
                out[b, i, t] = a
                size[b, i, t] = len(members)
    return out, size


def ref_episode_adv(r, m, norm, eps, stats, invalid, pen):
    out = np.zeros_like(r, dtype=np.float64)
    inv = np.zeros_like(r) if invalid is None else invalid.astype(np.float64)
    for b in range(r.shape[0]):
        if stats == "trajectory":
            rets = [sum(r[b, i, t] - pen * inv[b, i, t] for t in range(r.shape[2]) if m[b, i, t])
                    for i in range(r.shape[1])]  # fmt: skip
            adv = ref_norm(rets, norm, eps)
            for i in range(r.shape[1]):
                out[b, i] = np.where(m[b, i], adv[i], 0.0)
        else:
            rows, idx = [], []
            for i in range(r.shape[1]):
                total = sum(r[b, i, t] for t in range(r.shape[2]) if m[b, i, t])
                for t in range(r.shape[2]):
                    if m[b, i, t]:
                        rows.append(total - pen * inv[b, i, t])
                        idx.append((i, t))
            for (i, t), a in zip(idx, ref_norm(rows, norm, eps)):
                out[b, i, t] = a
    return out


def random_batch(seed, b=3, n=4, t=6, f=2, vals=2):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, t + 1, size=(b, n))
    m = np.arange(t)[None, None] < lengths[..., None]
    r = np.where(m, rng.normal(size=(b, n, t)), 0.0).astype(np.float32)
    anchor = rng.integers(0, vals, size=(b, n, t, f)).astype(np.int32)  # many collisions
    invalid = m & (rng.random((b, n, t)) < 0.3)
    return r, anchor, m, invalid


adv_jit = jax.jit(gigpo.gigpo_advantages, static_argnames=("norm", "eps", "episode_stats"))

# ----------------------------------------------------------------------------- against references


def test_discounted_returns_matches_loop():
    r, _, m, _ = random_batch(0)
    got = jax.jit(gigpo.discounted_returns)(r, m, 0.9)
    np.testing.assert_allclose(got, ref_returns(r, m, 0.9), atol=1e-6)


def test_terminal_reward_gamma_one_returns_episode_return():
    r, _, m, _ = random_batch(1)
    r = np.zeros_like(r)
    last = m.sum(-1) - 1
    for b, i in np.ndindex(last.shape):
        r[b, i, last[b, i]] = 1.0
    got = np.asarray(gigpo.discounted_returns(r, m, 1.0))
    np.testing.assert_allclose(got, np.where(m, 1.0, 0.0))


@pytest.mark.parametrize("norm", ["none", "std"])
def test_step_advantages_match_dict_grouping(norm):
    r, anchor, m, _ = random_batch(2)
    ret = ref_returns(r, m, 0.95).astype(np.float32)
    a_s, size = gigpo.step_advantages(ret, anchor, m, norm=norm, eps=1e-6)
    ref, ref_size = ref_step_adv(ret, anchor, m, norm, 1e-6)
    np.testing.assert_allclose(a_s, ref, atol=1e-5)
    np.testing.assert_array_equal(size, ref_size)
    assert (np.asarray(size)[m] >= 2).mean() > 0.5  # the test data really has repeated states


@pytest.mark.parametrize("stats", ["trajectory", "step_rows"])
@pytest.mark.parametrize("norm", ["none", "std"])
def test_episode_advantages_match_reference(norm, stats):
    r, _, m, invalid = random_batch(3)
    got = gigpo.episode_advantages(r, m, norm=norm, episode_stats=stats, invalid=invalid, invalid_penalty=0.1)
    np.testing.assert_allclose(got, ref_episode_adv(r, m, norm, 1e-6, stats, invalid, 0.1), atol=1e-5)


@pytest.mark.parametrize("norm", ["none", "std"])
def test_gigpo_advantages_whole(norm):
    r, anchor, m, invalid = random_batch(4)
    got = adv_jit(r, anchor, m, gamma=0.9, omega=0.7, norm=norm, invalid=invalid)
    pen = np.where(invalid, 0.1, 0.0)
    ret = ref_returns(r - pen, m, 0.9)
    a_s, _ = ref_step_adv(ret, anchor, m, norm, 1e-6)
    want = ref_episode_adv(r, m, norm, 1e-6, "trajectory", invalid, 0.1) + 0.7 * a_s
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_worked_example():
    # one task, N = 2; traj 0: s0 -> s1 -> goal (2 steps, success); traj 1: s0 -> s2 -> s1 -> fail (3 steps)
    r = np.array([[[0, 1, 0], [0, 0, 0]]], np.float32)
    m = np.array([[[1, 1, 0], [1, 1, 1]]], bool)
    anchor = np.array([[[[0], [1], [9]], [[0], [2], [1]]]], np.int32)
    a = np.asarray(gigpo.gigpo_advantages(r, anchor, m, gamma=0.5, omega=1.0, norm="none"))
    # A^E = ±0.5; returns: traj0 (0.5, 1), traj1 (0, 0, 0); s0 group {0.5, 0} -> ±0.25; s1 group {1, 0} -> ±0.5
    want = np.array([[[0.5 + 0.25, 0.5 + 0.5, 0], [-0.5 - 0.25, -0.5, -0.5 - 0.5]]])
    np.testing.assert_allclose(a, want, atol=1e-6)


# ----------------------------------------------------------------------------- reductions / invariants


@pytest.mark.parametrize("norm", ["none", "std"])
def test_omega_zero_is_grpo_exactly(norm):
    from zoo.rl import grpo_core

    r, anchor, m, _ = random_batch(5)
    got = np.asarray(gigpo.gigpo_advantages(r, anchor, m, omega=0.0, norm=norm))
    grpo = grpo_core.group_advantages(jnp.asarray(r).sum(-1), norm=norm, eps=1e-6)
    grpo = np.where(m, np.asarray(grpo)[..., None], 0.0)
    np.testing.assert_array_equal(got, np.asarray(gigpo.episode_advantages(r, m, norm=norm)))  # bitwise
    np.testing.assert_allclose(got, grpo, rtol=1e-6, atol=1e-7)  # = the core's GRPO advantage
    assert np.abs(np.asarray(gigpo.gigpo_advantages(r, anchor, m, omega=1.0, norm=norm)) - got).max() > 1e-2


def test_distinct_anchors_is_grpo():
    r, _, m, _ = random_batch(6)
    b, n, t = r.shape
    unique = np.stack(np.meshgrid(np.arange(n), np.arange(t), indexing="ij"), -1)  # key includes (i, t)
    anchor = np.broadcast_to(unique, (b, n, t, 2)).astype(np.int32)
    got = adv_jit(r, anchor, m, omega=1.0, norm="std")
    want = adv_jit(r, anchor, m, omega=0.0, norm="std")
    np.testing.assert_array_equal(got, want)
    a_s, size = gigpo.step_advantages(r, anchor, m)
    assert np.all(np.asarray(a_s) == 0) and np.all(np.asarray(size)[m] == 1)


def test_identical_trajectories_give_zero():
    # (no state repeats inside one trajectory; otherwise same-state steps at different t differ in return)
    r, _, m, _ = random_batch(7, n=1)
    anchor = np.broadcast_to(np.arange(r.shape[2])[None, None, :, None], r.shape + (1,)).astype(np.int32)
    rep = lambda x: np.repeat(x, 4, axis=1)  # noqa: E731
    got = adv_jit(rep(r), rep(anchor), rep(m), norm="std")
    np.testing.assert_array_equal(got, 0.0)


def test_permuting_trajectories_permutes_advantages():
    r, anchor, m, invalid = random_batch(8)
    perm = np.array([2, 0, 3, 1])
    a = np.asarray(adv_jit(r, anchor, m, norm="std", invalid=invalid))
    ap = np.asarray(adv_jit(r[:, perm], anchor[:, perm], m[:, perm], norm="std", invalid=invalid[:, perm]))
    np.testing.assert_allclose(ap, a[:, perm], atol=1e-6)


def test_step_advantages_sum_to_zero_per_group_and_padding_is_zero():
    r, anchor, m, _ = random_batch(9)
    a_s, _ = gigpo.step_advantages(r, anchor, m, norm="none")
    a_s = np.asarray(a_s)
    assert np.all(a_s[~m] == 0)
    for b in range(r.shape[0]):
        keys = {tuple(anchor[b, i, t]) for i, t in zip(*np.nonzero(m[b]))}
        for k in keys:
            sel = m[b] & np.all(anchor[b] == np.array(k), -1)
            assert abs(a_s[b][sel].sum()) < 1e-5


def test_step_rows_equals_trajectory_for_equal_lengths_without_invalid():
    r, _, _, _ = random_batch(10)
    m = np.ones(r.shape, bool)
    n, t = r.shape[1:]
    a = gigpo.episode_advantages(r, m, episode_stats="trajectory", norm="none")
    b = gigpo.episode_advantages(r, m, episode_stats="step_rows", norm="none")
    np.testing.assert_allclose(a, b, atol=1e-5)
    # with std the unbiased std over N·T repeated rows is sqrt(T (N-1) / (N T - 1)) times the trajectory std
    a = gigpo.episode_advantages(r, m, episode_stats="trajectory", norm="std")
    b = gigpo.episode_advantages(r, m, episode_stats="step_rows", norm="std")
    np.testing.assert_allclose(np.asarray(b) * np.sqrt(t * (n - 1) / (n * t - 1)), a, rtol=1e-4, atol=1e-5)
    r2, _, m2, _ = random_batch(10)  # unequal lengths -> they differ
    a2 = gigpo.episode_advantages(r2, m2, episode_stats="trajectory", norm="none")
    b2 = gigpo.episode_advantages(r2, m2, episode_stats="step_rows", norm="none")
    assert np.abs(np.asarray(a2) - np.asarray(b2)).max() > 1e-3


def test_vmap_over_omega():
    r, anchor, m, _ = random_batch(11)
    f = jax.vmap(lambda w: gigpo.gigpo_advantages(r, anchor, m, omega=w))
    out = f(jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(out[1], gigpo.gigpo_advantages(r, anchor, m, omega=1.0), atol=1e-6)
    np.testing.assert_allclose(out[0], gigpo.gigpo_advantages(r, anchor, m, omega=0.0), atol=1e-6)


def test_to_token_advantages():
    adv = np.arange(8, dtype=np.float32).reshape(1, 2, 4)
    mask = np.zeros((1, 2, 4, 3), bool)
    mask[..., :2] = True
    tok = np.asarray(gigpo.to_token_advantages(adv, mask))
    assert tok.shape == (8, 3)
    np.testing.assert_array_equal(tok[:, 0], adv.ravel())
    np.testing.assert_array_equal(tok[:, 2], 0)


def test_anchor_stats_and_host_helpers():
    keys = gigpo.text_anchor_keys([["a", "b", "a"], ["b", "c"]])
    assert keys.shape == (2, 3, 1) and keys[0, 0, 0] == keys[0, 2, 0] == 0 and keys[1, 0, 0] == 1
    assert keys[1, 2, 0] == -1
    m = keys[..., 0] >= 0
    st = gigpo.anchor_stats(keys[None], m[None])
    assert float(st["singleton_fraction"]) == pytest.approx(1 / 5)  # only "c" is alone
    assert float(st["mean_group_size"]) == pytest.approx((2 + 2 + 2 + 2 + 1) / 5)
    ids = gigpo.similarity_clusters(["go to the kitchen", "go to the kitchen!", "open the door"], 0.9)
    np.testing.assert_array_equal(ids, [0, 0, 1])


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs():
    r, anchor, m, invalid = random_batch(12)
    with pytest.raises(ValueError, match="N >= 2"):
        gigpo.gigpo_advantages(r[:, :1], anchor[:, :1], m[:, :1])
    with pytest.raises(ValueError, match="gamma"):
        gigpo.gigpo_advantages(r, anchor, m, gamma=0.0)
    with pytest.raises(ValueError, match="omega"):
        gigpo.gigpo_advantages(r, anchor, m, omega=-1.0)
    with pytest.raises(ValueError, match="anchor"):
        gigpo.gigpo_advantages(r, anchor[..., 0], m)
    with pytest.raises(ValueError, match="anchor"):
        gigpo.gigpo_advantages(r, anchor[:, :, :-1], m)
    holes = m.copy()
    holes[0, 0, :] = [True, False, True, False, False, False]
    with pytest.raises(ValueError, match="step_mask: must be a prefix"):
        gigpo.gigpo_advantages(r, anchor, holes)
    bad = r.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="rewards: contains"):
        gigpo.gigpo_advantages(bad, anchor, m)
    with pytest.raises(ValueError, match="norm"):
        gigpo.gigpo_advantages(r, anchor, m, norm="batch")
    with pytest.raises(ValueError, match="episode_stats"):
        gigpo.gigpo_advantages(r, anchor, m, episode_stats="rows")
    with pytest.raises(ValueError, match="invalid_penalty"):
        gigpo.gigpo_advantages(r, anchor, m, invalid=invalid, invalid_penalty=-0.1)
    with pytest.raises(ValueError, match="step_mask"):
        gigpo.gigpo_advantages(r, anchor, m[:, :, :-1])


# ----------------------------------------------------------------------------- rollout and loss on the tiny LM


@pytest.fixture(scope="module")
def tiny_rollout():
    from zoo.rl import tiny_lm
    from zoo.rl.grpo_envs import gridworld as gw

    env = gw.GridConfig(size=3, horizon=5)
    lm = tiny_lm.TinyLMConfig(vocab=gw.vocab_size(env), d_model=8,
                              allowed_tokens=tuple(int(t) for t in gw.action_tokens(env)))  # fmt: skip
    params = tiny_lm.init_tiny_lm(jax.random.key(0), lm)
    tasks = gw.reset(jax.random.key(1), env, 2)
    tr = jax.jit(lambda p, k: gigpo.rollout(p, k, tasks, env_cfg=env, lm_cfg=lm, group_size=3))(
        params, jax.random.key(2))  # fmt: skip
    return env, lm, params, tr


def test_rollout_records_consistent_steps(tiny_rollout):
    from zoo.rl import tiny_lm
    from zoo.rl.grpo_envs import gridworld as gw

    env, lm, params, tr = tiny_rollout
    assert tr.prompt.shape == (2, 3, 5, 5) and tr.anchor.shape == (2, 3, 5, 4)
    m = np.asarray(tr.mask)
    assert np.all(m[..., 0]) and not np.any(m[..., 1:] & ~m[..., :-1])  # prefix mask
    np.testing.assert_array_equal(np.asarray(tr.prompt)[..., :4] - np.asarray(tr.anchor),
                                  np.broadcast_to(env.feature_base + 3 * np.arange(4), tr.anchor.shape))
    np.testing.assert_array_equal(np.asarray(tr.anchor)[:, 0, 0], np.asarray(tr.anchor)[:, 1, 0])  # same task
    assert np.all(np.isin(np.asarray(tr.action), gw.action_tokens(env)))
    flat = lambda x: x.reshape((-1,) + x.shape[3:])  # noqa: E731
    lp = tiny_lm.completion_logprobs(params, flat(tr.prompt), flat(tr.action)[:, None], cfg=lm)[:, 0]
    np.testing.assert_allclose(np.asarray(lp)[m.ravel()], np.asarray(tr.logp).ravel()[m.ravel()], atol=1e-5)
    assert np.all(np.asarray(tr.reward)[~m] == 0)


def test_gigpo_loss_gradient_is_reinforce(tiny_rollout):
    from zoo.rl import grpo_core, tiny_lm

    env, lm, params, tr = tiny_rollout
    adv = gigpo.gigpo_advantages(tr.reward + 0.5 * tr.mask, tr.anchor, tr.mask, invalid=tr.invalid)
    flat = lambda x: x.reshape((-1,) + x.shape[3:])  # noqa: E731
    batch = {"prompt": flat(tr.prompt), "action": flat(tr.action)[:, None], "mask": flat(tr.mask)[:, None],
             "logp_old": flat(tr.logp)[:, None], "adv": flat(adv)[:, None]}  # fmt: skip
    cfg = grpo_core.LossConfig(dual_clip=3.0)
    g = jax.jit(jax.grad(lambda p: gigpo.gigpo_loss(p, batch, lm_cfg=lm, loss_cfg=cfg)[0]))(params)

    def explicit(p):  # ρ ≡ 1: ∇loss = −Σ A ∇ℓ m / Σ m
        lp = tiny_lm.completion_logprobs(p, batch["prompt"], batch["action"], cfg=lm)
        mm = batch["mask"].astype(jnp.float32)
        return -jnp.sum(batch["adv"] * lp * mm) / jnp.sum(mm)

    want = jax.jit(jax.grad(explicit))(params)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, atol=1e-6)
