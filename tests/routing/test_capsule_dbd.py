"""`zoo.routing.capsule_dbd`: capsule nets, DBD against Counter/sklearn references, the ensemble and the losses."""

from __future__ import annotations

import math
import warnings
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.routing import capsule_dbd as cd

V, D = 30, 3


@pytest.fixture(scope="module")
def net():
    model = cd.CapsNetText(vocab_size=V, embed_dim=4, hidden=3, num_classes=2, caps_dim=3, num_iters=3, dropout=0.0)
    params = jax.jit(lambda k: cd.init_ensemble(model, k, D))(jax.random.key(0))
    return model, params, lambda P, t, m: cd.ensemble_apply(model, P, t, m)


@pytest.fixture(scope="module")
def texts():
    rng = np.random.default_rng(0)
    lengths = np.array([5, 3, 6, 1, 0])
    tok = np.zeros((5, 6), np.int32)
    for i, n in enumerate(lengths):
        tok[i, :n] = rng.integers(2, V, n)
    return tok, np.arange(6)[None] < lengths[:, None]


def test_capsule_net_lengths_padding_vmap_grad(net, texts):
    model, params, fwd = net
    tok, mask = texts
    lengths = np.asarray(fwd(params, tok, mask))
    assert lengths.shape == (D, 5, 2)
    assert np.all(lengths >= 0) and np.all(lengths < 1)
    assert np.all(lengths[:, 4] == 0)  # empty text: zero capsules ...
    np.testing.assert_allclose(cd.class_probs(lengths[:, 4]), 0.5)  # ... and uniform class probabilities
    # appending padding changes nothing
    padded = fwd(params, np.pad(tok, ((0, 0), (0, 3))), np.pad(mask, ((0, 0), (0, 3))))
    np.testing.assert_allclose(padded, lengths, rtol=1e-5, atol=1e-6)
    # vmap over the domain axis: net d gives the same lengths wherever it sits in the stack
    for d in range(D):
        copies = jax.tree.map(lambda a: jnp.stack([a[d]] * D), params)
        np.testing.assert_allclose(fwd(copies, tok, mask), np.stack([lengths[d]] * D), rtol=1e-5, atol=1e-6)
    # the per-domain loss trains every net on its own batch; gradients are finite
    batch = {"tokens": np.stack([tok] * D), "mask": np.stack([mask] * D), "y": np.zeros((D, 5), np.int32),
             "weights": np.ones((D, 2), np.float32)}
    g = jax.jit(jax.grad(lambda P: cd.domain_loss(model, P, batch)))(params)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))


def test_margin_loss_closed_form():
    lengths = np.array([[0.95, 0.05], [0.3, 0.6], [0.5, 0.5]], np.float32)
    y = np.array([0, 0, 1])
    per = [0.0, (0.9 - 0.3) ** 2 + 0.5 * (0.6 - 0.1) ** 2, (0.9 - 0.5) ** 2 + 0.5 * (0.5 - 0.1) ** 2]
    np.testing.assert_allclose(cd.margin_loss(lengths, y), np.mean(per), rtol=1e-6)
    w = np.array([2.0, 0.5], np.float32)
    np.testing.assert_allclose(cd.margin_loss(lengths, y, w), np.mean(np.array(per) * w[y]), rtol=1e-6)
    assert float(cd.margin_loss(lengths[:1], y[:1])) == 0.0


def test_class_weights():
    np.testing.assert_allclose(cd.class_weights([0, 1, 0, 1], 2), [1.0, 1.0])
    np.testing.assert_allclose(cd.class_weights([0, 0, 0, 1], 2), [4 / 6, 2.0])
    with pytest.warns(UserWarning, match="no example"):
        w = cd.class_weights([0, 0, 2], 3)
    np.testing.assert_allclose(w, [0.5, 10 * 1.0, 1.0])


