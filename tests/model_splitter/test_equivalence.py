"""Real torchvision models: cut at every offered split point, head then tail must equal the whole model.

The architectures cover the shapes of graph that make cut finding hard: residual blocks (resnet18), inverted
residuals (mobilenet_v2), squeeze-excitation (mobilenet_v3_small), multi-branch inception blocks (googlenet) and
dense concatenation (densenet121). Each model is exported once per module.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision.models as tvm
from onnx import helper

from model_splitter.graph.analysis import analyse_split_points, node_flops
from model_splitter.graph.cutting import cut_model
from model_splitter.graph.verification import head_tail_max_abs_diff, reference_outputs
from model_splitter.intake.export import export_module
from model_splitter.records import SplitPoint


@dataclass(frozen=True)
class Case:
    build: Callable[[], torch.nn.Module]
    input_shape: tuple[int, ...]
    cut_count: int  # single-tensor cuts torch 2.14.1's exporter yields; a change means cut finding changed


# resnet18 runs at 224 so its analysed shapes are the familiar ones; the rest at 96 to keep the suite quick.
CASES = {
    "resnet18": Case(lambda: tvm.resnet18(weights=None), (1, 3, 224, 224), 21),
    "mobilenet_v2": Case(lambda: tvm.mobilenet_v2(weights=None), (1, 3, 96, 96), 49),
    "googlenet": Case(lambda: tvm.googlenet(weights=None, aux_logits=False, init_weights=True), (1, 3, 96, 96), 21),
    "densenet121": Case(lambda: tvm.densenet121(weights=None), (1, 3, 96, 96), 23),
    "mobilenet_v3_small": Case(lambda: tvm.mobilenet_v3_small(weights=None), (1, 3, 96, 96), 41),
}


@dataclass(frozen=True)
class Exported:
    name: str
    case: Case
    model: onnx.ModelProto
    points: list[SplitPoint]


@functools.cache
def export_case(name: str) -> Exported:
    """Each model is exported and analysed once per test session, whichever tests ask for it."""
    case = CASES[name]
    torch.manual_seed(0)
    model = export_module(case.build(), case.input_shape)
    return Exported(name, case, model, analyse_split_points(model, case.input_shape))


@pytest.fixture(scope="module", params=list(CASES))
def exported(request: pytest.FixtureRequest) -> Exported:
    return export_case(request.param)


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_cut_count(exported: Exported) -> None:
    assert len(exported.points) == exported.case.cut_count
    assert [point.index for point in exported.points] == list(range(exported.case.cut_count))
    assert len({point.label for point in exported.points}) == len(exported.points)


def test_every_cut_composes_to_the_full_model(exported: Exported) -> None:
    model, shape = exported.model, exported.case.input_shape
    expected = reference_outputs(model, shape, batch=2)
    # Untrained mobilenets output values near 1e-9, where an absolute bound proves nothing: bound the relative
    # difference as well.
    scale = float(np.max(np.abs(expected[0])))
    assert scale > 0
    sample = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    worst = 0.0
    for point in exported.points:
        head, tail = cut_model(model, [point.tensor])
        onnx.checker.check_model(head)
        onnx.checker.check_model(tail)
        declared = [dim.dim_param or dim.dim_value for dim in head.graph.output[0].type.tensor_type.shape.dim]
        assert declared == ["batch", *point.shape[1:]], point.label
        (sent,) = _session(head).run(None, {"input": sample})
        assert list(sent.shape) == point.shape, point.label
        diff = head_tail_max_abs_diff(model, head, tail, shape, batch=2, expected=expected)
        assert diff <= 1e-4, f"{exported.name} cut at {point.label}: max abs diff {diff}"
        assert diff <= 1e-4 * scale, f"{exported.name} cut at {point.label}: diff {diff} for outputs up to {scale}"
        worst = max(worst, diff)
    print(f"{exported.name}: {len(exported.points)} cuts, max abs diff {worst:.3g}, outputs up to {scale:.3g}")


def test_densenet_cuts_only_between_dense_blocks() -> None:
    labels = [point.label for point in export_case("densenet121").points]
    blocks = [label for label in labels if label.startswith("features.denseblock")]
    assert blocks == [f"features.denseblock{i}" for i in range(1, 5)]  # the block outputs, nothing inside a block
    transitions = [f"features.transition{i}" for i in range(1, 4)]
    assert set(transitions) <= set(labels)
    assert [labels.index(label) for label in transitions] == sorted(labels.index(label) for label in transitions)


def test_analysis_shares_grow_along_the_network(exported: Exported) -> None:
    flops = [point.head_flops_share for point in exported.points]
    params = [point.head_params_share for point in exported.points]
    assert all(later > earlier for earlier, later in itertools.pairwise(flops))
    assert all(later >= earlier for earlier, later in itertools.pairwise(params))
    assert flops[0] > 0 and flops[-1] < 1
    assert all(0.0 <= share <= 1.0 for share in params)
    for point in exported.points:
        assert point.dtype == "float32"
        assert point.elements == math.prod(point.shape) and point.shape[0] == 1
        assert point.wire_bytes == {bits: math.ceil(point.elements * bits / 8) for bits in (32, 16, 8, 4, 2)}


def test_resnet18_layer2_analysis() -> None:
    (point,) = [point for point in export_case("resnet18").points if point.label == "layer2"]
    assert point.shape == [1, 128, 28, 28]
    assert point.elements == 100352
    assert point.wire_bytes[4] == 50176 and point.wire_bytes[32] == 401408
    assert 0.4 < point.head_flops_share < 0.7  # two of four stages, each about as costly as the others
    assert 0.0 < point.head_params_share < 0.1  # most weights sit in layer3, layer4 and fc
    as_dict = point.model_dump()
    assert as_dict["label"] == "layer2" and as_dict["wire_bytes"][8] == 100352


def test_node_flops_counts_multiply_accumulates() -> None:
    shapes = {"x": [1, 8, 10, 10], "w": [16, 2, 3, 3], "y": [1, 16, 10, 10], "a": [4, 5], "b": [5, 6], "c": [4, 6]}
    grouped = helper.make_node("Conv", ["x", "w"], ["y"], group=4)
    assert node_flops(grouped, shapes) == 2 * (16 * 10 * 10) * (2 * 3 * 3)
    assert node_flops(helper.make_node("Gemm", ["a", "b"], ["c"]), shapes) == 2 * 4 * 6 * 5
    assert node_flops(helper.make_node("MatMul", ["a", "b"], ["c"]), shapes) == 2 * 4 * 6 * 5
    shapes |= {"t": [1, 16, 10, 10], "wt": [16, 4, 2, 2], "u": [1, 16, 20, 20]}
    transposed = helper.make_node("ConvTranspose", ["t", "wt"], ["u"], group=4, strides=[2, 2])
    assert node_flops(transposed, shapes) == 2 * (16 * 10 * 10) * (4 * 2 * 2)
    assert node_flops(helper.make_node("Relu", ["y"], ["z"]), shapes | {"z": [1, 16, 10, 10]}) == 1600
