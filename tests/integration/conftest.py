"""The three services as real uvicorn processes on free loopback ports, shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.local_stack import LocalStack, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "model_splitter" / "data" / "samples"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    data_dir = tmp_path_factory.mktemp("stack")
    local = LocalStack(
        data_dir=data_dir,
        splitter_port=free_port(),
        robot_port=free_port(),
        edge_port=free_port(),
        extra_env={"ROBOT_INTRA_OP_THREADS": "1", "EDGE_INTRA_OP_THREADS": "1"},
    )
    with local:
        yield local
