"""Bits per channel by rate-distortion: the greedy allocation is the best one, wide channels get the bits, and a
split made with ``"allocation": "rate-distortion"`` is served by the real robot and edge exactly as its manifest
says (wire kind 8), at its own width and at an alternative one."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from common.errors import InvalidArgument
from common.imaging import decode_image, preprocess
from common.manifest import SplitManifest
from common.tensor_records import affine_channel_record, encode_features
from common.wire import TensorKind, encode_frame
from model_splitter.quantize.bit_allocation import allocate, allocated_range
from model_splitter.quantize.fidelity import roundtrip
from tests.edge_inference.support import post
from tests.support import SAMPLES, running_stack, tiny_classifier
from tools.local_stack import ServiceProcess

RNG = np.random.default_rng(5)


def test_the_greedy_widths_are_the_best_at_their_bytes() -> None:
    for _ in range(20):
        # Convex, falling error curves, as quantization error is in the number of bits.
        scale = RNG.uniform(0.1, 10.0, 4)
        table = scale[:, None] * np.power(4.0, -np.arange(8))[None, :] * RNG.uniform(0.8, 1.2, (4, 1))
        widths = allocate(table, 3)
        assert widths.sum() == 12
        best = min(
            (w for w in itertools.product(range(1, 9), repeat=4) if sum(w) == 12),
            key=lambda w: sum(table[c, b - 1] for c, b in enumerate(w)),
        )
        cost = sum(table[c, b - 1] for c, b in enumerate(widths))
        assert cost == pytest.approx(sum(table[c, b - 1] for c, b in enumerate(best)))


def test_channels_that_spread_wider_get_more_bits() -> None:
    fit = RNG.standard_normal((16, 4, 6, 6)).astype(np.float32) * np.array([0.01, 1.0, 10.0, 0.1])[None, :, None, None]
    clip = allocated_range("t", fit.astype(np.float32), 4)
    assert clip.channel_bits is not None and sum(clip.channel_bits) == 16
    assert clip.channel_bits[2] > clip.channel_bits[1] > clip.channel_bits[3] > clip.channel_bits[0]
    with pytest.raises(InvalidArgument, match="need a tensor with channels"):
        allocated_range("t", fit[:, :1], 4)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, ServiceProcess, ServiceProcess]]:
    with running_stack(tmp_path_factory.mktemp("allocation-stack")) as services:
        yield services


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _register(client: httpx.Client, seed: int) -> str:
    upload = {"file": (f"tiny-{seed}.onnx", tiny_classifier(seed=seed).SerializeToString())}
    model = client.post("/api/models", files=upload, data={"input_shape": "1,3,32,32", "task": "classification"})
    assert model.status_code == 201, model.text
    return str(model.json()["id"])


def _install(client: httpx.Client, split_id: str, *services: ServiceProcess) -> None:
    bundle = client.get(f"/api/splits/{split_id}/bundle.zip").content
    for service in services:
        installed = httpx.post(f"{service.url}/api/bundles", files={"bundle": ("b.zip", bundle)}, timeout=60)
        assert installed.status_code == 200, installed.text


def test_a_split_with_bits_per_channel_is_served_as_its_manifest_says(
    stack: tuple[ServiceProcess, ServiceProcess, ServiceProcess],
) -> None:
    splitter, robot, edge = stack
    image = (SAMPLES / "chelsea.jpg").read_bytes()
    with httpx.Client(base_url=splitter.url, timeout=300) as client:
        model_id = _register(client, 9)
        body = {"split_point": "block", "bits": 4, "allocation": "rate-distortion", "alternatives": [2]}
        response = client.post(f"/api/models/{model_id}/splits", json=body)
        assert response.status_code == 201, response.text
        manifest = SplitManifest.model_validate(response.json())
        q = manifest.quantization
        (clip,) = q.ranges
        assert q.scheme == "affine" and q.method == "calibrated" and clip.channel_bits is not None
        assert sum(clip.channel_bits) == 4 * len(clip.channel_bits) and len(set(clip.channel_bits)) > 1
        (variant,) = q.alternatives or []
        assert variant.ranges[0].channel_bits is not None and sum(variant.ranges[0].channel_bits) == 2 * 8
        assert manifest.verification.fidelity is not None and manifest.verification.fidelity.images == 32
        # 32 x 32 values a channel: byte-aligned blocks, so the quantizer graphs are made and checked too
        assert manifest.code_graphs is not None
        assert manifest.code_graphs.tail_max_abs_diff <= manifest.code_graphs.tail_tolerance

        _install(client, manifest.id, edge, robot)
        head = onnx.load_from_string(client.get(f"/api/splits/{manifest.id}/head.onnx").content)
        tail = onnx.load_from_string(client.get(f"/api/splits/{manifest.id}/tail.onnx").content)
        batch = preprocess(decode_image(image), manifest.preprocessing)
        (features,) = _session(head).run(None, {"input": batch})
        # Its own width through the robot, the alternative as a frame to the edge: kind 8 both.
        through_robot = httpx.post(
            f"{robot.url}/api/infer",
            files={"image": ("c.jpg", image)},
            data={"mode": "split", "split_id": manifest.id},
            timeout=60,
        )
        records = encode_features(manifest, [features], 2)
        assert [(r.kind, r.bits) for r in records] == [(TensorKind.AFFINE_MIXED, 2)]
        through_edge = post(edge, encode_frame(manifest.id, records))
        for answer, bits, ranges in ((through_robot, 4, clip), (through_edge, 2, variant.ranges[0])):
            assert answer.status_code == 200, answer.text
            (logits,) = _session(tail).run(None, {manifest.cut[0].name: roundtrip(features, bits, ranges)})
            assert [p["index"] for p in answer.json()["predictions"]] == list(np.argsort(-logits[0])[:5])
        # The same features at one width for all channels are not this split's frame.
        uniform = affine_channel_record(manifest.cut[0].name, features, 4, clip.channel_lo or [], clip.channel_hi or [])
        mismatch = post(edge, encode_frame(manifest.id, [uniform]))
        assert mismatch.status_code == 422 and "affine_mixed (kind 8)" in mismatch.json()["detail"], mismatch.text

        for wrong, words in (
            ({"clip": [0, 4]}, "leave clip out"),
            ({"bits": 16}, "need 1..8 bits"),
            ({"scheme": "clip"}, "affine codes"),
        ):
            refused = client.post(f"/api/models/{model_id}/splits", json={**body, "alternatives": [], **wrong})
            assert refused.status_code == 400 and words in refused.json()["detail"], refused.text


def test_a_tail_fine_tuned_on_the_channel_widths_keeps_them(
    stack: tuple[ServiceProcess, ServiceProcess, ServiceProcess],
) -> None:
    splitter, robot, edge = stack
    image = (SAMPLES / "chelsea.jpg").read_bytes()
    with httpx.Client(base_url=splitter.url, timeout=300) as client:
        model_id = _register(client, 10)
        body = {"split_point": "stem", "bits": 2, "allocation": "rate-distortion"}
        base = SplitManifest.model_validate(client.post(f"/api/models/{model_id}/splits", json=body).json())
        response = client.post(f"/api/splits/{base.id}/fine-tune", data={"steps": "20"})
        assert response.status_code == 201, response.text
        tuned = SplitManifest.model_validate(response.json())
        assert tuned.fine_tuning is not None and tuned.fine_tuning.base_split == base.id
        assert tuned.quantization == base.quantization
        # the tuned tail gets its own dequantizer graph, checked like the base's
        assert base.code_graphs is not None and tuned.code_graphs is not None
        assert tuned.code_graphs.head_sha256 == base.code_graphs.head_sha256
        assert tuned.code_graphs.tail_sha256 != base.code_graphs.tail_sha256
        (clip,) = tuned.quantization.ranges
        assert clip.channel_bits is not None and sum(clip.channel_bits) == 2 * len(clip.channel_bits)

        _install(client, tuned.id, edge, robot)
        head = onnx.load_from_string(client.get(f"/api/splits/{tuned.id}/head.onnx").content)
        tail = onnx.load_from_string(client.get(f"/api/splits/{tuned.id}/tail.onnx").content)
    (features,) = _session(head).run(None, {"input": preprocess(decode_image(image), tuned.preprocessing)})
    (logits,) = _session(tail).run(None, {tuned.cut[0].name: roundtrip(features, 2, clip)})
    answer = httpx.post(
        f"{robot.url}/api/infer",
        files={"image": ("c.jpg", image)},
        data={"mode": "split", "split_id": tuned.id},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert [p["index"] for p in answer.json()["predictions"]] == list(np.argsort(-logits[0])[:5])


def test_a_calibration_with_bits_per_channel_is_what_default_splits_use(
    stack: tuple[ServiceProcess, ServiceProcess, ServiceProcess],
) -> None:
    splitter, _, _ = stack
    with httpx.Client(base_url=splitter.url, timeout=300) as client:
        model_id = _register(client, 11)
        wrong = client.post(
            f"/api/models/{model_id}/calibrate", data={"allocation": "rate-distortion", "method": "percentile"}
        )
        assert wrong.status_code == 400 and "MSE ranges" in wrong.json()["detail"], wrong.text
        calibrated = client.post(
            f"/api/models/{model_id}/calibrate", data={"allocation": "rate-distortion", "bits": "2,4"}
        )
        assert calibrated.status_code == 200, calibrated.text
        result = calibrated.json()
        assert (result["allocation"], result["per_channel"], result["scheme"]) == ("rate-distortion", True, "affine")
        stored = result["points"]["block"]["bits"]["4"]
        (stored_range,) = stored["ranges"]
        assert sum(stored_range["channel_bits"]) == 4 * len(stored_range["channel_bits"])

        # With no clip and no allocation a split takes the calibration's, as it takes its scheme.
        default = client.post(f"/api/models/{model_id}/splits", json={"split_point": "block", "bits": 4})
        assert default.status_code == 201, default.text
        manifest = SplitManifest.model_validate(default.json())
        assert manifest.quantization.ranges[0].model_dump(mode="json", exclude_none=True) == stored_range
        assert manifest.verification.fidelity is not None
        assert manifest.verification.fidelity.top1_agreement == stored["top1_agreement"]
        # Asking for uniform bits is a fresh calibration of the point, not the stored one.
        uniform = client.post(
            f"/api/models/{model_id}/splits", json={"split_point": "block", "bits": 4, "allocation": "uniform"}
        )
        assert uniform.status_code == 201, uniform.text
        assert uniform.json()["quantization"]["ranges"][0].get("channel_bits") is None
        insisted = client.post(
            f"/api/models/{model_id}/splits",
            json={"split_point": "block", "bits": 4, "allocation": "uniform", "clip": "calibrated"},
        )
        assert insisted.status_code == 422 and "spread its bits rate-distortion" in insisted.json()["detail"]
