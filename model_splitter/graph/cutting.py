"""Cut an ONNX model at a set of tensors into a head (inputs -> cut) and a tail (cut -> outputs).

The extraction is a backward slice from the wanted outputs that stops at the given inputs, linear in the graph
size; ``onnx.utils.Extractor`` does the same quadratically and is too slow for DenseNet-sized graphs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import onnx

from common.errors import InvalidArgument, UnprocessableModel
from model_splitter.graph.cuts import ensure_cuttable, topological_nodes
from model_splitter.graph.inputs import node_inputs, real_inputs
from model_splitter.graph.shape_edges import BatchSource, is_shape_node, recomputed
from model_splitter.graph.shapes import measured_shapes, measured_value_infos


def _backward_slice(
    nodes: list[onnx.NodeProto],
    producer: dict[str, int],
    targets: Iterable[str],
    stop: set[str],
    shapes_of: frozenset[str] = frozenset(),
) -> tuple[list[int], set[str], set[int]]:
    """Indices of the nodes needed to compute ``targets`` from ``stop`` (in order), the leaf tensors read, and the
    Shape/Size nodes reading a tensor of ``shapes_of`` (computed elsewhere), which are to be recomputed."""
    needed: set[int] = set()
    rewrites: set[int] = set()
    leaves: set[str] = set()
    seen: set[str] = set()
    pending = list(targets)
    while pending:
        name = pending.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        if name in stop or name not in producer:
            leaves.add(name)
            continue
        index = producer[name]
        if index in needed:
            continue
        needed.add(index)
        node = nodes[index]
        if is_shape_node(node) and node.input[0] in shapes_of:
            rewrites.add(index)
            continue
        pending.extend(node_inputs(node))
    return sorted(needed), leaves, rewrites


# Initializers larger than this are replaced by typed inputs before shape inference: their values never decide a
# shape (shape operands are tiny), and serialising hundreds of megabytes of weights would dominate the run time.
_PLACEHOLDER_ELEMENTS = 1024


def infer_shapes(
    model: onnx.ModelProto, data_prop: bool = False, input_shapes: Mapping[str, list[int]] | None = None
) -> onnx.GraphProto:
    """ONNX shape inference on a weightless skeleton of ``model``; returns the inferred graph (without weights).

    ``input_shapes`` fixes the dims of the named graph inputs (to analyse at a concrete shape).
    """
    graph = model.graph
    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    target = skeleton.graph
    target.node.extend(graph.node)
    target.input.extend(graph.input)
    for value in target.input:
        if input_shapes and value.name in input_shapes:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for size in input_shapes[value.name]:
                dims.add().dim_value = size
    target.output.extend(graph.output)
    target.value_info.extend(graph.value_info)
    listed = {value.name for value in graph.input}
    for init in graph.initializer:
        if math.prod(init.dims) <= _PLACEHOLDER_ELEMENTS:
            target.initializer.append(init)
        elif init.name not in listed:
            target.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    target.sparse_initializer.extend(graph.sparse_initializer)
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, check_type=False, strict_mode=False, data_prop=data_prop)
    except Exception as exc:  # onnx raises several unrelated types from its C++ core
        raise UnprocessableModel(f"ONNX shape inference failed on the model: {exc}") from exc
    return inferred.graph


def tensor_value_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Typed ValueInfos of every tensor shape inference reaches (symbolic batch kept), for ``cut_model``'s
    ``value_infos`` when one model is cut many times."""
    graph = infer_shapes(model)
    return {value.name: value for value in [*graph.value_info, *graph.output, *graph.input]}


