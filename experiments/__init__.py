"""Experiments, one module per paper, installed as ``zoo.experiments``."""
