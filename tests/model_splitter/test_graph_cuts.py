"""Cut finding on hand-built graphs whose single-tensor cuts are known."""

from __future__ import annotations

import time
from collections.abc import Callable

import onnx
import pytest
from onnx import TensorProto, helper

from common.errors import UnprocessableModel
from model_splitter.graph.cuts import ensure_cuttable, find_single_tensor_cuts, topological_nodes
from model_splitter.graph.inputs import node_inputs
from tests.model_splitter.graphs import (
    SHAPE,
    chain,
    if_model,
    make_model,
    parallel_branches,
    shape_side_path,
    skip_connection,
    two_output_node,
)


def test_chain_every_intermediate_is_a_cut() -> None:
    assert find_single_tensor_cuts(chain()) == ["a", "b", "c"]


def test_skip_connection_hides_the_tensors_inside_it() -> None:
    assert find_single_tensor_cuts(skip_connection()) == ["a", "d"]


def test_parallel_branches_cut_only_before_and_after() -> None:
    assert find_single_tensor_cuts(parallel_branches()) == ["a", "c"]


def test_node_with_two_outputs_cuts_neither_output() -> None:
    # Both Split outputs reach the output, so only its input and the join after it are cuts.
    assert find_single_tensor_cuts(two_output_node()) == ["a", "c"]


def test_unused_second_output_does_not_hide_the_used_one() -> None:
    model = make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("TopK", ["a", "k"], ["values", "indices"], axis=1),
            helper.make_node("Neg", ["values"], ["y"]),
        ],
        initializers=[helper.make_tensor("k", TensorProto.INT64, [1], [4])],
    )
    assert find_single_tensor_cuts(model) == ["a", "values"]


def test_tensor_consumed_twice_by_one_node_and_by_several_nodes() -> None:
    model = make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Mul", ["a", "a"], ["b"]),
            helper.make_node("Neg", ["b"], ["c"]),
            helper.make_node("Abs", ["b"], ["d"]),
            helper.make_node("Add", ["c", "d"], ["y"]),
        ]
    )
    assert find_single_tensor_cuts(model) == ["a", "b"]


def test_a_shape_of_input_side_path_bypasses_no_cut() -> None:
    """Shape reads dimensions, not values: the cuts it used to bypass are offered (the tail recomputes it)."""
    assert find_single_tensor_cuts(shape_side_path("x")) == ["a", "b", "f", "r"]


def test_a_shape_side_path_from_an_intermediate_bypasses_no_cut_either() -> None:
    assert find_single_tensor_cuts(shape_side_path("a")) == ["a", "b", "f", "r"]


def test_constant_only_subgraph_is_never_a_cut() -> None:
    model = make_model(
        [
            helper.make_node("Constant", [], ["k"], value=helper.make_tensor("kv", TensorProto.FLOAT, [4], [2.0] * 4)),
            helper.make_node("Identity", ["w"], ["w2"]),
            helper.make_node("Add", ["k", "w2"], ["kw"]),
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Mul", ["a", "kw"], ["b"]),
            helper.make_node("Sigmoid", ["b"], ["y"]),
        ],
        initializers=[helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0] * 4)],
    )
    assert find_single_tensor_cuts(model) == ["a", "b"]


def test_initializers_listed_as_inputs_in_old_onnx_are_constants() -> None:
    model = make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Mul", ["a", "w"], ["b"]),
            helper.make_node("Sigmoid", ["b"], ["y"]),
        ],
        initializers=[helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0] * 4)],
        ir_version=3,
    )
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4]))
    assert find_single_tensor_cuts(model) == ["a", "b"]


def test_two_inputs_meet_before_the_first_cut() -> None:
    model = make_model(
        [
            helper.make_node("Relu", ["x1"], ["a1"]),
            helper.make_node("Relu", ["x2"], ["a2"]),
            helper.make_node("Add", ["a1", "a2"], ["s"]),
            helper.make_node("Sigmoid", ["s"], ["y"]),
        ],
        inputs=("x1", "x2"),
    )
    assert find_single_tensor_cuts(model) == ["s"]


