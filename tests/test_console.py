"""What a person reads: one log format, rounding to 4 places, quiet/verbose gates, open_clip_train's
log summarised into a bar (no second copy of its lines on the console, the file keeps them all)."""

from __future__ import annotations

import io
import logging
import re
import types

import pytest

from harness import console
from harness.training.console import RANDOM_INIT, TrainProgress, train_logging

LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: .+$")


@pytest.fixture
def stream():
    """A buffer for the console handler; the root logger and console state restored afterwards."""
    root, harness_log = logging.getLogger(), logging.getLogger("harness")
    saved = (list(root.handlers), root.level, harness_log.level, dict(console._state))
    yield io.StringIO()
    for h in list(root.handlers):
        if h not in saved[0]:
            root.removeHandler(h)
    root.setLevel(saved[1])
    harness_log.setLevel(saved[2])
    console._state.update(saved[3])
    logging.captureWarnings(False)


@pytest.mark.parametrize(("value", "text"), [
    (0.9224999999999999, "0.9225"),  # the unrounded value the issue quotes
    (0.92244999, "0.9224"),
    (1.0, "1.0000"),
    (0.1 + 0.2, "0.3000"),
    (float("nan"), "nan"),
    (3, "3"),
    (None, "None"),
    (True, "True"),
    ("n/a", "n/a"),
])
def test_fmt_metric_rounds_to_four_places(value, text) -> None:
    assert console.fmt_metric(value) == text


def test_one_format_for_the_harness_and_other_libraries(stream) -> None:
    console.setup(console.NORMAL, stream=stream)
    logging.getLogger("harness.run").info("select: running")
    logging.getLogger("open_clip").warning("something odd")
    logging.warning("root warning")  # what open_clip's factory does; must not install basicConfig
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert all(LINE.match(line) for line in lines), lines
    assert lines[0].endswith("harness.run: select: running")
    assert len(logging.getLogger().handlers) == len(set(logging.getLogger().handlers))


@pytest.mark.parametrize(("level", "expected"), [
    (console.QUIET, ["harness warning", "lib warning"]),
    (console.NORMAL, ["harness info", "harness warning", "lib warning"]),
    (console.VERBOSE, ["harness debug", "harness info", "harness warning", "lib info", "lib warning"]),
])
def test_quiet_normal_verbose_gates(stream, level, expected) -> None:
    console.setup(level, stream=stream)
    ours, lib = logging.getLogger("harness.x"), logging.getLogger("somelib")
    lib.setLevel(logging.NOTSET)
    ours.debug("harness debug")
    ours.info("harness info")
    ours.warning("harness warning")
    lib.debug("lib debug")
    lib.info("lib info")
    lib.warning("lib warning")
    shown = [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()]
    assert shown == expected
    assert console.progress_enabled() is (level != console.QUIET)
    assert console.progress(range(3)).disable is (level == console.QUIET)


def test_setup_twice_keeps_one_console_handler(stream) -> None:
    console.setup(console.NORMAL, stream=stream)
    console.setup(console.NORMAL, stream=stream)
    logging.getLogger("harness").info("once")
    assert stream.getvalue().count("once") == 1


def test_without_a_stream_of_its_own_the_console_writes_to_the_current_stderr(monkeypatch) -> None:
    """The stderr at setup may be closed later (a test's capture, a redirected stream): records go to
    the stderr of the moment, and none is lost to 'I/O operation on closed file'."""
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    console.setup(console.NORMAL)
    first.close()
    monkeypatch.setattr("sys.stderr", second)
    logging.getLogger("harness.world").info("after the first stream closed")
    assert "INFO    harness.world: after the first stream closed" in second.getvalue()


def test_hide_silences_a_message_on_the_console_only_inside_the_block(stream) -> None:
    console.setup(console.NORMAL, stream=stream)
    with console.hide(RANDOM_INIT):
        logging.warning("No pretrained weights loaded for model 'tiny-clip'. Model initialized randomly.")
        logging.warning("kept")
    logging.warning("Model initialized randomly.")  # outside the block it is shown again
    shown = stream.getvalue()
    assert shown.count("initialized randomly") == 1 and "kept" in shown


