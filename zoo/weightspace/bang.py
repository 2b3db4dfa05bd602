"""Spurious feature diversification, WiSE-FT and BANG (Lin, Tan, Hao, et al., ICLR 2024).

Paper: *Spurious Feature Diversification Improves Out-of-distribution Generalization*, Yong Lin,
Lu Tan, Yifan Hao, Honam Wong, Hanze Dong, Weizhong Zhang, Yujiu Yang, Tong Zhang, arXiv 2309.17230
(2023). Spec: ``papers/bang.md``. Official code ``linyongver/SpuriousFeatureDiversification``
(MultiColorMNIST only; read for understanding, no code reused). The MultiColor generator is
`zoo.data.colored_digits`; interpolation comes from `zoo.weightspace.core`.

Equations -> functions:
  §2.1 WiSE-FT ``θ_α = (1 - α) θ_0 + α θ_1``                      -> `wise_ft`
       output-space ensemble ``(1 - α) f(x; θ_0) + α f(x; θ_1)``   -> `output_ensemble`
  §2.2 the 2x2x2 right/wrong table (TTT..FFF; θ_0, θ_1, ensemble)  -> `outcome_table`, `fft_ratio`
  §2.3 the theory as a Monte-Carlo model (invariant + spurious
       features, overlap o, imbalance λ)                          -> `theory_sim`
  §2.5 BANG: ``t(y) = (1 - η) e_y + η/K``, mixup ``λ ~ Beta(a, a)``,
       ``CE(f(λx + (1-λ)x'), λ t(y) + (1-λ) t(y'))``               -> `smooth_labels`, `mixup`, `bang_loss`
       temperature-scaling baseline (head / T, T by NLL on ID)     -> `temperature_scale_head`, `fit_temperature`

Our choices: the theory's exact theorems are stated for the paper's learned weights; `theory_sim` is
the concrete generative model of spec §2.3 (our construction, same mechanism). η = 0.1 and a = 0.2
(label smoothing and the mixup Beta parameter) are unverified defaults: the paper's values could not
be recovered. `fft_ratio` is FFT / (share of examples both endpoints get wrong): the fraction of
double errors the ensemble fixes. `fit_temperature` bisects the (monotone) derivative of the NLL in
``log(1/T)`` for 100 steps over ``T`` in [e^-8, e^8].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range, is_traced
from zoo.weightspace import core

__all__ = ["bang_loss", "fft_ratio", "fit_temperature", "mixup", "outcome_table", "output_ensemble",
           "smooth_labels", "temperature_scale_head", "theory_sim", "wise_ft"]

Params = Any
KEYS = ("TTT", "TTF", "TFT", "TFF", "FTT", "FTF", "FFT", "FFF")


def _check_alpha(alpha, allow_extrapolation):
    check_array("alpha", alpha, shape=())
    if not is_traced(alpha) and not allow_extrapolation:
        check_range("alpha", float(alpha), low=0.0, high=1.0)


def wise_ft(theta0: Params, theta1: Params, alpha: Any = 0.5, *, allow_extrapolation: bool = False) -> Params:
    """``(1 - α) θ_0 + α θ_1`` (α = 0: the pre-trained / zero-shot model, α = 1: the fine-tuned one); vmap over α."""
    _check_alpha(alpha, allow_extrapolation)
    core._check_pair(theta0, theta1, "theta0", "theta1")
    return core.lerp(alpha, theta0, theta1)


def output_ensemble(logits0: Any, logits1: Any, alpha: Any = 0.5) -> jax.Array:
    """``(1 - α) logits0 + α logits1`` (f[N, K] each)."""
    check_array("logits0", logits0, ndim=2)
    check_array("logits1", logits1, shape=np.shape(logits0))
    _check_alpha(alpha, False)
    a = jnp.asarray(alpha, jnp.result_type(logits0))
    return (1 - a) * jnp.asarray(logits0) + a * jnp.asarray(logits1)


def _check_preds(y, *preds):
    check_array("y", y, ndim=1, kind="iu", min_size=1)
    for name, p in zip(("pred0", "pred1", "pred_ens"), preds):
        check_array(name, p, shape=np.shape(y), kind="iu")


def outcome_table(y: Any, pred0: Any, pred1: Any, pred_ens: Any) -> dict[str, jax.Array]:
    """Shares of the 8 outcomes ``"TTT".."FFF"`` (letters: θ_0, θ_1, ensemble right/wrong); they sum to 1."""
    _check_preds(y, pred0, pred1, pred_ens)
    r = [jnp.asarray(p) == jnp.asarray(y) for p in (pred0, pred1, pred_ens)]
    out = {}
    for k in KEYS:
        m = jnp.ones_like(r[0])
        for c, ri in zip(k, r):
            m = m & (ri if c == "T" else ~ri)
        out[k] = jnp.mean(m.astype(jnp.float32))
    return out


def fft_ratio(y: Any, pred0: Any, pred1: Any, pred_ens: Any) -> jax.Array:
    """FFT / (FFT + FFF): the fraction of the examples both endpoints get wrong that the ensemble gets right."""
    t = outcome_table(y, pred0, pred1, pred_ens)
    return t["FFT"] / jnp.maximum(t["FFT"] + t["FFF"], 1e-12)


def smooth_labels(y: Any, num_classes: int, eta: Any = 0.1) -> jax.Array:
    """``t(y) = (1 - η) e_y + η / K``: f[N, K] (rows sum to 1)."""
    check_array("y", y, ndim=1, kind="iu")
    check_range("num_classes", num_classes, low=2)
    check_array("eta", eta, shape=())
    if not is_traced(eta):
        check_range("eta", float(eta), low=0.0, high=1.0)
    if not is_traced(y) and np.size(y) and (np.min(y) < 0 or np.max(y) >= num_classes):
        raise ValueError(f"y: expected labels in [0, {num_classes}), got [{np.min(y)}, {np.max(y)}]")
    eta = jnp.asarray(eta)
    one = jax.nn.one_hot(y, num_classes, dtype=jnp.result_type(eta, float))
    return (1 - eta) * one + eta / num_classes


def mixup(key: jax.Array, x: Any, t: Any, a: Any = 0.2) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(λx + (1-λ)x[π], λt + (1-λ)t[π], λ)`` with ``λ ~ Beta(a, a)`` and π a random permutation of the batch.

    ``a = 0`` means no mixup (λ = 1, the identity). ``a`` may be traced (a population hyperparameter).
    """
    check_array("x", x, min_size=1)
    check_array("t", t, ndim=2)
    if np.shape(t)[0] != np.shape(x)[0]:
        raise ValueError(f"t: expected {np.shape(x)[0]} rows (as x), got {np.shape(t)[0]}")
    check_array("a", a, shape=())
    if not is_traced(a):
        check_range("a", float(a), low=0.0)
    x, t = jnp.asarray(x), jnp.asarray(t)
    kl, kp = jax.random.split(key)
    a = jnp.asarray(a, jnp.result_type(x, float))
    lam = jnp.where(a > 0, jax.random.beta(kl, jnp.where(a > 0, a, 1.0), jnp.where(a > 0, a, 1.0), dtype=a.dtype), 1.0)
    perm = jax.random.permutation(kp, x.shape[0])
    lx, lt = lam.astype(x.dtype), lam.astype(t.dtype)
    return lx * x + (1 - lx) * x[perm], lt * t + (1 - lt) * t[perm], lam


