"""What each split point costs: the tensor sent over the wire and the share of compute and weights on the robot.

One shape inference at the concrete input shape and one pass over the nodes in topological order give every
split point's numbers through prefix sums. That is exact because for a single-tensor cut ``t`` the live nodes
(those on some input-to-output path) before ``t``'s producer in topological order are exactly ``t``'s ancestors.

With ``pair_cuts=True`` (what registration asks for) cuts of two tensors from ``cuts.find_pair_cuts`` are
offered too, where the network has long stretches without a single cut; their head costs come from the union of
the two tensors' ancestors. They sit among the single cuts in network order, labelled ``"<label a> + <label b>"``,
with ``tensors``/``shapes`` naming both; ``tensor`` is ``"a + b"`` and ``shape`` the first tensor's shape. The
cuts of more tensors (``min_cuts.py``) and at module boundaries (``module_cuts.py``) join them the same way; a cut
that is exactly a module's outputs is labelled ``"<module> (<k> tensors)"``.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from common.errors import InvalidArgument, UnprocessableModel
from model_splitter.graph.cuts import data_flow, find_pair_cuts
from model_splitter.graph.cutting import infer_shapes
from model_splitter.graph.inputs import node_inputs, real_inputs
from model_splitter.graph.labels import label_tensors
from model_splitter.graph.min_cuts import find_k_cuts
from model_splitter.graph.module_cuts import find_module_cuts
from model_splitter.graph.shapes import measured_value_infos
from model_splitter.records import SplitPoint

WIRE_BITS = (32, 16, 8, 4, 2)


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


def _shapes(
    model: onnx.ModelProto, input_shape: tuple[int, ...], live: frozenset[str]
) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Concrete shapes and element types of every live tensor: from shape inference, and where it stops short,
    from one real run (``shapes.measured_value_infos``)."""
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
    missing = [name for name in live if name not in shapes or name not in types]
    for name, value in measured_value_infos(model, input_shape, missing).items():
        tensor_type = value.type.tensor_type
        types[name] = tensor_type.elem_type
        shapes[name] = [dim.dim_value if dim.HasField("dim_value") else 1 for dim in tensor_type.shape.dim]
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
        for name in node_inputs(node):
            if name and name not in live:
                read |= origins.get(name, set())
        per_node.append(read)
        for name in node.output:
            if name and name not in live:
                origins[name] = read
    return per_node


