"""Fixtures shared across the test tree."""

from __future__ import annotations

import pytest

from tests.support import TinySplit, make_tiny_split


@pytest.fixture(scope="session")
def tiny_split(tmp_path_factory: pytest.TempPathFactory) -> TinySplit:
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))
