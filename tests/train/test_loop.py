import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _problem import OPTIMIZER, batch_fn, eval_fn, loss_fn, new_state

from zoo.train import Checkpoints, NonFiniteError, fit


def _data(x):
    return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def _equal(a, b) -> bool:
    """Bit-identical leaves (same dtype, shape and values; typed PRNG keys compared by key data)."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(x.dtype == y.dtype and np.array_equal(_data(x), _data(y)) for x, y in pairs)


_jit_eval = jax.jit(eval_fn)


def test_fit_history_evals_and_input_state_untouched():
    s0 = new_state(0)
    state, h = fit(s0, loss_fn, OPTIMIZER, batch_fn, num_steps=20, steps_per_dispatch=4,
                   eval_fn=_jit_eval, eval_every=6, progress=False)
    assert int(state.step) == 20
    np.testing.assert_array_equal(h["step"], np.arange(20))
    assert h["loss"].shape == h["accuracy"].shape == (20,)
    np.testing.assert_array_equal(h["eval/step"], [6, 12, 18, 20])  # every 6 and at the end
    assert h["eval/accuracy"].shape == (4,)
    assert h["loss"][-5:].mean() < h["loss"][:5].mean()  # it learns
    assert not jax.tree.leaves(s0.params)[0].is_deleted()  # fit donates its own copy only


def test_remainder_chunks_match_single_steps():
    a, ha = fit(new_state(1), loss_fn, OPTIMIZER, batch_fn, num_steps=10, steps_per_dispatch=4, progress=False)
    b, hb = fit(new_state(1), loss_fn, OPTIMIZER, batch_fn, num_steps=10, steps_per_dispatch=1, progress=False)
    assert int(a.step) == int(b.step) == 10
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-5)


def test_killed_and_resumed_run_is_bit_identical(tmp_path):
    kw = dict(steps_per_dispatch=4, checkpoint_every=6, progress=False)
    full, h_full = fit(new_state(0), loss_fn, OPTIMIZER, batch_fn, num_steps=24,
                       checkpoint_dir=tmp_path / "full", **kw)
    first, _ = fit(new_state(0), loss_fn, OPTIMIZER, batch_fn, num_steps=12, checkpoint_dir=tmp_path / "run", **kw)
    assert not _equal(first.params, full.params)
    del first  # "kill": nothing survives in memory; the template comes from another seed
    resumed, h_res = fit(new_state(99), loss_fn, OPTIMIZER, batch_fn, num_steps=24,
                         checkpoint_dir=tmp_path / "run", **kw)
    assert int(resumed.step) == 24
    assert _equal(resumed.params, full.params)
    assert _equal(resumed.opt_state, full.opt_state)
    assert _equal(resumed.rng, full.rng) and jax.tree.structure(resumed) == jax.tree.structure(full)
    for k in h_full:
        np.testing.assert_array_equal(h_res[k], h_full[k])
    assert sorted(int(p) for p in os.listdir(tmp_path / "run") if p.isdigit()) == [12, 18, 24]  # keep=3


def test_checkpoints_roundtrip_and_template_mismatch(tmp_path):
    s = new_state(3)
    s = s.replace(extras={"ema": jnp.arange(3.0), "empty": jnp.zeros((0,))})
    hist = {"loss": np.array([1.5, np.nan], np.float32)}
    with Checkpoints(tmp_path, keep=1, async_save=False) as ck:
        ck.save(s, hist)
        assert ck.latest_step() == 0
        back, h = ck.restore(new_state(4).replace(extras={"ema": jnp.zeros(3), "empty": jnp.zeros((0,))}))
        assert _equal(back, s) and back.extras["empty"].shape == (0,)
        np.testing.assert_array_equal(h["loss"], hist["loss"])
        assert h["loss"].dtype == np.float32
        with pytest.raises(ValueError, match=r"template: does not match .*\['ema'\]"):
            ck.restore(new_state(4).replace(extras={"ema": jnp.zeros(4), "empty": jnp.zeros((0,))}))
    with Checkpoints(tmp_path / "empty") as ck, pytest.raises(FileNotFoundError, match="no checkpoint"):
        ck.restore(s)


def test_resume_false_refuses_an_existing_checkpoint(tmp_path):
    fit(new_state(0), loss_fn, OPTIMIZER, batch_fn, num_steps=2, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="checkpoint_dir: .*already holds checkpoints"):
        fit(new_state(0), loss_fn, OPTIMIZER, batch_fn, num_steps=4, checkpoint_dir=tmp_path, resume=False,
            progress=False)


def _poisoned(step_nan: int, metric: str):
    """A loss whose `metric` is NaN exactly at step `step_nan` (gradients stay finite)."""

    def batch(step):
        return {**batch_fn(step), "poison": jnp.where(step == step_nan, jnp.nan, 0.0)}

    def loss(params, b, rng):
        value, aux = loss_fn(params, b, rng)
        if metric == "loss":
            return value + jax.lax.stop_gradient(b["poison"]), aux
        return value, {**aux, metric: b["poison"]}

    return batch, loss


@pytest.mark.parametrize("metric", ["loss", "ratio"])
def test_non_finite_guard_names_the_step_and_metric(metric):
    batch, loss = _poisoned(7, metric)
    with pytest.raises(NonFiniteError, match=rf"non-finite {metric} = nan at step 7\b") as err:
        fit(new_state(0), loss, OPTIMIZER, batch, num_steps=12, steps_per_dispatch=4, progress=False)
    assert isinstance(err.value, FloatingPointError)
    assert err.value.step == 7 and err.value.metric == metric
    np.testing.assert_array_equal(err.value.history["step"], np.arange(7))  # the finite steps before it
    _, h = fit(new_state(0), loss, OPTIMIZER, batch, num_steps=12, steps_per_dispatch=4, progress=False,
               guard=False)
    assert np.isnan(h[metric][7]) and np.isfinite(np.delete(h[metric], 7)).all()


def test_progress_bar_only_when_asked(capsys):
    fit(new_state(0), loss_fn, OPTIMIZER, batch_fn, num_steps=3, progress=False)
    fit(new_state(0), loss_fn, OPTIMIZER, batch_fn, num_steps=3)  # None: stderr is captured, not a TTY
    assert capsys.readouterr().err == ""
    fit(new_state(0), loss_fn, OPTIMIZER, batch_fn, num_steps=3, progress=True)
    assert "3/3" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_steps=0), "num_steps"),
        (dict(num_steps=2.5), "num_steps"),
        (dict(num_steps=4, steps_per_dispatch=0), "steps_per_dispatch"),
        (dict(num_steps=4, checkpoint_every=2), "checkpoint_every: given without checkpoint_dir"),
        (dict(num_steps=4, eval_every=2), "eval_every: given without eval_fn"),
        (dict(num_steps=4, eval_fn=eval_fn, eval_every=0), "eval_every"),
        (dict(num_steps=4, progress="yes"), "progress"),
        (dict(num_steps=4, keep=0), "keep"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(new_state(0), loss_fn, OPTIMIZER, batch_fn, **kwargs)


def test_bad_state_and_eval_fn():
    with pytest.raises(ValueError, match="state: expected a zoo.train.TrainState"):
        fit({"params": 1}, loss_fn, OPTIMIZER, batch_fn, num_steps=2)
    with pytest.raises(ValueError, match="eval_fn: expected it to return a dict"):
        fit(new_state(0), loss_fn, OPTIMIZER, batch_fn, num_steps=2, eval_fn=lambda p: 1.0, progress=False)