def test_nodes_out_of_file_order_are_sorted() -> None:
    model = chain()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    assert [node.op_type for node in topological_nodes(model.graph)] == ["Relu", "Neg", "Abs", "Sigmoid"]
    assert find_single_tensor_cuts(model) == ["a", "b", "c"]


def test_control_flow_is_one_node_whose_branches_read_outer_tensors() -> None:
    """The If reads ``a`` only through its branches: ``a`` is still the one cut before it, ``total`` and
    ``cond`` are not (the If needs ``a`` too), and the tensors after it are cuts as usual."""
    assert find_single_tensor_cuts(if_model()) == ["a"]
    assert find_single_tensor_cuts(if_model(tail_ops=3)) == ["a", "b", "t0", "t1"]


def test_outer_reads_are_found_in_nested_subgraphs() -> None:
    inner = helper.make_graph(
        [helper.make_node("Add", ["a", "k"], ["s"])],
        "inner",
        [],
        [helper.make_tensor_value_info("s", 1, SHAPE)],
        [helper.make_tensor("k", TensorProto.FLOAT, [1], [1.0])],
    )
    outer = helper.make_graph(
        [helper.make_node("If", ["c2"], ["o"], then_branch=inner, else_branch=inner)],
        "outer",
        [],
        [helper.make_tensor_value_info("o", 1, SHAPE)],
    )
    node = helper.make_node("If", ["cond"], ["y"], then_branch=outer, else_branch=outer)
    assert node_inputs(node) == ["cond", "a", "c2"]


def test_graph_without_runtime_input_or_output_is_refused() -> None:
    constant_only = make_model(
        [helper.make_node("Identity", ["w"], ["y"])],
        inputs=(),
        initializers=[helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0] * 4)],
    )
    with pytest.raises(UnprocessableModel, match="no input"):
        ensure_cuttable(constant_only)
    no_output = make_model([helper.make_node("Relu", ["x"], ["a"])], outputs=())
    with pytest.raises(UnprocessableModel, match="no output"):
        ensure_cuttable(no_output)


def test_long_graph_is_fast() -> None:
    # 20 000 nodes in residual blocks: a quadratic algorithm would take minutes here.
    nodes = [helper.make_node("Relu", ["x"], ["t0"])]
    for block in range(5000):
        entry = f"t{block}"
        nodes += [
            helper.make_node("Neg", [entry], [f"n{block}"]),
            helper.make_node("Abs", [f"n{block}"], [f"m{block}"]),
            helper.make_node("Add", [entry, f"m{block}"], [f"s{block}"]),
            helper.make_node("Relu", [f"s{block}"], [f"t{block + 1}"]),
        ]
    nodes.append(helper.make_node("Sigmoid", ["t5000"], ["y"]))
    model = make_model(nodes)
    start = time.perf_counter()
    cuts = find_single_tensor_cuts(model)
    assert time.perf_counter() - start < 2.0
    assert len(cuts) == 1 + 2 * 5000
    assert cuts[:3] == ["t0", "s0", "t1"]


@pytest.mark.parametrize(
    "build",
    [
        chain,
        skip_connection,
        parallel_branches,
        two_output_node,
        lambda: shape_side_path("x"),
        lambda: shape_side_path("a"),
    ],
)
def test_cuts_agree_with_brute_force(build: Callable[[], onnx.ModelProto]) -> None:
    # A tensor is a cut iff deleting it leaves no path from the input to the output.
    model = build()
    graph = model.graph
    outputs = {value.name for value in graph.output}
    tensors = [name for node in graph.node for name in node.output if name not in outputs]

    def disconnects(removed: str) -> bool:
        reached = {"x"}
        for node in graph.node:
            if node.op_type != "Shape" and any(name in reached for name in node.input):  # dimensions are no data
                reached |= {name for name in node.output if name != removed}
        return not reached & outputs

    assert [name for name in tensors if disconnects(name)] == find_single_tensor_cuts(model)
