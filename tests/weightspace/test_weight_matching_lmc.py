"""zoo.weightspace.weight_matching_lmc: weight matching vs brute force, planted permutations, STE, analyses, merging."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo.weightspace import core
from zoo.weightspace import weight_matching_lmc as wm


@pytest.fixture(scope="module")
def model():
    init, apply, spec = wm.mlp((6,), 4, 3)
    return init, apply, spec, init(jax.random.key(0)), init(jax.random.key(1))


def _objective(pa, pb):
    return sum(float(np.vdot(a, b)) for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)))


def test_one_hidden_layer_equals_brute_force_and_rows_are_model_a(model):
    _, _, spec, pa, pb = model
    perms, trace = wm.weight_matching(spec, pa, pb, key=jax.random.key(0), return_trace=True)
    best = max(_objective(pa, core.apply_permutation(spec, {"P_0": jnp.array(q)}, pb))
               for q in itertools.permutations(range(6)))
    got = _objective(pa, core.apply_permutation(spec, perms, pb))
    assert got == pytest.approx(best, rel=1e-6)
    assert all(b >= a - 1e-9 for a, b in zip(trace, trace[1:]))
    # hand check of the convention: C = A B^T with rows = units of a; perm = LAP columns
    A = np.concatenate([np.asarray(pa["Dense_0"]["kernel"]).T, np.asarray(pa["Dense_0"]["bias"])[:, None],
                        np.asarray(pa["Dense_1"]["kernel"])], 1)
    B = np.concatenate([np.asarray(pb["Dense_0"]["kernel"]).T, np.asarray(pb["Dense_0"]["bias"])[:, None],
                        np.asarray(pb["Dense_1"]["kernel"])], 1)
    np.testing.assert_array_equal(perms["P_0"], wm.lap_solve(A @ B.T))


def test_planted_permutation_recovered_and_barrier_zero():
    init, apply, spec = wm.mlp((8, 8), 4, 3)
    pa = init(jax.random.key(3))
    pi = core.random_perms(jax.random.key(4), spec, pa)
    pb = core.apply_permutation(spec, pi, pa)
    perms = wm.weight_matching(spec, pa, pb, key=jax.random.key(5))
    inv = core.invert_perms(pi)
    assert all(np.array_equal(perms[k], inv[k]) for k in perms)
    dr = wm.distance_report(spec, pa, pb, perms, key=jax.random.key(1))
    assert float(dr["d_wm"]) == 0 and float(dr["d0"]) > 0 and float(dr["ratio"]) == 0
    x = jax.random.normal(jax.random.key(6), (20, 4))
    y = jnp.argmax(apply(pa, x), -1)
    ev = lambda p: wm.loss_and_acc(apply, p, x, y)  # noqa: E731
    ts = jnp.linspace(0, 1, 5)
    after = wm.barrier_report(ev, pa, core.apply_permutation(spec, perms, pb), ts)
    assert float(after["barrier_loss"]) < 1e-6 and float(after["barrier_acc"]) == 0
    # singular values unchanged by any permutation; first-layer input side unchanged
    al = wm.svd_alignment(spec, pa, pb, core.identity_perms(spec, pa), k=3, ks=(1, 3))
    for layer in al.values():
        np.testing.assert_allclose(layer["sv_a"], layer["sv_b"], rtol=1e-5)
    assert float(al["Dense_0/kernel"]["overlap_v"][3]) == pytest.approx(1.0, abs=1e-5)
    assert float(al["Dense_2/kernel"]["overlap_u"][3]) == pytest.approx(1.0, abs=1e-5)
    ok = wm.svd_alignment(spec, pa, pb, perms, k=3, ks=(3,))
    assert all(float(v["overlap_u"][3]) == pytest.approx(1.0, abs=1e-5) for v in ok.values())
    with pytest.raises(ValueError, match="k"):
        wm.svd_alignment(spec, pa, pb, perms, k=9)


def test_truncate_rank_eckart_young(model):
    _, _, spec, pa, _ = model
    W = np.asarray(pa["Dense_0"]["kernel"])
    s = np.linalg.svd(W, compute_uv=False)
    t = wm.truncate_rank(pa, 2, ["Dense_0/kernel"])
    assert float(np.sum((np.asarray(t["Dense_0"]["kernel"]) - W) ** 2)) == pytest.approx(float(np.sum(s[2:] ** 2)), rel=1e-4)
    full = wm.truncate_rank(pa, 10)
    assert float(core.tree_l2(full, pa)) < 1e-5


def test_taylor_exact_for_quadratic():
    Q = jnp.array([[2.0, 0.5], [0.5, -1.0]])
    f = lambda p: 0.5 * p["w"] @ Q @ p["w"]  # noqa: E731
    a, b = {"w": jnp.array([1.0, 0.0])}, {"w": jnp.array([0.0, 2.0])}
    r = wm.taylor_midpoint_barrier(f, a, b)
    assert float(r["estimate"]) == pytest.approx(float(r["measured"]), abs=1e-6)
    d = np.array([-1.0, 2.0])
    assert float(r["measured"]) == pytest.approx(-d @ np.asarray(Q) @ d / 8, abs=1e-6)


def test_ste_on_planted_and_merging(model):
    init, apply, spec, pa, pb = model
    x = jax.random.normal(jax.random.key(7), (32, 4))
    y = jnp.argmax(apply(pa, x), -1)
    loss = lambda p, b: wm.loss_and_acc(apply, p, b[0], b[1])[0]  # noqa: E731
    pi = core.random_perms(jax.random.key(8), spec, pa)
    perms, losses = wm.ste_matching(spec, loss, pa, core.apply_permutation(spec, pi, pa), [(x, y)] * 3,
                                    key=jax.random.key(0), optimizer=optax.adam(1e-3), eval_batch=(x, y),
                                    return_trace=True)
    assert np.array_equal(perms["P_0"], core.invert_perms(pi)["P_0"]) and len(losses) == 3
    naive, al = wm.merge_models(spec, [pa, pb, pa], "naive", key=jax.random.key(0))
    assert float(core.tree_l2(naive, core.merge([pa, pb, pa]))) < 1e-6
    m, al = wm.merge_models(spec, [pa, pa, pa], "wm_ref", key=jax.random.key(0))
    assert float(core.tree_l2(m, pa)) < 1e-6
    models = [init(jax.random.key(i)) for i in range(3)]
    spread = lambda ms: sum(float(core.tree_l2(core.merge(ms), q)) for q in ms)  # noqa: E731
    mm = wm.merge_many(spec, models, key=jax.random.key(0))
    assert spread(mm) <= spread(models) + 1e-6
    grid = jnp.array([0.0, 1.0])
    pl = wm.plane_losses(lambda p: core.tree_norm(p), models[0], models[1], models[2], grid)
    assert pl.shape == (2, 2) and float(pl[1, 0]) == pytest.approx(float(core.tree_norm(models[1])), rel=1e-5)


def test_activation_matching_recovers_planted():
    init, apply, spec = wm.mlp((6,), 4, 3)
    pa = init(jax.random.key(0))
    pi = core.random_perms(jax.random.key(1), spec, pa)
    pb = core.apply_permutation(spec, pi, pa)
    feats = lambda p, x: {"P_0": jax.nn.relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])}  # noqa: E731
    x = jax.random.normal(jax.random.key(2), (50, 4))
    perms = wm.activation_matching(spec, feats, pa, pb, x, method="corr")
    assert np.array_equal(perms["P_0"], core.invert_perms(pi)["P_0"])


def test_weight_matching_rejects_bad_inputs(model):
    _, _, spec, pa, pb = model
    bad = jax.tree.map(lambda a: a, pb)
    bad["Dense_0"]["kernel"] = bad["Dense_0"]["kernel"].at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="params_b.*non-finite"):
        wm.weight_matching(spec, pa, bad, key=jax.random.key(0))
    with pytest.raises(ValueError, match="params_b"):
        wm.weight_matching(spec, pa, {"Dense_0": pb["Dense_0"]}, key=jax.random.key(0))
