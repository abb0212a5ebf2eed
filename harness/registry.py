"""One registry class for every "name -> thing" table of the harness.

Four tables use it: filters (``harness.plugins``), T-MARS text detectors
(``harness.baselines.tmars.detectors``), evaluation task kinds (``harness.evaluation.suites``, the
runners register in ``harness.evaluation.runners``) and world model builders
(``harness.world.reference_models``). Each keeps its own public functions; the registry gives them
the same behaviour: a name taken by another object is refused, and an unknown name fails with an
error that names it, the closest known names and all the known ones.

A registry reads like a mapping (``name in r``, ``r[name]``, iteration in registration order), so
code and tests that treated the old dicts as dicts keep working; ``r[name] = obj`` replaces without
the "already registered" check (a test's monkeypatch, a worker told its builder by its parent).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, ItemsView, Iterator, ValuesView
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
_MISSING: Any = object()


class Registry(Generic[T]):
    """Named objects of one kind.

    kind:  what a name denotes, for messages ("filter", "text detector", ...).
    error: the exception class raised for an unknown or taken name (each registry keeps the class
           its callers already catch: PluginError, ValueError, SuiteError).
    hint:  called when a lookup fails; its text is appended to the message (e.g. which plugin
           modules failed to import, so the reason a name is missing is in the same line).
    load:  called once, before the first lookup, to import the modules that register the entries
           (the task kinds' runners import torch, so they load only when a suite is read).
    """

    def __init__(self, kind: str, error: type[Exception] = KeyError, *, hint: Callable[[], str] | None = None,
                 load: Callable[[], Any] | None = None) -> None:
        self.kind = kind
        self.error = error
        self._hint = hint
        self._load = load
        self._entries: dict[str, T] = {}

    def _loaded(self) -> dict[str, T]:
        if self._load is not None:
            load, self._load = self._load, None  # cleared first: a lookup made while loading must not recurse
            try:
                load()
            except BaseException:
                self._load = load  # failed: the next lookup tries again (and raises the same error)
                raise
        return self._entries

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T, *, replace: bool = False) -> T: ...

    def register(self, name: str, obj: Any = _MISSING, *, replace: bool = False) -> Any:
        """Add ``obj`` under ``name`` (or, without ``obj``, return a decorator that does). The same
        object again is a no-op; another object under a taken name is refused unless ``replace``."""
        if obj is _MISSING:
            return lambda target: self.register(name, target, replace=replace)
        if not isinstance(name, str) or not name:
            raise self.error(f"{self.kind} name must be a non-empty string, got {name!r}")
        old = self._entries.get(name, _MISSING)
        if old is not _MISSING and old is not obj and not replace:
            raise self.error(f"{self.kind} {name!r} is already registered ({old!r})")
        self._entries[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Remove ``name`` if present (tests that register a probe clean up with this)."""
        self._entries.pop(name, None)

    def get(self, name: str, default: Any = _MISSING) -> T:
        """The object registered as ``name``; an unknown name raises ``error`` (or returns ``default``
        when one is given, as ``dict.get`` would)."""
        entries = self._loaded()
        if name in entries:
            return entries[name]
        if default is not _MISSING:
            return default
        raise self.error(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        """"unknown <kind> 'x'; did you mean y? (known: a, b)" plus the hint, if any."""
        known = sorted(self._loaded())
        msg = f"unknown {self.kind} {name!r}"
        near = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        if near:
            msg += f"; did you mean {', '.join(near)}?"
        msg += f" (known: {', '.join(known) or 'none'})"
        if self._hint is not None:
            msg += self._hint()
        return msg

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._loaded())

    def items(self) -> ItemsView[str, T]:
        return self._loaded().items()

    def values(self) -> ValuesView[T]:
        return self._loaded().values()

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        """Names in registration order (the world's default model order relies on it)."""
        return iter(list(self._loaded()))

    def __len__(self) -> int:
        return len(self._loaded())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __setitem__(self, name: str, obj: T) -> None:
        self.register(name, obj, replace=True)

    def __delitem__(self, name: str) -> None:
        if name not in self._entries:
            raise KeyError(name)
        del self._entries[name]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
