r"""Hiring multiple agents to acquire information: the optimal IC mechanism LP and an online ETC learner.

Paper: Federico Cacciamani, Matteo Castiglioni, Nicola Gatti, "Online Information Acquisition: Hiring
Multiple Agents", ICLR 2024, arXiv 2307.06210. Official code: none (theory paper). Headline: a
polynomial-time LP computes an optimal incentive-compatible mechanism with *correlated* effort
recommendations; an online no-regret algorithm has O~(T^{2/3}) regret against it.

Model (spec section 2.1; **[reconstructed]** from the abstract in our notation): states theta ~ mu;
agents i choose efforts a_i at cost c_i(a_i) and see signals s ~ pi(s | theta, a) (joint, so
correlation and externalities are allowed); a mechanism is ``phi`` in Delta(A) (a correlated
recommendation) and payments ``gamma_i(a, s_hat, theta) >= 0``; the principal decides
``d*(a, s_hat) = argmax_d sum_theta mu pi(s_hat | theta, a) u(d, theta)``.

Map from the spec's equations to functions::

    V(a) = sum_s max_d sum_theta mu(theta) pi(s|theta,a) u(d,theta)        value_of_information
    d*(a, s)                                                                decision_rule
    LP of section 2.2 (phi, t = phi*gamma, z; constraints 1-4)              build_lp, solve_optimal_mechanism
    P_i(a_i, a'_i, s_i, s_hat_i) (pooled over a_{-i})                       deviation_payoffs
    max_{a', sigma} dev - obey (>= 0; IC iff ~0)                           ic_violation
    myopic best responses, ties toward obedience / truth (tol 1e-9)         best_responses
    sum_a phi(a) E[u(d*(a, s_hat), theta) - sum_i gamma_i] under them       principal_utility
    best product-phi mechanism (grid over phi_i, LP in t)                  best_uncorrelated
    explore-then-commit with a robust LP (section 2.3)                      etc_regret, regret_curve

Choices that are the zoo's (not the paper's):

* **[reconstructed]** The LP linearisation (``t = phi gamma``; deviation values ``z_i(a_i, a'_i, s_i)``
  pooled over ``a_{-i}``, one per true signal, which replaces the |S_i|^|S_i| reporting maps exactly).
* The robustness margin ``eta`` applies to effort deviations only (a per-signal truthfulness margin
  is infeasible when a recommended effort gives an uninformative signal).
* ``best_uncorrelated`` restricts only phi to product distributions; gamma may still depend on the whole
  recommended profile (the reviewers questioned this definition; it is ours).
* **[reconstructed protocol]** ``etc_regret``: explore for ``T1 = ceil(c1 T^{2/3})`` rounds paying
  ``B 1[s_hat_i = theta]`` to every agent (work + truth is dominant when ``B (q_i - 1/2) > c_i``),
  estimate accuracies with Laplace smoothing clipped to [0.51, 0.99], commit to the LP solved on the
  estimate with ``B`` and margin ``eta = kappa sqrt(log T / T1)``, or to the null mechanism when that
  LP is infeasible. Costs are known (a zoo assumption). Utilities per round are exact expectations, so
  only the exploration sample is random. ``etc_regret`` is for binary-accuracy instances.
* A mechanism carries its own decision rule (``Mechanism.decision``), computed from the model it was
  solved on: a committed mechanism decides with the *estimated* posterior.
* The paper's correlation-necessity example could not be read; it is not reproduced **[verify-vs-paper]**.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range, is_traced

__all__ = [
    "InfeasibleLPError",
    "Instance",
    "LPData",
    "Mechanism",
    "best_responses",
    "best_uncorrelated",
    "binary_accuracy_instance",
    "build_lp",
    "decision_rule",
    "deviation_payoffs",
    "etc_regret",
    "ic_violation",
    "make_instance",
    "principal_utility",
    "product_instance",
    "regret_curve",
    "solve_optimal_mechanism",
    "value_of_information",
]

MAX_LP_VARS = 2_000_000


class InfeasibleLPError(ValueError):
    """The mechanism LP has no feasible point (e.g. a margin larger than an effort's cost difference)."""


class Instance(NamedTuple):
    """mu: f[K] prior; pi: f[*A_shape, K, *S_shape] signal law; costs: tuple of f[A_i]; U: f[D, K]."""

    mu: jax.Array
    pi: jax.Array
    costs: tuple
    U: jax.Array


class Mechanism(NamedTuple):
    """phi: f[|A|] recommendation law; gamma: f[n, |A|, |S|, K] payments; decision: i32[|A|, |S|]."""

    phi: jax.Array
    gamma: jax.Array
    decision: jax.Array


class LPData(NamedTuple):
    """``min c x`` s.t. ``A_ub x <= b_ub``, ``A_eq x = b_eq``, ``bounds``; x = [phi, t, z] (see ``build_lp``)."""

    c: np.ndarray
    A_ub: object
    b_ub: np.ndarray
    A_eq: object
    b_eq: np.ndarray
    bounds: list
    n_phi: int
    n_t: int


def _shapes(inst):
    n = len(inst.costs)
    A = tuple(int(x) for x in inst.pi.shape[:n])
    return n, A, int(inst.pi.shape[n]), tuple(int(x) for x in inst.pi.shape[n + 1:])


def _check_instance(inst, name="inst"):
    if not isinstance(inst, Instance):
        raise TypeError(f"{name}: expected an info_acquisition.Instance, got {type(inst).__name__}")
    mu, pi, costs, U = inst
    if not isinstance(costs, tuple) or not costs:
        raise ValueError(f"{name}.costs: expected a non-empty tuple of per-agent cost vectors")
    check_array(f"{name}.mu", mu, ndim=1, kind="f")
    check_array(f"{name}.U", U, shape=(None, mu.shape[0]), kind="f")
    n = len(costs)
    check_array(f"{name}.pi", pi, ndim=2 * n + 1, kind="f", finite=False)
    n_, A, K, S = _shapes(inst)
    if K != mu.shape[0]:
        raise ValueError(f"{name}.pi: axis {n} must be the state axis of size {mu.shape[0]}, got {K}")
    for i, c in enumerate(costs):
        check_array(f"{name}.costs[{i}]", c, shape=(A[i],))
    size = n * math.prod(A) * math.prod(S) * K
    if size > MAX_LP_VARS:
        raise ValueError(f"{name}: the dense LP would have n |A| |S| K = {size} payment variables (> {MAX_LP_VARS}); "
                         "the joint pi is exponential in n: use fewer agents / effort levels / signals (the product "
                         "form of product_instance does not shrink the LP)")
    check_array(f"{name}.pi", pi)
    if is_traced(pi) or is_traced(mu):
        return
    m = np.asarray(mu, np.float64)
    if (m < -1e-12).any() or abs(m.sum() - 1) > 1e-6:
        raise ValueError(f"{name}.mu: expected a distribution on the simplex (>= 0, sums to 1), got sum {m.sum():.6g}")
    p = np.asarray(pi, np.float64)
    tot = p.reshape(math.prod(A) * K, -1).sum(1)
    if (p < -1e-12).any() or np.abs(tot - 1).max() > 1e-6:
        raise ValueError(f"{name}.pi: expected pi(. | theta, a) >= 0 normalized over signals (atol 1e-6); "
                         f"max |sum - 1| = {np.abs(tot - 1).max():.3g}")
    for i, c in enumerate(costs):
        if (np.asarray(c) < 0).any():
            raise ValueError(f"{name}.costs[{i}]: expected costs >= 0, got {np.asarray(c)}")


def make_instance(mu, pi, costs, U) -> Instance:
    """Validated ``Instance`` (arrays converted to JAX's default float)."""
    if not isinstance(costs, (tuple, list)):
        raise TypeError(f"costs: expected a tuple/list of per-agent cost vectors, got {type(costs).__name__}")
    mu = jnp.asarray(mu)
    dt = mu.dtype if jnp.issubdtype(mu.dtype, jnp.floating) else jnp.zeros(0).dtype
    inst = Instance(mu.astype(dt), jnp.asarray(pi, dt), tuple(jnp.asarray(c, dt) for c in costs), jnp.asarray(U, dt))
    _check_instance(inst)
    return inst


def product_instance(mu, per_agent_pi, costs, U) -> Instance:
    """pi(s | theta, a) = prod_i pi_i(s_i | theta, a_i) from per-agent f[A_i, K, S_i] (no externalities)."""
    if not isinstance(per_agent_pi, (tuple, list)) or not per_agent_pi:
        raise ValueError("per_agent_pi: expected a non-empty list of f[A_i, K, S_i] arrays")
    n = len(per_agent_pi)
    letters = "abcdefgh"[:n]
    sig = "ijklmnop"[:n]
    spec = ",".join(f"{letters[i]}z{sig[i]}" for i in range(n)) + f"->{letters}z{sig}"
    return make_instance(mu, jnp.einsum(spec, *[jnp.asarray(p) for p in per_agent_pi]), costs, U)


def binary_accuracy_instance(q, c, prior: float = 0.5, B: float | None = None) -> Instance:
    """The experiment family: binary state (P(theta = 1) = prior), u = 1[d = theta]; agent i shirks
    (cost 0, uninformative signal) or works (cost c_i, signal = theta w.p. q_i). With ``B``, asserts that
    the max-payment exploration rule is implementable: ``B (q_i - 1/2) > c_i``."""
    q, c = np.atleast_1d(np.asarray(q, np.float64)), np.atleast_1d(np.asarray(c, np.float64))
    if q.ndim != 1 or q.shape != c.shape:
        raise ValueError(f"q, c: expected two 1-D arrays of one length, got shapes {q.shape}, {c.shape}")
    if not ((q > 0.5) & (q <= 1)).all():
        raise ValueError(f"q: expected accuracies in (0.5, 1], got {q}")
    check_range("prior", prior, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    if B is not None and not (B * (q - 0.5) > c).all():
        raise ValueError(f"B: exploration needs B (q_i - 1/2) > c_i for every agent; got B = {B}, q = {q}, c = {c}")
    per = [np.stack([np.full((2, 2), 0.5), [[qi, 1 - qi], [1 - qi, qi]]]) for qi in q]
    return product_instance([1 - prior, prior], per, [np.array([0.0, ci]) for ci in c], np.eye(2))


def _flat(inst):
    n, A, K, S = _shapes(inst)
    return inst.pi.reshape(math.prod(A), K, math.prod(S))


def value_of_information(inst: Instance) -> jax.Array:
    """V(a) for every profile: f[*A_shape]."""
    _check_instance(inst)
    n, A, K, S = _shapes(inst)
    joint = inst.mu[None, :, None] * _flat(inst)  # [A, K, S]
    return jnp.einsum("dk,aks->ads", inst.U, joint).max(1).sum(-1).reshape(A)


def decision_rule(inst: Instance) -> jax.Array:
    """d*(a, s) = argmax_d sum_theta mu pi(s|theta,a) u(d,theta): i32[*A_shape, *S_shape]."""
    _check_instance(inst)
    n, A, K, S = _shapes(inst)
    joint = inst.mu[None, :, None] * _flat(inst)
    return jnp.argmax(jnp.einsum("dk,aks->ads", inst.U, joint), axis=1).reshape(A + S)


def _agent_index(A, S, i):
    """flat a for (a_i, a_{-i}) and flat s for (s_i, s_{-i}): i[A_i, |A_-i|], i[S_i, |S_-i|]."""
    ai = np.moveaxis(np.arange(math.prod(A)).reshape(A), i, 0).reshape(A[i], -1)
    si = np.moveaxis(np.arange(math.prod(S)).reshape(S), i, 0).reshape(S[i], -1)
    return ai, si


def build_lp(inst: Instance, margin: float = 0.0, B: float | None = None, phi_fixed=None) -> LPData:
    """The LP of spec section 2.2 in ``linprog`` form (host numpy + scipy.sparse). Variables
    ``[phi (|A|), t (n |A| |S| K), z (sum_i |A_i|^2 |S_i|)]``; ``phi_fixed`` pins phi (then the LP is in t, z)."""
    import scipy.sparse as sp

    _check_instance(inst)
    check_range("margin", margin, low=0.0)
    if B is not None:
        check_range("B", B, low=0.0, low_inclusive=False)
    n, A, K, S = _shapes(inst)
    nA, nS = math.prod(A), math.prod(S)
    mu, pi = np.asarray(inst.mu, np.float64), np.asarray(inst.pi, np.float64).reshape(nA, K, nS)
    P = mu[None, :, None] * pi  # [a, theta, s]
    costs = [np.asarray(c, np.float64) for c in inst.costs]
    V = np.asarray(value_of_information(inst), np.float64).reshape(-1)
    n_t = n * nA * nS * K
    z_off = np.cumsum([0] + [A[i] ** 2 * S[i] for i in range(n)])
    n_var = nA + n_t + int(z_off[-1])

    def tcol(i, a, s, th):
        return nA + ((i * nA + a) * nS + s) * K + th

    rows, cols, vals, b_ub, r0 = [], [], [], [], 0
    for i in range(n):
        ai_idx, si_idx = _agent_index(A, S, i)
        Ai, Si, nAm, nSm = A[i], S[i], ai_idx.shape[1], si_idx.shape[1]
        zc = nA + n_t + z_off[i] + np.arange(Ai * Ai * Si).reshape(Ai, Ai, Si)
        # constraint 2: sum P[(a'_i, am), th, (s_i, sm)] t_i((a_i, am), (sh_i, sm), th) - z_i(a_i, a'_i, s_i) <= 0
        a, ap, s, sh, am, th, sm = np.ix_(*(np.arange(k) for k in (Ai, Ai, Si, Si, nAm, K, nSm)))
        shape = (Ai, Ai, Si, Si, nAm, K, nSm)
        row = r0 + ((a * Ai + ap) * Si + s) * Si + sh
        rows += [np.broadcast_to(row, shape).ravel(), np.broadcast_to(row[..., 0, 0, 0], (Ai, Ai, Si, Si)).ravel()]
        cols += [np.broadcast_to(tcol(i, ai_idx[a, am], si_idx[sh, sm], th), shape).ravel(),
                 np.broadcast_to(zc[:, :, :, None], (Ai, Ai, Si, Si)).ravel()]
        vals += [np.broadcast_to(P[ai_idx[ap, am], th, si_idx[s, sm]], shape).ravel(), -np.ones(Ai * Ai * Si * Si)]
        b_ub.append(np.zeros(Ai * Ai * Si * Si))
        r0 += Ai * Ai * Si * Si
        # constraint 3: sum_s z - obey_pay + (c(a_i) - c(a'_i) + eta 1[a' != a]) Phi_i(a_i) <= 0
        a, ap, s = np.ix_(np.arange(Ai), np.arange(Ai), np.arange(Si))
        row = r0 + a * Ai + ap
        rows.append(np.broadcast_to(row, (Ai, Ai, Si)).ravel())
        cols.append(zc.ravel())
        vals.append(np.ones(Ai * Ai * Si))
        a, ap, am, s, th = np.ix_(*(np.arange(k) for k in (Ai, Ai, nAm, nS, K)))
        shape = (Ai, Ai, nAm, nS, K)
        rows.append(np.broadcast_to(r0 + a * Ai + ap, shape).ravel())
        cols.append(np.broadcast_to(tcol(i, ai_idx[a, am], s, th), shape).ravel())
        vals.append(np.broadcast_to(-P[ai_idx[a, am], th, s], shape).ravel())
        a, ap, am = np.ix_(np.arange(Ai), np.arange(Ai), np.arange(nAm))
        coef = costs[i][a] - costs[i][ap] + margin * (a != ap)
        rows.append(np.broadcast_to(r0 + a * Ai + ap, (Ai, Ai, nAm)).ravel())
        cols.append(np.broadcast_to(ai_idx[a, am], (Ai, Ai, nAm)).ravel())
        vals.append(np.broadcast_to(coef, (Ai, Ai, nAm)).ravel())
        b_ub.append(np.zeros(Ai * Ai))
        r0 += Ai * Ai
    if B is not None:  # constraint 4: t_i(a, s, th) - B phi(a) <= 0
        idx = np.arange(n_t)
        a_of = (idx // (nS * K)) % nA
        rows += [r0 + idx, r0 + idx]
        cols += [nA + idx, a_of]
        vals += [np.ones(n_t), np.full(n_t, -float(B))]
        b_ub.append(np.zeros(n_t))
        r0 += n_t
    rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    keep = vals != 0
    A_ub = sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(r0, n_var))
    c = np.zeros(n_var)
    c[:nA] = -V
    c[nA:nA + n_t] = np.broadcast_to(P.transpose(0, 2, 1)[None], (n, nA, nS, K)).ravel()
    bounds = [(0, None)] * (nA + n_t) + [(None, None)] * int(z_off[-1])
    if phi_fixed is not None:
        ph = np.asarray(phi_fixed, np.float64).reshape(-1)
        if ph.shape != (nA,) or (ph < -1e-12).any() or abs(ph.sum() - 1) > 1e-6:
            raise ValueError(f"phi_fixed: expected a distribution over the {nA} effort profiles")
        bounds[:nA] = [(float(x), float(x)) for x in ph]
    A_eq = sp.csr_matrix((np.ones(nA), (np.zeros(nA, int), np.arange(nA))), shape=(1, n_var))
    return LPData(c, A_ub, np.concatenate(b_ub), A_eq, np.ones(1), bounds, nA, n_t)


def solve_optimal_mechanism(inst: Instance, margin: float = 0.0, B: float | None = None, phi_fixed=None):
    """Optimal IC mechanism by HiGHS: ``(value, Mechanism)``; gamma = t / phi where phi > 0 (else 0).
    Raises ``InfeasibleLPError`` when the LP has no feasible point."""
    from scipy.optimize import linprog

    lp = build_lp(inst, margin, B, phi_fixed)
    res = linprog(lp.c, A_ub=lp.A_ub, b_ub=lp.b_ub, A_eq=lp.A_eq, b_eq=lp.b_eq, bounds=lp.bounds, method="highs")
    if res.status == 2 or (res.status != 0 and "nfeasible" in str(res.message)):
        raise InfeasibleLPError(f"LP infeasible (margin = {margin}, B = {B}): no IC mechanism meets these constraints")
    if res.status != 0:
        raise ValueError(f"LP: HiGHS failed ({res.message})")
    n, A, K, S = _shapes(inst)
    nA, nS = lp.n_phi, math.prod(S)
    phi = np.clip(res.x[:nA], 0, None)
    t = np.clip(res.x[nA:nA + lp.n_t], 0, None).reshape(n, nA, nS, K)
    pos = phi > 1e-12
    gamma = np.where(pos[None, :, None, None], t / np.where(pos, phi, 1)[None, :, None, None], 0.0)
    if B is not None:
        gamma = np.minimum(gamma, B)
    dt = inst.mu.dtype
    mech = Mechanism(jnp.asarray(phi, dt), jnp.asarray(gamma, dt),
                     jnp.asarray(decision_rule(inst)).reshape(nA, nS))
    return float(-res.fun), mech


def _check_mech(inst, mech):
    if not isinstance(mech, Mechanism):
        raise TypeError(f"mech: expected an info_acquisition.Mechanism, got {type(mech).__name__}")
    n, A, K, S = _shapes(inst)
    check_array("mech.phi", mech.phi, shape=(math.prod(A),))
    check_array("mech.gamma", mech.gamma, shape=(n, math.prod(A), math.prod(S), K))
    check_array("mech.decision", mech.decision, shape=(math.prod(A), math.prod(S)), finite=False)


def _dev(inst, mech):
    n, A, K, S = _shapes(inst)
    P = inst.mu[None, :, None] * _flat(inst)  # [a, th, s]
    t = mech.phi[None, :, None, None] * mech.gamma  # [n, a, s, th]
    out = []
    for i in range(n):
        ai, si = _agent_index(A, S, i)
        Pp = P[ai][:, :, :, si]  # [Ai, Am, K, Si, Sm]
        tp = t[i][ai][:, :, si, :]  # [Ai, Am, Si, Sm, K]
        Pdev = jnp.einsum("bmksn,amhnk->absh", Pp, tp)
        Phi = mech.phi[ai].sum(1)
        out.append((Pdev, Phi))
    return out


def deviation_payoffs(inst: Instance, mech: Mechanism) -> tuple:
    """Per agent f[A_i, A_i, S_i, S_i]: ``P_i(a_i, a'_i, s_i, s_hat_i)``, the phi-weighted expected payment
    when recommended a_i, exerting a'_i, seeing s_i and reporting s_hat_i (others obedient and truthful)."""
    _check_instance(inst)
    _check_mech(inst, mech)
    return tuple(p for p, _ in _dev(inst, mech))


def _values(inst, mech):
    out = []
    for (Pdev, Phi), c in zip(_dev(inst, mech), inst.costs):
        Ai = Pdev.shape[0]
        D = Pdev.max(-1).sum(-1) - c[None, :] * Phi[:, None]  # [a_i, a'_i] best report per signal
        O = jnp.einsum("aii->a", Pdev[jnp.arange(Ai), jnp.arange(Ai)]) - c * Phi
        out.append((Pdev, D, O))
    return out


@jax.jit
def _ic(inst, mech):
    return tuple(D.max(1) - O for _, D, O in _values(inst, mech))


def ic_violation(inst: Instance, mech: Mechanism) -> tuple:
    """Per agent f[A_i]: ``max_{a', sigma} dev - obey`` (pooled, phi-weighted). It is >= 0 (the identity is a
    deviation); the mechanism is IC iff it is ~0."""
    _check_instance(inst)
    _check_mech(inst, mech)
    return _ic(inst, mech)


def _best_responses(inst, mech, tol):
    effort, report = [], []
    for Pdev, D, O in _values(inst, mech):
        Ai, Si = Pdev.shape[0], Pdev.shape[2]
        ar = jnp.arange(Ai)
        e = jnp.where(D[ar, ar] >= D.max(1) - tol, ar, jnp.argmax(D, 1))
        Pe = Pdev[ar, e]  # [a_i, s_i, s_hat]
        truth = Pe[:, jnp.arange(Si), jnp.arange(Si)]
        r = jnp.where(truth >= Pe.max(-1) - tol, jnp.arange(Si)[None, :], jnp.argmax(Pe, -1))
        effort.append(e)
        report.append(r)
    return tuple(effort), tuple(report)


def best_responses(inst_true: Instance, mech: Mechanism, tol: float = 1e-9):
    """Myopic best responses under ``inst_true``: ``(effort, report)``, tuples over agents of i32[A_i]
    (effort taken when recommended a_i) and i32[A_i, S_i] (report); ties go to obedience and truth."""
    _check_instance(inst_true, "inst_true")
    _check_mech(inst_true, mech)
    check_range("tol", tol, low=0.0)
    return _best_responses(inst_true, mech, tol)


@functools.partial(jax.jit, static_argnames=("tol",))
def _utility(inst, mech, tol):
    n, A, K, S = _shapes(inst)
    nA, nS = math.prod(A), math.prod(S)
    effort, report = _best_responses(inst, mech, tol)
    am = np.stack(np.unravel_index(np.arange(nA), A), 1)
    sm = np.stack(np.unravel_index(np.arange(nS), S), 1)
    sa, ss = np.cumprod((1,) + A[::-1])[:-1][::-1], np.cumprod((1,) + S[::-1])[:-1][::-1]
    a_act = sum(effort[i][am[:, i]] * int(sa[i]) for i in range(n))  # [nA]
    s_rep = sum(report[i][am[:, i][:, None], sm[:, i][None, :]] * int(ss[i]) for i in range(n))  # [nA, nS]
    probs = _flat(inst)[a_act]  # [a, th, s]
    d = mech.decision[jnp.arange(nA)[:, None], s_rep]  # [a, s]
    util = inst.U[d]  # [a, s, th]
    pay = mech.gamma[:, jnp.arange(nA)[:, None], s_rep, :].sum(0)  # [a, s, th]
    per_a = jnp.einsum("k,aks,ask->a", inst.mu, probs, util - pay)
    return jnp.dot(mech.phi, per_a)


def principal_utility(inst_true: Instance, mech: Mechanism, tol: float = 1e-9) -> jax.Array:
    """The principal's expected utility per round when the agents best-respond under ``inst_true``."""
    _check_instance(inst_true, "inst_true")
    _check_mech(inst_true, mech)
    check_range("tol", tol, low=0.0)
    return _utility(inst_true, mech, float(tol))


def _simplex_grid(k, m):
    """All points of the (k-1)-simplex with coordinates in {0, 1/m, ..., 1}."""
    if k == 1:
        return np.ones((1, 1))
    pts = [c for c in np.ndindex(*(m + 1,) * (k - 1)) if sum(c) <= m]
    return np.array([list(c) + [m - sum(c)] for c in pts], np.float64) / m


def best_uncorrelated(inst: Instance, grid_size: int = 11, B: float | None = None, margin: float = 0.0):
    """Best *uncorrelated* mechanism: phi = prod_i phi_i with each phi_i on a simplex grid with
    ``grid_size`` points per edge (every deterministic profile included), payments from the LP with phi
    fixed. Returns ``(value, phi)``."""
    _check_instance(inst)
    if isinstance(grid_size, bool) or not isinstance(grid_size, (int, np.integer)) or grid_size < 2:
        raise ValueError(f"grid_size: expected an int >= 2, got {grid_size!r}")
    n, A, K, S = _shapes(inst)
    grids = [_simplex_grid(A[i], grid_size - 1) for i in range(n)]
    best, arg = -np.inf, None
    for combo in np.ndindex(*(len(g) for g in grids)):
        phi = functools.reduce(np.multiply.outer, [grids[i][j] for i, j in enumerate(combo)]).reshape(-1)
        try:
            v, _ = solve_optimal_mechanism(inst, margin, B, phi_fixed=phi)
        except InfeasibleLPError:
            continue
        if v > best:
            best, arg = v, phi
    return float(best), arg


def _binary_q(inst):
    n, A, K, S = _shapes(inst)
    if A != (2,) * n or S != (2,) * n or K != 2:
        raise ValueError("inst_true: etc_regret needs a binary-accuracy instance (2 efforts, 2 signals, 2 states); "
                         "build it with binary_accuracy_instance")
    pi = np.asarray(inst.pi, np.float64)
    q = []
    for i in range(n):
        idx = [0] * n
        idx[i] = 1
        marg = pi[tuple(idx)][0]  # [*S] given theta = 0
        q.append(float(np.moveaxis(marg, i, 0).reshape(2, -1).sum(1)[0]))
    return np.array(q), [float(np.asarray(c)[1]) for c in inst.costs], float(np.asarray(inst.mu)[1])


def _etc_from_counts(inst_true, q, c, prior, T, T1, counts, kappa, B, opt, v_all):
    u_explore = v_all - B * float(q.sum())
    if counts is None:
        q_hat = q
    else:
        q_hat = np.clip((np.asarray(counts, np.float64) + 1) / (T1 + 2), 0.51, 0.99)
    eta = kappa * math.sqrt(math.log(T) / T1) if T1 > 0 else 0.0
    inst_hat = binary_accuracy_instance(q_hat, c, prior)
    fallback = False
    try:
        _, mech = solve_optimal_mechanism(inst_hat, eta, B)
    except InfeasibleLPError:
        fallback = True
        nA = 2 ** len(q)
        phi = np.zeros(nA)
        phi[0] = 1.0
        mech = Mechanism(jnp.asarray(phi, inst_true.mu.dtype), jnp.zeros((len(q), nA, nA, 2), inst_true.mu.dtype),
                         jnp.asarray(decision_rule(inst_hat)).reshape(nA, nA))
    u_commit = float(principal_utility(inst_true, mech))
    ic = max(float(np.max(v)) for v in _ic(inst_true, mech))
    regret = T * opt - T1 * u_explore - (T - T1) * u_commit
    return {"regret": regret, "T1": T1, "eta": eta, "fallback": fallback, "u_commit": u_commit,
            "u_explore": u_explore, "opt": opt, "ic_violation": ic, "q_hat": q_hat.tolist()}


def _check_T_kappa(T, kappa, B, c1):
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 2:
        raise ValueError(f"T: expected an int >= 2, got {T!r}")
    check_range("kappa", kappa, low=0.0)
    check_range("B", B, low=0.0, low_inclusive=False)
    check_range("c1", c1, low=0.0)


def etc_regret(key, inst_true: Instance, T: int, kappa: float = 0.1, B: float = 1.0, c1: float = 1.0,
               known_pi: bool = False) -> dict:
    """Regret of explore-then-commit over ``T`` rounds for one seed (``key`` draws the exploration sample):
    ``{"regret", "T1", "eta", "fallback", "u_commit", "u_explore", "opt", "ic_violation", "q_hat"}``.
    ``known_pi=True`` commits on the true pi (the accounting check: with c1 = 0 and kappa = 0, regret = 0)."""
    _check_instance(inst_true, "inst_true")
    _check_T_kappa(T, kappa, B, c1)
    q, c, prior = _binary_q(inst_true)
    if not (B * (q - 0.5) > np.array(c)).all():
        raise ValueError(f"B: exploration needs B (q_i - 1/2) > c_i for every agent; got B = {B}")
    T1 = min(T, math.ceil(c1 * T ** (2 / 3)))
    opt = solve_optimal_mechanism(inst_true, 0.0, B)[0]
    counts = None if known_pi else np.asarray(jax.random.binomial(key, T1, jnp.asarray(q)))
    v_all = float(np.asarray(value_of_information(inst_true)).reshape(-1)[-1])
    return _etc_from_counts(inst_true, q, c, prior, T, T1, counts, kappa, B, opt, v_all)


def regret_curve(key, inst_true: Instance, Ts, n_seeds: int, kappa: float = 0.1, B: float = 1.0,
                 c1: float = 1.0) -> dict:
    """ETC regret over ``n_seeds`` seeds x horizons ``Ts``: ``{"mean" f[len(Ts)], "slope" (least-squares
    log-log), "per_seed" f[n_seeds, len(Ts)], "ic_violation", "fallback"}``. The exploration samples of
    every (seed, T) are drawn in one vmapped call; one LP per (seed, T) on the host."""
    _check_instance(inst_true, "inst_true")
    Ts = [int(t) for t in Ts]
    if len(Ts) < 2 or any(t < 2 for t in Ts):
        raise ValueError(f"Ts: expected >= 2 horizons >= 2, got {Ts}")
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, np.integer)) or n_seeds < 1:
        raise ValueError(f"n_seeds: expected an int >= 1, got {n_seeds!r}")
    _check_T_kappa(Ts[0], kappa, B, c1)
    q, c, prior = _binary_q(inst_true)
    if not (B * (q - 0.5) > np.array(c)).all():
        raise ValueError(f"B: exploration needs B (q_i - 1/2) > c_i for every agent; got B = {B}")
    T1s = np.array([min(T, math.ceil(c1 * T ** (2 / 3))) for T in Ts])
    keys = jax.random.split(key, n_seeds * len(Ts)).reshape(n_seeds, len(Ts), -1)
    counts = np.asarray(jax.vmap(jax.vmap(lambda k, n1: jax.random.binomial(k, n1, jnp.asarray(q))))(
        keys, jnp.broadcast_to(jnp.asarray(T1s, jnp.float32), (n_seeds, len(Ts)))))
    opt = solve_optimal_mechanism(inst_true, 0.0, B)[0]
    v_all = float(np.asarray(value_of_information(inst_true)).reshape(-1)[-1])
    R = np.zeros((n_seeds, len(Ts)))
    ic = np.zeros((n_seeds, len(Ts)))
    fb = np.zeros((n_seeds, len(Ts)), bool)
    for s in range(n_seeds):
        for j, T in enumerate(Ts):
            r = _etc_from_counts(inst_true, q, c, prior, T, int(T1s[j]), counts[s, j], kappa, B, opt, v_all)
            R[s, j], ic[s, j], fb[s, j] = r["regret"], r["ic_violation"], r["fallback"]
    mean = R.mean(0)
    slope = float(np.polyfit(np.log(Ts), np.log(np.maximum(mean, 1e-12)), 1)[0])
    return {"mean": mean, "slope": slope, "per_seed": R, "ic_violation": ic, "fallback": fb, "opt": opt}
