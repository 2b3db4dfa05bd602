"""paperzoo: the methods of 32 machine-learning papers as pure JAX functions.

Import a paper's module directly, e.g. ``from zoo.representation import ppp``.
``import zoo`` is light: it imports neither ``datasets`` nor matplotlib.
"""

__version__ = "0.1.0"
