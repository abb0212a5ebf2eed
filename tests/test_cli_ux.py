"""The `harness` command line as a user meets it: help and defaults on every option, --version,
-q/-v after any command, --device auto, --json, and one exit-status rule (2 usage, 1 failure)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import errors
from harness.cli import _HelpFormatter, _resolve_devices, build_parser, main, resolve_device

REPO = Path(__file__).resolve().parent.parent


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)]


def test_every_option_of_every_subcommand_has_help_text() -> None:
    parser = build_parser()
    missing = [f"harness {name} {a.option_strings or a.dest}"
               for name, sub in [("", parser), *_subparsers(parser).items()]
               for a in _options(sub) if not (a.help or "").strip() or a.help == argparse.SUPPRESS]
    assert not missing, f"options without help: {missing}"
    assert len(_subparsers(parser)) >= 10


def test_help_shows_every_meaningful_default() -> None:
    for name, sub in _subparsers(build_parser()).items():
        assert sub.formatter_class is _HelpFormatter, name
        text = " ".join(sub.format_help().split())  # undo line wrapping
        for a in _options(sub):
            d = a.default
            if a.required or d is None or d is False or d == [] or d == argparse.SUPPRESS:
                continue
            assert f"(default: {d})" in text, f"harness {name} {a.option_strings}: default {d!r} not shown"


def test_device_defaults_to_auto_and_gpus_follow_the_device() -> None:
    import torch

    cuda = torch.cuda.is_available()
    assert resolve_device("auto") == ("cuda" if cuda else "cpu")
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    parser = build_parser()
    for argv in (["run"], ["score", "--filter", "dfn"], ["evaluate", "--model", "m", "--data", "d", "--out", "o"]):
        args = parser.parse_args(argv)
        assert args.device == "auto"
        _resolve_devices(args)
        assert args.device == ("cuda" if cuda else "cpu")
    run = parser.parse_args(["run"])
    assert run.gpus is None
    _resolve_devices(run)
    assert run.gpus == (1 if cuda else 0)
    explicit = parser.parse_args(["run", "--device", "cpu"])
    _resolve_devices(explicit)
    assert explicit.gpus == 0  # a CPU run never trains on a GPU
    train = parser.parse_args(["train", "--shards", "s", "--out", "o", "--gpus", "0"])
    _resolve_devices(train)
    assert train.gpus == 0


def test_version(capsys: pytest.CaptureFixture) -> None:
    from importlib.metadata import version

    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"harness {version('datacomp-harness')} (open_clip {version('open_clip_torch')}")


@pytest.mark.parametrize("flags", [["-q"], ["-v"], ["--quiet"]])
def test_verbosity_is_accepted_before_and_after_the_command(flags) -> None:
    for argv in ([*flags, "filters"], ["filters", *flags]):
        args = build_parser().parse_args(argv)
        assert getattr(args, "quiet", False) or getattr(args, "verbose", False)
    assert main(["-q", "-v", "filters"]) == errors.USAGE  # mutually exclusive


def test_filters_json_matches_the_table(capsys: pytest.CaptureFixture) -> None:
    assert main(["filters", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"hype", "dfn", "clip_l14", "tmars"} <= names
    assert all({"name", "kind", "needs", "description"} <= set(r) for r in rows)
    assert main(["filters"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in names)


@pytest.mark.parametrize("argv", [
    ["run", "--bogus"],                                       # argparse: unknown option
    ["run", "--scale", "huge"],                               # argparse: bad choice
    ["select"],                                               # argparse: missing required option
    ["run", "--set", "no-equals-sign"],                       # --set value malformed
    ["run", "--model", "dfn"],                                # --model value malformed
    ["run", "--filter", "hype10 + (dfn"],                     # expression syntax
    ["run", "--filter", "hype10 + dfm"],                      # unknown filter name
    ["report", "/nonexistent-dir-for-harness-test"],          # no runs where runs were promised
])
def test_usage_errors_exit_2(argv, tmp_path, capsys: pytest.CaptureFixture) -> None:
    if argv[0] == "run":
        argv = [*argv, "--runs", str(tmp_path / "runs"), "--world", str(tmp_path / "no-world")]
    assert main(argv) == errors.USAGE
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err
    assert not (tmp_path / "no-world").exists()  # refused before any work


def test_failures_exit_1(tmp_path, capsys: pytest.CaptureFixture) -> None:
    """A valid command whose work fails: shards that are not there, a subset file that is not a subset."""
    empty = tmp_path / "shards"
    empty.mkdir()
    assert main(["train", "--shards", str(empty), "--out", str(tmp_path / "t"), "--gpus", "0"]) == errors.FAILURE
    assert "no webdataset shards" in capsys.readouterr().err
    bad = tmp_path / "subset.npy"
    bad.write_bytes(b"not numpy")
    pool = tmp_path / "pool"
    (pool / "metadata").mkdir(parents=True)
    code = main(["reshard", "--pool", str(pool), "--subset", str(bad), "--out", str(tmp_path / "o")])
    assert code == errors.FAILURE
    assert "Traceback" not in capsys.readouterr().err


def test_exit_code_mapping_is_one_rule() -> None:
    from harness.expressions import ExpressionError
    from harness.plugins import PluginError
    from harness.stages import RunLockedError
    from harness.training.driver import TrainingError
    from harness.training.recipe import RecipeError

    for usage in (errors.UsageError("x"), ExpressionError("x", "a + (", 4), PluginError("x"), RecipeError("x")):
        assert errors.exit_code(usage) == 2
    for failure in (TrainingError("x"), RunLockedError("x"), OSError("disk full"), ValueError("x"),
                    FileNotFoundError("x"), TypeError("bug")):
        assert errors.exit_code(failure) == 1
    assert errors.exit_code(KeyboardInterrupt()) == 130
    assert errors.exit_code(SystemExit(2)) == 2 and errors.exit_code(SystemExit(0)) == 0


def test_console_script_exit_statuses_in_a_fresh_process(tmp_path) -> None:
    """The same statuses through `python -m harness.cli` (what the `harness` script runs)."""
    def status(*argv: str) -> int:
        return subprocess.run([sys.executable, "-m", "harness.cli", *argv], cwd=tmp_path, capture_output=True,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).returncode

    assert status("--version") == 0
    assert status("run", "--bogus") == 2
    assert status("train", "--shards", str(tmp_path), "--out", str(tmp_path / "t"), "--gpus", "0") == 1


def test_the_installed_script_freezes_the_heap_after_main_returns(tmp_path) -> None:
    """`harness` is console_main: main's exit status, then gc.freeze(), so the interpreter's final
    collection skips the objects torch and open_clip made at import (BENCHMARKS.md: 2.2-2.5 s -> 0.5 s
    from the last line to exit)."""
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "harness"]
    assert script.value == "harness.cli:console_main"
    probe = ("import gc, sys; from harness.cli import console_main; sys.argv = ['harness', *sys.argv[1:]]; "
             "code = console_main(); print(code, gc.get_freeze_count() > 0)")
    for argv, expected in ((["--version"], "0 True"), (["run", "--bogus"], "2 True")):
        out = subprocess.run([sys.executable, "-c", probe, *argv], cwd=tmp_path, capture_output=True, text=True,
                             env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).stdout
        assert out.strip().splitlines()[-1] == expected
