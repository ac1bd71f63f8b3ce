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
from common.quantization import QUANTIZED_BITS, pack_codes, packed_size, unpack_codes, validate_channel_ranges

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


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


I64 = npt.NDArray[np.int64]


def _offsets(shape: tuple[int, ...], widths: I64) -> tuple[I64, I64]:
    """Each value's width and the bit at which its code starts in the stream (C order of ``shape``)."""
    per_value = np.broadcast_to(widths.reshape((1, len(widths)) + (1,) * (len(shape) - 2)), shape).reshape(-1)
    starts = np.cumsum(per_value) - per_value
    return per_value, starts


def byte_blocks(shape: tuple[int, ...], widths: I64) -> tuple[int, I64] | None:
    """Where each (sample, channel) block of codes starts in the payload, in bytes, when every block is a whole
    number of bytes (values per channel times width a multiple of 8); None when some block is not."""
    per_channel = int(np.prod(shape[2:], dtype=np.int64))
    block_bits = per_channel * widths
    if np.any(block_bits % 8):
        return None
    block_bytes = block_bits // 8
    row = int(block_bytes.sum())
    starts = np.arange(shape[0], dtype=np.int64)[:, None] * row + (np.cumsum(block_bytes) - block_bytes)[None, :]
    return row, starts


def _pack(codes: U8, widths: I64, bits: int) -> bytes:
    size = packed_size(codes.size, bits)
    blocks = byte_blocks(codes.shape, widths)
    if blocks is not None:
        # Byte-aligned blocks: each width's channels packed at once, their blocks put in place.
        _, starts = blocks
        out = np.empty(size, dtype=np.uint8)
        for width in np.unique(widths).tolist():
            channels = np.flatnonzero(widths == width)
            packed = np.frombuffer(pack_codes(codes[:, channels], int(width)), dtype=np.uint8)
            rows = packed.reshape(len(codes) * len(channels), -1)
            out[starts[:, channels].reshape(-1, 1) + np.arange(rows.shape[1])] = rows
        return out.tobytes()
    _, first_bit = _offsets(codes.shape, widths)
    flat = codes.reshape(-1).astype(np.int64)
    byte, shift = first_bit >> 3, first_bit & 7
    # A code of <= 8 bits spans at most two bytes and no two codes share a bit, so the sums are the bitwise ors
    # (and stay below 256: exact in float64).
    low = np.bincount(byte, weights=(flat << shift) & 0xFF, minlength=size + 1)
    high = np.bincount(byte + 1, weights=flat >> (8 - shift), minlength=size + 2)
    return (low[:size] + high[:size]).astype(np.uint8).tobytes()


def _unpack(data: U8, widths: I64, shape: tuple[int, ...]) -> U8:
    blocks = byte_blocks(shape, widths)
    if blocks is not None:
        _, starts = blocks
        codes = np.empty(shape, dtype=np.uint8)
        for width in np.unique(widths).tolist():
            channels = np.flatnonzero(widths == width)
            block = int(np.prod(shape[2:], dtype=np.int64)) * int(width) // 8
            rows = data[starts[:, channels].reshape(-1, 1) + np.arange(block)]
            part_shape = (shape[0], len(channels), *shape[2:])
            count = int(np.prod(part_shape, dtype=np.int64))
            codes[:, channels] = unpack_codes(rows.reshape(-1), int(width), count).reshape(part_shape)
        return codes
    per_value, first_bit = _offsets(shape, widths)
    padded = np.zeros(data.size + 1, dtype=np.int64)
    padded[: data.size] = data
    byte, shift = first_bit >> 3, first_bit & 7
    pair = padded[byte] | (padded[byte + 1] << 8)
    unpacked: U8 = ((pair >> shift) & ((1 << per_value) - 1)).astype(np.uint8).reshape(shape)
    return unpacked


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
    array, bits = validate_widths(widths, arr.shape[1])
    codes = np.empty(arr.shape, dtype=np.uint8)
    for width, (channels, scales, zero_points) in _channel_params(lo, hi, array).items():
        part = arr[:, channels]
        codes[:, channels] = quantize_affine(part, width, scales, zero_points).reshape(part.shape)
    return _pack(codes, array, bits)


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
    codes = _unpack(data, array, shape)
    out = np.empty(shape, dtype=np.float32)
    for width, (channels, scales, zero_points) in _channel_params(lo, hi, array).items():
        part = codes[:, channels]
        out[:, channels] = dequantize_affine(part, width, scales, zero_points, part.shape)
    return out


__all__ = ["byte_blocks", "decode_mixed", "encode_mixed", "validate_widths"]
