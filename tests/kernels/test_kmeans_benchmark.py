"""Smoke test: benchmarks/kmeans.py runs its CPU interpret-mode sanity path on tiny shapes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "kmeans.py"


def _load():
    spec = importlib.util.spec_from_file_location("kmeans_benchmark", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_cpu_sanity(capsys):
    bench = _load()
    argv = ["--cpu-sanity", "--n", "40", "--d", "3", "--k", "2", "5", "--repeats", "1", "--warmup", "0"]
    rows = bench.main(argv)
    assert [(r["op"], r["k"]) for r in rows] == [
        ("assign", 2),
        ("assign_accumulate", 2),
        ("assign", 5),
        ("assign_accumulate", 5),
    ]
    assert all(r["labels_match"] == 1.0 and r["kernel_ms"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "timings mean nothing" in out and "ref/kern" in out


def test_device_peaks_table():
    from zoo.kernels._common import device_peaks

    h100 = device_peaks("NVIDIA H100 80GB HBM3")
    assert (h100["bw"], h100["tf32"], h100["bf16"]) == (3.35e12, 495e12, 989e12)
    assert device_peaks("NVIDIA H200")["bw"] == 4.8e12
    assert device_peaks("NVIDIA H100 PCIe")["bw"] == 2.0e12
    cpu = device_peaks("cpu")
    assert "unknown peak" in cpu["label"] and cpu["bw"] is None and cpu["tf32"] is None