def analyse_split_points(
    model: onnx.ModelProto, input_shape: tuple[int, ...], *, pair_cuts: bool = False
) -> list[SplitPoint]:
    """Every single-tensor split point of ``model`` with its wire size and head share of compute and weights;
    with ``pair_cuts``, also the cuts of two tensors that ``find_pair_cuts`` offers and the cheapest cuts of three to
    sixteen tensors along the network (``min_cuts.find_k_cuts``)."""
    flow = data_flow(model)  # also runs ensure_cuttable
    labels = label_tensors(model, flow.cuts)
    shapes, types = _shapes(model, input_shape, flow.live)
    sizes = {init.name: math.prod(init.dims) for init in model.graph.initializer}

    # Prefix sums over the live nodes in topological order: cost up to and including the node at each position.
    position_of: dict[str, int] = {}
    flops_prefix: list[int] = []
    params_prefix: list[int] = []
    flops = params = 0
    counted: set[str] = set()
    node_costs: dict[str, tuple[int, int, set[str]]] = {}  # live tensor -> (its node's position, flops, reads)
    for node, reads in zip(flow.nodes, _params_by_node(flow.nodes, flow.live, model.graph), strict=True):
        if not any(name in flow.live for name in node.output):
            continue  # constant-only nodes are folded at session creation; dead branches are pruned
        cost = node_flops(node, shapes)
        for name in node.output:
            node_costs[name] = (len(flops_prefix), cost, reads)
        flops += cost
        fresh = reads - counted
        counted |= fresh
        params += sum(sizes[name] for name in fresh)
        for name in node.output:
            position_of[name] = len(flops_prefix)
        flops_prefix.append(flops)
        params_prefix.append(params)

    points: list[SplitPoint] = []
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
            SplitPoint(
                index=index,
                label=labels[tensor],
                tensor=tensor,
                shape=shape,
                dtype=_dtype_name(types[tensor]),
                elements=elements,
                wire_bytes={bits: math.ceil(elements * bits / 8) for bits in WIRE_BITS},
                head_flops_share=flops_prefix[position] / flops if flops else 0.0,
                head_params_share=params_prefix[position] / params if params else 0.0,
                tensors=[tensor],
                shapes=[shape],
            )
        )
    if not pair_cuts:
        return points

    def sendable(name: str) -> bool:
        return types.get(name) == onnx.TensorProto.FLOAT and name in shapes

    def batch_first(name: str) -> bool:
        # Cuts of several tensors carry the batch first in every tensor: a detector's per-box tensors ([boxes, 4])
        # would be stacked across images by calibration and by batched serving, and a window attention's
        # [64 x batch, 49, 96] would reach the edge as a frame of 64 images.
        return sendable(name) and bool(shapes[name]) and shapes[name][0] == input_shape[0]

    def wire_size(name: str) -> int | None:
        return math.prod(shapes[name]) * 4 if batch_first(name) else None

    # Pairs, then wider minimum cuts, then modules' outputs; a set of tensors found twice is offered once.
    module_cuts = find_module_cuts(model, wire_size)
    unique: dict[frozenset[str], tuple[str, ...]] = {}
    for cut in [*find_pair_cuts(model, eligible=batch_first), *find_k_cuts(model, wire_size)]:
        unique.setdefault(frozenset(cut), cut)
    for _, cut in module_cuts:
        unique.setdefault(frozenset(cut), cut)
    groups = list(unique.values())
    # A cut that is exactly what a module hands on is named by the module, wherever it was found.
    module_of = {frozenset(cut): scope for scope, cut in module_cuts}
    if not groups:
        return points
    producers = {name: node for node in flow.nodes for name in node.output if name}
    positioned = [(position_of[p.tensor], 0, p) for p in points]
    used = {p.label for p in points}
    for group in groups:
        group_labels = label_tensors(model, list(group))
        names = [group_labels[name] for name in group]
        if frozenset(group) in module_of:
            label = base = f"{module_of[frozenset(group)]} ({len(names)} tensors)"
        else:
            label = base = " + ".join(names) if len(names) <= 4 else f"{names[0]} … {names[-1]} ({len(names)} tensors)"
        repeat = 1
        while label in used:
            repeat += 1
            label = f"{base}#{repeat}"
        used.add(label)
        ancestors = _live_ancestors(list(group), producers, flow.live)
        head_flops = sum(node_costs[name][1] for name in ancestors)
        head_params = sum(sizes[name] for name in set().union(*(node_costs[name][2] for name in ancestors)))
        group_shapes = [shapes[name] for name in group]
        positioned.append(
            (
                max(position_of[name] for name in group),
                1,
                SplitPoint(
                    index=0,
                    label=label,
                    tensor=" + ".join(group),
                    shape=group_shapes[0],
                    dtype=_dtype_name(types[group[0]]),
                    elements=sum(math.prod(shape) for shape in group_shapes),
                    wire_bytes={
                        bits: sum(math.ceil(math.prod(shape) * bits / 8) for shape in group_shapes)
                        for bits in WIRE_BITS
                    },
                    head_flops_share=head_flops / flops if flops else 0.0,
                    head_params_share=head_params / params if params else 0.0,
                    tensors=list(group),
                    shapes=group_shapes,
                ),
            )
        )
    positioned.sort(key=lambda item: (item[0], item[1]))
    return [point.model_copy(update={"index": index}) for index, (_, _, point) in enumerate(positioned)]


def _live_ancestors(tensors: list[str], producers: dict[str, onnx.NodeProto], live: frozenset[str]) -> set[str]:
    """The live tensors computed on the way to ``tensors`` (one name per node: each node's live outputs)."""
    seen: set[str] = set()
    pending = list(tensors)
    while pending:
        name = pending.pop()
        if name in seen or name not in live or name not in producers:
            continue
        node = producers[name]
        outputs = [out for out in node.output if out in live]
        seen.update(outputs)
        pending.extend(node_inputs(node))
    # Count each node once: keep one output per node.
    return {next(out for out in producers[name].output if out in live) for name in seen}