def _counter_dbd(docs, doms, Dn, variant="tfidf"):
    """Independent DBD: Counters per domain, dict-of-dict table."""
    c = [Counter() for _ in range(Dn)]
    for toks, d in zip(docs, doms):
        c[d].update(toks)
    n = [sum(ci.values()) for ci in c]
    vocab = set().union(*c)
    table = {}
    for w in vocab:
        df = sum(1 for ci in c if ci[w] > 0)
        for d in range(Dn):
            tf = c[d][w] / n[d]
            if variant == "tfidf":
                table[w, d] = tf * math.log(Dn / df)
            else:
                table[w, d] = tf * c[d][w] / sum(ci[w] for ci in c)
    return table


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_dbd_against_counter_and_sklearn():
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.default_rng(1)
    tok = rng.integers(1, 12, (20, 7)).astype(np.int32)
    mask = np.arange(7)[None] < rng.integers(1, 8, 20)[:, None]
    doms = np.arange(20) % 3
    docs = [list(t[m]) for t, m in zip(tok, mask)]
    for variant in ("tfidf", "freq_uniq"):
        ref = _counter_dbd(docs, doms, 3, variant)
        table = cd.fit_dbd(tok, mask, doms, 12, 3, variant)
        for (w, d), val in ref.items():
            assert table[w, d] == pytest.approx(val, abs=1e-12)
        assert np.all(table[[w for w in range(12) if all((w, d) not in ref for d in range(3))]] == 0)
    # sklearn: TfidfTransformer(norm=None, smooth_idf=False) on the domain-count matrix gives c (idf + 1)
    counts = np.zeros((3, 12))
    for t, m, d in zip(tok, mask, doms):
        np.add.at(counts[d], t[m], 1)
    sk = TfidfTransformer(norm=None, smooth_idf=False).fit_transform(counts).toarray()
    ours = (sk - counts) / counts.sum(1, keepdims=True)
    np.testing.assert_allclose(cd.fit_dbd(tok, mask, doms, 12, 3).T, ours, atol=1e-12)
    scores = np.asarray(cd.dbd_scores(cd.fit_dbd(tok, mask, doms, 12, 3), tok, mask))
    manual = np.array([[sum(ref_t for ref_t in (cd.fit_dbd(tok, mask, doms, 12, 3)[w, d] for w in doc)) for d in range(3)]
                       for doc in docs])
    np.testing.assert_allclose(scores, manual, rtol=1e-5, atol=1e-7)


def test_dbd_weights_and_ensemble():
    # domain 0 owns tokens 1-2, domain 1 owns 3-4, token 5 is everywhere, token 6 never appears
    tok = np.array([[1, 2, 5], [3, 4, 5], [1, 5, 0], [3, 5, 0], [5, 5, 5]], np.int32)
    mask = tok > 0
    table = cd.fit_dbd(tok, mask, np.array([0, 1, 0, 1, 1]), 8, 2)
    q = np.array([[1, 2, 0], [6, 5, 0], [1, 3, 0]], np.int32)
    w = np.asarray(cd.dbd_weights(cd.dbd_scores(table, q, q > 0)))
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w[0], [1.0, 0.0])  # only domain-0 tokens: ω = e_0
    np.testing.assert_allclose(w[1], [0.5, 0.5])  # unknown + everywhere-token: uniform, no NaN
    assert np.all(w >= 0)
    p_D = np.random.default_rng(2).dirichlet([1, 1], size=(2, 3)).astype(np.float32)
    onehot = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    np.testing.assert_allclose(cd.ensemble_combine(p_D, onehot), p_D[[0, 1, 0], [0, 1, 2]], rtol=1e-6)
    perm = [1, 0]  # permuting the nets and the weight columns together leaves the mixture unchanged
    np.testing.assert_allclose(cd.ensemble_combine(p_D[perm], w[:, perm]), cd.ensemble_combine(p_D, w), rtol=1e-6)


def test_wcapsule_predict_and_metrics(net, texts):
    from sklearn.metrics import f1_score

    model, params, _ = net
    tok, mask = texts
    table = np.random.default_rng(3).random((V, D))
    p, pol, dom = cd.wcapsule_predict(model, params, table, tok, mask)
    np.testing.assert_allclose(np.asarray(p).sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(pol, np.asarray(p).argmax(1))
    np.testing.assert_array_equal(dom, np.asarray(cd.dbd_scores(table, tok, mask)).argmax(1))
    y, pred = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    m = cd.binary_metrics(y, pred)
    assert m["accuracy"] == 0.6 and m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["gmean"] == pytest.approx(math.sqrt(2 / 3 * 1 / 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(cd.class_probs(jnp.array([[0.2, 0.6]]), "softmax", 1.0),
                                   jax.nn.softmax(jnp.array([[0.2, 0.6]])), rtol=1e-6)
