"""`zoo run` killed with SIGKILL after its first checkpoint, then `zoo run --resume`, writes the same
result.json metrics as an uninterrupted run (timings aside)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ZOO = [sys.executable, "-m", "zoo.cli"]


def _metrics(out: Path) -> dict:
    m = json.loads((out / "result.json").read_text())["metrics"]
    return {k: v for k, v in m.items() if "seconds" not in k}


def _committed(ckpt: Path) -> bool:
    return ckpt.exists() and any(p.is_dir() and p.name.isdigit() for phase in ckpt.iterdir() for p in phase.iterdir())


CASES = {
    # a population experiment: 3 seeds vmapped, 60 chunks of 5 rounds, a checkpoint after every chunk
    "fedau": ["--set", "rounds=300", "--set", "eval_every=5", "--set", "last_rounds=20"],
    # a single run (one seed): 50 chunks of 2 rounds
    "fedamd": ["--seeds", "1", "--set", "rounds=100", "--set", "chunk_rounds=2"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_sigkill_then_resume_matches_uninterrupted(name, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    args = ["run", name, "--size", "test", "--no-progress", *CASES[name]]
    ref, run = tmp_path / "ref", tmp_path / "run"
    first = subprocess.run([*ZOO, *args, "--out", str(ref), "--checkpoint-every", "1000"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    proc = subprocess.Popen([*ZOO, *args, "--out", str(run), "--checkpoint-seconds", "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not _committed(run / "checkpoints") and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed: make it longer"
    assert not (run / "result.json").exists() and (run / "run.json").exists()
    done = subprocess.run([*ZOO, *args, "--out", str(run), "--resume"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _metrics(run) == _metrics(ref)
