"""Pallas kernels for paperzoo's hot loops, installed as ``zoo.kernels``.

Convention (see DESIGN.md): each kernel ``op(x, ..., *, interpret=None)`` sits beside a
pure-jnp ``op_reference`` with the same signature and semantics. ``interpret=None`` means
"compile on GPU/TPU, run the Pallas interpreter on CPU", so the same tests run in CI.
Kernels are written in the portable Pallas subset (grid + BlockSpec, jnp inside the body).
TPU lowering is untested.
"""

from ._common import default_interpret

__all__ = ["default_interpret"]
