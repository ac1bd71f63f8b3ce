"""Calibration compares a detector's boxes and a segmenter's masks, not only raw outputs; the planner reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from model_splitter.services.calibration import calibrate_model, load_fidelity
from model_splitter.services.models import TaskRequest, register_upload
from model_splitter.store.registry import Registry

SIZE = 16


def tiny_dense(name: str, channels_out: int, tail: list[onnx.NodeProto], output: onnx.ValueInfoProto) -> bytes:
    """Conv-Relu-Conv on a (batch, 3, 16, 16) image, then ``tail``: small enough to calibrate every point at once."""
    rng = np.random.default_rng(7)

    def weight(key: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.5, key)

    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="/stem/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="/stem/Relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["head"], name="/head/Conv"),
        *tail,
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [output],
        [
            weight("w1", 8, 3, 3, 3),
            weight("b1", 8),
            weight("w2", channels_out, 8, 1, 1),
            weight("b2", channels_out),
            numpy_helper.from_array(np.asarray([0, channels_out, -1], dtype=np.int64), "shape"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def yolo_like() -> bytes:
    """A YOLOv8-shaped head: [N, 4 + 2 classes, 256 anchors], boxes in pixels, class scores through a sigmoid."""
    tail = [
        helper.make_node("Reshape", ["head", "shape"], ["flat"], name="/Reshape"),
        helper.make_node("Split", ["flat", "parts"], ["xywh", "logits"], name="/Split", axis=1),
        helper.make_node("Relu", ["xywh"], ["positive"], name="/box/Relu"),
        helper.make_node("Add", ["positive", "four"], ["boxes"], name="/box/Add"),  # boxes at least 4 px wide
        helper.make_node("Sigmoid", ["logits"], ["scores"], name="/cls/Sigmoid"),
        helper.make_node("Concat", ["boxes", "scores"], ["out"], name="/Concat", axis=1),
    ]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 6, SIZE * SIZE])
    model = onnx.load_from_string(tiny_dense("yolo", 6, tail, output))
    model.graph.initializer.append(numpy_helper.from_array(np.asarray([4, 2], dtype=np.int64), "parts"))
    model.graph.initializer.append(numpy_helper.from_array(np.asarray(4.0, dtype=np.float32), "four"))
    return model.SerializeToString()


def segmenter() -> bytes:
    output = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])
    return tiny_dense("seg", 3, [helper.make_node("Identity", ["head"], ["scores"], name="/out")], output)


@pytest.mark.parametrize(
    ("data", "task", "detector"), [(yolo_like(), "detection", "yolov8"), (segmenter(), "segmentation", None)]
)
def test_calibration_measures_the_answers_of_the_task(
    tmp_path: Path, data: bytes, task: str, detector: str | None
) -> None:
    registry = Registry(tmp_path / "registry")
    record = register_upload(
        registry, data, f"{task}.onnx", (1, 3, SIZE, SIZE), task, False, TaskRequest(task=task, detector=None)
    )
    if detector is not None:
        assert record.postprocessing.detection is not None
        assert record.postprocessing.detection.decoder == detector  # read from the output's shape
    result = calibrate_model(registry, record.id, None, bits=[2, 8, 32])
    for label, point in result.points.items():
        eight, two = point.bits[8].task, point.bits[2].task
        assert eight is not None and two is not None and eight.task == task, label
        assert point.bits[32].task is None  # float32 features: the float model's answer itself
        assert 0.0 <= two.agreement <= eight.agreement <= 1.0, label
        if task == "detection":
            assert eight.reference_boxes is not None and eight.reference_boxes > 0
            assert eight.detection_recovery is not None and eight.detection_recovery >= 0.9
        else:
            assert eight.pixel_agreement is not None and eight.pixel_agreement >= 0.95
            assert eight.mean_iou is not None and 0.0 < eight.mean_iou <= 1.0
    fidelity = load_fidelity(registry, record.id)
    assert fidelity is not None
    (label, bits), measured = next(iter(fidelity.items()))
    stored = result.points[label].bits[bits]
    assert measured.answer_agreement == (stored.task.agreement if stored.task else stored.top1_agreement)
