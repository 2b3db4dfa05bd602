"""TangleNAS: coefficient maps, weight vs output superposition, one-hot sub-networks (numpy
reference), mixture weights (Dirichlet moments, sparsemax), α gradients, search and discretisation."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.weightspace import tanglenas as tn

SPACE = tn.SearchSpace(channels=(2, 4), kernels=(1, 3), n_layers=2, num_classes=3)


def np_conv1d(x, w):
    """Same-padded stride-1 1-D conv, x [N, T, Ci], w [k, Ci, Co] (k odd)."""
    k = w.shape[0]
    xp = np.pad(x, ((0, 0), ((k - 1) // 2,) * 2, (0, 0)))
    return sum(np.einsum("nti,io->nto", xp[:, j : j + x.shape[1]], w[j]) for j in range(k))


def np_subnet(params, x, cvals, kvals, space):
    """The standalone small network built from sliced super-weights."""
    h, cin, kmax = x[..., None], space.in_channels, space.kernels[-1]
    for l, (c, k) in enumerate(zip(cvals, kvals)):
        s = (kmax - k) // 2
        w = np.asarray(params[f"conv{l}"]["w"])[s : s + k, :cin, :c]
        h = np.maximum(np_conv1d(h, w) + np.asarray(params[f"conv{l}"]["b"])[:c], 0)
        cin = c
    return h.mean(1) @ np.asarray(params["head"]["w"])[:cin] + np.asarray(params["head"]["b"])


@pytest.fixture(scope="module")
def net():
    params = tn.init_supernet(jax.random.key(0), SPACE)
    x = jax.random.normal(jax.random.key(1), (5, 9))
    return params, x


def test_coefficient_maps():
    p = jnp.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(tn.coeff_channels(p, (8, 16, 32), 32), [1] * 8 + [0.8] * 8 + [0.5] * 16, atol=1e-6)
    np.testing.assert_allclose(tn.coeff_kernel(p, (3, 5, 7), 7), [0.5, 0.8, 1, 1, 1, 0.8, 0.5], atol=1e-6)
    np.testing.assert_allclose(tn.coeff_kernel(jnp.array([0.4, 0.6]), (1, 5), 7), [0, 0.6, 0.6, 1, 0.6, 0.6, 0],
                               atol=1e-6)


def test_combi_factorisation_equals_explicit_masks():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(5, 5, 4, 6)).astype(np.float32)
    pk, pi, po = (rng.dirichlet(np.ones(n)).astype(np.float32) for n in (3, 2, 3))
    kv, iv, ov = (1, 3, 5), (2, 4), (2, 3, 6)
    ref = np.zeros_like(theta)
    for (a, k), (b, ci), (c, co) in itertools.product(enumerate(kv), enumerate(iv), enumerate(ov)):
        m = np.zeros_like(theta)
        s = (5 - k) // 2
        m[s : s + k, s : s + k, :ci, :co] = 1
        ref += pk[a] * pi[b] * po[c] * m * theta
    got, _ = tn.mixed_conv_weight(jnp.asarray(theta), p_out=jnp.asarray(po), p_in=jnp.asarray(pi),
                                  p_ker=jnp.asarray(pk), out_values=ov, in_values=iv, kernel_values=kv)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    wd = tn.mixed_dense_weight(jnp.asarray(theta[0, 0]), p_in=jnp.asarray(pi), in_values=iv)
    ref_d = sum(pi[b] * np.where(np.arange(4)[:, None] < ci, theta[0, 0], 0) for b, ci in enumerate(iv))
    np.testing.assert_allclose(wd, ref_d, atol=1e-6)


@pytest.mark.parametrize("ndim", [1, 2])
def test_weight_superposition_equals_output_superposition(ndim):
    rng = np.random.default_rng(1)
    kv = (1, 3, 5)
    theta = jnp.asarray(rng.normal(size=(5,) * ndim + (2, 3)), jnp.float32)
    x = jnp.asarray(rng.normal(size=(2,) + (7,) * ndim + (2,)), jnp.float32)
    w = jnp.asarray(rng.dirichlet(np.ones(3)), jnp.float32)
    dn = ("NWC", "WIO", "NWC") if ndim == 1 else ("NHWC", "HWIO", "NHWC")
    conv = lambda z, k: jax.lax.conv_general_dilated(z, k, (1,) * ndim, "SAME", dimension_numbers=dn)  # noqa: E731
    mixed, _ = tn.mixed_conv_weight(theta, p_ker=w, kernel_values=kv)
    sl = lambda k: tuple([slice((5 - k) // 2, (5 - k) // 2 + k)] * ndim)  # noqa: E731
    fns = [lambda z, k=k: conv(z, theta[sl(k)]) for k in kv]
    np.testing.assert_allclose(conv(x, mixed), tn.output_superposition(fns, w, x), atol=1e-5)


def test_onehot_supernet_is_the_sliced_subnetwork(net):
    params, x = net
    archs = tn.enumerate_architectures(SPACE)
    assert archs["channels"].shape == (SPACE.size, 2) and len({tuple(np.r_[c, k]) for c, k in
                                                               zip(np.asarray(archs["channels"]), np.asarray(archs["kernels"]))}) == 16
    for i in (0, 6, 15):
        arch = {k: v[i] for k, v in archs.items()}
        vals = tn.arch_values(arch, SPACE)
        got = tn.supernet_apply(params, x, tn.onehot_probs(arch, SPACE), SPACE)
        np.testing.assert_allclose(got, np_subnet(params, np.asarray(x), vals["channels"], vals["kernels"], SPACE),
                                   atol=1e-5)
        sub_params = sum(vals["kernels"][l] * (1 if l == 0 else vals["channels"][l - 1]) * vals["channels"][l]
                         + vals["channels"][l] for l in range(2)) + vals["channels"][-1] * 3 + 3
        assert tn.param_count(arch, SPACE) == sub_params


def test_ws_supernet_onehot_and_parameter_count(net):
    _, x = net
    ws = tn.init_ws_supernet(jax.random.key(2), SPACE)
    arch = {"channels": jnp.array([0, 1]), "kernels": jnp.array([1, 0])}
    got = tn.ws_supernet_apply(ws, x, tn.onehot_probs(arch, SPACE), SPACE)
    h = np.asarray(x)[..., None]
    for l, (c, k) in enumerate(((2, 3), (4, 1))):
        p = ws[f"conv{l}"][f"c{c}_k{k}"]
        h = np.pad(np.maximum(np_conv1d(h, np.asarray(p["w"])) + np.asarray(p["b"]), 0), ((0, 0), (0, 0), (0, 4 - c)))
    np.testing.assert_allclose(got, h.mean(1) @ np.asarray(ws["head"]["w"]) + np.asarray(ws["head"]["b"]), atol=1e-5)
    n_we = sum(v.size for v in jax.tree.leaves(tn.init_supernet(jax.random.key(0), SPACE)))
    assert sum(v.size for v in jax.tree.leaves(ws)) > n_we


def test_alpha_gradients(net):
    params, x = net
    alpha = tn.init_alpha(jax.random.key(3), SPACE)

    def loss(a, method):
        kc, kk = jax.random.split(jax.random.key(4))
        probs = {"channels": tn.mixture_weights(a["channels"], kc, method=method),
                 "kernels": tn.mixture_weights(a["kernels"], kk, method=method)}
        return jnp.sum(tn.supernet_apply(params, x, probs, SPACE) ** 2)

    grads = jax.jit(lambda a: {m: jax.grad(loss)(a, m) for m in ("darts", "drnas", "spos")})(alpha)
    for method in ("darts", "drnas"):
        for leaf in jax.tree.leaves(grads[method]):
            assert np.all(np.isfinite(leaf)) and np.all(np.abs(leaf).sum(-1) > 0), method
    assert all(np.all(leaf == 0) for leaf in jax.tree.leaves(grads["spos"]))


def test_mixture_weights_dirichlet_spos_gdas_sparsemax():
    alpha = jnp.array([[0.5, -0.3, 1.2]])
    keys = jax.random.split(jax.random.key(5), 20000)
    s = jax.jit(jax.vmap(lambda k: tn.mixture_weights(alpha, k, method="drnas")))(keys)
    conc = np.where(np.asarray(alpha) > 0, np.asarray(alpha), np.expm1(np.asarray(alpha))) + 1
    np.testing.assert_allclose(s.sum(-1), 1, atol=1e-5)
    np.testing.assert_allclose(s.mean(0), conc / conc.sum(), atol=0.01)
    sp = tn.mixture_weights(alpha, keys[0], method="spos")
    assert sp.sum() == 1 and set(np.asarray(sp).ravel()) <= {0.0, 1.0}
    gd = tn.mixture_weights(alpha, keys[0], method="gdas")
    np.testing.assert_allclose(gd.sum(-1), 1, atol=1e-6)
    z = np.array([[0.1, 1.5, 1.2, -2.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    # sparsemax reference: projection onto the simplex via bisection on tau
    ref = []
    for row in z:
        lo, hi = row.min() - 1, row.max()
        for _ in range(100):
            t = (lo + hi) / 2
            lo, hi = (t, hi) if np.maximum(row - t, 0).sum() > 1 else (lo, t)
        ref.append(np.maximum(row - (lo + hi) / 2, 0))
    np.testing.assert_allclose(tn.sparsemax(jnp.asarray(z)), ref, atol=1e-5)
    np.testing.assert_allclose(tn.mixture_weights(jnp.asarray(z), keys[0], normalizer="sparsemax"), ref, atol=1e-5)


def test_discretize_and_random_search(net):
    params, x = net
    alpha = {"channels": jnp.array([[0.1, 0.3], [0.2, 0.2]]), "kernels": jnp.array([[1.0, -1.0], [0.0, 2.0]])}
    d = tn.discretize(alpha, SPACE)
    assert d["channels"].tolist() == [1, 0] and d["kernels"].tolist() == [0, 1]  # tie -> smaller index
    y = jnp.array([0, 1, 2, 0, 1])
    best, scores = tn.spos_random_search(params, x, y, jax.random.key(6), SPACE, n_samples=6)
    assert scores.shape == (6,)
    np.testing.assert_allclose(tn.accuracy(params, x, y, tn.onehot_probs(best, SPACE), SPACE), scores.max())


def test_search_step_jit_moves_alpha_and_learns(net):
    _, x = net
    y = jnp.array([0, 1, 2, 0, 1])
    b = {"x": x, "y": y}
    cfg = tn.SearchConfig(method="darts", w_lr=3e-2)  # DrNAS steps run in the experiment test
    step = jax.jit(tn.search_step, static_argnums=(3, 4))
    s0 = tn.init_search(jax.random.key(7), SPACE, cfg)
    s, losses = s0, []
    for _ in range(15):
        s, m = step(s, b, b, SPACE, cfg)
        losses.append(float(m["train_loss"]))
    assert int(s.step) == 15 and np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert not np.allclose(s.alpha["kernels"], s0.alpha["kernels"])
