"""RLCCF (zoo.rl.rlccf): voting, SC, rewards vs loop references; N = 1 reduces to TTRL; vmapped step = loop."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.rl import grpo_core, rlccf, tiny_lm
from zoo.rl.grpo_envs import skillmix as sm

C = 6

# ----------------------------------------------------------------------------- numpy references


def counts_ref(answers, c):
    n, q, k = answers.shape
    out = np.zeros((n, q, c), int)
    for i in range(n):
        for j in range(q):
            for a in answers[i, j]:
                if a >= 0:
                    out[i, j, a] += 1
    return out


def vote_ref(answers, c, weighting):
    n, q, k = answers.shape
    labels = []
    for j in range(q):
        score = {}
        for i in range(n):
            valid = [a for a in answers[i, j] if a >= 0]
            if not valid:
                continue
            sc = max(valid.count(a) for a in set(valid)) / k if weighting == "sc" else 1.0
            for a in valid:
                score[a] = score.get(a, 0.0) + sc
        if not score:
            labels.append(-1)
        else:
            best = max(score.values())
            labels.append(min(a for a, v in score.items() if v == best))
    return np.array(labels)


@pytest.fixture(scope="module")
def answers():
    rng = np.random.default_rng(0)
    a = rng.integers(-1, C, (3, 20, 5))
    a[0, 0] = -1  # one model without any valid answer
    a[:, 1] = -1  # a question nobody answered
    a[:, 2] = 4  # unanimous
    return a


def test_counts_sc_and_votes_match_reference(answers):
    c = np.asarray(rlccf.answer_counts(answers, n_answers=C))
    np.testing.assert_array_equal(c, counts_ref(answers, C))
    sc = np.asarray(rlccf.self_consistency(c, 5))
    np.testing.assert_allclose(sc, c.max(-1) / 5)
    for w in ("sc", "uniform"):
        lab, scores = rlccf.collective_vote(c, sc, weighting=w)
        np.testing.assert_array_equal(lab, vote_ref(answers, C, w))
    lab, _ = rlccf.collective_vote(c, sc)
    assert lab[1] == -1 and lab[2] == 4
    own = np.asarray(rlccf.ttrl_labels(c))
    for i in range(3):
        np.testing.assert_array_equal(own[i], vote_ref(answers[i : i + 1], C, "uniform"))
    batch = np.asarray(rlccf.self_consistency(c, 5, scope="batch"))
    np.testing.assert_allclose(batch, np.broadcast_to(sc.mean(1, keepdims=True), sc.shape), atol=1e-6)


def test_sc_properties(answers):
    c = rlccf.answer_counts(answers, n_answers=C)
    sc = np.asarray(rlccf.self_consistency(c, 5))
    has = (answers >= 0).any(-1)
    assert np.all(sc[has] >= 1 / 5 - 1e-7) and np.all(sc <= 1) and np.all(sc[~has] == 0)
    unanimous = np.array([[[2, 2, 2, 2], [2, 2, 2, 1], [2, -1, -1, -1], [-1, -1, -1, -1]]])
    s = np.asarray(rlccf.self_consistency(rlccf.answer_counts(unanimous, n_answers=3), 4))
    np.testing.assert_allclose(s, [[1.0, 0.75, 0.25, 0.0]])  # ∅ excluded from counts, kept in K


def test_holdout_weighted_vs_plain_and_ties():
    # model A is confident on 7; B, C, D are diffuse but together vote 3 more often
    a = np.array([[[7, 7, 7, 7]], [[3, 3, 1, 2]], [[3, 3, 5, 6]], [[3, 8, 9, 0]]])
    c = rlccf.answer_counts(a, n_answers=10)
    sc = rlccf.self_consistency(c, 4)
    assert int(rlccf.collective_vote(c, sc, weighting="sc")[0][0]) == 7
    assert int(rlccf.collective_vote(c, sc, weighting="uniform")[0][0]) == 3
    tie = np.array([[[5, 5, 2, 2]]])
    assert int(rlccf.collective_vote(rlccf.answer_counts(tie, n_answers=6), None, weighting="uniform")[0][0]) == 2


def test_invariances_and_reductions(answers):
    c = rlccf.answer_counts(answers, n_answers=C)
    sc = rlccf.self_consistency(c, 5)
    lab = np.asarray(rlccf.collective_vote(c, sc)[0])
    rng = np.random.default_rng(1)
    perm_models = answers[rng.permutation(3)]
    perm_samples = np.take_along_axis(answers, np.argsort(rng.random(answers.shape), -1), -1)
    for a in (perm_models, perm_samples):
        cc = rlccf.answer_counts(a, n_answers=C)
        np.testing.assert_array_equal(rlccf.collective_vote(cc, rlccf.self_consistency(cc, 5))[0], lab)
    np.testing.assert_array_equal(rlccf.collective_vote(c, 3.0 * sc)[0], lab)  # SC scale-free
    # equal SC for all models -> SC vote = plain vote
    eq = jnp.ones_like(sc) * 0.4
    np.testing.assert_array_equal(rlccf.collective_vote(c, eq)[0], rlccf.collective_vote(c, None, weighting="uniform")[0])
    # N = 1 -> collective label = own majority (TTRL)
    c1 = c[:1]
    np.testing.assert_array_equal(rlccf.collective_vote(c1, rlccf.self_consistency(c1, 5))[0], rlccf.ttrl_labels(c1)[0])


def test_rewards_advantages_and_metrics(answers):
    lab = np.array(vote_ref(answers, C, "sc"))
    r = np.asarray(rlccf.consistency_rewards(answers, lab))
    want = ((answers == lab[None, :, None]) & (answers >= 0)).astype(np.float32)
    np.testing.assert_array_equal(r, want)
    assert set(np.unique(r)) <= {0.0, 1.0}
    assert np.all(r[:, 1] == 0)  # label −1 never rewards (and ∅ never matches)
    adv = np.asarray(rlccf.rlccf_advantages(r))
    np.testing.assert_allclose(adv, np.asarray(grpo_core.group_advantages(r.reshape(-1, 5))).reshape(r.shape), atol=1e-6)
    assert np.all(adv[:, 2] == 0)  # unanimous groups: all rewards equal -> exactly 0
    gold = np.random.default_rng(2).integers(0, C, 20)
    own = np.asarray(rlccf.ttrl_labels(rlccf.answer_counts(answers, n_answers=C)))
    assert float(rlccf.label_accuracy(lab, gold)) == pytest.approx(np.mean(lab == gold))
    assert float(rlccf.label_accuracy(own, gold)) == pytest.approx(np.mean(own == gold[None]))
    r_gold = ((answers == gold[None, :, None]) & (answers >= 0))
    assert float(rlccf.reward_accuracy(answers, lab, gold)) == pytest.approx(np.mean(r_gold == want.astype(bool)))
    np.testing.assert_allclose(rlccf.avg_accuracy(answers, gold), r_gold.mean((1, 2)), atol=1e-6)
    pooled = answers.transpose(1, 0, 2).reshape(1, 20, -1)
    mv = vote_ref(pooled, C, "uniform")
    assert float(rlccf.group_majority_accuracy(answers, gold, n_answers=C)) == pytest.approx(np.mean(mv == gold))


# ----------------------------------------------------------------------------- training step

LM = tiny_lm.TinyLMConfig(vocab=sm.VOCAB, d_model=8, max_len=6, pad_id=sm.PAD, eos_id=sm.EOS)
CFG = rlccf.RLCCFConfig(k=4, n_answers=10, lr=1e-2, loss=grpo_core.LossConfig(kl_coef=0.01))
PROMPTS = jnp.asarray(sm.all_questions()["prompt"][::57][:6])


def _params(n, seed=0):
    return jax.vmap(lambda k: tiny_lm.init_tiny_lm(k, LM))(jax.random.split(jax.random.key(seed), n))


@functools.partial(jax.jit, static_argnames=("cfg",))
def _step(state, key, *, cfg):
    return rlccf.rlccf_step(state, key, PROMPTS, cfg=cfg, lm_cfg=LM, extract=sm.extract_answers)


@jax.jit
def _step_mode(state, key, mode):
    return rlccf.rlccf_step(state, key, PROMPTS, cfg=CFG, lm_cfg=LM, extract=sm.extract_answers, mode=mode)


@jax.jit
def _sample_one(params, key):
    return rlccf.sample_answers(params, key, PROMPTS, cfg=CFG, lm_cfg=LM, extract=sm.extract_answers)


@jax.jit
def _update_one(p, ref, opt_state, rollout, adv):
    g = jax.grad(lambda pp: rlccf.model_loss(pp, ref, PROMPTS, rollout, adv, cfg=CFG, lm_cfg=LM)[0])(p)
    upd, _ = CFG.optimizer().update(g, opt_state, p)
    return jax.tree.map(lambda a, b: a + b, p, upd)


@pytest.fixture(scope="module")
def stepped():
    state = rlccf.init_rlccf_state(_params(3), CFG)
    key = jax.random.key(7)
    new, aux = _step(state, key, cfg=CFG)
    return state, key, new, aux


def test_step_outputs(stepped):
    _, _, new, aux = stepped
    assert aux["answers"].shape == (3, 6, 4) and aux["labels"].shape == (3, 6)
    lab = np.asarray(aux["labels"])
    assert np.all((lab >= -1) & (lab < 10)) and np.all(lab == lab[:1])  # one collective label, broadcast
    assert set(np.unique(np.asarray(aux["rewards"]))) <= {0.0, 1.0}
    assert np.all(np.isfinite(np.asarray(aux["loss"])))
    np.testing.assert_array_equal(lab[0], rlccf.pseudo_labels(aux["answers"], n_answers=10)[0][0])


def test_vmapped_step_equals_loop_over_models(stepped):
    state, key, new, aux = stepped
    keys = jax.random.split(key, 3)
    take = lambda tree, i: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
    outs = [_sample_one(take(state.params, i), keys[i]) for i in range(3)]
    answers = jnp.stack([a for _, a in outs])
    np.testing.assert_array_equal(answers, aux["answers"])
    labels, _ = rlccf.pseudo_labels(answers, n_answers=10)
    adv = rlccf.rlccf_advantages(rlccf.consistency_rewards(answers, labels))
    for i in range(3):
        p_new = _update_one(take(state.params, i), take(state.ref_params, i), take(state.opt_state, i), outs[i][0], adv[i])
        for a, b in zip(jax.tree.leaves(p_new), jax.tree.leaves(take(new.params, i))):
            np.testing.assert_allclose(a, b, atol=1e-6)


def test_no_cross_model_gradient(stepped):
    state, key, _, aux = stepped
    keys = jax.random.split(key, 3)
    ro = jax.vmap(_sample_one)(state.params, keys)[0]
    adv = rlccf.rlccf_advantages(aux["rewards"])
    loss_1 = lambda p: rlccf.rlccf_loss(p, state.ref_params, PROMPTS, ro, adv, cfg=CFG, lm_cfg=LM)[0][1]  # noqa: E731
    g = jax.jit(jax.grad(loss_1))(state.params)
    for leaf in jax.tree.leaves(g):
        leaf = np.asarray(leaf)
        assert np.all(leaf[0] == 0) and np.all(leaf[2] == 0)
    assert max(np.abs(np.asarray(x)[1]).max() for x in jax.tree.leaves(g)) > 0


def test_one_model_is_majority_vote_self_training():
    """N = 1: RLCCF's SC-weighted collective label is the model's own majority, so the step equals TTRL's exactly."""
    state = rlccf.init_rlccf_state(_params(1, seed=3), CFG)
    key = jax.random.key(11)
    a, aux_a = _step_mode(state, key, jnp.int32(rlccf.LABEL_MODES.index("sc")))
    b, aux_b = _step_mode(state, key, jnp.int32(rlccf.LABEL_MODES.index("self")))
    np.testing.assert_array_equal(aux_a["labels"], aux_b["labels"])
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)
    # and the label is the majority of the model's own answers
    np.testing.assert_array_equal(aux_a["labels"][0], rlccf.ttrl_labels(rlccf.answer_counts(aux_a["answers"], n_answers=10))[0])
    # a model with other labels (uniform vote is the same for N = 1 too) — and the static mode agrees
    np.testing.assert_array_equal(rlccf.pseudo_labels(aux_a["answers"], n_answers=10, mode="uniform")[0], aux_a["labels"])


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs(answers):
    c = rlccf.answer_counts(answers, n_answers=C)
    with pytest.raises(ValueError, match="K >= 2"):
        rlccf.answer_counts(answers[..., :1], n_answers=C)
    with pytest.raises(ValueError, match="answers: expected ids"):
        rlccf.answer_counts(answers, n_answers=3)
    with pytest.raises(ValueError, match="answers: expected ids"):
        rlccf.answer_counts(answers - 2, n_answers=C)
    with pytest.raises(ValueError, match="N >= 1"):
        rlccf.answer_counts(answers[:0], n_answers=C)
    with pytest.raises(ValueError, match="answers: expected integer"):
        rlccf.answer_counts(answers.astype(np.float32), n_answers=C)
    with pytest.raises(ValueError, match="weighting"):
        rlccf.collective_vote(c, None, weighting="softmax")
    with pytest.raises(ValueError, match="scope"):
        rlccf.self_consistency(c, 5, scope="global")
    with pytest.raises(ValueError, match="k"):
        rlccf.self_consistency(c, 1)
    with pytest.raises(ValueError, match="sc: required"):
        rlccf.collective_vote(c, None)
    with pytest.raises(ValueError, match="eps"):
        rlccf.RLCCFConfig(eps=0.0)
    with pytest.raises(ValueError, match="mode"):
        rlccf.RLCCFConfig(mode="ttrl")
    with pytest.raises(ValueError, match="k"):
        rlccf.RLCCFConfig(k=1)
    with pytest.raises(ValueError, match="gold: expected shape"):
        rlccf.avg_accuracy(answers, np.zeros(7, int))
    with pytest.raises(ValueError, match="labels: expected shape"):
        rlccf.consistency_rewards(answers, np.zeros(5, int))
    with pytest.raises(ValueError, match="rewards: contains"):
        rlccf.rlccf_advantages(np.full((2, 3, 4), np.nan, np.float32))
