"""Fixed-batch graphs rewritten to a dynamic batch axis, kept only where they answer every sample as before."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from common.errors import Conflict, UnprocessableModel
from model_splitter.graph.batch_rewrite import dynamic_batch_model, fixed_batch_of
from tests.support import tiny_classifier


def fixed(model: onnx.ModelProto, batch: int = 1) -> onnx.ModelProto:
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = batch
    return model


def graph_of(
    nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto], out_shape: list[int]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_fixed_classifier_gets_a_batch_axis_that_answers_each_image_as_before() -> None:
    model = fixed(tiny_classifier(seed=2))
    rewritten, difference = dynamic_batch_model(model, (1, 3, 32, 32))
    assert fixed_batch_of(rewritten) is None and difference <= 1e-5
    x = np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString())
    after = ort.InferenceSession(rewritten.SerializeToString())
    (batched,) = after.run(None, {"input": x})
    alone = np.concatenate([before.run(None, {"input": x[i : i + 1]})[0] for i in range(5)])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_reshape_targets_that_fix_the_batch_follow_it() -> None:
    """torch's flatten in a fixed export is Reshape(x, [1, -1]): the 1 becomes 0, "the input's batch"."""
    target = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "flat")
    model = graph_of([helper.make_node("Reshape", ["x", "flat"], ["y"])], [target], [1, 48])
    rewritten, _ = dynamic_batch_model(model, (1, 3, 4, 4))
    shape = numpy_helper.to_array(next(t for t in rewritten.graph.initializer if t.name == "flat"))
    assert shape.tolist() == [0, -1]
    x = np.ones((4, 3, 4, 4), dtype=np.float32)
    (y,) = ort.InferenceSession(rewritten.SerializeToString()).run(None, {"x": x})
    assert y.shape == (4, 48)


def test_a_graph_that_mixes_the_images_of_a_batch_keeps_its_fixed_batch() -> None:
    """y = x - mean over the batch: zero for one image, not for three."""
    axes = numpy_helper.from_array(np.array([0], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=1),
        helper.make_node("Sub", ["x", "m"], ["y"]),
    ]
    model = graph_of(nodes, [axes], [1, 3, 4, 4])
    model.opset_import[0].version = 18  # ReduceMean takes its axes as an input from opset 18
    with pytest.raises(UnprocessableModel, match="mixes the images of a batch"):
        dynamic_batch_model(model, (1, 3, 4, 4))


def test_a_dynamic_batch_is_left_alone() -> None:
    with pytest.raises(Conflict, match="dynamic already"):
        dynamic_batch_model(tiny_classifier(), (1, 3, 32, 32))
