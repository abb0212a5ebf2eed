"""An evaluation killed while appending a result line (harness.evaluation's eval_results.jsonl).

Behaviour under test: a torn last line is ignored when read (that task is simply evaluated again) and cut
off before the next line is appended; a damaged line anywhere else is a ValueError naming file and line.
"""

from __future__ import annotations

import json

import pytest

from harness.evaluation.aggregate import read_results
from harness.evaluation.evaluator import append_line


def _line(key: str, value: float) -> dict:
    return {"key": key, "dataset": key, "metrics": {"acc1": value, "main_metric": value}}


def test_torn_last_line_is_ignored_then_cut_before_the_next_append(tmp_path):
    path = tmp_path / "eval_results.jsonl"
    append_line(path, _line("a", 0.5))
    append_line(path, _line("b", 0.25))
    with open(path, "ab") as f:
        f.write(json.dumps(_line("c", 0.75)).encode()[:17])  # SIGKILL in the middle of the write
    assert sorted(read_results(path)) == ["a", "b"]
    append_line(path, _line("c", 0.75))
    lines = path.read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == ["a", "b", "c"]
    assert read_results(path)["c"]["metrics"]["main_metric"] == 0.75


def test_damaged_line_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / "eval_results.jsonl"
    path.write_text(json.dumps(_line("a", 0.5)) + "\n{broken\n" + json.dumps(_line("b", 0.1)) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:2: not a JSON line"):
        read_results(path)
