"""Detection, segmentation and raw answers through the real robot and edge, in all three modes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from common.postprocess.agreement import detection_recovery, mask_agreement
from common.postprocess.answers import Answer
from common.postprocess.detection import iou_matrix
from common.postprocess.segmentation import decode_png
from tests.support import SAMPLES, tiny_classifier
from tools.assets import ensure
from tools.local_stack import LocalStack

MODES = ("split", "all-robot", "all-edge")
LAYOUT_POINT = "div#8"  # a cut a third of the way into the backbone (ops have no module paths in this export)


def register(stack: LocalStack, form: dict[str, str], files: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(f"{stack.splitter_url}/api/models", data=form, files=files, timeout=600)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def deployed_split(stack: LocalStack, model_id: str, point: str, bits: int) -> str:
    with httpx.Client(base_url=stack.splitter_url, timeout=600) as client:
        created = client.post(f"/api/models/{model_id}/splits", json={"split_point": point, "bits": bits})
        assert created.status_code == 201, created.text
        split_id: str = created.json()["id"]
        assert client.post(f"/api/splits/{split_id}/deploy").status_code == 200
    return split_id


def robot_answer(stack: LocalStack, image: str, split_id: str, mode: str, **options: str) -> Answer:
    form = {"mode": mode, "split_id": split_id, **options}
    files = {"image": (image, (SAMPLES / image).read_bytes())}
    response = httpx.post(f"{stack.robot_url}/api/infer", files=files, data=form, timeout=120)
    assert response.status_code == 200, response.text
    return Answer.model_validate(response.json()["answer"])


def reference_answer(stack: LocalStack, image: str, split_id: str, **options: str) -> Answer:
    """The unsplit float model on the splitter, as POST /api/infer reports it beside the robot's answer."""
    files = {"image": (image, (SAMPLES / image).read_bytes())}
    response = httpx.post(
        f"{stack.splitter_url}/api/infer", files=files, data={"split_id": split_id, **options}, timeout=120
    )
    assert response.status_code == 200, response.text
    return Answer.model_validate(response.json()["reference_answer"])


def boxes(answer: Answer) -> np.ndarray:
    return np.asarray([d.box for d in answer.detections]).reshape(-1, 4)


@pytest.fixture(scope="module")
def layout_model(stack: LocalStack) -> dict[str, Any]:
    with open(ensure("layout_cdla"), "rb") as handle:
        return register(stack, {"task": "detection"}, {"file": ("layout_cdla.onnx", handle.read())})


def test_the_layout_detector_registers_as_a_picodet_with_its_class_names(
    stack: LocalStack, layout_model: dict[str, Any]
) -> None:
    post = layout_model["postprocessing"]
    assert post["task"] == "detection" and post["detection"]["decoder"] == "picodet"
    pre = layout_model["preprocessing"]
    assert (pre["resize"], pre["crop"]) == ("stretch", [800, 608])
    labels = httpx.get(f"{stack.splitter_url}/api/models/{layout_model['id']}/labels").json()
    assert labels[:3] == ["text", "title", "figure"] and len(labels) == 10


@pytest.mark.parametrize("image", ["page.png", "text.png"])
def test_layout_boxes_at_8_bits_match_the_unsplit_model_in_every_mode(
    stack: LocalStack, layout_model: dict[str, Any], image: str
) -> None:
    split_id = deployed_split(stack, layout_model["id"], LAYOUT_POINT, 8)
    reference = reference_answer(stack, image, split_id, score_threshold="0.3")
    assert reference.detections, "the trained detector finds the page's blocks"
    for mode in MODES:
        found = robot_answer(stack, image, split_id, mode, score_threshold="0.3")
        assert [d.label for d in found.detections] == [d.label for d in reference.detections], mode
        ious = np.diag(iou_matrix(boxes(found), boxes(reference)))
        assert (ious >= 0.9).all(), (mode, ious)
        width, height = _size(image)
        assert (boxes(found)[:, [0, 2]] <= width).all() and (boxes(found)[:, [1, 3]] <= height).all()


@pytest.mark.parametrize("point", ["div#4", "div#11"])
def test_layout_boxes_at_4_bits_stay_with_the_ranges_fitted_as_the_split_is_made(
    stack: LocalStack, layout_model: dict[str, Any], point: str
) -> None:
    # A detector's raw head at 4 bits: with the graph's default ranges div#11 loses every box (the detection
    # bench); the ranges calibrated as the split is made keep each of the float model's boxes, same class.
    split_id = deployed_split(stack, layout_model["id"], point, 4)
    manifest = httpx.get(f"{stack.splitter_url}/api/splits/{split_id}").json()
    assert manifest["quantization"]["method"] == "calibrated"
    for image in ("page.png", "text.png"):
        reference = reference_answer(stack, image, split_id, score_threshold="0.3")
        found = robot_answer(stack, image, split_id, "split", score_threshold="0.3")
        recovered, mean_iou = detection_recovery(reference.detections, found.detections)
        assert reference.detections and recovered == 1.0 and mean_iou >= 0.8, (image, found.detections)


def test_detection_options_reach_the_edge(stack: LocalStack, layout_model: dict[str, Any]) -> None:
    split_id = deployed_split(stack, layout_model["id"], LAYOUT_POINT, 8)
    assert len(robot_answer(stack, "page.png", split_id, "split", score_threshold="0.3").detections) == 2
    assert len(robot_answer(stack, "page.png", split_id, "split", max_detections="1").detections) == 1
    assert robot_answer(stack, "page.png", split_id, "split", score_threshold="0.99").detections == []
    refused = httpx.post(
        f"{stack.robot_url}/api/infer",
        files={"image": ("p.png", (SAMPLES / "page.png").read_bytes())},
        data={"split_id": split_id, "iou_threshold": "1.5"},
        timeout=60,
    )
    assert refused.status_code == 400 and "iou_threshold" in refused.json()["detail"]


