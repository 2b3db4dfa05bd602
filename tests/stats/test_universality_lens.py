"""zoo.stats.universality_lens: SGLD as an optax transformation, the Bayes-mixture theory, ensembles.

Spec ``papers/universality_lens.md`` section 6. Independent references: optax.sgd / RMSProp
updates, AR(1) stationary laws, the closed-form Bayesian linear-regression posterior, brute-force
enumeration of all binary sequences, Laplace's closed form, float64 log-mean-exp.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.stats import universality_lens as ul

PARAMS = {"a": jnp.linspace(-1.0, 1.0, 5), "b": jnp.ones((2, 3))}
GRADS = jax.tree.map(lambda x: 0.37 * x + 0.1, PARAMS)
GRID10 = (2 * np.arange(10) + 1) / 20
UNIFORM10 = np.full(10, -math.log(10))


def _kl_np(p, q):
    """Independent float64 Bernoulli KL (0 ln 0 = 0)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(p / q), 0.0)
        b = np.where(p < 1, (1 - p) * np.log((1 - p) / (1 - q)), 0.0)
    return a + b


def _run(tx, grads_fn, params, steps):
    """Apply ``tx`` for ``steps`` steps with gradients ``grads_fn(params)``; return the final params."""
    state = tx.init(params)
    for _ in range(steps):
        u, state = tx.update(grads_fn(params), state, params)
        params = optax.apply_updates(params, u)
    return params


# ============================================================================ 1. SGD / RMSProp limits


@pytest.mark.parametrize("kw", [{"noise_scale": 0.0}])
@pytest.mark.parametrize("lr", [0.1, ul.polynomial_schedule(0.3, 2.0, 0.55)])
def test_zero_noise_is_exactly_sgd(kw, lr):
    tx, ref = ul.sgld(lr, **kw), optax.sgd(lr)
    s, r = tx.init(PARAMS), ref.init(PARAMS)
    for _ in range(3):  # several steps, so a schedule's count is exercised
        u, s = tx.update(GRADS, s)
        v, r = ref.update(GRADS, r)
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_zero_noise_with_prior_is_sgd_with_weight_decay():
    grads = lambda p: jax.tree.map(lambda x: 2.0 * x, p)  # noqa: E731
    a = _run(optax.chain(optax.add_decayed_weights(1.0), ul.sgld(0.05, noise_scale=0.0)), grads, PARAMS, 4)
    b = _run(optax.chain(optax.add_decayed_weights(1.0), optax.sgd(0.05)), grads, PARAMS, 4)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _bits(tree):
    return [np.asarray(x).view(np.uint8).tobytes() for x in jax.tree.leaves(tree)]


