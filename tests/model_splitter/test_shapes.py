"""Shapes inference cannot prove are measured in one real run, so static-in-fact models split at every point."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from onnx import TensorProto

from model_splitter.graph.shapes import measured_value_infos
from model_splitter.intake.export import export_module
from model_splitter.records import SplitRequest
from model_splitter.services.models import register_torchvision, register_upload
from model_splitter.services.splits import create_split
from model_splitter.store.registry import Registry
from tests.model_splitter.graphs import windowed_skip
from tests.support import tiny_classifier

SHAPE = (1, 3, 64, 64)


def test_measured_shapes_keep_a_symbolic_batch_and_the_element_type() -> None:
    model = tiny_classifier(size=64)
    measured = measured_value_infos(model, SHAPE, ["r2", "flat"])
    assert [d.dim_param or d.dim_value for d in measured["r2"].type.tensor_type.shape.dim] == ["batch", 8, 64, 64]
    assert [d.dim_param or d.dim_value for d in measured["flat"].type.tensor_type.shape.dim] == ["batch", 8]
    assert measured["r2"].type.tensor_type.elem_type == TensorProto.FLOAT
    assert measured_value_infos(model, SHAPE, []) == {}


def test_a_measured_axis_0_other_than_one_is_not_taken_for_the_batch() -> None:
    """At batch 1, ``w0`` has two rows (two windows of the one image): marking them the batch would let the
    analysis send them as a frame of two images."""
    measured = measured_value_infos(windowed_skip(), (1, 4), ["w0", "a"])
    assert [d.dim_param or d.dim_value for d in measured["w0"].type.tensor_type.shape.dim] == [2, 2]
    assert [d.dim_param or d.dim_value for d in measured["a"].type.tensor_type.shape.dim] == ["batch", 4]


@pytest.mark.slow
def test_shufflenet_registers_and_splits_exactly_inside_its_stages(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    record = register_torchvision(registry, "shufflenet_v2_x0_5", None, None, SHAPE, None)
    labels = [point.label for point in record.split_points]
    assert "stage2.1.concat" in labels and len(labels) > 30
    for label in ("stage2.1.concat", "stage3.3", "conv5"):
        manifest = create_split(registry, record.id, SplitRequest(split_point=label, bits=8))
        assert manifest.verification.head_tail_max_abs_diff <= manifest.verification.head_tail_tolerance


class ReshapedByInput(torch.nn.Module):
    """Ends in ``h.reshape(x.shape[0], -1)``: the exporter writes Shape(input) -> Gather -> ... -> Reshape."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
        self.block = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU())
        self.pool = torch.nn.AdaptiveAvgPool2d(2)
        self.fc = torch.nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.block(self.stem(x))).reshape(x.shape[0], -1))


def test_a_shape_of_input_side_path_offers_its_interior_cuts_and_each_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = export_module(ReshapedByInput().eval(), (1, 3, 16, 16))
    assert any(node.op_type == "Shape" and node.input[0] == "input" for node in model.graph.node)
    registry = Registry(tmp_path / "registry")
    record = register_upload(registry, model.SerializeToString(), "reshaped.onnx", (1, 3, 16, 16), "r", False)
    labels = [point.label for point in record.split_points]
    assert {"stem", "block", "pool"} <= set(labels), labels  # before: only the last tensor
    for label in labels:
        manifest = create_split(registry, record.id, SplitRequest(split_point=label, bits=8))
        assert manifest.verification.head_tail_max_abs_diff <= manifest.verification.head_tail_tolerance