def _cut_value_infos(
    model: onnx.ModelProto,
    cut_tensors: list[str],
    known: Mapping[str, onnx.ValueInfoProto] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> dict[str, onnx.ValueInfoProto]:
    """Typed ValueInfos for the cut tensors, from shape inference on the full model (symbolic batch kept), and
    where inference stops short, measured in one run at ``input_shape``."""
    if known is None:
        known = tensor_value_infos(model)
    untyped = [name for name in cut_tensors if name not in known or not known[name].type.tensor_type.elem_type]
    if untyped and input_shape is not None:
        known = {**known, **measured_value_infos(model, input_shape, untyped)}
    infos: dict[str, onnx.ValueInfoProto] = {}
    for name in cut_tensors:
        value = known.get(name)
        if value is None or not value.type.tensor_type.elem_type:
            raise UnprocessableModel(
                f"the element type of tensor {name!r} could not be inferred, so it cannot be sent between head and "
                "tail; re-export the model with static shapes or a newer opset"
            )
        info = onnx.ValueInfoProto()
        info.CopyFrom(value)
        infos[name] = info
    return infos


def _half(
    model: onnx.ModelProto,
    name: str,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
) -> onnx.ModelProto:
    graph = model.graph
    used = {tensor for node in nodes for tensor in node_inputs(node)} | {value.name for value in outputs}
    initializers = [init for init in graph.initializer if init.name in used]
    sparse = [init for init in graph.sparse_initializer if init.values.name in used]
    boundary = {value.name for value in inputs} | {value.name for value in outputs}
    # IR < 4 requires every initializer to be listed as a graph input as well; keep those entries as they were.
    constant_names = {init.name for init in initializers} | {init.values.name for init in sparse}
    listed_constants = [value for value in graph.input if value.name in constant_names]
    inside = (used | {tensor for node in nodes for tensor in node.output}) - boundary
    value_info = [value for value in graph.value_info if value.name in inside]

    half = onnx.ModelProto()
    half.ir_version = model.ir_version
    half.opset_import.extend(model.opset_import)
    half.producer_name = model.producer_name
    half.producer_version = model.producer_version
    half.domain = model.domain
    half.model_version = model.model_version
    half.doc_string = model.doc_string
    half.metadata_props.extend(model.metadata_props)
    half.functions.extend(model.functions)
    out = half.graph
    out.name = f"{graph.name or 'model'}_{name}"
    out.node.extend(nodes)
    out.input.extend([*inputs, *listed_constants])
    out.output.extend(outputs)
    out.initializer.extend(initializers)
    out.sparse_initializer.extend(sparse)
    out.value_info.extend(value_info)
    return half


def cut_model(
    model: onnx.ModelProto,
    cut_tensors: list[str],
    value_infos: Mapping[str, onnx.ValueInfoProto] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Split ``model`` into (head, tail): the head computes ``cut_tensors`` from the graph inputs, the tail the
    original outputs from ``cut_tensors`` alone. Raises ``UnprocessableModel`` if the tensors are not a real cut.

    ``value_infos`` (from ``tensor_value_infos(model)``) saves the shape inference when cutting one model often;
    ``input_shape`` (the declared one) lets shapes inference cannot reach be measured instead of refused."""
    ensure_cuttable(model)
    graph = model.graph
    if not cut_tensors:
        raise InvalidArgument("at least one cut tensor is needed to split a model")
    if len(set(cut_tensors)) != len(cut_tensors):
        raise InvalidArgument(f"cut tensors must be distinct, got {cut_tensors}")
    nodes = topological_nodes(graph)
    producer = {tensor: index for index, node in enumerate(nodes) for tensor in node.output if tensor}
    unknown = [name for name in cut_tensors if name not in producer]
    if unknown:
        raise InvalidArgument(
            f"tensor(s) {unknown} are not computed by any node of the model, so it cannot be cut there"
        )

    inputs = real_inputs(graph)
    input_set = set(inputs)
    # The head keeps every graph input, even one it does not read, so the robot feeds what the full model takes.
    head_indices, _, _ = _backward_slice(nodes, producer, cut_tensors, input_set)
    head_nodes = [nodes[index] for index in head_indices]
    in_head = frozenset(name for node in head_nodes for name in node.output if name) - set(cut_tensors)
    outputs = [value.name for value in graph.output]
    tail_indices, tail_leaves, rewrites = _backward_slice(
        nodes, producer, outputs, set(cut_tensors), in_head | input_set
    )
    bypassing = sorted(tail_leaves & input_set)
    if bypassing:
        raise UnprocessableModel(
            f"cutting at {cut_tensors} does not separate the model: the tail would still need graph input(s) "
            f"{bypassing}. Choose split points from find_single_tensor_cuts."
        )
    unused = [name for name in cut_tensors if name not in tail_leaves]
    if unused:
        raise InvalidArgument(
            f"tensor(s) {unused} would not be read by the tail: the other cut tensors already determine the outputs"
        )

    typed = _cut_value_infos(model, cut_tensors, value_infos, input_shape)
    cut_infos = [typed[name] for name in cut_tensors]
    graph_inputs = [value for value in graph.input if value.name in input_set]
    # One measured run and one batch source for every Shape/Size the tail recomputes, however many there are.
    shapes: dict[str, tuple[int, ...]] = {}
    batch: BatchSource | None = None
    if rewrites:
        source = _batch_source(model, cut_tensors, value_infos)
        needed = {nodes[index].input[0] for index in rewrites} | ({source} if source else set())
        shapes = _measured_dims(model, needed, input_shape)
        batch = BatchSource(source, shapes[source][0]) if source else None
    tail_nodes: list[onnx.NodeProto] = []
    for index in tail_indices:
        node = nodes[index]
        tail_nodes += recomputed(node, shapes[node.input[0]], batch) if index in rewrites else [node]
    head = _half(model, "head", head_nodes, graph_inputs, cut_infos)
    tail = _half(model, "tail", tail_nodes, cut_infos, list(graph.output))
    return head, tail


def _measured_dims(
    model: onnx.ModelProto, names: set[str], input_shape: tuple[int, ...] | None
) -> dict[str, tuple[int, ...]]:
    """The dimensions of ``names`` in one run at the declared input (a symbolic batch at 1), for recomputed Shapes."""
    if input_shape is None:
        raise UnprocessableModel(
            f"the tail needs the shape of {sorted(names)[0]!r}, computed in the head; cutting here needs the model's "
            "input shape"
        )
    return {name: shape for name, (_, shape) in measured_shapes(model, input_shape, names).items()}


def _batch_source(
    model: onnx.ModelProto, cut_tensors: list[str], known: Mapping[str, onnx.ValueInfoProto] | None
) -> str | None:
    """A cut tensor whose axis 0 can grow with the input's batch (not a fixed size), to read the batch from; None
    for a fixed batch, where recomputed shapes are constants."""
    known = known if known is not None else tensor_value_infos(model)
    (graph_input, *_) = [value for value in model.graph.input if value.name in set(real_inputs(model.graph))]
    input_dims = graph_input.type.tensor_type.shape.dim
    batch = input_dims[0].dim_param if input_dims and input_dims[0].HasField("dim_param") else None
    if batch is None:
        return None
    for name in cut_tensors:
        value = known.get(name)
        dims = value.type.tensor_type.shape.dim if value is not None else []
        if not dims or not dims[0].HasField("dim_value"):
            return name  # a symbolic or unknown axis 0 may be the batch: the head/tail check decides
    raise UnprocessableModel(
        f"the tail needs a shape of the input, and none of the cut tensors {cut_tensors} carries the batch on "
        "axis 0 to recompute it from: pick a split point before or after this one"
    )