def test_zero_temperature_is_plain_sgd_bit_for_bit():
    """The spec's limit: T = 0 is plain SGD, bit for bit (concrete T, and T traced inside jit)."""
    grads = lambda p: jax.tree.map(lambda x: jnp.sin(3 * x) + 0.2, p)  # noqa: E731
    a = _run(ul.sgld(0.05, temperature=0.0, seed=3), grads, PARAMS, 6)
    b = _run(optax.sgd(0.05), grads, PARAMS, 6)
    assert _bits(a) == _bits(b)

    def scan_run(tx, params):
        def step(carry, _):
            p, s = carry
            u, s = tx.update(grads(p), s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(step, (params, tx.init(params)), None, length=6)[0][0]

    c = jax.jit(lambda: scan_run(ul.sgld(0.05, temperature=0.0, seed=3), PARAMS))()
    d = jax.jit(lambda: scan_run(optax.sgd(0.05), PARAMS))()
    assert _bits(c) == _bits(d)
    # a traced T = 0 selects the noise-free update; another program, so XLA may fuse (FMA) differently
    f = jax.jit(lambda t: scan_run(ul.sgld(0.05, temperature=t, seed=3), PARAMS))(jnp.asarray(0.0))
    for x, y in zip(jax.tree.leaves(f), jax.tree.leaves(d)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    # and a positive temperature does move the chain off the SGD path
    e = jax.jit(lambda t: scan_run(ul.sgld(0.05, temperature=t, seed=3), PARAMS))(jnp.asarray(1.0))
    assert _bits(e) != _bits(d)


def test_preconditioned_zero_temperature_is_rmsprop_without_momentum():
    grads = lambda p: jax.tree.map(lambda x: jnp.sin(3 * x) + 0.2, p)  # noqa: E731
    a = _run(ul.sgld(0.01, noise_scale=0.0, preconditioner="rmsprop", rms_decay=0.9, precond_eps=1e-3), grads, PARAMS, 5)
    b = _run(optax.rmsprop(0.01, decay=0.9, eps=1e-3, eps_in_sqrt=False), grads, PARAMS, 5)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    # a fixed diagonal G at T = 0 is preconditioned SGD: u = -lr G g
    g_fixed = jax.tree.map(lambda x: jnp.full_like(x, 0.5), PARAMS)
    tx = ul.sgld(0.2, noise_scale=0.0, preconditioner=g_fixed)
    u, _ = tx.update(GRADS, tx.init(PARAMS))
    for x, g in zip(jax.tree.leaves(u), jax.tree.leaves(GRADS)):
        np.testing.assert_allclose(np.asarray(x), -0.2 * 0.5 * np.asarray(g), rtol=1e-7)


def test_freeze_after_fixes_the_preconditioner():
    tx = ul.sgld(1e-3, preconditioner="rmsprop", freeze_after=2)
    s = tx.init(PARAMS)
    nus = []
    for i in range(5):
        _, s = tx.update(jax.tree.map(lambda x: x * (i + 1.0) + 0.5, PARAMS), s)
        nus.append(np.asarray(s.nu["b"]).copy())
    assert not np.allclose(nus[0], nus[1])  # still adapting at steps 0 and 1
    np.testing.assert_array_equal(nus[1], nus[2])  # frozen from count 2 on
    np.testing.assert_array_equal(nus[1], nus[4])


# ============================================================================ 2. stationary law on a quadratic

S2 = 2.0  # U = θ²/(2 s²)
QUAD_STEPS = 200_000


@jax.jit
def _quad_second_moment(tx_lr, tx_temp, g_a, g_b, key):
    """Mean of θ² per leaf over QUAD_STEPS SGLD steps (after 2,000 burn-in steps) on U = Σθ²/(2 s²).

    Leaves a, b: f[32] each, preconditioned by the fixed diagonals g_a, g_b (scalars)."""
    precond = {"a": jnp.full(32, g_a), "b": jnp.full(32, g_b)}
    tx = ul.sgld(tx_lr, tx_temp, key=key, preconditioner=precond)
    params = {"a": jnp.zeros(32), "b": jnp.zeros(32)}

    def step(carry, i):
        p, s, acc = carry
        u, s = tx.update(jax.tree.map(lambda x: x / S2, p), s)
        p = optax.apply_updates(p, u)
        on = (i >= 2000).astype(jnp.float32)
        acc = jax.tree.map(lambda a, x: a + on * x * x, acc, p)
        return (p, s, acc), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (_, _, acc), _ = jax.lax.scan(step, (params, tx.init(params), zeros), jnp.arange(QUAD_STEPS + 2000))
    return jax.tree.map(lambda a: jnp.mean(a) / QUAD_STEPS, acc)


@pytest.mark.parametrize("lr, temp, g_a, g_b", [(0.4, 1.0, 1.0, 1.0), (0.4, 0.5, 0.5, 1.5)])
def test_stationary_variance_on_a_quadratic(lr, temp, g_a, g_b):
    m2 = _quad_second_moment(lr, temp, g_a, g_b, jax.random.key(7))
    for leaf, g in (("a", g_a), ("b", g_b)):
        # AR(1): θ' = (1 − αG/s²) θ + sqrt(2αTG) ξ  ->  Var = T s² / (1 − αG/(2 s²))
        want = temp * S2 / (1.0 - lr * g / (2 * S2))
        assert abs(float(m2[leaf]) / want - 1) < 0.03, (leaf, float(m2[leaf]), want)


# ============================================================================ 3. Bayesian linear regression

SIGMA = 0.5  # noise std; prior N(0, I)


def _blr_problem():
    rng = np.random.default_rng(0)
    n, d = 40, 3
    q, _ = np.linalg.qr(rng.normal(size=(n, d)))
    r, _ = np.linalg.qr(rng.normal(size=(d, d)))
    lam = np.array([40.0, 80.0, 120.0])  # eigenvalues of H = XᵀX/σ² + I
    x = q @ np.diag(np.sqrt((lam - 1.0) * SIGMA**2)) @ r.T
    y = x @ np.array([1.0, -2.0, 0.5]) + SIGMA * rng.normal(size=n)
    h = x.T @ x / SIGMA**2 + np.eye(d)
    mu = np.linalg.solve(h, x.T @ y / SIGMA**2)
    return x.astype(np.float32), y.astype(np.float32), h, mu


def test_sgld_samples_match_the_bayesian_linear_regression_posterior():
    x, y, h, mu = _blr_problem()
    alpha = 0.1 / 40.0  # α λ_i = 0.1, 0.2, 0.3

    def loglik(theta, batch):
        return -0.5 * (batch["y"] - batch["x"] @ theta["w"]) ** 2 / SIGMA**2

    potential = ul.posterior_potential(loglik, ul.gaussian_log_prior(1.0), len(y))
    samples = ul.run_chains(
        jax.random.key(1), lambda k: {"w": jnp.zeros(3)}, potential, {"x": jnp.asarray(x), "y": jnp.asarray(y)},
        num_chains=64, steps=4500, burn_in=500, thin=1, optimizer=ul.sgld(alpha),
    )  # fmt: skip
    w = np.asarray(samples["w"], np.float64)  # [64, 4000, 3]
    assert w.shape == (64, 4000, 3)
    chain_means = w.mean(1)
    se = chain_means.std(0, ddof=1) / math.sqrt(w.shape[0])  # chains are independent
    assert np.all(np.abs(chain_means.mean(0) - mu) <= 3 * se), (chain_means.mean(0), mu, se)
    # stationary covariance of the discretised chain: H^{-1} (I − αH/2)^{-1} (eigenbasis of H)
    evals, evecs = np.linalg.eigh(h)
    want = evecs @ np.diag(1.0 / (evals * (1 - alpha * evals / 2))) @ evecs.T
    got = np.cov(w.reshape(-1, 3).T)
    np.testing.assert_allclose(np.diag(got), np.diag(want), rtol=0.05)
    # ... and the exact posterior variance is recovered after removing the inflation
    naive = np.diag(np.linalg.inv(h))
    assert np.all(np.abs(np.diag(got) / np.diag(want) - 1) < np.abs(np.diag(got) / naive - 1) + 0.05)


def test_posterior_potential_scales_the_minibatch_likelihood():
    x, y, _, _ = _blr_problem()
    data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}

    def loglik(theta, batch):
        return -0.5 * (batch["y"] - batch["x"] @ theta["w"]) ** 2

    theta = {"w": jnp.array([0.3, -0.1, 0.2])}
    pot = ul.posterior_potential(loglik, ul.gaussian_log_prior(2.0), 40)
    full = float(-jnp.sum(loglik(theta, data)) + jnp.sum(theta["w"] ** 2) / 8.0)
    np.testing.assert_allclose(float(pot(theta, data)), full, rtol=1e-6)
    # the 4 disjoint batches of 10 average to the full potential: n/B = 4
    parts = [float(pot(theta, jax.tree.map(lambda a: a[i::4], data))) for i in range(4)]
    np.testing.assert_allclose(np.mean(parts), full, rtol=1e-5)
    np.testing.assert_allclose(parts[0], float(-4 * jnp.sum(loglik(theta, jax.tree.map(lambda a: a[0::4], data)))
                                               + jnp.sum(theta["w"] ** 2) / 8.0), rtol=1e-6)  # fmt: skip


def test_run_chains_minibatches_and_collect_fn():
    x, y, _, _ = _blr_problem()
    data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    pot = ul.posterior_potential(lambda t, b: -0.5 * (b["y"] - b["x"] @ t["w"]) ** 2, None, 40)
    kw = dict(num_chains=2, steps=23, burn_in=5, thin=4, batch_size=8, optimizer=ul.sgld(1e-3))
    out = ul.run_chains(jax.random.key(0), lambda k: {"w": jax.random.normal(k, (3,))}, pot, data,
                        collect_fn=lambda t: jnp.sum(t["w"]), **kw)  # fmt: skip
    assert out.shape == (2, 4)  # (23 − 5) // 4 kept per chain
    assert np.all(np.isfinite(out)) and not np.allclose(out[0], out[1])


# ============================================================================ 4. keys, reproducibility, jit, vmap


def test_same_seed_same_trajectory_other_seed_other_trajectory():
    grads = lambda p: jax.tree.map(lambda x: 0.1 * x, p)  # noqa: E731
    a = _run(ul.sgld(0.01, seed=3), grads, PARAMS, 3)
    b = _run(ul.sgld(0.01, seed=3), grads, PARAMS, 3)
    c = _run(ul.sgld(0.01, seed=4), grads, PARAMS, 3)
    for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert not np.allclose(np.asarray(x), np.asarray(z))


def test_noise_is_independent_across_leaves_steps_and_chains():
    big = {"a": jnp.zeros(20_000), "b": jnp.zeros(20_000)}
    zero = jax.tree.map(jnp.zeros_like, big)
    tx = ul.sgld(0.5)  # updates = sqrt(2 α T) ξ = ξ when g = 0

    @jax.jit
    def two_steps(keys):
        states = jax.vmap(tx.init_with_key, in_axes=(None, 0))(big, keys)
        u1, states = jax.vmap(tx.update, in_axes=(None, 0))(zero, states)
        return u1, jax.vmap(tx.update, in_axes=(None, 0))(zero, states)[0]

    u1, u2 = two_steps(jax.random.split(jax.random.key(0), 2))
    a0, b0, a0_next, a1 = u1["a"][0], u1["b"][0], u2["a"][0], u1["a"][1]
    np.testing.assert_allclose(float(jnp.std(a0)), 1.0, rtol=0.03)
    for other in (b0, a0_next, a1):
        assert abs(float(jnp.corrcoef(a0, other)[0, 1])) < 0.02


def test_jit_update_equals_eager_update_and_chain_keys():
    tx = ul.sgld(0.05, 0.7, preconditioner="rmsprop")
    s = tx.init(PARAMS)
    u_eager, s_eager = tx.update(GRADS, s)
    u_jit, s_jit = jax.jit(tx.update)(GRADS, s)
    for x, y in zip(jax.tree.leaves((u_eager, s_eager)), jax.tree.leaves((u_jit, s_jit))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    # init_with_key also reaches an SGLD state inside an optax.chain
    chained = optax.chain(optax.add_decayed_weights(1.0), ul.sgld(0.1))
    st0 = ul.init_with_key(chained, PARAMS, jax.random.PRNGKey(9))
    assert np.array_equal(np.asarray(st0[1].key), np.asarray(jax.random.PRNGKey(9)))


def test_sgld_runs_inside_a_zoo_train_population():
    from zoo.train import make_run, population

    def loss(p, b, r):
        return 0.5 * jnp.sum(p["w"] ** 2), {}

    run = make_run(lambda k: {"w": jnp.ones(4)}, loss, lambda h: ul.sgld(h["lr"], key=h["key"]), lambda s: None, 20)
    noise_keys = jax.random.split(jax.random.PRNGKey(0), 2)[jnp.array([0, 0, 1])]
    hp = {"lr": jnp.full(3, 0.05), "key": noise_keys}
    states, metrics = population(run, jax.random.split(jax.random.key(0), 3), hp)
    assert metrics["loss"].shape == (3, 20) and np.all(np.isfinite(metrics["loss"]))
    w = np.asarray(states.params["w"])
    np.testing.assert_array_equal(w[0], w[1])  # same noise key -> same chain (init is the same here)
    assert not np.allclose(w[0], w[2])  # another member's key -> other noise
    assert np.all(np.asarray(states.opt_state.count) == 20)


# ============================================================================ 5. schedules


def test_schedules():
    sch = ul.polynomial_schedule(0.3, 2.0, 0.55)
    np.testing.assert_allclose(float(sch(0)), 0.3 * 2.0**-0.55, rtol=1e-6)
    np.testing.assert_allclose(float(sch(100)), 0.3 * 102.0**-0.55, rtol=1e-6)
    cyc = ul.cyclical_schedule(0.2, 10)
    k = jnp.arange(40)
    v = np.asarray(jax.vmap(cyc)(k))
    np.testing.assert_allclose(v[:10], v[10:20], rtol=1e-6)
    np.testing.assert_allclose(v[:10], v[30:40], rtol=1e-6)
    np.testing.assert_allclose([v[0], v[5]], [0.2, 0.1], rtol=1e-6)
    assert np.all(np.diff(v[:10]) < 0)  # decays within a cycle


# ============================================================================ 6. exact theory


def test_online_regret_equals_brute_force_enumeration():
    grid, lp = np.array([0.1, 0.35, 0.8]), np.log([0.5, 0.3, 0.2])
    theta0, n = 0.42, 9
    total = 0.0
    for x in itertools.product((0, 1), repeat=n):
        k = sum(x)
        p = theta0**k * (1 - theta0) ** (n - k)
        q = np.sum(np.exp(lp) * grid**k * (1 - grid) ** (n - k))
        total += p * math.log(p / q)
    np.testing.assert_allclose(ul.finite_mixture_online_regret(theta0, grid, lp, n), total / n, rtol=1e-10)
    bits = ul.finite_mixture_online_regret(theta0, grid, lp, n, base=2)
    np.testing.assert_allclose(bits, total / n / math.log(2), rtol=1e-10)


def test_published_values_of_the_spec():
    # E1 numbers of the spec, to the digits printed there
    assert [round(ul.finite_mixture_online_regret(0.3, GRID10, UNIFORM10, n), 4) for n in (10, 100)] == [0.0615, 0.0167]
    lo = {d: ul.bates_pushforward_prior(d) for d in (1, 16)}
    np.testing.assert_allclose(ul.finite_mixture_online_regret(0.5, *lo[1], 100), 0.0159, atol=5e-5)
    np.testing.assert_allclose(ul.finite_mixture_online_regret(0.5, *lo[16], 100), 0.0023, atol=5e-5)
    np.testing.assert_allclose(ul.finite_mixture_online_regret(0.9, *lo[1], 100), 0.021, atol=5e-4)
    np.testing.assert_allclose(ul.finite_mixture_online_regret(0.9, *lo[16], 100), 0.135, atol=5e-4)


def test_chain_rule_online_equals_sum_of_batch_regrets():
    rng = np.random.default_rng(3)
    for n in (1, 7, 40):
        grid = np.sort(rng.uniform(0.02, 0.98, size=6))
        lp = np.log(rng.dirichlet(np.ones(6)))
        lhs = n * ul.finite_mixture_online_regret(0.63, grid, lp, n)
        rhs = sum(ul.batch_regret(0.63, grid, lp, t) for t in range(1, n + 1))
        assert abs(lhs - rhs) < 1e-10
    # per-n batch regret is not monotone for a fixed θ0 (spec pitfall): uniform prior, θ0 = ½
    g, lp = ul.bates_pushforward_prior(1, 401)
    assert ul.batch_regret(0.5, g, lp, 1) < 1e-12 < ul.batch_regret(0.5, g, lp, 2)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    k=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    theta0=st.floats(0.01, 0.99),
    n=st.integers(1, 300),
)
def test_regret_bound_dominates_exact_regret(k, seed, theta0, n):
    rng = np.random.default_rng(seed)
    grid = rng.uniform(0.005, 0.995, size=k)
    lp = np.log(rng.dirichlet(np.full(k, 0.5)) + 1e-300)
    lp -= np.logaddexp.reduce(lp)
    div = _kl_np(theta0, grid)
    bound, eps = ul.regret_bound(div, lp, n)
    assert ul.finite_mixture_online_regret(theta0, grid, lp, n) <= bound + 1e-12
    assert np.any(np.isclose(div, eps, rtol=0, atol=0))  # attained at one of the divergences


def test_regret_bound_is_the_minimum_over_eps():
    div = _kl_np(0.3, GRID10)
    bound, eps = ul.regret_bound(div, UNIFORM10, 50)
    fine = np.linspace(0, div.max() * 1.2, 3001)
    objective = [e + math.log(1 / ul.hypothesis_weight(div, UNIFORM10, e)) / 50 for e in fine if e >= div.min()]
    assert bound <= min(objective) + 1e-12
    np.testing.assert_allclose(bound, eps + math.log(1 / ul.hypothesis_weight(div, UNIFORM10, eps)) / 50, rtol=1e-12)
    bits, eps_bits = ul.regret_bound(div, UNIFORM10, 50, base=2)
    np.testing.assert_allclose(bits, bound / math.log(2), rtol=1e-12)
    assert eps_bits == eps


def test_hypothesis_weight_is_monotone_and_one_at_max_div():
    rng = np.random.default_rng(0)
    div = rng.exponential(size=50)
    lp = np.log(rng.dirichlet(np.ones(50)))
    eps = np.linspace(0, div.max(), 200)
    w = np.array([ul.hypothesis_weight(div, lp, e) for e in eps])
    assert np.all(np.diff(w) >= -1e-15)
    np.testing.assert_allclose(ul.hypothesis_weight(div, lp, div.max()), 1.0, rtol=1e-12)
    assert ul.hypothesis_weight(div, lp, div.min() / 2) == 0.0


def test_bates_prior_is_symmetric_and_d1_is_laplace():
    for dim in (1, 3, 8):
        g, lp = ul.bates_pushforward_prior(dim, 1001)
        w = np.exp(lp)
        np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-12)
        np.testing.assert_allclose(lp, lp[::-1], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(np.sum(w * g), 0.5, atol=1e-12)
        np.testing.assert_allclose(np.sum(w * (g - 0.5) ** 2), 1 / (12 * dim), rtol=1e-3)  # Var mean = 1/(12 D)
    # D = 1: Q(x^n) = k!(n−k)!/(n+1)! (Laplace), up to the midpoint rule on 4001 cells
    g, lp = ul.bates_pushforward_prior(1)
    n = 20
    for k in range(n + 1):
        lq = np.logaddexp.reduce(lp + k * np.log(g) + (n - k) * np.log1p(-g))
        want = math.lgamma(k + 1) + math.lgamma(n - k + 1) - math.lgamma(n + 2)
        assert abs(lq - want) < 1e-5, (k, lq, want)


def test_kl_functions_against_numpy_and_under_grad_jit_vmap():
    p, q = np.array([0.0, 0.2, 0.5, 1.0]), np.array([0.3, 0.25, 0.5, 0.9])
    with jax.enable_x64(True):

        @jax.jit
        def kls(p, q):
            cat = ul.kl_categorical(jnp.stack([p, 1 - p], -1), jnp.stack([q, 1 - q], -1))
            return ul.kl_bernoulli(p, q), cat, ul.kl_bernoulli(p, q, base=2)

        bern, cat, bits = kls(p, q)
        np.testing.assert_allclose(np.asarray(bern), _kl_np(p, q), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(cat), _kl_np(p, q), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(bits), _kl_np(p, q) / math.log(2), rtol=1e-12)
    with pytest.raises(ValueError, match="q"):  # the concrete (eager) path checks the range
        ul.kl_bernoulli(0.5, 1.2)
    g = jax.grad(lambda qq: ul.kl_bernoulli(0.3, qq))(0.6)  # d/dq = (q − p)/(q(1 − q))
    np.testing.assert_allclose(float(g), (0.6 - 0.3) / (0.6 * 0.4), rtol=1e-5)
    v = jax.jit(jax.vmap(ul.kl_bernoulli))(jnp.asarray(p, jnp.float32), jnp.asarray(q, jnp.float32))
    np.testing.assert_allclose(np.asarray(v), _kl_np(p, q), rtol=1e-5, atol=1e-7)


# ============================================================================ 7-8. ensemble and regret


def _mlp_samples(m=6, width=5, num_out=3, d=4):
    """m MLP parameter draws stacked on a leading axis (numpy float64, so no compile is needed)."""
    rng = np.random.default_rng(m + width)
    dims = [d, width, num_out]
    layers = [{"w": rng.normal(size=(m, a, b)), "b": rng.normal(size=(m, b))} for a, b in zip(dims[:-1], dims[1:])]
    return {"layers": layers}


def _np_mlp_probs(layers, x):
    h = np.maximum(x @ layers[0]["w"] / 2.0 + layers[0]["b"], 0.0)  # fan_in 4
    z = h @ layers[1]["w"] / np.sqrt(layers[1]["w"].shape[0]) + layers[1]["b"]
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_ensemble_log_predictive_is_log_mean_prob_in_float64():
    samples = _mlp_samples()
    x = np.random.default_rng(1).normal(size=(7, 4))
    probs = np.stack([_np_mlp_probs([{k: v[i] for k, v in l.items()} for l in samples["layers"]], x) for i in range(6)])
    with jax.enable_x64(True):
        got = jax.jit(lambda s, x: ul.ensemble_log_predictive(ul.mlp_apply, s, x))(samples, x)
        assert got.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(got), np.log(probs.mean(0)), rtol=1e-12)
    # two sample axes (chains, kept) flatten to the same mixture (float32 here)
    two = jax.tree.map(lambda a: a.reshape(2, 3, *a.shape[1:]), samples)
    a = jax.jit(lambda s, x: ul.ensemble_log_predictive(ul.mlp_apply, s, x, sample_axes=2))(two, x)
    np.testing.assert_allclose(np.asarray(a), np.log(probs.mean(0)), rtol=1e-5, atol=1e-5)


