"""The edge's /api/frames WebSocket, spoken to by a real WebSocket client against a real uvicorn process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from common.wire import decode_frame, encode_frame
from tests.edge_inference.support import MAX_FRAME, features, frame_for, post
from tests.support import TinySplit, running_service, scrape, value
from tools.local_stack import ServiceProcess


def upload(service: ServiceProcess, split: TinySplit, token: str | None = None) -> None:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{service.url}/api/bundles", files={"bundle": ("b.zip", split.zip_bytes)}, headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, clip_split: TinySplit) -> Iterator[ServiceProcess]:
    with running_service(
        "edge_inference", "EDGE", tmp_path_factory.mktemp("socket-edge"), max_frame_bytes=str(MAX_FRAME)
    ) as service:
        upload(service, clip_split)
        yield service


def ws_url(service: ServiceProcess) -> str:
    return service.url.replace("http://", "ws://") + "/api/frames"


@pytest.fixture
def socket(edge: ServiceProcess) -> Iterator[ClientConnection]:
    with connect(ws_url(edge), compression=None) as connection:
        yield connection


def error_of(answer: str | bytes) -> dict[str, object]:
    assert isinstance(answer, str), "errors come back as text messages"
    parsed: dict[str, object] = json.loads(answer)
    return parsed


def test_a_frame_gets_the_same_answer_as_a_post(
    edge: ServiceProcess, socket: ClientConnection, clip_split: TinySplit
) -> None:
    frame = frame_for(clip_split, features(clip_split, batch=2, seed=3))
    socket.send(frame)
    answer = socket.recv(timeout=30)
    assert isinstance(answer, bytes), "results come back as binary messages"
    over_socket = json.loads(answer)
    over_http = post(edge, frame).json()
    assert over_socket["batch_predictions"] == over_http["batch_predictions"]
    assert over_socket["received_bytes"] == len(frame)
    assert [s["name"] for s in over_socket["stages"]] == [s["name"] for s in over_http["stages"]]


def test_errors_keep_the_connection_open(socket: ClientConnection, clip_split: TinySplit) -> None:
    socket.send("a text message")
    text = error_of(socket.recv(timeout=30))
    assert text["status"] == 400 and "binary" in str(text["detail"])
    socket.send(b"SPLT but not really a frame")
    assert error_of(socket.recv(timeout=30))["status"] == 400
    record = decode_frame(frame_for(clip_split, features(clip_split))).tensors[0]
    socket.send(encode_frame("0" * 64, [record]))
    refused = error_of(socket.recv(timeout=30))
    assert refused["status"] == 409 and "0" * 64 in str(refused["detail"])
    socket.send(b"\x00" * (MAX_FRAME + 1))
    too_large = error_of(socket.recv(timeout=30))
    assert too_large["status"] == 413 and f"{MAX_FRAME:,}" in str(too_large["detail"])
    socket.send(frame_for(clip_split, features(clip_split)))
    assert isinstance(socket.recv(timeout=30), bytes)


def test_frames_count_in_the_metrics(edge: ServiceProcess, socket: ClientConnection, clip_split: TinySplit) -> None:
    def frames_answered() -> float:
        labels = {"service": "edge", "route": "/api/frames", "method": "WS", "status": "200"}
        return value(scrape(edge), "splitbot_requests_total", **labels)

    before = frames_answered()
    for seed in range(3):
        socket.send(frame_for(clip_split, features(clip_split, seed=seed)))
        assert isinstance(socket.recv(timeout=30), bytes)
    assert frames_answered() - before == 3


def test_the_handshake_needs_the_token(tmp_path: Path, clip_split: TinySplit) -> None:
    token = "edge-socket-token"
    with running_service("edge_inference", "EDGE", tmp_path, token=token) as edge:
        upload(edge, clip_split, token)
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(edge), open_timeout=10).close()
        assert refused.value.response.status_code == 401
        assert "EDGE_TOKEN" in json.loads(refused.value.response.body or b"{}")["detail"]
        with pytest.raises(InvalidStatus):
            connect(ws_url(edge), additional_headers={"authorization": "Bearer not-it"}, open_timeout=10).close()
        with connect(ws_url(edge), additional_headers={"authorization": f"Bearer {token}"}) as connection:
            connection.send(frame_for(clip_split, features(clip_split)))
            assert isinstance(connection.recv(timeout=30), bytes)
