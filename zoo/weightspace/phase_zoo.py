"""A model zoo over loss-landscape phases (load × temperature), generated offline.

Paper: Konstantin Schürholt, Léo Meynent, Yefan Zhou, Haiquan Lu, Yaoqing Yang, Damian Borth, "A Model
Zoo on Phase Transitions in Neural Networks" (2025, arXiv 2504.18072); phase taxonomy of Yang et al.,
"Taxonomizing local versus global structure in neural network loss landscapes" (NeurIPS 2021).
Spec: ``papers/phase_zoo.md``; metrics from `zoo.weightspace.landscape`.

What is computed (spec §2.3 → function)
  grid: load-like axis = MLP width (high load = small width), temperature-like axis = peak learning
  rate of SGD(momentum) with a one-cycle schedule; every (width) group of |lrs| × |seeds| members is
  ONE vmapped population trained by `zoo.train.run_population` (chunk = one epoch; checkpoints,
  resume)                                                                           → `train_group`
  performance: train/test loss, accuracy, gap ``train_acc − test_acc``              → `performance`
  Hessian on fixed training batches: top eigenvalue (power iteration), trace (Hutchinson), logs
                                                                                    → `hessian_metrics`
  CKA between the logits of two seeds on fixed test batches (mean per-batch CKA)    → `cka_logits`
  mode connectivity between two seeds along a quadratic Bezier curve (trained bend) or the line:
  ``mc = ½(v(0)+v(1)) − v(t*)`` on train loss and train error in %, negative = barrier
                                                                                    → `mode_connectivity`
  phases I, II, III, IV-A, IV-B (labels 0..4) by the spec's pre-registered rule     → `classify_phase`
  connected components of every phase on the grid (4-neighbourhood)                 → `phase_components`
  the whole zoo, its per-model table and per-cell grids                             → `build_zoo`
  save/load: orbax (weights) + a Hugging Face ``datasets.Dataset`` saved to disk (per-model table)
  + JSON (config, cell grids)                                                       → `save_zoo`, `load_zoo`

Our choices / reconstructions
  * Data: the spec's MNIST-1D (``mnist1d``) is not installed, so we use its fallback, scikit-learn's
    bundled digits (64 features, 10 classes; seeded 80/20 split, standardised with train mean/std —
    `load_data`). MLP 64 → w → w → 10, ReLU, He-uniform kernels, zero biases.
  * Optimizer: weight decay added to the gradient, then SGD with momentum (PyTorch order) and
    ``optax.cosine_onecycle_schedule`` (pct_start 0.3, div 25, final div 1e4) scaled by the member's
    peak lr; momentum is not cycled (PyTorch's OneCycleLR cycles it — documented difference).
  * Seeds: member (lr, seed) uses ``fold_in(key, seed)`` for init and data order, so all learning
    rates of a seed start from the same weights (as the official grid does with its seeds).
  * The phase rule (the paper identifies phases visually; the official code has no thresholds):
    well-trained ⇔ train loss ≤ τ_loss; barrier ⇔ mc_err < −τ_mc (error points in %); not
    well-trained → I if barrier else II; well-trained → III if barrier, else IV-B if CKA ≥ τ_cka
    else IV-A. NaN metrics → −1 (undetermined) with a warning. Hessian metrics are reported, not used.
  * Metric budgets are configurable (quick: 20 power iterations, 10 probes, short Bezier training);
    the Hessian uses the mean cross-entropy over ``hess_batches × hess_batch_size`` fixed training
    examples (the same for every model); BN is absent, so no statistics are re-estimated.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo.checks import check_array, check_range, is_traced
from zoo.weightspace import landscape as ls

__all__ = [
    "PHASE_NAMES",
    "ZooConfig",
    "load_data",
    "make_mlp",
    "train_group",
    "performance",
    "hessian_metrics",
    "cka_logits",
    "mode_connectivity",
    "classify_phase",
    "phase_components",
    "build_zoo",
    "save_zoo",
    "load_zoo",
]

PHASE_NAMES = ("I", "II", "III", "IV-A", "IV-B")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ZooConfig:
    """The grid, the training recipe, the metric budgets and the phase thresholds (all static)."""

    widths: tuple[int, ...] = (2, 4, 8, 16, 32, 64)  # load axis (small width = high load)
    lrs: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1)  # temperature axis (peak lr)
    n_seeds: int = 2
    depth: int = 2
    epochs: int = 20
    batch: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    hess_batches: int = 10
    hess_batch_size: int = 64
    power_iter: int = 20
    power_tol: float = 1e-3
    probes: int = 10
    probe_tol: float = 1e-3
    cka_batches: int = 8
    curve: str = "bezier"
    bezier_epochs: int = 2
    bezier_lr: float = 0.1
    bezier_batch: int = 128
    n_ts: int = 5
    tau_loss: float = 0.1
    tau_mc: float = 1.0
    tau_cka: float = 0.9

    def __post_init__(self):
        for name in ("widths", "lrs"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or not v:
                raise ValueError(f"{name}: expected a non-empty tuple, got {v!r}")
            if any(not (x > 0) for x in v):
                raise ValueError(f"{name}: expected positive values, got {v!r}")
            if list(v) != sorted(set(v)):
                raise ValueError(f"{name}: expected strictly increasing values, got {v!r}")
        if any(int(w) != w for w in self.widths):
            raise ValueError(f"widths: expected integers, got {self.widths!r}")
        check_range("n_seeds", self.n_seeds, low=2)  # CKA and mc need pairs of seeds
        for name in ("depth", "epochs", "batch", "hess_batches", "hess_batch_size", "power_iter", "probes",
                     "cka_batches", "bezier_batch"):
            check_range(name, getattr(self, name), low=1)
        check_range("bezier_epochs", self.bezier_epochs, low=0)
        check_range("n_ts", self.n_ts, low=3)
        check_range("momentum", self.momentum, low=0.0, high=1.0, high_inclusive=False)
        for name in ("weight_decay", "power_tol", "probe_tol", "tau_loss", "tau_mc"):
            check_range(name, getattr(self, name), low=0.0)
        check_range("pct_start", self.pct_start, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        check_range("bezier_lr", self.bezier_lr, low=0.0, low_inclusive=False)
        check_range("tau_cka", self.tau_cka, low=0.0, high=1.0)
        if self.curve not in ("bezier", "linear"):
            raise ValueError(f"curve: expected 'bezier' or 'linear', got {self.curve!r}")


def load_data(test_frac: float = 0.2, seed: int = 0) -> dict[str, np.ndarray]:
    """Digits split ``{"x_train", "y_train", "x_test", "y_test"}``, features standardised with train stats."""
    from zoo.data import load_digits

    check_range("test_frac", test_frac, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    d = load_digits()
    idx = np.random.default_rng(seed).permutation(len(d["y"]))
    nt = int(round(test_frac * len(idx)))
    te, tr = idx[:nt], idx[nt:]
    mu, sd = d["x"][tr].mean(0), d["x"][tr].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    f = lambda a: ((a - mu) / sd).astype(np.float32)  # noqa: E731
    return {"x_train": f(d["x"][tr]), "y_train": d["y"][tr].astype(np.int32),
            "x_test": f(d["x"][te]), "y_test": d["y"][te].astype(np.int32)}


def make_mlp(width: int, depth: int = 2, n_in: int = 64, n_out: int = 10, dtype: Any = None):
    """``(init_fn(key) -> params, apply_fn(params, x) -> logits)`` of a ReLU MLP n_in → width×depth → n_out."""
    from zoo.checks import check_float_dtype

    for name, v in (("width", width), ("depth", depth), ("n_in", n_in), ("n_out", n_out)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
        check_range(name, v, low=1)
    dt = check_float_dtype("dtype", dtype)
    sizes = [n_in] + [width] * depth + [n_out]

    def init_fn(key):
        p = {}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            lim = np.sqrt(6.0 / a)  # He-uniform
            p[f"Dense_{i}"] = {"kernel": jax.random.uniform(jax.random.fold_in(key, i), (a, b), dt, -lim, lim),
                               "bias": jnp.zeros(b, dt)}
        return p

    def apply_fn(params, x):
        h = x
        for i in range(len(sizes) - 1):
            h = h @ params[f"Dense_{i}"]["kernel"] + params[f"Dense_{i}"]["bias"]
            if i < len(sizes) - 2:
                h = jax.nn.relu(h)
        return h

    return init_fn, apply_fn


def _ce_acc(apply_fn, params, x, y):
    logits = apply_fn(params, x)
    ce = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], 1)[:, 0]
    return jnp.mean(ce), jnp.mean((jnp.argmax(logits, -1) == y).astype(logits.dtype))


def _check_data(data):
    if not isinstance(data, Mapping):
        raise TypeError(f"data: expected a dict with x_train, y_train, x_test, y_test, got {type(data).__name__}")
    for k in ("x_train", "y_train", "x_test", "y_test"):
        if k not in data:
            raise ValueError(f"data: missing {k!r}")
    check_array("data['x_train']", data["x_train"], ndim=2, kind="f")
    check_array("data['x_test']", data["x_test"], ndim=2, kind="f")
    check_array("data['y_train']", data["y_train"], ndim=1, kind="iu")


def train_group(cfg: ZooConfig, width: int, data: Mapping[str, Any], key: jax.Array,
                runner: Mapping[str, Any] | None = None) -> tuple[Any, dict, dict]:
    """Train every (lr, seed) member of one width as one vmapped population.

    Returns ``(params, hparams, history)``: params leaves ``[M, ...]`` with ``M = |lrs| · n_seeds``
    (lr-major: member ``i·n_seeds + s`` has ``lrs[i]`` and seed ``s``), ``hparams = {"lr": f[M],
    "seed": i[M]}``, ``history = {"train_loss", "train_acc": f[M, epochs]}`` (epoch means).
    ``runner``: extra keyword arguments of `zoo.train.run_population` (checkpoint_dir, progress...).
    """
    import optax

    from zoo.data import batch_at
    from zoo.train import TrainState, run_population, scan_steps

    if not isinstance(cfg, ZooConfig):
        raise TypeError(f"cfg: expected a ZooConfig, got {type(cfg).__name__}")
    _check_data(data)
    init_fn, apply_fn = make_mlp(int(width), cfg.depth, data["x_train"].shape[1], 10,
                                 dtype=data["x_train"].dtype)
    x, y = jnp.asarray(data["x_train"]), jnp.asarray(data["y_train"])
    n = x.shape[0]
    spe = max(n // cfg.batch, 1)
    total = spe * cfg.epochs
    sched = optax.cosine_onecycle_schedule(total, 1.0, cfg.pct_start, cfg.div_factor, cfg.final_div_factor)
    lrs = np.repeat(np.asarray(cfg.lrs, x.dtype), cfg.n_seeds)
    seeds = np.tile(np.arange(cfg.n_seeds, dtype=np.int32), len(cfg.lrs))
    keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.asarray(seeds))
    hp = {"lr": jnp.asarray(lrs)}

    def opt(lr):
        return optax.chain(optax.add_decayed_weights(cfg.weight_decay),
                           optax.sgd(lambda s: lr * sched(s), momentum=cfg.momentum))

    def loss_fn(params, batch, rng):
        loss, acc = _ce_acc(apply_fn, params, batch["x"], batch["y"])
        return loss, {"acc": acc}

    def init(k, h):
        k_init, k_data = jax.random.split(k)
        return TrainState.create(params=init_fn(k_init), optimizer=opt(h["lr"]), rng=k_data)

    def chunk(state, h, c):
        bf = lambda s: batch_at({"x": x, "y": y}, s, batch_size=cfg.batch, key=state.rng)  # noqa: E731
        state, m = scan_steps(loss_fn, opt(h["lr"]), bf, spe)(state)
        return state, {"train_loss": jnp.mean(m["loss"]), "train_acc": jnp.mean(m["acc"])}

    kw = {"desc": f"width {width}", "progress": False, **dict(runner or {})}
    state, outs = run_population(init, chunk, keys, hp, num_chunks=cfg.epochs, steps_per_chunk=spe, **kw)
    return state.params, {"lr": lrs, "seed": seeds}, {k: np.asarray(v) for k, v in outs.items()}


def performance(apply_fn: Callable, params: Any, data: Mapping[str, Any]) -> dict:
    """``{train_loss, train_acc, test_loss, test_acc, ggap}`` of one model (vmap over members)."""
    if not callable(apply_fn):
        raise TypeError(f"apply_fn: expected a callable (params, x) -> logits, got {type(apply_fn).__name__}")
    _check_data(data)
    trl, tra = _ce_acc(apply_fn, params, jnp.asarray(data["x_train"]), jnp.asarray(data["y_train"]))
    tel, tea = _ce_acc(apply_fn, params, jnp.asarray(data["x_test"]), jnp.asarray(data["y_test"]))
    return {"train_loss": trl, "train_acc": tra, "test_loss": tel, "test_acc": tea, "ggap": tra - tea}


def _safe_log(v):
    return jnp.where(v > 0, jnp.log(jnp.where(v > 0, v, 1)), jnp.nan)


def hessian_metrics(loss_fn: Callable, params: Any, key: jax.Array, *, max_iter: int = 100, tol: float = 1e-3,
                    max_probes: int = 100, probe_tol: float = 1e-3) -> dict:
    """``{top_ev, trace, log_top_ev, log_trace, n_iter, trace_stderr}`` (PyHessian defaults; vmappable).

    ``loss_fn(params) -> scalar`` closes over the fixed batches. ``top_ev`` is the largest-magnitude
    eigenvalue (power iteration); logs are NaN for non-positive values (flagged, never clipped).
    """
    k1, k2 = jax.random.split(key)
    ev = ls.top_eigenvalue(loss_fn, params, k1, max_iter=max_iter, tol=tol)
    tr = ls.hutchinson_trace(loss_fn, params, k2, max_probes=max_probes, tol=probe_tol)
    return {"top_ev": ev["eigenvalue"], "trace": tr["trace"], "log_top_ev": _safe_log(ev["eigenvalue"]),
            "log_trace": _safe_log(tr["trace"]), "n_iter": ev["n_iter"], "trace_stderr": tr["stderr"]}


def cka_logits(apply_fn: Callable, params_a: Any, params_b: Any, x_batches: Any) -> jax.Array:
    """Mean per-batch linear CKA between the logits of two models on ``x_batches: f[nb, B, d]``."""
    if not callable(apply_fn):
        raise TypeError(f"apply_fn: expected a callable (params, x) -> logits, got {type(apply_fn).__name__}")
    check_array("x_batches", x_batches, ndim=3, kind="f")
    xb = jnp.asarray(x_batches)
    return ls.minibatch_cka(apply_fn(params_a, xb), apply_fn(params_b, xb))


def mode_connectivity(loss_err_fn: Callable, pa: Any, pb: Any, *, curve: str = "bezier", key: jax.Array | None = None,
                      batches: Any = None, batch_loss_fn: Callable | None = None, n_ts: int = 5, lr: float = 0.1,
                      momentum: float = 0.9, weight_decay: float = 5e-4) -> dict:
    """Signed mode connectivity of two models along a curve: ``{mc_loss, mc_err, ts, losses, errors}``.

    ``loss_err_fn(params) -> (loss, error in %)`` on the evaluation data. ``curve="linear"``: the
    straight line; ``"bezier"``: a quadratic Bezier curve whose bend is trained by
    `landscape.fit_bezier` on ``batch_loss_fn(params, batch)`` over ``batches`` (leaves ``[S, ...]``)
    with ``key``. ``mc = ½(v(0)+v(1)) − v(t*)``: negative = barrier, positive = path better than ends.
    """
    from zoo.weightspace import core

    if not callable(loss_err_fn):
        raise TypeError(f"loss_err_fn: expected a callable params -> (loss, error), got {type(loss_err_fn).__name__}")
    if curve not in ("bezier", "linear"):
        raise ValueError(f"curve: expected 'bezier' or 'linear', got {curve!r}")
    check_range("n_ts", n_ts, low=3)
    dt = jnp.result_type(jax.tree.leaves(pa)[0])
    ts = jnp.linspace(0.0, 1.0, n_ts, dtype=dt)
    if curve == "linear":
        losses, errs = core.path_losses(loss_err_fn, pa, pb, ts)
    else:
        if key is None or batches is None or not callable(batch_loss_fn):
            raise ValueError("curve: 'bezier' needs key, batches and batch_loss_fn to train the bend")
        bend = ls.fit_bezier(batch_loss_fn, pa, pb, batches, key, lr=lr, momentum=momentum,
                             weight_decay=weight_decay)
        losses, errs = ls.bezier_losses(loss_err_fn, pa, bend, pb, ts)
    return {"mc_loss": core.mode_connectivity(losses), "mc_err": core.mode_connectivity(errs), "ts": ts,
            "losses": losses, "errors": errs}


def classify_phase(m: Mapping[str, Any], tau_loss: float = 0.1, tau_mc: float = 1.0, tau_cka: float = 0.9) -> Any:
    """Phase labels 0..4 (`PHASE_NAMES` I, II, III, IV-A, IV-B) from ``m["train_loss"]``, ``m["mc_err"]``,
    ``m["cka"]`` (same shapes); −1 where a metric is NaN (with a warning). Vectorised, jit-able.

    ``train_loss ≤ tau_loss`` is well-trained; ``mc_err < −tau_mc`` is a barrier (``= −tau_mc`` is not).
    """
    if not isinstance(m, Mapping):
        raise TypeError(f"m: expected a dict of metric arrays, got {type(m).__name__}")
    for k in ("train_loss", "mc_err", "cka"):
        if k not in m:
            raise ValueError(f"m: missing {k!r} (needs train_loss, mc_err, cka)")
        check_array(f"m[{k!r}]", m[k], finite=False, kind="fiu")
    shapes = {np.shape(m[k]) for k in ("train_loss", "mc_err", "cka")}
    if len(shapes) != 1:
        raise ValueError(f"m: expected train_loss, mc_err and cka of one shape, got {sorted(shapes)}")
    for name, v in (("tau_loss", tau_loss), ("tau_mc", tau_mc)):
        if not is_traced(v):
            check_range(name, v, low=0.0)
    if not is_traced(tau_cka):
        check_range("tau_cka", tau_cka, low=0.0, high=1.0)
    loss, mc, cka = (jnp.asarray(m[k]) for k in ("train_loss", "mc_err", "cka"))
    trained = loss <= tau_loss
    barrier = mc < -tau_mc
    lab = jnp.where(trained, jnp.where(barrier, 2, jnp.where(cka >= tau_cka, 4, 3)), jnp.where(barrier, 0, 1))
    bad = jnp.isnan(loss) | jnp.isnan(mc) | (trained & ~barrier & jnp.isnan(cka))
    if not any(is_traced(v) for v in (loss, mc, cka)) and bool(jnp.any(bad)):
        warnings.warn(f"classify_phase: {int(jnp.sum(bad))} cell(s) have NaN metrics; labelled -1 (undetermined)",
                      stacklevel=2)
    return jnp.where(bad, -1, lab).astype(jnp.int32)


def phase_components(labels: Any) -> dict[int, int]:
    """Number of 4-connected components of every phase present on the grid ``labels: i[L, T]``."""
    check_array("labels", labels, ndim=2, kind="iu")
    lab = np.asarray(labels)
    out = {}
    for ph in sorted(set(lab.ravel().tolist()) - {-1}):
        seen = np.zeros(lab.shape, bool)
        n = 0
        for start in zip(*np.nonzero(lab == ph)):
            if seen[start]:
                continue
            n += 1
            stack = [start]
            seen[start] = True
            while stack:
                i, j = stack.pop()
                for a, b in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
                    if 0 <= a < lab.shape[0] and 0 <= b < lab.shape[1] and not seen[a, b] and lab[a, b] == ph:
                        seen[a, b] = True
                        stack.append((a, b))
        out[int(ph)] = n
    return out


def _annotate_group(cfg, width, params, data, key):
    """Per-model and per-cell metrics of one width group (members lr-major, seeds minor)."""
    from zoo.weightspace import core

    _, apply_fn = make_mlp(int(width), cfg.depth, data["x_train"].shape[1], 10, dtype=data["x_train"].dtype)
    xtr, ytr = jnp.asarray(data["x_train"]), jnp.asarray(data["y_train"])
    xte = jnp.asarray(data["x_test"])
    nh = min(cfg.hess_batches * cfg.hess_batch_size, xtr.shape[0])
    hx, hy = xtr[:nh], ytr[:nh]  # fixed batches, the same for every model
    nb = cfg.cka_batches
    bs = xte.shape[0] // nb
    xb = xte[: nb * bs].reshape(nb, bs, -1)
    perf = jax.jit(jax.vmap(lambda p: performance(apply_fn, p, data)))(params)
    hess_fn = lambda p, k: hessian_metrics(lambda q: _ce_acc(apply_fn, q, hx, hy)[0], p, k,  # noqa: E731
                                           max_iter=cfg.power_iter, tol=cfg.power_tol, max_probes=cfg.probes,
                                           probe_tol=cfg.probe_tol)
    M = len(cfg.lrs) * cfg.n_seeds
    hess = jax.jit(jax.vmap(hess_fn))(params, jax.random.split(jax.random.fold_in(key, 1), M))
    pairs = [(i * cfg.n_seeds + a, i * cfg.n_seeds + b) for i in range(len(cfg.lrs))
             for a in range(cfg.n_seeds) for b in range(a + 1, cfg.n_seeds)]
    ia, ib = (np.asarray(z) for z in zip(*pairs))
    pa = jax.tree.map(lambda v: v[ia], params)
    pb = jax.tree.map(lambda v: v[ib], params)

    def loss_err(p):
        loss, acc = _ce_acc(apply_fn, p, xtr, ytr)
        return loss, 100.0 * (1.0 - acc)

    bsz = min(cfg.bezier_batch, xtr.shape[0])
    steps = max(cfg.bezier_epochs * (xtr.shape[0] // bsz), 1)
    perm = jax.random.permutation(jax.random.fold_in(key, 2), xtr.shape[0])
    idx = jnp.concatenate([perm] * (-(-steps * bsz // xtr.shape[0])))[: steps * bsz].reshape(steps, bsz)
    batches = {"x": xtr[idx], "y": ytr[idx]}
    bl = lambda p, b: _ce_acc(apply_fn, p, b["x"], b["y"])[0]  # noqa: E731

    def pair_fn(a, b, k):
        out = {"cka": cka_logits(apply_fn, a, b, xb)}
        lin = mode_connectivity(loss_err, a, b, curve="linear", n_ts=cfg.n_ts)
        out.update({"lin_mc_loss": lin["mc_loss"], "lin_mc_err": lin["mc_err"],
                    "lin_barrier": core.barrier_linear(lin["losses"], lin["ts"])[0]})
        if cfg.curve == "bezier" and cfg.bezier_epochs > 0:
            bz = mode_connectivity(loss_err, a, b, curve="bezier", key=k, batches=batches, batch_loss_fn=bl,
                                   n_ts=cfg.n_ts, lr=cfg.bezier_lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
            out.update({"mc_loss": bz["mc_loss"], "mc_err": bz["mc_err"]})
        else:
            out.update({"mc_loss": lin["mc_loss"], "mc_err": lin["mc_err"]})
        return out

    pr = jax.jit(jax.vmap(pair_fn))(pa, pb, jax.random.split(jax.random.fold_in(key, 3), len(pairs)))
    per_model = {k: np.asarray(v) for k, v in {**perf, **hess}.items()}
    per_pair = {k: np.asarray(v) for k, v in pr.items()}
    cell = {k: v.reshape(len(cfg.lrs), cfg.n_seeds).mean(1) for k, v in per_model.items()
            if k not in ("n_iter",)}
    cell.update({k: v.reshape(len(cfg.lrs), -1).mean(1) for k, v in per_pair.items()})
    return per_model, cell


def build_zoo(cfg: ZooConfig, data: Mapping[str, Any], key: jax.Array,
              runner: Callable[[str], Mapping[str, Any]] | None = None, note: Callable[[str], None] | None = None) -> dict:
    """Train and annotate the whole grid.

    Returns ``{"config", "params": {"w<width>": stacked params [M, ...]}, "models": per-model table
    (dict of equal-length columns), "cells": {metric: f[W, L]}, "phases": i[W, L], "components"}``.
    ``runner(phase_name)`` gives `run_population` keyword arguments per width (e.g. ``ctx.runner``).
    ``"train_seconds"``: wall time of each width's vmapped training (compile included).
    """
    if not isinstance(cfg, ZooConfig):
        raise TypeError(f"cfg: expected a ZooConfig, got {type(cfg).__name__}")
    _check_data(data)
    params, rows, cells, train_seconds = {}, [], [], {}
    for w in cfg.widths:
        kw = dict(runner(f"width{w}")) if runner is not None else {}
        t0 = time.perf_counter()
        p, hp, hist = train_group(cfg, int(w), data, jax.random.fold_in(key, 0), kw)
        train_seconds[f"w{w}"] = time.perf_counter() - t0
        pm, cell = _annotate_group(cfg, w, p, data, jax.random.fold_in(key, int(w)))
        params[f"w{w}"] = jax.tree.map(np.asarray, p)
        for i in range(len(hp["lr"])):
            rows.append({"width": int(w), "lr": float(hp["lr"][i]), "seed": int(hp["seed"][i]),
                         "final_epoch_train_loss": float(hist["train_loss"][i, -1]),
                         **{k: float(v[i]) for k, v in pm.items()}})
        cells.append(cell)
        if note is not None:
            note(f"width {w}: train loss by lr {np.round(cell['train_loss'], 3).tolist()}, "
                 f"cka {np.round(cell['cka'], 3).tolist()}, mc_err {np.round(cell['mc_err'], 2).tolist()}")
    grid = {k: np.stack([c[k] for c in cells]) for k in cells[0]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phases = np.asarray(classify_phase(grid, cfg.tau_loss, cfg.tau_mc, cfg.tau_cka))
    models = {k: [r[k] for r in rows] for k in rows[0]}
    return {"config": dataclasses.asdict(cfg), "params": params, "models": models, "cells": grid,
            "phases": phases, "components": phase_components(phases), "train_seconds": train_seconds}


def save_zoo(zoo: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write ``path/params`` (orbax), ``path/models`` (``datasets.Dataset.save_to_disk``) and ``path/zoo.json``."""
    import datasets
    import orbax.checkpoint as ocp

    if not isinstance(zoo, Mapping) or not {"params", "models", "cells", "phases", "config"} <= set(zoo):
        raise ValueError("zoo: expected the dict returned by build_zoo (params, models, cells, phases, config)")
    path = os.path.abspath(os.fspath(path))
    os.makedirs(path, exist_ok=True)
    with ocp.StandardCheckpointer() as ck:
        ck.save(os.path.join(path, "params"), jax.tree.map(np.asarray, dict(zoo["params"])), force=True)
    datasets.Dataset.from_dict(dict(zoo["models"])).save_to_disk(os.path.join(path, "models"))
    meta = {"config": zoo["config"], "cells": {k: np.asarray(v).tolist() for k, v in zoo["cells"].items()},
            "phases": np.asarray(zoo["phases"]).tolist()}
    with open(os.path.join(path, "zoo.json"), "w") as f:
        json.dump(meta, f)


def load_zoo(path: str | os.PathLike) -> dict:
    """Read what `save_zoo` wrote: the zoo dict, with ``models`` a ``datasets.Dataset``."""
    import datasets
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(os.path.join(path, "zoo.json")):
        raise ValueError(f"path: no saved zoo at {path} (zoo.json missing)")
    with open(os.path.join(path, "zoo.json")) as f:
        meta = json.load(f)
    with ocp.StandardCheckpointer() as ck:
        params = ck.restore(os.path.join(path, "params"))
    cfg = dict(meta["config"])
    cfg["widths"], cfg["lrs"] = tuple(cfg["widths"]), tuple(cfg["lrs"])
    phases = np.asarray(meta["phases"], np.int32)
    return {"config": cfg, "params": jax.tree.map(np.asarray, params),
            "models": datasets.load_from_disk(os.path.join(path, "models")),
            "cells": {k: np.asarray(v) for k, v in meta["cells"].items()}, "phases": phases,
            "components": phase_components(phases)}
