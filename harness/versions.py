"""Installed versions of the harness and the libraries whose code decides its numbers: one lookup for
stage keys (a library upgrade redoes the stage), training records, `--version` and report provenance."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

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
