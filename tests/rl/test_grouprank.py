"""GroupRank (zoo.rl.grouprank): reward vs loop references, scorers, grouping, rerank, parser, GRPO loss (the NDCG and
recall metrics themselves: test_ranking.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.rl import grouprank as gr
from zoo.rl import grpo_core
from test_ranking import ndcg_ref, recall_ref  # the brute-force references (tests/rl/test_ranking.py)


# ----------------------------------------------------------------------------- distribution and total reward


def test_distribution_reward():
    rng = np.random.default_rng(4)
    s, y = rng.random((10, 6)).astype(np.float32), rng.random((10, 6)).astype(np.float32)
    mae = np.asarray(gr.distribution_reward(s, y))
    np.testing.assert_allclose(mae, 1 - np.abs(s - y).mean(1), atol=1e-6)
    np.testing.assert_allclose(gr.distribution_reward(y, y), 1.0)
    assert np.all(mae < 1)
    w1 = np.asarray(gr.distribution_reward(s, y, kind="w1"))
    np.testing.assert_allclose(w1, 1 - np.abs(np.sort(s) - np.sort(y)).mean(1), atol=1e-6)
    js = np.asarray(gr.distribution_reward(s, y, kind="js"))
    np.testing.assert_allclose(js, gr.distribution_reward(y, s, kind="js"), atol=1e-6)  # symmetric
    assert np.all((js >= 0) & (js <= 1))

    def js_ref(a, b, tau=0.1):
        p, r = np.exp(a / tau) / np.exp(a / tau).sum(), np.exp(b / tau) / np.exp(b / tau).sum()
        mid = (p + r) / 2
        return 1 - (0.5 * np.sum(p * np.log(p / mid)) + 0.5 * np.sum(r * np.log(r / mid))) / np.log(2)

    np.testing.assert_allclose(js, [js_ref(a, b) for a, b in zip(s, y)], atol=1e-5)
    # padding excluded
    valid = np.ones((10, 6), bool)
    valid[:, 4:] = False
    np.testing.assert_allclose(gr.distribution_reward(s, y, valid=valid), 1 - np.abs(s - y)[:, :4].mean(1), atol=1e-6)


def test_grouprank_reward_composition():
    rng = np.random.default_rng(5)
    bins = rng.integers(0, 11, (4, 3, 6))
    grades = rng.integers(0, 4, (4, 3, 6))
    cfg = gr.RewardConfig(weights=(1.0, 0.5, 0.25))
    r, parts = gr.grouprank_reward(bins, grades, cfg=cfg)
    r, parts = np.asarray(r), {k: np.asarray(v) for k, v in parts.items()}
    for i in np.ndindex(4, 3):
        s01, y01 = bins[i] / 10, grades[i] / 3
        want = ndcg_ref(s01, grades[i], 6)
        assert parts["ndcg"][i] == pytest.approx(want, abs=1e-5)
        assert parts["dist"][i] == pytest.approx(1 - np.abs(s01 - y01).mean(), abs=1e-6)
        assert parts["recall"][i] == pytest.approx(recall_ref(s01, grades[i] > 0, 3), abs=1e-6)
        assert r[i] == pytest.approx(parts["ndcg"][i] + 0.5 * parts["recall"][i] + 0.25 * parts["dist"][i], abs=1e-6)
    perfect, p2 = gr.grouprank_reward(np.array([0, 3, 7, 10]), np.array([0, 1, 2, 3]))
    mae = np.mean(np.abs(np.array([0, 0.3, 0.7, 1.0]) - np.array([0, 1, 2, 3]) / 3))
    assert float(perfect) == pytest.approx(1.0 + 0.5 + 0.5 * (1 - mae), abs=1e-6)
    assert float(p2["ndcg"]) == pytest.approx(1.0) and float(p2["recall"]) == pytest.approx(1.0)
    r0, _ = gr.grouprank_reward(bins, grades, format_ok=np.zeros((4, 3), bool))
    assert np.all(np.asarray(r0) == 0)
    # traced weights under jit
    f = jax.jit(lambda b, g, w: gr.grouprank_reward(b, g, weights=w)[0])
    np.testing.assert_allclose(f(bins, grades, jnp.array([1.0, 0.5, 0.25])), r, atol=1e-6)


# ----------------------------------------------------------------------------- scorers

POINT = gr.ScorerConfig(kind="pointwise", dim=6, hidden=(16,))
GROUP = gr.ScorerConfig(kind="groupwise", dim=6, hidden=(16,))
ATTN = gr.ScorerConfig(kind="attention", dim=6, hidden=(16,), n_layers=1, n_heads=2)


@pytest.fixture(scope="module")
def scorer_data():
    rng = np.random.default_rng(6)
    q = rng.normal(size=(3, 6)).astype(np.float32)
    docs = rng.normal(size=(3, 5, 6)).astype(np.float32)
    return q, docs


@pytest.mark.parametrize("cfg", [POINT, GROUP, ATTN], ids=lambda c: c.kind)
def test_scorers_permutation_equivariant(scorer_data, cfg):
    q, docs = scorer_data
    params = gr.init_scorer(jax.random.key(0), cfg)
    perm = np.array([3, 0, 4, 1, 2])
    a = gr.scorer_logits(params, q, docs, cfg=cfg)
    b = gr.scorer_logits(params, q, docs[:, perm], cfg=cfg)
    assert a.shape == (3, 5, gr.N_BINS)
    np.testing.assert_allclose(np.asarray(a)[:, perm], b, atol=1e-5)


def test_pointwise_independent_of_other_docs_groupwise_not(scorer_data):
    q, docs = scorer_data
    pp = gr.init_scorer(jax.random.key(1), POINT)
    gp = gr.init_scorer(jax.random.key(1), GROUP)
    jp = jax.jacobian(lambda d: gr.scorer_logits(pp, q, d, cfg=POINT)[0, 0])(jnp.asarray(docs))  # [11, 3, 5, 6]
    jg = jax.jacobian(lambda d: gr.scorer_logits(gp, q, d, cfg=GROUP)[0, 0])(jnp.asarray(docs))
    assert np.all(np.asarray(jp)[:, 0, 1:] == 0) and np.abs(jp[:, 0, 0]).max() > 0
    assert np.abs(np.asarray(jg)[:, 0, 1:]).max() > 1e-4
    # padded slots do not influence the real ones
    valid = np.array([[True] * 4 + [False]] * 3)
    a = gr.scorer_logits(gp, q, docs, valid, cfg=GROUP)
    b = gr.scorer_logits(gp, q, docs[:, :4], cfg=GROUP)
    np.testing.assert_allclose(np.asarray(a)[:, :4], b, atol=1e-5)
    # group of one loses the group signal: d - d̄ = 0 and d⊥ = 0
    f = np.asarray(gr.groupwise_features(jnp.asarray(q), jnp.asarray(docs[:, :1])))
    assert np.abs(f[..., 6:18]).max() < 1e-5 and np.abs(f[..., :6]).max() > 0.01


def test_param_counts_match():
    n = lambda p: sum(x.size for x in jax.tree.leaves(p))  # noqa: E731
    c = dict(dim=32, hidden=(64, 64))
    shapes = lambda kind: jax.eval_shape(lambda k: gr.init_scorer(k, gr.ScorerConfig(kind=kind, **c)), jax.random.key(0))  # noqa: E731
    a, b = n(shapes("pointwise")), n(shapes("groupwise"))
    assert abs(a - b) / a < 0.1


# ----------------------------------------------------------------------------- grouping and rerank


def test_split_groups():
    t = gr.split_groups(30, 10, 10)
    assert t.shape == (3, 10) and sorted(t.ravel().tolist()) == list(range(30))
    t = gr.split_groups(30, 20, 10)
    counts = np.bincount(t[t >= 0], minlength=30)
    assert set(range(30)) == set(t[t >= 0].tolist()) and np.all(counts[10:] == 2) and np.all(counts[:10] == 1)
    t = gr.split_groups(25, 10, 5)
    counts = np.bincount(t[t >= 0], minlength=25)
    assert np.all(counts[5:] == 2) and (t[-1] == [20, 21, 22, 23, 24, -1, -1, -1, -1, -1]).all()
    t = gr.split_groups(7, 3, 3)
    assert t.tolist() == [[0, 1, 2], [3, 4, 5], [6, -1, -1]]


def test_rerank_is_mean_of_group_scores(scorer_data):
    q, _ = scorer_data
    rng = np.random.default_rng(7)
    cands = rng.normal(size=(3, 7, 6)).astype(np.float32)
    params = gr.init_scorer(jax.random.key(2), GROUP)
    key = jax.random.key(3)
    got = gr.rerank(params, key, q, cands, scorer=GROUP, group_size=4, interval=2, repeats=1, shuffle=False)
    table = gr.split_groups(7, 4, 2)
    total, count = np.zeros((3, 7)), np.zeros((3, 7))
    for row in table:
        idx = row[row >= 0]
        lg = np.asarray(gr.scorer_logits(params, q, cands[:, idx], cfg=GROUP))
        s = (jax.nn.softmax(lg, -1) * np.arange(11)).sum(-1) / 10
        total[:, idx] += s
        count[:, idx] += 1
    np.testing.assert_allclose(got, total / count, atol=1e-5)
    ret = rng.normal(size=(3, 7)).astype(np.float32)
    mixed = gr.rerank(params, key, q, cands, scorer=GROUP, group_size=4, interval=2, repeats=1, shuffle=False,
                      retriever_scores=ret, interp=0.6)  # fmt: skip
    np.testing.assert_allclose(mixed, 0.6 * np.asarray(got) + 0.4 * ret, atol=1e-5)
    # pointwise: any grouping and shuffling gives the same scores
    pp = gr.init_scorer(jax.random.key(4), POINT)
    a = gr.rerank(pp, key, q, cands, scorer=POINT, group_size=7, interval=7, repeats=1, shuffle=False)
    b = gr.rerank(pp, key, q, cands, scorer=POINT, group_size=3, interval=2, repeats=3)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # greedy scores are bins / 10
    gdy = np.asarray(gr.rerank(pp, key, q, cands, scorer=POINT, group_size=7, interval=7, repeats=1, use="greedy"))
    np.testing.assert_allclose(gdy * 10, np.round(gdy * 10), atol=1e-5)


# ----------------------------------------------------------------------------- parser


@pytest.mark.parametrize(
    "text,want",
    [
        ('<reason>r</reason><answer>```json\n{"[1]": 3, "[2]": 9}\n```</answer>', {1: 3, 2: 9}),
        ('junk <answer>```json\n{"[1]]": 3, "[2]": 9}\n```</answer> trailing', {1: 3, 2: 9}),
        ('before {"[1]": 1, "[2]": 2} after', {1: 1, 2: 2}),
        # official AQ-MedAI/Diver behaviour (review of issue 13):
        ('<answer>{"[1]": 0, "[2]": 10', None),  # unclosed object, no fence: no closed object -> 0
        ('<answer>```json\n{"[1]": 0, "[2]": 10\n```</answer>', {1: 0, 2: 10}),  # "}" appended inside a fence
        ('<answer>{"[1]": 4, "[2]": 5}</answer><answer>{"[1]": 1, "[2]": 2}</answer>', {1: 4, 2: 5}),  # first
        ('<answer>{"[1]": 4, "[2]": 5}</answer> <answer>{"[1]": 1, "[2]": 2}', {1: 4, 2: 5}),  # unclosed 2nd
        # unclosed <answer>: the whole text is searched, so the reason's object (the last closed one) wins
        ('<reason>{"[1]": 7, "[2]": 7}</reason><answer>{"[1]": 1, "[2]": 2', {1: 7, 2: 7}),
        ('<answer>```json\n{"[1]": 1, "[2]": 2}\n```\n{"[1]": 9, "[2]": 9}</answer>', {1: 1, 2: 2}),  # fence first
        ('{"[1]": 1, "[2]": 2} then {"[1]": 3, "[2]"', {1: 1, 2: 2}),  # the last *closed* object
        ('<answer>{"[1]": 3, "[2]": NaN}</answer>', None),
        ('<answer>{"[1]": 3, "[2]": Infinity}</answer>', None),
        ("<answer>no json here</answer>", None),
        ('<answer>{"[1]": 3}</answer>', None),  # an id missing
        ('<answer>{"[1]": 3, "[2]": 11}</answer>', None),  # out of range
        ('<answer>{"[1]": 3, "[2]": 2.5}</answer>', None),
    ],
)
def test_parse_group_output(text, want):
    assert gr.parse_group_output(text, 2) == want
    scores, ok = gr.group_scores_from_text(text, 2)
    assert ok == (want is not None)
    if want is None:
        assert np.all(scores == 0)


# ----------------------------------------------------------------------------- GRPO


def test_sample_scores_and_loss_gradient(scorer_data):
    q, docs = scorer_data
    params = gr.init_scorer(jax.random.key(5), GROUP)
    logits = gr.scorer_logits(params, q, docs, cfg=GROUP)
    bins, logp = gr.sample_scores(jax.random.key(6), logits, 4)
    assert bins.shape == (3, 4, 5) and bins.dtype == jnp.int32 and int(bins.max()) <= 10
    np.testing.assert_allclose(logp, gr.score_logprobs(logits, bins), atol=1e-6)
    r, _ = gr.grouprank_reward(bins, np.broadcast_to(np.array([0, 1, 3, 0, 2]), bins.shape))
    adv = grpo_core.group_advantages(r)
    valid = np.ones((3, 5), bool)
    batch = {"q": q, "docs": docs, "valid": valid, "bins": bins, "adv": adv}
    loss_fn = lambda p: gr.grouprank_loss(p, batch, scorer=GROUP)[0]  # noqa: E731
    g = jax.jit(jax.grad(loss_fn))(params)

    def surrogate(p):  # ρ ≡ 1: ∇L = −Σ A ∇log p / #documents
        lp = gr.score_logprobs(gr.scorer_logits(p, q, docs, cfg=GROUP), bins)
        return -jnp.sum(adv[..., None] * lp) / lp.size

    g_ref = jax.jit(jax.grad(surrogate))(params)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # identical samples in a group -> zero advantages, zero gradient
    same = jnp.broadcast_to(bins[:, :1], bins.shape)
    r_same, _ = gr.grouprank_reward(same, np.broadcast_to(np.array([0, 1, 3, 0, 2]), bins.shape))
    adv0 = grpo_core.group_advantages(r_same)
    assert np.all(np.asarray(adv0) == 0)
    g0 = jax.jit(jax.grad(lambda p: gr.grouprank_loss(p, {**batch, "bins": same, "adv": adv0}, scorer=GROUP)[0]))(params)
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(g0))


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs(scorer_data):
    q, docs = scorer_data
    with pytest.raises(ValueError, match="interval"):
        gr.split_groups(10, 4, 5)
    with pytest.raises(ValueError, match="interval"):
        gr.split_groups(10, 4, 0)
    with pytest.raises(ValueError, match="group_size"):
        gr.split_groups(10, 11, 1)
    with pytest.raises(ValueError, match="grades"):
        gr.grouprank_reward(np.array([1, 2]), np.array([0, 4]))
    with pytest.raises(ValueError, match="score_bins"):
        gr.grouprank_reward(np.array([1, 12]), np.array([0, 3]))
    with pytest.raises(ValueError, match="k: expected a positive int"):
        gr.ndcg_at_k(np.ones(3), np.ones(3), 0)
    with pytest.raises(ValueError, match="weights"):
        gr.RewardConfig(weights=(1.0, -0.5, 0.5))
    with pytest.raises(ValueError, match="weights"):
        gr.grouprank_reward(np.array([1, 2]), np.array([0, 3]), weights=np.array([1.0, -1.0, 0.0]))
    with pytest.raises(ValueError, match="gains: expected the shape of scores"):
        gr.ndcg_at_k(np.ones((2, 3)), np.ones((2, 4)), 2)
    with pytest.raises(ValueError, match="scores: contains NaN"):
        gr.ndcg_at_k(np.array([np.nan, 1.0]), np.ones(2), 2)
    with pytest.raises(ValueError, match="tie"):
        gr.ndcg_at_k(np.ones(3), np.ones(3), 2, tie="random")
    with pytest.raises(ValueError, match="kind"):
        gr.ScorerConfig(kind="listwise")
    with pytest.raises(ValueError, match="q: contains"):
        gr.scorer_logits(gr.init_scorer(jax.random.key(0), GROUP), np.full((3, 6), np.nan), docs, cfg=GROUP)
    with pytest.raises(ValueError, match="docs: contains"):
        bad = docs.copy()
        bad[0, 0, 0] = np.nan
        gr.scorer_logits(gr.init_scorer(jax.random.key(0), GROUP), q, bad, cfg=GROUP)
    with pytest.raises(ValueError, match="docs: expected shape"):
        gr.scorer_logits(gr.init_scorer(jax.random.key(0), GROUP), q, docs[:2], cfg=GROUP)
    with pytest.raises(ValueError, match="group"):
        gr.sample_scores(jax.random.key(0), jnp.zeros((2, 3, 11)), 1)
    with pytest.raises(ValueError, match="dist"):
        gr.RewardConfig(dist="kl")
