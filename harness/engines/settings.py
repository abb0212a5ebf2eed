"""The scoring engine's settings: one typed object, carried by ScoringContext.engine (what `--engine`,
`--ray-address` and `--ray-workers` set for a whole run). Imports nothing of the harness, so the
plugin API can hold it without importing an engine."""

from __future__ import annotations

from dataclasses import dataclass

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineSettings:
    """Which engine scores, and (Ray) how to reach it and how wide to go; the one place they live.

    kind: "local" (this process) or "ray".
    address: Ray only. None starts a local Ray instance (or reuses one already initialised in this
      process); "auto" joins the cluster this machine belongs to; "ray://head:10001" is Ray Client.
    workers: Ray only. Scoring actors (model scorers) or concurrent tasks (metadata filters); None =
      one per CPU of the cluster, or (CUDA) up to 4 actors per GPU sharing it.
    max_retries: Ray only. Retries of a failed metadata task (actors are restarted without limit).
    """

    kind: str = "local"
    address: str | None = None
    workers: int | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise ValueError(f"unknown scoring engine {self.kind!r}; choose 'local' or 'ray'")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"Ray workers must be >= 1, got {self.workers}")
