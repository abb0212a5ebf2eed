"""Where the folders that ship beside the code are: the built-in filters and the evaluation suites.

The project keeps them at the repository's top level (``baselines/``, ``tasks/``); a wheel installs
them inside this package as ``harness/baselines`` and ``harness/tasks`` (pyproject's ``package-dir``).
In a source checkout :func:`map_builtin_filters` gives the top-level folder the same import name,
``harness.baselines``, so no top-level ``baselines`` package exists to collide with DataComp's own.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_folder(name: str) -> Path:
    """``harness/<name>`` in an installed wheel, ``<checkout>/<name>`` in a source checkout."""
    inside = _PACKAGE / name
    return inside if inside.is_dir() else _PACKAGE.parent / name


def map_builtin_filters() -> None:
    """Make ``harness.baselines`` import the checkout's ``baselines/`` folder (a no-op in a wheel)."""
    name = "harness.baselines"
    if name in sys.modules or (_PACKAGE / "baselines").is_dir():
        return
    folder = shipped_folder("baselines")
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise ImportError(f"the built-in filters are missing: {folder / '__init__.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    sys.modules["harness"].baselines = module
