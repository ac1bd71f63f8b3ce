"""A fixed-batch graph rewritten to a dynamic batch axis, offered only where it verifiably computes the same.

``torch.onnx.export`` without ``dynamic_axes`` fixes the batch at 1 in the input, the outputs, every recorded shape
and every ``Reshape`` target it wrote (``[1, -1]`` for a flatten). The rewrite makes the input's and outputs' first
axis symbolic, drops the recorded intermediate shapes (shape inference recomputes them), and turns a leading fixed
batch in constant ``Reshape`` targets into 0 ("copy that axis of the input", which is the batch there). It is kept
only if, on seeded inputs, the rewritten graph answers a batch of 3 exactly as the original answers each of its
samples, and a single sample as the original does: anything that mixes samples or reshapes the batch away fails
that check, and the rewrite is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from common.errors import Conflict, UnprocessableModel
from model_splitter.graph.inputs import fed_inputs
from model_splitter.graph.verification import head_tail_tolerance

BATCH_DIM = "batch"
CHECK_BATCH = 3


def fixed_batch_of(model: onnx.ModelProto) -> int | None:
    (graph_input,) = fed_inputs(model.graph)
    dims = graph_input.type.tensor_type.shape.dim
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") else None


def dynamic_batch_model(model: onnx.ModelProto, input_shape: Sequence[int]) -> tuple[onnx.ModelProto, float]:
    """The rewritten model and how far its batched answers were from the original's (within the tolerance)."""
    fixed = fixed_batch_of(model)
    if fixed is None:
        raise Conflict("the model's batch axis is dynamic already")
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    graph = rewritten.graph
    for value in [*fed_inputs(graph), *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == fixed:
            dims[0].dim_param = BATCH_DIM
    del graph.value_info[:]
    _reshapes_keep_the_batch(graph, fixed)
    difference, tolerance = _compare(model, rewritten, fixed, input_shape)
    if not difference <= tolerance:
        raise UnprocessableModel(
            f"with a dynamic batch the graph answers a batch of {CHECK_BATCH} {difference:.3g} away from its "
            f"answers for each image alone (allowed {tolerance:.3g}): it mixes the images of a batch or reshapes "
            "the batch away, so it keeps its fixed batch; re-export it with dynamic_axes={'input': {0: 'batch'}}"
        )
    return rewritten, difference


def _reshapes_keep_the_batch(graph: onnx.GraphProto, fixed: int) -> None:
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    constants = {node.output[0]: node for node in graph.node if node.op_type == "Constant" and node.output}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
            continue  # 0 would mean a zero-sized axis there
        target = node.input[1]
        if target in initializers:
            _replace_leading(initializers[target], fixed)
        elif target in constants:
            for attribute in constants[target].attribute:
                if attribute.name == "value":
                    _replace_leading(attribute.t, fixed)


def _replace_leading(tensor: onnx.TensorProto, fixed: int) -> None:
    shape = numpy_helper.to_array(tensor)
    if shape.ndim == 1 and shape.size and int(shape[0]) == fixed:
        changed = shape.copy()
        changed[0] = 0
        tensor.CopyFrom(numpy_helper.from_array(changed, tensor.name))


def _compare(
    original: onnx.ModelProto, rewritten: onnx.ModelProto, fixed: int, input_shape: Sequence[int]
) -> tuple[float, float]:
    try:
        before = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
        after = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types
        raise UnprocessableModel(f"with a dynamic batch the graph does not load: {str(exc)[:300]}") from exc
    name = before.get_inputs()[0].name
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((CHECK_BATCH * fixed, *input_shape[1:])).astype(np.float32)
    expected = [before.run(None, {name: samples[i * fixed : (i + 1) * fixed]}) for i in range(CHECK_BATCH)]
    try:
        batched = after.run(None, {name: samples})
        single = after.run(None, {name: samples[:fixed]})
    except Exception as exc:
        raise UnprocessableModel(
            f"with a dynamic batch the graph does not run a batch of {CHECK_BATCH}: {str(exc)[:300]}; it keeps its "
            "fixed batch"
        ) from exc
    stacked = [np.concatenate([answer[k] for answer in expected]) for k in range(len(batched))]
    pairs = [*zip(batched, stacked, strict=True), *zip(single, expected[0], strict=True)]
    if any(np.shape(got) != np.shape(want) for got, want in pairs):
        return float("inf"), 0.0
    difference = max(
        float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)), initial=0.0))
        for got, want in pairs
    )
    return difference, head_tail_tolerance(stacked)
