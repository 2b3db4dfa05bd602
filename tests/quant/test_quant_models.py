"""The in-project models the PTQ papers quantize (zoo.quant.models)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.nn import MLP
from zoo.quant import models as M


@pytest.fixture(scope="module")
def digits():
    return M.digits_split()


@pytest.fixture(scope="module")
def mlp(digits):
    cfg = M.MLPTrainConfig(epochs=3)
    p1, loss = M.train_mlp(jax.random.key(0), digits["x_train"], digits["y_train"], cfg)
    p2, _ = M.train_mlp(jax.random.key(0), digits["x_train"], digits["y_train"], cfg)
    return p1, p2, np.asarray(loss)


def test_digits_split(digits):
    assert digits["x_train"].shape == (1200, 64) and digits["x_test"].shape == (597, 64)
    assert digits["x_train"].dtype == np.float32 and 0.0 <= digits["x_train"].min() and digits["x_train"].max() <= 1.0
    again = M.digits_split()
    np.testing.assert_array_equal(again["y_test"], digits["y_test"])
    assert not np.array_equal(M.digits_split(seed=1)["y_test"], digits["y_test"])
    with pytest.raises(ValueError, match="n_train"):
        M.digits_split(n_train=0)


def test_mlp_matches_flax_module_and_blocks(digits):
    p = M.init_mlp(jax.random.key(1))
    x = jnp.asarray(digits["x_test"][:5])
    ref = MLP((128, 128, 10)).apply({"params": p}, x)
    np.testing.assert_allclose(M.mlp_apply(p, x), ref, rtol=1e-5, atol=1e-5)
    std = float(jnp.std(p["Dense_0"]["kernel"]))
    assert abs(std - np.sqrt(2 / 64)) < 0.03  # He-normal
    for target in ("dense", "dense_relu"):
        f = M.mlp_block_fn(3, target)
        h = x
        for name in M.mlp_layer_names(p):
            h = f(name, p[name], h)
        np.testing.assert_allclose(h, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="target"):
        M.mlp_block_fn(3, "relu")


def test_train_mlp_learns_and_is_deterministic(mlp, digits):
    p1, p2, loss = mlp
    assert loss.shape == (3 * (1200 // 64),)
    assert loss[-10:].mean() < 0.5 * loss[:10].mean()
    jax.tree.map(np.testing.assert_array_equal, p1, p2)
    acc = M.classification_metrics(M.mlp_apply(p1, digits["x_test"]), digits["y_test"])["acc"]
    assert float(acc) > 0.8
    with pytest.raises(ValueError, match="x"):
        M.train_mlp(jax.random.key(0), digits["x_train"][:, :10], digits["y_train"])
    with pytest.raises(ValueError, match="epochs"):
        M.MLPTrainConfig(epochs=0)


def test_outliers_preserve_the_function(mlp, digits):
    p = mlp[0]
    po = M.add_outliers(p)
    x = digits["x_test"][:50]
    np.testing.assert_allclose(M.mlp_apply(po, x), M.mlp_apply(p, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(po["Dense_0"]["kernel"][:, 3], 32 * p["Dense_0"]["kernel"][:, 3], rtol=1e-6)
    np.testing.assert_allclose(po["Dense_1"]["kernel"][17], p["Dense_1"]["kernel"][17] / 32, rtol=1e-6)
    np.testing.assert_array_equal(po["Dense_1"]["kernel"][5], p["Dense_1"]["kernel"][5])
    u = list(M.OUTLIER_UNITS)
    h_o, h = M.mlp_hidden(po, x)[1], M.mlp_hidden(p, x)[1]  # layer 2's inputs: activation outliers
    np.testing.assert_allclose(h_o[:, u], 32 * h[:, u], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="units"):
        M.add_outliers(p, units=(200,))
    with pytest.raises(ValueError, match="layer"):
        M.add_outliers(p, layer=2)


LM = M.TinyLMConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, seq_len=8)


def test_corpus():
    s = M.arithmetic_corpus(0, 500)
    assert s.shape == (500,) and s.min() >= 0 and s.max() < len(M.VOCAB)
    text = "".join(M.VOCAB[i] for i in s)
    eq = text.split(";")[0]
    a, rest = eq.split("+")
    b, c = rest.split("=")
    assert int(a) + int(b) == int(c)
    np.testing.assert_array_equal(M.arithmetic_corpus(0, 500), s)
    w = M.lm_windows(s, 8)
    assert w.shape == ((500 - 1) // 8, 9)
    np.testing.assert_array_equal(w[1, 0], s[8])


def test_lm_is_causal_and_outliers_preserve_it():
    p = M.init_lm(jax.random.key(0), LM)
    tok = jnp.asarray(M.arithmetic_corpus(1, 2 * 9).reshape(2, 9))
    logits = M.lm_apply(p, tok[:, :8], LM)
    assert logits.shape == (2, 8, len(M.VOCAB))
    tok2 = tok.at[:, 6].set((tok[:, 6] + 1) % len(M.VOCAB))
    l2 = M.lm_apply(p, tok2[:, :8], LM)
    np.testing.assert_allclose(l2[:, :6], logits[:, :6], rtol=1e-5, atol=1e-5)
    assert not np.allclose(l2[:, 6:], logits[:, 6:])
    po = M.add_lm_outliers(p, dims=(1, 5), factor=20.0)
    np.testing.assert_allclose(M.lm_apply(po, tok[:, :8], LM), logits, rtol=1e-4, atol=1e-4)
    assert float(jnp.abs(po["block_0"]["ln1"]["scale"][5])) == pytest.approx(20.0)
    ppl = float(M.lm_perplexity(p, tok, LM))
    assert 1.0 < ppl < 10 * len(M.VOCAB)
    with pytest.raises(ValueError, match="n_heads"):
        M.TinyLMConfig(d_model=16, n_heads=3)


def test_train_lm_lowers_perplexity():
    stream = M.arithmetic_corpus(0, 3000)
    p, loss = M.train_lm(jax.random.key(0), stream, LM, M.LMTrainConfig(steps=60, warmup=5, batch_size=16))
    loss = np.asarray(loss)
    assert loss.shape == (60,) and loss[-10:].mean() < 0.9 * loss[:5].mean()
    w = jnp.asarray(M.lm_windows(M.arithmetic_corpus(1, 400), LM.seq_len))
    assert float(M.lm_perplexity(p, w, LM)) < float(M.lm_perplexity(M.init_lm(jax.random.key(0), LM), w, LM))
    with pytest.raises(ValueError, match="stream"):
        M.train_lm(jax.random.key(0), stream[:5], LM)
