"""Built-in filter plugins, imported as ``harness.baselines`` (harness/layout.py): one module per
method, or one folder per method whose code spans several files (``hype/``, ``tmars/``, ``ws/``: the
filters in ``plugin.py`` beside the method's model, geometry or label model). Every module here (and
every folder's ``plugin.py``) is imported by ``harness.plugins.load_plugins()`` and registers its
filters with ``@register``.

Dropping a new ``baselines/<method>.py`` is all it takes to add a built-in filter.
"""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> dict[str, str]:
    """Import every module of this package; returns {module: error} for those that failed.

    A broken module must not hide the others, so import errors are collected, not raised; the
    registry names them when a filter it cannot find is asked for.
    """
    failed: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        name = f"{__name__}.{info.name}" + (".plugin" if info.ispkg else "")
        try:
            importlib.import_module(name)
        except Exception as exc:  # report, keep loading the rest
            failed[name] = f"{type(exc).__name__}: {exc}"
    return failed
