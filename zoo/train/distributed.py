"""Beyond one machine: JAX's own multi-process runtime (``jax.distributed``), no launcher of ours.

Start the same command once per process with the usual settings — a coordinator address, the
process count and this process's id — as arguments, or in the environment JAX reads itself
(``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``; cluster environments
such as SLURM or Cloud TPU are detected by JAX). After `initialize`, ``jax.devices()`` lists the
devices of every process, and `member_mesh` is a 1-D mesh over all of them: `run_population` with
``mesh=member_mesh()`` shards a population's members over the processes, gathers their outputs
to every process and writes each checkpoint once, by all processes together (orbax's multi-process
saving). A checkpoint restores on any process count whose devices divide the members evenly.

On CPU the processes exchange data through Gloo collectives, so a 2-process run on localhost is
a faithful small model of a multi-host GPU run (``tests/train/test_distributed.py``).
"""

from __future__ import annotations

import numpy as np


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """``jax.distributed.initialize`` (arguments, or JAX's environment variables / cluster detection).

    Call it first, before any other JAX call. On the CPU backend it selects Gloo collectives so
    that processes can exchange arrays.
    """
    import jax

    if num_processes is not None and (isinstance(num_processes, bool) or int(num_processes) < 1):
        raise ValueError(f"num_processes: expected a positive int, got {num_processes!r}")
    if process_id is not None and num_processes is not None and not 0 <= int(process_id) < int(num_processes):
        raise ValueError(f"process_id: expected 0 <= process_id < num_processes={num_processes}, got {process_id!r}")
    try:  # CPU: cross-process collectives need an implementation (GPU/TPU bring their own)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError, KeyError):  # pragma: no cover - older/newer jax without the flag
        pass
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)


def member_mesh(axis: str = "members"):
    """A 1-D ``Mesh`` over every device of every process, with axis name ``axis``."""
    import jax
    from jax.sharding import Mesh

    if not isinstance(axis, str) or not axis:
        raise ValueError(f"axis: expected a non-empty str, got {axis!r}")
    return Mesh(np.asarray(jax.devices()), (axis,))


def is_primary() -> bool:
    """True on the process that writes files other than checkpoints (process 0)."""
    import jax

    return jax.process_index() == 0
