"""The clip range a split gets when nobody calibrated it: the value bounds the graph proves, ±32 where it proves none.

Bounds travel forward from the ops that make them: ``Relu`` gives [0, ...), ``Clip`` its own limits (ReLU6 is
[0, 6], where a fixed [0, 32] would leave 3 usable levels at 4 bits), ``Sigmoid`` and ``Softmax`` [0, 1], ``Tanh``
[-1, 1], ``HardSwish`` [-0.375, ...). Ops that only move, pick, pool or pad values keep the bounds of their inputs
(a ``MaxPool`` or ``Pad`` after a ReLU is still non-negative, where a signed default would waste half the codes).
Anything else (sums, products, convolutions) proves nothing. An unproved side of the range falls back to 32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import onnx
from onnx import numpy_helper

FALLBACK = 32.0
# Ops whose outputs lie within the bounds of their (first) data input.
_KEEP_BOUNDS = frozenset(
    {
        "Identity", "Dropout", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Gather",
        "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "ReduceMin",
        "Split", "Expand", "Tile", "DepthToSpace", "SpaceToDepth", "GatherElements",
    }
)  # fmt: skip
_FIXED = {"Sigmoid": (0.0, 1.0), "HardSigmoid": (0.0, 1.0), "Softmax": (0.0, 1.0), "Tanh": (-1.0, 1.0)}


@dataclass(frozen=True)
class Bounds:
    lo: float | None = None  # None: nothing proved on that side
    hi: float | None = None

    def widen(self, other: Bounds) -> Bounds:
        lo = None if self.lo is None or other.lo is None else min(self.lo, other.lo)
        hi = None if self.hi is None or other.hi is None else max(self.hi, other.hi)
        return Bounds(lo, hi)


def default_clip(model: onnx.ModelProto, tensor: str) -> tuple[float, float]:
    bounds = graph_bounds(model, tensor)
    lo = bounds.lo if bounds.lo is not None else -FALLBACK
    hi = bounds.hi if bounds.hi is not None else FALLBACK
    if not lo < hi:  # a constant-valued tensor (e.g. Clip(0, 0)): any valid range represents it
        hi = lo + 1.0
    return float(lo), float(hi)


def graph_bounds(model: onnx.ModelProto, tensor: str) -> Bounds:
    """What the graph proves about the values of ``tensor``, following its producers back."""
    producers = {name: node for node in model.graph.node for name in node.output if name}
    constants = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:  # exporters write Clip's limits as initializers or as Constant nodes
        if node.op_type == "Constant" and node.output:
            value = next((attribute.t for attribute in node.attribute if attribute.name == "value"), None)
            if value is not None:
                constants[node.output[0]] = value
    memo: dict[str, Bounds] = {}

    def bounds_of(name: str, depth: int) -> Bounds:
        if name in memo:
            return memo[name]
        node = producers.get(name)
        found = Bounds() if node is None or depth > 500 else _node_bounds(node, constants, bounds_of, depth)
        memo[name] = found
        return found

    return bounds_of(tensor, 0)


def _node_bounds(
    node: onnx.NodeProto,
    constants: dict[str, onnx.TensorProto],
    bounds_of: Callable[[str, int], Bounds],
    depth: int,
) -> Bounds:
    op = node.op_type if node.domain in ("", "ai.onnx") else ""
    if op in _FIXED:
        return Bounds(*_FIXED[op])
    if op in ("Relu", "Abs"):
        upstream = bounds_of(node.input[0], depth + 1)
        hi = upstream.hi if op == "Relu" and upstream.hi is not None and upstream.hi > 0 else None
        return Bounds(0.0, hi)
    if op == "HardSwish":
        return Bounds(-0.375, None)
    if op == "Clip":
        upstream = bounds_of(node.input[0], depth + 1)
        low, high = _clip_limits(node, constants)
        lo = low if upstream.lo is None or low is None else max(low, upstream.lo)
        hi = high if upstream.hi is None or high is None else min(high, upstream.hi)
        return Bounds(lo if lo is not None else upstream.lo, hi if hi is not None else upstream.hi)
    if op in _KEEP_BOUNDS:
        return bounds_of(node.input[0], depth + 1)
    if op == "Concat":
        found = [bounds_of(name, depth + 1) for name in node.input if name]
        result = found[0] if found else Bounds()
        for other in found[1:]:
            result = result.widen(other)
        return result
    if op == "Pad":
        upstream = bounds_of(node.input[0], depth + 1)
        value = _scalar(constants, node.input[2]) if len(node.input) > 2 and node.input[2] else 0.0
        if value is None:
            return Bounds()
        return upstream.widen(Bounds(value, value))
    return Bounds()


def _clip_limits(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto]) -> tuple[float | None, float | None]:
    attributes = {attribute.name: attribute.f for attribute in node.attribute}
    if "min" in attributes or "max" in attributes:  # opset < 11
        return attributes.get("min"), attributes.get("max")
    low = _scalar(constants, node.input[1]) if len(node.input) > 1 and node.input[1] else None
    high = _scalar(constants, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    return low, high


def _scalar(constants: dict[str, onnx.TensorProto], name: str) -> float | None:
    if name not in constants:
        return None  # computed at run time (or a Constant node we do not follow): nothing proved
    values = numpy_helper.to_array(constants[name]).ravel()
    if values.size != 1 or not math.isfinite(float(values[0])):
        return None
    return float(values[0])
