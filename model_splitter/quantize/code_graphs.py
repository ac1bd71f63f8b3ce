"""The robot's quantizer and the edge's dequantizer as ONNX graphs: cut tensors -> packed n-bit codes -> cut tensors.

Built from a split's manifest (its own width, its ranges and code scheme; per tensor or per channel; a width per
channel in ``mixed_code_graphs``), so any ONNX runtime computes exactly what ``common/tensor_records.py`` computes
in numpy: the same float32 constants, the same operation order, ``Round`` (half to even, as ``rint``), NaN to the
scheme's NaN code. Codes are packed per sample: the codes of tensor ``t`` are a ``uint8`` tensor ``t.codes`` of
shape ``[batch, ceil(count * bits / 8)]``, row ``i`` byte for byte the frame payload of sample ``i``
(``common.quantization.pack_codes``' LSB-first stream, which for 2 and 4 bits is ONNX's ``UINT2``/``UINT4`` layout).
Packing works on groups of 8 codes: in int64 the group is ``sum(code_k * 2**(k * bits))`` (at most 56 bits below 8
bits) and its bytes are ``word // 256**j % 256``.

Needs the default ONNX domain at opset 13 or later (``Round``, ``Clip`` bounds and ``Pad`` pads as inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper

from common.affine import affine_channel_params, affine_params
from common.codes import codes_name
from common.errors import InvalidArgument
from common.manifest import Quantization, TensorRange, TensorSpec
from common.quantization import QUANTIZED_BITS, channel_view, packed_size, validate_channel_ranges, validate_range
from model_splitter.quantize.code_graph_ops import Nodes, f32, int64, pack_rows, unpack_rows
from model_splitter.quantize.mixed_code_graphs import mixed_dequantizer, mixed_quantizer

MIN_OPSET = 13


class CodedCut(Protocol):
    """What the graphs are built from: a split's manifest, or any cut with its quantization (the benchmarks)."""

    @property
    def quantization(self) -> Quantization: ...

    @property
    def cut(self) -> list[TensorSpec]: ...


_ELEMENT_TYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "float64": TensorProto.DOUBLE}


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
        return _AffineConstants(levels, f32(s), f32(z))
    lo32, hi32 = validate_range(clip.lo, clip.hi)
    return _ClipConstants(levels, f32(lo32), f32(levels / (hi32 - lo32)), f32((hi32 - lo32) / levels))


def _quantize(g: Nodes, x: str, c: _Constants) -> str:
    zero_f, top = g.const("zero", f32(0)), g.const("levels", f32(c.levels))
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


def _dequantize(g: Nodes, codes: str, c: _Constants) -> str:
    if isinstance(c, _AffineConstants):
        centred = g.op("Sub", [codes, g.const("zero_point", c.zero_point)], "centred")
        return g.op("Mul", [centred, g.const("scale", c.scale)], "dequantized")
    scaled = g.op("Mul", [codes, g.const("step", c.step)], "scaled")
    return g.op("Add", [scaled, g.const("lo", c.lo)], "dequantized")


def _checked(manifest: CodedCut) -> int:
    bits = manifest.quantization.bits
    if bits not in QUANTIZED_BITS:
        raise InvalidArgument(f"a {bits}-bit split sends floats: it has no codes to put in a graph")
    return bits


def quantizer_nodes(manifest: CodedCut, spec: TensorSpec, index: int) -> Nodes:
    """Nodes from the cut tensor ``spec.name`` to its packed codes ``codes_name(spec.name)``."""
    bits = _checked(manifest)
    g = Nodes(f"splitbot_quantize/{index}")
    clip = manifest.quantization.range_of(spec.name)
    x = spec.name
    if spec.dtype != "float32":
        x = g.op("Cast", [x], "as_float", to=TensorProto.FLOAT)
    if clip.channel_bits:
        packed = mixed_quantizer(g, x, clip, spec)
    else:
        c = _constants(clip, bits, manifest.quantization.scheme, len(spec.shape))
        packed = pack_rows(g, _quantize(g, x, c), spec.elements, bits)
    g.nodes.append(helper.make_node("Identity", [packed], [codes_name(spec.name)], name=f"{g.prefix}/out"))
    return g


def dequantizer_nodes(manifest: CodedCut, spec: TensorSpec, index: int) -> Nodes:
    """Nodes from the packed codes ``codes_name(spec.name)`` back to the cut tensor ``spec.name``."""
    bits = _checked(manifest)
    g = Nodes(f"splitbot_dequantize/{index}")
    clip = manifest.quantization.range_of(spec.name)
    if clip.channel_bits:
        values = mixed_dequantizer(g, codes_name(spec.name), clip, spec)
    else:
        c = _constants(clip, bits, manifest.quantization.scheme, len(spec.shape))
        rows = unpack_rows(g, codes_name(spec.name), spec.elements, bits)
        shaped = g.op("Reshape", [rows, g.const("shape", int64([-1, *spec.shape[1:]]))], "shaped")
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
    nodes: list[Nodes], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
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


def quantizer_model(manifest: CodedCut) -> onnx.ModelProto:
    """A graph from the cut tensors (``[batch, ...]``) to their packed codes (``uint8 [batch, bytes]``)."""
    bits = _checked(manifest)
    groups = [quantizer_nodes(manifest, spec, i) for i, spec in enumerate(manifest.cut)]
    return _model(groups, [_cut_value(s) for s in manifest.cut], [_codes_value(s, bits) for s in manifest.cut])


def dequantizer_model(manifest: CodedCut) -> onnx.ModelProto:
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


def head_with_codes(head: onnx.ModelProto, manifest: CodedCut, keep_features: bool = False) -> onnx.ModelProto:
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


def tail_with_codes(tail: onnx.ModelProto, manifest: CodedCut) -> onnx.ModelProto:
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
