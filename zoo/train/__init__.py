"""The shared pytree trainer.

- `TrainState` — step, params, opt_state, rng, extras (state.py)
- `train_step`, `make_step`, `scan_steps`, `make_scan_steps` — one step / k steps per dispatch (step.py)
- `fit`, `NonFiniteError` — the loop: evals, history, progress, checkpoints, non-finite guard (loop.py)
- `Checkpoints` — orbax save/restore of a state and its history (checkpoint.py)
- `make_run`, `population` — vmap whole runs over seeds / hyperparameters (population.py)
- `run_population`, `Loop` — chunked runs of a population (or one run): progress, checkpoints,
  bit-identical resume, the non-finite guard naming the member (runner.py); `fit` drives the same `Loop`
- `distributed` — JAX's multi-process runtime: initialise, the global mesh of members (distributed.py)
- `make_mesh`, `replicate`, `shard_batch`, `data_parallel_step` — data parallelism (sharding.py)
"""

from . import distributed
from .checkpoint import Checkpoints
from .loop import fit
from .population import make_run, population
from .runner import Loop, NonFiniteError, run_population, run_population_once
from .sharding import batch_sharding, data_parallel_step, make_mesh, replicate, replicated, shard_batch
from .state import TrainState
from .step import make_scan_steps, make_step, scan_steps, train_step

__all__ = [
    "Checkpoints",
    "Loop",
    "NonFiniteError",
    "TrainState",
    "batch_sharding",
    "data_parallel_step",
    "distributed",
    "fit",
    "make_mesh",
    "make_run",
    "make_scan_steps",
    "make_step",
    "population",
    "replicate",
    "replicated",
    "run_population",
    "run_population_once",
    "scan_steps",
    "shard_batch",
    "train_step",
]
