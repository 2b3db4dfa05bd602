import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

from zoo.train import make_mesh, shard_batch

# Runs in a fresh interpreter: the device count is fixed when jax starts.
_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    from zoo.nn import MLP
    from zoo.train import TrainState, data_parallel_step, fit, make_mesh, make_step, replicate, shard_batch

    assert jax.device_count() == 4, jax.devices()
    model, opt = MLP((16, 3)), optax.adam(1e-2)
    x = jax.random.normal(jax.random.key(0), (160, 5))
    y = jnp.argmax(x @ jax.random.normal(jax.random.key(1), (5, 3)), -1)

    def batch_fn(step):  # 8 consecutive rows per step, 20 steps per epoch
        i = (step % 20) * 8
        return {"x": jax.lax.dynamic_slice_in_dim(x, i, 8), "y": jax.lax.dynamic_slice_in_dim(y, i, 8)}

    def loss_fn(params, batch, rng):
        logits = model.apply(params, batch["x"] + 0.1 * jax.random.normal(rng, batch["x"].shape))
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), {}

    def state():
        return TrainState.create(params=model.init(jax.random.key(2), x[:1]), optimizer=opt, rng=jax.random.key(3))

    mesh = make_mesh(4)
    single, multi = state(), replicate(state(), mesh)
    step1, step4 = make_step(loss_fn, opt), data_parallel_step(loss_fn, opt, mesh)
    for s in range(20):
        batch = batch_fn(jnp.int32(s))
        sharded = shard_batch(batch, mesh)
        assert len(sharded["x"].sharding.device_set) == 4 and sharded["x"].addressable_shards[0].data.shape == (2, 5)
        single, m1 = step1(single, batch)
        multi, m4 = step4(multi, sharded)
        np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-5)
    assert len(jax.tree.leaves(multi.params)[0].sharding.device_set) == 4
    close = lambda a, b: [np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
                          for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)]
    close(multi.params, single.params)
    moved = float(sum(jnp.abs(a - b).sum() for a, b in zip(jax.tree.leaves(single.params),
                                                            jax.tree.leaves(state().params))))
    assert moved > 1e-2, moved  # training did something

    fitted, h = fit(state(), loss_fn, opt, batch_fn, num_steps=20, steps_per_dispatch=10, mesh=mesh, progress=False)
    assert len(jax.tree.leaves(fitted.params)[0].sharding.device_set) == 4
    close(fitted.params, single.params)
    print("DATA-PARALLEL-OK")
    """
)


def test_four_device_training_equals_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "DATA-PARALLEL-OK" in out.stdout


def test_bad_inputs():
    with pytest.raises(ValueError, match="n_devices"):
        make_mesh(0)
    with pytest.raises(ValueError, match="n_devices"):
        make_mesh(jax.device_count() + 1)
    mesh = make_mesh(1)
    with pytest.raises(ValueError, match=r"batch\['x'\]: expected a leading axis"):
        shard_batch({"x": jnp.float32(1.0)}, mesh)
    with pytest.raises(ValueError, match="axis: expected one of the mesh's axes"):
        shard_batch({"x": jnp.ones(2)}, mesh, axis="model")
