"""Lazy exports (PEP 562) for the package and its sub-packages: a table of public names and
the modules that define them, resolved on first use and cached in the package's namespace."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict):
    """``(__getattr__, __dir__, __all__)`` for ``package`` from ``exports``: public name ->
    module (relative to the package, e.g. ``".engine"``), or ``(module, attribute)`` when
    the export has another name there."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name):
        where = exports.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = where if isinstance(where, tuple) else (where, name)
        value = getattr(importlib.import_module(module, package), attribute)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__, list(exports)
