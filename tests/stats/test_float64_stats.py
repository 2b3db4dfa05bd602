"""Float64 end to end (dtype policy): with x64 enabled, float64 inputs give float64 outputs that agree
with float64 numpy/scipy references. Covers glm, predictive_multiplicity, quantile_{utils, base,
aggregation} and universality_lens (PRESTO has its own float64 tests)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit, logsumexp, rel_entr

from zoo.stats import glm
from zoo.stats import predictive_multiplicity as pm
from zoo.stats import quantile_aggregation as qa
from zoo.stats import quantile_base as qb
from zoo.stats import quantile_utils as qu
from zoo.stats import universality_lens as ul

F64 = np.float64
RNG = np.random.default_rng(0)
Q = RNG.normal(size=(9, 5))  # numpy float64 throughout
Y = RNG.normal(size=9)
TAUS = np.array([0.1, 0.25, 0.5, 0.75, 0.9])


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _f64(*xs):
    for x in jax.tree.leaves(xs):
        assert jnp.asarray(x).dtype == F64, jnp.asarray(x).dtype


def _pinball_np(q, y, taus):
    e = y[:, None] - q
    return np.mean(np.maximum(taus * e, (taus - 1) * e), axis=0)


def _pav_np(v):
    """Pool-adjacent-violators (L2, unweighted), float64."""
    blocks = []  # [sum, count]
    for x in v:
        blocks.append([x, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    return np.concatenate([np.full(c, s / c) for s, c in blocks])


def test_quantile_utils_float64():
    q, y, taus = jnp.asarray(Q), jnp.asarray(Y), jnp.asarray(TAUS)
    pin = qu.pinball(q, y, taus)
    _f64(pin, qu.pinball_per_row(q, y, taus), qu.huber_pinball(q, y, taus, 0.1), qu.coverage(q, y, taus),
         qu.crossing_rate(q), qu.crossing_penalty(q, 0.01))  # fmt: skip
    np.testing.assert_allclose(pin, _pinball_np(Q, Y, TAUS), rtol=1e-14)
    np.testing.assert_allclose(qu.check_loss(y[:, None] - q, taus), np.maximum(TAUS * (Y[:, None] - Q),
                               (TAUS - 1) * (Y[:, None] - Q)), rtol=1e-15)  # fmt: skip
    w = qu.wis(q, y, taus)
    _f64(w)
    np.testing.assert_allclose(w, 2 * np.mean(_pinball_np(Q, Y, TAUS)), rtol=1e-13)
    isc = qu.interval_score(q[:, 0], q[:, -1], y, 0.2)
    _f64(isc)
    ref = (Q[:, -1] - Q[:, 0]) + 10 * (np.maximum(Q[:, 0] - Y, 0) + np.maximum(Y - Q[:, -1], 0))
    np.testing.assert_allclose(isc, ref, rtol=1e-14)
    iso, srt, soft, mono = qu.isotonic(q), qu.sort_quantiles(q), qu.soft_sort(q, 1e-3), qu.fix_crossing_median(q)
    _f64(iso, srt, soft, mono)
    np.testing.assert_allclose(iso, np.stack([_pav_np(r) for r in Q]), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(srt, np.sort(Q, axis=-1))
    np.testing.assert_allclose(soft, np.sort(Q, axis=-1), atol=1e-12)  # tiny strength: the hard sort
    qhat = qu.cqr_calibrate(q, y, taus)
    _f64(qhat, qu.cqr_apply(q, qhat, taus), qu.margin_vec(taus), qu.margin_adapt(y, taus, 0.5))
    scores = np.maximum(Q[:, :2] - Y[:, None], Y[:, None] - Q[:, ::-1][:, :2])
    for k, a in enumerate(2 * TAUS[:2]):
        r = math.ceil((1 - a) * 10 - 1e-9)
        want = np.sort(scores[:, k])[r - 1] if r <= 9 else np.inf
        assert float(qhat[k]) == want


def test_quantile_aggregation_float64():
    Z = RNG.normal(size=(6, 3, 5))
    Zj, yj, taus = jnp.asarray(Z), jnp.asarray(Y[:6]), jnp.asarray(TAUS)
    p = qa.init_global(None, 3, 5, "medium")
    _f64(p)
    logits = jnp.asarray(RNG.normal(size=(3, 5)))
    out = qa.apply_global({"logits": logits}, Zj, kind="medium")
    _f64(out, qa.average_quantiles(Zj), qa.median_quantiles(Zj))
    wts = np.exp(np.asarray(logits)) / np.exp(np.asarray(logits)).sum(0)
    np.testing.assert_allclose(out, np.einsum("njt,jt->nt", Z, wts), rtol=1e-13)
    np.testing.assert_allclose(qa.median_quantiles(Zj), np.median(Z, axis=1), rtol=1e-15)
    loss = qa.aggregator_loss({"logits": logits}, {"Z": Zj, "y": yj}, apply_fn=qa.global_apply_fn("medium"),
                              taus=taus)  # fmt: skip
    _f64(loss)
    np.testing.assert_allclose(loss, np.mean(_pinball_np(np.asarray(out), Y[:6], TAUS)), rtol=1e-13)
    data = qa.pack_data(None, Z, Y[:6], TAUS)
    assert data["Z"].dtype == F64 and data["taus"].dtype == F64
    cfg = qa.AggregatorConfig(kind="coarse", num_steps=2, eval_every=2)
    params, info = qa.fit_aggregator(jax.random.key(0), None, Z, Y[:6], TAUS, cfg)
    _f64(params, info["train_loss"])
    lp = qa.init_local(jax.random.key(1), 2, 3, 5, "coarse", hidden=4, layers=1)
    _f64(lp, qa.apply_local(lp, jnp.ones((6, 2)), Zj, kind="coarse"))


def test_quantile_base_float64():
    X = RNG.normal(size=(30, 2))
    y = RNG.normal(size=30)
    m = qb.knn_quantile(k=5)
    pred = m.predict(m.fit(jax.random.key(0), X, y, TAUS), X[:4], TAUS)
    _f64(pred)
    d2 = ((X[:4, None] - X[None]) ** 2).sum(-1)
    nb = y[np.argsort(d2, axis=1)[:, :5]]
    np.testing.assert_allclose(pred, np.quantile(nb, TAUS, axis=1).T, rtol=1e-12)
    g = qb.gaussian_knn(k=5)
    _f64(g.predict(g.fit(jax.random.key(0), X, y, TAUS), X[:4], TAUS))
    lin = qb.linear_qr(num_steps=2)  # a trained model: params and predictions stay float64
    params = lin.fit(jax.random.key(0), X, y, TAUS)
    _f64(params, lin.predict(params, X[:4], TAUS))


def test_glm_float64():
    X = RNG.normal(size=(40, 3))
    y = (X[:, 0] + 0.5 * RNG.normal(size=40) > 0).astype(int)
    w, info = glm.fit_logistic(X, y, lam=0.05)
    _f64(w, info.objective, info.grad_norm)
    assert bool(info.converged) and float(info.grad_norm) < 1e-10
    Xt, ys = np.c_[X, np.ones(40)], 2.0 * y - 1
    mask = np.r_[1.0, 1.0, 1.0, 0.0]
    s = Xt @ np.asarray(w)
    L = np.mean(np.logaddexp(0, -ys * s)) + 0.025 * np.sum(mask * np.asarray(w) ** 2)
    np.testing.assert_allclose(info.objective, L, rtol=1e-14)
    g = -Xt.T @ (ys * expit(-ys * s)) / 40 + 0.05 * mask * np.asarray(w)
    np.testing.assert_allclose(glm.logistic_grad(w, Xt, ys, 0.05, mask), g, atol=1e-15)
    _f64(glm.logistic_hess(w, Xt, ys, 0.05, mask), glm.penalty_mask(3, dtype=F64))


def test_predictive_multiplicity_float64():
    X = RNG.normal(size=(40, 2))
    y = (X[:, 0] + RNG.normal(size=40) > 0).astype(int)
    prob = pm.make_problem(X, y, lam=0.1)
    w0, L0, _ = pm.fit_baseline(prob)
    _f64(prob, w0, L0)
    Xt = np.asarray(prob.Xt)
    q = expit(Xt @ np.asarray(w0))
    H = (Xt * (q * (1 - q))[:, None]).T @ Xt / 40 + np.diag([0.1, 0.1, 0.0])
    lev = pm.leverage(prob, w0, prob.Xt[:5])
    _f64(lev)
    np.testing.assert_allclose(lev, np.einsum("ij,ij->i", Xt[:5], np.linalg.solve(H, Xt[:5].T).T), rtol=1e-12)
    s_lo, s_hi = pm.quadratic_vpr(prob, w0, 0.01, prob.Xt[:5])
    _f64(s_lo, s_hi)
    np.testing.assert_allclose(s_hi - s_lo, 2 * np.sqrt(0.02 * np.asarray(lev)), rtol=1e-12)


def test_universality_lens_float64():
    p, q = jnp.asarray([0.1, 0.5, 0.9]), jnp.asarray([0.2, 0.5, 0.6])
    kb = ul.kl_bernoulli(p, q)
    _f64(kb)
    np.testing.assert_allclose(kb, rel_entr(p, q) + rel_entr(1 - p, 1 - q), rtol=1e-14)
    P = RNG.dirichlet(np.ones(4), size=3)
    Qd = RNG.dirichlet(np.ones(4), size=3)
    kc = ul.kl_categorical(jnp.asarray(P), jnp.asarray(Qd), base=2)
    _f64(kc)
    np.testing.assert_allclose(kc, rel_entr(P, Qd).sum(-1) / math.log(2), rtol=1e-14)
    mr = ul.mixture_regret(jnp.asarray(P), jnp.log(jnp.asarray(Qd)))
    _f64(mr)
    np.testing.assert_allclose(mr, rel_entr(P, Qd).sum(-1).mean(), rtol=1e-14)
    # schedules, SGLD and the NTK MLP compute in float64
    _f64(ul.polynomial_schedule(0.1, 1.0)(3), ul.cyclical_schedule(0.1, 4)(3))
    params = ul.mlp_init(jax.random.key(0), 3, 4, 2)
    _f64(params)
    tx = ul.sgld(ul.polynomial_schedule(0.01, 1.0), temperature=1.0)
    u, _ = tx.update(params, tx.init(params))
    _f64(u)
    tx0 = ul.sgld(0.01, temperature=0.0)
    u0, _ = tx0.update(params, tx0.init(params))
    for a, b in zip(jax.tree.leaves(u0), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, -0.01 * np.asarray(b))
    data = ul.make_teacher_student(jax.random.key(1), d=3, n_train=8, n_test=4)
    _f64(data["x"], data["p_true"], data["x_test"])
    samples = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), params)
    lq = ul.ensemble_log_predictive(ul.mlp_apply, samples, data["x_test"])
    _f64(lq)
    lps = [np.asarray(ul.logits_to_log_probs(ul.mlp_apply(jax.tree.map(lambda a: a[i], samples), data["x_test"])))
           for i in range(2)]  # fmt: skip
    np.testing.assert_allclose(lq, logsumexp(np.stack(lps), axis=0) - math.log(2), rtol=1e-13)
    pot = ul.posterior_potential(lambda t, b: -((b["y"] - t["w"]) ** 2), ul.gaussian_log_prior(1.0), 4)
    chains = ul.run_chains(jax.random.key(3), lambda k: {"w": jnp.zeros((), F64)}, pot, {"y": jnp.ones(4)},
                           num_chains=2, steps=4, burn_in=2, thin=1, batch_size=2, optimizer=ul.sgld(0.01))
    assert chains["w"].shape == (2, 2)
    _f64(chains)
    ll = ul.mlp_log_likelihood(params, {"x": data["x"], "y": data["y"]})
    _f64(ll, ul.max_hessian_eigenvalue(lambda t: jnp.sum(t["layers"][0]["w"] ** 2), params, jax.random.key(2),
                                       num_iters=3))  # fmt: skip
