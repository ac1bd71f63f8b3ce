"""Edges that carry only a shape: ``Shape(x)`` and ``Size(x)`` read no values of ``x``, only its dimensions.

A model that ends in ``Reshape(h, [Shape(input)[0], -1])``, or a segmenter that resizes to ``Shape(input)[2:]``,
has an edge from its input to its last nodes; taken as data, that edge bypasses every interior tensor and leaves
nothing to cut. But the split is served at one input shape (the manifest's), and the only dimension that varies
at run time is the batch, which every cut tensor carries on axis 0. So the cut finder does not follow these edges,
and a tail that needs ``Shape(x)`` of a tensor computed in the head recomputes it: the batch from the first cut
tensor, the other dimensions as constants (from shape inference at the declared input, or one measured run). The
head/tail check at batch 2 then proves the rewrite exact, like every cut.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from common.errors import UnprocessableModel

SHAPE_OPS = frozenset({"Shape", "Size"})


def is_shape_node(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx") and node.op_type in SHAPE_OPS


def recomputed(node: onnx.NodeProto, dims: Sequence[int | None], batch_source: str) -> list[onnx.NodeProto]:
    """Nodes that give ``node``'s output from ``batch_source`` (a cut tensor) and the static ``dims`` of its input.

    ``dims[0]`` may be None (a symbolic batch: taken from ``batch_source``); every other dimension must be known.
    """
    source = node.input[0]
    if any(dim is None or dim < 0 for dim in dims[1:]):
        raise UnprocessableModel(
            f"{node.op_type}({source}) is needed after the cut, and {source} has dimensions {list(dims)} at the "
            "declared input shape: only the batch may vary, so this cut cannot recompute it"
        )
    prefix = f"{node.name or node.output[0]}/recomputed"
    out = node.output[0]
    made: list[onnx.NodeProto] = []
    full = f"{prefix}/full"
    if not dims:
        made.append(_constant(full, np.zeros((0,), dtype=np.int64), prefix))
    elif dims[0] is None:
        made += [
            helper.make_node("Shape", [batch_source], [f"{prefix}/batch"], name=f"{prefix}/Shape", start=0, end=1),
            _constant(f"{prefix}/rest", np.asarray(dims[1:], dtype=np.int64), prefix),
            helper.make_node("Concat", [f"{prefix}/batch", f"{prefix}/rest"], [full], name=f"{prefix}/Concat", axis=0),
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
