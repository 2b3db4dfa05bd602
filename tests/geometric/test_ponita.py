"""PONITA (zoo.geometric.ponita): invariants, grids, bases, the separable conv, exact equivariance (float64),
forces, jit/vmap/grad, calibration, optimiser masking and bad inputs. Spec papers/ponita.md §6."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.geometric import ponita as P
from zoo.geometric.graph import Graph, batch_complete

_apply = jax.jit(P.apply, static_argnums=1)
_energy_forces = jax.jit(P.energy_forces, static_argnums=1)

# tiny models: node-level vector output (n-body head) and graph-level energy
VEC = P.PonitaConfig(dim=3, in_scalar=1, in_vector=1, out_scalar=1, out_vector=1, hidden_dim=8, basis_dim=8,
                     num_layers=2, num_ori=6, layer_scale=0.5)  # fmt: skip
ENERGY = P.PonitaConfig(dim=3, in_scalar=1, out_scalar=1, hidden_dim=8, basis_dim=8, num_layers=2, num_ori=6,
                        layer_scale=None, task_level="graph")  # fmt: skip


def _rot3(seed, reflect=False):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q @ np.diag([1, 1, -1]) if reflect else q


def _graph(seed=0, n=4, dim=3, n_graphs=1, vec=True):
    rng = np.random.default_rng(seed)
    pos = rng.standard_normal((n_graphs, n, dim))
    s = np.sign(rng.standard_normal((n_graphs, n, 1)))
    v = rng.standard_normal((n_graphs, n, 1, dim)) if vec else None
    return batch_complete(jnp.asarray(pos), jnp.asarray(s), None if v is None else jnp.asarray(v))


def _with_grid(params, grid):
    return {**params, "consts": {**params["consts"], "grid": grid}}


# ------------------------------------------------------------------------------------------- geometry


def test_invariants_match_numpy_reference():
    rng = np.random.default_rng(1)
    pos = rng.standard_normal((4, 3))
    grid = np.asarray(P.make_grid(dataclasses.replace(VEC, num_ori=5), dtype=jnp.float32), np.float64)
    s, r = np.array([0, 1, 2, 3, 2]), np.array([1, 1, 0, 2, 3])
    spatial, fiber, dist = P.invariants(jnp.asarray(pos, jnp.float32), jnp.asarray(grid, jnp.float32), s, r)
    rel = pos[s] - pos[r]
    for e in range(5):
        for o in range(5):
            par = rel[e] @ grid[o]
            perp = np.linalg.norm(rel[e] - par * grid[o])
            np.testing.assert_allclose(spatial[e, o], [par, perp], atol=1e-5)
        np.testing.assert_allclose(dist[e, 0], np.linalg.norm(rel[e]), atol=1e-5)
    np.testing.assert_allclose(fiber[..., 0], grid @ grid.T, atol=1e-6)
    assert spatial[1, 0, 0] == 0 and spatial[1, 0, 1] == 0  # self-loop 1 -> 1 gives (0, 0)
    # 2D: (<n, r>, <n_perp, r>) with n_perp = (-n_y, n_x)
    g2 = P.make_grid(P.PonitaConfig(dim=2, out_scalar=1, num_ori=4))
    sp2, _, _ = P.invariants(jnp.array([[0.0, 0.0], [1.0, 2.0]]), g2, jnp.array([1]), jnp.array([0]))
    np.testing.assert_allclose(sp2[0], [[1, 2], [2, -1], [-1, -2], [-2, 1]], atol=1e-6)


def test_self_loop_gradients_are_finite():
    g = _graph(vec=False)
    params = P.init(jax.random.key(0), ENERGY, g)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(P.energy_forces(p, ENERGY, g)[1] ** 2)))(params)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(grad))
    ori = jnp.eye(3)[jnp.array([0, 1, 2, 0])]
    jac = jax.jacobian(lambda x: P.invariants_pointcloud(x, ori, g.senders, g.receivers))(g.pos)
    assert bool(jnp.all(jnp.isfinite(jac)))


def test_grids():
    fib = P.make_grid(P.PonitaConfig(out_scalar=1, num_ori=16))
    np.testing.assert_allclose(jnp.linalg.norm(fib, axis=-1), 1.0, atol=1e-6)
    s1 = np.asarray(P.make_grid(P.PonitaConfig(dim=2, out_scalar=1, num_ori=8), dtype=jnp.float32))
    k = np.arange(8)
    np.testing.assert_allclose(s1, np.stack([np.cos(2 * np.pi * k / 8), np.sin(2 * np.pi * k / 8)], -1), atol=1e-7)
    assert P.make_grid(P.PonitaConfig(out_scalar=1, num_ori=0)).shape == (0, 3)
    rep, rep0 = P.repulsion_grid(jax.random.key(0), 12, return_init=True)

    def min_angle(n):
        c = np.clip(np.asarray(n) @ np.asarray(n).T, -1, 1)
        return np.arccos(c[~np.eye(len(c), dtype=bool)]).min()

    np.testing.assert_allclose(jnp.linalg.norm(rep, axis=-1), 1.0, atol=1e-5)
    assert min_angle(rep) > min_angle(rep0)
    with pytest.raises(ValueError, match="key"):
        P.make_grid(P.PonitaConfig(out_scalar=1, grid="repulsion"))


def test_polynomial_features_and_cutoff():
    a = jnp.array([[2.0, 3.0]])
    p = P.polynomial_features(a, 3)
    assert p.shape == (1, 2 + 4 + 8)
    np.testing.assert_allclose(p[0, :6], [2, 3, 4, 6, 6, 9])
    np.testing.assert_allclose(p[0, 6:], [8, 12, 12, 18, 12, 18, 18, 27])
    assert P.polynomial_features(jnp.ones((5, 3)), 3).shape == (5, 39)
    assert P.polynomial_features(jnp.ones((5, 1)), 3).shape == (5, 3)
    r = jnp.array([0.0, 0.5, 1.0, 2.0])
    w = P.polynomial_cutoff(r, 1.0)
    np.testing.assert_allclose(np.asarray(w)[[0, 2, 3]], [1, 0, 0], atol=1e-6)
    assert 0 < float(w[1]) < 1
    assert float(jax.grad(lambda x: P.polynomial_cutoff(x, 1.0))(0.999)) == pytest.approx(0, abs=1e-3)
    np.testing.assert_array_equal(P.polynomial_cutoff(r, None), 1.0)


# ------------------------------------------------------------------------------------------- conv


def test_separable_conv_hand_example():
    # 3 nodes, O = 2, C = 1; edges 0 -> 1 (k=2), 2 -> 1 (k=3), 1 -> 0 masked; node 2 has no incoming edges
    x = jnp.array([[[1.0], [2.0]], [[10.0], [20.0]], [[100.0], [200.0]]])
    ks = jnp.array([[[2.0], [2.0]], [[3.0], [1.0]], [[5.0], [5.0]]])
    s, r, m = jnp.array([0, 2, 1]), jnp.array([1, 1, 0]), jnp.array([True, True, False])
    kf = jnp.array([[[1.0], [0.0]], [[1.0], [2.0]]])  # F(o, p)
    bias = jnp.array([0.5])
    g = P.separable_conv(x, ks, None, s, r, m)
    np.testing.assert_allclose(g[:, :, 0], [[0, 0], [2 + 300, 4 + 200], [0, 0]])
    h = P.separable_conv(x, ks, kf, s, r, m, bias)
    # h(p) = (1/2) sum_o F(o,p) g(o) + b: node 1: p0 = (302 + 204)/2, p1 = (0 + 2*204)/2
    np.testing.assert_allclose(h[:, :, 0], [[0.5, 0.5], [253.5, 204.5], [0.5, 0.5]])


# ------------------------------------------------------------------------------------------- equivariance


def _equivariance_errors(cfg, params, g, rot, t, apply=_apply):
    """Errors of (rotate + translate input, co-rotate grid) vs rotating the outputs."""
    s0, v0 = apply(params, cfg, g)
    g2 = g._replace(pos=g.pos @ rot.T + t, vectors=g.vectors @ rot.T)
    s1, v1 = apply(_with_grid(params, params["consts"]["grid"] @ rot.T), cfg, g2)
    scale = float(jnp.abs(v0).max())
    return float(jnp.abs(s1 - s0).max()), float(jnp.abs(v1 - v0 @ rot.T).max()) / scale


@pytest.fixture(scope="module")
def x64_model():
    with jax.enable_x64(True):
        g = _graph(seed=3)
        params = P.init(jax.random.key(0), VEC, g)
        assert params["layers"]["A"].dtype == jnp.float64
        yield g, params


@pytest.mark.parametrize("reflect", [False, True])
def test_exact_equivariance_with_co_rotated_grid_f64(x64_model, reflect):
    g, params = x64_model
    with jax.enable_x64(True):
        rot = jnp.asarray(_rot3(7, reflect))
        es, ev = _equivariance_errors(VEC, params, g, rot, jnp.array([0.3, -1.2, 2.0]))
    assert es < 1e-9 and ev < 1e-9, (es, ev)


def test_broken_invariant_breaks_equivariance(x64_model, monkeypatch):
    """A deliberately broken attribute (raw sender coordinate instead of the projection) must fail the test."""
    g, params = x64_model
    good = P.invariants

    def broken(pos, grid, senders, receivers):
        spatial, fiber, dist = good(pos, grid, senders, receivers)
        return spatial.at[..., 0].set(jnp.broadcast_to(pos[senders, :1], spatial.shape[:2])), fiber, dist

    monkeypatch.setattr(P, "invariants", broken)
    with jax.enable_x64(True):
        fresh = jax.jit(lambda p, c, g: P.apply(p, c, g), static_argnums=1)  # a new trace sees the patch
        es, ev = _equivariance_errors(VEC, params, g, jnp.asarray(_rot3(7)), jnp.zeros(3), apply=fresh)
    assert max(es, ev) > 1e-4, (es, ev)


def test_translation_and_permutation_f64(x64_model):
    g, params = x64_model
    with jax.enable_x64(True):
        s0, v0 = _apply(params, VEC, g)
        s1, v1 = _apply(params, VEC, g._replace(pos=g.pos + jnp.array([5.0, -3.0, 1.0])))
        assert float(jnp.abs(s1 - s0).max()) < 1e-12 and float(jnp.abs(v1 - v0).max()) < 1e-12
        perm = jnp.array([2, 0, 3, 1])
        inv = jnp.argsort(perm)
        eperm = jnp.asarray(np.random.default_rng(0).permutation(g.n_edges))
        gp = g._replace(pos=g.pos[perm], scalars=g.scalars[perm], vectors=g.vectors[perm],
                        senders=inv[g.senders][eperm], receivers=inv[g.receivers][eperm])  # fmt: skip
        s2, v2 = _apply(params, VEC, gp)
        np.testing.assert_allclose(s2, s0[perm], atol=1e-12)
        np.testing.assert_allclose(v2, v0[perm], atol=1e-12)


def test_float32_equivariance_loose():
    g = _graph(seed=4, n_graphs=2)
    params = P.init(jax.random.key(1), VEC, g)
    es, ev = _equivariance_errors(VEC, params, g, jnp.asarray(_rot3(2), jnp.float32), jnp.array([1.0, 2.0, 3.0]))
    assert es < 1e-4 and ev < 1e-4


def test_fixed_grid_error_shrinks_with_O_and_2d_grid_rotations_are_exact():
    rng = np.random.default_rng(0)
    errs = {}
    for o in (4, 32):
        cfg = P.PonitaConfig(dim=2, in_scalar=1, in_vector=1, out_vector=1, hidden_dim=8, basis_dim=8, num_layers=1,
                             num_ori=o, layer_scale=1.0)  # fmt: skip
        g = batch_complete(jnp.asarray(rng.standard_normal((1, 4, 2)), jnp.float32), jnp.ones((1, 4, 1)),
                           jnp.asarray(rng.standard_normal((1, 4, 1, 2)), jnp.float32))  # fmt: skip
        params = P.init(jax.random.key(0), cfg, g)

        def err(angle):
            c, s = np.cos(angle), np.sin(angle)
            rot = jnp.asarray([[c, -s], [s, c]], jnp.float32)
            v0 = _apply(params, cfg, g)[1]
            v1 = _apply(params, cfg, g._replace(pos=g.pos @ rot.T, vectors=g.vectors @ rot.T))[1]
            return float(jnp.abs(v1 - v0 @ rot.T).max() / jnp.abs(v0).max())

        errs[o] = err(0.3)
        assert err(2 * np.pi * 3 / o) < 1e-4  # rotations that permute the grid are exact
    assert errs[32] < errs[4] and errs[4] > 1e-3, errs


def test_nbody_prediction_equivariant_f64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        batch = {"pos": jnp.asarray(rng.standard_normal((2, 3, 3))), "vel": jnp.asarray(rng.standard_normal((2, 3, 3))),
                 "charges": jnp.ones((2, 3, 1))}  # fmt: skip
        cfg = dataclasses.replace(VEC, out_scalar=0)
        params = P.init(jax.random.key(2), cfg, P.nbody_graph(batch))
        rot, t = jnp.asarray(_rot3(5)), jnp.array([1.0, 2.0, -0.5])
        x0 = P.nbody_predict(params, cfg, batch)
        b2 = {**batch, "pos": batch["pos"] @ rot.T + t, "vel": batch["vel"] @ rot.T}
        x1 = P.nbody_predict(_with_grid(params, params["consts"]["grid"] @ rot.T), cfg, b2)
        np.testing.assert_allclose(x1, x0 @ rot.T + t, atol=1e-10)


# ------------------------------------------------------------------------------------------- forces


def test_forces_finite_differences_and_equivariance_f64():
    with jax.enable_x64(True):
        g = _graph(seed=5, vec=False)
        params = P.init(jax.random.key(3), ENERGY, g)
        e, f = _energy_forces(params, ENERGY, g)
        assert e.shape == (1,) and f.shape == (4, 3)
        np.testing.assert_allclose(f.sum(0), 0.0, atol=1e-10)  # translation invariance
        h = 1e-5
        fd = np.zeros((4, 3))
        energy = jax.jit(lambda pos: P.apply(params, ENERGY, g._replace(pos=pos))[0][0, 0])
        for i in range(4):
            for d in range(3):
                dp = jnp.zeros((4, 3)).at[i, d].set(h)
                fd[i, d] = -(energy(g.pos + dp) - energy(g.pos - dp)) / (2 * h)
        np.testing.assert_allclose(f, fd, rtol=1e-6, atol=1e-6 * float(jnp.abs(f).max()))
        rot = jnp.asarray(_rot3(9))
        e2, f2 = _energy_forces(_with_grid(params, params["consts"]["grid"] @ rot.T), ENERGY,
                                g._replace(pos=g.pos @ rot.T))  # fmt: skip
        np.testing.assert_allclose(e2, e, atol=1e-10)
        np.testing.assert_allclose(f2, f @ rot.T, atol=1e-10)


# ------------------------------------------------------------------------------------------- transforms


def test_jit_vmap_grad_and_pnita():
    gs = [_graph(seed=s, vec=False) for s in range(3)]
    batched = jax.tree.map(lambda *a: jnp.stack(a), *gs)
    cfg = ENERGY
    params = P.init(jax.random.key(0), cfg, gs[0])
    out = jax.vmap(lambda g: _apply(params, cfg, g)[0])(batched)
    np.testing.assert_allclose(out[1], _apply(params, cfg, gs[1])[0], rtol=1e-5)
    # PNITA: distance only, same code path
    pn = dataclasses.replace(cfg, num_ori=0)
    pp = P.init(jax.random.key(0), pn, gs[0])
    assert "fiber_basis" not in pp and pp["consts"]["grid"].shape == (0, 3)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(P.energy_forces(p, pn, gs[0])[0])))(pp)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(grads))
    assert float(jnp.abs(grads["layers"]["A"]).max()) > 0


def test_calibrate_is_pure_and_normalises_first_layer():
    g = _graph(seed=6, n_graphs=3)
    params = P.init(jax.random.key(4), VEC, g)
    before = jax.tree.map(np.asarray, params)
    cal = jax.jit(P.calibrate, static_argnums=1)(params, VEC, g)
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, params))

    @jax.jit
    def first_layer(cal):
        basis, _ = P.kernel_bases(cal, VEC, g)
        f = P._lift(cal, VEC, g)
        return f, P.spatial_conv(f, basis @ cal["layers"]["A"][0], g.senders, g.receivers, g.edge_mask)

    f, gl = first_layer(cal)
    assert float(jnp.std(gl)) == pytest.approx(float(jnp.std(f)), rel=1e-3)
    assert not np.allclose(cal["layers"]["A"], params["layers"]["A"])


def test_optimizer_freezes_consts_and_masks_decay():
    params = P.init(jax.random.key(0), VEC, _graph())
    mask = P.decay_mask(params)
    assert mask["layers"]["A"] and not mask["layers"]["bias"] and not mask["layers"]["gamma"]
    assert not mask["layers"]["ln_scale"] and not mask["consts"]["grid"]
    opt = P.make_optimizer(1e-2, weight_decay=0.1)
    grads = jax.tree.map(jnp.ones_like, params)
    upd, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    assert float(jnp.abs(upd["consts"]["grid"]).max()) == 0.0
    assert float(jnp.abs(upd["layers"]["A"]).max()) > 0


def test_rotation_averaged_reduces_to_apply_shapes():
    g = _graph(seed=1)
    params = P.init(jax.random.key(0), VEC, g)
    s, v = P.rotation_averaged(params, VEC, g, jax.random.key(1), repeats=3)
    s0, v0 = _apply(params, VEC, g)
    assert s.shape == s0.shape and v.shape == v0.shape
    r = P.random_rotation(jax.random.key(2))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)
    assert float(jnp.linalg.det(r)) == pytest.approx(1.0, abs=1e-5)


def test_use_kernel_matches_jnp_path():
    pytest.importorskip("zoo.kernels.ponita_conv")
    g = _graph(seed=2)
    params = P.init(jax.random.key(0), VEC, g)
    kcfg = dataclasses.replace(VEC, use_kernel=True)
    s0, v0 = _apply(params, VEC, g)
    s1, v1 = _apply(params, kcfg, g)
    np.testing.assert_allclose(v1, v0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s1, s0, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------- bad input


def test_config_errors():
    with pytest.raises(ValueError, match="dim: expected one of 2, 3"):
        P.PonitaConfig(dim=4, out_scalar=1)
    with pytest.raises(ValueError, match="num_ori"):
        P.PonitaConfig(out_scalar=1, num_ori=-1)
    with pytest.raises(ValueError, match="degree"):
        P.PonitaConfig(out_scalar=1, degree=0)
    with pytest.raises(ValueError, match="out_vector: PNITA"):
        P.PonitaConfig(out_vector=1, num_ori=0)
    with pytest.raises(ValueError, match="grid: expected one of"):
        P.PonitaConfig(out_scalar=1, grid="icosahedron")
    with pytest.raises(ValueError, match="task_level"):
        P.PonitaConfig(out_scalar=1, task_level="edge")


def test_input_errors():
    g = _graph(vec=True)
    params = P.init(jax.random.key(0), VEC, g)
    with pytest.raises(ValueError, match="pos: expected last dimension dim=3"):
        P.apply(params, VEC, g._replace(pos=g.pos[:, :2]))
    with pytest.raises(ValueError, match="pos: contains 1 non-finite"):
        P.apply(params, VEC, g._replace(pos=g.pos.at[0, 0].set(jnp.nan)))
    with pytest.raises(ValueError, match=r"senders: expected indices in \[0, 4\)"):
        P.apply(params, VEC, g._replace(senders=g.senders.at[0].set(4)))
    with pytest.raises(ValueError, match="receivers: expected shape"):
        P.apply(params, VEC, g._replace(receivers=g.receivers[:-1]))
    with pytest.raises(ValueError, match="vectors: expected shape"):
        P.apply(params, dataclasses.replace(VEC, in_vector=0), g)  # vectors given, cfg has none
    with pytest.raises(ValueError, match="scalars: expected shape"):
        P.apply(params, VEC, g._replace(scalars=jnp.ones((4, 2))))
    with pytest.raises(ValueError, match="grid"):
        P.apply(params, dataclasses.replace(VEC, num_ori=5), g)
    with pytest.raises(ValueError, match="energy_forces needs"):
        P.energy_forces(params, VEC, g)


def test_empty_graph_gives_zero_energy():
    g = Graph(pos=jnp.zeros((0, 3)), scalars=jnp.zeros((0, 1)), vectors=jnp.zeros((0, 0, 3)),
              senders=jnp.zeros(0, jnp.int32), receivers=jnp.zeros(0, jnp.int32), node_graph=jnp.zeros(0, jnp.int32),
              node_mask=jnp.zeros(0, bool), edge_mask=jnp.zeros(0, bool), graph_mask=jnp.ones(2, bool))  # fmt: skip
    params = P.init(jax.random.key(0), ENERGY, _graph(vec=False))
    e, f = P.energy_forces(params, ENERGY, g)
    assert e.shape == (2,) and f.shape == (0, 3)
    np.testing.assert_array_equal(e, 0.0)
