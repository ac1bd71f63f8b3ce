"""Fixtures shared across the test tree."""

from __future__ import annotations

import pytest

from tests.support import TinySplit, make_tiny_split


@pytest.fixture(scope="session")
def tiny_split(tmp_path_factory: pytest.TempPathFactory) -> TinySplit:
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def clip_split(tmp_path_factory: pytest.TempPathFactory) -> TinySplit:
    """The tiny split with the clip codes of splits made before affine codes (wire kind 1, range [0, 32], no
    coding): frames the edge tests build by hand, and what older robots still send."""
    return make_tiny_split(tmp_path_factory.mktemp("tiny-clip"), clip=(0.0, 32.0), scheme="clip", entropy="none")
