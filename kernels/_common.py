"""Helpers shared by every kernel module."""

from __future__ import annotations

import jax


def default_interpret(interpret: bool | None) -> bool:
    """Resolve the ``interpret`` flag: ``None`` -> interpret unless a GPU/TPU backend is active."""
    if interpret is not None:
        return bool(interpret)
    return jax.default_backend() not in ("gpu", "cuda", "rocm", "tpu")


def cdiv(a: int, b: int) -> int:
    """Ceiling division for static (Python int) sizes."""
    return -(-a // b)
