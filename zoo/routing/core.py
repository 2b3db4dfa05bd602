"""Dynamic routing by agreement: one pure function shared by `capsule_dbd` and `adaptdhm`.

Spec: ``papers/_routing_family.md``. Sabour, Frosst & Hinton, "Dynamic Routing Between Capsules"
(NeurIPS 2017, arXiv 1710.09829), and the "customised dynamic routing" of AdaptDHM (Li et al. 2022,
arXiv 2211.12105). Both are the fixed-point iteration below, with different choices of the output
non-linearity φ, the logit update and whether the outputs persist across training steps.

Inputs: prediction vectors ``u_hat[..., I, J, D]`` (what input i predicts for output j; a J axis of
size 1 is broadcast over ``num_outputs`` outputs without materialising ``[I, J, D]``), initial
logits ``b⁰[..., I, J]`` (default 0) and an optional input mask ``m[..., I]``. For t = 1..r:

1. coupling   ``c_ij = m_i softmax_j(b_ij)``  (softmax over the outputs j, per input i);
2. aggregate  ``s_j = Σ_i c_ij û_ij``;
3. output     ``v_j = φ(s_j, v_j^prev)``, φ one of (`squash`):
   ``sabour``  ``‖s‖²/(1+‖s‖²) · s/sqrt(‖s‖²+ε)`` (length in [0, 1));
   ``unit``    ``s/sqrt(‖s‖²+ε)`` (Keras text-capsule layers);
   ``ema_l2``  ``normalize(β v^prev + (1−β) s)`` and ``v^prev ← v`` (AdaptDHM's cluster centres);
   ``none``    ``s``;
4. agreement  ``a_ij = ⟨û_ij, v_j⟩``; ``accumulate``: ``b ← b + a`` (Sabour), ``replace``: ``b ← a``.

Returned: `RoutingOut` ``(v, c, c_final, b)`` — the last outputs, the couplings of the last
iteration, ``c_final = m softmax_j(b)`` from the logits after the last agreement step, and those
logits. Wrappers: `capsule_routing` (Sabour), `keras_text_capsule_routing` (unit squash, replace),
`adaptdhm_route` (ema_l2, replace, b⁰ = x Cᵀ, no gradient).

Choices that are ours:
- ``ema_l2`` normalises as torch's ``F.normalize``: ``x / max(‖x‖, ε)`` (exact unit norm; an
  all-masked input set leaves unit centres unchanged instead of dividing by zero).
- ``ema_inside_loop=False`` (the ADL-style variant): inside the loop ``v_t = normalize(s_t)`` drives
  the agreement, and the EMA with ``v^prev`` is applied once after the loop. With ``num_iters=1``
  this is exactly the released ADL code (whose loop never updates its centres, so its r iterations
  are identical); with r > 1 the loop does real routing.
- ``stop_gradient_routing="logits"``: the couplings of every iteration are computed from
  ``stop_gradient(û)`` (and a stopped ``b⁰``); gradients reach ``û`` only through the last
  aggregate ``s = Σ c û``.
- Computation is in ``promote(dtype(û), float32)``: float32 for bf16/float32 inputs, float64 stays.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from zoo.checks import check_array, check_choice, check_range, is_traced

__all__ = [
    "RoutingOut",
    "adaptdhm_route",
    "capsule_routing",
    "dynamic_routing",
    "keras_text_capsule_routing",
    "l2_normalize",
    "squash",
]

NONLINEARITIES = ("sabour", "unit", "ema_l2", "none")
AGREEMENTS = ("accumulate", "replace")
STOP_GRADIENTS = ("none", "logits", "all")


class RoutingOut(NamedTuple):
    """Result of `dynamic_routing`: ``v f[..., J, D]``, ``c, c_final, b: f[..., I, J]``."""

    v: jax.Array
    c: jax.Array
    c_final: jax.Array
    b: jax.Array


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")


def squash(s: jax.Array, axis: int = -1, kind: str = "sabour", eps: float = 1e-7) -> jax.Array:
    """The capsule non-linearity along ``axis``.

    ``sabour``: ``‖s‖²/(1+‖s‖²) · s/sqrt(‖s‖²+eps)`` (norm below one, 0 ↦ 0 with finite gradient);
    ``unit``: ``s/sqrt(‖s‖²+eps)``; ``none``: ``s``. s: f[...].
    """
    check_choice("kind", kind, ("sabour", "unit", "none"))
    check_range("eps", eps, low=0.0, low_inclusive=False)
    if kind == "none":
        return s
    sq = jnp.sum(s * s, axis=axis, keepdims=True)
    unit = s / jnp.sqrt(sq + eps)
    return unit if kind == "unit" else (sq / (1.0 + sq)) * unit


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """``x / max(‖x‖, eps)`` along ``axis`` (torch's ``F.normalize``; finite gradient at 0)."""
    check_range("eps", eps, low=0.0, low_inclusive=False)
    sq = jnp.sum(x * x, axis=axis, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def _masked_softmax(b, mask):
    c = jax.nn.softmax(b, axis=-1)
    return c if mask is None else c * mask[..., None].astype(c.dtype)


def dynamic_routing(
    u_hat: jax.Array,
    num_iters: int,
    *,
    num_outputs: int | None = None,
    logits_init: jax.Array | None = None,
    input_mask: jax.Array | None = None,
    nonlinearity: str = "sabour",
    agreement: str = "accumulate",
    prev_outputs: jax.Array | None = None,
    ema: float = 0.9,
    ema_inside_loop: bool = True,
    stop_gradient_routing: str = "none",
    eps: float = 1e-7,
) -> RoutingOut:
    """Routing by agreement (module docstring), r = ``num_iters`` unrolled iterations.

    Args:
      u_hat: f[..., I, J, D] prediction vectors, or f[..., I, 1, D] broadcast over ``num_outputs``.
      num_iters: r >= 1 (static).
      num_outputs: J when ``u_hat``'s J axis is 1 (required then); else must equal it or be None.
      logits_init: f[..., I, J] initial logits b⁰ (default zeros).
      input_mask: bool[..., I]; masked inputs get zero coupling.
      nonlinearity: ``sabour`` | ``unit`` | ``ema_l2`` | ``none`` (static).
      agreement: ``accumulate`` (b ← b + a) | ``replace`` (b ← a).
      prev_outputs: f[..., J, D], the previous outputs (required for ``ema_l2``).
      ema: β in [0, 1] of ``ema_l2``.
      ema_inside_loop: ``ema_l2`` only: EMA in every iteration (Scenario-Wise-Rec) or once after the
        loop (ADL style, see the module docstring).
      stop_gradient_routing: ``none`` | ``logits`` | ``all``.
      eps: ε inside the squash's square root (and of the L2 normalisation).

    Returns:
      `RoutingOut` ``(v f[..., J, D], c f[..., I, J], c_final f[..., I, J], b f[..., I, J])``.
    """
    _check_int("num_iters", num_iters, 1)
    check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    check_choice("agreement", agreement, AGREEMENTS)
    check_choice("stop_gradient_routing", stop_gradient_routing, STOP_GRADIENTS)
    if not is_traced(ema):
        check_range("ema", ema, low=0.0, high=1.0)
    check_range("eps", eps, low=0.0, low_inclusive=False)
    check_array("u_hat", u_hat, kind="fiub")
    if u_hat.ndim < 3:
        raise ValueError(f"u_hat: expected shape (..., I, J, D) with at least 3 dims, got {tuple(u_hat.shape)}")
    *batch, I, J_in, D = u_hat.shape
    if J_in == 1:
        if num_outputs is None:
            raise ValueError("num_outputs: required when u_hat's J axis has size 1 (broadcast over outputs)")
        _check_int("num_outputs", num_outputs, 1)
        J = num_outputs
    else:
        if num_outputs is not None and num_outputs != J_in:
            raise ValueError(f"num_outputs: expected None or u_hat's J axis {J_in}, got {num_outputs!r}")
        J = J_in
    dtype = jnp.promote_types(u_hat.dtype, jnp.float32)
    u = u_hat.astype(dtype)
    if logits_init is not None:
        check_array("logits_init", logits_init, shape=(*batch, I, J))
        b0 = jnp.asarray(logits_init).astype(dtype)
    else:
        b0 = jnp.zeros((*batch, I, J), dtype)
    mask = None
    if input_mask is not None:
        if tuple(jnp.shape(input_mask)) != (*batch, I):
            raise ValueError(f"input_mask: expected shape {(*batch, I)} (u_hat's leading dims and I), "
                             f"got {tuple(jnp.shape(input_mask))}")
        mask = jnp.asarray(input_mask)
    prev = None
    if nonlinearity == "ema_l2":
        if prev_outputs is None:
            raise ValueError("prev_outputs: required for nonlinearity='ema_l2' (the previous centres, f[..., J, D])")
        check_array("prev_outputs", prev_outputs, shape=(*batch, J, D))
        prev = jnp.asarray(prev_outputs).astype(dtype)
    elif prev_outputs is not None:
        raise ValueError(f"prev_outputs: only used with nonlinearity='ema_l2', got nonlinearity={nonlinearity!r}")

    sg = jax.lax.stop_gradient
    if stop_gradient_routing == "all":
        u, b0 = sg(u), sg(b0)
        prev = None if prev is None else sg(prev)
    u_route = sg(u) if stop_gradient_routing == "logits" else u
    if stop_gradient_routing == "logits":
        b0 = sg(b0)
    x = u[..., 0, :] if J_in == 1 else None
    x_route = u_route[..., 0, :] if J_in == 1 else None

    def aggregate(c, uu, xx):
        if J_in == 1:
            return jnp.einsum("...ij,...id->...jd", c, xx)
        return jnp.einsum("...ij,...ijd->...jd", c, uu)

    def agree(uu, xx, v):
        if J_in == 1:
            return jnp.einsum("...id,...jd->...ij", xx, v)
        return jnp.einsum("...ijd,...jd->...ij", uu, v)

    def phi(s, v_prev):
        if nonlinearity == "ema_l2":
            if ema_inside_loop:
                return l2_normalize(ema * v_prev + (1.0 - ema) * s, eps=eps)
            return l2_normalize(s, eps=eps)
        return squash(s, kind=nonlinearity, eps=eps)

    b, v_prev = b0, prev
    c = v = None
    for t in range(num_iters):
        c = _masked_softmax(b, mask)
        last = t == num_iters - 1
        if last and stop_gradient_routing == "logits":
            s = aggregate(c, u, x)  # the only path from u_hat to the outputs
        else:
            s = aggregate(c, u_route, x_route)
        v = phi(s, v_prev)
        if nonlinearity == "ema_l2" and ema_inside_loop:
            v_prev = v
        a = agree(u_route, x_route, sg(v) if stop_gradient_routing == "logits" else v)
        b = b + a if agreement == "accumulate" else a
    if nonlinearity == "ema_l2" and not ema_inside_loop:
        v = l2_normalize(ema * prev + (1.0 - ema) * v, eps=eps)
    c_final = _masked_softmax(b, mask)
    out = RoutingOut(v=v, c=c, c_final=c_final, b=b)
    return jax.tree.map(sg, out) if stop_gradient_routing == "all" else out


def capsule_routing(u_hat: jax.Array, num_iters: int = 3, *, input_mask: jax.Array | None = None,
                    stop_gradient_routing: str = "none") -> RoutingOut:
    """Sabour et al.'s routing: sabour squash, accumulated logits, b⁰ = 0. u_hat: f[..., I, J, D]."""
    return dynamic_routing(u_hat, num_iters, input_mask=input_mask, nonlinearity="sabour", agreement="accumulate",
                           stop_gradient_routing=stop_gradient_routing)


def keras_text_capsule_routing(u_hat: jax.Array, num_iters: int = 3, *,
                               input_mask: jax.Array | None = None) -> RoutingOut:
    """The Keras text-capsule variant: unit squash (‖v‖ ≈ 1, use a dense head) and replaced logits."""
    return dynamic_routing(u_hat, num_iters, input_mask=input_mask, nonlinearity="unit", agreement="replace")


def adaptdhm_route(x: jax.Array, centers: jax.Array, beta: float = 0.9, num_iters: int = 3, *, train: bool = True,
                   input_mask: jax.Array | None = None, ema_inside_loop: bool = True,
                   mean_aggregate: bool = False) -> tuple[jax.Array, jax.Array, jax.Array]:
    """AdaptDHM's distribution-adaptation routing of a batch to K cluster centres (no gradient).

    Train: r iterations of ``R = softmax(X Cᵀ)``, ``S = Rᵀ X``, ``C ← normalize(β C + (1−β) S)``,
    then ``R = softmax(X Cᵀ)`` with the new centres. Eval: ``R = softmax(X Cᵀ)``, centres unchanged.
    ``mean_aggregate`` divides S by Σ_i R_ik (ours; the reference sums over the batch).

    Args:
      x: f[B, D] embeddings (detached here); centers: f[K, D] unit-norm rows.
      beta: EMA rate in [0, 1]; num_iters: r >= 1.
      input_mask: bool[B] optional (masked samples do not move the centres).

    Returns:
      ``(assign i32[B] = argmax_k R, R f[B, K], new_centers f[K, D])``.
    """
    check_array("x", x, ndim=2, kind="f")
    check_array("centers", centers, ndim=2, kind="f")
    if centers.shape[1] != x.shape[1]:
        raise ValueError(f"centers: expected width {x.shape[1]} (x's feature dim), got shape {tuple(centers.shape)}")
    if x.shape[0] == 0:
        raise ValueError("x: expected a non-empty batch, got 0 rows")
    if not is_traced(beta):
        check_range("beta", beta, low=0.0, high=1.0)
    _check_int("num_iters", num_iters, 1)
    sg = jax.lax.stop_gradient
    x, centers = sg(x), sg(centers)
    dtype = jnp.promote_types(jnp.result_type(x, centers), jnp.float32)
    x, centers = x.astype(dtype), centers.astype(dtype)
    logits = x @ centers.T
    if not train:
        r = jax.nn.softmax(logits, axis=-1)
        return jnp.argmax(r, -1).astype(jnp.int32), r, centers
    if mean_aggregate:
        # S_k / Σ_i R_ik: run the loop by hand (the shared function sums, as the reference does)
        cen, b = centers, logits
        m = None if input_mask is None else jnp.asarray(input_mask)
        for _ in range(num_iters):
            r = _masked_softmax(b, m)
            s = (r.T @ x) / jnp.maximum(r.sum(0), 1e-12)[:, None]
            cen = l2_normalize(beta * cen + (1.0 - beta) * s) if ema_inside_loop else l2_normalize(s)
            b = x @ cen.T
        if not ema_inside_loop:
            return jnp.argmax(r, -1).astype(jnp.int32), r, l2_normalize(beta * centers + (1.0 - beta) * cen)
        r = _masked_softmax(b, m)
        return jnp.argmax(r, -1).astype(jnp.int32), r, cen
    out = dynamic_routing(x[:, None, :], num_iters, num_outputs=centers.shape[0], logits_init=logits,
                          input_mask=input_mask, nonlinearity="ema_l2", agreement="replace", prev_outputs=centers,
                          ema=beta, ema_inside_loop=ema_inside_loop, stop_gradient_routing="all", eps=1e-12)
    coeff = out.c_final if ema_inside_loop else out.c  # ADL style: the loop's coefficients (old centres at r = 1)
    return jnp.argmax(coeff, -1).astype(jnp.int32), coeff, out.v
