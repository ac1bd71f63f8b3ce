"""Cutting hand-built graphs into head and tail: valid ONNX, runnable at any batch, same result as the whole."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from common.errors import InvalidArgument, UnprocessableModel
from model_splitter.graph.cuts import find_single_tensor_cuts
from model_splitter.graph.cutting import cut_model
from model_splitter.graph.verification import head_tail_max_abs_diff
from tests.model_splitter.graphs import (
    chain,
    if_model,
    make_model,
    parallel_branches,
    shape_side_path,
    skip_connection,
    two_output_node,
    windowed_shape_path,
)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(array) for array in session.run(None, feeds)]


def assert_halves_answer_as_the_model(
    model: onnx.ModelProto, head: onnx.ModelProto, tail: onnx.ModelProto, batches: tuple[int, ...]
) -> None:
    """tail(head(x)) is the model's answer bit for bit at each batch (input ``x`` of 4 values, cut tensor ``a``)."""
    for batch in batches:
        x = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
        (sent,) = run(head, {"x": x})
        np.testing.assert_array_equal(run(tail, {"a": sent})[0], run(model, {"x": x})[0])


def weighted() -> onnx.ModelProto:
    model = make_model(
        [
            helper.make_node("Mul", ["x", "w1"], ["a"]),
            helper.make_node("Identity", ["w2"], ["w2_shared"]),
            helper.make_node("Add", ["a", "w2_shared"], ["b"]),
            helper.make_node("Mul", ["b", "w3"], ["y"]),
        ],
        initializers=[
            helper.make_tensor(name, TensorProto.FLOAT, [4], [float(i + 1)] * 4)
            for i, name in enumerate(["w1", "w2", "w3"])
        ],
    )
    model.producer_name = "unit-test"
    model.metadata_props.add(key="origin", value="test_cutting")
    return model


MODELS: list[Callable[[], onnx.ModelProto]] = [
    chain,
    skip_connection,
    parallel_branches,
    two_output_node,
    lambda: shape_side_path("x"),
    lambda: shape_side_path("a"),
    weighted,
]


@pytest.mark.parametrize("build", MODELS)
def test_every_cut_composes_to_the_full_model_at_batch_1_and_3(build: Callable[[], onnx.ModelProto]) -> None:
    model = build()
    cuts = find_single_tensor_cuts(model)
    assert cuts
    rng = np.random.default_rng(1)
    for cut in cuts:
        try:
            head, tail = cut_model(model, [cut], input_shape=(1, 4))
        except UnprocessableModel as exc:  # Flatten(axis=0) moves the batch off axis 0: nothing to read it from
            assert cut == "f" and "carries the batch on axis 0" in exc.message
            continue
        onnx.checker.check_model(head, full_check=True)
        onnx.checker.check_model(tail, full_check=True)
        assert [value.name for value in head.graph.output] == [cut]
        assert [value.name for value in tail.graph.input] == [cut]
        for batch in (1, 3):
            x = rng.standard_normal((batch, 4)).astype(np.float32)
            (sent,) = run(head, {"x": x})
            assert sent.shape[0] == batch
            np.testing.assert_allclose(run(tail, {cut: sent})[0], run(model, {"x": x})[0], rtol=1e-6)


def test_cut_tensor_keeps_the_symbolic_batch_dim() -> None:
    head, tail = cut_model(chain(), ["b"])
    (sent,) = head.graph.output
    assert sent.type.tensor_type.elem_type == TensorProto.FLOAT
    assert [dim.dim_param or dim.dim_value for dim in sent.type.tensor_type.shape.dim] == ["batch", 4]
    assert tail.graph.input[0] == sent


def test_halves_keep_only_what_they_use_and_the_model_metadata() -> None:
    model = weighted()
    head, tail = cut_model(model, ["a"])
    assert [init.name for init in head.graph.initializer] == ["w1"]
    assert sorted(init.name for init in tail.graph.initializer) == ["w2", "w3"]
    assert [node.op_type for node in head.graph.node] == ["Mul"]
    for half in (head, tail):
        assert half.ir_version == model.ir_version
        assert list(half.opset_import) == list(model.opset_import)
        assert half.producer_name == "unit-test"
        assert {prop.key: prop.value for prop in half.metadata_props} == {"origin": "test_cutting"}


