"""Crashes and outages with real processes: SIGKILL mid-write, restarts on the same port and data directory,
an edge that is down or hangs, and the robot's optional local fallback."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from model_splitter.records import SplitRequest
from model_splitter.services.splits import create_split
from model_splitter.store.bundle_zip import bundle_zip
from tests.reliability.harness import TINY_ONNX, TINY_SHAPE, kill9, pid_of, restart, start_service
from tests.support import HTTP_TIMEOUT_S, TinySplit, robot_infer, upload_bundle
from tools.local_stack import ServiceProcess, free_port

# What "answers within its configured timeout" allows on top of the timeout on a loaded machine.
SLACK_S = 15.0
EDGE_TIMEOUT_S = 5.0


def staged_files(data_dir: Path) -> dict[str, int]:
    """Files in the splitter's staging area (writes in progress) with their sizes."""
    found = {}
    for path in (data_dir / "staging").rglob("*"):
        try:
            if path.is_file():
                found[str(path.relative_to(data_dir))] = path.stat().st_size
        except FileNotFoundError:
            continue
    return found


def kill_while_publishing(
    service: ServiceProcess, data_dir: Path, request: Callable[[], httpx.Response]
) -> dict[str, int]:
    """Send ``request`` and SIGKILL the service as soon as it starts writing files into staging.

    Returns what the kill left in staging: proof that the write was cut off midway.
    """
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["response"] = request()
        except httpx.HTTPError as exc:  # the connection dies with the process
            outcome["error"] = exc

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    while sender.is_alive():
        if staged_files(data_dir):
            kill9(service)
            break
        time.sleep(0.0005)
    sender.join(HTTP_TIMEOUT_S)
    assert "response" not in outcome, f"the write finished before the kill: {outcome['response'].text[:300]}"
    left = staged_files(data_dir)
    assert left, "the kill left nothing in staging: it did not hit the write"
    return left


