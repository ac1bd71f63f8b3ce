"""Checks an uploaded ONNX model must pass before the splitter works on it.

A model that passes ``load_onnx`` is one self-contained file (no tensor reads an external data file, whose location
would be a path on our server chosen by the upload), is structurally valid by ``onnx.checker`` and imports the
standard opset at version ``MIN_OPSET`` or newer (older ones are upgraded). ``single_float_input`` then guarantees
exactly one graph input, a float32, float16 or float64 tensor, and ``run_on_zeros`` that onnxruntime's CPU provider
runs the model on that input at the resolved shape. Every refusal is a ``BadRequest`` (not ONNX at all),
``UnsafeModelFormat`` (external data) or ``UnprocessableModel`` (valid ONNX the splitter cannot serve).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from common.errors import BadRequest, UnprocessableModel, UnsafeModelFormat
from model_splitter.graph.inputs import fed_inputs
from model_splitter.intake.torch_formats import shorten

MIN_OPSET = 17
# A model's constant-only subgraphs (folded by ONNX Runtime at load time) may produce at most this much per tensor.
MAX_CONSTANT_BYTES = 256 * 2**20
_FLOAT_TYPES: dict[int, type[np.floating[Any]]] = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
}


def load_onnx(data: bytes) -> onnx.ModelProto:
    """Parse, refuse external data, validate and upgrade the opset, in that order."""
    model = _parse_onnx_or_refuse(data)
    _refuse_external_data(model)
    try:
        onnx.checker.check_model(model, full_check=False)
    except Exception as exc:  # ValidationError, and C++ errors for truly broken protos
        raise UnprocessableModel(f"the ONNX model is invalid: {shorten(str(exc))}") from exc
    return _upgrade_opset(model)


def _parse_onnx_or_refuse(data: bytes) -> onnx.ModelProto:
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise BadRequest(f"not an ONNX model: {shorten(str(exc)) or type(exc).__name__}") from exc
    if model.ir_version <= 0 or len(model.graph.node) == 0:
        raise BadRequest("not an ONNX model: the file has no IR version or no graph nodes")
    return model


def _refuse_external_data(model: onnx.ModelProto) -> None:
    for tensor in _all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            raise UnsafeModelFormat(
                f"tensor {tensor.name!r} keeps its data in an external file ({location[:100]!r}); we accept "
                "single-file ONNX models only, and an external location is a path on our server that the file "
                "chooses (a path traversal). Save with onnx.save_model(model, path, save_as_external_data=False)"
            )


def _all_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Initializers and attribute tensors of the graph, its subgraphs and its local functions."""
    # every place a TensorProto can hide: a check of the top-level initializers alone is bypassed by a Constant
    # node, a sparse initializer or a tensor inside an If branch or a function body
    tensors: list[onnx.TensorProto] = []
    graphs = [model.graph]
    nodes = [node for function in model.functions for node in function.node]
    while graphs or nodes:
        if graphs:
            graph = graphs.pop()
            tensors.extend(graph.initializer)
            tensors.extend(t for s in graph.sparse_initializer for t in (s.values, s.indices))
            nodes.extend(graph.node)
            continue
        for attribute in nodes.pop().attribute:
            tensors.extend([attribute.t, *attribute.tensors])
            sparse = [attribute.sparse_tensor, *attribute.sparse_tensors]
            tensors.extend(t for s in sparse for t in (s.values, s.indices))
            graphs.extend([attribute.g, *attribute.graphs] if attribute.HasField("g") else attribute.graphs)
    return tensors


def _upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise UnprocessableModel("the ONNX model imports no standard (ai.onnx) opset")
    if opset >= MIN_OPSET:
        return model
    try:
        return onnx.version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter raises bare RuntimeError/ConvertError for unsupported adapters
        raise UnprocessableModel(
            f"the ONNX model uses opset {opset} and could not be upgraded to opset {MIN_OPSET}: {shorten(str(exc))}; "
            f"export it again with opset_version={MIN_OPSET} or newer"
        ) from exc


def single_float_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    inputs = fed_inputs(model.graph)
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise UnprocessableModel(
            f"the ONNX model has {len(inputs)} inputs ({names}); we cut single-input models, export it with one input"
        )
    if inputs[0].type.tensor_type.elem_type not in _FLOAT_TYPES:
        raise UnprocessableModel(
            f"the model's input {inputs[0].name!r} is not a float tensor (float32, float16 or float64 accepted)"
        )
    graph_input: onnx.ValueInfoProto = inputs[0]
    return graph_input


def refuse_huge_constants(model: onnx.ModelProto) -> None:
    """Refuse a tensor computed from constants alone that is larger than ``MAX_CONSTANT_BYTES``.

    ONNX Runtime folds such subgraphs when it creates a session, so a 1 KB file with ``ConstantOfShape`` of
    [16384, 16384] costs a gigabyte before the model ever runs. Shapes come from ONNX shape inference with value
    propagation; a constant whose shape it cannot tell is left to the run on zeros.
    """
    graph = model.graph
    constant = {init.name for init in graph.initializer} | {init.values.name for init in graph.sparse_initializer}
    for node in graph.node:
        if all(name in constant or not name for name in node.input):
            constant.update(out for out in node.output if out)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # inference itself fails on some valid graphs; the run on zeros reports those
        return
    for value in inferred.graph.value_info:
        if value.name not in constant or not value.type.HasField("tensor_type"):
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        if not dims or min(dims) < 0:
            continue
        size = int(np.prod(dims, dtype=np.int64)) * _element_bytes(tensor.elem_type)
        if size > MAX_CONSTANT_BYTES:
            raise UnprocessableModel(
                f"the tensor {value.name[:80]!r} is computed from constants alone and has shape {dims} "
                f"({size:,} bytes, more than the {MAX_CONSTANT_BYTES:,} accepted): ONNX Runtime would build it "
                "when loading the model; store it as an initializer or compute it from the input"
            )


def _element_bytes(elem_type: int) -> int:
    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 4


def run_on_zeros(model: onnx.ModelProto, graph_input: onnx.ValueInfoProto, shape: tuple[int, ...]) -> list[Any]:
    # the checker accepts graphs that no runtime can execute (unknown ops, shape clashes); one run finds out
    import onnxruntime as ort

    dtype = _FLOAT_TYPES[graph_input.type.tensor_type.elem_type]
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return list(session.run(None, {graph_input.name: np.zeros(shape, dtype=dtype)}))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument/NotImplemented types
        raise UnprocessableModel(
            f"the ONNX model does not run in onnxruntime on input shape {shape}: {shorten(str(exc))}"
        ) from exc
