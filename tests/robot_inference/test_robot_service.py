"""The robot as a real uvicorn process, with a real edge, a dead edge, and an edge that never answers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import SAMPLES, TinySplit, robot_infer, running_pair, running_service, tcp_server, upload_bundle
from tools.local_stack import ServiceProcess, free_port

Pair = tuple[ServiceProcess, ServiceProcess]


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, tiny_split: TinySplit
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    root = tmp_path_factory.mktemp("pair")
    with running_pair(root) as (robot, edge):
        upload_bundle(edge, tiny_split.zip_bytes)
        upload_bundle(robot, tiny_split.zip_bytes)
        yield robot, edge


def test_three_modes_answer(pair: Pair, tiny_split: TinySplit) -> None:
    robot, _ = pair
    results = {mode: robot_infer(robot.url, mode=mode) for mode in ("split", "all-robot", "all-edge")}
    for mode, response in results.items():
        assert response.status_code == 200, response.text
        assert response.json()["mode"] == mode
    split = results["split"].json()
    elements = tiny_split.manifest.cut[0].elements
    assert 60 < split["bytes"]["sent"] <= elements // 2 + 256  # 4-bit codes, Zstandard-coded when that is shorter
    assert split["bytes"]["feature_fp32"] == elements * 4
    assert results["all-robot"].json()["predictions"] == results["all-edge"].json()["predictions"]


def test_not_an_image_is_400(pair: Pair) -> None:
    robot, _ = pair
    for mode in ("split", "all-robot", "all-edge"):
        response = robot_infer(robot.url, mode=mode, image=b"this is text, not a picture")
        assert response.status_code == 400, (mode, response.text)
        assert "image" in response.json()["detail"]


def test_unknown_mode_is_400(pair: Pair) -> None:
    response = robot_infer(pair[0].url, mode="everywhere")
    assert response.status_code == 400
    assert "all-robot" in response.json()["detail"]


def test_raw_body_answers_like_the_form(pair: Pair, tiny_split: TinySplit) -> None:
    robot, _ = pair
    image = (SAMPLES / "chelsea.jpg").read_bytes()
    for content_type in ("image/jpeg", "application/octet-stream"):
        for mode in ("split", "all-robot", "all-edge"):
            raw = httpx.post(
                f"{robot.url}/api/infer",
                content=image,
                params={"mode": mode, "split_id": tiny_split.manifest.id},
                headers={"content-type": content_type},
                timeout=30,
            )
            assert raw.status_code == 200, raw.text
            form = robot_infer(robot.url, mode=mode)
            assert raw.json()["mode"] == mode
            assert raw.json()["predictions"] == form.json()["predictions"]
            # What was sent is the same; the answer's length varies with the digits of its timings.
            for key in ("sent", "image", "feature_fp32"):
                assert raw.json()["bytes"][key] == form.json()["bytes"][key]


def test_form_field_wins_over_the_query_parameter(pair: Pair) -> None:
    robot, _ = pair
    image = (SAMPLES / "chelsea.jpg").read_bytes()
    response = httpx.post(
        f"{robot.url}/api/infer?mode=all-edge",
        files={"image": ("x.jpg", image)},
        data={"mode": "all-robot"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["mode"] == "all-robot"
    from_query = httpx.post(f"{robot.url}/api/infer?mode=all-edge", files={"image": ("x.jpg", image)}, timeout=30)
    assert from_query.json()["mode"] == "all-edge"


def test_ways_of_sending_no_image_say_how_to_send_one(pair: Pair) -> None:
    robot, _ = pair
    url = f"{robot.url}/api/infer"
    wrong_type = httpx.post(url, content=b"{}", headers={"content-type": "application/json"}, timeout=30)
    assert wrong_type.status_code == 415
    assert "Content-Type: image/jpeg" in wrong_type.json()["detail"]
    no_type = httpx.post(url, content=b"\xff\xd8", timeout=30)
    assert no_type.status_code == 415
    no_file = httpx.post(url, files={"picture": ("x.jpg", b"abc")}, data={"mode": "split"}, timeout=30)
    assert no_file.status_code == 400
    assert "'image'" in no_file.json()["detail"]
    text_field = httpx.post(url, data={"image": "not a file"}, files={"other": ("a", b"b")}, timeout=30)
    assert text_field.status_code == 400
    empty = httpx.post(url, content=b"", headers={"content-type": "image/jpeg"}, timeout=30)
    assert empty.status_code == 400
    assert "empty" in empty.json()["detail"]
    garbage = httpx.post(url, content=b"GIF89a not really", headers={"content-type": "image/gif"}, timeout=30)
    assert garbage.status_code == 400


def test_nothing_deployed_is_409(tmp_path: Path) -> None:
    with running_service("robot_inference", "ROBOT", tmp_path) as robot:
        response = robot_infer(robot.url)
        assert response.status_code == 409
        assert "POST /api/deploy" in response.json()["detail"]


def test_dead_edge_is_503_quickly(tmp_path: Path, tiny_split: TinySplit) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with running_service("robot_inference", "ROBOT", tmp_path, edge_url=dead, edge_timeout_s="2") as robot:
        upload_bundle(robot, tiny_split.zip_bytes)
        start = time.monotonic()
        response = robot_infer(robot.url)
        assert response.status_code == 503
        assert dead in response.json()["detail"]
        assert time.monotonic() - start < 10
        assert robot_infer(robot.url, mode="all-robot").status_code == 200


@pytest.fixture
def silent_edge() -> Iterator[str]:
    """A TCP listener that accepts connections and never answers: an edge that hangs."""
    accepted: list[socket.socket] = []
    with tcp_server(accepted.append) as url:
        yield url
    for connection in accepted:
        connection.close()


def test_hanging_edge_is_504_within_the_timeout(tmp_path: Path, tiny_split: TinySplit, silent_edge: str) -> None:
    with running_service("robot_inference", "ROBOT", tmp_path, edge_url=silent_edge, edge_timeout_s="1.5") as robot:
        upload_bundle(robot, tiny_split.zip_bytes)
        start = time.monotonic()
        response = robot_infer(robot.url)
        elapsed = time.monotonic() - start
        assert response.status_code == 504
        assert "did not answer" in response.json()["detail"]
        assert elapsed < 10


def test_after_one_timeout_a_hung_edge_costs_no_more_waiting(
    tmp_path: Path, tiny_split: TinySplit, silent_edge: str
) -> None:
    with running_service("robot_inference", "ROBOT", tmp_path, edge_url=silent_edge, edge_timeout_s="1.5") as robot:
        upload_bundle(robot, tiny_split.zip_bytes)
        assert robot_infer(robot.url).status_code == 504  # the one timeout that is paid
        for _ in range(3):
            start = time.monotonic()
            response = robot_infer(robot.url)
            assert response.status_code == 503, response.text
            assert "fail at once" in response.json()["detail"]
            assert time.monotonic() - start < 1.0
        assert robot_infer(robot.url, mode="all-robot").status_code == 200


def test_a_hung_edge_with_fallback_answers_on_the_robot_at_once_after_the_first_timeout(
    tmp_path: Path, tiny_split: TinySplit, silent_edge: str
) -> None:
    settings = {"edge_url": silent_edge, "edge_timeout_s": "1.5", "fallback_to_robot": "true"}
    with running_service("robot_inference", "ROBOT", tmp_path, **settings) as robot:
        upload_bundle(robot, tiny_split.zip_bytes)
        first = robot_infer(robot.url)
        assert first.status_code == 200 and first.json()["mode"] == "all-robot"
        start = time.monotonic()
        second = robot_infer(robot.url)
        assert second.status_code == 200 and "fail at once" in second.json()["fallback_reason"]
        assert time.monotonic() - start < 1.0


def test_deploy_from_unreachable_splitter_is_503(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with running_service("robot_inference", "ROBOT", tmp_path, splitter_url=dead) as robot:
        response = httpx.post(f"{robot.url}/api/deploy", json={"split_id": "a" * 64}, timeout=30)
        assert response.status_code == 503
        assert "splitter" in response.json()["detail"]
        bad_id = httpx.post(f"{robot.url}/api/deploy", json={"split_id": "../../etc"}, timeout=30)
        assert bad_id.status_code == 422 and "pattern" in bad_id.json()["detail"]
