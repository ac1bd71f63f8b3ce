"""A robot with several edges (ROBOT_EDGE_URL=a,b): real edges that die (kill -9), hang (SIGSTOP) or lack the split."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import TinySplit, robot_infer, running_service, upload_bundle
from tools.local_stack import ServiceProcess, free_port

TIMEOUT_S = 1.5


@pytest.fixture
def edges(tmp_path: Path, tiny_split: TinySplit) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    with (
        running_service("edge_inference", "EDGE", tmp_path / "a") as first,
        running_service("edge_inference", "EDGE", tmp_path / "b") as second,
    ):
        for edge in (first, second):
            upload_bundle(edge, tiny_split.zip_bytes)
        yield first, second
        for edge in (first, second):  # a stopped process cannot be interrupted
            if edge.process is not None and edge.process.poll() is None:
                edge.process.send_signal(signal.SIGCONT)


def robot_for(tmp_path: Path, urls: list[str], split: TinySplit, **settings: str) -> Iterator[ServiceProcess]:
    joined = ",".join(urls)
    with running_service(
        "robot_inference", "ROBOT", tmp_path / "robot", edge_url=joined, edge_timeout_s=str(TIMEOUT_S), **settings
    ) as robot:
        upload_bundle(robot, split.zip_bytes)
        yield robot


def preferred(robot: ServiceProcess, edges: tuple[ServiceProcess, ServiceProcess]) -> ServiceProcess:
    """After a few frames (every edge measured), the edge the next frame goes to, as the robot's /health says."""
    for _ in range(4):
        answered_by(robot)
    url = httpx.get(f"{robot.url}/health", timeout=30).json()["edge_url"]
    return next(edge for edge in edges if edge.url == url)


def answered_by(robot: ServiceProcess) -> tuple[str, float]:
    began = time.monotonic()
    response = robot_infer(robot.url, mode="split")
    assert response.status_code == 200, response.text
    return response.json()["edge_url"], time.monotonic() - began


def test_frames_go_on_to_the_live_edge_when_one_dies(
    tmp_path: Path, tiny_split: TinySplit, edges: tuple[ServiceProcess, ServiceProcess]
) -> None:
    for robot in robot_for(tmp_path, [edge.url for edge in edges], tiny_split):
        first = preferred(robot, edges)
        second = next(edge for edge in edges if edge is not first)
        assert first.process is not None
        first.process.kill()
        first.process.wait()
        for _ in range(3):
            url, seconds = answered_by(robot)
            assert url == second.url and seconds < TIMEOUT_S  # no frame lost, none waited for a timeout
        health = httpx.get(f"{robot.url}/health", timeout=30).json()
        assert health["edge_url"] == second.url
        by_url = {edge["url"]: edge for edge in health["edges"]}
        assert by_url[first.url]["failed"] >= 1 and by_url[second.url]["answered"] >= 3


@pytest.mark.parametrize("channel", ["websocket", "http"])
def test_a_hung_edge_costs_one_frame_one_timeout_and_no_more(
    tmp_path: Path, tiny_split: TinySplit, edges: tuple[ServiceProcess, ServiceProcess], channel: str
) -> None:
    for robot in robot_for(tmp_path, [edge.url for edge in edges], tiny_split, edge_channel=channel):
        first = preferred(robot, edges)
        second = next(edge for edge in edges if edge is not first)
        assert first.process is not None
        first.process.send_signal(signal.SIGSTOP)
        url, seconds = answered_by(robot)
        assert url == second.url and TIMEOUT_S * 0.9 < seconds < TIMEOUT_S + 0.5  # one timeout, then on
        for _ in range(3):
            url, seconds = answered_by(robot)
            assert url == second.url and seconds < TIMEOUT_S
        first.process.send_signal(signal.SIGCONT)


def test_an_edge_without_the_split_passes_the_frame_on(tmp_path: Path, tiny_split: TinySplit) -> None:
    with (
        running_service("edge_inference", "EDGE", tmp_path / "empty") as empty,
        running_service("edge_inference", "EDGE", tmp_path / "full") as full,
    ):
        upload_bundle(full, tiny_split.zip_bytes)
        for robot in robot_for(tmp_path, [empty.url, full.url], tiny_split):
            assert answered_by(robot)[0] == full.url


def test_when_every_edge_fails_the_answer_names_each(tmp_path: Path, tiny_split: TinySplit) -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    for robot in robot_for(tmp_path, dead, tiny_split):
        response = robot_infer(robot.url, mode="split")
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert "all 2 edges failed" in detail and all(url in detail for url in dead)


def test_a_list_that_names_no_edge_is_refused_at_start(tmp_path: Path) -> None:
    from robot_inference.settings import RobotSettings

    with pytest.raises(ValueError, match="comma-separated http"):
        RobotSettings(edge_url=" , ")
