"""The export most users make, ``torch.onnx.export(model, torch.randn(1, 3, 224, 224), f)`` with no
``dynamic_axes``, through the whole system: uploaded, split at every point, calibrated, deployed, served in all three
modes (trained ImageNet weights, so the answers can be compared)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import torchvision

from tests.support import SAMPLES
from tools.assets import ensure
from tools.local_stack import LocalStack

MODES = ("split", "all-robot", "all-edge")
PHOTOS = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg")


def fixed_batch_export(path: Path) -> bytes:
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(ensure("mobilenet_v2"), weights_only=True))
    torch.onnx.export(model.eval(), (torch.randn(1, 3, 224, 224),), path, dynamo=False)
    return path.read_bytes()


@pytest.mark.slow
def test_a_fixed_batch_torchvision_export_splits_calibrates_deploys_and_answers_in_every_mode(
    stack: LocalStack, tmp_path: Path
) -> None:
    with httpx.Client(base_url=stack.splitter_url, timeout=600) as client:
        created = client.post(
            "/api/models",
            files={"file": ("mobilenet_v2_fixed.onnx", fixed_batch_export(tmp_path / "mobilenet_v2.onnx"))},
            data={"task": "classification", "name": "mobilenet_v2 (fixed batch)"},
        )
        assert created.status_code == 201, created.text
        model: dict[str, Any] = created.json()
        assert model["fixed_batch"] == 1 and model["input_shape"] == [1, 3, 224, 224]
        labels = [point["label"] for point in model["split_points"]]
        assert len(labels) >= 40, labels
        for label in labels:  # 16 bits: the head/tail check alone, at the model's own batch
            split = client.post(f"/api/models/{model['id']}/splits", json={"split_point": label, "bits": 16})
            assert split.status_code == 201, (label, split.text)
            assert split.json()["verification"]["head_tail_max_abs_diff"] <= 1e-4, label

        # 8 bits: calibrated on the bundled photos as the split is made, fidelity on the held-out ones
        split = client.post(f"/api/models/{model['id']}/splits", json={"split_point": "features.14", "bits": 8})
        assert split.status_code == 201, split.text
        manifest = split.json()
        assert manifest["quantization"]["method"] == "calibrated"
        assert manifest["verification"]["fidelity"]["top1_agreement"] >= 0.9
        split_id = split.json()["id"]
        assert client.post(f"/api/splits/{split_id}/deploy").status_code == 200

    for photo in PHOTOS:
        files = {"image": (photo, (SAMPLES / photo).read_bytes())}
        reference = httpx.post(f"{stack.splitter_url}/api/infer", files=files, data={"split_id": split_id}, timeout=120)
        assert reference.status_code == 200, reference.text
        expected = reference.json()["reference_answer"]["predictions"][0]["label"]
        for mode in MODES:
            answer = httpx.post(
                f"{stack.robot_url}/api/infer", files=files, data={"mode": mode, "split_id": split_id}, timeout=120
            )
            assert answer.status_code == 200, (mode, answer.text)
            assert answer.json()["answer"]["predictions"][0]["label"] == expected, (photo, mode)
