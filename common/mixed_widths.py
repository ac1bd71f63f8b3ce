"""Zero-exact affine codes with a width of its own for each channel (wire kind 8, docs/wire-format.md).

Channel ``c`` (axis 1) is coded at ``widths[c]`` bits (1..8) with the scale and zero point of its range at that
width, exactly as kind 7 codes it at one width for all. The codes form one LSB-first bit stream in the tensor's C
order, each value taking its channel's width; with widths averaging ``bits`` the payload is ``ceil(count * bits /
8)`` bytes, as a kind-7 payload at ``bits`` is, and with every width equal it is that payload byte for byte. The
widths, like the ranges, come from the split's manifest, never from the frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from common.affine import affine_channel_params, dequantize_affine, quantize_affine
from common.errors import InvalidArgument
from common.quantization import QUANTIZED_BITS, packed_size, validate_channel_ranges

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
_BIT = np.arange(8, dtype=np.uint8)


def validate_widths(widths: Sequence[int], channels: int | None = None) -> tuple[npt.NDArray[np.int64], int]:
    """The widths as an array and the whole number of bits they average, or why they cannot code a tensor."""
    array = np.asarray(widths)
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu":
        raise InvalidArgument(f"channel widths must be a non-empty list of integers, got {list(array.shape)}")
    if channels is not None and array.size != channels:
        raise InvalidArgument(f"{array.size} channel widths for a tensor with {channels} channels (axis 1)")
    if not np.isin(array, QUANTIZED_BITS).all():
        wrong = sorted(set(array.tolist()) - set(QUANTIZED_BITS))
        raise InvalidArgument(f"channel widths must be 1..8 bits, got {wrong}")
    total = int(array.sum())
    if total % array.size:
        raise InvalidArgument(f"channel widths must average a whole number of bits, got {total} bits over {array.size}")
    return array.astype(np.int64), total // array.size


def _mask(shape: tuple[int, ...], widths: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """(shape..., 8): which of each value's 8 code bits the stream carries, its channel's low ``width``."""
    per_channel = _BIT[None, :] < widths[:, None]  # (C, 8)
    view = per_channel.reshape((1, len(widths)) + (1,) * (len(shape) - 2) + (8,))
    return np.broadcast_to(view, (*shape, 8))


def _channel_params(
    lo: npt.ArrayLike, hi: npt.ArrayLike, widths: npt.NDArray[np.int64]
) -> dict[int, tuple[npt.NDArray[np.intp], F32, F32]]:
    lo32, hi32 = validate_channel_ranges(lo, hi, len(widths))
    groups = {}
    for bits in np.unique(widths).tolist():
        channels = np.flatnonzero(widths == bits)
        scales, zero_points = affine_channel_params(lo32[channels], hi32[channels], int(bits))
        groups[int(bits)] = (channels, scales, zero_points)
    return groups


def encode_mixed(x: npt.ArrayLike, widths: Sequence[int], lo: npt.ArrayLike, hi: npt.ArrayLike) -> bytes:
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise InvalidArgument(f"per-channel widths need a tensor with a channel axis 1, got shape {arr.shape}")
    array, _ = validate_widths(widths, arr.shape[1])
    codes = np.empty(arr.shape, dtype=np.uint8)
    for bits, (channels, scales, zero_points) in _channel_params(lo, hi, array).items():
        part = arr[:, channels]
        codes[:, channels] = quantize_affine(part, bits, scales, zero_points).reshape(part.shape)
    stream = ((codes[..., None] >> _BIT) & 1).astype(np.uint8)[_mask(arr.shape, array)]
    return np.packbits(stream, bitorder="little").tobytes()


def decode_mixed(
    payload: bytes | bytearray | memoryview,
    widths: Sequence[int],
    lo: npt.ArrayLike,
    hi: npt.ArrayLike,
    shape: tuple[int, ...],
) -> F32:
    """The float32 tensor of ``shape`` whose kind-8 codes are ``payload`` (C-contiguous, writable)."""
    if len(shape) < 2:
        raise InvalidArgument(f"per-channel widths need a tensor with a channel axis 1, got shape {shape}")
    array, bits = validate_widths(widths, shape[1])
    count = int(np.prod(shape, dtype=np.int64))
    data = np.frombuffer(payload, dtype=np.uint8)
    if data.size != packed_size(count, bits):
        raise InvalidArgument(
            f"{data.size} payload bytes for shape {shape} at {bits} bits per value on average "
            f"({packed_size(count, bits)} bytes)"
        )
    stream = np.unpackbits(data, bitorder="little")[: count * bits]
    planes = np.zeros((*shape, 8), dtype=np.uint8)
    planes[_mask(shape, array)] = stream
    codes = np.bitwise_or.reduce(planes << _BIT, axis=-1).astype(np.uint8)
    out = np.empty(shape, dtype=np.float32)
    for width, (channels, scales, zero_points) in _channel_params(lo, hi, array).items():
        part = codes[:, channels]
        out[:, channels] = dequantize_affine(part, width, scales, zero_points, part.shape)
    return out


__all__ = ["decode_mixed", "encode_mixed", "validate_widths"]
