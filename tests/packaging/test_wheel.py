"""The wheel is the whole harness: built-in filters, suites, model configs and published results ship
inside the package, and nothing in it imports a top-level ``baselines`` that could be DataComp's."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True, capture_output=True, text=True)
    (built,) = out.glob("datacomp_harness-*.whl")
    return built


def test_wheel_holds_every_source_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(REPO).as_posix() for p in (REPO / "harness").rglob("*.py")}
    expected |= {"harness/" + p.relative_to(REPO).as_posix() for p in (REPO / "baselines").rglob("*.py")}
    expected |= {f"harness/tasks/{p.name}" for p in (REPO / "tasks").glob("*.yaml")}
    expected |= {f"harness/model_configs/{p.name}" for p in (REPO / "harness" / "model_configs").glob("*.json")}
    expected |= {"harness/baselines/published.csv"}
    expected = {n for n in expected if "__pycache__" not in n}
    assert expected - names == set()
    assert not any(n.startswith("baselines/") for n in names)  # no top-level package to collide with


def test_installed_wheel_works_beside_another_baselines_package(wheel: Path, tmp_path: Path) -> None:
    """DataComp's checkout has its own ``baselines`` package; run there, the harness still finds its own."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    here = tmp_path / "datacomp"
    (here / "baselines").mkdir(parents=True)
    (here / "baselines" / "__init__.py").write_text("raise ImportError('this is DataComp’s baselines package')\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = (
        "import harness, harness.baselines\n"
        "from harness.evaluation.suites import load_suite\n"
        "from harness.report.published import load_published\n"
        f"assert harness.__file__.startswith({str(site)!r}), harness.__file__\n"
        "print(len(load_suite('datacomp').tasks), len(load_suite('tiny').tasks), len(load_published()) > 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=here, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["40", str(len(_tiny_tasks())), "True"]
    listed = subprocess.run([sys.executable, "-m", "harness.cli", "filters"], cwd=here, env=env,
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    for name in ("basic", "dfn", "hype", "tmars", "ws", "image_based"):
        assert any(line.split()[:1] == [name] for line in listed.stdout.splitlines()), name


def _tiny_tasks() -> list:
    from harness.evaluation.suites import load_suite

    return list(load_suite("tiny").tasks)
