"""zoo.weightspace.core: specs, permutations (function-preserving), interpolation, barriers, merging."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.weightspace import core


def _mlp_params(key, dims=(5, 7, 6, 3)):
    ks = jax.random.split(key, len(dims) - 1)
    return {f"Dense_{i}": {"kernel": jax.random.normal(k, (a, b)), "bias": jax.random.normal(jax.random.fold_in(k, 1), (b,))}
            for i, (k, a, b) in enumerate(zip(ks, dims[:-1], dims[1:]))}


def _mlp_apply(p, x):
    n = len(p)
    for i in range(n):
        x = x @ p[f"Dense_{i}"]["kernel"] + p[f"Dense_{i}"]["bias"]
        if i < n - 1:
            x = jnp.tanh(x)
    return x


class _CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        for i in range(2):
            x = nn.Conv(4 + i, (3, 3), name=f"Conv_{i}")(x)
            x = nn.LayerNorm(name=f"LayerNorm_{i}")(x)
            x = nn.relu(x)
        x = x.mean((1, 2))
        x = nn.relu(nn.Dense(6, name="Dense_0")(x))
        return nn.Dense(3, name="Dense_1")(x)


class _Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.LayerNorm(name="ln1")(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8, name="attn")(h, h, mask=nn.make_causal_mask(x[..., 0]))
        h = nn.LayerNorm(name="ln2")(x)
        return x + nn.Dense(8, name="mlp_out")(nn.gelu(nn.Dense(12, name="mlp_in")(h)))


class _GPT(nn.Module):
    @nn.compact
    def __call__(self, tok):
        x = nn.Embed(11, 8, name="embed")(tok) + nn.Embed(5, 8, name="pos_embed")(jnp.arange(tok.shape[-1]))
        for l in range(2):
            x = _Block(name=f"block_{l}")(x)
        return nn.Dense(11, name="unembed")(nn.LayerNorm(name="ln_f")(x))


@pytest.fixture(scope="module")
def mlp():
    p = _mlp_params(jax.random.key(0))
    return p, core.mlp_spec(2), jax.random.normal(jax.random.key(1), (4, 5))


def test_flatten_roundtrip(mlp):
    p, _, _ = mlp
    flat = core.flatten_paths(p)
    assert set(flat) == {f"Dense_{i}/{k}" for i in range(3) for k in ("kernel", "bias")}
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), core.unflatten_paths(flat), p))


def test_mlp_permutation_preserves_function_and_composes(mlp):
    p, spec, x = mlp
    assert core.perm_sizes(spec, p) == {"P_0": 7, "P_1": 6}
    a, b = core.random_perms(jax.random.key(2), spec, p), core.random_perms(jax.random.key(3), spec, p)
    pa = core.apply_permutation(spec, a, p)
    np.testing.assert_allclose(_mlp_apply(pa, x), _mlp_apply(p, x), atol=1e-5)
    assert not np.allclose(pa["Dense_0"]["kernel"], p["Dense_0"]["kernel"])  # it did permute
    # norm invariance, inverse round trip, composition (the off-by-inverse check)
    np.testing.assert_allclose(core.tree_norm(pa), core.tree_norm(p), rtol=1e-6)
    back = core.apply_permutation(spec, core.invert_perms(a), pa)
    assert core.tree_l2(back, p) == 0
    two = core.apply_permutation(spec, a, core.apply_permutation(spec, b, p))
    assert core.tree_l2(two, core.apply_permutation(spec, core.compose_perms(a, b), p)) == 0
    assert core.tree_l2(two, core.apply_permutation(spec, core.compose_perms(b, a), p)) > 0
    # numpy reference of W' = P W (math convention) on the first layer
    P = np.eye(7)[np.asarray(a["P_0"])]
    np.testing.assert_allclose(np.asarray(pa["Dense_0"]["kernel"]).T, P @ np.asarray(p["Dense_0"]["kernel"]).T, atol=1e-6)
    jp = jax.jit(core.apply_permutation, static_argnums=0)(spec, a, p)
    assert core.tree_l2(jp, pa) == 0


def test_wrong_permutation_changes_function(mlp):
    """A spec that permutes only one side of a hidden layer must break the function (the test can fail)."""
    p, _, x = mlp
    bad = core.spec_from_axes({"Dense_0/kernel": (None, "P_0"), "Dense_0/bias": ("P_0",), "Dense_1/kernel": (None, None),
                               "Dense_1/bias": (None,), "Dense_2/kernel": (None, None), "Dense_2/bias": (None,)})
    pr = core.random_perms(jax.random.key(5), bad, p)
    assert np.abs(_mlp_apply(core.apply_permutation(bad, pr, p), x) - _mlp_apply(p, x)).max() > 1e-3


def test_cnn_and_transformer_permutations_preserve_function():
    # jitted once each: eager flax applies of these tiny nets cost tens of seconds of per-op compiles
    permute = jax.jit(lambda spec, key, p: core.apply_permutation(spec, core.random_perms(key, spec, p), p),
                      static_argnums=0)
    cnn = _CNN()
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
    p = jax.jit(cnn.init)(jax.random.key(1), x)["params"]
    apply = jax.jit(cnn.apply)
    spec = core.cnn_spec(2, 2, norm="layernorm")
    np.testing.assert_allclose(apply({"params": permute(spec, jax.random.key(2), p)}, x), apply({"params": p}, x),
                               atol=1e-5)
    gpt = _GPT()
    tok = jax.random.randint(jax.random.key(3), (2, 5), 0, 11)
    p = jax.jit(gpt.init)(jax.random.key(4), tok)["params"]
    apply = jax.jit(gpt.apply)
    for kw in ({}, {"head_perms": True}):
        spec = core.transformer_spec(2, **kw)
        out = apply({"params": permute(spec, jax.random.key(5), p)}, tok)
        np.testing.assert_allclose(out, apply({"params": p}, tok), atol=1e-4)
    assert "P_qk_0" not in core.transformer_spec(1, rope=True).perm_names
    with pytest.raises(ValueError, match="qk_perms"):
        core.transformer_spec(1, rope=True, qk_perms=True)


def test_spec_validation_errors(mlp):
    p, spec, _ = mlp
    partial = core.spec_from_axes({k: v for k, v in spec.axes.items() if k != "Dense_2/bias"})
    with pytest.raises(ValueError, match="Dense_2/bias.*not covered"):
        core.validate_spec(partial, p)
    assert core.validate_spec(core.spec_from_axes(partial.axes, frozen=["Dense_2/bias"]), p)
    rank = core.spec_from_axes({**spec.axes, "Dense_0/bias": ("P_0", None)})
    with pytest.raises(ValueError, match="Dense_0/bias"):
        core.validate_spec(rank, p)
    size = core.spec_from_axes({**spec.axes, "Dense_2/bias": ("P_0",)})
    with pytest.raises(ValueError, match="P_0"):
        core.validate_spec(size, p)
    with pytest.raises(ValueError, match="twice"):
        core.spec_from_axes({"w": ("P", "P")})
    with pytest.raises(ValueError, match="permutation of"):
        core.apply_permutation(spec, {"P_0": jnp.zeros(7, jnp.int32), "P_1": jnp.arange(6)}, p)


def test_interpolation_and_merge(mlp):
    p, spec, _ = mlp
    q = jax.tree.map(lambda a: a + 1.0, p)
    assert core.tree_l2(core.lerp(0.0, p, q), p) == 0 and core.tree_l2(core.lerp(1.0, p, q), q) == 0
    mid = core.lerp(0.25, p, q)
    np.testing.assert_allclose(mid["Dense_1"]["bias"], p["Dense_1"]["bias"] + 0.25, rtol=1e-6)
    # vmap over t
    ts = jnp.array([0.0, 0.5])
    st = jax.vmap(lambda t: core.lerp(t, p, q))(ts)
    np.testing.assert_allclose(st["Dense_0"]["kernel"][1], core.lerp(0.5, p, q)["Dense_0"]["kernel"], rtol=1e-6)
    m = core.merge([p, q, q], [0.5, 0.25, 0.25])
    np.testing.assert_allclose(m["Dense_2"]["bias"], p["Dense_2"]["bias"] + 0.5, rtol=1e-6)
    assert core.tree_l2(core.merge([p, q]), core.lerp(0.5, p, q)) < 1e-6
    with pytest.raises(ValueError, match="weights"):
        core.merge([p, q], [0.7, 0.7])
    n = sum(a.size for a in jax.tree.leaves(p))
    np.testing.assert_allclose(core.tree_dot(p, q) - core.tree_dot(p, p), sum(float(a.sum()) for a in jax.tree.leaves(p)),
                               rtol=1e-4)
    np.testing.assert_allclose(core.tree_l2(p, q), np.sqrt(n), rtol=1e-6)
    assert abs(float(core.tree_cosine(p, core.tree_scale(3.0, p))) - 1) < 1e-6
    assert core.tree_l2(core.tree_add(core.tree_sub(q, p), p), q) < 1e-5
    assert len(core.tree_unstack(core.tree_stack([p, q, p]))) == 3
    with pytest.raises(ValueError, match="pb"):
        core.lerp(0.5, p, {"Dense_0": p["Dense_0"]})


def test_barriers_on_hand_curves():
    ts = jnp.linspace(0, 1, 5)
    v = jnp.array([1.0, 2.0, 3.0, 1.5, 2.0])  # line 1 -> 2: [1, 1.25, 1.5, 1.75, 2]
    b, t = core.barrier_linear(v, ts)
    assert float(b) == pytest.approx(1.5) and float(t) == 0.5
    assert float(core.barrier_linear(jnp.array([0.0, 0.5, 1.0]))[0]) == 0.0  # linear: 0
    acc = jnp.array([0.9, 0.5, 0.8])
    assert float(core.barrier_linear(acc, kind="acc")[0]) == pytest.approx(0.35)
    assert float(core.barrier_mean(v)) == pytest.approx(1.5)
    assert float(core.mode_connectivity(v)) == pytest.approx(-1.5)  # barrier -> negative
    assert float(core.mode_connectivity(jnp.array([1.0, 0.5, 1.0]))) == pytest.approx(0.5)  # better path
    assert float(core.mode_connectivity(acc, kind="acc")) == pytest.approx(-0.35)
    with pytest.raises(ValueError, match="ts"):
        core.barrier_linear(v, jnp.array([0.0, 0.5, 0.4, 0.8, 1.0]))


def test_path_losses_and_multi_barrier(mlp):
    p, spec, x = mlp
    q = core.apply_permutation(spec, core.random_perms(jax.random.key(9), spec, p), p)
    f = lambda pp: jnp.mean(_mlp_apply(pp, x) ** 2)  # noqa: E731
    ts = jnp.linspace(0, 1, 5)
    vals = core.path_losses(f, p, q, ts)
    ref = np.array([float(f(core.lerp(t, p, q))) for t in ts])
    np.testing.assert_allclose(vals, ref, rtol=1e-5)
    both = core.path_losses(lambda pp: (f(pp), f(pp) * 2), p, q, ts, chunk=2)
    np.testing.assert_allclose(both[1], 2 * ref, rtol=1e-5)
    mb = core.multi_barrier(f, [p, q, p])
    np.testing.assert_allclose(mb, f(core.merge([p, q, p])) - f(p), rtol=1e-5)
    assert abs(float(core.multi_barrier(f, [p, p]))) < 1e-6