def test_mixture_log_loss_is_below_the_members_mean():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(50, 4)).astype(np.float32), rng.integers(0, 3, size=50)

    @jax.jit
    def losses(samples, x, y):
        mix = ul.ensemble_log_predictive(ul.mlp_apply, samples, x)
        members = ul.sample_log_probs(ul.mlp_apply, samples, x)  # [8, 50, 3]
        nll = lambda lp: -jnp.mean(jnp.take_along_axis(lp, y[:, None], -1))  # noqa: E731
        return nll(mix), jnp.mean(jax.vmap(nll)(members)), nll(members.mean(0))

    mix_loss, member_loss, mean_logprob_loss = map(float, losses(_mlp_samples(m=8), x, y))
    assert mix_loss < member_loss - 1e-3  # strict in practice (Jensen)
    # the silent bug the spec warns about: averaging log-probabilities is worse than the mixture
    assert mean_logprob_loss >= mix_loss


def test_mixture_regret_nonnegative_zero_at_truth_and_bernoulli_logit():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=20)
    q = rng.dirichlet(np.ones(4), size=20)
    z = np.array([[-2.0], [0.0], [3.0]], np.float32)  # one logit = Bernoulli; equals softmax over [0, z]

    @jax.jit
    def f(p, q, z):
        return (ul.mixture_regret(p, jnp.log(q)), jnp.mean(ul.kl_categorical(p, q)), ul.mixture_regret(p, jnp.log(p)),
                ul.logits_to_log_probs(z), jax.nn.log_softmax(jnp.concatenate([0 * z, z], -1)))  # fmt: skip

    r, kl, zero, lp1, lp2 = f(p, q, z)
    assert float(r) > 0
    np.testing.assert_allclose(float(r), float(kl), rtol=1e-5)
    np.testing.assert_allclose(float(r), np.mean(np.sum(p * np.log(p / q), -1)), rtol=1e-5)
    assert abs(float(zero)) < 1e-6
    np.testing.assert_allclose(np.asarray(lp1), np.asarray(lp2), rtol=1e-6)


