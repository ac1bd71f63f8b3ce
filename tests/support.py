"""Small real things the tests share: a tiny classifier built with onnx.helper, and services as real processes."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from prometheus_client.parser import text_string_to_metric_families

from common.manifest import SplitManifest
from model_splitter.records import ModelRecord, SplitPoint, SplitRequest
from model_splitter.services.models import TaskRequest, default_preprocessing, register_upload
from model_splitter.services.splits import create_split
from model_splitter.store.bundle_zip import bundle_zip
from model_splitter.store.registry import Registry
from tools.local_stack import ServiceProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "model_splitter" / "data" / "samples"
CHELSEA = (SAMPLES / "chelsea.jpg").read_bytes()
# An uploaded file registers as task raw unless told otherwise: the tiny classifier is told.
CLASSIFIER = TaskRequest(task="classification")
# Generous: the first request to a process also loads its sessions.
HTTP_TIMEOUT_S = 120.0


def tiny_classifier(num_classes: int = 10, size: int = 32, seed: int = 0) -> onnx.ModelProto:
    """Conv-Relu-Conv-Relu-GlobalAveragePool-Flatten-Gemm on a (batch, 3, size, size) input."""
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="/stem/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="/stem/relu/Relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="/block/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="/block/relu/Relu"),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="/Flatten"),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["output"], name="/fc/Gemm", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", num_classes])],
        [
            weight("w1", 8, 3, 3, 3),
            weight("b1", 8),
            weight("w2", 8, 8, 3, 3),
            weight("b2", 8),
            weight("w3", num_classes, 8),
            weight("b3", num_classes),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@contextmanager
def running_service(
    module: str, prefix: str, data_dir: Path, port: int | None = None, **settings: str
) -> Iterator[ServiceProcess]:
    """One service as a real uvicorn process on a loopback port (a free one unless given), configured through its
    environment."""
    import os

    port = port or free_port()
    env = dict(os.environ)
    env.update({f"{prefix}_HOST": "127.0.0.1", f"{prefix}_PORT": str(port), f"{prefix}_DATA_DIR": str(data_dir)})
    env.update({f"{prefix}_{key.upper()}": value for key, value in settings.items()})
    service = ServiceProcess(prefix.lower(), module, f"http://127.0.0.1:{port}", env, data_dir / "service.log")
    service.start(sys.executable)
    try:
        service.wait_healthy(time.monotonic() + 60)
        yield service
    finally:
        service.stop()


@contextmanager
def running_pair(root: Path) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """An edge and a robot that sends to it, each with its data under ``root``: (robot, edge)."""
    with (
        running_service("edge_inference", "EDGE", root / "edge") as edge,
        running_service("robot_inference", "ROBOT", root / "robot", edge_url=edge.url) as robot,
    ):
        yield robot, edge


@contextmanager
def running_stack(root: Path) -> Iterator[tuple[ServiceProcess, ServiceProcess, ServiceProcess]]:
    """The three services as ``make up`` runs them, the splitter deploying to the robot and edge: (splitter, robot,
    edge)."""
    with running_pair(root) as (robot, edge):
        env = {"robot_url": robot.url, "edge_url": edge.url}
        with running_service("model_splitter", "SPLITTER", root / "splitter", **env) as splitter:
            yield splitter, robot, edge


class TinySplit:
    """A split of ``tiny_classifier`` made through the real registry, and its bundle zip."""

    def __init__(self, manifest: SplitManifest, zip_bytes: bytes, registry: Registry) -> None:
        self.manifest = manifest
        self.zip_bytes = zip_bytes
        self.registry = registry


def make_tiny_split(root: Path, bits: int = 4, split_point: str = "block", **request: Any) -> TinySplit:
    """``request``: further SplitRequest fields (clip, scheme, entropy); by default the split is made as the API
    makes it (calibrated at creation, affine codes, Zstandard coding)."""
    registry = Registry(root / "registry")
    model = tiny_classifier()
    record = register_upload(
        registry, model.SerializeToString(), "tiny.onnx", (1, 3, 32, 32), "tiny", False, CLASSIFIER
    )
    fields = {"split_point": split_point, "bits": bits, **request}
    manifest = create_split(registry, record.id, SplitRequest.model_validate(fields))
    return TinySplit(manifest, bundle_zip(registry, manifest.id), registry)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(service: ServiceProcess) -> Samples:
    """Every sample of the service's Prometheus ``/metrics``, by (name, sorted labels)."""
    response = httpx.get(f"{service.url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def upload_bundle(service: ServiceProcess, zip_bytes: bytes, headers: dict[str, str] | None = None) -> None:
    response = httpx.post(
        f"{service.url}/api/bundles",
        files={"bundle": ("bundle.zip", zip_bytes)},
        headers=headers or {},
        timeout=HTTP_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text


def robot_infer(
    robot_url: str,
    image: bytes = CHELSEA,
    mode: str | None = None,
    headers: dict[str, str] | None = None,
    client: httpx.Client | None = None,
    timeout_s: float = HTTP_TIMEOUT_S,
) -> httpx.Response:
    data = {"mode": mode} if mode else {}
    files = {"image": ("image.jpg", image)}
    if client is not None:
        return client.post(f"{robot_url}/api/infer", files=files, data=data, headers=headers or {}, timeout=timeout_s)
    return httpx.post(f"{robot_url}/api/infer", files=files, data=data, headers=headers or {}, timeout=timeout_s)


def record_of(points: list[SplitPoint], input_shape: tuple[int, ...], num_classes: int) -> ModelRecord:
    """A registry record around analysed split points, for tests that need one without registering a model."""
    return ModelRecord(
        id="0" * 16,
        name="test-model",
        sha256="0" * 64,
        size_bytes=0,
        source_format="onnx",
        architecture=None,
        input_shape=list(input_shape),
        weights_trained=False,
        export_max_abs_diff=None,
        num_classes=num_classes,
        opset=17,
        created_at="",
        preprocessing=default_preprocessing(input_shape),
        split_points=points,
    )


@contextmanager
def tcp_server(serve: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback TCP listener that hands each accepted connection to ``serve`` (on its one accept thread), for
    peers that misbehave below HTTP: hang, close early, answer half. Yields its ``http://`` URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            serve(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()
