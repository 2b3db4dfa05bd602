"""TW-GRPO (spec papers/tw_grpo.md §6): token weights vs a numpy loop, rewards, QAI, loss reductions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.rl import tw_grpo as tw
from zoo.rl.grpo_envs import multichoice as mc

# ----------------------------------------------------------------------------- numpy reference


def ref_weights(logp_full, mask, alpha, clamp=11.0, minmax_over="all", eps=1e-8):
    b, g, t, v = logp_full.shape
    w = np.zeros((b, g, t))
    for bb in range(b):
        dbar = np.zeros(t)
        for tt in range(t):
            rows = [logp_full[bb, i, tt] if mask[bb, i, tt] else np.full(v, -np.log(v)) for i in range(g)]
            mean = np.mean(rows, axis=0)
            divs = []
            for i in range(g):
                d = np.clip(mean - rows[i], -clamp, clamp)
                divs.append(np.sum(np.exp(d) - d - 1))
            dbar[tt] = np.mean(divs)
        sel = np.ones(t, bool) if minmax_over == "all" else mask[bb].any(0)
        lo, hi = dbar[sel].min(), dbar[sel].max()
        for tt in range(t):
            for i in range(g):
                w[bb, i, tt] = (1 + (alpha - 1) * (dbar[tt] - lo) / (hi - lo + eps)) * mask[bb, i, tt]
    return w


def random_logp(seed, b=2, g=3, t=5, v=7, scale=2.0, shared_first=True):
    rng = np.random.default_rng(seed)
    logits = scale * rng.normal(size=(b, g, t, v))
    if shared_first:
        logits[:, :, 0] = logits[:, :1, 0]  # position 0: shared prompt -> identical distributions
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    lengths = rng.integers(1, t + 1, size=(b, g))
    lengths[:, 0] = t - 1  # leave the last position fully padded (exercise minmax_over)
    mask = np.arange(t)[None, None] < lengths[..., None]
    return lp.astype(np.float32), mask


weights_jit = jax.jit(tw.tw_token_weights, static_argnames=("clamp", "minmax_over", "divergence", "eps",
                                                            "stop_gradient"))  # fmt: skip

# ----------------------------------------------------------------------------- weights


@pytest.mark.parametrize("minmax_over", ["all", "valid"])
def test_weights_match_numpy_loop(minmax_over):
    lp, m = random_logp(0)
    got = weights_jit(lp, m, 1.7, minmax_over=minmax_over)
    np.testing.assert_allclose(got, ref_weights(lp.astype(np.float64), m, 1.7, minmax_over=minmax_over), atol=2e-5)


def test_clamp_and_minmax_variants_differ_on_padding():
    lp, m = random_logp(1, scale=8.0, shared_first=False)  # peaked -> differences beyond the ±11 clamp
    d = np.mean(lp, 1, keepdims=True) - lp
    assert np.abs(d).max() > 11
    np.testing.assert_allclose(weights_jit(lp, m, 1.7), ref_weights(lp.astype(np.float64), m, 1.7), rtol=1e-4)
    a = np.asarray(weights_jit(lp, m, 1.7, minmax_over="all"))
    v = np.asarray(weights_jit(lp, m, 1.7, minmax_over="valid"))
    assert not np.allclose(a, v)  # the all-padded last position enters the min/max only in "all"


def test_weight_properties():
    lp, m = random_logp(2)
    w = np.asarray(weights_jit(lp, m, 1.7))
    assert np.all(w[~m] == 0) and np.all((w[m] >= 1 - 1e-6) & (w[m] <= 1.7 + 1e-6))
    np.testing.assert_array_equal(w[:, :, 0], 1.0)  # shared position 0 has weight exactly 1
    col = np.where(m, w, np.nan)[:, :, :-1]  # the same weight for every active member at a position
    np.testing.assert_allclose(np.nanmax(col, 1), np.nanmin(col, 1))
    perm = np.array([2, 0, 1])
    np.testing.assert_allclose(weights_jit(lp[:, perm], m[:, perm], 1.7), w[:, perm], atol=1e-6)
    np.testing.assert_array_equal(weights_jit(lp, m, 1.0), m.astype(np.float32))  # α = 1 -> mask
    same = np.broadcast_to(lp[:, :1], lp.shape)
    np.testing.assert_array_equal(weights_jit(same, np.ones(m.shape, bool), 1.7), 1.0)  # identical members
    # kl_to_mixture: non-negative divergence, weight 1 at the shared position, bounded
    k = np.asarray(weights_jit(lp, m, 1.7, divergence="kl_to_mixture", minmax_over="valid"))
    assert np.all(k[:, :, 0] == 1.0) and np.all(k[m] <= 1.7 + 1e-6) and np.all(k[~m] == 0)


def test_non_finite_logp_errors_at_valid_positions_ignored_on_padding():
    lp, m = random_logp(4)
    bad = lp.copy()
    bad[0, 1, 0, 3] = -np.inf  # valid position: one -inf would make the whole group's weights NaN
    assert m[0, 1, 0]
    with pytest.raises(ValueError, match=r"logp_full: contains 1 non-finite value\(s\).*\(0, 1, 0, 3\)"):
        tw.tw_token_weights(bad, m, 1.7)
    with pytest.raises(ValueError, match="T >= 1"):
        tw.tw_token_weights(lp[:, :, :0], m[:, :, :0], 1.7)
    pad = lp.copy()
    pad[~m] = np.nan  # garbage on padded positions never enters either divergence
    for div in ("code", "kl_to_mixture"):
        np.testing.assert_array_equal(tw.tw_token_weights(pad, m, 1.7, divergence=div),
                                      tw.tw_token_weights(lp, m, 1.7, divergence=div))


def test_vmap_over_alpha_and_stop_gradient():
    lp, m = random_logp(3)
    ws = jax.jit(jax.vmap(lambda a: tw.tw_token_weights(lp, m, a)))(jnp.array([1.0, 1.7]))
    np.testing.assert_allclose(ws[1], weights_jit(lp, m, 1.7), atol=1e-6)
    g_det = jax.jit(jax.grad(lambda x: tw.tw_token_weights(x, m, 1.7).sum()))(jnp.asarray(lp))
    g_live = jax.jit(jax.grad(lambda x: tw.tw_token_weights(x, m, 1.7, stop_gradient=False).sum()))(
        jnp.asarray(lp))
    assert float(jnp.abs(g_det).max()) == 0.0 and float(jnp.abs(g_live).max()) > 0.0


# ----------------------------------------------------------------------------- loss reductions


def _loss_inputs(seed, n=6, t=5):
    rng = np.random.default_rng(seed)
    logp = jnp.asarray(-rng.random((n, t)), jnp.float32)
    adv = jnp.asarray(rng.normal(size=n), jnp.float32)
    return logp, adv


def test_uniform_weights_give_token_mean_grpo():
    from zoo.rl import grpo_core

    logp, adv = _loss_inputs(0)
    rng = np.random.default_rng(1)
    mask = jnp.asarray(np.arange(5)[None] < rng.integers(1, 6, size=(6, 1)))
    ones = mask.astype(jnp.float32)
    got, _ = tw.tw_grpo_loss(logp, logp, adv, mask, ones)
    want, _ = grpo_core.grpo_objective(logp, logp, None, adv, mask,
                                       cfg=grpo_core.LossConfig(clip_low=0.2, clip_high=0.28))  # fmt: skip
    assert float(got) == float(want)
    # equal-length completions: token-mean = the repo's seq-mean GRPO baseline
    full = jnp.ones((6, 5), bool)
    got, _ = tw.tw_grpo_loss(logp, logp, adv, full, full.astype(jnp.float32))
    seq, _ = grpo_core.grpo_objective(logp, logp, None, adv, full,
                                      cfg=grpo_core.LossConfig(agg="seq_mean_token_mean"))  # fmt: skip
    assert float(got) == pytest.approx(float(seq), abs=1e-7)


def test_weighted_gradient_is_reinforce_with_weights():
    logp, adv = _loss_inputs(2)
    mask = jnp.ones((6, 5), bool)
    w = jnp.asarray(1 + 0.7 * np.random.default_rng(3).random((6, 5)), jnp.float32)
    g = jax.grad(lambda lp: tw.tw_grpo_loss(lp, jax.lax.stop_gradient(lp), adv, mask, w)[0])(logp)
    np.testing.assert_allclose(g, -w * adv[:, None] / 30.0, rtol=1e-5)  # ρ ≡ 1: ∇ = −w A / Σ m


def test_factorised_policy_gives_token_mean_grpo():
    # every member shares each position's distribution (no dependence on the sampled prefix) -> D ≡ 0
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(1, 1, 5, 7))
    lp = np.broadcast_to(logits - np.log(np.exp(logits).sum(-1, keepdims=True)), (1, 4, 5, 7)).astype(np.float32)
    w = tw.tw_token_weights(lp, np.ones((1, 4, 5), bool), 1.7)
    np.testing.assert_array_equal(w, 1.0)


# ----------------------------------------------------------------------------- rewards


def test_soft_and_binary_reward_table():
    gt = np.array([[1, 1, 0, 0]] * 6 + [[0, 1, 0, 0]] * 2, bool)
    pred = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0],
                     [0, 1, 0, 0], [0, 0, 0, 1]], bool)  # fmt: skip
    soft = np.asarray(tw.soft_choice_reward(pred, gt))
    binary = np.asarray(tw.soft_choice_reward(pred, gt, mode="binary"))
    np.testing.assert_allclose(soft, [1, 0.5, 0, 0, 0, 0.5, 1, 0])
    np.testing.assert_allclose(binary, [1, 0, 0, 0, 0, 0, 1, 0])
    assert np.all(soft >= binary)


def test_text_rewards_parity():
    assert tw.answer_set_from_text("<think>x</think><answer> A, C </answer>") == {"A", "C"}
    assert tw.answer_set_from_text("B,B") == {"B"}
    assert tw.soft_reward_text("<answer>A</answer>", "<answer>A,C</answer>") == 0.5
    assert tw.soft_reward_text("<answer>A,D</answer>", "<answer>A,C</answer>") == 0.0
    assert tw.soft_reward_text("<answer></answer>", "<answer>A</answer>") == 0.0  # {''} is not a subset
    assert tw.soft_reward_text("<answer>C, A</answer>", "<answer>A,C</answer>", mode="binary") == 1.0
    assert tw.format_reward_text("<think>a\nb</think>\n<answer>A</answer>!! ") == 1.0
    assert tw.format_reward_text("<think>a</think><answer>A</answer> extra") == 0.0
    assert tw.format_reward_text("<think>a</think><think>b</think><answer>A</answer>") == 0.0


def test_text_reward_empty_solution_is_an_error_like_the_mask_version():
    # soft_choice_reward refuses an all-false gt; the string version refuses a solution with no letters
    with pytest.raises(ValueError, match="gt"):
        tw.soft_choice_reward(np.ones((1, 2), bool), np.zeros((1, 2), bool))
    for content, solution in (("", ""), ("<answer></answer>", "<answer></answer>"), ("A", " , ")):
        with pytest.raises(ValueError, match="solution"):
            tw.soft_reward_text(content, solution)
    assert tw.soft_reward_text("", "A") == 0.0  # an empty prediction is still just wrong


def test_token_parsing_and_format():
    cfg = mc.MultiChoiceConfig()
    g = mc.grammar(cfg)
    A, B, C = g.letters[:3]
    f1 = g.fillers[0]
    rows = [
        [g.think, f1, g.endthink, A, C, g.eos, g.pad],  # ok: {A, C}
        [g.think, g.endthink, B, B, g.eos, g.pad, g.pad],  # duplicates collapse: {B}
        [g.think, f1, g.endthink, A, f1, g.eos, g.pad],  # junk in the answer -> empty, malformed
        [g.think, f1, A, g.eos, g.pad, g.pad, g.pad],  # no ENDTHINK -> empty, malformed
        [g.think, g.endthink, g.eos, g.pad, g.pad, g.pad, g.pad],  # empty answer, well formed
        [g.think, f1, g.endthink, A, A, A, A],  # truncated (no EOS) -> malformed
        [A, C, g.eos, g.pad, g.pad, g.pad, g.pad],  # no ENDTHINK: the whole output is the answer -> {A, C}, malformed
    ]
    tok = np.array(rows, np.int32)
    mask = np.array([[1] * 6 + [0], [1] * 5 + [0] * 2, [1] * 6 + [0], [1] * 4 + [0] * 3, [1] * 3 + [0] * 4,
                     [1] * 7, [1] * 3 + [0] * 4], bool)  # fmt: skip
    pred, ok = tw.parse_answer_tokens(tok, mask, grammar=g, n_options=4)
    np.testing.assert_array_equal(ok, [True, True, False, False, True, False, False])
    np.testing.assert_array_equal(np.asarray(pred)[:5, :3], [[1, 0, 1], [0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    # spec §2(a): without <answer> the whole output is parsed, as answer_set_from_text does for strings
    np.testing.assert_array_equal(np.asarray(pred)[6], [1, 0, 1, 0])
    assert tw.soft_reward_text("A,C", "<answer>A,C</answer>") == 1.0
    np.testing.assert_array_equal(tw.format_reward_tokens(tok, mask, grammar=g), np.asarray(ok, np.float32))
    # demonstrations are well formed and parse back to their letters
    items = mc.make_items(0, 50, cfg)
    dt, dm = mc.demo_completions(0, items["gt"], mc.present_options(items), cfg, p_correct=1.0)
    pred, ok = tw.parse_answer_tokens(dt, dm, grammar=g, n_options=4)
    assert bool(np.all(ok)) and np.array_equal(np.asarray(pred), items["gt"])


# ----------------------------------------------------------------------------- QAI


def test_qai_negation_and_inversion():
    assert tw.qai_negate_question("What did the man do after the door opened?") == (
        "what didn't the man do after the door opened?")
    assert tw.qai_negate_question("Which object is the largest?") is None  # strict: 'object' is not an aux verb
    # split on any whitespace (the converter's str.split()): double spaces, leading spaces, tabs
    for q in ("What  did the man do?", " What did the man do?", "What\tdid the man do?", "What did\nthe man  do? "):
        assert tw.qai_negate_question(q) == "what didn't the man do?"
    items = [{"question": "  What was  on\tthe table?", "options": list("wxyz"), "answer": 1}]
    out = tw.qai_augment(items, np.random.default_rng(0), p=1.0)
    assert out[0]["qai"] and out[0]["question"] == "what wasn't on the table?"
    new, letters = tw.qai_invert(["a", "b", "c", "d"], 2, keep=[0, 3], order=[1, 0, 2])
    assert new == ["a", "c", "d"] and letters == ["A", "C"]
    rng = np.random.default_rng(0)
    items = [{"question": "What is the man holding?", "options": list("wxyz"), "answer": k % 4} for k in range(200)]
    out = tw.qai_augment(items, rng, p=0.5)
    again = tw.qai_augment(items, np.random.default_rng(0), p=0.5)
    assert out == again
    inv = [o for o in out if o.get("qai")]
    assert 60 < len(inv) < 140
    for src, o in zip(items, out):
        if o.get("qai"):
            k = len(o["answer"])
            assert 1 <= k <= 3 and len(o["options"]) == k + 1
            wrong = [j for j in range(k + 1) if j not in o["answer"]]
            assert len(wrong) == 1 and o["options"][wrong[0]] == src["options"][src["answer"]]
            assert o["question"].startswith("what isn't")
    assert tw.qai_augment(items, np.random.default_rng(1), p=0.0) == items


def test_qai_invert_tokens():
    keys = jax.random.split(jax.random.key(0), 256)
    digits = jnp.asarray(np.random.default_rng(0).permutation(10)[:4])
    q, d, gt = jax.jit(jax.vmap(lambda k: tw.qai_invert_tokens(jnp.int32(0), digits, k)))(keys)
    d, gt = np.asarray(d), np.asarray(gt)
    present = d >= 0
    assert np.all(np.asarray(q) == 2)
    assert np.all(present.sum(1) == gt.sum(1) + 1) and set(gt.sum(1)) == {1, 2, 3}
    wrong = present & ~gt
    np.testing.assert_array_equal(d[wrong], int(digits.max()))  # the only wrong option holds the max
    assert np.all(present[:, 0])
    for row in d:
        assert set(row[row >= 0]) <= set(np.asarray(digits))


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs():
    lp, m = random_logp(5)
    with pytest.raises(ValueError, match="alpha"):
        tw.tw_token_weights(lp, m, 0.5)
    with pytest.raises(ValueError, match="logp_full"):
        tw.tw_token_weights(lp[0], m[0], 1.7)
    with pytest.raises(ValueError, match="mask"):
        tw.tw_token_weights(lp, m[:, :2], 1.7)
    with pytest.raises(ValueError, match="V >= 2"):
        tw.tw_token_weights(lp[..., :1], m, 1.7)
    with pytest.raises(ValueError, match="G >= 2"):
        tw.tw_token_weights(lp[:, :1], m[:, :1], 1.7)
    with pytest.raises(ValueError, match="clamp"):
        tw.tw_token_weights(lp, m, 1.7, clamp=0.0)
    with pytest.raises(ValueError, match="divergence"):
        tw.tw_token_weights(lp, m, 1.7, divergence="js")
    with pytest.raises(ValueError, match="gt: every item"):
        tw.soft_choice_reward(np.ones((2, 4), bool), np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="mode"):
        tw.soft_choice_reward(np.ones((2, 4), bool), np.ones((2, 4), bool), mode="partial")
    with pytest.raises(ValueError, match="keep"):
        tw.qai_invert(list("abcd"), 1, keep=[1, 2], order=[0, 1, 2])
    with pytest.raises(ValueError, match="keep"):
        tw.qai_invert(list("abcd"), 1, keep=[5], order=[0, 1])
    with pytest.raises(ValueError, match="order"):
        tw.qai_invert(list("abcd"), 1, keep=[0, 2], order=[0, 0, 1])
