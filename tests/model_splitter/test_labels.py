"""Human labels of split points: module paths read from the exporters' scopes."""

from __future__ import annotations

import onnx
import pytest
import torch
import torchvision
from onnx import helper

from common.errors import InvalidArgument
from model_splitter.graph.analysis import analyse_split_points
from model_splitter.graph.cuts import find_single_tensor_cuts
from model_splitter.graph.labels import label_tensors, node_scopes
from model_splitter.intake.export import export_module, export_program
from model_splitter.services.splits import find_split_point
from tests.model_splitter.graphs import make_model, skip_connection
from tests.support import record_of


@pytest.fixture(scope="module")
def resnet18() -> onnx.ModelProto:
    return export_module(torchvision.models.resnet18(weights=None), (1, 3, 64, 64))


@pytest.fixture(scope="module")
def resnet18_labels(resnet18: onnx.ModelProto) -> dict[str, str]:
    return label_tensors(resnet18, find_single_tensor_cuts(resnet18))


def test_legacy_node_names_give_full_module_paths() -> None:
    assert node_scopes(helper.make_node("Relu", ["a"], ["b"], name="/layer2/layer2.1/relu_1/Relu")) == [
        "layer2",
        "layer2.1",
        "layer2.1.relu_1",
    ]
    # A Sequential inside a block: "conv.0" extends "conv" as written, not the full path "features.1.conv".
    assert node_scopes(
        helper.make_node("Conv", ["a"], ["b"], name="/features/features.1/conv/conv.0/conv.0.0/Conv")
    ) == [
        "features",
        "features.1",
        "features.1.conv",
        "features.1.conv.0",
        "features.1.conv.0.0",
    ]
    assert node_scopes(helper.make_node("Flatten", ["a"], ["b"], name="/Flatten")) == []
    assert node_scopes(helper.make_node("Identity", ["a"], ["b"], name="Identity_3")) == []


def test_dynamo_name_scopes_drop_the_root_and_the_op() -> None:
    node = helper.make_node("Relu", ["a"], ["b"], name="node_relu_8")
    node.metadata_props.add(
        key="pkg.torch.onnx.name_scopes", value="['', 'layer2', 'layer2.1', 'layer2.1.relu', 'relu_8']"
    )
    assert node_scopes(node) == ["layer2", "layer2.1", "layer2.1.relu"]


def test_resnet18_labels_name_the_modules(resnet18_labels: dict[str, str]) -> None:
    labels = set(resnet18_labels.values())
    assert {"maxpool", "layer1", "layer2", "layer3", "layer4", "layer2.0"} <= labels
    assert len(labels) == len(resnet18_labels)  # unique
    assert resnet18_labels["/layer2/layer2.1/relu_1/Relu_output_0"] == "layer2"  # it leaves layer2 for layer3
    assert resnet18_labels["/layer2/layer2.0/relu_1/Relu_output_0"] == "layer2.0"  # it stays inside layer2
    assert resnet18_labels["/maxpool/MaxPool_output_0"] == "maxpool"
    assert resnet18_labels["/layer2/layer2.0/Add_output_0"] == "layer2.0.add"  # consumed only inside layer2.0
    assert resnet18_labels["/Flatten_output_0"] == "flatten"  # no module: the op


def test_mobilenet_v3_small_labels() -> None:
    model = export_module(torchvision.models.mobilenet_v3_small(weights=None), (1, 3, 64, 64))
    labels = list(label_tensors(model, find_single_tensor_cuts(model)).values())
    assert len(set(labels)) == len(labels)
    assert {"features.1", "features.3", "features.11", "features.4.block.0", "avgpool"} <= set(labels)


def test_repeated_labels_get_numbered_in_network_order() -> None:
    model = make_model(
        [
            helper.make_node("Relu", ["x"], ["a"], name="/block/Relu"),
            helper.make_node("Relu", ["a"], ["b"], name="/block/Relu_1"),
            helper.make_node("Relu", ["b"], ["c"], name="/block/Relu_2"),
            helper.make_node("Sigmoid", ["c"], ["y"]),
        ]
    )
    # a and b never leave the block: the op inside it names them; c leaves it and takes the block's name.
    assert label_tensors(model, ["a", "b", "c"]) == {"a": "block.relu", "b": "block.relu#2", "c": "block"}


def test_dynamo_exported_program_is_labelled_from_metadata() -> None:
    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
            self.head = torch.nn.Conv2d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.flatten(self.head(self.stem(x)), 1)

    example = (torch.randn(2, 3, 8, 8),)
    program = torch.export.export(Block().eval(), example, dynamic_shapes=({0: torch.export.Dim("batch")},))
    model = export_program(program, (1, 3, 8, 8))
    labels = list(label_tensors(model, find_single_tensor_cuts(model)).values())
    assert labels[:3] == ["stem.0", "stem", "head"]


def test_split_point_found_by_label_or_tensor_and_unknown_names_get_suggestions(resnet18: onnx.ModelProto) -> None:
    points = analyse_split_points(resnet18, (1, 3, 64, 64))
    record = record_of(points, (1, 3, 64, 64), 1000)
    tensor = "/layer2/layer2.1/relu_1/Relu_output_0"
    assert find_split_point(record, "layer2").tensor == tensor
    assert find_split_point(record, tensor).label == "layer2"
    with pytest.raises(
        InvalidArgument, match=r"Did you mean 'layer2'.*split-points: conv1, relu, maxpool, .*\(21 in all"
    ):
        find_split_point(record, "layr2")
    # A real tensor that some path bypasses is not a split point either.
    with pytest.raises(InvalidArgument, match="is not a split point of model"):
        find_split_point(record, "/layer2/layer2.1/conv1/Conv_output_0")


def test_labels_for_tensors_without_scope_fall_back_to_the_op() -> None:
    model = skip_connection()
    assert label_tensors(model, find_single_tensor_cuts(model)) == {"a": "relu", "d": "add"}
