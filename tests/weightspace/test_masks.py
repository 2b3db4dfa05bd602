"""zoo.weightspace.masks: top-k rule vs a numpy reference, ties, scopes, masked training, same-norm."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo.weightspace import masks as mk


def _params(seed=0):
    r = np.random.default_rng(seed)
    return {"a": {"w": jnp.asarray(r.normal(size=(4, 5)), jnp.float32),
                  "b": jnp.asarray(r.normal(size=5), jnp.float32)},
            "u": jnp.asarray(r.normal(size=(3, 6)), jnp.float32)}


def _np_topk(scores: np.ndarray, density: float) -> np.ndarray:
    """Reference: sort, k-th smallest (1-based) as threshold, keep strictly greater."""
    flat = scores.ravel()
    k = int((1 - density) * flat.size)
    if k == 0:
        return np.ones_like(scores, bool)
    return scores > np.sort(flat)[k - 1]


@pytest.mark.parametrize("density", [0.1, 0.4, 0.75, 1.0])
def test_global_magnitude_mask_matches_reference_and_count(density):
    p = _params()
    m = mk.magnitude_mask(p, density)
    np.testing.assert_array_equal(np.asarray(m["a"]["b"]), 1.0)  # 1-D leaf not prunable by default
    allw = np.concatenate([np.abs(np.asarray(p["a"]["w"])).ravel(), np.abs(np.asarray(p["u"])).ravel()])
    ref = _np_topk(allw, density)
    got = np.concatenate([np.asarray(m["a"]["w"]).ravel(), np.asarray(m["u"]).ravel()])
    np.testing.assert_array_equal(got, ref.astype(np.float32))
    n = allw.size
    assert got.sum() == n - int((1 - density) * n)
    assert float(mk.mask_density(m, params=p)) == pytest.approx(got.sum() / n)


def test_local_scope_counts_per_tensor():
    p = _params(1)
    m = mk.magnitude_mask(p, 0.5, scope="local")
    for leaf, mm in ((p["a"]["w"], m["a"]["w"]), (p["u"], m["u"])):
        np.testing.assert_array_equal(np.asarray(mm), _np_topk(np.abs(np.asarray(leaf)), 0.5).astype(np.float32))
        assert np.asarray(mm).sum() == leaf.size - int(0.5 * leaf.size)


def test_ties_at_threshold_are_pruned():
    p = {"w": jnp.asarray([[1.0, 1.0, 1.0, 2.0]])}
    m = mk.magnitude_mask(p, 0.5)  # k = 2, threshold = 1: all three 1s pruned
    np.testing.assert_array_equal(np.asarray(m["w"]), [[0.0, 0.0, 0.0, 1.0]])


def test_prunable_paths_and_callable():
    p = _params()
    m = mk.magnitude_mask(p, 0.3, prunable=["u"])
    np.testing.assert_array_equal(np.asarray(m["a"]["w"]), 1.0)
    assert np.asarray(m["u"]).sum() == 18 - int(0.7 * 18)
    m2 = mk.magnitude_mask(p, 0.3, prunable=lambda path, leaf: path == "u")
    np.testing.assert_array_equal(np.asarray(m2["u"]), np.asarray(m["u"]))


def test_random_mask_density_independent_of_magnitude_and_keys():
    p = _params()
    m1 = mk.random_mask(jax.random.key(0), p, 0.5)
    m2 = mk.random_mask(jax.random.key(1), p, 0.5)
    assert float(mk.mask_density(m1, params=p)) == pytest.approx(19 / 38)
    assert not np.array_equal(np.asarray(m1["u"]), np.asarray(m2["u"]))
    # vmap over keys equals separate calls
    keys = jax.vmap(lambda s: jax.random.key(s, impl="rbg"))(jnp.arange(2))
    mv = jax.jit(jax.vmap(lambda k: mk.random_mask(k, p, 0.5)))(keys)  # rbg keys: vmapped draws differ from unbatched
    for i in range(2):
        kept = sum(float(np.asarray(mv[k][i]).sum()) for k in ("u",)) + float(np.asarray(mv["a"]["w"][i]).sum())
        assert kept == 19
    assert not np.array_equal(np.asarray(mv["u"][0]), np.asarray(mv["u"][1]))


def test_vmap_and_jit_magnitude_mask():
    ps = jax.tree.map(lambda *a: jnp.stack(a), _params(0), _params(1))
    mv = jax.jit(jax.vmap(lambda q: mk.magnitude_mask(q, 0.4)))(ps)
    for i in range(2):
        ref = mk.magnitude_mask(_params(i), 0.4)
        np.testing.assert_array_equal(np.asarray(mv["u"][i]), np.asarray(ref["u"]))


def test_masked_training_keeps_pruned_at_zero_and_zero_gradient():
    p = _params()
    m = mk.magnitude_mask(p, 0.4)
    opt = mk.masked_optimizer(optax.adamw(1e-2, weight_decay=1.0), m)
    w = mk.apply_mask(p, m)

    def loss(q):
        q = mk.apply_mask(q, m)
        return sum(jnp.sum(jnp.sin(x) * x) for x in jax.tree.leaves(q))

    g = jax.grad(loss)(w)
    for gl, ml in zip(jax.tree.leaves(g), jax.tree.leaves(m)):
        assert np.all(np.asarray(gl)[np.asarray(ml) == 0] == 0)
    @jax.jit
    def three_steps(w):
        st = opt.init(w)
        for _ in range(3):
            u, st = opt.update(jax.grad(loss)(w), st, w)
            w = optax.apply_updates(w, u)
        return w

    w = three_steps(w)
    for wl, ml in zip(jax.tree.leaves(w), jax.tree.leaves(m)):
        assert np.all(np.asarray(wl)[np.asarray(ml) == 0] == 0)
        assert np.any(np.asarray(wl)[np.asarray(ml) == 1] != 0)


def test_same_norm_rescale_matches_ticket_norm():
    p = _params()
    m = mk.magnitude_mask(p, 0.4)
    for norm, f in (("l1", lambda x: np.abs(x).sum()), ("l2", lambda x: np.sqrt((x**2).sum()))):
        q, r = mk.same_norm_rescale(p, m, norm=norm)
        mats = ("u",)
        ticket = f(np.asarray(p["a"]["w"] * m["a"]["w"])) + sum(f(np.asarray(p[k] * m[k])) for k in mats)
        dense = f(np.asarray(q["a"]["w"])) + sum(f(np.asarray(q[k])) for k in mats)
        assert dense == pytest.approx(ticket, rel=1e-5)
        assert 0 < float(r) < 1
        np.testing.assert_allclose(np.asarray(q["a"]["b"]), np.asarray(p["a"]["b"]) * float(r), rtol=1e-6)


def test_density_one_is_all_ones():
    p = _params()
    m = mk.magnitude_mask(p, 1.0)
    for leaf in jax.tree.leaves(m):
        np.testing.assert_array_equal(np.asarray(leaf), 1.0)
    assert jax.tree.structure(m) == jax.tree.structure(mk.ones_mask(p))
