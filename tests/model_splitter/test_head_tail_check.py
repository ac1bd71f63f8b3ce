"""The head/tail check: a tolerance that grows with the output, so models with huge outputs can be cut, while a
tail that really computes something else is still refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from common.errors import UnprocessableModel
from model_splitter.graph.verification import ABS_TOLERANCE, REL_TOLERANCE, check_head_tail, head_tail_tolerance

RNG = np.random.default_rng(7)
# Weights of 1e6 on two layers: outputs of order 1e12, like an untrained deep network's logits.
W1 = (RNG.standard_normal((4, 4)) * 1e6).astype(np.float32)
W2 = (RNG.standard_normal((4, 3)) * 1e6).astype(np.float32)


def graph_model(
    nodes: list[onnx.NodeProto], inputs: list[str], output: str, weights: dict[str, np.ndarray]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 4]) for name in inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def full_model() -> onnx.ModelProto:
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    return graph_model(nodes, ["x"], "y", {"w1": W1, "w2": W2})


def head_model() -> onnx.ModelProto:
    return graph_model([helper.make_node("MatMul", ["x", "w1"], ["h"])], ["x"], "h", {"w1": W1})


def tail_model(w2: np.ndarray) -> onnx.ModelProto:
    return graph_model([helper.make_node("MatMul", ["h", "w2"], ["y"])], ["h"], "y", {"w2": w2})


def test_tolerance_is_an_absolute_floor_plus_a_share_of_the_largest_output() -> None:
    assert head_tail_tolerance([np.zeros(3, dtype=np.float32)]) == ABS_TOLERANCE
    outputs = [np.array([[1e12, -3.0]]), np.array([-2e12])]
    assert head_tail_tolerance(outputs) == pytest.approx(ABS_TOLERANCE + REL_TOLERANCE * 2e12)


def test_rounding_sized_differences_on_huge_outputs_pass() -> None:
    # A tail whose weights differ in the last bits, as a different fusion's rounding would: the outputs move by far
    # more than 1e-4 in absolute terms, by about 1e-7 of their size.
    nudged = (W2 * np.float32(1 + 2e-7)).astype(np.float32)
    difference, tolerance = check_head_tail(full_model(), head_model(), tail_model(nudged), (1, 4), "h")
    assert difference > ABS_TOLERANCE * 1000
    assert difference <= tolerance


def test_a_tail_that_computes_something_else_is_refused() -> None:
    wrong = (W2 * np.float32(1 + 1e-3)).astype(np.float32)
    with pytest.raises(UnprocessableModel, match="cutting at h changes the output"):
        check_head_tail(full_model(), head_model(), tail_model(wrong), (1, 4), "h")


def test_an_exact_cut_reports_its_difference_and_tolerance() -> None:
    difference, tolerance = check_head_tail(full_model(), head_model(), tail_model(W2), (1, 4), "h")
    assert difference == 0.0
    assert tolerance > ABS_TOLERANCE
