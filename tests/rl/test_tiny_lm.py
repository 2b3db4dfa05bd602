"""zoo.rl.tiny_lm: sampled == teacher-forced log-probs, EOS masking, grads, vmap, bad input."""

import functools
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.rl import tiny_lm as tl

V, LP, MAX_NEW, B = 7, 3, 5, 6
CFGS = {
    "gru": tl.TinyLMConfig(vocab=V, d_model=8, n_layers=2, kind="gru"),
    "transformer": tl.TinyLMConfig(vocab=V, d_model=8, n_layers=1, kind="transformer", n_heads=2, max_len=12),
}
PROMPT = np.random.default_rng(0).integers(2, V, (B, LP)).astype(np.int32)


def _params(kind, seed=0):
    p = tl.init_tiny_lm(jax.random.key(seed), CFGS[kind])
    # make EOS likely so that some rows end early
    p["head"] = p["head"].at[:, CFGS[kind].eos_id].add(0.6)
    return p


_logits = jax.jit(tl.tiny_lm_logits, static_argnames=("cfg",))


@functools.partial(jax.jit, static_argnames=("cfg", "extra"))
def _sample_and_score(params, key, prompt, cfg, temperature, extra=True):
    ro = tl.sample(params, key, prompt, cfg=cfg, max_new=MAX_NEW, temperature=temperature)
    tf = tl.completion_logprobs(params, prompt, ro.tokens, cfg=cfg, temperature=temperature)
    if not extra:
        return ro, tf
    full = tl.completion_logprobs(params, prompt, ro.tokens, cfg=cfg, full=True)
    return ro, tf, full, tl.completion_logprobs_and_entropy(params, prompt, ro.tokens, cfg=cfg)


@pytest.fixture(scope="module", params=["gru", "transformer"])
def sampled(request):
    kind = request.param
    params = _params(kind)
    ro, tf, full, lp_ent = _sample_and_score(params, jax.random.key(1), PROMPT, CFGS[kind], 1.0)
    return kind, params, ro, tf, full, lp_ent


def test_sampled_logp_equals_teacher_forced(sampled):
    _, _, ro, tf, _, _ = sampled
    m = np.asarray(ro.mask)
    np.testing.assert_allclose(np.asarray(ro.logp)[m], np.asarray(tf)[m], atol=1e-5)
    assert np.all(np.asarray(ro.logp)[~m] == 0.0)


def test_eos_masking(sampled):
    kind, _, ro, _, _, _ = sampled
    cfg = CFGS[kind]
    tok, m = np.asarray(ro.tokens), np.asarray(ro.mask)
    assert tok.shape == m.shape == (B, MAX_NEW) and tok.dtype == np.int32 and m.dtype == bool
    ended = 0
    for row_t, row_m in zip(tok, m):
        eos = np.flatnonzero(row_t == cfg.eos_id)
        n_valid = eos[0] + 1 if eos.size else MAX_NEW
        ended += bool(eos.size)
        assert row_m.tolist() == [True] * n_valid + [False] * (MAX_NEW - n_valid)  # EOS kept, prefix mask
        assert np.all(row_t[n_valid:] == cfg.pad_id)
    assert 0 < ended < B  # the test exercises both cases


def test_temperature_logp_and_determinism():
    params = _params("gru")
    cfg = CFGS["gru"]
    ro, tf, _, _ = _sample_and_score(params, jax.random.key(2), PROMPT, cfg, 0.7)  # traced temperature
    m = np.asarray(ro.mask)
    np.testing.assert_allclose(np.asarray(ro.logp)[m], np.asarray(tf)[m], atol=1e-5)
    ro2 = _sample_and_score(params, jax.random.key(2), PROMPT, cfg, 0.7)[0]
    ro3 = _sample_and_score(params, jax.random.key(3), PROMPT, cfg, 0.7)[0]
    assert np.array_equal(ro.tokens, ro2.tokens)
    assert not np.array_equal(ro.tokens, ro3.tokens)


def test_full_logprobs_and_logits(sampled):
    kind, params, ro, tf, (logp, full), (lp, ent) = sampled
    cfg = CFGS[kind]
    assert full.shape == (B, MAX_NEW, V)
    np.testing.assert_allclose(jax.scipy.special.logsumexp(full, -1), 0.0, atol=1e-5)
    np.testing.assert_allclose(logp, tf, atol=1e-6)
    # causal: changing a later token leaves earlier logits unchanged
    toks = np.concatenate([PROMPT, np.asarray(ro.tokens)], 1)
    toks2 = toks.copy()
    toks2[:, -1] = (toks2[:, -1] + 1) % V
    a, b = _logits(params, toks, cfg=cfg), _logits(params, toks2, cfg=cfg)
    np.testing.assert_allclose(a[:, :-1], b[:, :-1], atol=1e-6)
    assert not np.allclose(a[:, -1], b[:, -1])
    np.testing.assert_allclose(lp, tf, atol=1e-6)
    assert np.all((np.asarray(ent) > 0) & (np.asarray(ent) <= np.log(V) + 1e-5))


