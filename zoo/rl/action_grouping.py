r"""Action-space reduction by grouping: approximation vs estimation error in tabular RL.

Paper: Yining Li, Peizhong Ju, Ness Shroff, "Achieving Sample and Computational Efficient
Reinforcement Learning by Action Space Reduction via Grouping", arXiv 2306.12981 (2023), ICLR 2024.
Official code: none found. Only the abstract and the public reviews were readable: the paper's exact
constants and the exact form of its "linear decomposition" are **reconstructed** here (spec
``papers/action_grouping.md``); every symbol and constant below is the zoo's definition.

Objects: a finite discounted MDP ``M = (P[S,A,S], R[S,A], γ)`` (:class:`TabularMDP`), a grouping
``g: A -> {0..G-1}`` (:class:`Grouping`) and a lower-level policy ``μ(a|s,h)`` supported on the group
``A_h`` (default uniform on ``A_h``; any non-negative ``mu[S, A]`` is normalised within each group).

Equations -> functions::

    hierarchical action tree: logits P(.|s,a) = θ0(s) + Σ_l σ_l z_{l,node_l(a)}(s),
      R(s,a) = sigmoid(ρ0 + Σ_l τ_l w_{l,node_l(a)}(s)),  σ_l = σ0 κ^(l-1), τ_l = τ0 κ_r^(l-1)
                                                                   make_hierarchical_mdp
    nested cuts of the tree (G = 2^l groups)                        tree_grouping
    P_g(s'|s,h) = Σ_{a∈A_h} μ(a|s,h) P(s'|s,a),  R_g likewise      lift
    linear decomposition P = P_g∘g + Δ_P, R = R_g∘g + Δ_R          decompose
    ε_P = max ‖Δ_P(.|s,a)‖_1, ε_R = max |Δ_R| (+ μ-weighted means)   heterogeneity
    π(a|s) = Σ_h π_H(h|s) μ(a|s,h)  (value in M = value of π_H in M_g)  flat_policy, policy_evaluation
    T steps of value iteration from V0 (Bellman optimality)         value_iteration
    exact optimum (Howard's policy iteration)                       policy_iteration
    Algorithm 1: N samples per (s, h) from a generative model,
      empirical lifted model P̂_g, R̂_g                              sample_lifted_model
    plan on M̂_g, output π̂ = π̂_H ∘ μ; loss ‖V* − V^π̂‖ and its split
      V* − V^π̂ = (V* − V*_g) + (V*_g − V^π̂)                       grouped_rl
    A(g) + E(G, N) + O(T) bound                                     loss_bound
    argmin of the bound over nested candidates under a budget B     select_num_groups
    grouping actions by similarity of (estimated) kernels/rewards   action_signatures, cluster_actions
    random balanced grouping (baseline, no structure)               random_grouping
    loss over (budget × G) cells, one vmapped call                  sample_budget_sweep
    eager validation                                                check_mdp, check_grouping

Bound (ours, standard simulation-lemma constants; the paper's constants are unknown)::

    A(g)   = (ε_R + γ ε_P R_max/(1−γ)) / (1−γ)
    e_P    = sqrt(2 (S ln 2 + ln(2SG/δ)) / N),   e_R = sqrt(2 σ_r² ln(4SG/δ) / N),
    σ_r²   = (R_range/2)² + σ_noise²
    E(G,N) = 2/(1−γ) · (e_R + γ e_P R_max/(1−γ))
    O(T)   = 2 γ^(T+1) R_max/(1−γ)²   (0 for exact planning, T = None)

Choices that are the zoo's, not the paper's:

* Sampling (Algorithm 1, generative model) draws the N·S·G transitions one by one by inverse CDFs
  (binary searches by single-element gathers), from a per-state pool of ``pool`` sample slots: slot i
  goes to group i // N and is used while i < N·G. N may therefore be traced (budgets vmap), the
  pool (the largest N·G of a sweep) is static. The reward noise of a cell is the sum of its N
  Gaussian noises (one normal per cell). All uniforms of a run come from ONE PRNG call: on CPU each
  threefry call site under ``vmap`` costs ~0.3 s of XLA compile.
* Policy evaluation solves (I − γ P_π) V = R_π by Gauss–Jordan without pivoting (exact; stable since
  the matrix is strictly diagonally dominant with margin 1 − γ; far cheaper to compile than LU).
* Internally groupings are padded to A group slots (a one-hot ``[A, A]``; empty slots are masked in
  planning), so every G and every budget run in ONE compiled program.
* "Exact" planning on the estimated model is Howard's policy iteration (a policy changes only on a
  strict improvement, so ties never cycle); ``num_iters = T`` uses T value-iteration steps from 0.
* No exploration: generative access to every (s, h) is assumed (as a reviewer noted).
* The loss reported is the mean over states and the max over states of V* − V^π̂ (exact values by
  linear solves); the experiment gates on the mean, as the spec's reference table does.
* ``cluster_actions``: Ward agglomerative clustering (scipy, on the host) of the signatures
  φ(a) = (P(.|s,a), R(s,a))_s; one linkage gives a nested family of groupings.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range, is_traced

__all__ = [
    "TabularMDP", "Grouping", "check_mdp", "check_grouping", "make_hierarchical_mdp", "tree_grouping",
    "random_grouping", "lift", "decompose", "heterogeneity", "value_iteration", "policy_iteration",
    "policy_evaluation", "flat_policy", "sample_lifted_model", "grouped_rl", "loss_bound",
    "select_num_groups", "action_signatures", "cluster_actions", "sample_budget_sweep",
]


@functools.partial(jax.tree_util.register_dataclass, data_fields=("P", "R"), meta_fields=("gamma",))
@dataclasses.dataclass(frozen=True)
class TabularMDP:
    """A finite discounted MDP: ``P: f[S, A, S]`` (rows sum to 1), ``R: f[S, A]``, ``gamma`` (static)."""

    P: jax.Array
    R: jax.Array
    gamma: float


@functools.partial(jax.tree_util.register_dataclass, data_fields=("assign",), meta_fields=("num_groups",))
@dataclasses.dataclass(frozen=True)
class Grouping:
    """A grouping ``g``: ``assign: i32[A]`` with values in ``0..num_groups-1`` (static ``num_groups``)."""

    assign: jax.Array
    num_groups: int


# ----------------------------------------------------------------------------------- validation


def check_mdp(mdp: TabularMDP, name: str = "mdp", *, atol: float = 1e-5) -> None:
    """Eagerly validate ``mdp`` (shapes, finiteness, P >= 0, rows of P sum to 1, γ ∈ (0, 1)).

    Value checks are skipped for traced leaves. Raises ``TypeError``/``ValueError`` naming ``name``.
    """
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"{name}: expected a TabularMDP, got {type(mdp).__name__}")
    check_array(f"{name}.P", mdp.P, ndim=3, kind="f")
    S, A, S2 = mdp.P.shape
    if S2 != S or S < 1 or A < 1:
        raise ValueError(f"{name}.P: expected shape (S, A, S) with S, A >= 1, got {tuple(mdp.P.shape)}")
    check_array(f"{name}.R", mdp.R, shape=(S, A), kind="f")
    if not isinstance(mdp.gamma, (int, float)) or isinstance(mdp.gamma, bool):
        raise TypeError(f"{name}.gamma: expected a float, got {type(mdp.gamma).__name__}")
    check_range(f"{name}.gamma", mdp.gamma, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    if not is_traced(mdp.P):
        P = np.asarray(mdp.P, np.float64)
        if (P < 0).any():
            raise ValueError(f"{name}.P: expected non-negative transition probabilities, min {P.min():.3g}")
        err = np.abs(P.sum(-1) - 1.0)
        if (err > atol).any():
            s, a = np.unravel_index(int(err.argmax()), err.shape)
            raise ValueError(f"{name}.P: rows must sum to 1 (tol {atol}); row (s={s}, a={a}) sums to "
                             f"{P[s, a].sum():.6g}")


def check_grouping(grouping: Grouping, num_actions: int, name: str = "grouping") -> None:
    """Eagerly validate ``grouping`` for ``num_actions`` actions: ids in range and no empty group."""
    if not isinstance(grouping, Grouping):
        raise TypeError(f"{name}: expected a Grouping, got {type(grouping).__name__}")
    G = grouping.num_groups
    if isinstance(G, bool) or not isinstance(G, (int, np.integer)) or not 1 <= G <= num_actions:
        raise ValueError(f"{name}.num_groups: expected an int in [1, {num_actions}], got {G!r}")
    check_array(f"{name}.assign", grouping.assign, shape=(num_actions,), kind="iu")
    if not is_traced(grouping.assign):
        a = np.asarray(grouping.assign)
        if a.min() < 0 or a.max() >= G:
            raise ValueError(f"{name}.assign: group ids must lie in [0, {G - 1}], got range [{a.min()}, {a.max()}]")
        empty = sorted(set(range(G)) - set(a.tolist()))
        if empty:
            raise ValueError(f"{name}.assign: group(s) {empty[:5]} have no action (every group must be non-empty)")


def _check_mu(mu, S: int, A: int):
    if mu is None:
        return
    check_array("mu", mu, shape=(S, A), kind="f")
    if not is_traced(mu) and (np.asarray(mu) < 0).any():
        raise ValueError("mu: expected non-negative weights")


def _check_int(name: str, v, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    check_range(name, int(v), low=low)


# ----------------------------------------------------------------------------------- generators


def make_hierarchical_mdp(key: jax.Array, S: int = 10, depth: int = 6, *, sigma0: float = 1.5, kappa: float = 0.6,
                          tau0: float = 0.5, kappa_r: float = 0.6, rho0: float = 0.5, gamma: float = 0.9,
                          dtype=None) -> TabularMDP:
    """An action-wise similar MDP: A = 2^depth actions, the leaves of a binary tree (spec §2.2).

    Level-l node of action a is ``a >> (depth - l)``; each node carries a logit perturbation
    ``z[s, :] ~ N(0, I_S)`` (scale σ_l) and a reward perturbation ``w[s] ~ N(0, 1)`` (scale τ_l), so
    cutting the tree at level l (``tree_grouping(A, 2^l)``) leaves heterogeneity that decays like κ^l.
    """
    _check_int("S", S, 1)
    _check_int("depth", depth, 0)
    for nm, v in (("sigma0", sigma0), ("kappa", kappa), ("tau0", tau0), ("kappa_r", kappa_r)):
        check_range(nm, v, low=0.0)
    check_range("gamma", gamma, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    dtype = jax.dtypes.canonicalize_dtype(float) if dtype is None else jnp.dtype(dtype)
    P, R = _hier_jit(key, int(S), int(depth), float(sigma0), float(kappa), float(tau0), float(kappa_r), float(rho0),
                     dtype)
    return TabularMDP(P=P, R=R, gamma=float(gamma))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7, 8))
def _hier_jit(key, S, depth, sigma0, kappa, tau0, kappa_r, rho0, dtype):
    A = 2 ** depth
    a = jnp.arange(A)
    sizes = [S * S] + [n for lvl in range(1, depth + 1) for n in (2 ** lvl * S * S, 2 ** lvl * S)]
    flat = jax.random.normal(key, (sum(sizes),), dtype)  # one draw (one PRNG call site compiles fast)
    parts = jnp.split(flat, np.cumsum(sizes)[:-1].tolist()) if len(sizes) > 1 else [flat]
    logits = jnp.broadcast_to(parts[0].reshape(S, 1, S), (S, A, S))
    rew = jnp.full((S, A), rho0, dtype)
    for lvl in range(1, depth + 1):
        node = a >> (depth - lvl)
        z = parts[2 * lvl - 1].reshape(S, 2 ** lvl, S)
        w = parts[2 * lvl].reshape(S, 2 ** lvl)
        logits = logits + sigma0 * kappa ** (lvl - 1) * z[:, node, :]
        rew = rew + tau0 * kappa_r ** (lvl - 1) * w[:, node]
    return jax.nn.softmax(logits, -1), jax.nn.sigmoid(rew)


def tree_grouping(A: int, G: int) -> Grouping:
    """Cut the binary action tree at level log2(G): ``assign[a] = a // (A / G)`` (nested in G)."""
    _check_int("A", A, 1)
    _check_int("G", G, 1)
    if A & (A - 1) or G & (G - 1) or G > A:
        raise ValueError(f"G: expected a power of 2 dividing A = {A} (A a power of 2), got G = {G}")
    return Grouping(assign=jnp.arange(A, dtype=jnp.int32) // (A // G), num_groups=int(G))


def random_grouping(key: jax.Array, A: int, G: int) -> Grouping:
    """A balanced random grouping with G groups (sizes differ by at most 1): the no-structure baseline."""
    _check_int("A", A, 1)
    _check_int("G", G, 1)
    if G > A:
        raise ValueError(f"G: expected G <= A = {A}, got {G}")
    return Grouping(assign=jax.random.permutation(key, jnp.arange(A, dtype=jnp.int32) % G), num_groups=int(G))


# ----------------------------------------------------------------------------------- padded core


def _onehot(assign, G, dtype):
    return jax.nn.one_hot(assign, G, dtype=dtype)  # [A, G]


def _norm_mu(mu, M):
    """μ normalised within each group: μn[s, a] = μ[s, a] / Σ_{b ∈ g(a)} μ[s, b]."""
    mass = (mu @ M) @ M.T  # [S, A]: group mass of a's group
    return mu / jnp.where(mass > 0, mass, 1)


def _lift_arrays(P, R, M, mu):
    mun = _norm_mu(mu, M)
    Pg = jnp.einsum("sa,sat,ah->sht", mun, P, M)
    Rg = jnp.einsum("sa,sa,ah->sh", mun, R, M)
    return Pg, Rg


def _default_mu(R):
    return jnp.ones_like(R)


def _bellman_q(P, R, gamma, V):
    return R + gamma * jnp.einsum("sat,t->sa", P, V)


def _solve_dd(Amat, b):
    """Solve ``Amat x = b`` by Gauss-Jordan without pivoting: exact and stable for the strictly
    diagonally dominant ``I − γ P_π`` (dominance margin 1 − γ), and far cheaper to compile than LAPACK's LU."""
    S = b.shape[0]
    Ab = jnp.concatenate([Amat, b[:, None]], 1)

    def body(k, Ab):
        piv = Ab[k] / Ab[k, k]
        Ab = Ab - Ab[:, k, None] * piv[None, :]
        return Ab.at[k].set(piv)

    return jax.lax.fori_loop(0, S, body, Ab)[:, S]


def _evaluate(P, R, gamma, h):
    S = R.shape[0]
    idx = jnp.arange(S)
    Ppi, Rpi = P[idx, h], R[idx, h]
    return _solve_dd(jnp.eye(S, dtype=R.dtype) - gamma * Ppi, Rpi)


def _policy_iteration(P, R, gamma, valid, max_iters):
    """Howard's PI with a strict-improvement switch; ``valid: bool[A]`` masks padded actions."""
    neg = jnp.where(valid, 0.0, -jnp.inf).astype(R.dtype)
    S = R.shape[0]
    idx = jnp.arange(S)
    tol = 64 * jnp.finfo(R.dtype).eps

    def improve(h, V):
        Q = _bellman_q(P, R, gamma, V) + neg
        hn = jnp.argmax(Q, -1)
        better = Q[idx, hn] > Q[idx, h] + tol * (1 + jnp.abs(Q[idx, h]))
        return jnp.where(better, hn, h)

    h0 = jnp.argmax(R + neg, -1)

    def cond(c):
        h, hp, i = c
        return (i < max_iters) & jnp.any(h != hp)

    def body(c):
        h, _, i = c
        return improve(h, _evaluate(P, R, gamma, h)), h, i + 1

    h, _, _ = jax.lax.while_loop(cond, body, (h0, jnp.full_like(h0, -1), 0))
    return _evaluate(P, R, gamma, h), h


def _value_iteration(P, R, gamma, valid, num_iters, v0):
    neg = jnp.where(valid, 0.0, -jnp.inf).astype(R.dtype)
    V = jax.lax.fori_loop(0, num_iters, lambda _, V: jnp.max(_bellman_q(P, R, gamma, V) + neg, -1), v0)
    return V, _bellman_q(P, R, gamma, V) + neg


def _bsearch(table, rows, u, steps: int):
    """Per sample, the first column j of ``table[rows]`` (a row-wise CDF) with ``table[row, j] > u``.

    A binary search by single-element gathers, so the gathered rows are never materialised."""
    width = table.shape[-1]
    lo = jnp.zeros(u.shape, jnp.int32)
    hi = jnp.full(u.shape, width - 1, jnp.int32)

    def body(_, c):
        lo, hi = c
        mid = (lo + hi) // 2
        right = table[rows, mid] <= u
        return jnp.where(right, mid + 1, lo), jnp.where(right, hi, mid)

    lo, _ = jax.lax.fori_loop(0, steps, body, (lo, hi))
    return lo


def _num_uniforms(S, Gc, pool):
    return 2 * S * pool + S * Gc


def _uniforms(key, shape, dtype):
    return jax.random.uniform(key, shape, dtype, minval=jnp.finfo(dtype).tiny)


def _sample_padded(u_flat, P, R, M, assign, N, noise, mu, pool: int):
    """Algorithm 1's samples, drawn one by one: per state a pool of ``pool`` sample slots; slot i goes to
    group h = i // N (valid while i < N·G), a ~ μn(.|s, h) and s' ~ P(.|s, a) by inverse CDFs.
    N may be traced (``pool`` >= N·G is static). ``u_flat``: the run's uniforms in (0, 1),
    ``f[_num_uniforms(S, G, pool)]`` (drawn by the caller in one PRNG call: each call site costs ~0.3 s
    of XLA compile under vmap on CPU). Returns (P̂_g, R̂_g) with ``M.shape[1]`` group slots."""
    S, A, _ = P.shape
    dt = R.dtype
    Gc = M.shape[1]
    u = u_flat[: 2 * S * pool].reshape(2, S, pool)
    xi = jnp.sqrt(jnp.asarray(2.0, dt)) * jax.scipy.special.erfinv(2 * u_flat[2 * S * pool:].reshape(S, Gc) - 1)
    N = jnp.asarray(N, jnp.int32)
    G = (M.sum(0) > 0).sum()
    i = jnp.arange(pool, dtype=jnp.int32)
    h = jnp.minimum(i // N, Gc - 1)
    valid = i < N * G
    s = jnp.arange(S, dtype=jnp.int32)[:, None]
    mun = _norm_mu(mu, M)
    cdf_mu = jnp.cumsum(mun[:, None, :] * M.T[None], -1).reshape(S * Gc, A)  # [(s, h), a]
    rows = s * Gc + h[None, :]
    a = _bsearch(cdf_mu, rows, u[0] * cdf_mu[rows, A - 1], max(1, A.bit_length()))
    cdf_P = jnp.cumsum(P, -1).reshape(S * A, S)
    rows2 = s * A + a
    s2 = _bsearch(cdf_P, rows2, u[1] * cdf_P[rows2, S - 1], max(1, S.bit_length()))
    idx = jnp.where(valid[None, :], (s * A + a) * S + s2, S * A * S)  # invalid slots -> a dump bin
    cnt = jnp.zeros((S * A * S + 1,), dt).at[idx.ravel()].add(1.0)[:-1].reshape(S, A, S)
    Nf = N.astype(dt)
    Pg = jnp.einsum("sat,ah->sht", cnt, M) / Nf
    rsum = (cnt.sum(-1) * R) @ M + noise * jnp.sqrt(Nf) * xi
    return Pg, rsum / Nf


def _run_padded(u_flat, P, R, gamma, assign, N, noise, mu, num_iters, pool):
    """One run of Algorithm 1 on the padded grouping; returns the loss parts (dict of scalars)."""
    A = P.shape[1]
    M = _onehot(assign, A, R.dtype)
    valid = M.sum(0) > 0
    Pg, Rg = _lift_arrays(P, R, M, mu)
    Ph, Rh = _sample_padded(u_flat, P, R, M, assign, N, noise, mu, pool)
    pi = jax.vmap(lambda P_, R_, v_: _policy_iteration(P_, R_, gamma, v_, 4 * A + 20))
    if num_iters is None:  # V*, V*_g and the plan on M̂_g in ONE (vmapped) policy iteration
        Vs, hs = pi(jnp.stack([P, Pg, Ph]), jnp.stack([R, Rg, Rh]), jnp.stack([jnp.ones_like(valid), valid, valid]))
        Vstar, Vg, h = Vs[0], Vs[1], hs[2]
    else:
        Vs, _ = pi(jnp.stack([P, Pg]), jnp.stack([R, Rg]), jnp.stack([jnp.ones_like(valid), valid]))
        Vstar, Vg = Vs[0], Vs[1]
        _, Q = _value_iteration(Ph, Rh, gamma, valid, num_iters, jnp.zeros_like(Vg))
        h = jnp.argmax(Q, -1)
    Vpi = _evaluate(Pg, Rg, gamma, h)  # value of π̂ = π̂_H∘μ in M (lifting identity)
    gap, approx, estim = Vstar - Vpi, Vstar - Vg, Vg - Vpi
    return {"loss_mean": gap.mean(), "loss_inf": gap.max(), "approx_mean": approx.mean(),
            "approx_inf": approx.max(), "estim_mean": estim.mean(), "estim_inf": estim.max(),
            "est_err_P": jnp.abs(Ph - Pg).sum(-1).max(-1, where=valid, initial=0.0).mean()}


# ----------------------------------------------------------------------------------- public API


def lift(mdp: TabularMDP, grouping: Grouping, mu: jax.Array | None = None) -> TabularMDP:
    """The grouped MDP ``M_g``: ``P_g: f[S, G, S]``, ``R_g: f[S, G]`` (μ-averages within each group)."""
    check_mdp(mdp)
    S, A, _ = mdp.P.shape
    check_grouping(grouping, A)
    _check_mu(mu, S, A)
    mu = _default_mu(mdp.R) if mu is None else jnp.asarray(mu, mdp.R.dtype)
    Pg, Rg = _lift_jit(mdp.P, mdp.R, grouping.assign, grouping.num_groups, mu)
    return TabularMDP(P=Pg, R=Rg, gamma=mdp.gamma)


@functools.partial(jax.jit, static_argnames=("G",))
def _lift_jit(P, R, assign, G, mu):
    return _lift_arrays(P, R, _onehot(assign, G, R.dtype), mu)


def decompose(mdp: TabularMDP, grouping: Grouping, mu: jax.Array | None = None):
    """Linear decomposition around the group model: ``(Δ_P f[S, A, S], Δ_R f[S, A])`` with
    ``P(.|s,a) = P_g(.|s,g(a)) + Δ_P(.|s,a)`` and ``R(s,a) = R_g(s,g(a)) + Δ_R(s,a)``; Σ_a μ Δ = 0 per group."""
    g = lift(mdp, grouping, mu)
    return mdp.P - g.P[:, grouping.assign], mdp.R - g.R[:, grouping.assign]


def heterogeneity(mdp: TabularMDP, grouping: Grouping, mu: jax.Array | None = None) -> dict:
    """``eps_P = max ‖Δ_P‖_1``, ``eps_R = max |Δ_R|`` and their μ-weighted means over (s, h)."""
    check_mdp(mdp)
    S, A = mdp.R.shape
    check_grouping(grouping, A)
    _check_mu(mu, S, A)
    mu = _default_mu(mdp.R) if mu is None else jnp.asarray(mu, mdp.R.dtype)
    return _het_jit(mdp.P, mdp.R, grouping.assign, grouping.num_groups, mu)


@functools.partial(jax.jit, static_argnames=("G",))
def _het_jit(P, R, assign, G, mu):
    S = R.shape[0]
    M = _onehot(assign, G, R.dtype)
    Pg, Rg = _lift_arrays(P, R, M, mu)
    dP, dR = P - Pg[:, assign], R - Rg[:, assign]
    mun = _norm_mu(mu, M)
    l1 = jnp.abs(dP).sum(-1)
    return {"eps_P": l1.max(), "eps_R": jnp.abs(dR).max(),
            "mean_eps_P": ((mun * l1) @ M).sum() / (S * G), "mean_eps_R": ((mun * jnp.abs(dR)) @ M).sum() / (S * G)}


def value_iteration(mdp: TabularMDP, num_iters: int, v0: jax.Array | None = None):
    """``num_iters`` Bellman optimality steps from ``v0`` (default 0): ``(V_T f[S], Q f[S, A])`` with
    ``Q = R + γ P V_T`` (its greedy policy is within 2γ^(T+1) R_max/(1−γ)² of optimal)."""
    check_mdp(mdp)
    _check_int("num_iters", num_iters, 0)
    S, A = mdp.R.shape
    if v0 is None:
        v0 = jnp.zeros((S,), mdp.R.dtype)
    else:
        check_array("v0", v0, shape=(S,))
        v0 = jnp.asarray(v0, mdp.R.dtype)
    return _vi_jit(mdp.P, mdp.R, mdp.gamma, num_iters, v0)


@functools.partial(jax.jit, static_argnames=("gamma",))
def _vi_jit(P, R, gamma, num_iters, v0):
    return _value_iteration(P, R, gamma, jnp.ones((R.shape[1],), bool), num_iters, v0)


@functools.partial(jax.jit, static_argnames=("gamma",))
def _pi_jit(P, R, gamma, max_iters):
    return _policy_iteration(P, R, gamma, jnp.ones((R.shape[1],), bool), max_iters)


def policy_iteration(mdp: TabularMDP, max_iters: int = 100):
    """Exact optimum by Howard's policy iteration: ``(V* f[S], pi i32[S])`` (deterministic greedy)."""
    check_mdp(mdp)
    _check_int("max_iters", max_iters, 1)
    return _pi_jit(mdp.P, mdp.R, mdp.gamma, max_iters)


def policy_evaluation(mdp: TabularMDP, pi: jax.Array) -> jax.Array:
    """``V^π = (I − γ P_π)^(-1) R_π`` for a stochastic policy ``pi: f[S, A]`` (rows sum to 1)."""
    check_mdp(mdp)
    S, A = mdp.R.shape
    check_array("pi", pi, shape=(S, A), kind="f")
    if not is_traced(pi):
        p = np.asarray(pi, np.float64)
        if (p < 0).any() or (np.abs(p.sum(-1) - 1) > 1e-5).any():
            raise ValueError("pi: expected non-negative rows that sum to 1")
    pi = jnp.asarray(pi, mdp.R.dtype)
    Ppi = jnp.einsum("sa,sat->st", pi, mdp.P)
    return _solve_dd(jnp.eye(S, dtype=mdp.R.dtype) - mdp.gamma * Ppi, (pi * mdp.R).sum(-1))


def flat_policy(h_star: jax.Array, grouping: Grouping, mu: jax.Array | None = None) -> jax.Array:
    """``π(a|s) = μ(a|s, h*(s))`` for a deterministic high-level policy ``h_star: i32[S]``; f[S, A]."""
    check_array("h_star", h_star, ndim=1, kind="iu")
    A = grouping.assign.shape[0] if isinstance(grouping, Grouping) else 0
    check_grouping(grouping, A)
    S = h_star.shape[0]
    if not is_traced(h_star) and S and (np.asarray(h_star).min() < 0 or np.asarray(h_star).max() >= grouping.num_groups):
        raise ValueError(f"h_star: expected group ids in [0, {grouping.num_groups - 1}]")
    _check_mu(mu, S, A)
    dt = jax.dtypes.canonicalize_dtype(float) if mu is None else jnp.asarray(mu).dtype
    mu = jnp.ones((S, A), dt) if mu is None else jnp.asarray(mu)
    M = _onehot(grouping.assign, grouping.num_groups, dt)
    return _norm_mu(mu, M) * (grouping.assign[None, :] == jnp.asarray(h_star)[:, None])


def sample_lifted_model(key: jax.Array, mdp: TabularMDP, grouping: Grouping, n_per_pair: int, *,
                        reward_noise: float = 0.5, mu: jax.Array | None = None) -> TabularMDP:
    """Algorithm 1, steps 1-2: N transitions per (s, h) (a ~ μ, s' ~ P(.|s,a), r = R(s,a) + N(0, σ²));
    returns the empirical lifted model ``M̂_g`` (P̂_g = counts / N, R̂_g = mean reward).

    ``n_per_pair`` is a static int (it sets the number of draws, N·S·G).
    """
    mu = _check_run(mdp, grouping, n_per_pair, None, reward_noise, mu)
    G = grouping.num_groups
    pool = int(n_per_pair) * G
    u = _uniforms(key, (_num_uniforms(mdp.R.shape[0], G, pool),), mdp.R.dtype)
    Pg, Rg = _sample_padded(u, mdp.P, mdp.R, _onehot(grouping.assign, G, mdp.R.dtype), grouping.assign,
                            int(n_per_pair), reward_noise, mu, pool)
    return TabularMDP(P=Pg, R=Rg, gamma=mdp.gamma)


def _check_run(mdp, grouping, n_per_pair, num_iters, reward_noise, mu):
    check_mdp(mdp)
    S, A, _ = mdp.P.shape
    check_grouping(grouping, A)
    _check_mu(mu, S, A)
    _check_int("n_per_pair", n_per_pair, 1)
    if num_iters is not None:
        _check_int("num_iters", num_iters, 0)
    if not is_traced(reward_noise):
        check_range("reward_noise", reward_noise, low=0.0)
    return _default_mu(mdp.R) if mu is None else jnp.asarray(mu, mdp.R.dtype)


def grouped_rl(key: jax.Array, mdp: TabularMDP, grouping: Grouping, n_per_pair: int, num_iters: int | None = None, *,
               reward_noise: float = 0.5, mu: jax.Array | None = None) -> dict:
    """One full run of Algorithm 1 and its loss split (dict of scalars).

    ``loss_mean``/``loss_inf``: mean/max over s of V* − V^π̂; ``approx_*``: V* − V*_g (no sampling);
    ``estim_*``: V*_g − V^π̂ (estimation + optimisation); ``est_err_P``: mean over s of max over groups
    of ‖P̂_g − P_g‖_1. ``num_iters = None``: exact planning (policy iteration) on M̂_g, else T VI steps.
    """
    mu = _check_run(mdp, grouping, n_per_pair, num_iters, reward_noise, mu)
    return _grouped_rl(key, mdp, grouping.assign, int(n_per_pair), reward_noise, mu, num_iters,
                       int(n_per_pair) * grouping.num_groups)


@functools.partial(jax.jit, static_argnames=("N", "num_iters", "pool"))
def _grouped_rl(key, mdp, assign, N, reward_noise, mu, num_iters, pool):
    u = _uniforms(key, (_num_uniforms(mdp.R.shape[0], mdp.R.shape[1], pool),), mdp.R.dtype)
    return _run_padded(u, mdp.P, mdp.R, mdp.gamma, assign, N, reward_noise, mu, num_iters, pool)


def loss_bound(eps_P, eps_R, S: int, G, N, T=None, *, gamma: float = 0.9, delta: float = 0.1, r_max: float = 1.0,
               r_range: float = 1.0, reward_noise: float = 0.5) -> dict:
    """The zoo's bound ``A(g) + E(G, N) + O(T)`` (module docstring); differentiable in ε_P, ε_R.

    ``G``, ``N`` (and ``eps_*``) may be arrays (broadcast); ``T = None`` means exact planning (O = 0).
    """
    for nm, v in (("eps_P", eps_P), ("eps_R", eps_R), ("G", G), ("N", N)):
        check_array(nm, v)
        if not is_traced(v) and (np.asarray(v) < (1 if nm in ("G", "N") else 0)).any():
            raise ValueError(f"{nm}: expected values >= {1 if nm in ('G', 'N') else 0}")
    _check_int("S", S, 1)
    check_range("gamma", gamma, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    check_range("delta", delta, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    check_range("r_max", r_max, low=0.0)
    check_range("r_range", r_range, low=0.0)
    check_range("reward_noise", reward_noise, low=0.0)
    if T is not None:
        _check_int("T", T, 0)
    return _bound_jit(eps_P, eps_R, S, G, N, T, float(gamma), float(delta), float(r_max), float(r_range),
                      float(reward_noise))


@functools.partial(jax.jit, static_argnums=(2, 5, 6, 7, 8, 9, 10))
def _bound_jit(eps_P, eps_R, S, G, N, T, gamma, delta, r_max, r_range, reward_noise):
    eps_P, eps_R = jnp.asarray(eps_P), jnp.asarray(eps_R)
    dt = jnp.result_type(eps_P, eps_R, float)
    G, N = jnp.asarray(G, dt), jnp.asarray(N, dt)
    A_ = (eps_R + gamma * eps_P * r_max / (1 - gamma)) / (1 - gamma)
    e_P = jnp.sqrt(2 * (S * math.log(2) + jnp.log(2 * S * G / delta)) / N)
    sig2 = (r_range / 2) ** 2 + reward_noise ** 2
    e_R = jnp.sqrt(2 * sig2 * jnp.log(4 * S * G / delta) / N)
    E = 2 / (1 - gamma) * (e_R + gamma * e_P * r_max / (1 - gamma))
    O = jnp.zeros_like(E) if T is None else jnp.full_like(E, 2 * gamma ** (T + 1) * r_max / (1 - gamma) ** 2)
    return {"A": A_ + jnp.zeros_like(E), "E": E + jnp.zeros_like(A_), "O": O + jnp.zeros_like(A_),
            "total": A_ + E + O}


def select_num_groups(eps_P, eps_R, candidates: Sequence[int], *, S: int, budget: int, gamma: float = 0.9,
                      delta: float = 0.1, r_max: float = 1.0, r_range: float = 1.0, reward_noise: float = 0.5,
                      T=None) -> dict:
    """Practical selector (spec §2.5): for nested candidate groupings with plug-in heterogeneities
    ``eps_P[j], eps_R[j]`` (e.g. from a pilot sample) and a sample budget B, N_j = max(1, ⌊B/(S G_j)⌋);
    return ``{"G": G_best, "index": j*, "N": N_j*, "total": f[J], "A", "E", "O"}``. Cost O(J), not O(A)."""
    cand = np.asarray(candidates)
    if cand.ndim != 1 or cand.size == 0 or cand.dtype.kind not in "iu" or (cand < 1).any():
        raise ValueError(f"candidates: expected a non-empty list of positive ints, got {candidates!r}")
    _check_int("S", S, 1)
    _check_int("budget", budget, 1)
    check_array("eps_P", eps_P, shape=(cand.size,))
    check_array("eps_R", eps_R, shape=(cand.size,))
    N = np.maximum(1, budget // (S * cand))
    b = loss_bound(eps_P, eps_R, S, cand, N, T, gamma=gamma, delta=delta, r_max=r_max, r_range=r_range,
                   reward_noise=reward_noise)
    j = jnp.argmin(b["total"])
    return {"G": jnp.asarray(cand)[j], "index": j, "N": jnp.asarray(N)[j], **b}


def action_signatures(mdp: TabularMDP) -> jax.Array:
    """φ(a) = (P(.|s,a), R(s,a))_s flattened: ``f[A, S*(S+1)]`` (use an estimated MDP for a pilot)."""
    check_mdp(mdp)
    S, A = mdp.R.shape
    return jnp.concatenate([mdp.P, mdp.R[..., None]], -1).transpose(1, 0, 2).reshape(A, S * (S + 1))


def cluster_actions(signatures, num_groups: int) -> Grouping:
    """Group actions by the similarity of their signatures: Ward agglomerative clustering cut at
    ``num_groups`` (scipy, host). Cuts of one linkage are nested. Group ids ordered by first action."""
    check_array("signatures", signatures, ndim=2, kind="f")
    X = np.asarray(signatures, np.float64)
    A = X.shape[0]
    _check_int("num_groups", num_groups, 1)
    if num_groups > A:
        raise ValueError(f"num_groups: expected <= {A} (the number of actions), got {num_groups}")
    if A == 1:
        return Grouping(assign=jnp.zeros((1,), jnp.int32), num_groups=1)
    from scipy.cluster.hierarchy import cut_tree, linkage

    lab = cut_tree(linkage(X, method="ward"), n_clusters=num_groups).ravel()
    _, first = np.unique(lab, return_index=True)
    remap = {lab[f]: i for i, f in enumerate(sorted(first))}
    return Grouping(assign=jnp.asarray([remap[x] for x in lab], jnp.int32), num_groups=int(num_groups))


@functools.partial(jax.jit, static_argnames=("Gs", "budgets", "num_iters", "groupings"))
def _sweep(key, mdp, Gs, budgets, reward_noise, num_iters, groupings, mu):
    S, A, _ = mdp.P.shape
    assigns = jnp.stack([jnp.arange(A, dtype=jnp.int32) // (A // G) for G in Gs]) if groupings is None else \
        jnp.asarray(np.asarray(groupings, np.int32))
    Ns = np.array([[max(1, B // (S * G)) for G in Gs] for B in budgets], np.int32)
    pool = int(max((Ns * np.asarray(Gs)[None, :]).max(), 1))  # sample slots per state (the largest N·G)
    nb, ng = len(budgets), len(Gs)
    u = _uniforms(key, (nb * ng, _num_uniforms(S, A, pool)), mdp.R.dtype)
    flat_assign = jnp.tile(assigns, (nb, 1))
    flat_N = jnp.asarray(Ns.reshape(-1))
    run = jax.vmap(lambda k, a, n: _run_padded(k, mdp.P, mdp.R, mdp.gamma, a, n, reward_noise, mu, num_iters, pool))
    out = run(u, flat_assign, flat_N)
    out = {k: v.reshape(nb, ng) for k, v in out.items()}
    out["N"] = flat_N.reshape(nb, ng)
    return out


def sample_budget_sweep(key: jax.Array, mdp: TabularMDP, Gs: Sequence[int], budgets: Sequence[int], *,
                        reward_noise: float = 0.5, num_iters: int | None = None,
                        groupings: Sequence[Grouping] | None = None, mu: jax.Array | None = None) -> dict:
    """Algorithm 1 for every (budget B, number of groups G) cell of one MDP, in one vmapped call.

    N = max(1, ⌊B/(S G)⌋) per (s, h); default groupings are the tree cuts (``tree_grouping(A, G)``),
    or pass one :class:`Grouping` per G. Returns the :func:`grouped_rl` fields as ``f[len(budgets), len(Gs)]``
    plus ``N``. Independent samples per cell. ``vmap`` it over MDPs (seeds).
    """
    check_mdp(mdp)
    S, A, _ = mdp.P.shape
    Gs, budgets = tuple(int(g) for g in Gs), tuple(int(b) for b in budgets)
    if not Gs or any(g < 1 or g > A for g in Gs):
        raise ValueError(f"Gs: expected a non-empty list of ints in [1, {A}], got {Gs}")
    if not budgets or any(b < 1 for b in budgets):
        raise ValueError(f"budgets: expected a non-empty list of positive ints, got {budgets}")
    if groupings is None:
        for G in Gs:
            if A & (A - 1) or G & (G - 1):
                raise ValueError(f"Gs: tree cuts need powers of 2 (A = {A}), got {Gs}; or pass groupings")
        gtuple = None
    else:
        if len(groupings) != len(Gs):
            raise ValueError(f"groupings: expected {len(Gs)} groupings (one per G), got {len(groupings)}")
        for G, g in zip(Gs, groupings):
            check_grouping(g, A, "groupings[]")
            if g.num_groups != G:
                raise ValueError(f"groupings: num_groups {g.num_groups} does not match G = {G}")
        gtuple = tuple(tuple(int(x) for x in np.asarray(g.assign)) for g in groupings)
    if num_iters is not None:
        _check_int("num_iters", num_iters, 0)
    check_range("reward_noise", reward_noise, low=0.0) if not is_traced(reward_noise) else None
    _check_mu(mu, S, A)
    mu = _default_mu(mdp.R) if mu is None else jnp.asarray(mu, mdp.R.dtype)
    return _sweep(key, mdp, Gs, budgets, reward_noise, num_iters, gtuple, mu)
