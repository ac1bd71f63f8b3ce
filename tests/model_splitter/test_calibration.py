"""Calibration: range estimators against known answers, the calibration images, the registry, and the REST flow
(calibrate, read back, cut a calibrated split, run it through robot and edge)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from common.errors import BadRequest, InvalidArgument, NotFound
from common.imaging import decode_image, preprocess
from common.manifest import Quantization, SplitManifest, TensorRange, compute_split_id, parse_manifest
from model_splitter.graph.cutting import cut_model
from model_splitter.quantize.calibration import estimate_ranges
from model_splitter.quantize.fidelity import roundtrip
from model_splitter.quantize.images import bundled_images, calibration_sets, held_out_images
from model_splitter.quantize.range_estimators import aciq_alpha, aciq_range, mse_range, percentile_range, samples_of
from model_splitter.records import CalibrationResult
from model_splitter.services.calibration import load_fidelity
from model_splitter.services.models import default_preprocessing
from model_splitter.store.registry import Registry
from model_splitter.store.samples import calibration_photos
from tests.support import SAMPLES, TinySplit, running_stack, tiny_classifier
from tools.local_stack import ServiceProcess

RNG = np.random.default_rng(0)
# Banner et al.'s clip points per bit width, in units of b (Laplace) and sigma (Gaussian).
LAPLACE = {2: 2.83, 3: 3.89, 4: 5.03, 5: 6.2, 6: 7.41, 7: 8.64, 8: 9.89}
GAUSS = {2: 1.71, 3: 2.15, 4: 2.55, 5: 2.94, 6: 3.29, 7: 3.61, 8: 3.92}


def as_tensor(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32).reshape(1, 1, -1)


# ------------------------------------------------------------------------------------------ estimators


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_mse_on_uniform_data(bits: int) -> None:
    # For U[0, 1] with lo = 0, levels L = 2**bits - 1 the squared error is L s^3 / 12 + (1 - L s)^3 / 3 for a step
    # s, minimal at s = 1 / (L + 1/2): the best hi is 2L / (2L + 1), the max itself only in the limit.
    x = as_tensor(RNG.uniform(0.0, 1.0, 400_000))
    lo, hi = mse_range(samples_of(x, False), bits)
    levels = 2**bits - 1
    assert lo[0] == 0.0
    assert hi[0] == pytest.approx(2 * levels / (2 * levels + 1), abs=0.01)
    if bits == 8:
        assert hi[0] > 0.99 * x.max()


def test_mse_signed_and_outliers() -> None:
    x = as_tensor(RNG.uniform(-1.0, 1.0, 200_000))
    lo, hi = mse_range(samples_of(x, False), 8)
    assert lo[0] == pytest.approx(-1.0, abs=0.01) and hi[0] == pytest.approx(1.0, abs=0.01)
    # A few huge outliers: clipping them costs far less than the resolution lost by covering them.
    spiky = as_tensor(np.concatenate([RNG.uniform(0.0, 1.0, 200_000), [10.0] * 3]))
    _, hi = mse_range(samples_of(spiky, False), 4)
    assert 0.5 < hi[0] < 2.0


def test_percentile_is_exact_on_a_known_array() -> None:
    x = np.arange(100_001, dtype=np.float32)  # the 99.99th percentile is 99990, the 0.01th is 10
    lo, hi = percentile_range(samples_of(as_tensor(x), False))
    assert lo[0] == 0.0 and hi[0] == pytest.approx(99990.0, rel=1e-12)
    ranges = estimate_ranges(tiny_classifier(), "c1", as_tensor(x - 50_000), [2, 8], "percentile")
    assert [(r.lo, r.hi) for r in ranges.values()] == [(-49990.0, 49990.0)] * 2  # float32, as the wire carries


def test_aciq_alpha_matches_the_published_tables() -> None:
    for bits in LAPLACE:
        assert aciq_alpha("laplace", bits) == pytest.approx(LAPLACE[bits], abs=0.011)
        assert aciq_alpha("gauss", bits) == pytest.approx(GAUSS[bits], abs=0.011)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_aciq_picks_the_right_fit(bits: int) -> None:
    laplace = as_tensor(RNG.laplace(0.0, 2.0, 1_000_000))
    lo, hi = aciq_range(samples_of(laplace, False), bits)
    assert hi[0] == pytest.approx(LAPLACE[bits] * 2.0, rel=0.03) and lo[0] == pytest.approx(-hi[0], rel=0.03)
    gauss = as_tensor(RNG.normal(1.0, 0.5, 1_000_000))
    lo, hi = aciq_range(samples_of(gauss, False), bits)
    assert (hi[0] - lo[0]) / 2 == pytest.approx(GAUSS[bits] * 0.5, rel=0.03) and (hi[0] + lo[0]) / 2 == pytest.approx(
        1.0, abs=0.01
    )
    # Post-ReLU: half zeros, the positive part exponential with scale 2 -> [0, alpha(bits + 1) * 2].
    relu = as_tensor(np.where(RNG.random(1_000_000) < 0.5, 0.0, RNG.exponential(2.0, 1_000_000)))
    lo, hi = aciq_range(samples_of(relu, False), bits)
    assert lo[0] == 0.0 and hi[0] == pytest.approx(min(aciq_alpha("laplace", bits + 1) * 2.0, relu.max()), rel=0.03)


def test_per_channel_ranges_follow_each_channel() -> None:
    scales = np.array([0.1, 1.0, 100.0])
    x = (RNG.uniform(0.0, 1.0, (16, 3, 8, 8)) * scales[None, :, None, None]).astype(np.float32)
    model = tiny_classifier()
    per_tensor = estimate_ranges(model, "r1", x, [4], "mse")[4]
    per_channel = estimate_ranges(model, "r1", x, [4], "mse", per_channel=True)[4]
    assert per_tensor.channel_lo is None and per_channel.channel_lo == [0.0, 0.0, 0.0]
    assert per_channel.channel_hi is not None
    assert np.allclose(np.array(per_channel.channel_hi) / scales, 2 * 15 / 31, rtol=0.03)
    assert (per_channel.lo, per_channel.hi) == (0.0, max(per_channel.channel_hi))

    def small_channels_noise(clip: object) -> float:
        return float(np.sum((roundtrip(x, 4, clip) - x)[:, :2] ** 2))  # type: ignore[arg-type]

    assert small_channels_noise(per_channel) < small_channels_noise(per_tensor) / 100


def test_fixed_and_wide_bits_use_the_defaults() -> None:
    model = tiny_classifier()
    x = RNG.normal(0.0, 1.0, (4, 8, 4, 4)).astype(np.float32)
    fixed = estimate_ranges(model, "r1", x, [2, 8], "fixed")
    assert [(r.lo, r.hi) for r in fixed.values()] == [(0.0, 32.0), (0.0, 32.0)]
    wide = estimate_ranges(model, "c1", x, [4, 16, 32], "aciq")
    assert [(r.lo, r.hi) for b, r in wide.items() if b > 8] == [(-32.0, 32.0), (-32.0, 32.0)]
    assert wide[4].lo < 0 < wide[4].hi
    with pytest.raises(InvalidArgument, match="per-channel ranges need a data-driven method"):
        estimate_ranges(model, "r1", x, [4], "fixed", per_channel=True)
    with pytest.raises(InvalidArgument, match="method must be one of fixed, percentile, mse, aciq"):
        estimate_ranges(model, "r1", x, [4], "minmax")  # type: ignore[arg-type]


def test_bundled_calibration_images() -> None:
    images = bundled_images(calibration_photos())
    held_out = held_out_images(calibration_photos())
    assert len(images) == 16 and len({name for name, _ in images}) == 16
    assert len(held_out) == 32 and not {name for name, _ in images} & {name for name, _ in held_out}
    sets = calibration_sets(None, default_preprocessing((1, 3, 32, 32)), calibration_photos())
    assert sets.fit.shape == (16, 3, 32, 32) and sets.held_out.shape == (32, 3, 32, 32) and sets.source == "bundled"
    inputs = {row.tobytes() for row in np.concatenate([sets.fit, sets.held_out])}
    assert len(inputs) == 48  # no input in both sets, none twice
    photos = [(SAMPLES / name).read_bytes() for name in ("coffee.jpg", "chelsea.jpg", "rocket.jpg")]
    uploaded = calibration_sets(photos, default_preprocessing((1, 1, 20, 24)))
    assert (uploaded.fit.shape, uploaded.held_out.shape) == ((2, 1, 20, 24), (1, 1, 20, 24))
    with pytest.raises(InvalidArgument, match="at least 2 calibration images"):
        calibration_sets(photos[:1], default_preprocessing((1, 1, 20, 24)))


def test_registry_keeps_the_latest_calibration(tiny_split: TinySplit) -> None:
    registry = tiny_split.registry
    model_id = tiny_split.manifest.model_id
    assert registry.get_calibration(model_id) is None and load_fidelity(registry, model_id) is None
    result = CalibrationResult.model_validate(
        {
            "model_id": model_id,
            "method": "mse",
            "per_channel": False,
            "bits": [4],
            "images": 3,
            "image_source": "bundled",
            "created_at": "now",
            "seconds": 1.0,
            "points": {
                "block": {
                    "tensors": ["r2"],
                    "bits": {
                        "4": {
                            "lo": 0.0,
                            "hi": 2.0,
                            "ranges": [{"name": "r2", "lo": 0.0, "hi": 2.0}],
                            "top1_agreement": 1.0,
                            "cosine": 0.99,
                            "sqnr_db": 20.0,
                        }
                    },
                }
            },
        }
    )
    registry.save_calibration(result)
    registry.save_calibration(result.model_copy(update={"seconds": 2.0}))
    stored = registry.get_calibration(model_id)
    assert stored is not None and stored.seconds == 2.0
    assert list((registry.root / "staging").iterdir()) == []
    fidelity = load_fidelity(registry, model_id)
    assert fidelity is not None and fidelity[("block", 4)].sqnr_db == 20.0 and fidelity[("block", 4)].images == 3
    (registry.model_dir(model_id) / "calibration.json").unlink()


# ------------------------------------------------------------------------------------ through the services


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServiceProcess, ServiceProcess, ServiceProcess]]:
    root = tmp_path_factory.mktemp("calibration-stack")
    with running_stack(root) as services:
        yield services


def _expected_logits(client: httpx.Client, manifest: SplitManifest, image: bytes, bits: int) -> np.ndarray:
    """What the edge must answer: the tail on the dequantized head output, computed here with the manifest's ranges."""
    model = onnx.load_from_string(client.get(f"/api/models/{manifest.model_id}/model.onnx").content)
    head, tail = cut_model(model, [spec.name for spec in manifest.cut])
    batch = preprocess(decode_image(image), manifest.preprocessing)
    (features,) = ort.InferenceSession(head.SerializeToString()).run(None, {"input": batch})
    restored = roundtrip(features, bits, manifest.quantization.ranges[0])
    logits: np.ndarray = ort.InferenceSession(tail.SerializeToString()).run(None, {manifest.cut[0].name: restored})[0]
    return logits[0]


