"""A real Triton server (PyTriton: Triton's core, HTTP front end and dynamic batcher) serving the exported tail.

The tail is the one in the splitter's Triton repository (``triton.zip``: the dequantizer inside, UINT8 codes in).
A robot with ROBOT_EDGE_PROTOCOL=oip sends it the codes and answers as it does through our own edge.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from common.codes import codes_name, codes_to_features, codes_width, features_to_codes
from model_splitter.store.triton_repository import TritonOptions, triton_repository_zip
from tests.edge_inference.support import features
from tests.support import TinySplit, robot_infer, running_service, upload_bundle
from tools.local_stack import ServiceProcess
from tools.triton_server import TritonUnavailable, running_triton

BATCHER_WAIT_US = 50_000  # long enough that concurrent requests always meet in one batch on a busy CI machine


@pytest.fixture(scope="module")
def triton_server(tmp_path_factory: pytest.TempPathFactory, tiny_split: TinySplit) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("triton")
    name, data = triton_repository_zip(tiny_split.registry, tiny_split.manifest.id, TritonOptions())
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(root / "repository")
    try:
        with running_triton(
            root / "repository" / name / "1" / "model.onnx", name, root, max_batch=16, delay_us=BATCHER_WAIT_US
        ) as server:
            yield server
    except TritonUnavailable as exc:
        pytest.skip(f"no Triton server here: {exc}")


def test_triton_serves_the_exported_tail_and_batches_robots(
    triton_server: ServiceProcess, tiny_split: TinySplit
) -> None:
    manifest = tiny_split.manifest
    (cut,) = manifest.cut
    client = triton.InferenceServerClient(triton_server.url.removeprefix("http://"), concurrency=8)
    try:
        metadata = client.get_model_metadata(manifest.readable_name)
        assert metadata["inputs"] == [
            {"name": codes_name(cut.name), "datatype": "UINT8", "shape": [-1, codes_width(manifest, cut)]}
        ]
        samples = [features_to_codes(manifest, [features(tiny_split, seed=seed)]) for seed in range(8)]
        before = _counts(client, manifest.readable_name)

        pending = []
        for codes in samples:  # all 8 in flight at once, as 8 robots' frames would be
            tensor = triton.InferInput(codes_name(cut.name), list(codes[codes_name(cut.name)].shape), "UINT8")
            tensor.set_data_from_numpy(codes[codes_name(cut.name)], binary_data=True)
            pending.append(client.async_infer(manifest.readable_name, [tensor]))
        answers = [request.get_result().as_numpy("output") for request in pending]
        after = _counts(client, manifest.readable_name)
    finally:
        client.close()
    session = ort.InferenceSession(str(tiny_split.registry.split_file(manifest.id, "tail.onnx")))
    for codes, answer in zip(samples, answers, strict=True):
        (expected,) = session.run(None, codes_to_features(manifest, codes))
        # Triton ran the frames as one batch: its matrix products sum in another order than a single sample's
        np.testing.assert_allclose(answer, expected, rtol=1e-4, atol=1e-5)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 8 and executions < 8  # Triton's dynamic batcher ran several robots' frames at once


def _counts(client: triton.InferenceServerClient, name: str) -> tuple[int, int]:
    (stats,) = client.get_inference_statistics(name)["model_stats"]
    return int(stats["inference_count"]), int(stats["execution_count"])


def test_a_robot_speaking_oip_answers_through_triton_as_through_our_edge(
    triton_server: ServiceProcess, tiny_split: TinySplit, tmp_path: Path
) -> None:
    with (
        running_service("edge_inference", "EDGE", tmp_path / "edge") as edge,
        running_service("robot_inference", "ROBOT", tmp_path / "frames", edge_url=edge.url) as frames,
        running_service(
            "robot_inference", "ROBOT", tmp_path / "oip", edge_url=triton_server.url, edge_protocol="oip"
        ) as robot,
    ):
        for service in (edge, frames, robot):
            upload_bundle(service, tiny_split.zip_bytes)
        through_triton = robot_infer(robot.url, mode="split")
        assert through_triton.status_code == 200, through_triton.text
        expected = robot_infer(frames.url, mode="split").json()
    result = through_triton.json()
    labels = [p["label"] for p in result["predictions"]]
    assert labels and labels == [p["label"] for p in expected["predictions"]]
    got = [p["probability"] for p in result["predictions"]]
    np.testing.assert_allclose(got, [p["probability"] for p in expected["predictions"]], atol=1e-5)
    assert any(stage["name"] == "edge round trip (oip)" for stage in result["stages"])
