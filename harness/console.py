"""What a person sees on the terminal: one log format, progress bars, rounded numbers.

`setup(verbosity)` installs a single handler on the root logger (so no library can install a second
one, e.g. through `logging.basicConfig`, which `logging.warning()` calls on a root without handlers):

- quiet (-1): warnings and errors only, no progress bars;
- normal (0): the harness's INFO lines, other libraries' warnings, progress bars;
- verbose (1): the harness's DEBUG lines and other libraries' INFO lines too.

The handler writes through `tqdm.write`, so log lines never tear a progress bar. `progress(...)` is
the one way the harness makes a bar (rate and time left, off in quiet mode). `hide(pattern)`
silences a known-false message on the console for the duration of a block (files keep it).
Numbers in human output are rounded to 4 places (`fmt_metric`); files keep full precision.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

QUIET, NORMAL, VERBOSE = -1, 0, 1
VERBOSITY_ENV = "HARNESS_VERBOSITY"  # a worker process's console follows its parent's -q/-v
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATEFMT = "%H:%M:%S"
DIGITS = 4  # metrics in human output; files keep full precision

_state: dict[str, Any] = {"verbosity": NORMAL, "handler": None}


class _ConsoleFilter(logging.Filter):
    """Per-record gate: the harness's own loggers at one level, every other library at another."""

    def __init__(self, harness_level: int, other_level: int) -> None:
        super().__init__()
        self.harness_level, self.other_level = harness_level, other_level
        self.hidden: list[re.Pattern[str]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name == "harness" or record.name.startswith("harness.")
        if record.levelno < (self.harness_level if ours else self.other_level):
            return False
        if self.hidden:
            message = record.getMessage()
            if any(p.search(message) for p in self.hidden):
                return False
        return True


class ConsoleHandler(logging.StreamHandler):
    """A stream handler that prints around live tqdm bars instead of through them. Without a stream of
    its own it writes to whatever sys.stderr is at the time of each record (not the one at setup, which
    a caller such as a test's output capture may have closed since)."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._own_stream = stream  # StreamHandler.__init__ stored sys.stderr through the setter: undo

    @property  # type: ignore[override]  # StreamHandler's plain attribute, read by flush() and setStream()
    def stream(self) -> Any:
        return self._own_stream if self._own_stream is not None else sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        self._own_stream = value

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


def setup(verbosity: int = NORMAL, stream: Any = None) -> logging.Handler:
    """Make the root logger print one format to stderr (replacing handlers an earlier call added)."""
    root = logging.getLogger()
    old = _state.get("handler")
    if old is not None and old in root.handlers:
        root.removeHandler(old)
    handler = ConsoleHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    harness_level = {QUIET: logging.WARNING, NORMAL: logging.INFO}.get(verbosity, logging.DEBUG)
    other_level = logging.INFO if verbosity >= VERBOSE else logging.WARNING
    handler.addFilter(_ConsoleFilter(harness_level, other_level))
    root.addHandler(handler)
    root.setLevel(min(harness_level, other_level))
    logging.getLogger("harness").setLevel(harness_level)
    _state.update(verbosity=verbosity, handler=handler)
    logging.captureWarnings(True)  # warnings.warn -> the "py.warnings" logger, same format
    return handler


def verbosity() -> int:
    return int(_state["verbosity"])


def progress_enabled() -> bool:
    return verbosity() > QUIET


def progress(iterable: Iterable[Any] | None = None, *, total: float | None = None, desc: str = "",
             unit: str = "it", enabled: bool = True, **kwargs: Any):
    """A tqdm bar with rate and time left, on stderr; a silent one in quiet mode or when not `enabled`."""
    from tqdm.auto import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("mininterval", 0.5)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=not (enabled and progress_enabled()), **kwargs)


@contextlib.contextmanager
def hide(*patterns: str) -> Iterator[None]:
    """Keep messages matching any of `patterns` off the console inside the block (files still get them)."""
    handler = _state.get("handler")
    gates = [f for f in (handler.filters if handler is not None else []) if isinstance(f, _ConsoleFilter)]
    compiled = [re.compile(p) for p in patterns]
    for gate in gates:
        gate.hidden.extend(compiled)
    try:
        yield
    finally:
        for gate in gates:
            for p in compiled:
                gate.hidden.remove(p)


def fmt_metric(value: Any, digits: int = DIGITS) -> str:
    """A number as a person reads it: 4 decimal places (0.9224999999999999 -> 0.9225); others as given."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number:  # NaN
        return "nan"
    return f"{number:.{digits}f}"
