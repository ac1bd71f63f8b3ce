"""How the robot reaches its edge: the frame WebSocket (default), POST per frame, and the switch from one to the
other when an edge (or a proxy in front of it) does not upgrade to WebSockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support import (
    Samples,
    TinySplit,
    make_tiny_split,
    robot_infer,
    running_service,
    scrape,
    upload_bundle,
    value,
)
from tools.local_stack import ServiceProcess, free_port


@contextmanager
def robot_for(edge_url: str, split: TinySplit, data_dir: Path, channel: str = "websocket") -> Iterator[ServiceProcess]:
    """A robot process reaching ``edge_url`` over ``channel``, holding ``split``."""
    with running_service("robot_inference", "ROBOT", data_dir, edge_url=edge_url, edge_channel=channel) as robot:
        upload_bundle(robot, split.zip_bytes)
        yield robot


def answered_200(samples: Samples, route: str) -> float:
    method = "WS" if route == "/api/frames" else "POST"
    return value(samples, "splitbot_requests_total", service="edge", route=route, method=method, status="200")


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, tiny_split: TinySplit) -> Iterator[ServiceProcess]:
    with running_service("edge_inference", "EDGE", tmp_path_factory.mktemp("channel-edge")) as service:
        upload_bundle(service, tiny_split.zip_bytes)
        yield service


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """``app`` under a real uvicorn server on a free loopback port, in a thread of this process."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def http_only_proxy(edge: ServiceProcess) -> Iterator[str]:
    """A real HTTP server in front of the edge that forwards requests but has no WebSocket route."""
    client = httpx.AsyncClient(base_url=edge.url, timeout=30)

    async def forward(request: Request) -> Response:
        answer = await client.request(
            request.method,
            request.url.path,
            content=await request.body(),
            headers={"content-type": "application/octet-stream"},
        )
        return Response(answer.content, answer.status_code, media_type=answer.headers.get("content-type"))

    with serving(Starlette(routes=[Route("/api/infer", forward, methods=["POST"]), Route("/health", forward)])) as url:
        yield url


def test_both_channels_give_the_same_answers(edge: ServiceProcess, tiny_split: TinySplit, tmp_path: Path) -> None:
    answers = {}
    for channel in ("websocket", "http"):
        with robot_for(edge.url, tiny_split, tmp_path / channel, channel) as robot:
            before = scrape(edge)
            answers[channel] = [robot_infer(robot.url, mode=mode).json() for mode in ("split", "all-edge")]
            assert httpx.get(f"{robot.url}/health", timeout=30).json()["edge_channel"] == channel
            after = scrape(edge)
        route = "/api/frames" if channel == "websocket" else "/api/infer"
        assert answered_200(after, route) - answered_200(before, route) == 2, channel
    for over_socket, over_post in zip(answers["websocket"], answers["http"], strict=True):
        assert over_socket["predictions"] == over_post["predictions"]
        assert over_socket["bytes"]["sent"] == over_post["bytes"]["sent"]
        assert over_socket["providers"] == over_post["providers"]


def test_an_edge_without_the_socket_gets_posts(http_only_proxy: str, tiny_split: TinySplit, tmp_path: Path) -> None:
    with robot_for(http_only_proxy, tiny_split, tmp_path) as robot:
        for _ in range(2):
            response = robot_infer(robot.url)
            assert response.status_code == 200, response.text
            assert response.json()["mode"] == "split"
        assert "no frame socket" in robot.log_tail()
        assert httpx.get(f"{robot.url}/health", timeout=30).json()["edge_channel"] == "http"


def test_edge_refusals_keep_their_status_over_the_socket(
    edge: ServiceProcess, tiny_split: TinySplit, tmp_path: Path
) -> None:
    """A split the robot holds but the edge does not: 409 from the edge, 409 from the robot, as over HTTP."""
    other = make_tiny_split(tmp_path / "other", bits=2)
    for channel in ("websocket", "http"):
        with robot_for(edge.url, other, tmp_path / channel, channel) as robot:
            response = robot_infer(robot.url)
            assert response.status_code == 409, (channel, response.text)
            assert other.manifest.id in response.json()["detail"]


def test_an_edge_answering_nonsense_is_a_bad_gateway(tiny_split: TinySplit, tmp_path: Path) -> None:
    async def nonsense(request: Request) -> Response:
        return Response(b'{"hello": "not a result"}', 200, media_type="application/json")

    app = Starlette(routes=[Route("/api/infer", nonsense, methods=["POST"])])
    with serving(app) as url, robot_for(url, tiny_split, tmp_path) as robot:
        response = robot_infer(robot.url)
        assert response.status_code == 502, response.text
        assert "not an inference result" in response.json()["detail"]
