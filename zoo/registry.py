"""The experiment registry: every paper's experiments, their sizes, claims and runner.

An experiment module in ``zoo.experiments`` (the repository's ``experiments/``) calls
:func:`register` at import time with an :class:`Experiment`. Its ``run(cfg, ctx)`` is built
from the library's functions and returns an :class:`Outcome`; :func:`run_experiment` adds the
config, seeds, timing and environment and writes ``result.json`` (and the run's plots) under
``ctx.out_dir``.

Names: the paper's main experiment is its slug (``ppp``); others are ``slug/variant``.
Sizes: ``test`` (CI, < 20 s), ``quick`` (a laptop, < 3 min), ``paper`` (the paper's scale, a GPU).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import json
import math
import os
import pkgutil
import platform
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SIZES = ("test", "quick", "paper")


class UsageError(ValueError):
    """A bad experiment name, size, ``--set`` key or value; the CLI prints it and exits 2."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunContext:
    """What the runner hands an experiment besides its config."""

    out_dir: Path  # write plots (PNG) and any artefacts here
    seeds: tuple[int, ...]  # the seeds to run (as a vmapped population where possible)
    size: str
    resume: bool = False  # resume from checkpoints under out_dir if present
    progress: bool = False  # show progress bars
    checkpoint_every: int = 1  # chunks between checkpoints of a long run
    checkpoint_seconds: float = 0.0  # and at least this many seconds between two of them (the last is always saved)
    checkpoints: bool = True  # write checkpoints under out_dir/checkpoints (False: none, no resume)
    mesh: Any = None  # a mesh over every process's devices when run with --distributed

    def runner(self, phase: str, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for `zoo.train.run_population` for one phase of the run.

        Each phase (a method, an arm, a training stage) checkpoints under
        ``out_dir/checkpoints/<phase>``; a resumed run restores a finished phase's final
        checkpoint instead of training it again.
        """
        kw = {
            "checkpoint_dir": (self.out_dir / "checkpoints" / phase.replace("/", "_")) if self.checkpoints else None,
            "checkpoint_every": self.checkpoint_every,
            "checkpoint_seconds": self.checkpoint_seconds,
            "resume": self.resume,
            "progress": self.progress,
            "desc": phase,
            "mesh": self.mesh,
        }
        kw.update(overrides)
        return kw

    def cached(self, name: str, compute: Callable[[], Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """A host-side phase (a sweep cell, a chunk of replicates, a fitted base model) computed once.

        ``compute()`` returns a flat dict of arrays. With checkpoints on, it is saved atomically (a
        temporary file renamed on completion) as ``out_dir/checkpoints/<name>.npz``; a resumed run
        loads that file instead of calling ``compute`` again. Returns the arrays as numpy.
        """
        path = (self.out_dir / "checkpoints" / f"{name}.npz") if self.checkpoints else None
        if self.resume and path is not None and path.exists():
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        arrays = {k: np.asarray(v) for k, v in dict(compute()).items()}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        return arrays

    def note(self, message: str) -> None:
        """Print a progress line (phases that are not training: evaluation sweeps, GPTQ over layers)."""
        if self.progress:
            import sys

            print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outcome:
    """What an experiment's ``run`` returns."""

    metrics: Mapping[str, float]  # name -> number (JSON-able floats/ints)
    claim_holds: bool  # the claim predicate's verdict at this size
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # extra JSON-able data
    plots: Sequence[str] = ()  # file names of PNGs written under ctx.out_dir


@dataclasses.dataclass(frozen=True, kw_only=True)
class Experiment:
    name: str  # "ppp" or "ppp/variant"
    paper: str  # the paper's slug (see docs/index.md)
    title: str  # the paper's title
    claim: str  # one sentence: what `claim_holds` checks
    sizes: Mapping[str, Any]  # "test" / "quick" / "paper" -> frozen dataclass config
    run: Callable[[Any, RunContext], Outcome]
    default_seeds: int = 3
    resumable: bool = False  # its long phases checkpoint through ctx.runner, so `--resume` continues them

    def __post_init__(self):
        missing = [s for s in SIZES if s not in self.sizes]
        if missing:
            raise ValueError(f"experiment {self.name!r}: sizes missing {missing}; need all of {list(SIZES)}")
        for s, cfg in self.sizes.items():
            if not dataclasses.is_dataclass(cfg):
                raise ValueError(f"experiment {self.name!r}: size {s!r} config must be a dataclass instance")


_REGISTRY: dict[str, Experiment] = {}
_LOADED = False


def register(experiment: Experiment) -> Experiment:
    """Add an experiment to the registry (idempotent for re-imports of the same name)."""
    _REGISTRY[experiment.name] = experiment
    return experiment


def load_all() -> None:
    """Import every module of ``zoo.experiments`` so that each registers its experiments."""
    global _LOADED
    if _LOADED:
        return
    import zoo.experiments as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"zoo.experiments.{info.name}")
    _LOADED = True


def names() -> list[str]:
    load_all()
    return sorted(_REGISTRY)