def test_calibrate_then_split_through_the_services(
    stack: tuple[ServiceProcess, ServiceProcess, ServiceProcess],
) -> None:
    splitter, robot, edge = stack
    image = (SAMPLES / "chelsea.jpg").read_bytes()
    with httpx.Client(base_url=splitter.url, timeout=300) as client:
        upload = {"file": ("tiny.onnx", tiny_classifier().SerializeToString())}
        form = {"input_shape": "1,3,32,32", "task": "classification"}
        model_id = client.post("/api/models", files=upload, data=form).json()["id"]
        missing = client.get(f"/api/models/{model_id}/calibration")
        assert missing.status_code == 404 and f"POST /api/models/{model_id}/calibrate" in missing.json()["detail"]
        early = client.post(
            f"/api/models/{model_id}/splits", json={"split_point": "block", "bits": 4, "clip": "calibrated"}
        )
        assert early.status_code == 422 and f"calibrate first: POST /api/models/{model_id}/calibrate" in early.text
        bad = client.post(f"/api/models/{model_id}/calibrate", data={"method": "fixed", "per_channel": "true"})
        assert bad.status_code == 400

        # Per tensor on two uploaded images, then per channel on the bundled set (the one kept).
        two = [("images", ("a.jpg", image)), ("images", ("b.jpg", (SAMPLES / "coffee.jpg").read_bytes()))]
        uploaded = client.post(f"/api/models/{model_id}/calibrate", files=two, data={"method": "aciq", "bits": "2,8"})
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["images"] == 1 and uploaded.json()["fit_images"] == 1
        assert uploaded.json()["image_source"] == "uploaded" and uploaded.json()["scheme"] == "affine"
        response = client.post(
            f"/api/models/{model_id}/calibrate", data={"method": "mse", "per_channel": "true", "bits": ["4", "32"]}
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert client.get(f"/api/models/{model_id}/calibration").json() == result
        assert (result["images"], result["fit_images"], result["bits"]) == (32, 16, [4, 32]) and result["per_channel"]
        assert list(result["points"]) == ["stem.conv", "stem", "block.conv", "block", "pool", "flatten"]
        block = result["points"]["block"]
        assert block["tensors"] == ["r2"] and len(block["bits"]["4"]["channel_hi"]) == 8
        assert block["bits"]["32"]["top1_agreement"] == 1.0 and block["bits"]["32"]["sqnr_db"] == 200.0
        assert 0.0 <= block["bits"]["4"]["top1_agreement"] <= 1.0 and block["bits"]["4"]["sqnr_db"] < 200.0

        splits = {}
        for bits in (32, 4):
            request = {"split_point": "block", "bits": bits, "clip": "calibrated"}
            created = client.post(f"/api/models/{model_id}/splits", json=request)
            assert created.status_code == 201, created.text
            manifest = SplitManifest.model_validate(created.json())
            assert manifest.quantization.method == "calibrated"
            fidelity = manifest.verification.fidelity
            assert fidelity is not None and fidelity.sqnr_db == block["bits"][str(bits)]["sqnr_db"]
            splits[bits] = manifest
        assert splits[4].quantization.ranges[0].channel_hi == block["bits"]["4"]["channel_hi"]
        other = client.post(
            f"/api/models/{model_id}/splits", json={"split_point": "block", "bits": 8, "clip": "calibrated"}
        )
        assert other.status_code == 422 and "with bits=8" in other.text

        for bits, manifest in splits.items():
            bundle = client.get(f"/api/splits/{manifest.id}/bundle.zip").content
            for service in (edge, robot):
                installed = httpx.post(f"{service.url}/api/bundles", files={"bundle": ("b.zip", bundle)}, timeout=60)
                assert installed.status_code == 200, installed.text
            data = {"split_id": manifest.id}
            answer = client.post("/api/infer", files={"image": ("c.jpg", image)}, data=data).json()
            everything = httpx.post(
                f"{robot.url}/api/infer",
                files={"image": ("c.jpg", image)},
                data={"mode": "all-robot", "split_id": manifest.id},
                timeout=60,
            ).json()
            if bits == 32:  # float32 on the wire: the whole model's answer
                assert answer["agrees_with_reference"] is True
                assert [p["index"] for p in answer["predictions"]] == [p["index"] for p in everything["predictions"]]
            else:  # per-channel kind 5 frames: exactly the tail on the dequantized features
                logits = _expected_logits(client, manifest, image, bits)
                assert [p["index"] for p in answer["predictions"]] == list(np.argsort(-logits)[:5])


def test_manifest_channel_ranges(tiny_split: TinySplit) -> None:
    made = tiny_split.manifest
    assert (made.quantization.scheme, made.quantization.entropy, made.quantization.method) == (
        "affine",
        "zstd",
        "calibrated",
    )
    # Manifests without the newer optional fields serialise exactly as before, so their ids do not change.
    manifest = made.model_copy(
        update={
            "quantization": Quantization(bits=4, ranges=[TensorRange(name="r2", lo=0.0, hi=32.0)]),
            "verification": made.verification.model_copy(update={"fidelity": None}),
        }
    )
    body = json.loads(manifest.to_json_bytes())
    assert set(body["quantization"]) == {"bits", "method", "ranges"}
    assert set(body["quantization"]["ranges"][0]) == {"name", "lo", "hi"}
    assert "fidelity" not in body["verification"]
    ranges = [TensorRange(name="r2", lo=0.0, hi=2.0, channel_lo=[0.0] * 8, channel_hi=[1.0] * 7 + [2.0])]
    per_channel = manifest.model_copy(
        update={"quantization": manifest.quantization.model_copy(update={"ranges": ranges})}
    )
    again = parse_manifest(per_channel.with_id().to_json_bytes())
    assert again.quantization.ranges[0].channel_hi == [1.0] * 7 + [2.0]
    body["quantization"]["ranges"] = [{"name": "r2", "lo": 0.0, "hi": 1.0, "channel_lo": [0.0], "channel_hi": [1.0]}]
    body["id"] = compute_split_id(body)
    with pytest.raises(BadRequest, match="one value per channel"):
        parse_manifest(json.dumps(body))
    with pytest.raises(ValueError, match="channel 1 must be finite float32 values with lo < hi"):
        TensorRange(name="t", lo=0.0, hi=1.0, channel_lo=[0.0, 1.0], channel_hi=[1.0, 1.0])


def test_calibration_of_an_unknown_model_is_not_found(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    with pytest.raises(NotFound, match="no model"):
        registry.get_calibration("0" * 16)
