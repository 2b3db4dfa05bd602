"""Rows for zoo.train's public entry points (also the example of the format)."""

import jax
import optax

from zoo.train import fit, make_run, population

from ._row import rows

_key = jax.random.PRNGKey(0)

ROWS = [
    *rows("zoo.train.population.population",
          ("wrong type", lambda: population(lambda k, h: k, "not keys"), "keys"),
          ("no axis", lambda: population(lambda k, h: k, _key), "keys")),
    *rows("zoo.train.population.make_run",
          ("not callable", lambda: make_run(1, lambda p, b, r: 0.0, lambda h: optax.sgd(0.1), lambda s: s, 3),
           "init_fn"),
          ("out of range", lambda: make_run(lambda k: k, lambda p, b, r: 0.0, lambda h: optax.sgd(0.1),
                                            lambda s: s, 0), "num_steps")),
    *rows("zoo.train.loop.fit",
          ("wrong type", lambda: fit("state", lambda p, b, r: 0.0, optax.sgd(0.1), lambda s: s, num_steps=1),
           "state")),
]
