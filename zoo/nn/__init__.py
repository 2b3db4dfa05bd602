"""Small shared layers and models (``MLP``; more to come: tiny transformer, GRU, conv)."""

from .mlp import MLP

__all__ = ["MLP"]
