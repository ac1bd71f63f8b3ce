"""ONNX nodes that pack code rows and unpack them, shared by the one-width and the per-channel-width graphs.

Packing works on groups of 8 codes: in int64 the group is ``sum(code_k * 2**(k * bits))`` (at most 56 bits below 8
bits) and its bytes are ``word // 256**j % 256``; the stream is ``common.quantization.pack_codes``' LSB-first one,
which for 2 and 4 bits is ONNX's ``UINT2``/``UINT4`` layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from common.quantization import packed_size


@dataclass
class Nodes:
    """Nodes and initializers under one name prefix, so they never collide with the graph they join."""

    prefix: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    constants: list[onnx.TensorProto] = field(default_factory=list)

    def const(self, label: str, value: np.ndarray) -> str:
        name = f"{self.prefix}/{label}"
        self.constants.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, kind: str, inputs: list[str], label: str, **attributes: Any) -> str:
        output = f"{self.prefix}/{label}"
        self.nodes.append(helper.make_node(kind, inputs, [output], name=output, **attributes))
        return output


def f32(value: object) -> np.ndarray:
    return np.array(value, dtype=np.float32)


def int64(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _sum_last_axis(g: Nodes, x: str, parts: int) -> str:
    """``x [batch, groups, parts]`` summed over its last axis, keeping it (``[batch, groups, 1]``), exactly: ONNX
    Runtime's int64 ``ReduceSum`` loses the low bits of 56-bit words (7-bit codes), a chain of ``Add`` does not."""
    if parts == 1:
        return x
    columns = [f"{g.prefix}/column_{k}" for k in range(parts)]
    g.nodes.append(helper.make_node("Split", [x], columns, name=f"{g.prefix}/columns", axis=2))
    total = columns[0]
    for k in range(1, parts):
        total = g.op("Add", [total, columns[k]], f"sum_{k}")
    return total


def _first_columns(g: Nodes, x: str, count: int) -> str:
    """``x[:, :count]``: drops the padding of the last group."""
    starts, ends, axes = g.const("starts", int64([0])), g.const("ends", int64([count])), g.const("axes", int64([1]))
    return g.op("Slice", [x, starts, ends, axes], "trimmed")


def pack_rows(g: Nodes, codes_float: str, count: int, bits: int) -> str:
    flat = g.op("Reshape", [codes_float, g.const("flat_shape", int64([-1, count]))], "flat")
    if bits == 8:
        return g.op("Cast", [flat], "packed_8", to=TensorProto.UINT8)
    groups = -(-count // 8)
    ints = g.op("Cast", [flat], "ints", to=TensorProto.INT64)
    if groups * 8 != count:
        ints = g.op("Pad", [ints, g.const("pads", int64([0, 0, 0, groups * 8 - count]))], "padded")
    grouped = g.op("Reshape", [ints, g.const("group_shape", int64([-1, groups, 8]))], "grouped")
    weights = g.const("weights", int64([1 << (k * bits) for k in range(8)]))
    words = _sum_last_axis(g, g.op("Mul", [grouped, weights], "weighted"), 8)
    places = g.const("places", int64([256**j for j in range(bits)]))
    data = g.op("Mod", [g.op("Div", [words, places], "byte_places"), g.const("byte", int64([256]))], "bytes")
    data = g.op("Reshape", [data, g.const("byte_shape", int64([-1, groups * bits]))], "byte_rows")
    need = packed_size(count, bits)
    if need != groups * bits:
        data = _first_columns(g, data, need)
    return g.op("Cast", [data], "packed", to=TensorProto.UINT8)


def unpack_rows(g: Nodes, packed: str, count: int, bits: int) -> str:
    """Codes as float32 rows ``[batch, count]``."""
    if bits == 8:
        return g.op("Cast", [packed], "codes_8", to=TensorProto.FLOAT)
    groups = -(-count // 8)
    need = packed_size(count, bits)
    ints = g.op("Cast", [packed], "ints", to=TensorProto.INT64)
    if need != groups * bits:
        ints = g.op("Pad", [ints, g.const("pads", int64([0, 0, 0, groups * bits - need]))], "padded")
    grouped = g.op("Reshape", [ints, g.const("group_shape", int64([-1, groups, bits]))], "grouped")
    places = g.const("places", int64([256**j for j in range(bits)]))
    words = _sum_last_axis(g, g.op("Mul", [grouped, places], "weighted"), bits)
    shifts = g.const("shifts", int64([1 << (k * bits) for k in range(8)]))
    codes = g.op("Mod", [g.op("Div", [words, shifts], "code_places"), g.const("modulus", int64([1 << bits]))], "codes")
    codes = g.op("Reshape", [codes, g.const("code_shape", int64([-1, groups * 8]))], "code_rows")
    if groups * 8 != count:
        codes = _first_columns(g, codes, count)
    return g.op("Cast", [codes], "codes_float", to=TensorProto.FLOAT)
