"""torchvision models by name beyond the convolutional classifiers: transformers, segmenters and detectors
register, and split exactly at single and pair cuts.

How they are served (masks, boxes) is the tasks issue; here their raw outputs must be exact: tail(head(x)) equals
the full model within the head/tail check's tolerance.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from model_splitter.records import SplitRequest
from model_splitter.services.models import register_torchvision
from model_splitter.services.splits import create_split
from model_splitter.store.registry import Registry

CASES = [
    # the TorchScript exporter cannot convert their attention: torch.export and the dynamo exporter take over
    ("vit_b_16", 224, "classification"),
    ("swin_t", 224, "classification"),
    ("lraspp_mobilenet_v3_large", 224, "segmentation"),
    ("deeplabv3_mobilenet_v3_large", 224, "segmentation"),
    ("ssdlite320_mobilenet_v3_large", 320, "detection"),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", 320, "detection"),
    # untrained, its class scores are nearly all equal, so non-maximum suppression amplifies any rounding difference
    ("retinanet_resnet50_fpn", 320, "detection"),
    ("fasterrcnn_resnet50_fpn", 320, "detection"),
]
# the backbone->FPN boundary: the body's feature maps, named by the module that returns them, and their channels
BOUNDARIES = {
    "fasterrcnn_resnet50_fpn": ("model.backbone.body (4 tensors)", [256, 512, 1024, 2048]),
    "retinanet_resnet50_fpn": ("model.backbone.body (3 tensors)", [512, 1024, 2048]),
}


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "size", "family"), CASES, ids=[case[0] for case in CASES])
def test_registers_by_name_and_splits_exactly(tmp_path: Path, arch: str, size: int, family: str) -> None:
    registry = Registry(tmp_path / "registry")
    record = register_torchvision(registry, arch, None, None, (1, 3, size, size), None)
    assert record.architecture == arch
    assert record.num_classes == (1000 if family == "classification" else None)
    singles = [point for point in record.split_points if len(point.tensors) == 1]
    pairs = [point for point in record.split_points if len(point.tensors) == 2]
    wider = [point for point in record.split_points if len(point.tensors) > 2]
    assert len(singles) >= 10, [point.label for point in singles]
    if family == "detection":
        assert record.input_shape[0] == 1  # one image per frame: NMS is in the graph
    chosen = [singles[0], singles[len(singles) // 2], singles[-1], *pairs[:1], *wider[:1]]
    if arch in BOUNDARIES:
        label, channels = BOUNDARIES[arch]
        (boundary,) = [point for point in record.split_points if point.label == label]
        assert [shape[1] for shape in boundary.shapes] == channels
        chosen = [boundary, *chosen[2:]]
    for point in chosen:
        # 16 bits: no calibration (the tasks' tests measure fidelity); the check of raw outputs is the same
        manifest = create_split(registry, record.id, SplitRequest(split_point=point.label, bits=16))
        verification = manifest.verification
        assert verification.head_tail_tolerance is not None
        assert verification.head_tail_max_abs_diff <= verification.head_tail_tolerance, point.label
