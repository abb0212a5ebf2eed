"""open_clip_train's log, read once: the full text goes to its `out.log`, the console gets a bar.

open_clip_train's `setup_logging` adds a second stream handler to the root logger, so every line it
logs would be printed again beside the harness's own handler (and a third time when something had
called `logging.basicConfig`). `train_logging(...)` swaps that function, for one in-process run, for
one that keeps the file handler (same format as open_clip's) and replaces the console output with a
progress bar over samples seen, fed by the "Train Epoch" lines; warnings and errors still reach the
console through the harness's handler.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness import console

# open_clip_train/train.py: "Train Epoch: 0 [ 1280/6400 (20%)] Data (t): ... Contrastive_loss: 7.61 (7.62)"
_TRAIN_LINE = re.compile(r"Train Epoch: (\d+) \[\s*(\d+)/(\d+) \(\s*\d+%\)\].*?(\w+_loss): (\S+) \((\S+)\)")
# open_clip's factory warns whenever it builds a model without pretrained weights; training from
# scratch is the recipe, so on the console that warning is false (out.log keeps it).
RANDOM_INIT = r"Model initialized randomly"
_OPEN_CLIP_FORMAT = "%(asctime)s | %(levelname)s | %(message)s"  # open_clip_train/logger.py


@dataclass
class TrainSummary:
    samples: int = 0              # samples seen when the last progress line was logged
    total: int = 0
    loss: float | None = None     # last logged running-average loss
    loss_name: str = ""


class TrainProgress(logging.Handler):
    """A tqdm bar driven by open_clip_train's progress lines (absolute, so a resumed run starts part way)."""

    def __init__(self, total_samples: int, epochs: int = 1, desc: str = "train") -> None:
        super().__init__(logging.INFO)
        self.epochs = max(epochs, 1)
        self.summary = TrainSummary(total=total_samples)
        self.bar = console.progress(total=total_samples, desc=desc, unit="sample")

    def emit(self, record: logging.LogRecord) -> None:
        match = _TRAIN_LINE.search(record.getMessage()) if record.levelno == logging.INFO else None
        if match is None:
            return
        epoch, seen, per_epoch = int(match.group(1)), int(match.group(2)), int(match.group(3))
        if per_epoch * self.epochs != self.summary.total:  # open_clip rounds an epoch up to whole batches
            self.summary.total = per_epoch * self.epochs
            self.bar.total = self.summary.total
        position = min(epoch * per_epoch + seen, self.summary.total)
        if position > self.bar.n:
            self.bar.update(position - self.bar.n)
        with contextlib.suppress(ValueError):  # "nan" parses; anything else keeps the last value
            self.summary.loss = float(match.group(6))
        self.summary.samples, self.summary.loss_name = position, match.group(4)
        if self.summary.loss is not None:
            self.bar.set_postfix_str(f"loss {self.summary.loss:.4f}", refresh=False)

    def close(self) -> None:
        self.bar.close()
        super().close()


@contextlib.contextmanager
def train_logging(total_samples: int, epochs: int = 1, oc_main: Any = None) -> Iterator[TrainSummary]:
    """Inside the block, open_clip_train.main.main logs to its file in full and to the console as a bar.

    `oc_main` is the module whose `setup_logging` is swapped (open_clip_train.main unless a test
    passes a stand-in).
    """
    if oc_main is None:
        from open_clip_train import main as oc_main
    progress: TrainProgress | None = None

    def setup_logging(log_file: str | None, level: int, include_host: bool = False) -> None:
        nonlocal progress
        root = logging.getLogger()
        root.setLevel(level)
        formatter = logging.Formatter(_OPEN_CLIP_FORMAT, datefmt="%Y-%m-%d,%H:%M:%S")
        if not log_file:  # a torchrun rank other than 0: it logs no progress; keep its warnings visible
            if not root.handlers:
                warn = logging.StreamHandler()
                warn.setLevel(logging.WARNING)
                warn.setFormatter(formatter)
                root.addHandler(warn)
            return
        file_handler = logging.FileHandler(filename=log_file)
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
        progress = TrainProgress(total_samples, epochs)
        root.addHandler(progress)

    original = oc_main.setup_logging
    oc_main.setup_logging = setup_logging
    summary = TrainSummary(total=total_samples)
    try:
        with console.hide(RANDOM_INIT):
            yield summary
    finally:
        oc_main.setup_logging = original
        if progress is not None:
            progress.bar.close()
            summary.__dict__.update(progress.summary.__dict__)
