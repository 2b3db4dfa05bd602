"""Geometric deep learning: equivariant networks (PONITA) and baselines (EGNN)."""
