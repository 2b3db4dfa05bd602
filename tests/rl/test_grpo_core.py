"""zoo.rl.grpo_core against the loop references and the properties of papers/_grpo_family.md §10."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.rl import _grpo_reference as ref
from zoo.rl import grpo_core as gc

RNG = np.random.default_rng(0)


def _rand_batch(n=6, t=5, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    logp = rng.normal(-1.0, 1.0, (n, t)).astype(np.float32)
    logp_old = (logp + rng.normal(0, scale, (n, t))).astype(np.float32)
    logp_ref = (logp + rng.normal(0, scale, (n, t))).astype(np.float32)
    adv = rng.normal(0, 1, (n, t)).astype(np.float32)
    lengths = rng.integers(0, t + 1, n)
    lengths[0] = t
    mask = np.arange(t)[None, :] < lengths[:, None]
    return logp, logp_old, logp_ref, adv, mask


# ----------------------------------------------------------------------------- advantages


@pytest.mark.parametrize("norm", gc.NORMS)
def test_advantages_match_reference_and_sum_to_zero(norm):
    r = RNG.normal(size=(7, 5)).astype(np.float32)
    r[2] = 0.3  # a constant group
    r[4, :3] = 1.0
    got = np.asarray(gc.group_advantages(r, norm=norm))
    np.testing.assert_allclose(got, ref.group_advantages_ref(r, norm=norm), atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(got.sum(1), 0.0, atol=1e-5)
    assert np.all(got[2] == 0.0)


def test_advantages_valid_mask_matches_reference():
    r = RNG.normal(size=(5, 6)).astype(np.float32)
    valid = RNG.random((5, 6)) > 0.3
    valid[0] = False
    valid[1] = [True] + [False] * 5  # one valid member -> zeros
    r_bad = r.copy()
    for norm in gc.NORMS:
        got = np.asarray(gc.group_advantages(r_bad, norm=norm, valid=valid))
        np.testing.assert_allclose(got, ref.group_advantages_ref(r, norm=norm, valid=valid), atol=1e-6, rtol=1e-5)
        assert np.all(got[~valid] == 0.0) and np.all(got[:2] == 0.0)
    # the masked-out members' values do not matter
    r2 = np.where(valid, r, 123.0).astype(np.float32)
    np.testing.assert_allclose(gc.group_advantages(r2, valid=valid), gc.group_advantages(r, valid=valid), atol=1e-6)


def test_advantage_invariances():
    r = RNG.normal(size=(4, 8)).astype(np.float32)
    a, c = 3.0, -2.0
    std = np.asarray(gc.group_advantages(r, norm="std", eps=1e-8))
    np.testing.assert_allclose(gc.group_advantages(a * r + c, norm="std", eps=1e-8), std, atol=1e-5)
    none = np.asarray(gc.group_advantages(r, norm="none"))
    np.testing.assert_allclose(gc.group_advantages(r + c, norm="none"), none, atol=1e-5)
    np.testing.assert_allclose(gc.group_advantages(a * r, norm="none"), a * none, atol=1e-5)
    # eps placement: (r - mu) / (sigma + eps) -- eps=1 visibly differs from eps=0-ish
    big = np.asarray(gc.group_advantages(r, norm="std", eps=1.0))
    np.testing.assert_allclose(big, ref.group_advantages_ref(r, norm="std", eps=1.0), atol=1e-6)


def test_broadcast_advantages():
    adv = RNG.normal(size=(2, 3)).astype(np.float32)
    mask = RNG.random((2, 3, 4)) > 0.5
    out = np.asarray(gc.broadcast_advantages(adv, mask))
    for b in range(2):
        for i in range(3):
            for t in range(4):
                assert out[b, i, t] == (adv[b, i] if mask[b, i, t] else 0.0)


def test_advantages_under_jit_and_vmap():
    r = RNG.normal(size=(3, 4, 5)).astype(np.float32)
    f = jax.jit(jax.vmap(lambda x: gc.group_advantages(x, norm="std")))
    loop = np.stack([gc.group_advantages(x) for x in r])
    np.testing.assert_allclose(f(r), loop, atol=1e-6)


def test_checked_group_advantages():
    r = np.array([[0.0, 1.0], [1.0, np.nan]], np.float32)
    err, _ = jax.jit(gc.checked_group_advantages)(r)
    with pytest.raises(Exception, match="rewards"):
        err.throw()
    err, adv = jax.jit(gc.checked_group_advantages)(np.nan_to_num(r))
    err.throw()
    assert adv.shape == (2, 2)


# ----------------------------------------------------------------------------- ratio / clip


@pytest.mark.parametrize("level", gc.LEVELS)
def test_ratio_and_clip_match_reference(level):
    logp, logp_old, _, adv, mask = _rand_batch(seed=1)
    np.testing.assert_allclose(gc.ratio(logp, logp_old, mask, level=level),
                               ref.ratio_ref(logp, logp_old, mask, level=level), rtol=1e-5)
    for lo, hi, dual in [(0.2, 0.2, None), (0.2, 0.28, None), (0.2, 0.28, 3.0), (0.1, 0.5, 1.5)]:
        got = gc.clipped_pg_loss(logp, logp_old, adv, mask, clip_low=lo, clip_high=hi, dual_clip=dual, level=level)
        want = ref.clipped_pg_loss_ref(logp, logp_old, adv, mask, clip_low=lo, clip_high=hi, dual_clip=dual,
                                       level=level)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_clip_hand_cases():
    # one token per row: (log-ratio, advantage) -> expected loss with eps 0.2/0.2 and dual clip 3
    lr = np.log(np.array([1.5, 0.5, 1.1, 0.5, 10.0, 10.0], np.float32))
    adv = np.array([1.0, 1.0, -2.0, -1.0, -1.0, 1.0], np.float32)
    logp = lr[:, None]
    old = np.zeros_like(logp)
    mask = np.ones_like(logp, bool)
    got = np.asarray(gc.clipped_pg_loss(logp, old, adv[:, None], mask, dual_clip=3.0))[:, 0]
    want = [
        -1.2,  # rho=1.5, A>0: clipped at 1.2
        -0.5,  # rho=0.5, A>0: min(0.5, 0.8) -> unclipped
        2.2,  # rho=1.1 inside the range
        0.8,  # rho=0.5, A<0: -min(-0.5, -0.8) = 0.8 (clipped)
        3.0,  # rho=10, A<0: 10 -> dual clip caps at 3|A|
        -1.2,  # rho=10, A>0: clipped at 1.2
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    no_dual = np.asarray(gc.clipped_pg_loss(logp, old, adv[:, None], mask))[:, 0]
    assert no_dual[4] == pytest.approx(10.0, rel=1e-5)


@jax.jit
def _loss_at_ratio_one(logp, adv, mask):
    return gc.grpo_objective(logp, jax.lax.stop_gradient(logp), None, adv, mask, cfg=gc.LossConfig())


def test_ratio_one_gradient_is_reinforce():
    logp, _, _, adv, mask = _rand_batch(seed=2, n=5, t=4)
    (loss, metrics) = _loss_at_ratio_one(logp, adv, mask)
    assert float(metrics["ratio_mean"]) == pytest.approx(1.0)
    assert float(metrics["clip_frac"]) == 0.0
    grad = jax.grad(lambda lp: _loss_at_ratio_one(lp, adv, mask)[0])(logp)
    np.testing.assert_allclose(grad, -adv * mask / mask.sum(), rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- KL


@pytest.mark.parametrize("est", gc.KL_ESTIMATORS)
def test_kl_matches_reference_and_zero_at_equality(est):
    logp, _, logp_ref, _, _ = _rand_batch(seed=3, scale=1.5)
    for cd, co in [(None, None), ((-0.5, 0.7), None), (None, 0.3), (0.4, (-0.1, 0.2))]:
        np.testing.assert_allclose(gc.kl_penalty(logp, logp_ref, estimator=est, clamp_delta=cd, clamp_out=co),
                                   ref.kl_penalty_ref(logp, logp_ref, estimator=est, clamp_delta=cd, clamp_out=co),
                                   rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(gc.kl_penalty(logp, logp, estimator=est)) == 0.0)


def test_kl_properties():
    d = np.linspace(-0.1, 0.1, 41, dtype=np.float32)[None, :]
    lp = np.zeros_like(d)
    k2 = np.asarray(gc.kl_penalty(lp, d, estimator="k2"))
    k3 = np.asarray(gc.kl_penalty(lp, d, estimator="k3"))
    assert np.all(np.abs(k3 - k2) <= np.abs(d) ** 3 + 1e-7)
    wide = np.linspace(-8, 8, 33, dtype=np.float32)[None, :]
    assert np.all(np.asarray(gc.kl_penalty(np.zeros_like(wide), wide, estimator="k3")) >= 0)
    # k3_st: forward = k3, gradient = gradient of k2 (= delta, w.r.t. logp: -(ref - logp) * -1 ...)
    lpv = np.array([[0.3, -0.2]], np.float32)
    rv = np.array([[-0.5, 0.4]], np.float32)
    g_st = jax.grad(lambda x: gc.kl_penalty(x, rv, estimator="k3_st").sum())(lpv)
    g_k2 = jax.grad(lambda x: gc.kl_penalty(x, rv, estimator="k2").sum())(lpv)
    np.testing.assert_allclose(g_st, g_k2, rtol=1e-6)
    np.testing.assert_allclose(gc.kl_penalty(lpv, rv, estimator="k3_st"), gc.kl_penalty(lpv, rv, estimator="k3"))
    # logp_ref carries no gradient
    g_ref = jax.grad(lambda y: gc.kl_penalty(lpv, y, estimator="k3").sum())(rv)
    assert np.all(np.asarray(g_ref) == 0.0)


# ----------------------------------------------------------------------------- aggregation


@pytest.mark.parametrize("agg", gc.AGGS)
def test_aggregate_matches_reference(agg):
    _, _, _, loss, mask = _rand_batch(seed=4, n=7, t=6)
    mask[3] = False  # a fully masked row
    w = RNG.random(loss.shape).astype(np.float32)
    for weights, t_max in [(None, None), (w, None), (None, 9)]:
        got = float(gc.aggregate(loss, mask, agg=agg, t_max=t_max, weights=weights))
        assert got == pytest.approx(ref.aggregate_ref(loss, mask, agg=agg, t_max=t_max, weights=weights), rel=1e-5)
    assert float(gc.aggregate(loss, np.zeros_like(mask), agg=agg)) == 0.0


def test_aggregate_empty_batch_is_zero_never_nan():
    # N = 0 sequences: every mode gives 0 (const_norm used to divide 0 by N·T_max = 0)
    empty, none = np.zeros((0, 4), np.float32), np.zeros((0, 4), bool)
    for agg in gc.AGGS:
        assert float(gc.aggregate(empty, none, agg=agg)) == 0.0, agg
        assert float(gc.aggregate(empty, none, agg=agg, t_max=6)) == 0.0, agg


def test_aggregate_mode_relations():
    loss = RNG.normal(size=(4, 6)).astype(np.float32)
    full = np.ones_like(loss, bool)
    tm = float(gc.aggregate(loss, full, agg="token_mean"))
    assert float(gc.aggregate(loss, full, agg="seq_mean_token_mean")) == pytest.approx(tm, rel=1e-6)
    assert float(gc.aggregate(loss, full, agg="const_norm")) == pytest.approx(tm, rel=1e-6)
    assert float(gc.aggregate(loss, full, agg="seq_mean_token_sum")) == pytest.approx(6 * tm, rel=1e-6)
    assert float(gc.aggregate(loss, full, agg="sum_over_tmax")) == pytest.approx(4 * tm, rel=1e-6)
    # same length 3 < T_max: token_mean == seq_mean_token_mean but const_norm differs
    half = np.arange(6)[None, :] < np.full((4, 1), 3)
    a = float(gc.aggregate(loss, half, agg="token_mean"))
    assert float(gc.aggregate(loss, half, agg="seq_mean_token_mean")) == pytest.approx(a, rel=1e-6)
    assert float(gc.aggregate(loss, half, agg="const_norm")) == pytest.approx(a / 2, rel=1e-6)
    # padding may hold NaN/inf without leaking
    dirty = np.where(half, loss, np.nan).astype(np.float32)
    assert np.isfinite(float(gc.aggregate(dirty, half, agg="token_mean")))


def test_aggregate_worked_example():
    # two sequences: lengths 1 and 3, T_max = 4
    loss = np.array([[2.0, 9, 9, 9], [1.0, 1.0, 4.0, 9]], np.float32)
    mask = np.array([[1, 0, 0, 0], [1, 1, 1, 0]], bool)
    expect = {"token_mean": 8 / 4, "seq_mean_token_mean": (2 + 2) / 2, "seq_mean_token_sum": (2 + 6) / 2,
              "const_norm": 8 / 8, "sum_over_tmax": 8 / 4}
    for agg, val in expect.items():
        assert float(gc.aggregate(loss, mask, agg=agg)) == pytest.approx(val)


# ----------------------------------------------------------------------------- objective


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_objective_matches_reference(agg):
    logp, logp_old, logp_ref, adv, mask = _rand_batch(seed=5, n=8, t=5)
    ent = RNG.random(logp.shape).astype(np.float32)
    w = RNG.random(logp.shape).astype(np.float32)
    cfg = gc.LossConfig(clip_low=0.2, clip_high=0.28, dual_clip=3.0, kl_coef=0.05, kl_estimator="k3", agg=agg,
                        entropy_coef=0.01)
    loss, m = gc.grpo_objective(logp, logp_old, logp_ref, adv, mask, cfg=cfg, weights=w, entropy=ent)
    want = ref.grpo_objective_ref(logp, logp_old, logp_ref, adv, mask, clip_low=0.2, clip_high=0.28, dual_clip=3.0,
                                  kl_coef=0.05, agg=agg, entropy_coef=0.01, weights=w, entropy=ent)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert set(m) >= {"clip_frac", "approx_kl", "ratio_mean", "entropy", "kl", "pg_loss"}
    assert 0.0 < float(m["clip_frac"]) < 1.0


def test_objective_sequence_adv_and_traced_kl_coef():
    logp, logp_old, logp_ref, adv, mask = _rand_batch(seed=6)
    a_seq = adv[:, 0]
    l1, _ = gc.grpo_objective(logp, logp_old, None, a_seq, mask)
    l2, _ = gc.grpo_objective(logp, logp_old, None, a_seq[:, None] * mask, mask)
    assert float(l1) == pytest.approx(float(l2), rel=1e-6)

    def f(beta):
        return gc.grpo_objective(logp, logp_old, logp_ref, adv, mask, cfg=gc.LossConfig(kl_coef=beta))[0]

    betas = jnp.array([0.0, 0.1, 0.3])
    vm = jax.vmap(f)(betas)
    np.testing.assert_allclose(vm, [float(f(float(b))) if b else float(gc.grpo_objective(
        logp, logp_old, None, adv, mask)[0]) for b in betas], rtol=1e-5)


def test_weights_uniform_equal_unweighted():
    logp, logp_old, _, adv, mask = _rand_batch(seed=7)
    cfg = gc.LossConfig(clip_high=0.28)
    a, _ = gc.grpo_objective(logp, logp_old, None, adv, mask, cfg=cfg)
    b, _ = gc.grpo_objective(logp, logp_old, None, adv, mask, cfg=cfg, weights=np.ones_like(logp))
    assert float(a) == pytest.approx(float(b), rel=1e-7)


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs():
    logp, logp_old, logp_ref, adv, mask = _rand_batch(seed=8)
    with pytest.raises(ValueError, match="rewards.*G >= 2"):
        gc.group_advantages(np.ones((3, 1), np.float32))
    with pytest.raises(ValueError, match="rewards.*G >= 2"):
        jax.jit(gc.group_advantages)(np.ones((3, 1), np.float32))
    with pytest.raises(ValueError, match="rewards.*non-finite"):
        gc.group_advantages(np.array([[0.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match="rewards.*non-finite"):
        gc.validate_rewards(np.array([[0.0, np.inf]], np.float32))
    with pytest.raises(ValueError, match="norm"):
        gc.group_advantages(np.ones((2, 2), np.float32), norm="zscore")
    with pytest.raises(ValueError, match="eps"):
        gc.group_advantages(np.ones((2, 2), np.float32), eps=0.0)
    with pytest.raises(ValueError, match="valid"):
        gc.group_advantages(np.ones((2, 3), np.float32), valid=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="mask"):
        gc.broadcast_advantages(np.ones((2, 3), np.float32), np.ones((2, 4, 5), bool))
    with pytest.raises(ValueError, match="mask"):
        gc.ratio(logp, logp_old, mask[:, :-1])
    with pytest.raises(ValueError, match="mask.*0/1"):
        gc.aggregate(logp, mask * 0.5)
    with pytest.raises(ValueError, match="mask.*dtype"):
        gc.aggregate(logp, mask.astype(np.complex64))
    with pytest.raises(ValueError, match="logp_old"):
        gc.ratio(logp, logp_old[:-1], mask)
    with pytest.raises(ValueError, match="clip_low"):
        gc.clipped_pg_loss(logp, logp_old, adv, mask, clip_low=-0.1)
    with pytest.raises(ValueError, match="clip_high"):
        gc.LossConfig(clip_high=-0.2)
    with pytest.raises(ValueError, match="dual_clip"):
        gc.LossConfig(dual_clip=0.5)
    with pytest.raises(ValueError, match="agg"):
        gc.aggregate(logp, mask, agg="mean")
    with pytest.raises(ValueError, match="agg"):
        gc.LossConfig(agg="dapo")
    with pytest.raises(ValueError, match="estimator"):
        gc.kl_penalty(logp, logp_ref, estimator="k4")
    with pytest.raises(ValueError, match="kl_coef"):
        gc.LossConfig(kl_coef=-1.0)
    with pytest.raises(ValueError, match="level"):
        gc.ratio(logp, logp_old, mask, level="step")
    with pytest.raises(ValueError, match="logp_ref"):
        gc.grpo_objective(logp, logp_old, None, adv, mask, cfg=gc.LossConfig(kl_coef=0.1))
    with pytest.raises(ValueError, match="entropy"):
        gc.grpo_objective(logp, logp_old, None, adv, mask, cfg=gc.LossConfig(entropy_coef=0.1))
    with pytest.raises(ValueError, match="adv"):
        gc.grpo_objective(logp, logp_old, None, adv[:, :2], mask)
    with pytest.raises(ValueError, match="logp.*non-finite"):
        gc.ratio(np.full_like(logp, np.nan), logp_old, mask)
    with pytest.raises(ValueError, match="cfg"):
        gc.validate_config({"clip_low": 0.2})
    cfg = gc.LossConfig()
    object.__setattr__(cfg, "clip_low", 2.0)
    with pytest.raises(ValueError, match="clip_low"):
        gc.validate_config(cfg)
    assert dataclasses.is_dataclass(gc.LossConfig()) and hash(gc.LossConfig()) == hash(gc.LossConfig())