def test_teacher_student_and_ntk_mlp():
    teacher = jax.jit(jax.vmap(lambda k: ul.make_teacher_student(k, n_train=2000, n_test=100)))
    data = teacher(jnp.stack([jax.random.key(5), jax.random.key(5), jax.random.key(6)]))
    assert data["x"].shape == (3, 2000, 10) and data["y"].shape == (3, 2000) and data["x_test"].shape == (3, 100, 10)
    np.testing.assert_allclose(np.asarray(data["p_true"].sum(-1)), 1.0, rtol=1e-6)
    y, p1 = np.asarray(data["y"]), np.asarray(data["p_true"][..., 1])
    np.testing.assert_array_equal(y[0], y[1])  # a pure function of the key
    assert not np.array_equal(y[0], y[2])
    assert set(np.unique(y)) <= {0, 1} and abs(y[0].mean() - p1[0].mean()) < 0.03  # y ~ Bern(p)
    # NTK scaling: with N(0, 1) parameters the output variance at init does not grow with width
    x = np.random.default_rng(0).normal(size=(128, 10)).astype(np.float32)
    narrow, wide = _mlp_samples(m=64, width=16, num_out=1, d=10), _mlp_samples(m=64, width=512, num_out=1, d=10)
    apply = jax.vmap(ul.mlp_apply, in_axes=(0, None))
    s16, s512 = (float(np.std(o)) for o in jax.jit(lambda a, b: (apply(a, x), apply(b, x)))(narrow, wide))
    assert abs(s16 / s512 - 1) < 0.25 and abs(s16 - math.sqrt(2.0)) < 0.3  # Var = E relu(N(0, 2))² + 1 = 2
    p = jax.eval_shape(lambda k: ul.mlp_init(k, 10, 8, 2, depth=3, bias=False), jax.random.key(0))
    assert len(p["layers"]) == 4 and "b" not in p["layers"][0] and p["layers"][1]["w"].shape == (8, 8)
    ll = jax.eval_shape(ul.mlp_log_likelihood, p, {"x": x[:5], "y": jnp.zeros(5, jnp.int32)})
    assert ll.shape == (5,)


