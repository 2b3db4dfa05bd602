import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.nn import MLP

MODEL = MLP((5, 3), activation=jnp.tanh)
PARAMS = MODEL.init(jax.random.key(0), jnp.zeros((1, 4)))
APPLY = jax.jit(MODEL.apply)


def test_shapes_and_math_match_a_manual_forward_pass():
    p = PARAMS["params"]
    assert p["Dense_0"]["kernel"].shape == (4, 5) and p["Dense_1"]["kernel"].shape == (5, 3)
    x = jax.random.normal(jax.random.key(1), (6, 4))
    h = jnp.tanh(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    want = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]  # no activation after the last layer
    np.testing.assert_allclose(APPLY(PARAMS, x), want, rtol=1e-5, atol=1e-6)


def test_vmap_and_grad():
    x = jax.random.normal(jax.random.key(2), (3, 2, 4))
    out = jax.vmap(lambda xb: APPLY(PARAMS, xb))(x)
    np.testing.assert_allclose(out, APPLY(PARAMS, x.reshape(6, 4)).reshape(3, 2, 3), rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda p: jnp.sum(MODEL.apply(p, x[0]) ** 2))(PARAMS)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(g))
    assert float(jnp.abs(g["params"]["Dense_0"]["kernel"]).sum()) > 0


@pytest.mark.parametrize(
    "features, match", [((), "features"), ((4, 0), r"features\[1\]"), ((4, 2.5), r"features\[1\]")]
)
def test_bad_features(features, match):
    with pytest.raises(ValueError, match=match):
        MLP(features)


def test_bad_input_rank():
    with pytest.raises(ValueError, match="x: expected"):
        MODEL.apply(PARAMS, jnp.float32(1.0))
