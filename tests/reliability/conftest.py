"""One open stack (no tokens) with the tiny split deployed through the splitter, shared by the load,
observability and schemathesis tests; the access and fault tests start their own processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.harness import OpenStack, register_split_deploy
from tools.local_stack import LocalStack, free_port


@pytest.fixture(scope="session")
def open_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenStack]:
    local = LocalStack(
        data_dir=tmp_path_factory.mktemp("open-stack"),
        splitter_port=free_port(),
        robot_port=free_port(),
        edge_port=free_port(),
        # One thread per session: deterministic answers, and robot and edge do not fight over the cores.
        extra_env={"ROBOT_INTRA_OP_THREADS": "1", "EDGE_INTRA_OP_THREADS": "1"},
    )
    with local:
        yield OpenStack(stack=local, deployed=register_split_deploy(local.splitter_url))
