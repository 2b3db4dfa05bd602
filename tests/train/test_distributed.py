"""JAX's multi-process runtime: two CPU processes on localhost train a population sharded over a
2-process mesh, and a single run whose batches are split over both (data parallel), and match one
process; a checkpoint written by two processes resumes in one.

"Match" is to float32 rounding, not bit for bit: each process compiles the vmapped program for its 2
members rather than 4, and XLA may order a batched matmul's sums differently for another batch size.
(Resume on the same process count is bit-identical: tests/train/test_runner.py.)"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = str(Path(__file__).with_name("_dist_worker.py"))
FIT_WORKER = str(Path(__file__).with_name("_dist_fit_worker.py"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run(out, ckpt, n, *extra, expect=0, worker=WORKER):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    port = str(_port())
    procs = [subprocess.Popen([sys.executable, worker, str(out), str(ckpt), str(n), str(i), port, *map(str, extra)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(n)]
    logs = [p.communicate(timeout=240)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == expect, log[-3000:]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    d = tmp_path_factory.mktemp("single")
    _run(d / "out.npz", "-", 1)
    return np.load(d / "out.npz")


def test_two_processes_match_one(tmp_path, single):
    _run(tmp_path / "out.npz", tmp_path / "ckpt", 2)
    two = np.load(tmp_path / "out.npz")
    for k in ("loss", "w"):
        np.testing.assert_allclose(two[k], single[k], rtol=1e-5, atol=1e-6)
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["4", "5"]  # written once, by both processes together


def test_checkpoint_of_two_processes_resumes_in_one(tmp_path, single):
    _run(tmp_path / "unused.npz", tmp_path / "ckpt", 2, 2, expect=3)  # both stop after chunk 2
    assert not (tmp_path / "unused.npz").exists()
    _run(tmp_path / "out.npz", tmp_path / "ckpt", 1)
    one = np.load(tmp_path / "out.npz")
    for k in ("loss", "w"):
        np.testing.assert_allclose(one[k], single[k], rtol=1e-5, atol=1e-6)


def test_data_parallel_fit_over_two_processes_matches_one_and_resumes_in_one(tmp_path):
    """fit(mesh=...) over a 2-process mesh: each process holds half of every batch (the worker
    checks its shards); the all-reduced run matches one process, and its step-10 checkpoint
    (written once, by both processes) resumes in one process to the same end."""
    _run(tmp_path / "one.npz", "-", 1, 20, worker=FIT_WORKER)
    _run(tmp_path / "two.npz", tmp_path / "ckpt", 2, 10, worker=FIT_WORKER)  # steps 0-9, checkpoint at 10
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["10"]
    _run(tmp_path / "resumed.npz", tmp_path / "ckpt", 1, 20, worker=FIT_WORKER)
    one, two, resumed = (np.load(tmp_path / f) for f in ("one.npz", "two.npz", "resumed.npz"))
    assert (int(two["step"]), int(resumed["step"])) == (10, 20)
    np.testing.assert_allclose(two["loss"], one["loss"][:10], rtol=1e-5, atol=1e-6)
    for k in ("loss", "w"):
        np.testing.assert_allclose(resumed[k], one[k], rtol=1e-5, atol=1e-6)
