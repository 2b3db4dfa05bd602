"""What counts as the library's public API, for the bad-input table and the API-reference check."""

from __future__ import annotations

import importlib
import inspect
import pkgutil


def modules_under(package: str, *, skip: tuple[str, ...] = ()) -> list[str]:
    """``package`` and every module below it, private ones (a ``_`` part) and ``skip`` prefixes excluded."""
    pkg = importlib.import_module(package)
    mods = [pkg.__name__]
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
        if not any(part.startswith("_") for part in info.name.split(".")) and not info.name.startswith(skip):
            mods.append(info.name)
    return mods


def public_functions(modules: list[str]) -> list[str]:
    """Functions a module defines and exports: its ``__all__``, else its non-underscore functions (no classes)."""
    names = []
    for modname in modules:
        mod = importlib.import_module(modname)
        exported = getattr(mod, "__all__", None)
        for name, obj in vars(mod).items():
            if (name.startswith("_") or inspect.isclass(obj) or not callable(obj)
                    or getattr(obj, "__module__", None) != modname):
                continue
            if exported is None or name in exported:
                names.append(f"{modname}.{name}")
    return sorted(names)
