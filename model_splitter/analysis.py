"""What each split point costs: the tensor sent over the wire and the share of compute and weights on the robot.

One shape inference at the concrete input shape and one pass over the nodes in topological order give every
split point's numbers through prefix sums. That is exact because for a single-tensor cut ``t`` the live nodes
(those on some input-to-output path) before ``t``'s producer in topological order are exactly ``t``'s ancestors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx

from common.errors import InvalidArgument, UnprocessableModel
from model_splitter.cutting import infer_shapes
from model_splitter.graph_cuts import data_flow, real_inputs
from model_splitter.labels import label_tensors

WIRE_BITS = (32, 16, 8, 4, 2)


@dataclass(frozen=True)
class SplitPointInfo:
    index: int  # position in the network, 0..n-1 in topological order
    label: str
    tensor: str
    shape: list[int]  # at batch 1
    dtype: str
    elements: int  # at batch 1
    wire_bytes: dict[int, int]  # bits per element -> bytes of one batch-1 tensor
    head_flops_share: float  # share of the graph's FLOPs computed by the head
    head_params_share: float  # share of the graph's parameters the head needs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dtype_name(elem_type: int) -> str:
    try:
        return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name)
    except (KeyError, TypeError, ValueError):  # bfloat16, float8 ... have no plain numpy dtype
        return str(onnx.TensorProto.DataType.Name(elem_type)).lower()


def _concrete_input_shapes(model: onnx.ModelProto, input_shape: tuple[int, ...]) -> dict[str, list[int]]:
    """Fixed dims for the run-time inputs: ``input_shape`` for a single input, batch 1 for symbolic dims otherwise."""
    feeds = set(real_inputs(model.graph))
    values = [value for value in model.graph.input if value.name in feeds]
    if len(values) != 1:
        return {value.name: [dim.dim_value or 1 for dim in value.type.tensor_type.shape.dim] for value in values}
    (value,) = values
    dims = value.type.tensor_type.shape.dim
    if dims and len(dims) != len(input_shape):
        raise InvalidArgument(
            f"input {value.name!r} has rank {len(dims)}, "
            f"but the input shape {list(input_shape)} has rank {len(input_shape)}"
        )
    wanted = list(input_shape)
    if wanted and dims and not dims[0].dim_value:
        wanted[0] = 1  # a symbolic batch axis is analysed at batch 1, whatever batch the caller names
    return {value.name: wanted}


def _shapes(model: onnx.ModelProto, input_shape: tuple[int, ...]) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Concrete shapes (only fully known ones) and element types of every tensor shape inference can reach."""
    graph = infer_shapes(model, data_prop=True, input_shapes=_concrete_input_shapes(model, input_shape))
    shapes: dict[str, list[int]] = {}
    types: dict[str, int] = {}
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
        types[init.name] = init.data_type
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type:
            types[value.name] = tensor_type.elem_type
        if tensor_type.HasField("shape") and all(dim.HasField("dim_value") for dim in tensor_type.shape.dim):
            shapes[value.name] = [dim.dim_value for dim in tensor_type.shape.dim]
    return shapes, types


def _elements(shape: list[int] | None) -> int:
    return math.prod(shape) if shape is not None else 0


def node_flops(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int:
    """FLOPs as 2 x multiply-accumulates for the dense ops, the output element count for everything else."""
    out_elements = sum(_elements(shapes.get(name)) for name in node.output if name)
    if node.domain not in ("", "ai.onnx"):
        return out_elements
    op = node.op_type
    inputs = list(node.input)
    if op == "Conv" and len(inputs) > 1 and (weight := shapes.get(inputs[1])):
        # weight [C_out, C_in / group, k...]: each output element sums over its group's inputs and the kernel.
        return 2 * out_elements * math.prod(weight[1:])
    if op == "ConvTranspose" and len(inputs) > 1 and (weight := shapes.get(inputs[1])):
        # weight [C_in, C_out / group, k...]: each input element is scattered over its group's outputs.
        return 2 * _elements(shapes.get(inputs[0])) * math.prod(weight[1:])
    if op == "Gemm" and (a := shapes.get(inputs[0])) and len(a) == 2:
        trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
        return 2 * out_elements * (a[0] if trans_a else a[1])
    if op == "MatMul" and (a := shapes.get(inputs[0])):
        return 2 * out_elements * a[-1]
    return out_elements


def _params_by_node(flow_nodes: list[onnx.NodeProto], live: frozenset[str], graph: onnx.GraphProto) -> list[set[str]]:
    """For each node, the initializers it reads directly or through constant-only nodes (shared weights, Identity)."""
    origins: dict[str, set[str]] = {init.name: {init.name} for init in graph.initializer}
    per_node: list[set[str]] = []
    for node in flow_nodes:
        read: set[str] = set()
        for name in node.input:
            if name and name not in live:
                read |= origins.get(name, set())
        per_node.append(read)
        for name in node.output:
            if name and name not in live:
                origins[name] = read
    return per_node


def analyse_split_points(model: onnx.ModelProto, input_shape: tuple[int, ...]) -> list[SplitPointInfo]:
    """Every single-tensor split point of ``model`` with its wire size and head share of compute and weights."""
    flow = data_flow(model)  # also runs ensure_cuttable
    labels = label_tensors(model, flow.cuts)
    shapes, types = _shapes(model, input_shape)
    sizes = {init.name: math.prod(init.dims) for init in model.graph.initializer}

    # Prefix sums over the live nodes in topological order: cost up to and including the node at each position.
    position_of: dict[str, int] = {}
    flops_prefix: list[int] = []
    params_prefix: list[int] = []
    flops = params = 0
    counted: set[str] = set()
    for node, reads in zip(flow.nodes, _params_by_node(flow.nodes, flow.live, model.graph), strict=True):
        if not any(name in flow.live for name in node.output):
            continue  # constant-only nodes are folded at session creation; dead branches are pruned
        flops += node_flops(node, shapes)
        fresh = reads - counted
        counted |= fresh
        params += sum(sizes[name] for name in fresh)
        for name in node.output:
            position_of[name] = len(flops_prefix)
        flops_prefix.append(flops)
        params_prefix.append(params)

    points: list[SplitPointInfo] = []
    for index, tensor in enumerate(flow.cuts):
        shape = shapes.get(tensor)
        if shape is None or tensor not in types:
            raise UnprocessableModel(
                f"the shape of split point tensor {tensor!r} ({labels[tensor]}) could not be inferred for input shape "
                f"{list(input_shape)}; re-export the model with static shapes"
            )
        elements = math.prod(shape)
        position = position_of[tensor]
        points.append(
            SplitPointInfo(
                index=index,
                label=labels[tensor],
                tensor=tensor,
                shape=shape,
                dtype=_dtype_name(types[tensor]),
                elements=elements,
                wire_bytes={bits: math.ceil(elements * bits / 8) for bits in WIRE_BITS},
                head_flops_share=flops_prefix[position] / flops if flops else 0.0,
                head_params_share=params_prefix[position] / params if params else 0.0,
            )
        )
    return points