def bang_loss(apply_fn: Callable, params: Params, key: jax.Array, x: Any, y: Any, *, num_classes: int,
              eta: Any = 0.1, mixup_a: Any = 0.2) -> jax.Array:
    """The BANG fine-tuning loss: soft-target cross-entropy on mixed-up inputs with smoothed labels.

    ``eta = 0, mixup_a = 0`` is plain cross-entropy. ``apply_fn(params, x) -> logits f[N, K]``.
    """
    if not callable(apply_fn):
        raise ValueError(f"apply_fn: expected a callable (params, x) -> logits, got {type(apply_fn).__name__}")
    check_array("x", x, min_size=1)
    check_array("y", y, shape=(np.shape(x)[0],), kind="iu")
    t = smooth_labels(y, num_classes, eta)
    xm, tm, _ = mixup(key, x, t, mixup_a)
    logp = jax.nn.log_softmax(apply_fn(params, xm))
    return -jnp.mean(jnp.sum(tm.astype(logp.dtype) * logp, axis=-1))


def temperature_scale_head(params: Params, head_path: str, T: Any) -> Params:
    """``params`` with every leaf under ``head_path`` (e.g. ``"Dense_2"``: kernel and bias) divided by ``T``."""
    flat = core.flatten_paths(params)
    keys = [k for k in flat if k == head_path or k.startswith(head_path + "/")]
    if not keys:
        raise ValueError(f"head_path: {head_path!r} names no leaf of params (leaves: {sorted(flat)})")
    check_array("T", T, shape=())
    if not is_traced(T):
        check_range("T", float(T), low=0.0, low_inclusive=False)
    out = {k: (v / jnp.asarray(T, jnp.result_type(v)) if k in keys else v) for k, v in flat.items()}
    return core.unflatten_paths(out)


