"""scripts/install-chromium.sh, run against stub package managers (nothing is really installed).

PATH holds only stubs: `uname`, `id`, `apt-get`, `apt-cache` (and `sudo` where a case needs it). Each
stub appends its argv to a log; an `apt-get install` of a package drops an executable of that name
into the stub folder, as a real install would put one on PATH, so the script's final check runs too.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-chromium.sh"
BASH = shutil.which("bash") or "/bin/bash"
CHMOD = shutil.which("chmod") or "/bin/chmod"  # PATH holds only stubs: call it by its path

# What `apt-cache policy chromium` prints on Debian 12 (a candidate) and on Ubuntu (no candidate:
# only the snap wrapper chromium-browser is packaged). Debian's version table is padded with many
# lines so that a reader that stops at the first match (grep -q) makes the writer die of SIGPIPE.
DEBIAN_POLICY = (
    "chromium:\n  Installed: (none)\n  Candidate: 150.0.7871.100-1~deb12u1\n  Version table:\n"
    + "     150.0.7871.100-1~deb12u1 500\n        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n"
    * 20000
)
UBUNTU_POLICY = "chromium:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n"


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{BASH}\necho \"{name} $*\" >> \"$STUB_LOG\"\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _fake_system(tmp_path: Path, policy: str, uid: int = 0, sudo: bool = False) -> tuple[Path, Path]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (tmp_path / "policy.txt").write_text(policy)
    _stub(stubs, "uname", "echo Linux")
    # the real grep, so that a `... | grep -q` in the script meets the real early exit
    (stubs / "grep").symlink_to(shutil.which("grep") or "/bin/grep")
    _stub(stubs, "id", f"echo {uid}")
    # printf, not cat: a bash builtin writing into a closed pipe is what fails under pipefail
    _stub(stubs, "apt-cache", 'printf "%s" "$(<"$STUB_POLICY")"')
    install_body = (
        'if [[ "$1" == install ]]; then\n'
        '  for p in "$@"; do case "$p" in -*|install) ;; *)\n'
        f'    printf "#!{BASH}\\necho \\"$p 1.0 (stub)\\"\\n" > "$STUB_BIN/$p"; {CHMOD} +x "$STUB_BIN/$p" ;;\n'
        "  esac; done\nfi"
    )
    _stub(stubs, "apt-get", install_body)
    if sudo:
        _stub(stubs, "sudo", 'if [[ "$1" == -n ]]; then shift; fi\n[[ "$1" == true ]] && exit 0\nexec "$@"')
    return stubs, tmp_path / "calls.log"


def _run(tmp_path: Path, stubs: Path, log: Path, ci: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": str(stubs), "STUB_LOG": str(log), "STUB_BIN": str(stubs),
           "STUB_POLICY": str(tmp_path / "policy.txt"), "HOME": str(tmp_path)}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _installs(log: Path) -> list[str]:
    return [c for c in _calls(log) if c.startswith(("apt-get install", "sudo -n apt-get install"))]


def test_debian_candidate_installs_chromium_even_when_grep_would_sigpipe(tmp_path: Path) -> None:
    stubs, log = _fake_system(tmp_path, DEBIAN_POLICY)
    res = _run(tmp_path, stubs, log, ci="true")
    assert res.returncode == 0, res.stderr
    calls = _calls(log)
    assert "apt-get update -qq" in calls
    assert "apt-cache policy chromium" in calls
    assert _installs(log) == ["apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core"]
    assert "install-chromium: chromium 1.0 (stub)" in res.stdout
    assert not (stubs / "chromium-browser").exists()


def test_ubuntu_without_candidate_installs_chromium_browser(tmp_path: Path) -> None:
    stubs, log = _fake_system(tmp_path, UBUNTU_POLICY)
    res = _run(tmp_path, stubs, log, ci="true")
    assert res.returncode == 0, res.stderr
    assert _installs(log) == ["apt-get install -y -qq chromium-browser"]
    assert "install-chromium: chromium-browser 1.0 (stub)" in res.stdout


def test_non_root_uses_passwordless_sudo(tmp_path: Path) -> None:
    stubs, log = _fake_system(tmp_path, DEBIAN_POLICY, uid=1000, sudo=True)
    res = _run(tmp_path, stubs, log, ci="true")
    assert res.returncode == 0, res.stderr
    calls = _calls(log)
    assert "sudo -n apt-get update -qq" in calls
    assert [c for c in calls if c.startswith("sudo -n apt-get install")] == [
        "sudo -n apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core"]


@pytest.mark.parametrize(("ci", "code"), [(None, 0), ("true", 1)])
def test_non_root_without_sudo_explains_and_fails_only_under_ci(tmp_path: Path, ci: str | None, code: int) -> None:
    stubs, log = _fake_system(tmp_path, DEBIAN_POLICY, uid=1000, sudo=False)
    res = _run(tmp_path, stubs, log, ci=ci)
    assert res.returncode == code
    assert "need root or password-less sudo" in res.stderr
    assert _installs(log) == []


def test_already_installed_touches_no_package_manager(tmp_path: Path) -> None:
    stubs, log = _fake_system(tmp_path, DEBIAN_POLICY)
    _stub(stubs, "chromium", "echo Chromium 1.0")
    res = _run(tmp_path, stubs, log, ci="true")
    assert res.returncode == 0, res.stderr
    assert f"found {stubs / 'chromium'}" in res.stdout
    assert not any(c.startswith(("apt", "sudo")) for c in _calls(log))


def test_failed_install_is_an_error_under_ci(tmp_path: Path) -> None:
    stubs, log = _fake_system(tmp_path, DEBIAN_POLICY)
    _stub(stubs, "apt-get", '[[ "$1" == install ]] && exit 100; exit 0')
    res = _run(tmp_path, stubs, log, ci="true")
    assert res.returncode == 1
    assert "apt-get install chromium failed" in res.stderr
    assert os.path.exists(log)
