"""Federated learning under partial participation: the shared simulator (core) and one module per paper."""
