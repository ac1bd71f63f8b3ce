"""Constant folding before analysis: subgraphs computed from constants alone become constants.

Exports from outside carry whole chains of ``Shape -> Gather -> Sub -> Div -> Concat`` that compute, at run time,
values fixed by the declared input shape (TF-style "same" padding, a channel shuffle's ``Reshape`` target). Left in
place they hide tensor shapes from ONNX shape inference, add side edges the cut finder must route around, and ship
dozens of scalar nodes to both halves of a split. onnxscript's folder evaluates them once (with ONNX shape
inference node by node, so a ``Shape`` of a statically shaped tensor folds too). With a dynamic batch axis the
whole ``Shape`` is not constant, but the height and width read from it are: reads of a ``Shape`` are first put in
the forms the folder evaluates dimension by dimension, so the chains behind static dimensions fold as well. The
folded model is kept only if it answers as the original does on the seeded input of the head/tail check; otherwise
the original is kept.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_ir as ir
import onnxscript.optimizer as onnxscript_optimizer
from onnx import numpy_helper

from common.errors import UnprocessableModel
from model_splitter.graph.verification import head_tail_tolerance, reference_outputs
from model_splitter.records import ConstantFolding

LOG = logging.getLogger(__name__)

# Values folded into the file: shape arithmetic is a handful of integers, so these bounds cost nothing on real
# exports and keep a folded model from growing (a small ``ConstantOfShape`` stays a node where it is large).
MAX_FOLDED_INPUT_ELEMENTS = 8192
MAX_FOLDED_OUTPUT_ELEMENTS = 65536


def _small_constant_of_shape(node: ir.Node) -> bool | None:
    """onnxscript keeps every ``ConstantOfShape`` by default; fold those whose size is known and small (the pads
    of "same" padding are built from one), leave the rest to the default rules."""
    if node.op_type != "ConstantOfShape" or node.domain not in ("", "ai.onnx"):
        return None
    shape = node.inputs[0].const_value if node.inputs and node.inputs[0] is not None else None
    if shape is None:
        return None
    dims = np.asarray(shape.numpy()).reshape(-1)
    small = dims.size == 0 or (dims.min() >= 0 and int(np.prod(dims, dtype=np.int64)) <= MAX_FOLDED_OUTPUT_ELEMENTS)
    return bool(small)


def fold_constants(model: onnx.ModelProto, input_shape: tuple[int, ...]) -> tuple[onnx.ModelProto, ConstantFolding]:
    """``model`` with its constant subgraphs folded and unused nodes removed, and what that did.

    The original comes back unchanged when nothing folds, when the folder fails on the graph, or when the folded
    graph's outputs on the seeded input differ from the original's by more than float32 rounding.
    """
    before = len(model.graph.node)
    try:
        folded_ir = ir.serde.deserialize_model(_shape_reads_in_foldable_form(model))
        onnxscript_optimizer.fold_constants(
            folded_ir,
            onnx_shape_inference=True,
            input_size_limit=MAX_FOLDED_INPUT_ELEMENTS,
            output_size_limit=MAX_FOLDED_OUTPUT_ELEMENTS,
            should_fold=_small_constant_of_shape,
        )
        onnxscript_optimizer.remove_unused_nodes(folded_ir)
        folded = ir.serde.serialize_model(folded_ir)
    except Exception as exc:  # the folder's own errors on graphs it does not cover; the model still runs unfolded
        LOG.warning("constant folding skipped: %s", exc)
        return model, ConstantFolding(nodes_before=before, nodes_after=before, kept_original=f"folder failed: {exc}")
    after = len(folded.graph.node)
    if after >= before:
        return model, ConstantFolding(nodes_before=before, nodes_after=before)
    try:
        expected = reference_outputs(model, input_shape)
        actual = reference_outputs(folded, input_shape)
    except UnprocessableModel as exc:
        LOG.warning("folded model not kept: %s", exc)
        return model, ConstantFolding(nodes_before=before, nodes_after=before, kept_original=str(exc)[:300])
    difference = _max_abs_diff(actual, expected)
    if not difference <= head_tail_tolerance(expected):
        LOG.warning("folded model not kept: its outputs differ by %.3g", difference)
        return model, ConstantFolding(
            nodes_before=before,
            nodes_after=before,
            max_abs_diff=difference,
            kept_original=f"the folded graph's outputs differ from the original's by {difference:.3g}",
        )
    return folded, ConstantFolding(nodes_before=before, nodes_after=after, max_abs_diff=difference)


def _shape_reads_in_foldable_form(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` where reads of a ``Shape`` take the forms onnxscript's folder evaluates dimension by
    dimension: ``Gather(Shape(t), k)`` with a scalar ``k`` becomes ``Squeeze(Gather(Shape(t), [k]))``, and
    ``Slice(Shape(t), s, e)`` becomes ``Shape(t, start=s, end=e)``. Both rewrites are exact; the folder then
    turns each read of static dimensions into a constant even where the batch axis is dynamic."""
    graph = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    constants.update(
        (node.output[0], numpy_helper.to_array(node.attribute[0].t))
        for node in graph.node
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value"
    )
    shapes = {node.output[0]: node for node in graph.node if _is_onnx(node, "Shape") and not node.attribute}
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    del rewritten.graph.node[:]
    for node in graph.node:
        source = shapes.get(node.input[0]) if node.input else None
        if source is None or opset < 13:
            rewritten.graph.node.append(node)
        elif _is_onnx(node, "Gather") and _scalar_index(node, constants) is not None:
            vector = numpy_helper.from_array(np.array([_scalar_index(node, constants)], dtype=np.int64))
            vector.name = f"{node.output[0]}/index"
            axes = numpy_helper.from_array(np.array([0], dtype=np.int64), name=f"{node.output[0]}/axes")
            rewritten.graph.initializer.extend([vector, axes])
            gathered = f"{node.output[0]}/gathered"
            rewritten.graph.node.extend(
                [
                    onnx.helper.make_node("Gather", [node.input[0], vector.name], [gathered], node.name, axis=0),
                    onnx.helper.make_node("Squeeze", [gathered, axes.name], [node.output[0]], f"{node.name}/squeeze"),
                ]
            )
        elif _is_onnx(node, "Slice") and opset >= 15 and (bounds := _plain_slice(node, constants)) is not None:
            start, end = bounds
            rewritten.graph.node.append(
                onnx.helper.make_node("Shape", [source.input[0]], [node.output[0]], node.name, start=start, end=end)
            )
        else:
            rewritten.graph.node.append(node)
    return rewritten


