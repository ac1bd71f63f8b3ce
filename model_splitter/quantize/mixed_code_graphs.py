"""Wire kind 8 in the code graphs: each channel at its own width, quantized and packed by ONNX operators.

``common/mixed_widths.py`` codes channel ``c`` with the affine scale and zero point of its range at
``widths[c]`` bits and writes one LSB-first stream in C order. Where every (sample, channel) block of codes is a
whole number of bytes (values per channel times width a multiple of 8; the frame's fast path), the stream is the
blocks side by side, and a block is the one-width packing of its channel. So the graph gathers the channels of each
width, packs them with the one-width nodes (``code_graph_ops``), and puts the bytes in stream order with one
constant ``Gather``; the dequantizer reads each width's blocks back the same way. Tensors whose blocks are not
whole bytes get no code graphs (``InvalidArgument``; the split is made without them).
"""

from __future__ import annotations

import numpy as np

from common.affine import affine_channel_params
from common.errors import InvalidArgument
from common.manifest import TensorRange, TensorSpec
from common.mixed_widths import byte_blocks, validate_widths
from common.quantization import validate_channel_ranges
from model_splitter.quantize.code_graph_ops import Nodes, f32, int64, pack_rows, unpack_rows


class _Layout:
    """Per channel: width, affine constants shaped (1, C, 1, ...); per width: its channels and their bytes."""

    def __init__(self, clip: TensorRange, spec: TensorSpec) -> None:
        if clip.channel_bits is None or clip.channel_lo is None or clip.channel_hi is None:
            raise InvalidArgument(f"{spec.name!r} has no widths per channel")
        sample = (1, *spec.shape[1:])
        self.widths, _ = validate_widths(clip.channel_bits, sample[1])
        blocks = byte_blocks(sample, self.widths)
        if blocks is None:
            raise InvalidArgument(
                f"{spec.name!r}: {int(np.prod(sample[2:], dtype=np.int64))} values per channel at these widths are "
                "not whole bytes per channel; the code graphs pack byte-aligned channel blocks only"
            )
        self.row_bytes, starts = blocks
        self.starts = starts[0]
        self.per_channel = int(np.prod(sample[2:], dtype=np.int64))
        lo, hi = validate_channel_ranges(clip.channel_lo, clip.channel_hi, len(self.widths))
        channels = len(self.widths)
        scale, zero_point, levels = (np.empty(channels, np.float32) for _ in range(3))
        for width in np.unique(self.widths).tolist():
            chosen = np.flatnonzero(self.widths == width)
            scale[chosen], zero_point[chosen] = affine_channel_params(lo[chosen], hi[chosen], int(width))
            levels[chosen] = (1 << int(width)) - 1
        shape = (1, channels) + (1,) * (len(spec.shape) - 2)
        self.scale, self.zero_point, self.levels = (v.reshape(shape) for v in (scale, zero_point, levels))
        self.groups = [(int(w), np.flatnonzero(self.widths == w)) for w in np.unique(self.widths).tolist()]

    def block_bytes(self, width: int) -> int:
        return self.per_channel * width // 8

    def stream_positions(self, channels: np.ndarray, width: int) -> np.ndarray:
        """Where the bytes of ``channels``' blocks (in that order) sit in one sample's stream."""
        positions: np.ndarray = self.starts[channels][:, None] + np.arange(self.block_bytes(width))[None, :]
        return positions.reshape(-1)


def mixed_quantizer(g: Nodes, x: str, clip: TensorRange, spec: TensorSpec) -> str:
    """Nodes from the float32 cut tensor ``x`` to its kind-8 code rows (``uint8 [batch, bytes]``)."""
    layout = _Layout(clip, spec)
    scaled = g.op("Round", [g.op("Div", [x, g.const("scale", layout.scale)], "divided")], "rounded")
    zero_point = g.const("zero_point", layout.zero_point)
    shifted = g.op("Add", [scaled, zero_point], "shifted")
    # Clip takes one bound for the whole tensor; the channels' top codes differ, so Max then Min (as np.clip).
    clamped = g.op(
        "Min", [g.op("Max", [shifted, g.const("zero", f32(0))], "floored"), g.const("levels", layout.levels)], "clipped"
    )
    codes = g.op("Where", [g.op("IsNaN", [x], "nan"), zero_point, clamped], "codes_float")
    parts, order = [], []
    for width, channels in layout.groups:
        part = Nodes(f"{g.prefix}/w{width}")
        indices = part.const("channel_indices", int64(channels.tolist()))
        gathered = part.op("Gather", [codes, indices], "channels", axis=1)
        parts.append(pack_rows(part, gathered, len(channels) * layout.per_channel, width))
        order.append(layout.stream_positions(channels, width))
        g.nodes += part.nodes
        g.constants += part.constants
    joined = g.op("Concat", parts, "by_width", axis=1) if len(parts) > 1 else parts[0]
    # joined[:, k] is the stream's byte order[k]; the stream takes byte j from joined[:, inverse[j]].
    inverse = np.empty(layout.row_bytes, dtype=np.int64)
    inverse[np.concatenate(order)] = np.arange(layout.row_bytes)
    return g.op("Gather", [joined, g.const("stream_order", inverse)], "stream", axis=1)


def mixed_dequantizer(g: Nodes, packed: str, clip: TensorRange, spec: TensorSpec) -> str:
    """Nodes from kind-8 code rows ``packed`` to the float32 cut tensor ``[batch, ...]``."""
    layout = _Layout(clip, spec)
    parts, channel_order = [], []
    for width, channels in layout.groups:
        part = Nodes(f"{g.prefix}/w{width}")
        positions = part.const("positions", layout.stream_positions(channels, width))
        blocks = part.op("Gather", [packed, positions], "blocks", axis=1)
        rows = unpack_rows(part, blocks, len(channels) * layout.per_channel, width)
        shape = part.const("shape", int64([-1, len(channels), *spec.shape[2:]]))
        parts.append(part.op("Reshape", [rows, shape], "shaped"))
        channel_order.append(channels)
        g.nodes += part.nodes
        g.constants += part.constants
    joined = g.op("Concat", parts, "by_width", axis=1) if len(parts) > 1 else parts[0]
    inverse = np.empty(len(layout.widths), dtype=np.int64)
    inverse[np.concatenate(channel_order)] = np.arange(len(layout.widths))
    codes = g.op("Gather", [joined, g.const("channel_order", inverse)], "codes", axis=1)
    centred = g.op("Sub", [codes, g.const("zero_point", layout.zero_point)], "centred")
    return g.op("Mul", [centred, g.const("scale", layout.scale)], "dequantized")
