"""A robot with ROBOT_EDGE_PROTOCOL=oip: the cut's codes to an Open Inference Protocol server, post-processed here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import TinySplit, robot_infer, running_service, upload_bundle
from tools.local_stack import ServiceProcess, free_port

Trio = tuple[ServiceProcess, ServiceProcess, ServiceProcess]


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory, tiny_split: TinySplit) -> Iterator[Trio]:
    """One edge; a robot speaking the protocol to its /v2 routes, and one speaking frames."""
    root = tmp_path_factory.mktemp("oip")
    with (
        running_service("edge_inference", "EDGE", root / "edge") as edge,
        running_service("robot_inference", "ROBOT", root / "oip", edge_url=edge.url, edge_protocol="oip") as oip,
        running_service("robot_inference", "ROBOT", root / "frames", edge_url=edge.url) as frames,
    ):
        for service in (edge, oip, frames):
            upload_bundle(service, tiny_split.zip_bytes)
        yield oip, frames, edge


def test_the_answer_over_the_protocol_is_the_answer_over_frames(trio: Trio, tiny_split: TinySplit) -> None:
    oip, frames, _ = trio
    over_oip = robot_infer(oip.url, mode="split")
    over_frames = robot_infer(frames.url, mode="split")
    assert over_oip.status_code == 200, over_oip.text
    result, expected = over_oip.json(), over_frames.json()
    # the same codes reach the same tail: the same answer, to the last digit
    assert result["answer"] == expected["answer"] and result["predictions"] == expected["predictions"]
    assert result["bits"] == tiny_split.manifest.quantization.bits
    stages = {(stage["name"], stage["where"]) for stage in result["stages"]}
    assert {
        ("head", "robot"),
        ("quantize", "robot"),
        ("edge round trip (oip)", "link"),
        ("postprocess", "robot"),
    } <= stages
    codes_bytes = -(-tiny_split.manifest.cut[0].elements * tiny_split.manifest.quantization.bits // 8)
    assert codes_bytes < result["bytes"]["sent"] < codes_bytes + 1024  # the codes and a JSON header
    assert result["providers"]["edge"] is None
    health = httpx.get(f"{oip.url}/health", timeout=30).json()
    assert health["edge_protocol"] == "oip" and health["edge"] == {"ready": True, "protocol": "oip"}


def test_what_the_protocol_cannot_carry_is_refused_with_the_reason(trio: Trio) -> None:
    oip, _, _ = trio
    all_edge = robot_infer(oip.url, mode="all-edge")
    assert all_edge.status_code == 400 and "ROBOT_EDGE_PROTOCOL=oip" in all_edge.json()["detail"]
    assert robot_infer(oip.url, mode="all-robot").status_code == 200


def test_an_edge_without_the_tail_is_named(tmp_path: Path, tiny_split: TinySplit) -> None:
    """The OIP server answers {"error": message}; the robot passes the message on, naming the edge."""
    with (
        running_service("edge_inference", "EDGE", tmp_path / "edge") as edge,
        running_service(
            "robot_inference", "ROBOT", tmp_path / "robot", edge_url=edge.url, edge_protocol="oip"
        ) as robot,
    ):
        upload_bundle(robot, tiny_split.zip_bytes)
        response = robot_infer(robot.url, mode="split")
        assert response.status_code == 404, response.text
        assert response.json()["detail"].startswith("the edge refused: no model")


def test_a_dead_protocol_edge_is_503(tmp_path: Path, tiny_split: TinySplit) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = {"edge_url": dead, "edge_protocol": "oip", "edge_timeout_s": "2"}
    with running_service("robot_inference", "ROBOT", tmp_path, **settings) as robot:
        upload_bundle(robot, tiny_split.zip_bytes)
        response = robot_infer(robot.url, mode="split")
        assert response.status_code == 503 and dead in response.json()["detail"]
