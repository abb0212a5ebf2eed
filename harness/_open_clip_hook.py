"""`import harness` makes the harness's model configs (harness/model_configs/*.json) known to open_clip.

open_clip has no plugin entry point for model configs, and importing it (and torch) costs seconds, so
`import harness` must not import it. Instead: if open_clip is already imported, register now;
otherwise put a one-shot finder on sys.meta_path that registers right after open_clip's own module
code has run, whenever something imports it. After that, `open_clip.create_model("tiny-clip")`
works in any program that imported harness first.
"""

from __future__ import annotations

import importlib.abc
import sys
from types import ModuleType

TARGET = "open_clip"


def _register() -> None:
    from harness.models import register_configs

    register_configs()


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: asks the other finders for `open_clip` and wraps the loader they return,
    so the configs get registered once its module code has run (then this finder removes itself)."""

    def find_spec(self, fullname: str, path=None, target: ModuleType | None = None):
        if fullname != TARGET:
            return None
        spec = None
        for finder in [f for f in sys.meta_path if f is not self]:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        real = spec.loader

        class _Loader(importlib.abc.Loader):
            def create_module(self, s):
                return real.create_module(s)

            def exec_module(self, module: ModuleType) -> None:
                real.exec_module(module)
                uninstall()
                _register()

        spec.loader = _Loader()
        return spec


_finder = _RegisterAfterImport()


def install() -> None:
    """Register now if open_clip is loaded, else as soon as it is imported."""
    if TARGET in sys.modules:
        _register()
    elif _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
