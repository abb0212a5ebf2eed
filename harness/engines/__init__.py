"""Scoring engines behind one protocol (harness.engines.base.ScoringEngine): ``local`` (this process)
and ``ray`` (a Ray cluster, the optional extra ``pip install '.[ray]'``), chosen once from the run's
EngineSettings by ``make_engine``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.engines.settings import EngineSettings

if TYPE_CHECKING:
    from harness.engines.base import ScoringEngine


def make_engine(settings: EngineSettings) -> ScoringEngine:
    """The engine the settings name (EngineSettings has already refused an unknown kind)."""
    if settings.kind == "ray":
        from harness.engines.ray import RayEngine  # Ray is imported only when it is asked for

        return RayEngine(settings)
    from harness.engines.local import LocalEngine

    return LocalEngine(settings)


__all__ = ["EngineSettings", "make_engine"]
