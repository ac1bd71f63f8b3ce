"""The robot's quantizer and the edge's dequantizer as ONNX graphs: cut tensors -> packed n-bit codes -> cut tensors.

Built from a split's manifest (its own width, its ranges and code scheme; per tensor or per channel), so any ONNX
runtime computes exactly what ``common/tensor_records.py`` computes in numpy: the same float32 constants, the same
operation order, ``Round`` (half to even, as ``rint``), NaN to the scheme's NaN code. Codes are packed per sample:
the codes of tensor ``t`` are a ``uint8`` tensor ``t.codes`` of shape ``[batch, ceil(count * bits / 8)]``, row
``i`` byte for byte the frame payload of sample ``i`` (``common.quantization.pack_codes``' LSB-first stream, which
for 2 and 4 bits is ONNX's ``UINT2``/``UINT4`` layout). Packing works on groups of 8 codes: in int64 the group is
``sum(code_k * 2**(k * bits))`` (at most 56 bits below 8 bits) and its bytes are ``word // 256**j % 256``.

Needs the default ONNX domain at opset 13 or later (``Round``, ``Clip`` bounds and ``Pad`` pads as inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from common.affine import affine_channel_params, affine_params
from common.codes import codes_name
from common.errors import InvalidArgument
from common.manifest import SplitManifest, TensorRange, TensorSpec
from common.quantization import QUANTIZED_BITS, channel_view, packed_size, validate_channel_ranges, validate_range

MIN_OPSET = 13
_ELEMENT_TYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "float64": TensorProto.DOUBLE}


@dataclass
class _Nodes:
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


@dataclass(frozen=True)
class _ClipConstants:
    """Clip codes as numpy computes them (float32 scalars, or shaped (1, C, 1, ...) per channel)."""

    levels: int
    lo: np.ndarray
    scale: np.ndarray  # levels / (hi - lo): the quantizer multiplies by it
    step: np.ndarray  # (hi - lo) / levels: the dequantizer multiplies by it


@dataclass(frozen=True)
class _AffineConstants:
    """Zero-exact affine codes as numpy computes them (float32 scalars, or shaped (1, C, 1, ...) per channel)."""

    levels: int
    scale: np.ndarray
    zero_point: np.ndarray


_Constants = _ClipConstants | _AffineConstants


def _constants(clip: TensorRange, bits: int, scheme: str, ndim: int) -> _Constants:
    levels = (1 << bits) - 1
    affine = scheme == "affine"
    if clip.channel_lo is not None and clip.channel_hi is not None:
        lo, hi = validate_channel_ranges(clip.channel_lo, clip.channel_hi)
        shape = (1, lo.size) + (1,) * (ndim - 2)
        if affine:
            scales, zeros = affine_channel_params(lo, hi, bits)
            return _AffineConstants(levels, scales.reshape(shape), zeros.reshape(shape))
        lo_b, scale, step = channel_view(lo, hi, ndim, bits)
        return _ClipConstants(levels, lo_b, scale, step)
    if affine:
        s, z = affine_params(clip.lo, clip.hi, bits)
        return _AffineConstants(levels, _f32(s), _f32(z))
    lo32, hi32 = validate_range(clip.lo, clip.hi)
    return _ClipConstants(levels, _f32(lo32), _f32(levels / (hi32 - lo32)), _f32((hi32 - lo32) / levels))


def _quantize(g: _Nodes, x: str, c: _Constants) -> str:
    zero_f, top = g.const("zero", _f32(0)), g.const("levels", _f32(c.levels))
    if isinstance(c, _AffineConstants):
        scaled = g.op("Round", [g.op("Div", [x, g.const("scale", c.scale)], "divided")], "rounded")
        shifted = g.op("Add", [scaled, g.const("zero_point", c.zero_point)], "shifted")
        clipped = g.op("Clip", [shifted, zero_f, top], "clipped")
        nan_code = g.const("nan_code", c.zero_point)
    else:
        shifted = g.op("Sub", [x, g.const("lo", c.lo)], "shifted")
        scaled = g.op("Mul", [shifted, g.const("scale", c.scale)], "scaled")
        clipped = g.op("Round", [g.op("Clip", [scaled, zero_f, top], "clamped")], "clipped")
        nan_code = zero_f
    return g.op("Where", [g.op("IsNaN", [x], "nan"), nan_code, clipped], "codes_float")


def _dequantize(g: _Nodes, codes: str, c: _Constants) -> str:
    if isinstance(c, _AffineConstants):
        centred = g.op("Sub", [codes, g.const("zero_point", c.zero_point)], "centred")
        return g.op("Mul", [centred, g.const("scale", c.scale)], "dequantized")
    scaled = g.op("Mul", [codes, g.const("step", c.step)], "scaled")
    return g.op("Add", [scaled, g.const("lo", c.lo)], "dequantized")


def _f32(value: object) -> np.ndarray:
    return np.array(value, dtype=np.float32)


def _int64(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _sum_last_axis(g: _Nodes, x: str, parts: int) -> str:
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


def _first_columns(g: _Nodes, x: str, count: int) -> str:
    """``x[:, :count]``: drops the padding of the last group."""
    starts, ends, axes = g.const("starts", _int64([0])), g.const("ends", _int64([count])), g.const("axes", _int64([1]))
    return g.op("Slice", [x, starts, ends, axes], "trimmed")


def _pack(g: _Nodes, codes_float: str, count: int, bits: int) -> str:
    flat = g.op("Reshape", [codes_float, g.const("flat_shape", _int64([-1, count]))], "flat")
    if bits == 8:
        return g.op("Cast", [flat], "packed_8", to=TensorProto.UINT8)
    groups = -(-count // 8)
    ints = g.op("Cast", [flat], "ints", to=TensorProto.INT64)
    if groups * 8 != count:
        ints = g.op("Pad", [ints, g.const("pads", _int64([0, 0, 0, groups * 8 - count]))], "padded")
    grouped = g.op("Reshape", [ints, g.const("group_shape", _int64([-1, groups, 8]))], "grouped")
    weights = g.const("weights", _int64([1 << (k * bits) for k in range(8)]))
    words = _sum_last_axis(g, g.op("Mul", [grouped, weights], "weighted"), 8)
    places = g.const("places", _int64([256**j for j in range(bits)]))
    data = g.op("Mod", [g.op("Div", [words, places], "byte_places"), g.const("byte", _int64([256]))], "bytes")
    data = g.op("Reshape", [data, g.const("byte_shape", _int64([-1, groups * bits]))], "byte_rows")
    need = packed_size(count, bits)
    if need != groups * bits:
        data = _first_columns(g, data, need)
    return g.op("Cast", [data], "packed", to=TensorProto.UINT8)


def _unpack(g: _Nodes, packed: str, count: int, bits: int) -> str:
    """Codes as float32 rows ``[batch, count]``."""
    if bits == 8:
        return g.op("Cast", [packed], "codes_8", to=TensorProto.FLOAT)
    groups = -(-count // 8)
    need = packed_size(count, bits)
    ints = g.op("Cast", [packed], "ints", to=TensorProto.INT64)
    if need != groups * bits:
        ints = g.op("Pad", [ints, g.const("pads", _int64([0, 0, 0, groups * bits - need]))], "padded")
    grouped = g.op("Reshape", [ints, g.const("group_shape", _int64([-1, groups, bits]))], "grouped")
    places = g.const("places", _int64([256**j for j in range(bits)]))
    words = _sum_last_axis(g, g.op("Mul", [grouped, places], "weighted"), bits)
    shifts = g.const("shifts", _int64([1 << (k * bits) for k in range(8)]))
    codes = g.op("Mod", [g.op("Div", [words, shifts], "code_places"), g.const("modulus", _int64([1 << bits]))], "codes")
    codes = g.op("Reshape", [codes, g.const("code_shape", _int64([-1, groups * 8]))], "code_rows")
    if groups * 8 != count:
        codes = _first_columns(g, codes, count)
    return g.op("Cast", [codes], "codes_float", to=TensorProto.FLOAT)


def _checked(manifest: SplitManifest) -> int:
    bits = manifest.quantization.bits
    if bits not in QUANTIZED_BITS:
        raise InvalidArgument(f"a {bits}-bit split sends floats: it has no codes to put in a graph")
    if any(entry.channel_bits for entry in manifest.quantization.ranges):
        raise InvalidArgument("this split codes each channel at its own width; the code graphs pack one width")
    return bits


def quantizer_nodes(manifest: SplitManifest, spec: TensorSpec, index: int) -> _Nodes:
    """Nodes from the cut tensor ``spec.name`` to its packed codes ``codes_name(spec.name)``."""
    bits = _checked(manifest)
    g = _Nodes(f"splitbot_quantize/{index}")
    c = _constants(manifest.quantization.range_of(spec.name), bits, manifest.quantization.scheme, len(spec.shape))
    x = spec.name
    if spec.dtype != "float32":
        x = g.op("Cast", [x], "as_float", to=TensorProto.FLOAT)
    packed = _pack(g, _quantize(g, x, c), spec.elements, bits)
    g.nodes.append(helper.make_node("Identity", [packed], [codes_name(spec.name)], name=f"{g.prefix}/out"))
    return g


def dequantizer_nodes(manifest: SplitManifest, spec: TensorSpec, index: int) -> _Nodes:
    """Nodes from the packed codes ``codes_name(spec.name)`` back to the cut tensor ``spec.name``."""
    bits = _checked(manifest)
    g = _Nodes(f"splitbot_dequantize/{index}")
    c = _constants(manifest.quantization.range_of(spec.name), bits, manifest.quantization.scheme, len(spec.shape))
    rows = _unpack(g, codes_name(spec.name), spec.elements, bits)
    shaped = g.op("Reshape", [rows, g.const("shape", _int64([-1, *spec.shape[1:]]))], "shaped")
    values = _dequantize(g, shaped, c)
    element = _ELEMENT_TYPES.get(spec.dtype, TensorProto.FLOAT)
    if element != TensorProto.FLOAT:
        values = g.op("Cast", [values], "as_declared", to=element)
    g.nodes.append(helper.make_node("Identity", [values], [spec.name], name=f"{g.prefix}/out"))
    return g


def _codes_value(spec: TensorSpec, bits: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        codes_name(spec.name), TensorProto.UINT8, ["batch", packed_size(spec.elements, bits)]
    )


def _cut_value(spec: TensorSpec) -> onnx.ValueInfoProto:
    element = _ELEMENT_TYPES.get(spec.dtype, TensorProto.FLOAT)
    return helper.make_tensor_value_info(spec.name, element, ["batch", *spec.shape[1:]])


def _model(
    nodes: list[_Nodes], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node for group in nodes for node in group.nodes],
        "splitbot_codes",
        inputs,
        outputs,
        [constant for group in nodes for constant in group.constants],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", MIN_OPSET)], producer_name="splitbot")
    model.ir_version = 7  # opset 13's IR: loads in every ONNX Runtime since 1.7
    onnx.checker.check_model(model)
    return model


def quantizer_model(manifest: SplitManifest) -> onnx.ModelProto:
    """A graph from the cut tensors (``[batch, ...]``) to their packed codes (``uint8 [batch, bytes]``)."""
    bits = _checked(manifest)
    groups = [quantizer_nodes(manifest, spec, i) for i, spec in enumerate(manifest.cut)]
    return _model(groups, [_cut_value(s) for s in manifest.cut], [_codes_value(s, bits) for s in manifest.cut])


def dequantizer_model(manifest: SplitManifest) -> onnx.ModelProto:
    """A graph from packed codes (``uint8 [batch, bytes]``) to the cut tensors the tail takes."""
    bits = _checked(manifest)
    groups = [dequantizer_nodes(manifest, spec, i) for i, spec in enumerate(manifest.cut)]
    return _model(groups, [_codes_value(s, bits) for s in manifest.cut], [_cut_value(s) for s in manifest.cut])


def model_opset(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 1)


def _joinable(model: onnx.ModelProto, what: str) -> onnx.ModelProto:
    if model_opset(model) < MIN_OPSET:
        raise InvalidArgument(
            f"the {what} uses ONNX opset {model_opset(model)}; codes inside the graph need opset {MIN_OPSET} or later"
        )
    joined = onnx.ModelProto()
    joined.CopyFrom(model)
    return joined


def head_with_codes(head: onnx.ModelProto, manifest: SplitManifest, keep_features: bool = False) -> onnx.ModelProto:
    """The head with the quantizer appended: its outputs are the packed codes of every cut tensor (and, with
    ``keep_features``, the cut tensors too, after the codes)."""
    bits = _checked(manifest)
    joined = _joinable(head, "head")
    for index, spec in enumerate(manifest.cut):
        group = quantizer_nodes(manifest, spec, index)
        joined.graph.node.extend(group.nodes)
        joined.graph.initializer.extend(group.constants)
    features = list(joined.graph.output) if keep_features else []
    del joined.graph.output[:]
    joined.graph.output.extend([*(_codes_value(spec, bits) for spec in manifest.cut), *features])
    onnx.checker.check_model(joined)
    return joined


def tail_with_codes(tail: onnx.ModelProto, manifest: SplitManifest) -> onnx.ModelProto:
    """The tail with the dequantizer in front: its inputs are the packed codes of every cut tensor."""
    bits = _checked(manifest)
    joined = _joinable(tail, "tail")
    front: list[onnx.NodeProto] = []
    for index, spec in enumerate(manifest.cut):
        group = dequantizer_nodes(manifest, spec, index)
        front.extend(group.nodes)
        joined.graph.initializer.extend(group.constants)
    nodes = [*front, *joined.graph.node]  # a topological order: the dequantizers feed what read the cut
    del joined.graph.node[:]
    joined.graph.node.extend(nodes)
    del joined.graph.input[:]
    joined.graph.input.extend(_codes_value(spec, bits) for spec in manifest.cut)
    onnx.checker.check_model(joined)
    return joined
