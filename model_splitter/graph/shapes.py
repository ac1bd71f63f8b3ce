"""Shapes and element types of tensors that ONNX shape inference leaves open, measured in one real run.

Static inference stops at graphs that are static in fact but not on paper: a channel shuffle's Reshape whose
target is computed from ``Shape`` nodes, TF-style "same" padding computed by ``Shape -> Gather -> Sub -> Div``
chains. Refusing such a model because the checker cannot prove a shape would refuse models that run every day, so
the missing shapes come from one ONNX Runtime run at the declared input shape, the named tensors added as graph
outputs. A symbolic batch axis of the input stays symbolic on the measured tensors whose axis 0 measured 1, which
the head/tail check then exercises at batch 2.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
import onnxruntime as ort

from common.errors import UnprocessableModel
from model_splitter.graph.inputs import fed_inputs

BATCH_DIM = "batch"
_FEED_TYPES: dict[int, type[np.floating]] = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
}


def measured_value_infos(
    model: onnx.ModelProto, input_shape: tuple[int, ...], names: Iterable[str]
) -> dict[str, onnx.ValueInfoProto]:
    """Typed ValueInfos of ``names`` from one run at ``input_shape``. Under a symbolic batch (run at 1) axis 0 is
    kept symbolic where it measured 1; any other size there (a window attention's 64 windows of one image) is not
    the batch and stays a number, so nothing takes it for one."""
    inputs = fed_inputs(model.graph)
    dims = inputs[0].type.tensor_type.shape.dim if inputs else []
    symbolic_batch = bool(dims) and not dims[0].HasField("dim_value")
    measured: dict[str, onnx.ValueInfoProto] = {}
    for name, (dtype, measured_shape) in measured_shapes(model, input_shape, names).items():
        shape: list[int | str] = list(measured_shape)
        if symbolic_batch and shape and shape[0] == 1:
            shape[0] = BATCH_DIM
        measured[name] = onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(dtype), shape)
    return measured


def measured_shapes(
    model: onnx.ModelProto, input_shape: tuple[int, ...], names: Iterable[str]
) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Element type and shape of each of ``names`` in one run at ``input_shape``, with a batch of 1 where the batch
    is symbolic."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    inputs = fed_inputs(model.graph)
    if len(inputs) != 1:
        raise UnprocessableModel("measuring tensor shapes needs a model with exactly one input")
    (graph_input,) = inputs
    elem_type = graph_input.type.tensor_type.elem_type
    dims = graph_input.type.tensor_type.shape.dim
    fixed_batch = bool(dims) and dims[0].HasField("dim_value")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {value.name for value in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in wanted if name not in present)
    sample = np.random.default_rng(0).standard_normal(input_shape if fixed_batch else (1, *input_shape[1:]))
    try:
        session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])

        arrays = session.run(wanted, {graph_input.name: sample.astype(_FEED_TYPES.get(elem_type, np.float32))})
    except Exception as exc:  # onnxruntime's own error types
        raise UnprocessableModel(
            f"the shapes of {len(wanted)} tensor(s) could not be inferred and the model does not run at input "
            f"shape {list(input_shape)} to measure them: {str(exc)[:300]}"
        ) from exc
    return {name: (value.dtype, value.shape) for name, value in zip(wanted, map(np.asarray, arrays), strict=True)}
