"""zoo.weightspace.landscape against dense jax.hessian / numpy on tiny models (float32; float64 in
test_float64_phase_zoo.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from zoo.weightspace import landscape as ls

_rng = np.random.default_rng(0)
X = jnp.asarray(_rng.normal(size=(16, 3)), jnp.float32)
Y = jnp.asarray(_rng.integers(0, 2, 16))
P0 = {"w1": jnp.asarray(_rng.normal(size=(3, 4)), jnp.float32), "b1": jnp.zeros(4, jnp.float32),
      "w2": jnp.asarray(_rng.normal(size=(4, 2)), jnp.float32)}


def loss(p):
    h = jnp.tanh(X @ p["w1"] + p["b1"])
    lo = h @ p["w2"]
    return jnp.mean(jax.nn.logsumexp(lo, -1) - jnp.take_along_axis(lo, Y[:, None], 1)[:, 0])


@pytest.fixture(scope="module")
def dense():
    flat, unravel = ravel_pytree(P0)
    H = np.asarray(jax.jit(jax.hessian(lambda f: loss(unravel(f))))(flat), np.float64)
    return flat, unravel, H, np.linalg.eigvalsh(0.5 * (H + H.T))


def test_hvp_matches_dense(dense):
    flat, unravel, H, _ = dense
    v = jnp.asarray(_rng.normal(size=flat.shape), jnp.float32)
    got = ravel_pytree(jax.jit(lambda q, u: ls.hvp(loss, q, u))(P0, unravel(v)))[0]
    np.testing.assert_allclose(got, H @ np.asarray(v), rtol=1e-4, atol=1e-5)


def test_power_iteration_and_lanczos(dense):
    flat, _, H, ev = dense
    top_mag = ev[np.argmax(np.abs(ev))]
    r = ls.top_eigenvalue(loss, P0, jax.random.key(1), max_iter=500, tol=1e-7)
    assert r["eigenvalue"] == pytest.approx(top_mag, rel=1e-3)
    v = ravel_pytree(r["eigenvector"])[0]
    np.testing.assert_allclose(H @ np.asarray(v), top_mag * np.asarray(v), atol=2e-2 * abs(top_mag))
    ritz = ls.lanczos_eigenvalues(loss, P0, jax.random.key(2), m=flat.size)
    assert float(ritz[-1]) == pytest.approx(ev[-1], rel=1e-3)
    assert float(ritz[0]) == pytest.approx(ev[0], rel=1e-2, abs=1e-3)


def test_hutchinson_within_4_stderr(dense):
    _, _, H, _ = dense
    r = ls.hutchinson_trace(loss, P0, jax.random.key(3), max_probes=200, tol=0.0)
    assert int(r["n_probes"]) == 200
    assert abs(float(r["trace"]) - np.trace(H)) < 4 * float(r["stderr"])
    assert float(r["stderr"]) > 0


def test_vmap_over_population(dense):
    pop = jax.tree.map(lambda x: jnp.stack([x, 2 * x]), P0)

    @jax.jit
    def both(pp, keys):
        lam = jax.vmap(lambda p, k: ls.top_eigenvalue(loss, p, k, max_iter=30)["eigenvalue"])(pp, keys)
        tr = jax.vmap(lambda p: ls.hutchinson_trace(loss, p, jax.random.key(0), max_probes=5)["trace"])(pp)
        return lam, tr

    lam, tr = both(pop, jax.random.split(jax.random.key(0), 2))
    assert lam.shape == (2,) and np.all(np.isfinite(lam))
    single = jax.jit(lambda p: ls.hutchinson_trace(loss, p, jax.random.key(0), max_probes=5)["trace"])(P0)
    assert float(tr[0]) == pytest.approx(float(single), rel=1e-4)


def _np_cka(x, y):
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_cka_properties():
    a = _rng.normal(size=(20, 5))
    b = _rng.normal(size=(20, 3))
    assert float(ls.linear_cka(a, b)) == pytest.approx(_np_cka(a, b), rel=1e-4)
    assert float(ls.linear_cka(a, a)) == pytest.approx(1.0, abs=1e-5)
    q, _ = np.linalg.qr(_rng.normal(size=(5, 5)))
    assert float(ls.linear_cka(3.0 * a @ q + 7.0, b)) == pytest.approx(_np_cka(a, b), rel=1e-4)
    assert float(ls.linear_cka(b, a)) == pytest.approx(_np_cka(a, b), rel=1e-4)
    m = np.diag([1.0, 10, 0.1, 1, 1])  # not invariant to general invertible maps
    assert abs(float(ls.linear_cka(a @ m, b)) - _np_cka(a, b)) > 1e-3
    xb = _rng.normal(size=(3, 8, 4))
    yb = _rng.normal(size=(3, 8, 4))
    assert float(ls.minibatch_cka(xb, yb)) == pytest.approx(np.mean([_np_cka(x, y) for x, y in zip(xb, yb)]), rel=1e-4)


def test_loss_barrier_and_bezier():
    pb = jax.tree.map(lambda x: -x, P0)
    r = ls.loss_barrier(loss, P0, pb, jnp.linspace(0, 1, 5))
    ts = np.linspace(0, 1, 5)
    ref = np.array([float(loss(jax.tree.map(lambda a, b: (1 - t) * a + t * b, P0, pb))) for t in ts])
    np.testing.assert_allclose(r["losses"], ref, rtol=1e-5)
    lin = (1 - ts) * ref[0] + ts * ref[-1]
    assert float(r["barrier"]) == pytest.approx(np.max(ref - lin), abs=1e-5)
    mid = 0.5 * (ref[0] + ref[-1])
    assert float(r["mc"]) == pytest.approx(mid - ref[np.argmax(np.abs(ref - mid))], abs=1e-5)
    # Bezier: ends exact, midpoint formula
    t1 = jax.tree.map(lambda x: x + 1.0, P0)
    for t, want in ((0.0, P0), (1.0, pb)):
        got = ls.bezier_point(jnp.float32(t), P0, t1, pb)
        jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, atol=1e-6), got, want)
    got = ls.bezier_point(jnp.float32(0.5), P0, t1, pb)
    jax.tree.map(lambda g, a, b, c: np.testing.assert_allclose(g, 0.25 * a + 0.5 * b + 0.25 * c, atol=1e-6),
                 got, P0, t1, pb)
    # training the bend lowers the mean curve loss on a convex quadratic (θ = 0 optimum, ends at ±1)
    q = lambda p, batch: jnp.sum(p["w"] ** 2) * batch  # noqa: E731
    e0, e2 = {"w": jnp.ones(3)}, {"w": jnp.full(3, 3.0)}
    bend = ls.fit_bezier(q, e0, e2, jnp.ones(40), jax.random.key(0), lr=0.05, weight_decay=0.0)
    mid_bend = jax.tree.map(lambda a, c: 0.5 * (a + c), e0, e2)
    before = ls.bezier_losses(lambda p: q(p, 1.0), e0, mid_bend, e2)
    after = ls.bezier_losses(lambda p: q(p, 1.0), e0, bend, e2)
    assert float(after.mean()) < float(before.mean())
