"""The two lock files pin everything pip installs from them: every requirement of every pinned package
(markers evaluated for this interpreter, requested extras followed) is itself pinned, so a fresh clone
gets the same versions, and nothing is pinned that no requirement asks for.

Requirements are read from the installed distributions (the dev environment `make test` runs in holds
both locks), and the harness's own from pyproject.toml.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]


def _pins(lock: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / lock).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _closure(roots: list[str]) -> tuple[set[str], list[str]]:
    """Every distribution the requirement strings `roots` pull in, and the ones that are not installed."""
    todo = [Requirement(r) for r in roots]
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    absent: list[str] = []
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        for extra in sorted(req.extras) or [""]:
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            names.add(name)
            try:
                requires = metadata.distribution(name).requires or []
            except metadata.PackageNotFoundError:
                absent.append(str(req))
                continue
            for text in requires:
                dep = Requirement(text)
                if dep.marker is None or dep.marker.evaluate({"extra": extra}):
                    todo.append(dep)
    return names, absent


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_runtime_lock_is_exactly_what_the_harness_requires() -> None:
    pins = _pins("requirements.lock")
    needed, absent = _closure(_project()["dependencies"])
    assert not absent
    assert sorted(needed - set(pins)) == [], "required but not pinned in requirements.lock"
    assert sorted(set(pins) - needed) == [], "pinned in requirements.lock but required by nothing"
    for name, version in pins.items():
        assert metadata.version(name) == version, name


def test_dev_lock_adds_exactly_what_the_dev_extra_requires() -> None:
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert not set(runtime) & set(dev), "a package pinned in both locks"
    project = _project()
    needed, absent = _closure([*project["dependencies"], *project["optional-dependencies"]["dev"]])
    assert not absent
    assert sorted(needed - set(runtime) - set(dev)) == [], "required but not pinned in either lock"
    assert sorted(set(dev) - needed) == [], "pinned in requirements-dev.lock but required by nothing"
    for name, version in dev.items():
        assert metadata.version(name) == version, name


def test_a_default_install_leaves_out_transformers() -> None:
    """open_clip imports transformers when it is there (about 1 s a process); only clip-benchmark, a dev
    extra, needs it."""
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert "transformers" not in runtime and "transformers" in dev
