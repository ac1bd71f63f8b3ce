"""``WS /api/stream`` on a real robot with a real edge: frames answered in order, pipelined, dropped when they come
too fast, switched between the widths of one split without a redeploy, options refused in words."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from robot_inference.stream.frames import raw_frame
from tests.support import (
    SAMPLES,
    TinySplit,
    delta,
    make_tiny_split,
    running_pair,
    running_service,
    scrape,
    upload_bundle,
    value,
)
from tools.local_stack import ServiceProcess

CHELSEA = (SAMPLES / "chelsea.jpg").read_bytes()
COFFEE = (SAMPLES / "coffee.jpg").read_bytes()


@pytest.fixture(scope="module")
def widths_split(tmp_path_factory: pytest.TempPathFactory) -> TinySplit:
    """The tiny split at 4 bits with 2, 8 and 32 bits beside it, each calibrated."""
    return make_tiny_split(tmp_path_factory.mktemp("widths"), alternatives=[2, 8, 32])


@pytest.fixture(scope="module")
def robot(tmp_path_factory: pytest.TempPathFactory, widths_split: TinySplit) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("stream")
    with running_pair(root) as (robot, edge):
        upload_bundle(edge, widths_split.zip_bytes)
        upload_bundle(robot, widths_split.zip_bytes)
        yield robot


def stream(robot: ServiceProcess, **query: object) -> ClientConnection:
    params = "&".join(f"{key}={value}" for key, value in query.items())
    return connect(robot.url.replace("http://", "ws://") + "/api/stream" + (f"?{params}" if params else ""))


def answers(socket: ClientConnection, count: int) -> list[dict[str, object]]:
    return [json.loads(socket.recv(timeout=60)) for _ in range(count)]


def test_frames_are_answered_in_order_with_the_plan_and_why(robot: ServiceProcess, widths_split: TinySplit) -> None:
    with stream(robot, in_flight=2, queue=8, deadline_ms=5000) as socket:
        for _ in range(6):
            socket.send(CHELSEA)
        got = answers(socket, 6)
    assert [a["frame"] for a in got] == list(range(6))
    assert all(a["status"] == "ok" for a in got), got
    first = got[0]
    assert first["deadline_ms"] == 5000 and first["deadline_met"] is True
    choice = first["choice"]
    assert isinstance(choice, dict) and choice["split_id"] == widths_split.manifest.id
    assert "deadline" in str(choice["reason"])
    # With a generous deadline the best fidelity wins: the whole model on the robot, or the 32-bit split.
    assert all(a["choice"]["fidelity"] == 1.0 for a in got), [a["choice"] for a in got]  # type: ignore[index]
    labels = {a["result"]["predictions"][0]["index"] for a in got}  # type: ignore[index]
    assert len(labels) == 1  # the same photo, the same answer, whichever plan answered


def test_a_fixed_width_travels_at_that_width_and_raw_pixels_work(
    robot: ServiceProcess, widths_split: TinySplit
) -> None:
    pixels = np.asarray(Image.open(SAMPLES / "coffee.jpg").convert("RGB"))
    for bits in (2, 8):
        with stream(robot, mode="split", bits=bits, queue=4) as socket:
            socket.send(COFFEE)
            socket.send(raw_frame(pixels))
            encoded, raw = answers(socket, 2)
        for answer in (encoded, raw):
            assert answer["status"] == "ok", answer
            result = answer["result"]
            assert isinstance(result, dict)
            assert (result["mode"], result["bits"]) == ("split", bits)
        assert raw["result"]["bytes"]["image"] == pixels.size  # type: ignore[index]
    wider = httpx.get(f"{robot.url}/health", timeout=30).json()
    assert wider["active_split_id"] == widths_split.manifest.id  # nothing was redeployed


def test_frames_faster_than_the_robot_are_dropped_oldest_first(robot: ServiceProcess) -> None:
    before = scrape(robot)
    with stream(robot, mode="split", bits=8, in_flight=1, queue=1) as socket:
        for _ in range(30):
            socket.send(CHELSEA)
        got = answers(socket, 30)
    assert [a["frame"] for a in got] == list(range(30))
    dropped = [a for a in got if a["status"] == "dropped"]
    answered = [a for a in got if a["status"] == "ok"]
    assert dropped and answered and len(dropped) + len(answered) == 30
    assert got[-1]["status"] == "ok"  # the newest frame is always answered
    assert "newer frame" in str(dropped[0]["reason"])
    after = scrape(robot)
    assert delta(before, after, "splitbot_stream_frames_total", outcome="dropped") == len(dropped)
    assert value(after, "splitbot_stream_bits") == 8


def test_options_in_a_first_text_message_and_bad_options_in_words(robot: ServiceProcess) -> None:
    with stream(robot) as socket:
        socket.send(json.dumps({"mode": "all-robot", "deadline_ms": 250}))
        socket.send(CHELSEA)
        (answer,) = answers(socket, 1)
    assert answer["choice"]["mode"] == "all-robot" and answer["deadline_ms"] == 250  # type: ignore[index]
    with pytest.raises(InvalidStatus) as refused:
        stream(robot, mode="split", bits=6)
    assert refused.value.response.status_code == 400
    assert b"not 6" in refused.value.response.body
    with pytest.raises(InvalidStatus) as bad:
        stream(robot, in_flight=9)
    assert bad.value.response.status_code == 400 and b"in_flight" in bad.value.response.body
    with stream(robot) as socket:
        socket.send(b"not an image at all")
        socket.send("text after the start")
        broken, text = answers(socket, 2)
    assert broken["status"] == "error" and broken["http_status"] == 400
    assert text["status"] == "error" and "binary" in str(text["detail"])


def test_no_split_deployed_refuses_the_handshake(tmp_path: Path) -> None:
    with (
        running_service("robot_inference", "ROBOT", tmp_path, edge_url="http://127.0.0.1:9") as bare,
        pytest.raises(InvalidStatus) as refused,
    ):
        stream(bare)
    assert refused.value.response.status_code in (409, 503)
    assert b"deploy" in refused.value.response.body
