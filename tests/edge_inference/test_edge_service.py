"""The edge as a real uvicorn process: deploy from a bundle, answer frames, refuse bad ones with the right status."""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from common.tensor_records import affine_record, decode_features, encode_features, quantized_record
from common.wire import TensorKind, TensorRecord, decode_frame, encode_frame
from tests.edge_inference.support import MAX_FRAME, features, frame_for, post
from tests.support import SAMPLES, TinySplit, running_service, upload_bundle
from tools.local_stack import ServiceProcess


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, clip_split: TinySplit) -> Iterator[ServiceProcess]:
    data_dir = tmp_path_factory.mktemp("edge")
    with running_service("edge_inference", "EDGE", data_dir, max_frame_bytes=str(MAX_FRAME)) as service:
        response = httpx.post(
            f"{service.url}/api/bundles", files={"bundle": ("b.zip", clip_split.zip_bytes)}, timeout=60
        )
        assert response.status_code == 200, response.text
        yield service


def test_frame_gives_the_tail_answer(edge: ServiceProcess, clip_split: TinySplit) -> None:
    import onnxruntime as ort

    x = features(clip_split, batch=3)
    response = post(edge, frame_for(clip_split, x))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["split_id"] == clip_split.manifest.id
    assert body["mode"] == "split"
    assert len(body["batch_predictions"]) == 3
    # Exactly what the tail gives on the dequantized features, computed here independently.
    step = 32.0 / 15
    dequantized = (np.clip(np.rint(x / step), 0, 15) * step).astype(np.float32)
    tail = ort.InferenceSession(str(clip_split.registry.split_file(clip_split.manifest.id, "tail.onnx")))
    logits = tail.run(None, {clip_split.manifest.cut[0].name: dequantized})[0]
    assert [p["index"] for p in body["predictions"]] == list(np.argsort(-logits[0])[:5])
    assert body["received_bytes"] == len(frame_for(clip_split, x))


def test_encoded_image_runs_the_whole_model(edge: ServiceProcess, clip_split: TinySplit) -> None:
    image = (SAMPLES / "chelsea.jpg").read_bytes()
    record = TensorRecord("image", TensorKind.ENCODED_IMAGE, 8, 0.0, 0.0, (len(image),), image)
    response = post(edge, encode_frame(clip_split.manifest.id, [record]))
    assert response.status_code == 200, response.text
    assert response.json()["mode"] == "all-edge"
    assert [s["name"] for s in response.json()["stages"]][:3] == ["parse", "decode", "preprocess"]


def test_unknown_split_is_409(edge: ServiceProcess, clip_split: TinySplit) -> None:
    record = quantized_record(clip_split.manifest.cut[0].name, features(clip_split), 4, 0.0, 32.0)
    response = post(edge, encode_frame("ab" * 32, [record]))
    assert response.status_code == 409
    assert "ab" * 32 in response.json()["detail"]


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda f: b"XXXX" + f[4:], "magic"),
        (lambda f: f[:-9], "CRC32"),
        (lambda f: f[:30], "truncated"),
        (lambda f: f[:-4] + bytes([f[-5] ^ 1]) + f[-4:], "CRC32"),
    ],
)
def test_malformed_frames_are_400(edge: ServiceProcess, clip_split: TinySplit, mutate, words: str) -> None:  # type: ignore[no-untyped-def]
    response = post(edge, mutate(frame_for(clip_split, features(clip_split))))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_frame"


def test_bits_and_range_not_matching_the_manifest_are_422(edge: ServiceProcess, clip_split: TinySplit) -> None:
    wrong_bits = post(edge, frame_for(clip_split, features(clip_split), bits=8))
    assert wrong_bits.status_code == 422
    assert "8 bits" in wrong_bits.json()["detail"]
    wrong_range = post(edge, frame_for(clip_split, features(clip_split), lo=0.0, hi=16.0))
    assert wrong_range.status_code == 422
    assert "range" in wrong_range.json()["detail"]


def test_wrong_shape_is_422(edge: ServiceProcess, clip_split: TinySplit) -> None:
    x = np.zeros((1, 8, 16, 16), dtype=np.float32)
    response = post(edge, frame_for(clip_split, x))
    assert response.status_code == 422
    assert "shape" in response.json()["detail"]


