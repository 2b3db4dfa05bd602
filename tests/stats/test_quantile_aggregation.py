"""zoo.stats.quantile_aggregation: aggregator invariants, LP optimality, training through zoo.train,
prediction with post-sorting and CQR, bad inputs (spec section 6, items 4, 5, 7, 8)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.stats import quantile_aggregation as qa
from zoo.stats import quantile_utils as qu

N, M, m, D = 48, 3, 5, 2
TAUS = jnp.asarray(np.arange(1, m + 1) / (m + 1), jnp.float32)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    Z = np.sort(rng.normal(size=(N, M, m)), axis=-1).astype(np.float32)
    y = rng.normal(size=N).astype(np.float32)
    return x, Z, y


@jax.jit
def _local_init(key):
    """Local params of every kind (hidden 8, 2 layers), last layer randomized so that weights depend on x."""
    out = {}
    for kind in qa.KINDS:
        p = qa.init_local(key, D, M, m, kind, hidden=8, layers=2)
        p["mlp"]["Dense_2"] = jax.tree.map(lambda a: jax.random.normal(key, a.shape), p["mlp"]["Dense_2"])
        out[kind] = p
    return out


@functools.lru_cache(maxsize=None)
def _local_params(seed=0):
    return _local_init(jax.random.key(seed))


def _random_params(kind, local, seed=0):
    key = jax.random.key(seed)
    if local:
        return _local_params(seed)[kind]
    shape = qa.init_global(key, M, m, kind)["logits"].shape
    return {"logits": jax.random.normal(key, shape)}


@functools.partial(jax.jit, static_argnames="kind")
def _apply_local(params, x, Z, kind):
    return qa.apply_local(params, x, Z, kind=kind)


@functools.partial(jax.jit, static_argnames="kind")
def _local_weights(params, x, kind):
    return qa.local_weights(params, x, M, m, kind=kind)


def _apply(params, x, Z, kind):
    if "mlp" in params:
        return _apply_local(params, x, Z, kind)
    return qa.apply_global(params, Z, kind=kind)


# ----------------------------------------------------------------------------- 4. invariants


@pytest.mark.parametrize("local", [False, True], ids=["global", "local"])
def test_weights_on_the_simplex_along_the_model_axis(problem, local):
    x, Z, _ = problem
    for kind in qa.KINDS:
        p = _random_params(kind, local)
        w = _local_weights(p, x, kind) if local else qa.global_weights(p, kind=kind)
        w = np.asarray(w)
        axis = -1 if kind == "coarse" else -2
        assert (w >= 0).all()
        np.testing.assert_allclose(w.sum(axis=axis), 1.0, atol=1e-5)
        assert w.shape[axis] == (M if kind != "fine" else M * m)
        if local:  # weights vary with x
            assert np.abs(w[0] - w[1]).max() > 1e-3


@pytest.mark.parametrize("local", [False, True], ids=["global", "local"])
def test_equal_models_give_that_model(problem, local):
    x, Z, _ = problem
    Zeq = np.repeat(Z[:, :1], M, axis=1)
    for kind in ("coarse", "medium"):
        out = _apply(_random_params(kind, local), x, Zeq, kind)
        np.testing.assert_allclose(out, Z[:, 0], atol=1e-5)
    # fine mixes levels: equal models give a convex combination of that model's levels
    out = np.asarray(_apply(_random_params("fine", local), x, Zeq, "fine"))
    assert (out >= Z[:, 0].min(1, keepdims=True) - 1e-5).all() and (out <= Z[:, 0].max(1, keepdims=True) + 1e-5).all()


def test_zero_init_is_the_uniform_average(problem):
    x, Z, _ = problem
    avg = np.asarray(qa.average_quantiles(Z))
    fresh = qa.init_local(jax.random.key(1), D, M, m, "medium", hidden=8, layers=2)
    assert not np.any(np.asarray(fresh["mlp"]["Dense_2"]["kernel"]))  # zero-initialized last layer
    for kind in ("coarse", "medium"):
        out = qa.apply_global(qa.init_global(jax.random.key(0), M, m, kind), Z, kind=kind)
        np.testing.assert_allclose(out, avg, atol=1e-6)
        p = _random_params(kind, True)
        p = {"mlp": {**p["mlp"], "Dense_2": jax.tree.map(jnp.zeros_like, p["mlp"]["Dense_2"])}}
        np.testing.assert_allclose(_apply_local(p, x, Z, kind), avg, atol=1e-6)
    # fine at init: the mean over all (model, level) pairs, the same for every output level
    out = qa.apply_global(qa.init_global(jax.random.key(0), M, m, "fine"), Z, kind="fine")
    np.testing.assert_allclose(out, np.repeat(Z.mean(axis=(1, 2))[:, None], m, 1), atol=1e-5)
    # normalize=False starts from the same uniform weights
    out = qa.apply_global(qa.init_global(jax.random.key(0), M, m, "medium", normalize=False), Z, kind="medium",
                          normalize=False)  # fmt: skip
    np.testing.assert_allclose(out, avg, atol=1e-6)


def test_fine_with_large_identity_logits_reproduces_one_model(problem):
    _, Z, _ = problem
    j_star = 1
    logits = np.zeros((M * m, m), np.float32)
    for t in range(m):
        logits[j_star * m + t, t] = 50.0  # pair (j*, s = t) -> output t
    out = qa.apply_global({"logits": jnp.asarray(logits)}, Z, kind="fine")
    np.testing.assert_allclose(out, Z[:, j_star], atol=1e-5)


def test_permuting_models_permutes_parameters(problem):
    x, Z, _ = problem
    perm = np.array([2, 0, 1])
    for kind in qa.KINDS:
        p = _random_params(kind, False)
        lg = np.asarray(p["logits"])
        if kind == "fine":
            lp = lg.reshape(M, m, m)[perm].reshape(M * m, m)
        else:
            lp = lg[perm]
        a = qa.apply_global(p, Z, kind=kind)
        b = qa.apply_global({"logits": jnp.asarray(lp)}, Z[:, perm], kind=kind)
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_baselines(problem):
    _, Z, y = problem
    np.testing.assert_allclose(qa.median_quantiles(Z), np.median(Z, axis=1), atol=1e-6)
    Zb = Z.copy()
    Zb[:, 2] = y[:, None]  # model 2 is perfect
    assert qa.best_single(Zb, y, TAUS) == 2


# ----------------------------------------------------------------------------- loss and prediction


def test_aggregator_loss_pieces(problem):
    x, Z, y = problem
    p = _random_params("medium", False)
    batch = {"Z": jnp.asarray(Z), "y": jnp.asarray(y)}
    apply_fn = qa.global_apply_fn("medium")
    q = qa.apply_global(p, Z, kind="medium")
    plain = qa.aggregator_loss(p, batch, apply_fn=apply_fn, taus=TAUS)
    np.testing.assert_allclose(plain, jnp.mean(qu.pinball(q, y, TAUS)), rtol=1e-6)
    srt = qa.aggregator_loss(p, batch, apply_fn=apply_fn, taus=TAUS, monotone="sort")
    assert float(srt) <= float(plain) + 1e-7
    pen = qa.aggregator_loss(p, batch, apply_fn=apply_fn, taus=TAUS, margin_weight=2.0, delta=0.01)
    np.testing.assert_allclose(pen, plain + 2.0 * qu.crossing_penalty(q, 0.01), rtol=1e-5)
    hub = qa.aggregator_loss(p, batch, apply_fn=apply_fn, taus=TAUS, huber=0.5)
    np.testing.assert_allclose(hub, qu.huber_pinball(q, y, TAUS, 0.5), rtol=1e-5)
    # row weights: weight 0 rows do not count
    w = np.zeros(N, np.float32)
    w[:10] = 1.0
    sub = qa.aggregator_loss(p, {**batch, "w": jnp.asarray(w)}, apply_fn=apply_fn, taus=TAUS)
    np.testing.assert_allclose(sub, jnp.mean(qu.pinball(q[:10], y[:10], TAUS)), rtol=1e-5)


def test_predict_post_and_cqr(problem):
    x, Z, y = problem
    p = _random_params("fine", False)
    raw = qa.predict(p, None, Z, kind="fine", post=None)
    srt = qa.predict(p, None, Z, kind="fine")  # default post='sort'
    np.testing.assert_allclose(srt, jnp.sort(raw, axis=1))
    np.testing.assert_allclose(qa.predict(p, None, Z, kind="fine", post="iso"), qu.isotonic(raw), atol=1e-6)
    np.testing.assert_allclose(qa.predict(p, None, Z, kind="fine", post="mono"), qu.fix_crossing_median(raw))
    qhat = jnp.array([0.5, 0.1])
    adj = qa.predict(p, None, Z, kind="fine", taus=TAUS, cqr_qhat=qhat)
    np.testing.assert_allclose(adj, qu.cqr_apply(srt, qhat, TAUS))
    # the whole prediction path works under jit (levels and Qhat as traced arrays)
    jitted = jax.jit(lambda p, Z, t, h: qa.predict(p, None, Z, kind="fine", taus=t, cqr_qhat=h))
    np.testing.assert_allclose(jitted(p, Z, TAUS, qhat), adj, atol=1e-6)
    pl = _random_params("medium", True)
    out = qa.predict(pl, x, Z, kind="medium", post="sort")
    assert out.shape == (N, m) and np.all(np.diff(np.asarray(out), axis=1) >= 0)


# ----------------------------------------------------------------------------- 5. LP optimality


@pytest.fixture(scope="module")
def lp_problem():
    rng = np.random.default_rng(1)
    n = 120
    Z = np.sort(rng.normal(size=(n, M, m)) * np.array([1.0, 0.7, 1.3])[None, :, None], axis=-1)
    y = Z[:, 0, m // 2].copy()  # y is model 0's median exactly
    y[: n // 2] += 0.0  # (kept: the tau = 0.5 optimum is e_0 with zero loss)
    return Z.astype(np.float32), y.astype(np.float32)


MEDIUM_CFG = qa.AggregatorConfig(kind="medium", lr=0.05, num_steps=1500, eval_every=1500, schedule="cosine")


def test_adam_matches_the_lp_optimum_per_level(lp_problem):
    Z, y = lp_problem
    lp = qa.fit_global_lp(Z, y, TAUS, kind="medium")
    params, info = qa.fit_aggregator(jax.random.key(0), None, Z, y, TAUS, MEDIUM_CFG)
    adam = np.asarray(qu.pinball(qa.apply_global(params, Z, kind="medium"), y, TAUS))
    assert np.all(adam >= lp["pinball"] - 1e-5)  # the LP is the optimum
    assert np.all(adam - lp["pinball"] <= 1e-3), adam - lp["pinball"]
    w = np.asarray(qa.global_weights(params, kind="medium"))
    assert w[0, m // 2] > 0.99  # y = model 0's median: the tau = 0.5 weights -> e_0
    np.testing.assert_allclose(lp["weights"][:, m // 2], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(lp["weights"].sum(0), 1.0, atol=1e-8)
    assert np.all(np.isfinite(np.asarray(info["train_loss"])))


def test_lp_coarse_and_fine_bound_adam_and_unnormalized(lp_problem):
    Z, y = lp_problem
    Zs, ys = Z[:40], y[:40]
    co = qa.fit_global_lp(Zs, ys, TAUS, kind="coarse")
    me = qa.fit_global_lp(Zs, ys, TAUS, kind="medium")
    fi = qa.fit_global_lp(Zs, ys, TAUS, kind="fine")
    # nested families: fine >= medium >= coarse in flexibility
    assert fi["pinball"].mean() <= me["pinball"].mean() + 1e-9 <= co["pinball"].mean() + 2e-9
    assert co["weights"].shape == (M,) and fi["weights"].shape == (M * m, m)
    free = qa.fit_global_lp(Zs, ys, TAUS, kind="medium", normalize=False)
    assert free["pinball"].mean() <= me["pinball"].mean() + 1e-9
    q = np.einsum("njt,j->nt", Zs, co["weights"])
    np.testing.assert_allclose(co["pinball"], np.asarray(qu.pinball(q, ys, TAUS)), atol=1e-6)


# ----------------------------------------------------------------------------- 7. zoo.train: vmap, no recompilation


SMALL_CFG = MEDIUM_CFG  # one compiled fit shared by the tests below


def test_population_over_seeds_equals_single_fits_and_reuses_the_program(lp_problem):
    Z, y = lp_problem
    rng = np.random.default_rng(2)
    data = [qa.pack_data(None, Z, y, TAUS), qa.pack_data(None, Z + 0.1, y, TAUS)]
    stacked = jax.tree.map(lambda *a: np.stack(a), *data)
    keys = jax.random.split(jax.random.key(3), 2)
    pop, info = qa.fit_aggregator_population(keys, stacked, SMALL_CFG)
    assert pop["logits"].shape == (2, M, m) and info["val_loss"].shape == (2, 1)
    single, _ = qa.fit_aggregator(keys[1], None, Z + 0.1, y, TAUS, SMALL_CFG)
    np.testing.assert_allclose(pop["logits"][1], single["logits"], atol=1e-5)
    # data sets with other n (same M, m and padded size) reuse the compiled program
    before = qa.TRACE_COUNTS["aggregator_run"]
    for n_rows in (70, 100):
        idx = rng.choice(len(y), n_rows, replace=False)
        qa.fit_aggregator(jax.random.key(4), None, Z[idx], y[idx], TAUS, SMALL_CFG)
    assert qa.TRACE_COUNTS["aggregator_run"] - before == 0


def test_local_training_with_validation_selection(problem):
    x, Z, y = problem
    Zg = np.concatenate([Z[:, :2], np.repeat(y[:, None, None], 1, 1) + np.zeros((N, 1, m), np.float32)], axis=1)
    # model 2 predicts y exactly at every level: a perfect model for the median
    cfg = qa.AggregatorConfig(kind="medium", local=True, hidden=8, layers=2, lr=1e-2, num_steps=200,
                              eval_every=50, batch_size=16, dropout=0.1)  # fmt: skip
    w = np.ones(N, np.float32)
    w[: N // 4] = 0.0
    params, info = qa.fit_aggregator(jax.random.key(5), x, Zg, y, TAUS, cfg, w=w, w_val=1.0 - w)
    assert info["val_loss"].shape == (4,) and int(info["best_step"]) % 50 == 0
    assert float(info["val_loss"].min()) == pytest.approx(float(np.min(info["val_loss"])))
    wts = np.asarray(qa.local_weights(params, x, M, m, kind="medium"))
    assert wts[:, 2, m // 2].mean() > 0.5  # learned to trust the perfect model at the median
    # the selected parameters are the ones with the best validation loss
    q = qa.predict(params, x, Zg, kind="medium", post=None)
    val = float(jnp.mean(qu.pinball(q[: N // 4], y[: N // 4], TAUS)))
    assert val == pytest.approx(float(info["val_loss"].min()), rel=1e-4)


# ----------------------------------------------------------------------------- 8. bad inputs


def test_bad_inputs(problem):
    x, Z, y = problem
    p = qa.init_global(jax.random.key(0), M, m, "medium")
    with pytest.raises(ValueError, match="kind: expected one of 'coarse', 'medium', 'fine'"):
        qa.apply_global(p, Z, kind="ultra")
    with pytest.raises(ValueError, match="M: expected a value in"):
        qa.init_global(jax.random.key(0), 0, m, "medium")
    with pytest.raises(ValueError, match="M >= 1"):
        qa.average_quantiles(np.zeros((4, 0, m)))
    with pytest.raises(ValueError, match=r"Z: expected 5 levels on axis 2"):
        qa.predict(p, None, Z[:, :, :4], kind="medium", taus=TAUS)
    with pytest.raises(ValueError, match=r"Z: expected 5 levels on axis 2"):
        qa.fit_aggregator(jax.random.key(0), None, Z[:, :, :4], y, TAUS, SMALL_CFG)
    bad = Z.copy()
    bad[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match="Z: contains 1 non-finite"):
        qa.fit_aggregator(jax.random.key(0), None, bad, y, TAUS, SMALL_CFG)
    with pytest.raises(ValueError, match="y: contains 1 non-finite"):
        qa.fit_aggregator(jax.random.key(0), None, Z, np.where(np.arange(N) == 0, np.nan, y), TAUS, SMALL_CFG)
    with pytest.raises(ValueError, match="strictly increasing"):
        qa.fit_aggregator(jax.random.key(0), None, Z, y, TAUS[::-1], SMALL_CFG)
    with pytest.raises(ValueError, match=r"taus\[4\]: expected a value in \(0.0, 1.0\)"):
        qa.fit_global_lp(Z, y, np.array([0.1, 0.2, 0.3, 0.4, 1.0]))
    with pytest.raises(ValueError, match=r"params\['logits'\]: expected shape"):
        qa.apply_global(p, Z, kind="fine")
    with pytest.raises(ValueError, match="post"):
        qa.predict(p, None, Z, kind="medium", post="soft_sort")
    with pytest.raises(ValueError, match="x: a local aggregator"):
        qa.predict(_random_params("medium", True), None, Z, kind="medium")
    with pytest.raises(ValueError, match="taus: needed with cqr_qhat"):
        qa.predict(p, None, Z, kind="medium", cqr_qhat=jnp.zeros(2))
    with pytest.raises(ValueError, match="monotone"):
        qa.aggregator_loss(p, {"Z": Z, "y": y}, apply_fn=qa.global_apply_fn("medium"), taus=TAUS, monotone="mono")


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"kind": "huge"}, "kind"),
        ({"lr": 0.0}, "lr"),
        ({"num_steps": 100, "eval_every": 30}, "eval_every"),
        ({"dropout": 1.0}, "dropout"),
        ({"batch_size": 0}, "batch_size"),
        ({"monotone": "mono"}, "monotone"),
        ({"hidden": 0}, "hidden"),
        ({"margin_weight": -1.0}, "margin_weight"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        qa.AggregatorConfig(**kw)
