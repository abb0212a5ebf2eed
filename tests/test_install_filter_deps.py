"""scripts/install-filter-deps.sh on a machine that lacks the caption filters' system packages, run
against stub package managers (nothing is really installed): the install path itself, not only the
"already there" short cut. Stubs as in test_install_chromium.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from test_install_chromium import BASH, _calls, _stub

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-filter-deps.sh"
PACKAGES = ["protobuf-compiler", "libprotobuf-dev", "wordnet-base"]


def _run(tmp_path: Path, uid: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in ("cut",):  # what the script calls besides the package manager
        (stubs / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    _stub(stubs, "id", f"echo {uid}")
    _stub(stubs, "apt-get", "")
    env = {"PATH": str(stubs), "STUB_LOG": str(tmp_path / "calls.log"), "HOME": str(tmp_path),
           "HARNESS_WORDNET_DIR": str(tmp_path / "no-wordnet"), "HARNESS_PROTOBUF_INCLUDE": str(tmp_path / "no-include")}
    res = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return res, _calls(tmp_path / "calls.log")


def test_root_installs_every_missing_package(tmp_path: Path) -> None:
    res, calls = _run(tmp_path, uid=0)
    assert res.returncode == 0, res.stderr
    installs = [c for c in calls if c.startswith("apt-get install")]
    assert len(installs) == 1 and installs[0].split()[-3:] == PACKAGES
    assert calls.index("apt-get update -qq") < calls.index(installs[0])  # the lists first, on a fresh machine


def test_without_root_or_sudo_it_fails_naming_the_packages(tmp_path: Path) -> None:
    res, calls = _run(tmp_path, uid=1000)
    assert res.returncode == 1 and not any(c.startswith("apt-get") for c in calls)
    assert all(p in res.stderr for p in PACKAGES) and "apt-get install" in res.stderr
