"""torch's reading of ONNX graphs (what fine-tuning trains): it answers as ONNX Runtime does, operator by operator
and on a real torchvision export; it learns only the weights; what it writes back is the same graph."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from model_splitter.graph.cutting import cut_model
from model_splitter.training.distillation import Schedule, TrainingData, anchor_penalty, train
from model_splitter.training.onnx_module import OnnxModule, UnsupportedOperator, run_numpy, trainable_initializers
from tests.support import tiny_classifier

RNG = np.random.default_rng(3)


def _ort(model: onnx.ModelProto, inputs: list[np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [
        np.asarray(o) for o in session.run(None, {v.name: x for v, x in zip(session.get_inputs(), inputs, strict=True)})
    ]


def _one_node(
    op: str, shape: list[int], inits: dict[str, np.ndarray], extra: list[str], **attrs: Any
) -> onnx.ModelProto:
    node = helper.make_node(op, ["x", *extra], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


CASES: list[tuple[str, list[int], dict[str, np.ndarray], list[str], dict[str, Any]]] = [
    ("Conv", [2, 3, 9, 9], {"w": f32(4, 3, 3, 3), "b": f32(4)}, ["w", "b"], {"pads": [1, 0, 2, 1], "strides": [2, 1]}),
    ("Conv", [2, 4, 8, 8], {"w": f32(4, 1, 3, 3)}, ["w"], {"pads": [1, 1, 1, 1], "group": 4, "dilations": [2, 2]}),
    ("MaxPool", [2, 3, 9, 9], {}, [], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    (
        "MaxPool",
        [1, 2, 9, 9],
        {},
        [],
        {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
    ),
    ("AveragePool", [2, 3, 9, 9], {}, [], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 0}),
    ("Gemm", [3, 5], {"w": f32(6, 5), "c": f32(6)}, ["w", "c"], {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    ("Clip", [2, 7], {"lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}, ["lo", "hi"], {}),
    ("HardSigmoid", [2, 7], {}, [], {"alpha": 0.1667, "beta": 0.5}),
    ("HardSwish", [2, 7], {}, [], {}),
    ("LeakyRelu", [2, 7], {}, [], {"alpha": 0.1}),
    ("Softmax", [2, 3, 4], {}, [], {"axis": 1}),
    ("Flatten", [2, 3, 4, 5], {}, [], {"axis": 2}),
    ("Reshape", [2, 3, 4], {"s": i64(0, -1)}, ["s"], {}),
    ("Transpose", [2, 3, 4], {}, [], {"perm": [2, 0, 1]}),
    ("Unsqueeze", [2, 3], {"a": i64(0, -1)}, ["a"], {}),
    ("Squeeze", [2, 1, 3, 1], {"a": i64(1)}, ["a"], {}),
    ("ReduceMean", [2, 3, 4], {}, [], {"axes": [-1], "keepdims": 0}),
    ("Slice", [4, 6], {"s": i64(1, -5), "e": i64(100, -1), "a": i64(0, 1), "t": i64(2, 2)}, ["s", "e", "a", "t"], {}),
    ("Gather", [5, 3], {"i": i64(4, -1, 0)}, ["i"], {"axis": 0}),
    ("Pad", [1, 2, 3, 3], {"p": i64(0, 0, 1, 2, 0, 0, 2, 1), "v": np.array(0.5, np.float32)}, ["p", "v"], {}),
    (
        "Resize",
        [1, 2, 4, 5],
        {"r": np.zeros(0, np.float32), "s": np.array([1, 1, 2, 1.5], np.float32)},
        ["r", "s"],
        {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
    ),
    (
        "Resize",
        [1, 2, 4, 5],
        {"r": np.zeros(0, np.float32), "s": np.array([1, 1, 2, 2], np.float32)},
        ["r", "s"],
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    ),
    (
        "BatchNormalization",
        [2, 3, 4, 4],
        {"g": f32(3), "b": f32(3), "m": f32(3), "v": np.abs(f32(3)) + 0.5},
        ["g", "b", "m", "v"],
        {"epsilon": 1e-3},
    ),
    ("LayerNormalization", [2, 5, 6], {"g": f32(6), "b": f32(6)}, ["g", "b"], {"axis": -1}),
    ("MatMul", [2, 5, 6], {"w": f32(6, 3)}, ["w"], {}),
]


@pytest.mark.parametrize(
    ("op", "shape", "inits", "extra", "attrs"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_each_operator_answers_as_onnx_runtime(
    op: str, shape: list[int], inits: dict[str, np.ndarray], extra: list[str], attrs: dict[str, Any]
) -> None:
    model = _one_node(op, shape, inits, extra, **attrs)
    x = f32(*shape)
    (expected,) = _ort(model, [x])
    (got,) = run_numpy(OnnxModule(model), [x])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_torchvision_tail_answers_as_onnx_runtime_and_learns_only_weights(tmp_path: Any) -> None:
    import torchvision

    net = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        net,
        (torch.randn(1, 3, 64, 64),),
        str(path),
        dynamo=False,
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
    )
    model = onnx.load(str(path))
    cut = next(n.output[0] for n in model.graph.node if n.name.startswith("/features/features.4/"))
    head, tail = cut_model(model, [cut], input_shape=(1, 3, 64, 64))
    x = RNG.standard_normal((3, 3, 64, 64)).astype(np.float32)
    features = _ort(head, [x])
    expected = _ort(tail, features)[0]
    module = OnnxModule(tail)
    np.testing.assert_allclose(run_numpy(module, features)[0], expected, rtol=1e-4, atol=1e-4)
    learnt = set(trainable_initializers(tail))
    weights = {init.name for init in tail.graph.initializer if init.data_type == TensorProto.FLOAT}
    assert learnt and learnt <= weights
    kinds = {n.op_type for n in tail.graph.node for name in n.input if name in learnt}
    assert kinds <= {"Conv", "Gemm", "MatMul", "Add", "Mul", "Identity"}
    assert "Conv" in kinds and "Gemm" in kinds
    # HardSwish/HardSigmoid constants, shapes and axes stay what they were.
    assert all(numpy_helper.to_array(i).size > 1 for i in tail.graph.initializer if i.name in learnt)


def test_written_back_weights_are_the_trained_ones_and_nothing_else_changes() -> None:
    model = tiny_classifier()
    _, tail = cut_model(model, ["r1"], input_shape=(1, 3, 32, 32))
    module = OnnxModule(tail)
    with torch.no_grad():
        for weight in module.weights:
            weight.add_(0.1)
    written = module.with_weights(tail)
    assert [n.SerializeToString() for n in written.graph.node] == [n.SerializeToString() for n in tail.graph.node]
    assert [i.name for i in written.graph.initializer] == [i.name for i in tail.graph.initializer]
    before = {i.name: numpy_helper.to_array(i) for i in tail.graph.initializer}
    for init in written.graph.initializer:
        np.testing.assert_allclose(numpy_helper.to_array(init), before[init.name] + 0.1, rtol=1e-6)
    x = RNG.standard_normal((2, 8, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_ort(written, [x])[0], run_numpy(module, [x])[0], rtol=1e-4, atol=1e-4)
    assert not np.allclose(_ort(written, [x])[0], _ort(tail, [x])[0])


def test_an_operator_without_a_twin_is_refused_by_name() -> None:
    model = _one_node("Sin", [2, 3], {}, [])
    with pytest.raises(UnsupportedOperator, match="Sin"):
        OnnxModule(model)


def test_an_anchor_keeps_the_trained_weights_nearer_their_start() -> None:
    model = tiny_classifier(seed=4)
    head, tail = cut_model(model, ["r1"], input_shape=(1, 3, 32, 32))
    x = RNG.standard_normal((32, 3, 32, 32)).astype(np.float32)
    features = _ort(head, [x])[0]
    # A teacher the tail does not answer yet: its own logits, shuffled between images.
    teacher = _ort(tail, [features])[0][RNG.permutation(32)]
    data = TrainingData(features={4: [features]}, teacher=[teacher], classifier=True)
    changes, losses = {}, {}
    for anchor in (0.0, 10.0):
        module = OnnxModule(tail)
        start = [w.detach().clone() for w in module.weights]
        log = train(module, data, Schedule(steps=60, batch_size=8, learning_rate=3e-2, anchor=anchor), False, print)
        changes[anchor] = float(anchor_penalty(list(module.weights), start).detach())
        losses[anchor] = (log.first_loss, log.last_loss)
    assert all(last < first for first, last in losses.values()), losses
    assert changes[10.0] < 0.5 * changes[0.0], changes
    assert anchor_penalty(start, start).item() == 0.0
