"""The chunked runner: populations in checkpointed chunks, bit-identical resume, the guard."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo.train import NonFiniteError, TrainState, run_population, scan_steps

OPT = optax.adam(0.05)
X = jax.random.normal(jax.random.key(0), (32, 3))
Y = X @ jnp.array([1.0, -2.0, 0.5])
STEPS = 3


def loss_fn(p, b, r):
    e = b[0] @ p["w"] - b[1] + 0.01 * jax.random.normal(r, ())  # uses the step's rng
    return jnp.mean(e**2), {"w_norm": jnp.linalg.norm(p["w"])}


def init(key, hp):
    return TrainState.create(params={"w": jax.random.normal(key, (3,))}, optimizer=optax.sgd(hp["lr"]), rng=key)


def chunk(state, hp, c):
    state, m = scan_steps(loss_fn, optax.sgd(hp["lr"]), lambda t: (X * (1 + 0 * t), Y), STEPS)(state)
    return state, {"loss": m["loss"], "eval": jnp.mean((X @ state.params["w"] - Y) ** 2)}


KEYS = jax.random.split(jax.random.key(1), 4)
HP = {"lr": jnp.array([0.01, 0.02, 0.05, 0.1])}


class _Killed(Exception):
    pass


def _raw(x):
    return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(_raw(x)), np.asarray(_raw(y))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.fixture(scope="module")
def uninterrupted():
    return run_population(init, chunk, KEYS, HP, num_chunks=6, steps_per_chunk=STEPS, progress=False)


def test_outputs_stack_members_and_chunks(uninterrupted):
    state, outs = uninterrupted
    assert outs["loss"].shape == (4, 6, STEPS) and outs["eval"].shape == (4, 6)
    assert np.asarray(state.step).tolist() == [18] * 4
    assert np.all(outs["eval"][:, -1] < outs["eval"][:, 0])  # every member learns


def test_killed_population_resumes_bit_identical(tmp_path, uninterrupted):
    def kill_after_chunk_2(c, out):
        if c == 2:
            raise _Killed

    kw = dict(num_chunks=6, steps_per_chunk=STEPS, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(_Killed):
        run_population(init, chunk, KEYS, HP, checkpoint_every=1, callback=kill_after_chunk_2, **kw)
    seen = []
    state, outs = run_population(init, chunk, KEYS, HP, checkpoint_every=2, callback=lambda c, o: seen.append(c),
                                 **kw)
    assert seen == [3, 4, 5]  # only the chunks after the checkpoint ran again
    assert _leaves_equal(outs, uninterrupted[1])
    assert _leaves_equal(state, uninterrupted[0])
    # a finished run restores its final checkpoint and trains nothing
    again = run_population(init, chunk, KEYS, HP, callback=lambda c, o: seen.append(c), **kw)
    assert seen == [3, 4, 5] and _leaves_equal(again[1], outs)


def test_checkpoint_seconds_skips_saves_but_always_keeps_the_last(tmp_path):
    import os

    run_population(init, chunk, KEYS, HP, num_chunks=4, checkpoint_dir=tmp_path, progress=False, keep=10,
                   checkpoint_seconds=3600.0)
    assert sorted(os.listdir(tmp_path)) == ["4"]
    with pytest.raises(ValueError, match="checkpoint_seconds"):
        run_population(init, chunk, KEYS, HP, num_chunks=4, checkpoint_seconds=-1.0)


def test_resume_false_refuses_existing_checkpoints(tmp_path):
    kw = dict(num_chunks=2, checkpoint_dir=tmp_path, progress=False)
    run_population(init, chunk, KEYS, HP, **kw)
    with pytest.raises(ValueError, match="checkpoint_dir: .* already holds checkpoints"):
        run_population(init, chunk, KEYS, HP, resume=False, **kw)


def test_guard_names_member_and_chunk():
    hp = {"lr": jnp.array([0.01, 0.01, 50.0, 0.01])}  # member 2 diverges
    with pytest.raises(NonFiniteError, match=r"member 2 in chunk \d+ \(steps \d+\.\.\d+\)") as info:
        run_population(init, chunk, KEYS, hp, num_chunks=40, steps_per_chunk=STEPS, progress=False)
    assert info.value.member == 2 and info.value.step % STEPS == 0
    # guard=False records the NaNs instead
    _, outs = run_population(init, chunk, KEYS, hp, num_chunks=40, steps_per_chunk=STEPS, progress=False,
                             guard=False)
    assert not np.isfinite(outs["eval"][2, -1]) and np.isfinite(outs["eval"][0]).all()


@pytest.mark.parametrize("kw, match", [
    (dict(num_chunks=0), "num_chunks"),
    (dict(num_chunks=2, checkpoint_every=0), "checkpoint_every"),
    (dict(num_chunks=2, guard="yes"), "guard"),
    (dict(num_chunks=2, callback=3), "callback"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        run_population(init, chunk, KEYS, HP, **kw)


def test_members_must_agree():
    with pytest.raises(ValueError, match="hparams: leading size 4 differs from the 2 keys"):
        run_population(init, chunk, KEYS[:2], HP, num_chunks=1)