# open_clip_train/train.py's progress line, as it logs it at the tiny recipe
TRAIN_LINE = ("Train Epoch: {e} [{n:>4}/6400 ({p:.0f}%)] Data (t): 0.010 Batch (t): 0.250, 512.000/s, "
              "512.000/s/gpu LR: 0.002000 Logit Scale: 14.286 Contrastive_loss: {loss:.5g} ({avg:.5g})")


def _record(msg: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("root", level, __file__, 1, msg, None, None)


def test_train_progress_follows_samples_seen_across_epochs() -> None:
    prog = TrainProgress(total_samples=4 * 6400, epochs=4)
    prog.emit(_record("Model:"))  # anything but a progress line leaves the bar alone
    assert prog.bar.n == 0
    prog.emit(_record(TRAIN_LINE.format(e=0, n=1280, p=20, loss=4.85, avg=4.9)))
    assert prog.bar.n == 1280
    prog.emit(_record(TRAIN_LINE.format(e=2, n=6400, p=100, loss=3.25, avg=3.5)))
    assert prog.bar.n == 2 * 6400 + 6400
    assert prog.summary.loss == pytest.approx(3.5)
    assert prog.summary.loss_name == "Contrastive_loss"
    prog.close()


def test_train_progress_total_follows_open_clip_rounding_an_epoch_up_to_whole_batches() -> None:
    """256 samples over 4 checkpoints at batch 128: open_clip runs one 128-sample batch per epoch."""
    prog = TrainProgress(total_samples=256, epochs=4)
    prog.emit(_record(TRAIN_LINE.format(e=0, n=128, p=100, loss=5.0, avg=5.0).replace("/6400", "/128")))
    assert prog.bar.total == 512 and prog.bar.n == 128
    prog.emit(_record(TRAIN_LINE.format(e=3, n=128, p=100, loss=4.0, avg=4.0).replace("/6400", "/128")))
    assert prog.bar.n == prog.bar.total == prog.summary.samples == 512
    prog.close()


def test_train_logging_keeps_the_full_log_in_the_file_and_only_a_bar_on_the_console(stream, tmp_path) -> None:
    """Stands in for open_clip_train.main: calls the (patched) setup_logging, then logs as it does."""
    console.setup(console.NORMAL, stream=stream)
    log_file = tmp_path / "out.log"

    def fake_main() -> None:
        module.setup_logging(str(log_file), logging.INFO)
        logging.info("Model:")
        logging.info("  lr: 0.002")
        logging.warning("No pretrained weights loaded for model 'tiny-clip'. Model initialized randomly.")
        logging.info(TRAIN_LINE.format(e=0, n=6400, p=100, loss=4.5, avg=4.6))

    def original(*_a, **_k) -> None:
        raise AssertionError("open_clip_train's own setup_logging must not run")

    module = types.SimpleNamespace(setup_logging=original)
    root_before = list(logging.getLogger().handlers)
    with train_logging(6400, 1, module) as summary:
        fake_main()
    assert module.setup_logging is original  # restored
    for h in list(logging.getLogger().handlers):  # what driver._ProcessState.restore does
        if h not in root_before:
            logging.getLogger().removeHandler(h)
            h.close()
    text = log_file.read_text()
    assert "Model:" in text and "lr: 0.002" in text and "initialized randomly" in text and "Train Epoch" in text
    shown = stream.getvalue()
    assert "Model:" not in shown and "Train Epoch" not in shown and "initialized randomly" not in shown
    assert "INFO:root" not in shown
    assert summary.samples == 6400 and summary.loss == pytest.approx(4.6)



def test_train_logging_on_a_rank_without_a_log_file_shows_no_bar(stream) -> None:
    """torchrun ranks other than 0 get log_file=None from open_clip_train: no bar, warnings still shown."""
    module = types.SimpleNamespace(setup_logging=None)
    root = logging.getLogger()
    saved = list(root.handlers)
    for h in saved:  # a bare worker process: nothing on the root logger yet
        root.removeHandler(h)
    try:
        with train_logging(6400, 1, module) as summary:
            module.setup_logging(None, logging.INFO)
            added = list(root.handlers)
            assert not any(isinstance(h, TrainProgress) for h in added)
            assert [h.level for h in added] == [logging.WARNING]
        assert summary.samples == 0
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved:
            root.addHandler(h)
