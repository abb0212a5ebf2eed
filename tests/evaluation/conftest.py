from __future__ import annotations

import pytest

from harness.evaluation import load_suite

from .fabricate import LookupEncoder, fabricate_suite


@pytest.fixture(scope="session")
def datacomp_suite():
    return load_suite("datacomp")


@pytest.fixture(scope="session")
def fabricated_datacomp(tmp_path_factory, datacomp_suite):
    """A miniature copy of all 40 DataComp tasks in their upstream formats + expected main metrics."""
    root = tmp_path_factory.mktemp("datacomp_eval")
    expect = fabricate_suite(root, datacomp_suite)
    return root, expect


@pytest.fixture
def lookup_encoder():
    return LookupEncoder()