def get(name: str) -> Experiment:
    load_all()
    if name not in _REGISTRY:
        raise UsageError(f"unknown experiment {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


# --------------------------------------------------------------------------------------- config


def _coerce(key: str, text: str, typ: Any) -> Any:
    """Parse ``text`` as the field's declared type; raise UsageError with the expected type."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is typing.Union or origin is types.UnionType:
        if text.lower() == "none" and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(key, text, a)
            except UsageError:
                pass
        raise UsageError(f"--set {key}={text}: expected {typ}")
    if origin is typing.Literal:
        for a in args:
            if str(a) == text:
                return a
        raise UsageError(f"--set {key}={text}: expected one of {', '.join(map(str, args))}")
    if origin in (tuple, list) or typ in (tuple, list):
        elem = args[0] if args else str
        items = [t for t in text.strip("()[]").split(",") if t.strip()]
        vals = [_coerce(key, t.strip(), elem) for t in items]
        return tuple(vals) if (origin or typ) is tuple else vals
    if typ is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"--set {key}={text}: expected a bool (true/false)")
    if typ is int:
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"--set {key}={text}: expected an int") from None
    if typ is float:
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"--set {key}={text}: expected a float") from None
    if typ is str:
        return text
    raise UsageError(f"--set {key}={text}: field type {typ} cannot be set from the command line")


def apply_overrides(cfg: Any, sets: Sequence[str]) -> Any:
    """Return ``cfg`` with ``key=value`` overrides applied, each parsed by its field's type.

    Unknown keys and ill-typed values raise :class:`UsageError` listing the valid keys/types;
    the config's own ``__post_init__`` validation then checks ranges.
    """
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for item in sets:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected key=value; valid keys: {', '.join(fields)}")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in fields:
            raise UsageError(f"--set {key}: unknown key; valid keys: {', '.join(fields)}")
        changes[key] = _coerce(key, text.strip(), hints.get(key, str))
    try:
        return dataclasses.replace(cfg, **changes)
    except (ValueError, TypeError) as e:
        raise UsageError(f"--set: {e}") from None


# --------------------------------------------------------------------------------------- running


def environment() -> dict[str, Any]:
    """The software and hardware a result was produced on."""
    import jax

    dev = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "device_count": jax.device_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _jsonable(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist"):  # numpy / jax arrays and scalars
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def default_out(name: str, size: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / name / f"{size}-{stamp}"


def run_experiment(
    name: str,
    *,
    size: str = "quick",
    seeds: int | None = None,
    sets: Sequence[str] = (),
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    checkpoint_every: int = 1,
    checkpoint_seconds: float = 0.0,
    mesh: Any = None,
) -> dict[str, Any]:
    """Run one experiment and write ``out/result.json``; return the result dict.

    The run records what it is in ``out/run.json`` when it starts; ``result.json`` appears only
    when it has finished (so `zoo report` never reads a partial run). With ``resume``, ``out``
    must hold a run of the same experiment, size, config and seeds, which then continues from its
    checkpoints; an experiment that does not checkpoint cannot resume (`UsageError`).
    """
    exp = get(name)
    if size not in SIZES:
        raise UsageError(f"unknown size {size!r}; choose one of: {', '.join(SIZES)}")
    if seeds is not None and seeds < 1:
        raise UsageError(f"--seeds: expected a positive int, got {seeds}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every: expected a positive int, got {checkpoint_every!r}")
    if isinstance(checkpoint_seconds, bool) or not isinstance(checkpoint_seconds, (int, float)) or not (
            0 <= checkpoint_seconds < float("inf")):
        raise UsageError(f"--checkpoint-seconds: expected a finite number >= 0, got {checkpoint_seconds!r}")
    if resume and not exp.resumable:
        raise UsageError(f"{name} cannot resume: it does not checkpoint its runs; run it again without --resume")
    if resume and out is None:
        raise UsageError(f"--resume: no earlier run of {name} at size {size} to resume; give --out DIR")
    cfg = apply_overrides(exp.sizes[size], sets)
    n_seeds = exp.default_seeds if seeds is None else seeds
    out_dir = Path(out) if out is not None else default_out(name, size)
    record = {"experiment": exp.name, "size": size, "config": _jsonable(cfg), "seeds": list(range(n_seeds))}
    run_file = out_dir / "run.json"
    if resume:
        if not run_file.exists():
            raise UsageError(f"--resume: {out_dir} holds no run to resume (no run.json)")
        before = json.loads(run_file.read_text())
        diff = [k for k in record if before.get(k) != record[k]]
        if diff:
            raise UsageError(f"--resume: {out_dir} holds a run with another {', '.join(diff)} "
                             f"({', '.join(f'{k}={before.get(k)!r}' for k in diff)}); resume with the same settings")
    elif (out_dir / "checkpoints").exists() and any((out_dir / "checkpoints").iterdir()):
        raise UsageError(f"--out: {out_dir} holds checkpoints of an earlier run; pass --resume to continue it, "
                         "or choose another --out")
    primary = _is_primary()
    out_dir.mkdir(parents=True, exist_ok=True)
    if primary and not resume:
        run_file.write_text(json.dumps({**record, "started": _dt.datetime.now().isoformat(timespec="seconds")},
                                       indent=2) + "\n")
    ctx = RunContext(out_dir=out_dir, seeds=tuple(range(n_seeds)), size=size, resume=resume, progress=progress,
                     checkpoint_every=checkpoint_every, checkpoint_seconds=checkpoint_seconds, mesh=mesh)
    t0 = time.perf_counter()
    outcome = exp.run(cfg, ctx)
    seconds = time.perf_counter() - t0
    result = {
        "experiment": exp.name,
        "paper": exp.paper,
        "title": exp.title,
        "size": size,
        "claim": exp.claim,
        "claim_holds": bool(outcome.claim_holds),
        "metrics": _jsonable(dict(outcome.metrics)),
        "config": _jsonable(cfg),
        "seeds": list(ctx.seeds),
        "seconds": round(seconds, 3),
        "env": environment(),
        "plots": list(outcome.plots),
        "details": _jsonable(dict(outcome.details)),
        "finished": _dt.datetime.now().isoformat(timespec="seconds"),
        "out_dir": str(out_dir),
    }
    if primary:
        (out_dir / "result.json").write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return result


def _is_primary() -> bool:
    import jax

    return jax.process_index() == 0
