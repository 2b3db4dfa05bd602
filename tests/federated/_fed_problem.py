"""A tiny federated problem shared by the federated tests: softmax regression on a digits subset."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from zoo.data import load_digits
from zoo.federated import core


def loss_fn(params, batch):
    """Softmax cross-entropy of a linear model: params {'w': f32[64, 10], 'b': f32[10]}."""
    logits = batch["x"] @ params["w"] + params["b"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], axis=1))


def zero_params():
    return {"w": jnp.zeros((64, 10), jnp.float32), "b": jnp.zeros(10, jnp.float32)}


def small_data(num_clients: int = 8, n_train: int = 400, alpha: float = 0.5, seed: int = 0):
    """(FederatedData, probs f64[N], label_hist) on the first n_train digits (next 100 as test)."""
    d = load_digits()
    x, y = d["x"], d["y"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index, count, hist = core.dirichlet_client_major(y[:n_train], num_clients, alpha, seed)
    probs = core.label_correlated_probs(hist, p_mean=0.3, p_min=0.1, seed=seed)
    probs = np.where(count > 0, probs, 0.0)
    data = core.federated_data(x[:n_train], y[:n_train], index, count, x[n_train : n_train + 100],
                               y[n_train : n_train + 100], num_classes=10)  # fmt: skip
    return data, probs, hist


def accuracy(params, data):
    logits = data.x_test @ params["w"] + params["b"]
    return jnp.mean(jnp.argmax(logits, -1) == data.y_test)
