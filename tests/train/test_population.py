import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _problem import init_params, plain_loss_fn, slice_batch_fn

from zoo.train import make_run, population

# Few distinct compiled programs (they dominate the runtime): every population here has 4 members.
STEPS = 5
RUN = make_run(init_params, plain_loss_fn, lambda h: optax.adam(h["lr"]), slice_batch_fn, STEPS)
RUN_JIT = jax.jit(RUN)
KEYS = jax.random.split(jax.random.key(0), 4)
LR = {"lr": jnp.full(4, 1e-2, jnp.float32)}  # not weakly typed, like the arrays below


def _close(a, b, **kw):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x = jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        y = jax.random.key_data(y) if jnp.issubdtype(y.dtype, jax.dtypes.prng_key) else y
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


def test_population_of_seeds_equals_separate_runs():
    states, metrics = population(RUN, KEYS, LR)
    assert metrics["loss"].shape == (4, STEPS) and states.step.shape == (4,)
    for i in range(4):
        state_i, metrics_i = RUN_JIT(KEYS[i], {"lr": LR["lr"][i]})
        _close(jax.tree.map(lambda x, i=i: x[i], states), state_i, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(metrics["loss"][i], metrics_i["loss"], rtol=1e-5)
    assert not np.allclose(metrics["loss"][0], metrics["loss"][1])  # the seeds differ


def test_learning_rate_axis():
    lrs = jnp.array([0.0, 1e-2, 1e-1, 3e-1])
    states, metrics = population(RUN, jax.random.key(1), {"lr": lrs})  # one key shared by all members
    assert metrics["loss"].shape == (4, STEPS)
    init = init_params(jax.random.split(jax.random.key(1), 3)[0])
    _close(jax.tree.map(lambda x: x[0], states.params), init, rtol=0, atol=0)  # lr = 0 never moves
    state_2, _ = RUN_JIT(jax.random.key(1), {"lr": lrs[2]})
    _close(jax.tree.map(lambda x: x[2], states.params), state_2.params, rtol=1e-5, atol=1e-6)
    assert metrics["loss"][2, -1] < metrics["loss"][1, -1] < metrics["loss"][0, -1]


def test_grid_is_the_outer_product():
    lrs = jnp.array([1e-2, 1e-1])
    grid = population(RUN, KEYS[:2], {"lr": lrs}, grid=True)[1]["loss"]
    assert grid.shape == (2, 2, STEPS)
    # the same 4 pairs zipped: keys (k0, k0, k1, k1) x lrs (a, b, a, b)
    zipped = population(RUN, KEYS[jnp.array([0, 0, 1, 1])], {"lr": jnp.tile(lrs, 2)})[1]["loss"]
    np.testing.assert_allclose(grid.reshape(4, STEPS), zipped, rtol=1e-5)
    assert not np.allclose(grid[0, 0], grid[0, 1]) and not np.allclose(grid[0, 0], grid[1, 0])


def test_per_seed_data():
    def seeded_batches(step, key):
        return slice_batch_fn((step + jax.random.randint(key, (), 0, 100)).astype(jnp.int32))

    def same_init(key):  # every member starts from the same params: losses differ only by data
        return init_params(jax.random.key(0))

    run = make_run(same_init, plain_loss_fn, lambda h: optax.sgd(0.0), seeded_batches, 2, per_seed_data=True)
    metrics = population(run, KEYS[jnp.array([0, 0, 2, 3])])[1]  # keys only, no hparams axis
    np.testing.assert_array_equal(metrics["loss"][0], metrics["loss"][1])  # same key -> same data
    assert not np.allclose(metrics["loss"][1], metrics["loss"][2])  # other key -> other data


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((jax.random.key(0),), {}, "nothing to vmap over"),
        ((KEYS, {"lr": jnp.ones(3)}), {}, "hparams: leading size 3 differs from the 4 keys"),
        ((KEYS, {"lr": jnp.float32(1.0)}), {}, "hparams\\['lr'\\]: expected an array with a leading"),
        ((KEYS, {"a": jnp.ones(4), "b": jnp.ones(2)}), {}, "same leading size"),
        ((jnp.ones((4, 3)),), {}, "keys: expected PRNG keys"),
        ((KEYS,), {"grid": True}, "grid: True needs both"),
    ],
)
def test_bad_inputs(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        population(RUN, *args, **kwargs)


def test_make_run_bad_inputs():
    with pytest.raises(ValueError, match="num_steps"):
        make_run(init_params, plain_loss_fn, lambda h: optax.sgd(0.1), slice_batch_fn, 0)
    with pytest.raises(ValueError, match="optimizer_fn"):
        make_run(init_params, plain_loss_fn, None, slice_batch_fn, 3)