def test_oversized_frame_is_413_even_without_content_length(edge: ServiceProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_FRAME // 4096 + 2):
            yield b"\0" * 4096

    response = httpx.post(f"{edge.url}/api/infer", content=chunks(), timeout=30)
    assert response.status_code == 413


def test_health_reports_the_provider_in_use(edge: ServiceProcess, clip_split: TinySplit) -> None:
    health = httpx.get(f"{edge.url}/health").json()
    assert health["active_split_id"] == clip_split.manifest.id
    assert health["deployed"][0]["provider"] == "CPUExecutionProvider"
    assert "CPUExecutionProvider" in health["available_providers"]


def test_bundle_that_does_not_match_its_manifest_is_refused(edge: ServiceProcess, clip_split: TinySplit) -> None:
    import io
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(clip_split.zip_bytes))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, data + b"\0" if name == "tail.onnx" else data)
    response = httpx.post(f"{edge.url}/api/bundles", files={"bundle": ("b.zip", buffer.getvalue())})
    assert response.status_code == 400
    assert "sha256" in response.json()["detail"]
    not_zip = httpx.post(f"{edge.url}/api/bundles", files={"bundle": ("b.zip", b"hello")})
    assert not_zip.status_code == 400


def test_restart_keeps_deployed_splits(tmp_path: Path, clip_split: TinySplit) -> None:
    with running_service("edge_inference", "EDGE", tmp_path) as first:
        httpx.post(f"{first.url}/api/bundles", files={"bundle": ("b.zip", clip_split.zip_bytes)}, timeout=60)
    with running_service("edge_inference", "EDGE", tmp_path) as second:
        response = post(second, frame_for(clip_split, features(clip_split)))
        assert response.status_code == 200, response.text


def test_crc_is_over_every_byte_before_it(clip_split: TinySplit) -> None:
    frame = frame_for(clip_split, features(clip_split))
    (crc,) = struct.unpack("<I", frame[-4:])
    assert crc == zlib.crc32(frame[:-4])


def test_live_at_once_ready_only_with_a_split(tmp_path: Path, clip_split: TinySplit) -> None:
    with running_service("edge_inference", "EDGE", tmp_path) as fresh:
        assert httpx.get(f"{fresh.url}/health/live", timeout=30).json() == {"status": "ok", "service": "edge"}
        waiting = httpx.get(f"{fresh.url}/health/ready", timeout=30)
        assert waiting.status_code == 503 and waiting.json()["error"] == "not_ready"
        assert "deploy" in waiting.json()["detail"]
        upload_bundle(fresh, clip_split.zip_bytes)
        ready = httpx.get(f"{fresh.url}/health/ready", timeout=30)
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "service": "edge"}
        in_force = httpx.get(f"{fresh.url}/health", timeout=30).json()["provider_options"]
        assert "CPUExecutionProvider" in in_force  # and TensorRT's options only where the build has it


def test_metrics_carry_the_process_figures_and_logs_carry_utc_milliseconds(edge: ServiceProcess) -> None:
    metrics = httpx.get(f"{edge.url}/metrics", timeout=30).text
    assert "process_resident_memory_bytes" in metrics and "python_info" in metrics
    lines = [json.loads(line) for line in edge.log_path.read_text().splitlines() if line.startswith("{")]
    assert lines and all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"]) for entry in lines
    )


def test_affine_and_coded_frames_of_a_new_split(tmp_path: Path, tiny_split: TinySplit) -> None:
    """A split made today (affine codes, Zstandard coding): the robot's own encoder's frames are answered with
    exactly what the tail gives on the decoded codes; a frame of the other scheme or with another scale is 422."""
    import onnxruntime as ort

    manifest = tiny_split.manifest
    assert (manifest.quantization.scheme, manifest.quantization.entropy) == ("affine", "zstd")
    x = np.maximum(features(tiny_split, batch=2) - 30.0, 0.0)  # sparse, as after a ReLU: coding pays
    records = encode_features(manifest, [x])
    assert records[0].kind is TensorKind.AFFINE and records[0].coded
    with running_service("edge_inference", "EDGE", tmp_path) as edge:
        upload_bundle(edge, tiny_split.zip_bytes)
        frame = encode_frame(manifest.id, records)
        response = post(edge, frame)
        assert response.status_code == 200, response.text
        tail = ort.InferenceSession(str(tiny_split.registry.split_file(manifest.id, "tail.onnx")))
        feeds = decode_features(manifest, list(decode_frame(frame).tensors))
        assert (feeds[manifest.cut[0].name][x == 0] == 0).all()  # zero is a code: it arrives as exactly 0.0
        logits = tail.run(None, feeds)[0]
        assert [p["index"] for p in response.json()["predictions"]] == list(np.argsort(-logits[0])[:5])

        clip = manifest.quantization.ranges[0]
        old_kind = post(edge, encode_frame(manifest.id, [quantized_record(clip.name, x, 4, clip.lo, clip.hi)]))
        assert old_kind.status_code == 422 and "affine (kind 6)" in old_kind.json()["detail"]
        other = affine_record(clip.name, x, 4, clip.lo, clip.hi * 2)
        wrong_scale = post(edge, encode_frame(manifest.id, [other]))
        assert wrong_scale.status_code == 422 and "scale" in wrong_scale.json()["detail"]
