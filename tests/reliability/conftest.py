"""Fixtures of the reliability tests: the generated pool (reliability_pool.make_pool), test-local filter
plugins, and the `slow` marker (exhaustive variants; deselect with -m "not slow")."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # reliability_pool, rel_runner

from reliability_pool import GenPool, make_pool  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: exhaustive variants, skipped unless -m slow or RELIABILITY_SLOW=1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the default run short: slow tests of this folder run only when asked for."""
    if "slow" in (config.getoption("markexpr") or "") or os.environ.get("RELIABILITY_SLOW") == "1":
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="slow: run with -m slow or RELIABILITY_SLOW=1")
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture
def gen_pool(tmp_path: Path) -> GenPool:
    """A fresh 20-row pool (2 metadata files, 2 shards) that a test may damage."""
    return make_pool(tmp_path / "pool")


@pytest.fixture
def pool_factory(tmp_path: Path) -> Callable[..., GenPool]:
    """make_pool with a fresh directory per call."""
    count = iter(range(1000))

    def make(**kw) -> GenPool:
        return make_pool(tmp_path / f"pool{next(count)}", **kw)

    return make


@pytest.fixture
def registered() -> Iterator[Callable[[type], type]]:
    """Register test-local filter classes for one test, removed afterwards."""
    from harness.plugins import load_plugins, register, unregister

    load_plugins()  # builtins first, so they cannot collide later
    names: list[str] = []

    def add(cls: type) -> type:
        register(cls)
        names.append(cls.name)
        return cls

    yield add
    for name in names:
        unregister(name)


@pytest.fixture
def counting(registered) -> None:
    from rel_stand_ins import CaptionLength, CountingColumn

    registered(CountingColumn)
    registered(CaptionLength)
    CountingColumn.calls = CaptionLength.calls = 0


@pytest.fixture
def fake_stages(monkeypatch):
    from rel_stand_ins import FakeStages

    import harness.evaluation
    import harness.training

    fake = FakeStages()
    monkeypatch.setattr(harness.training, "train", fake.train)
    monkeypatch.setattr(harness.evaluation, "evaluate", fake.evaluate)
    return fake