@pytest.mark.parametrize("arch", ["ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"])
def test_torchvision_detectors_by_name_answer_detections(stack: LocalStack, arch: str) -> None:
    model = register(stack, {"arch": arch, "input_shape": "1,3,320,320"})
    assert model["postprocessing"]["detection"]["decoder"] == "boxes"
    singles = [p["label"] for p in model["split_points"] if len(p["tensors"]) == 1]
    split_id = deployed_split(stack, model["id"], singles[len(singles) // 2], 8)
    # Untrained: the graph's own score floor leaves few or no boxes; every mode must give the same ones.
    answers = {mode: robot_answer(stack, "astronaut.jpg", split_id, mode, score_threshold="0") for mode in MODES}
    coco = httpx.get(f"{stack.splitter_url}/api/models/{model['id']}/labels").json()
    assert coco[:2] == ["__background__", "person"] and len(coco) == 91
    for mode, answer in answers.items():
        assert answer.task == "detection", mode
        assert all(d.label == coco[d.class_id] for d in answer.detections)
    assert len(answers["all-robot"].detections) == len(answers["all-edge"].detections)


def test_a_segmenter_by_name_answers_a_mask_at_the_photos_size(stack: LocalStack) -> None:
    model = register(stack, {"arch": "deeplabv3_mobilenet_v3_large"})
    singles = [p["label"] for p in model["split_points"] if len(p["tensors"]) == 1]
    split_id = deployed_split(stack, model["id"], singles[len(singles) // 2], 8)
    maps = {}
    for mode in MODES:
        answer = robot_answer(stack, "chelsea.jpg", split_id, mode)
        assert answer.segmentation is not None and answer.task == "segmentation"
        assert (answer.segmentation.width, answer.segmentation.height) == _size("chelsea.jpg")
        assert sum(c.share for c in answer.segmentation.classes) == pytest.approx(1.0, abs=1e-4)
        maps[mode] = decode_png(answer.segmentation.png_base64)
    assert maps["all-robot"].shape == (300, 451)
    same, _ = mask_agreement(maps["all-robot"], maps["all-edge"])
    assert same == 1.0  # the same float model on the same pixels
    split_same, _ = mask_agreement(maps["all-robot"], maps["split"])
    assert split_same >= 0.9  # 8-bit features


def test_an_upload_without_a_task_answers_its_raw_tensors(stack: LocalStack) -> None:
    model = register(
        stack, {"input_shape": "1,3,32,32"}, {"file": ("tiny.onnx", tiny_classifier().SerializeToString())}
    )
    assert model["postprocessing"]["task"] == "raw"
    split_id = deployed_split(stack, model["id"], "block", 32)
    tensors = {mode: robot_answer(stack, "coffee.jpg", split_id, mode).tensors for mode in MODES}
    for mode, found in tensors.items():
        assert [(t.name, t.shape, t.datatype) for t in found] == [("output", [1, 10], "FP32")], mode
    whole = np.asarray(tensors["all-robot"][0].data, dtype=np.float64)
    assert np.allclose(np.asarray(tensors["split"][0].data, dtype=np.float64), whole, atol=1e-4)
    assert np.array_equal(np.asarray(tensors["all-edge"][0].data, dtype=np.float64), whole)


def test_raw_tensors_in_the_binary_layout_when_asked(stack: LocalStack) -> None:
    model = register(
        stack, {"input_shape": "1,3,32,32"}, {"file": ("tiny.onnx", tiny_classifier().SerializeToString())}
    )
    split_id = deployed_split(stack, model["id"], "block", 8)
    files = {"image": ("coffee.jpg", (SAMPLES / "coffee.jpg").read_bytes())}
    form = {"split_id": split_id, "mode": "all-robot"}
    as_json = httpx.post(f"{stack.robot_url}/api/infer", files=files, data=form, timeout=60).json()
    binary = httpx.post(
        f"{stack.robot_url}/api/infer",
        files=files,
        data=form,
        headers={"accept": "application/octet-stream"},
        timeout=60,
    )
    assert binary.status_code == 200 and binary.headers["content-type"] == "application/octet-stream"
    length = int(binary.headers["inference-header-content-length"])
    header = json.loads(binary.content[:length])
    (tensor,) = header["answer"]["tensors"]
    assert "data" not in tensor and tensor["parameters"]["binary_data_size"] == 10 * 4
    values = np.frombuffer(binary.content[length:], dtype="<f4")
    assert values.tolist() == as_json["answer"]["tensors"][0]["data"]  # float32 both ways: the same values


def test_binary_answers_are_only_for_raw_tensors(stack: LocalStack, layout_model: dict[str, Any]) -> None:
    split_id = deployed_split(stack, layout_model["id"], LAYOUT_POINT, 8)
    refused = httpx.post(
        f"{stack.robot_url}/api/infer",
        files={"image": ("p.png", (SAMPLES / "page.png").read_bytes())},
        data={"split_id": split_id},
        headers={"accept": "application/octet-stream"},
        timeout=60,
    )
    assert refused.status_code == 406 and "task is detection" in refused.json()["detail"]


def _size(image: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(SAMPLES / image) as opened:
        return opened.size
