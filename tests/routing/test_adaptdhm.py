"""`zoo.routing.adaptdhm`: routing state, hierarchical towers against plain MLPs, baselines, metrics vs sklearn."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.routing import adaptdhm as ad

VOCAB = (7, 5, 3)  # two fields and the domain (3 domains)
# jitted with the (hashable) config static: eager calls of these small nets cost seconds of per-op compiles
INIT = jax.jit(ad.init, static_argnums=1)
APPLY = jax.jit(ad.apply, static_argnums=3, static_argnames=("train",))
LOSS = jax.jit(ad.loss_fn, static_argnums=3)


@pytest.fixture(scope="module")
def setup():
    cfg = ad.CTRConfig(vocab_sizes=VOCAB, emb_dim=2, hidden=(5, 4), K=3)
    params, state = INIT(jax.random.key(0), cfg)
    rng = np.random.default_rng(0)
    x = np.stack([rng.integers(0, v, 12) for v in VOCAB], 1).astype(np.int32)
    return cfg, params, state, x


def _mlp(h, ws, bs=None):
    for i, w in enumerate(ws):
        h = h @ w + (0 if bs is None else bs[i])
        if i < len(ws) - 1:
            h = np.maximum(h, 0)
    return h[:, 0]


def test_route_state(setup):
    cfg, params, state, x = setup
    emb = ad.embed(params, x, cfg)
    np.testing.assert_allclose(emb[:, :2], np.asarray(params["emb"][0])[x[:, 0]])
    a, coeff, new = ad.route(state, emb, cfg, train=True)
    np.testing.assert_allclose(np.linalg.norm(new["centers"], axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(new["centers"], state["centers"])
    np.testing.assert_allclose(coeff.sum(1), 1.0, rtol=1e-5)
    a2, c2, same = ad.route(state, emb, cfg, train=False)
    np.testing.assert_array_equal(same["centers"], state["centers"])
    still = ad.route(state, emb, dataclasses.replace(cfg, beta=1.0), train=True)[2]
    np.testing.assert_allclose(still["centers"], state["centers"], atol=1e-6)


def test_towers_against_plain_mlps(setup):
    cfg, params, state, x = setup
    emb = np.asarray(ad.embed(params, x, cfg))
    logits = np.asarray(ad.towers_logits(params, emb))
    for k in range(3):
        ws = [np.asarray(s["w"]) * np.asarray(c["w"][k]) for s, c in zip(params["shared"], params["cluster"])]
        np.testing.assert_allclose(logits[:, k], _mlp(emb, ws), rtol=1e-5, atol=1e-6)
    # W^0 ≡ 1: tower k is the independent MLP with weights W^k
    ones = {**params, "shared": [{"w": jnp.ones_like(s["w"])} for s in params["shared"]]}
    np.testing.assert_allclose(ad.towers_logits(ones, emb)[:, 1], _mlp(emb, [np.asarray(c["w"][1]) for c in params["cluster"]]),
                               rtol=1e-5, atol=1e-6)
    # grouped GEMMs on cluster-sorted rows equal the dense all-K evaluation + gather (with biases too)
    assign = np.array([2, 0, 1, 1, 0, 2, 2, 2, 0, 1, 0, 0])
    biased = {**params, "shared": [{**s, "b": jnp.full(s["w"].shape[1], 0.1)} for s in params["shared"]],
              "cluster": [{**c, "b": jnp.arange(c["w"].shape[0] * c["w"].shape[2], dtype=jnp.float32).reshape(
                  c["w"].shape[0], -1) / 10} for c in params["cluster"]]}
    dense = np.asarray(ad.towers_logits(biased, emb))[np.arange(12), assign]
    np.testing.assert_allclose(ad.towers_logits_ragged(biased, emb, assign), dense, rtol=1e-5, atol=1e-6)


def test_single_cluster_is_a_dnn_and_grads_follow_the_selected_tower(setup):
    cfg, params, state, x = setup
    c1 = dataclasses.replace(cfg, K=1)
    p1, s1 = INIT(jax.random.key(1), c1)
    logit, aux, _ = APPLY(p1, s1, x, c1, train=True)
    ws = [np.asarray(s["w"]) * np.asarray(c["w"][0]) for s, c in zip(p1["shared"], p1["cluster"])]
    np.testing.assert_allclose(logit, _mlp(np.asarray(ad.embed(p1, x, c1)), ws), rtol=1e-5, atol=1e-6)
    assert np.all(aux["assign"] == 0)
    # embedding gradients are those of the selected tower only
    y = (np.arange(12) % 2).astype(np.int32)
    assign = ad.route(state, ad.embed(params, x, cfg), cfg, train=True)[0]
    g = jax.jit(jax.grad(lambda p: ad.loss_fn(p, state, {"x": x, "y": y}, cfg)[0]))(params)

    def masked(p):
        logits = ad.towers_logits(p, ad.embed(p, x, cfg))
        lg = jnp.sum(logits * jax.nn.one_hot(assign, 3), 1)
        return jnp.mean(jnp.maximum(lg, 0) - lg * y + jnp.log1p(jnp.exp(-jnp.abs(lg))))

    g2 = jax.jit(jax.grad(masked))(params)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert "centers" not in jax.tree.leaves(g)  # the centres are state, never trained


def test_baselines_run_and_bce(setup):
    cfg, _, _, x = setup
    y = (np.arange(12) % 2).astype(np.int32)
    cluster = x[:, -1] % 2
    for model in ("dnn", "shared_bottom", "mmoe", "star", "oracle"):
        c = dataclasses.replace(cfg, model=model, K=2)
        p, s = INIT(jax.random.key(2), c)
        loss, (m, _) = LOSS(p, s, {"x": x, "y": y, "cluster": cluster}, c)
        logit = APPLY(p, s, x, c, cluster=cluster)[0]
        prob = 1 / (1 + np.exp(-np.asarray(logit, np.float64)))
        bce = -np.mean(y * np.log(prob) + (1 - y) * np.log(1 - prob))
        assert loss == pytest.approx(bce, rel=1e-5), model
    # shared-bottom picks the tower of the sample's domain
    c = dataclasses.replace(cfg, model="shared_bottom")
    p, s = INIT(jax.random.key(3), c)
    x2 = x.copy()
    x2[:, -1] = (x[:, -1] + 1) % 3
    assert not np.allclose(APPLY(p, s, x, c)[0], APPLY(p, s, x2, c)[0])


def test_metrics_match_sklearn():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
    assert ad.auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    g = rng.integers(0, 3, 300)
    per = ad.grouped_auc(y, p, g)
    assert per[1] == pytest.approx(roc_auc_score(y[g == 1], p[g == 1]))
    a, b = rng.integers(0, 3, 200), rng.integers(0, 4, 200)
    assert ad.nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-10)
    assert ad.adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-10)
    assert ad.adjusted_rand_index(a, (a + 1) % 3) == pytest.approx(1.0)


def test_vmapped_training_matches_sequential(setup):
    import optax

    cfg, _, _, x = setup
    y = (np.arange(12) % 2).astype(np.int32)
    opt = optax.adam(1e-2)

    def run(key):
        p, s = ad.init(key, cfg)
        o = opt.init(p)
        for _ in range(2):
            (_, (_, s)), g = jax.value_and_grad(ad.loss_fn, has_aux=True)(p, s, {"x": x, "y": y}, cfg)
            u, o = opt.update(g, o, p)
            p = optax.apply_updates(p, u)
        return p, s

    keys = jax.random.split(jax.random.key(5), 2)
    pv, sv = jax.jit(jax.vmap(run))(keys)
    p1, s1 = jax.jit(run)(keys[1])
    for a, b in zip(jax.tree.leaves((pv, sv)), jax.tree.leaves((p1, s1))):
        np.testing.assert_allclose(a[1], b, rtol=1e-4, atol=1e-6)
