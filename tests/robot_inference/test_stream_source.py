"""``ROBOT_SOURCE``: a robot with its own camera streams by itself; its answers reach ``WS /api/stream/results``."""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.support import SAMPLES, TinySplit, running_service, scrape, upload_bundle, value
from tools.local_stack import ServiceProcess


def results(robot: ServiceProcess, count: int) -> tuple[dict[str, object], list[dict[str, object]]]:
    with connect(robot.url.replace("http://", "ws://") + "/api/stream/results") as socket:
        hello = json.loads(socket.recv(timeout=30))
        return hello, [json.loads(socket.recv(timeout=60)) for _ in range(count)]


def test_a_directory_of_images_streams_through_the_split(tmp_path: Path, tiny_split: TinySplit) -> None:
    photos = tmp_path / "camera"
    photos.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg"):
        shutil.copy(SAMPLES / name, photos / name)
    with running_service("edge_inference", "EDGE", tmp_path / "edge") as edge:
        upload_bundle(edge, tiny_split.zip_bytes)
        with running_service(
            "robot_inference",
            "ROBOT",
            tmp_path / "robot",
            source=str(photos),
            source_fps="5",
            source_options="mode=split&deadline_ms=5000",
            edge_url=edge.url,
        ) as robot:
            upload_bundle(robot, tiny_split.zip_bytes)
            hello, answers = results(robot, 4)
            health = httpx.get(f"{robot.url}/health", timeout=30).json()
            answered = value(scrape(robot), "splitbot_stream_frames_total", outcome="answered")
    assert hello["status"] == "subscribed" and hello["source"] == str(photos)
    assert all(a["status"] == "ok" for a in answers), answers
    numbers = [a["frame"] for a in answers]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4
    assert {a["result"]["mode"] for a in answers} == {"split"}  # type: ignore[index]
    assert health["source"] == str(photos) and health["source_error"] is None
    assert answered >= 4


def test_a_source_that_cannot_be_read_is_said_in_health(tmp_path: Path, tiny_split: TinySplit) -> None:
    missing = str(tmp_path / "no-such-clip.mp4")
    with running_service("robot_inference", "ROBOT", tmp_path / "robot", source=missing) as robot:
        upload_bundle(robot, tiny_split.zip_bytes)
        deadline = time.monotonic() + 30
        error = None
        while time.monotonic() < deadline and not error:
            error = httpx.get(f"{robot.url}/health", timeout=30).json()["source_error"]
            time.sleep(0.2)
    expected = "cannot be opened" if importlib.util.find_spec("cv2") else "needs OpenCV"
    assert error is not None and expected in error


def test_a_video_file_streams_through_opencv(tmp_path: Path, tiny_split: TinySplit) -> None:
    cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless, the camera extra) is not installed")
    import numpy as np
    from PIL import Image

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg"):
        rgb = np.asarray(Image.open(SAMPLES / name).convert("RGB").resize((320, 240)))
        for _ in range(3):
            writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
    writer.release()
    with running_service("edge_inference", "EDGE", tmp_path / "edge") as edge:
        upload_bundle(edge, tiny_split.zip_bytes)
        with running_service(
            "robot_inference", "ROBOT", tmp_path / "robot", source=str(clip), source_fps="10", edge_url=edge.url
        ) as robot:
            upload_bundle(robot, tiny_split.zip_bytes)
            _, answers = results(robot, 3)
    assert all(a["status"] == "ok" for a in answers), answers
    assert all(a["result"]["bytes"]["image"] == 320 * 240 * 3 for a in answers)  # type: ignore[index]