def test_several_tensors_can_form_a_cut() -> None:
    model = skip_connection()
    head, tail = cut_model(model, ["a", "c"])
    onnx.checker.check_model(head)
    onnx.checker.check_model(tail)
    assert head_tail_max_abs_diff(model, head, tail, (1, 4), batch=3) == 0.0


def test_a_tensor_that_is_bypassed_is_not_a_cut() -> None:
    with pytest.raises(UnprocessableModel, match=r"tail would still need graph input\(s\) \['x'\]"):
        cut_model(skip_connection(), ["b"])
    with pytest.raises(UnprocessableModel, match="needs the model's input shape"):
        cut_model(shape_side_path("x"), ["a"])  # the shape of x is recomputed: it needs the declared input


def test_a_cut_bypassed_only_by_a_shape_edge_recomputes_the_shape_in_the_tail() -> None:
    model = shape_side_path("x")
    head, tail = cut_model(model, ["a"], input_shape=(1, 4))
    assert "x" not in {value.name for value in tail.graph.input}
    assert [node.op_type for node in tail.graph.node if "recomputed" in node.name] == [
        "Shape",
        "Constant",
        "Concat",
        "Identity",
    ]
    assert_halves_answer_as_the_model(model, head, tail, batches=(1, 5))


def test_a_recomputed_shape_keeps_its_rows_per_sample_when_they_differ_from_the_cut_tensors() -> None:
    model = windowed_shape_path()
    head, tail = cut_model(model, ["a"], input_shape=(1, 4))
    assert [node.op_type for node in tail.graph.node if "recomputed" in node.name][:5] == [
        "Shape",
        "Constant",
        "Constant",
        "Mul",
        "Div",
    ]
    assert_halves_answer_as_the_model(model, head, tail, batches=(1, 3))


def test_unknown_or_repeated_tensors_are_invalid_arguments() -> None:
    with pytest.raises(InvalidArgument, match="nope"):
        cut_model(chain(), ["nope"])
    with pytest.raises(InvalidArgument, match="distinct"):
        cut_model(chain(), ["a", "a"])
    with pytest.raises(InvalidArgument):
        cut_model(chain(), [])
    with pytest.raises(InvalidArgument, match=r"\['a'\] would not be read by the tail"):
        cut_model(chain(), ["a", "b"])


def test_old_onnx_with_initializers_listed_as_inputs() -> None:
    model = make_model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Mul", ["a", "w"], ["b"]),
            helper.make_node("Sigmoid", ["b"], ["y"]),
        ],
        initializers=[helper.make_tensor("w", TensorProto.FLOAT, [4], [2.0] * 4)],
        ir_version=3,
        opset=8,
    )
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4]))
    onnx.checker.check_model(model)
    head, tail = cut_model(model, ["a"])
    onnx.checker.check_model(head)
    onnx.checker.check_model(tail)  # IR 3 requires the initializer w to stay listed as an input of the tail
    assert [value.name for value in tail.graph.input] == ["a", "w"]
    assert [value.name for value in head.graph.input] == ["x"]
    assert head_tail_max_abs_diff(model, head, tail, (1, 4), batch=3) == 0.0


@pytest.mark.parametrize("cut", ["a", "b", "t1"])
def test_a_model_with_control_flow_is_cut_exactly_around_it(cut: str) -> None:
    """The If goes whole into the tail (cut at ``a``) or the head (after it); either way the halves compose."""
    model = if_model(tail_ops=3)
    head, tail = cut_model(model, [cut])
    onnx.checker.check_model(head)
    onnx.checker.check_model(tail)
    for sign in (1.0, -1.0):  # both branches of the If
        x = sign * np.abs(np.random.default_rng(0).standard_normal((2, 4))).astype(np.float32)
        (expected,) = run(model, {"x": x})
        (middle,) = run(head, {"x": x})
        (actual,) = run(tail, {cut: middle})
        np.testing.assert_array_equal(actual, expected)
