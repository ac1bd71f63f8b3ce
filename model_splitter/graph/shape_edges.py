"""Edges that carry only a shape: ``Shape(x)`` and ``Size(x)`` read no values of ``x``, only its dimensions.

A model that ends in ``Reshape(h, [Shape(input)[0], -1])``, or a segmenter that resizes to ``Shape(input)[2:]``,
has an edge from its input to its last nodes; taken as data, that edge bypasses every interior tensor and leaves
nothing to cut. But the split is served at one input shape (the manifest's), and the only dimension that varies
at run time is the batch, which the cut tensors carry on axis 0. So the cut finder does not follow these edges,
and a tail that needs ``Shape(x)`` of a tensor computed in the head recomputes it: axis 0 from a cut tensor's, in
the ratio the two have in one measured run at a batch of 1 (a window attention folds 64 windows into its axis 0),
the other dimensions as constants from that run. The head/tail check at batch 2 then proves the rewrite exact,
like every cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

SHAPE_OPS = frozenset({"Shape", "Size"})


def is_shape_node(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx") and node.op_type in SHAPE_OPS


@dataclass(frozen=True)
class BatchSource:
    """A cut tensor whose axis 0 grows with the batch, and that axis's size at a batch of 1."""

    tensor: str
    rows: int


def recomputed(node: onnx.NodeProto, dims: Sequence[int], batch: BatchSource | None) -> list[onnx.NodeProto]:
    """Nodes that give ``node``'s output from the dimensions ``dims`` its input has at a batch of 1.

    Without a ``batch`` source (a fixed batch) the shape is a constant. With one, axis 0 is taken to grow with the
    batch as the source's does: ``dims[0]`` rows per ``batch.rows`` of the source (a window attention's
    ``[64 * batch, 49, 96]`` against a cut tensor's ``[batch, 56, 56, 96]``); the head/tail check at batch 2 holds
    that to be so.
    """
    prefix = f"{node.name or node.output[0]}/recomputed"
    out = node.output[0]
    made: list[onnx.NodeProto] = []
    full = f"{prefix}/full"
    if not dims:
        made.append(_constant(full, np.zeros((0,), dtype=np.int64), prefix))
    elif batch is not None:
        rows = f"{prefix}/batch"
        made.append(helper.make_node("Shape", [batch.tensor], [rows], name=f"{prefix}/Shape", start=0, end=1))
        if dims[0] != batch.rows:
            made += [
                _constant(f"{prefix}/per", np.asarray([dims[0]], dtype=np.int64), prefix),
                _constant(f"{prefix}/of", np.asarray([batch.rows], dtype=np.int64), prefix),
                helper.make_node("Mul", [rows, f"{prefix}/per"], [f"{prefix}/scaled"], name=f"{prefix}/Mul"),
                helper.make_node("Div", [f"{prefix}/scaled", f"{prefix}/of"], [f"{prefix}/rows"], name=f"{prefix}/Div"),
            ]
            rows = f"{prefix}/rows"
        made += [
            _constant(f"{prefix}/rest", np.asarray(dims[1:], dtype=np.int64), prefix),
            helper.make_node("Concat", [rows, f"{prefix}/rest"], [full], name=f"{prefix}/Concat", axis=0),
        ]
    else:
        made.append(_constant(full, np.asarray(dims, dtype=np.int64), prefix))
    if node.op_type == "Size":
        made.append(helper.make_node("ReduceProd", [full], [out], name=f"{prefix}/ReduceProd", keepdims=0))
        return made
    attributes = {attribute.name: attribute.i for attribute in node.attribute}
    if "start" in attributes or "end" in attributes:
        start = attributes.get("start", 0)
        end = attributes.get("end", len(dims))
        made += [
            _constant(f"{prefix}/starts", np.asarray([start], dtype=np.int64), prefix),
            _constant(f"{prefix}/ends", np.asarray([end], dtype=np.int64), prefix),
            helper.make_node("Slice", [full, f"{prefix}/starts", f"{prefix}/ends"], [out], name=f"{prefix}/Slice"),
        ]
    else:
        made.append(helper.make_node("Identity", [full], [out], name=f"{prefix}/Identity"))
    return made


def _constant(name: str, value: np.ndarray, prefix: str) -> onnx.NodeProto:
    tensor = numpy_helper.from_array(value, f"{name}/value")
    return helper.make_node("Constant", [], [name], name=f"{prefix}/{name.rsplit('/', 1)[-1]}", value=tensor)