def _is_onnx(node: onnx.NodeProto, op_type: str) -> bool:
    return node.op_type == op_type and node.domain in ("", "ai.onnx")


def _scalar_index(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> int | None:
    """The index of a ``Gather`` along axis 0 by one constant scalar, else None."""
    if len(node.input) != 2 or node.input[1] not in constants:
        return None
    if any(attribute.name == "axis" and attribute.i != 0 for attribute in node.attribute):
        return None
    index = constants[node.input[1]]
    return int(index) if index.ndim == 0 and index.dtype.kind == "i" else None


def _plain_slice(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> tuple[int, int] | None:
    """(start, end) of a ``Slice`` of a 1-D tensor with constant bounds, on axis 0 and step 1, else None."""
    if len(node.input) < 3 or not all(name in constants for name in node.input[1:] if name):
        return None
    starts, ends, *rest = (constants[name].reshape(-1) if name else None for name in node.input[1:])
    axes, steps = (*rest, None, None)[:2]
    if starts is None or ends is None or starts.size != 1 or ends.size != 1:
        return None
    if (axes is not None and int(axes[0]) not in (0, -1)) or (steps is not None and int(steps[0]) != 1):
        return None
    # Shape's attributes clamp like Slice does; the largest int64 (a slice "to the end") stays as it is.
    return int(starts[0]), int(ends[0])


def _max_abs_diff(actual: list[np.ndarray], expected: list[np.ndarray]) -> float:
    if len(actual) != len(expected) or any(a.shape != e.shape for a, e in zip(actual, expected, strict=True)):
        return float("inf")
    return max(
        (
            float(np.max(np.abs(a.astype(np.float64) - e.astype(np.float64)), initial=0.0))
            for a, e in zip(actual, expected, strict=True)
        ),
        default=0.0,
    )
