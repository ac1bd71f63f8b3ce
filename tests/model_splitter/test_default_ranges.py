"""Default clip ranges from what the graph proves: the producers' bounds, carried through ops that keep them."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model_splitter.quantize.default_ranges import FALLBACK, Bounds, default_clip, graph_bounds


def model_of(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "bounds",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers or [],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def scalar(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


def test_relu6_gets_its_own_bounds_and_they_travel_through_pooling_and_padding() -> None:
    model = model_of(
        [
            helper.make_node("Clip", ["x", "zero", "six"], ["relu6"]),
            helper.make_node("MaxPool", ["relu6"], ["pooled"], kernel_shape=[2, 2]),
            helper.make_node("Pad", ["pooled", "pads"], ["padded"]),
            helper.make_node("Flatten", ["padded"], ["y"]),
        ],
        [scalar("zero", 0.0), scalar("six", 6.0), numpy_helper.from_array(np.zeros(8, dtype=np.int64), "pads")],
    )
    assert default_clip(model, "relu6") == (0.0, 6.0)
    assert default_clip(model, "y") == (0.0, 6.0)


def test_relu_proves_the_low_side_only_and_a_sum_proves_nothing() -> None:
    model = model_of(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["g"]),
            helper.make_node("Add", ["g", "g"], ["y"]),
        ]
    )
    assert default_clip(model, "r") == (0.0, FALLBACK) and default_clip(model, "g") == (0.0, FALLBACK)
    assert default_clip(model, "y") == (-FALLBACK, FALLBACK)
    assert default_clip(model, "x") == (-FALLBACK, FALLBACK)  # a graph input proves nothing


def test_fixed_range_activations_and_concat_take_the_union() -> None:
    model = model_of(
        [
            helper.make_node("Sigmoid", ["x"], ["s"]),
            helper.make_node("Tanh", ["x"], ["t"]),
            helper.make_node("HardSwish", ["x"], ["h"]),
            helper.make_node("Concat", ["s", "t"], ["st"], axis=1),
            helper.make_node("Concat", ["s", "h"], ["y"], axis=1),
        ]
    )
    assert default_clip(model, "s") == (0.0, 1.0) and default_clip(model, "t") == (-1.0, 1.0)
    assert default_clip(model, "st") == (-1.0, 1.0)
    assert default_clip(model, "h") == (-0.375, FALLBACK)
    assert graph_bounds(model, "y") == Bounds(-0.375, None)


def test_clip_limits_from_constant_nodes_and_old_attributes() -> None:
    low = helper.make_node("Constant", [], ["low"], value=numpy_helper.from_array(np.array(-2.0, np.float32)))
    high = helper.make_node("Constant", [], ["high"], value=numpy_helper.from_array(np.array(3.0, np.float32)))
    model = model_of([low, high, helper.make_node("Clip", ["x", "low", "high"], ["y"])])
    assert default_clip(model, "y") == (-2.0, 3.0)
    only_max = model_of(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Clip", ["r", "", "high"], ["y"]), high]
    )
    assert default_clip(only_max, "y") == (0.0, 3.0)
