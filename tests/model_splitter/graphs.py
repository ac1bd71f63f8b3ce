"""Hand-built ONNX graphs whose cuts are known, shared by the cut-finding, cutting and labelling tests."""

from __future__ import annotations

import itertools

import onnx
from onnx import TensorProto, helper

SHAPE: list[str | int] = ["batch", 4]


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: tuple[str, ...] = ("x",),
    outputs: tuple[str, ...] = ("y",),
    initializers: list[onnx.TensorProto] | None = None,
    ir_version: int = 8,
    opset: int = 17,
    output_shape: list[str | int] | None = None,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, SHAPE) for name in inputs],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, output_shape or SHAPE) for name in outputs],
        initializer=initializers or [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def chain() -> onnx.ModelProto:
    return make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Neg", ["a"], ["b"]),
            helper.make_node("Abs", ["b"], ["c"]),
            helper.make_node("Sigmoid", ["c"], ["y"]),
        ]
    )


def skip_connection() -> onnx.ModelProto:
    return make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Neg", ["a"], ["b"]),
            helper.make_node("Abs", ["b"], ["c"]),
            helper.make_node("Add", ["a", "c"], ["d"]),
            helper.make_node("Sigmoid", ["d"], ["y"]),
        ]
    )


def parallel_branches() -> onnx.ModelProto:
    return make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Neg", ["a"], ["left"]),
            helper.make_node("Abs", ["a"], ["right1"]),
            helper.make_node("Exp", ["right1"], ["right2"]),
            helper.make_node("Concat", ["left", "right2"], ["c"], axis=1),
            helper.make_node("Sigmoid", ["c"], ["y"]),
        ],
        output_shape=["batch", 8],
    )


def two_output_node() -> onnx.ModelProto:
    return make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Split", ["a"], ["h1", "h2"], axis=1),
            helper.make_node("Neg", ["h1"], ["n1"]),
            helper.make_node("Concat", ["n1", "h2"], ["c"], axis=1),
            helper.make_node("Sigmoid", ["c"], ["y"]),
        ]
    )


def shape_side_path(shape_of: str) -> onnx.ModelProto:
    return make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Shape", [shape_of], ["s"]),
            helper.make_node("Neg", ["a"], ["b"]),
            helper.make_node("Flatten", ["b"], ["f"], axis=0),
            helper.make_node("Reshape", ["f", "s"], ["r"]),
            helper.make_node("Sigmoid", ["r"], ["y"]),
        ]
    )


def windowed_shape_path() -> onnx.ModelProto:
    """As a window attention does: the tail reshapes to the shape of a head tensor whose axis 0 is two rows per
    sample (``[2 * batch, 2]``), while the cut tensor ``a`` has one (``[batch, 4]``)."""
    windows = helper.make_tensor("windows", TensorProto.INT64, [2], [-1, 2])
    rows = helper.make_tensor("rows", TensorProto.INT64, [2], [-1, 4])
    return make_model(
        [
            helper.make_node("Reshape", ["x", "windows"], ["w"]),
            helper.make_node("Relu", ["w"], ["v"]),
            helper.make_node("Reshape", ["v", "rows"], ["a"]),
            helper.make_node("Neg", ["a"], ["b"]),
            helper.make_node("Shape", ["v"], ["s"]),
            helper.make_node("Reshape", ["b", "s"], ["r"]),
            helper.make_node("Sigmoid", ["r"], ["g"]),
            helper.make_node("Reshape", ["g", "rows"], ["y"]),
        ],
        initializers=[windows, rows],
    )


def windowed_skip(length: int = 24) -> onnx.ModelProto:
    """A skip around a block of ``length`` ops that work on two rows per sample (``w0``...: ``[2 * batch, 2]``),
    long enough for pair cuts: the cuts inside it pair the skip ``p`` with a ``w`` or with ``a`` (``[batch, 4]``)."""
    windows = helper.make_tensor("windows", TensorProto.INT64, [2], [-1, 2])
    rows = helper.make_tensor("rows", TensorProto.INT64, [2], [-1, 4])
    block = [helper.make_node("Neg", [f"w{i}"], [f"w{i + 1}"]) for i in range(length)]
    return make_model(
        [
            helper.make_node("Relu", ["x"], ["p"]),
            helper.make_node("Reshape", ["p", "windows"], ["w0"]),
            *block,
            helper.make_node("Reshape", [f"w{length}", "rows"], ["a"]),
            helper.make_node("Add", ["a", "p"], ["y"]),
        ],
        initializers=[windows, rows],
    )


def if_model(tail_ops: int = 0) -> onnx.ModelProto:
    """Relu -> If whose branches read the Relu's output from the outer scope (no explicit input) -> Neg ..."""
    then_branch = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["out"])], "then", [], [helper.make_tensor_value_info("out", 1, SHAPE)]
    )
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["a"], ["neg"])], "else", [], [helper.make_tensor_value_info("neg", 1, SHAPE)]
    )
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("ReduceSum", ["a"], ["total"], keepdims=0),
        helper.make_node("Cast", ["total"], ["cond"], to=TensorProto.BOOL),
        helper.make_node("If", ["cond"], ["b" if tail_ops else "y"], then_branch=then_branch, else_branch=else_branch),
    ]
    names = ["b", *[f"t{i}" for i in range(tail_ops - 1)], "y"] if tail_ops else []
    nodes += [helper.make_node("Neg", [src], [dst]) for src, dst in itertools.pairwise(names)]
    return make_model(nodes)
