import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _problem import OPTIMIZER, batch_fn, init_params, loss_fn, new_state

from zoo.train import TrainState, make_scan_steps, make_step, scan_steps, train_step

STEP = make_step(loss_fn, OPTIMIZER, donate=False)
SCAN4 = jax.jit(scan_steps(loss_fn, OPTIMIZER, batch_fn, 4))


def _close(a, b, **kw):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


def test_create():
    s = new_state(0)
    assert s.step.dtype == jnp.int32 and int(s.step) == 0
    assert s.extras == {}
    _close(s.opt_state, OPTIMIZER.init(s.params))


def test_step_matches_a_hand_written_update():
    s = new_state(0)
    batch = batch_fn(jnp.int32(0))
    new, metrics = STEP(s, batch)

    @jax.jit
    def reference(params, rng):  # one Adam step written out with optax
        (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, jax.random.fold_in(rng, 0))
        updates, _ = OPTIMIZER.update(g, OPTIMIZER.init(params), params)
        return optax.apply_updates(params, updates), loss, aux

    want, loss, aux = reference(s.params, s.rng)
    _close(new.params, want, rtol=1e-6, atol=1e-7)
    assert int(new.step) == 1
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
    np.testing.assert_allclose(metrics["accuracy"], aux["accuracy"])


def test_step_rng_is_fold_in_of_the_step():
    def rng_loss(params, batch, rng):
        return jnp.sum(params["w"] ** 2), {"u": jax.random.uniform(rng)}

    opt = optax.sgd(0.1)
    s = TrainState.create(params={"w": jnp.ones(2)}, optimizer=opt, rng=jax.random.key(7))
    s = s.replace(step=jnp.int32(5))
    _, m = jax.jit(train_step(rng_loss, opt))(s, None)
    assert float(m["u"]) == float(jax.random.uniform(jax.random.fold_in(jax.random.key(7), 5)))


def test_make_step_donates_the_state():
    s = new_state(0)
    step = make_step(loss_fn, OPTIMIZER)
    new, _ = step(s, batch_fn(jnp.int32(0)))
    assert jax.tree.leaves(s.params)[0].is_deleted()
    assert not jax.tree.leaves(new.params)[0].is_deleted()


def test_scan_equals_repeated_steps():
    s = new_state(1)
    scanned, metrics = SCAN4(s)
    assert metrics["loss"].shape == (4,) and int(scanned.step) == 4
    manual, losses = s, []
    for i in range(4):
        manual, m = STEP(manual, batch_fn(jnp.int32(i)))
        losses.append(m["loss"])
    _close(scanned.params, manual.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], np.array(losses), rtol=1e-5)


def test_make_scan_steps_donates():
    s = new_state(2)
    run = make_scan_steps(loss_fn, OPTIMIZER, batch_fn, 2)
    new, _ = run(s)
    assert jax.tree.leaves(s.params)[0].is_deleted() and int(new.step) == 2


def test_bad_inputs():
    s = new_state(0)
    with pytest.raises(ValueError, match="loss_fn: expected it to return"):
        train_step(lambda p, b, r: jnp.float32(0.0), OPTIMIZER)(s, None)
    with pytest.raises(ValueError, match=r"aux\['v'\] must be a scalar"):
        train_step(lambda p, b, r: (jnp.float32(0.0), {"v": jnp.ones(3)}), OPTIMIZER)(s, None)
    with pytest.raises(ValueError, match="scalar loss"):
        train_step(lambda p, b, r: (jnp.ones(2), {}), OPTIMIZER)(s, None)
    with pytest.raises(ValueError, match="optimizer"):
        train_step(loss_fn, "adam")
    with pytest.raises(ValueError, match="k: expected a positive int"):
        scan_steps(loss_fn, OPTIMIZER, batch_fn, 0)
    with pytest.raises(ValueError, match="rng: expected a PRNG key"):
        TrainState.create(params=init_params(jax.random.key(0)), optimizer=OPTIMIZER, rng=3)
    with pytest.raises(ValueError, match="rng: expected a single PRNG key"):
        TrainState.create(params={}, optimizer=OPTIMIZER, rng=jax.random.split(jax.random.key(0), 2))