def fit_temperature(logits: Any, y: Any) -> jax.Array:
    """``T`` minimising the NLL of ``softmax(logits / T)`` on ``(logits f[N, K], y)`` (bisection; jit-able)."""
    check_array("logits", logits, ndim=2, min_size=1)
    check_array("y", y, shape=(np.shape(logits)[0],), kind="iu")
    z = jnp.asarray(logits)
    zy = jnp.take_along_axis(z, jnp.asarray(y)[:, None], axis=1)[:, 0]

    def dnll(logb):  # d NLL / d beta (beta = 1/T), increasing in beta
        p = jax.nn.softmax(jnp.exp(logb) * z)
        return jnp.mean(jnp.sum(p * z, -1) - zy)

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        pos = dnll(mid) > 0
        return jnp.where(pos, lo, mid), jnp.where(pos, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 100, body, (jnp.asarray(-8.0, z.dtype), jnp.asarray(8.0, z.dtype)))
    return jnp.exp(-0.5 * (lo + hi))


def theory_sim(key: jax.Array, n: int, *, K: int = 10, n_inv: int = 3, n_sp: int = 6, overlap: int = 0,
               p: float = 0.7, sigma: float = 1.0, lam: float = 1.0) -> dict[str, jax.Array]:
    """Monte-Carlo of the diversification model (spec §2.3) on ``n`` OOD samples (``p = 0``: in-distribution).

    Features ``x_i = e_{c_i} + σ ξ_i ∈ R^K``; invariant ones have ``c_i = y``; spurious ones ``c_i = y``
    except, with probability ``p``, ``c_i ~ U{0..K-1}``. Model A sums ``V ∪ S_A``, model B ``V ∪ S_B``
    (``|S| = n_sp``, ``|S_A ∩ S_B| = overlap``); the ensemble is ``f_A + λ f_B``.
    Returns ``{"acc_a", "acc_b", "acc_ens", "fft", "ttf", "table"}`` (table: `outcome_table` of A, B, ensemble).
    """
    for name, v, lo in (("n", n, 1), ("K", K, 2), ("n_inv", n_inv, 0), ("n_sp", n_sp, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    for name, v in (("overlap", overlap), ("p", p), ("sigma", sigma), ("lam", lam)):
        check_array(name, v, shape=())
    if not is_traced(overlap):
        if isinstance(overlap, bool) or int(overlap) != overlap or not 0 <= int(overlap) <= n_sp:
            raise ValueError(f"overlap: expected an int in [0, n_sp={n_sp}], got {overlap!r}")
    if not is_traced(p):
        check_range("p", float(p), low=0.0, high=1.0)
    if not is_traced(sigma):
        check_range("sigma", float(sigma), low=0.0)
    if not is_traced(lam):
        check_range("lam", float(lam), low=0.0)
    ky, kf = jax.random.split(key)
    y = jax.random.randint(ky, (n,), 0, K)
    # features 0..n_inv-1 invariant, then a pool of 2 n_sp spurious slots: A uses slots [0, n_sp), B uses
    # [n_sp - o, 2 n_sp - o); unused slots have weight 0 (so one compiled program serves every overlap)
    F = n_inv + 2 * n_sp
    slot = jnp.arange(F) - n_inv
    o = jnp.asarray(overlap, jnp.int32)
    wa = jnp.where(slot < 0, 1.0, (slot < n_sp).astype(jnp.float32))
    wb = jnp.where(slot < 0, 1.0, ((slot >= n_sp - o) & (slot < 2 * n_sp - o)).astype(jnp.float32))

    def body(i, carry):
        fa, fb = carry
        k1, k2, k3 = jax.random.split(jax.random.fold_in(kf, i), 3)
        shift = (i >= n_inv) & (jax.random.uniform(k1, (n,)) < p)
        c = jnp.where(shift, jax.random.randint(k2, (n,), 0, K), y)
        x = jax.nn.one_hot(c, K) + sigma * jax.random.normal(k3, (n, K))
        return fa + wa[i] * x, fb + wb[i] * x

    fa, fb = jax.lax.fori_loop(0, F, body, (jnp.zeros((n, K)), jnp.zeros((n, K))))
    pa, pb = jnp.argmax(fa, -1), jnp.argmax(fb, -1)
    pe = jnp.argmax(fa + lam * fb, -1)
    table = outcome_table(y, pa, pb, pe)
    return {"acc_a": jnp.mean(pa == y), "acc_b": jnp.mean(pb == y), "acc_ens": jnp.mean(pe == y),
            "fft": table["FFT"], "ttf": table["TTF"], "table": table}