def onnx_sha256(client: httpx.Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return hashlib.sha256(response.content).hexdigest()


def assert_registry_complete(client: httpx.Client, data_dir: Path) -> list[dict[str, Any]]:
    """Every listed model and split is whole: its files are there and match the hashes in its record."""
    models = client.get("/api/models").json()
    for summary in models:
        record = client.get(f"/api/models/{summary['id']}").json()
        assert onnx_sha256(client, f"/api/models/{record['id']}/model.onnx") == record["sha256"]
        for manifest in client.get(f"/api/models/{record['id']}/splits").json():
            assert onnx_sha256(client, f"/api/splits/{manifest['id']}/head.onnx") == manifest["head_sha256"]
            assert onnx_sha256(client, f"/api/splits/{manifest['id']}/tail.onnx") == manifest["tail_sha256"]
    assert staged_files(data_dir) == {}, "a restart must clear what interrupted writes left in staging"
    on_disk = sorted(p.name for p in (data_dir / "models").iterdir())
    assert on_disk == sorted(m["id"] for m in models), "a model directory exists that the registry does not list"
    models_list: list[dict[str, Any]] = models
    return models_list


def test_splitter_killed_mid_write_keeps_only_complete_models_and_splits(tmp_path: Path) -> None:
    data_dir = tmp_path / "splitter"
    dead = f"http://127.0.0.1:{free_port()}"
    with ExitStack() as running:
        splitter = start_service("model_splitter", "SPLITTER", data_dir, robot_url=dead, edge_url=dead)
        running.callback(lambda: splitter.stop())
        with httpx.Client(base_url=splitter.url, timeout=HTTP_TIMEOUT_S) as client:
            tiny = client.post("/api/models", files={"file": ("t.onnx", TINY_ONNX)}, data={"input_shape": TINY_SHAPE})
            assert tiny.status_code == 201, tiny.text

        # 1. SIGKILL while resnet18's model.onnx (about 45 MB) is being written.
        left = kill_while_publishing(
            splitter, data_dir, lambda: httpx.post(f"{splitter.url}/api/models", data={"arch": "resnet18"}, timeout=600)
        )
        print(f"\nkilled during model registration; staging held {left}")
        splitter = restart(splitter)
        with httpx.Client(base_url=splitter.url, timeout=HTTP_TIMEOUT_S) as client:
            models = assert_registry_complete(client, data_dir)
            assert [m["id"] for m in models] == [tiny.json()["id"]], "only the complete model may be listed"
            # A fresh registration of the same content (so the same id) works.
            resnet = client.post("/api/models", data={"arch": "resnet18"}, timeout=600)
            assert resnet.status_code == 201, resnet.text
            resnet_id = resnet.json()["id"]
            assert len(assert_registry_complete(client, data_dir)) == 2

        # 2. SIGKILL while the head and tail of a resnet18 split are being written.
        left = kill_while_publishing(
            splitter,
            data_dir,
            lambda: httpx.post(
                f"{splitter.url}/api/models/{resnet_id}/splits", json={"split_point": "layer2", "bits": 4}, timeout=600
            ),
        )
        print(f"killed during split creation; staging held {left}")
        splitter = restart(splitter)
        with httpx.Client(base_url=splitter.url, timeout=HTTP_TIMEOUT_S) as client:
            assert len(assert_registry_complete(client, data_dir)) == 2
            assert client.get(f"/api/models/{resnet_id}/splits").json() == []
            assert list((data_dir / "splits").iterdir()) == []
            split = client.post(f"/api/models/{resnet_id}/splits", json={"split_point": "layer2", "bits": 4})
            assert split.status_code == 201, split.text
            assert [m["id"] for m in client.get(f"/api/models/{resnet_id}/splits").json()] == [split.json()["id"]]
            assert_registry_complete(client, data_dir)


def bundle_without_full_model(zip_bytes: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(zip_bytes))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            if name != "model.onnx":
                target.writestr(name, source.read(name))
    return buffer.getvalue()


def predictions(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["predictions"]
    return found


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = call()
    return response, time.monotonic() - start


def test_edge_killed_and_restarted_the_same_robot_recovers(tmp_path: Path, tiny_split: TinySplit) -> None:
    split_id = tiny_split.manifest.id
    with ExitStack() as running:
        edge = start_service("edge_inference", "EDGE", tmp_path / "edge", intra_op_threads="1")
        running.callback(lambda: edge.stop())
        timeout = str(EDGE_TIMEOUT_S)
        strict = start_service(
            "robot_inference", "ROBOT", tmp_path / "strict", name="strict", edge_url=edge.url, edge_timeout_s=timeout
        )
        running.callback(lambda: strict.stop())
        lenient = start_service(
            "robot_inference",
            "ROBOT",
            tmp_path / "lenient",
            name="lenient",
            edge_url=edge.url,
            edge_timeout_s=timeout,
            fallback_to_robot="true",
        )
        running.callback(lambda: lenient.stop())
        for service in (edge, strict, lenient):
            upload_bundle(service, tiny_split.zip_bytes)
        strict_pid = pid_of(strict)

        expected = predictions(robot_infer(strict.url))
        local = predictions(robot_infer(strict.url, mode="all-robot"))
        healthy = robot_infer(lenient.url)
        assert predictions(healthy) == expected and healthy.json()["fallback_reason"] is None

        kill9(edge)
        down, elapsed = timed(lambda: robot_infer(strict.url))
        assert down.status_code == 503, down.text
        assert edge.url in down.json()["detail"] and "cannot be reached" in down.json()["detail"]
        assert elapsed < EDGE_TIMEOUT_S + SLACK_S
        fallback, elapsed = timed(lambda: robot_infer(lenient.url))
        assert predictions(fallback) == local, "the fallback answer is the robot's full model"
        body = fallback.json()
        assert body["mode"] == "all-robot" and "answered on the robot" in body["fallback_reason"]
        assert edge.url in body["fallback_reason"]
        assert elapsed < EDGE_TIMEOUT_S + SLACK_S

        # What a kill during a deploy could leave: a temporary file and a split directory without its manifest.
        edge_splits = tmp_path / "edge" / "splits"
        (edge_splits / split_id / ".incoming-interrupted").write_bytes(b"\0" * 100)
        (edge_splits / ("ab" * 32)).mkdir()
        (edge_splits / ("ab" * 32) / "tail.onnx").write_bytes(b"half a tail")

        edge = restart(edge)
        for _ in range(5):  # several, so that stale pooled connections to the dead process would show
            assert predictions(robot_infer(strict.url)) == expected
        assert pid_of(strict) == strict_pid, "the robot recovered without a restart of its own"
        recovered = robot_infer(lenient.url)
        assert predictions(recovered) == expected and recovered.json()["fallback_reason"] is None
        assert [d["split_id"] for d in httpx.get(f"{edge.url}/api/splits").json()] == [split_id]

        # And the robot itself, killed and restarted, answers from the split it stored.
        kill9(strict)
        strict = restart(strict)
        assert predictions(robot_infer(strict.url)) == expected


class SilentEdge:
    """A TCP listener that accepts connections and never answers: an edge that hangs.

    Its port is chosen up front and it starts listening only when asked, so that the robots can start (and
    answer their own /health, which asks the edge) before the edge begins to hang.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        self._thread.start()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                self._accepted.append(self._listener.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._thread.join()
            self._listener.close()
        for connection in self._accepted:
            connection.close()


@pytest.fixture
def silent_edge() -> Iterator[SilentEdge]:
    edge = SilentEdge()
    yield edge
    edge.close()


def test_hanging_edge_fallback_answers_locally_within_the_timeout(
    tmp_path: Path, tiny_split: TinySplit, silent_edge: SilentEdge
) -> None:
    timeout_s = 2.0
    with ExitStack() as running:
        robot = start_service(
            "robot_inference",
            "ROBOT",
            tmp_path / "robot",
            edge_url=silent_edge.url,
            edge_timeout_s=str(timeout_s),
            fallback_to_robot="true",
        )
        running.callback(lambda: robot.stop())
        # A robot that holds only the head cannot answer alone: it says why the edge failed.
        head_only = start_service(
            "robot_inference",
            "ROBOT",
            tmp_path / "head-only",
            name="head-only",
            edge_url=silent_edge.url,
            edge_timeout_s=str(timeout_s),
            fallback_to_robot="true",
        )
        running.callback(lambda: head_only.stop())
        upload_bundle(robot, tiny_split.zip_bytes)
        upload_bundle(head_only, bundle_without_full_model(tiny_split.zip_bytes))
        local = predictions(robot_infer(robot.url, mode="all-robot"))
        silent_edge.start()

        for mode in ("split", "all-edge"):
            response, elapsed = timed(partial(robot_infer, robot.url, mode=mode))
            assert predictions(response) == local
            assert response.json()["fallback_reason"].startswith(f"{mode} failed, answered on the robot")
            assert "did not answer" in response.json()["fallback_reason"]
            assert elapsed < timeout_s + SLACK_S

        refused, elapsed = timed(lambda: robot_infer(head_only.url))
        assert refused.status_code == 504, refused.text
        assert "did not answer" in refused.json()["detail"]
        assert elapsed < timeout_s + SLACK_S


def test_a_restarted_robot_keeps_the_split_deployed_last_as_its_default(tmp_path: Path, tiny_split: TinySplit) -> None:
    """Requests without a split_id go to the split deployed last, before and after a crash."""
    other = create_split(tiny_split.registry, tiny_split.manifest.model_id, SplitRequest(split_point="stem", bits=8))
    bundles = {tiny_split.manifest.id: tiny_split.zip_bytes, other.id: bundle_zip(tiny_split.registry, other.id)}
    first, last = sorted(bundles, reverse=True)  # the last deployed sorts first: restoring by name would lose it
    dead = f"http://127.0.0.1:{free_port()}"
    with ExitStack() as running:
        robot = start_service("robot_inference", "ROBOT", tmp_path / "robot", edge_url=dead)
        running.callback(lambda: robot.stop())
        for split_id in (first, last):
            upload_bundle(robot, bundles[split_id])
        assert httpx.get(f"{robot.url}/health", timeout=HTTP_TIMEOUT_S).json()["active_split_id"] == last
        kill9(robot)
        robot = restart(robot)
        health = httpx.get(f"{robot.url}/health", timeout=HTTP_TIMEOUT_S).json()
        assert sorted(d["split_id"] for d in health["deployed"]) == sorted(bundles)
        assert health["active_split_id"] == last
        assert predictions(robot_infer(robot.url, mode="all-robot")) != []
