"""Constant folding before analysis: shape arithmetic of exports from outside folds away, answers unchanged."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from model_splitter.graph.folding import MAX_FOLDED_OUTPUT_ELEMENTS, fold_constants
from model_splitter.intake.export import export_module
from model_splitter.records import SplitRequest
from model_splitter.services.models import register_upload
from model_splitter.services.splits import create_split
from model_splitter.store.registry import Registry
from tests.support import tiny_classifier

SHAPE = (1, 3, 64, 64)


class SamePaddingConv(torch.nn.Conv2d):
    """TensorFlow's "same" padding computed from the input's size at run time, as ports of TF models do it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.size()[-2:]
        kernel_h, kernel_w = self.weight.size()[-2:]
        stride_h, stride_w = self.stride
        pad_h = max((math.ceil(height / stride_h) - 1) * stride_h + kernel_h - height, 0)
        pad_w = max((math.ceil(width / stride_w) - 1) * stride_w + kernel_w - width, 0)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride)


class SamePaddingNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = SamePaddingConv(3, 8, 3, stride=2)
        self.b = SamePaddingConv(8, 16, 3, stride=2)
        self.c = SamePaddingConv(16, 16, 3)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c(torch.relu(self.b(torch.relu(self.a(x))))))
        return self.fc(x.mean((2, 3)))


def _fixed_batch_export(module: torch.nn.Module) -> onnx.ModelProto:
    """``torch.onnx.export(model, torch.randn(1, 3, 64, 64), f)``: the export most people make."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.randn(*SHAPE),), buffer, dynamo=False, opset_version=17)
    return onnx.load_from_string(buffer.getvalue())


def _outputs(model: onnx.ModelProto, batch: int) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sample = np.random.default_rng(7).standard_normal((batch, *SHAPE[1:])).astype(np.float32)
    return [np.asarray(out) for out in session.run(None, {session.get_inputs()[0].name: sample})]


@pytest.mark.parametrize("batch", ["fixed", "dynamic"])
def test_same_padding_chains_fold_to_the_layers_that_compute(batch: str) -> None:
    torch.manual_seed(0)
    module = SamePaddingNet()
    model = _fixed_batch_export(module) if batch == "fixed" else export_module(module, SHAPE)
    assert sum(node.op_type == "Shape" for node in model.graph.node) >= 4
    folded, folding = fold_constants(model, SHAPE)
    assert folding.kept_original is None and folding.max_abs_diff is not None
    assert folding.nodes_before == len(model.graph.node) > 100
    assert folding.nodes_after == len(folded.graph.node)
    ops = {node.op_type for node in folded.graph.node}
    assert ops == {"Pad", "Conv", "Relu", "ReduceMean", "Gemm"}, ops  # no Shape, Gather, Div, ConstantOfShape left
    rows = 1 if batch == "fixed" else 3
    for mine, theirs in zip(_outputs(folded, rows), _outputs(model, rows), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_a_graph_with_nothing_to_fold_comes_back_as_it_was() -> None:
    model = tiny_classifier()
    folded, folding = fold_constants(model, (1, 3, 32, 32))
    assert folded is model
    assert folding.nodes_before == folding.nodes_after == len(model.graph.node)
    assert folding.max_abs_diff is None and folding.kept_original is None


def test_a_large_constant_of_shape_stays_a_node_so_the_file_does_not_grow() -> None:
    side = math.isqrt(MAX_FOLDED_OUTPUT_ELEMENTS) * 2
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 1, side, side])
    graph = helper.make_graph(
        [
            helper.make_node("ConstantOfShape", ["shape"], ["ones"], value=helper.make_tensor("v", 1, [1], [1.0])),
            helper.make_node("Add", ["x", "ones"], ["y"]),
        ],
        "big_constant",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, side, side])],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folded, _ = fold_constants(model, (1, 1, side, side))
    assert [node.op_type for node in folded.graph.node] == ["ConstantOfShape", "Add"]
    assert len(folded.SerializeToString()) < 4096


@pytest.mark.parametrize("batch", ["fixed", "dynamic"])
def test_a_same_padding_export_registers_folded_and_splits_exactly_at_every_point(tmp_path: Path, batch: str) -> None:
    torch.manual_seed(1)
    module = SamePaddingNet()
    model = _fixed_batch_export(module) if batch == "fixed" else export_module(module, SHAPE)
    registry = Registry(tmp_path / "registry")
    record = register_upload(registry, model.SerializeToString(), "same.onnx", SHAPE, "same padding", False)
    assert record.folding is not None and record.folding.nodes_after < record.folding.nodes_before
    stored = onnx.load(str(registry.model_onnx_path(record.id)))
    assert len(stored.graph.node) == record.folding.nodes_after
    labels = [point.label for point in record.split_points]
    assert {"a.pad", "a", "b.pad", "b", "c.pad", "c"} <= set(labels), labels
    for label in labels:
        manifest = create_split(registry, record.id, SplitRequest(split_point=label, bits=8))
        assert manifest.verification.head_tail_max_abs_diff <= manifest.verification.head_tail_tolerance, label
        assert manifest.verification.head_tail_max_abs_diff == 0.0, label
