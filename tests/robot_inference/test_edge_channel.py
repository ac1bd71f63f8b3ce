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

from model_splitter.local_stack import ServiceProcess, free_port
from tests.robot_inference.test_robot_service import infer, upload_bundle
from tests.support import TinySplit, running_service


def edge_requests(edge: ServiceProcess) -> dict[str, float]:
    """splitbot_requests_total of the edge by route, for 200 answers."""
    counts: dict[str, float] = {}
    for line in httpx.get(f"{edge.url}/metrics", timeout=30).text.splitlines():
        if line.startswith("splitbot_requests_total{") and 'status="200"' in line:
            route = line.split('route="', 1)[1].split('"', 1)[0]
            counts[route] = counts.get(route, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, tiny_split: TinySplit) -> Iterator[ServiceProcess]:
    with running_service("edge_inference", "EDGE", tmp_path_factory.mktemp("channel-edge")) as service:
        upload_bundle(service, tiny_split)
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
        with running_service(
            "robot_inference", "ROBOT", tmp_path / channel, edge_url=edge.url, edge_channel=channel
        ) as robot:
            upload_bundle(robot, tiny_split)
            before = edge_requests(edge)
            answers[channel] = [infer(robot, mode).json() for mode in ("split", "all-edge")]
            assert httpx.get(f"{robot.url}/health", timeout=30).json()["edge_channel"] == channel
            after = edge_requests(edge)
        route = "/api/frames" if channel == "websocket" else "/api/infer"
        assert after.get(route, 0.0) - before.get(route, 0.0) == 2, (channel, before, after)
    for over_socket, over_post in zip(answers["websocket"], answers["http"], strict=True):
        assert over_socket["predictions"] == over_post["predictions"]
        assert over_socket["bytes"]["sent"] == over_post["bytes"]["sent"]
        assert over_socket["providers"] == over_post["providers"]


def test_an_edge_without_the_socket_gets_posts(http_only_proxy: str, tiny_split: TinySplit, tmp_path: Path) -> None:
    with running_service("robot_inference", "ROBOT", tmp_path, edge_url=http_only_proxy) as robot:
        upload_bundle(robot, tiny_split)
        for _ in range(2):
            response = infer(robot)
            assert response.status_code == 200, response.text
            assert response.json()["mode"] == "split"
        assert "no frame socket" in robot.log_tail()
        assert httpx.get(f"{robot.url}/health", timeout=30).json()["edge_channel"] == "http"


def test_edge_refusals_keep_their_status_over_the_socket(
    edge: ServiceProcess, tiny_split: TinySplit, tmp_path: Path
) -> None:
    """A split the robot holds but the edge does not: 409 from the edge, 409 from the robot, as over HTTP."""
    from tests.support import make_tiny_split

    other = make_tiny_split(tmp_path / "other", bits=2)
    for channel in ("websocket", "http"):
        with running_service(
            "robot_inference", "ROBOT", tmp_path / channel, edge_url=edge.url, edge_channel=channel
        ) as robot:
            upload_bundle(robot, other)
            response = infer(robot)
            assert response.status_code == 409, (channel, response.text)
            assert other.manifest.id in response.json()["detail"]


def test_an_edge_answering_nonsense_is_a_bad_gateway(tiny_split: TinySplit, tmp_path: Path) -> None:
    async def nonsense(request: Request) -> Response:
        return Response(b'{"hello": "not a result"}', 200, media_type="application/json")

    app = Starlette(routes=[Route("/api/infer", nonsense, methods=["POST"])])
    with serving(app) as url, running_service("robot_inference", "ROBOT", tmp_path, edge_url=url) as robot:
        upload_bundle(robot, tiny_split)
        response = infer(robot)
        assert response.status_code == 502, response.text
        assert "not an inference result" in response.json()["detail"]
