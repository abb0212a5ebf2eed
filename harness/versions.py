"""Installed versions of the harness and the libraries whose code decides its numbers: one lookup for
stage keys (a library upgrade redoes the stage), training records, `--version`, summary.json and report
provenance; and the git commit of the checkout the harness runs from."""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ABSENT = "absent"


def package_version(dist: str) -> str:
    """The installed distribution's version, or "absent"."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return ABSENT


def package_versions(*dists: str) -> dict[str, str]:
    return {dist: package_version(dist) for dist in dists}


def harness_version() -> str:
    return package_version("datacomp-harness")


# The source checkout holding this package; an installed wheel sits in site-packages, which has no .git.
CHECKOUT = Path(__file__).resolve().parents[1]


def _git(repo: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit(repo: Path = CHECKOUT) -> str | None:
    """``git rev-parse HEAD`` of the checkout the harness runs from; None for an installed package (no
    ``.git`` beside it), without git, or when git refuses the directory."""
    if not (repo / ".git").exists():  # never ask git above the package: that could be another project's repo
        return None
    head = _git(repo, "rev-parse", "HEAD")
    return head if head and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", head) else None


def has_local_changes(repo: Path = CHECKOUT) -> bool | None:
    """Whether tracked files differ from HEAD (None when git cannot tell)."""
    if not (repo / ".git").exists():
        return None
    status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)