def test_max_hessian_eigenvalue_of_a_quadratic():
    a = jnp.diag(jnp.array([1.0, 4.0, 9.0]))
    quad = lambda p: 0.5 * p["w"] @ a @ p["w"]  # noqa: E731
    lam = ul.max_hessian_eigenvalue(quad, {"w": jnp.ones(3)}, jax.random.key(0), num_iters=50)
    np.testing.assert_allclose(float(lam), 9.0, rtol=1e-3)


# ============================================================================ 9. bad inputs


def _structure_mismatch():
    ul.sgld(0.1, preconditioner={"a": jnp.ones(5)}).init(PARAMS)


def _pot():
    return ul.posterior_potential(lambda t, b: -(b["y"] - t["w"]) ** 2, None, 4)


def _chains(data=None, **changes):
    kw = {"num_chains": 1, "steps": 10, "burn_in": 2, "thin": 2, "optimizer": ul.sgld(0.1), **changes}
    data = {"y": jnp.ones(4)} if data is None else data
    return ul.run_chains(jax.random.key(0), lambda k: {"w": 0.0}, _pot(), data, **kw)


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda: ul.sgld(0.1, -1.0), "temperature"),
        (lambda: ul.sgld(0.1, float("nan")), "temperature"),
        (lambda: ul.sgld(0.0), "learning_rate"),
        (lambda: ul.sgld(-0.1), "learning_rate"),
        (lambda: ul.sgld(0.1, precond_eps=0.0, preconditioner="rmsprop"), "precond_eps"),
        (lambda: ul.sgld(0.1, rms_decay=1.0), "rms_decay"),
        (lambda: ul.sgld(0.1, noise_scale=-1.0), "noise_scale"),
        (lambda: ul.sgld(0.1, freeze_after=-1), "freeze_after"),
        (lambda: ul.sgld(0.1, preconditioner="adam"), "preconditioner"),
        (lambda: ul.sgld(0.1, preconditioner={"a": -jnp.ones(5)}), "preconditioner"),
        (_structure_mismatch, "preconditioner"),
        (lambda: ul.sgld(0.1, key=jnp.ones(3)), "key"),
        (lambda: ul.polynomial_schedule(0.1, 1.0, 0.5), "gamma"),
        (lambda: ul.polynomial_schedule(0.1, 0.0), "b"),
        (lambda: ul.cyclical_schedule(0.1, 0), "cycle_len"),
        (lambda: _chains(thin=0), "thin"),
        (lambda: _chains(burn_in=10), "burn_in"),
        (lambda: _chains(batch_size=5), "batch_size"),
        (lambda: _chains(data={"y": jnp.ones(4), "x": jnp.ones(3)}), "data"),
        (lambda: ul.posterior_potential(lambda t, b: 0.0, None, 0), "n_data"),
        (lambda: ul.finite_mixture_online_regret(0.3, GRID10, UNIFORM10 + 0.1, 10), "log_prior"),
        (lambda: ul.finite_mixture_online_regret(1.0, GRID10, UNIFORM10, 10), "theta0"),
        (lambda: ul.finite_mixture_online_regret(0.3, np.r_[GRID10[:-1], 1.0], UNIFORM10, 10), "grid"),
        (lambda: ul.finite_mixture_online_regret(0.3, GRID10, UNIFORM10, 0), "n"),
        (lambda: ul.finite_mixture_online_regret(0.3, GRID10, UNIFORM10[:5], 10), "log_prior"),
        (lambda: ul.batch_regret(0.3, GRID10, UNIFORM10, 0), "t"),
        (lambda: ul.regret_bound(-np.ones(10), UNIFORM10, 10), "div"),
        (lambda: ul.regret_bound(np.ones(10), UNIFORM10, 0), "n"),
        (lambda: ul.hypothesis_weight(np.ones(10), UNIFORM10, -0.1), "eps"),
        (lambda: ul.bates_pushforward_prior(0), "D"),
        (lambda: ul.bates_pushforward_prior(2, 1), "num_points"),
        (lambda: ul.kl_bernoulli(1.5, 0.5), "p"),
        (lambda: ul.kl_bernoulli(0.5, 0.5, base=1.0), "base"),
        (lambda: ul.mixture_regret(jnp.ones((3, 2)) / 2, jnp.zeros((3, 3))), "log_q"),
        (lambda: ul.mixture_regret(jnp.full((3, 2), np.nan), jnp.zeros((3, 2))), "p_true"),
        (lambda: ul.mixture_regret(jnp.full((3, 2), 0.2), jnp.zeros((3, 2))), "p_true"),
        (lambda: ul.ensemble_log_predictive(ul.mlp_apply, {"layers": []}, jnp.ones((2, 4))), "samples"),
        (lambda: ul.make_teacher_student(jax.random.key(0), d=0), "d"),
        (lambda: ul.mlp_init(jax.random.key(0), 4, 0, 1), "width"),
        (lambda: ul.mlp_apply(ul.mlp_init(jax.random.key(0), 4, 3, 1), jnp.ones((2, 5))), "x"),
    ],
)
def test_bad_inputs_raise_clear_errors(fn, match):
    with pytest.raises(ValueError, match=match):
        fn()


def test_normalize_flag_accepts_an_unnormalised_prior():
    a = ul.finite_mixture_online_regret(0.3, GRID10, UNIFORM10 + 3.0, 10, normalize=True)
    np.testing.assert_allclose(a, ul.finite_mixture_online_regret(0.3, GRID10, UNIFORM10, 10), rtol=1e-12)