def test_param_count_matches_spec():
    cfg = tl.TinyLMConfig(vocab=32, d_model=64)
    shapes = jax.eval_shape(lambda k: tl.init_tiny_lm(k, cfg), jax.random.key(0))
    assert tl.num_params(shapes) == 32 * 64 + 3 * (2 * 64 * 64 + 64) + 64 * 32  # 28,864 (~30k)


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_grad_matches_finite_differences_float64(kind):
    cfg = CFGS[kind]
    comp = np.array([[3, 4, 1, 0], [5, 1, 0, 0]], np.int32)
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), _params(kind))
        mask = jnp.asarray(comp > 0, jnp.float64)

        def f(p):
            return (tl.completion_logprobs(p, PROMPT[:2], comp, cfg=cfg) * mask).sum()

        vg = jax.jit(jax.value_and_grad(f))
        g = vg(params)[1]
        # perturb two parameters: one embedding entry and one head entry
        for path, idx in [(("embed",), (3, 2)), (("head",), (1, 4))]:
            leaf = params[path[0]]
            h = 1e-6

            def shifted(s, leaf=leaf, path=path, idx=idx):
                p = dict(params)
                p[path[0]] = leaf.at[idx].add(s)
                return vg(p)[0]

            fd = (shifted(h) - shifted(-h)) / (2 * h)
            assert float(g[path[0]][idx]) == pytest.approx(float(fd), rel=1e-3, abs=1e-8)
            assert abs(float(fd)) > 1e-4  # the entry matters


def test_vmap_over_seeds_equals_loop():
    cfg = tl.TinyLMConfig(vocab=V, d_model=8)

    def run(key):
        k1, k2 = jax.random.split(key)
        ro = tl.sample(tl.init_tiny_lm(k1, cfg), k2, PROMPT, cfg=cfg, max_new=MAX_NEW)
        return ro.tokens, ro.logp

    keys = jax.random.split(jax.random.key(5), 3)
    vt, vl = jax.jit(jax.vmap(run))(keys)
    run1 = jax.jit(run)
    for i in range(3):
        t, lp = run1(keys[i])
        np.testing.assert_array_equal(vt[i], t)
        np.testing.assert_allclose(vl[i], lp, atol=1e-6)


def test_allowed_tokens_and_greedy():
    cfg = tl.TinyLMConfig(vocab=V, d_model=8, allowed_tokens=(1, 3, 4))
    params = tl.init_tiny_lm(jax.random.key(0), cfg)

    @jax.jit
    def draw(key):
        return (tl.sample(params, key, PROMPT, cfg=cfg, max_new=3),
                tl.sample(params, key, PROMPT, cfg=cfg, max_new=3, greedy=True))

    (ro, g), (_, g2) = draw(jax.random.key(0)), draw(jax.random.key(8))
    assert set(np.asarray(ro.tokens)[np.asarray(ro.mask)].tolist()) <= {1, 3, 4}
    assert np.array_equal(g.tokens, g2.tokens)
    assert np.all(np.asarray(g.logp)[np.asarray(g.mask)] <= 0)


def test_sft_loss_is_masked_nll():
    cfg = CFGS["gru"]
    params = _params("gru")
    target = np.array([[3, 4, 1], [5, 1, 0]] * 3, np.int32)
    tm = target > 0
    lp, loss = jax.jit(lambda p: (tl.completion_logprobs(p, PROMPT, target, cfg=cfg),
                                  tl.sft_loss(p, PROMPT, target, tm, cfg=cfg)))(params)
    assert float(loss) == pytest.approx(-np.asarray(lp)[tm].mean(), rel=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("zoo.kernels.fused_logprob") is None,
                    reason="zoo.kernels.fused_logprob not written yet")
def test_use_kernel_matches_dense():
    cfg = CFGS["gru"]
    kcfg = tl.TinyLMConfig(vocab=V, d_model=8, n_layers=2, use_kernel=True)
    params = _params("gru")
    comp = np.array([[3, 4, 1, 0, 0]] * 2, np.int32)
    a = jax.jit(lambda p: tl.completion_logprobs_and_entropy(p, PROMPT[:2], comp, cfg=kcfg))(params)
    b = tl.completion_logprobs_and_entropy(params, PROMPT[:2], comp, cfg=cfg)
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)
    np.testing.assert_allclose(a[1], b[1], atol=1e-5)


def test_bad_inputs():
    cfg = CFGS["gru"]
    params = _params("gru")
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="temperature"):
        tl.sample(params, key, PROMPT, cfg=cfg, max_new=3, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        tl.completion_logprobs(params, PROMPT, PROMPT, cfg=cfg, temperature=-1.0)
    with pytest.raises(ValueError, match="max_new"):
        tl.sample(params, key, PROMPT, cfg=cfg, max_new=0)
    with pytest.raises(ValueError, match="prompt.*token ids"):
        tl.sample(params, key, PROMPT + V, cfg=cfg, max_new=3)
    with pytest.raises(ValueError, match="prompt.*dtype"):
        tl.sample(params, key, PROMPT.astype(np.float32), cfg=cfg, max_new=3)
    with pytest.raises(ValueError, match="completion.*rows"):
        tl.completion_logprobs(params, PROMPT, PROMPT[:2], cfg=cfg)
    with pytest.raises(ValueError, match="max_len"):
        tl.sample(_params("transformer"), key, PROMPT, cfg=CFGS["transformer"], max_new=20)
    with pytest.raises(ValueError, match="kind"):
        tl.TinyLMConfig(vocab=V, kind="lstm")
    with pytest.raises(ValueError, match="n_heads"):
        tl.TinyLMConfig(vocab=V, d_model=6, kind="transformer", n_heads=4)
    with pytest.raises(ValueError, match="eos_id"):
        tl.TinyLMConfig(vocab=V, eos_id=0)
    with pytest.raises(ValueError, match="vocab"):
        tl.TinyLMConfig(vocab=1)
    with pytest.raises(ValueError, match="allowed_tokens"):
        tl.TinyLMConfig(vocab=V, allowed_tokens=(1, V))
    with pytest.raises(ValueError, match="cfg"):
        tl.init_tiny_lm(key, {"vocab": V})
    with pytest.raises(ValueError, match="target_mask"):
        tl.sft_loss(params, PROMPT, PROMPT, np.ones((B, 2), bool), cfg=cfg)
