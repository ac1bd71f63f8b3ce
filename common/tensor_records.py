"""Tensors into frame records and back: the n-bit codec applied per cut tensor, as the split's manifest says.

common/wire.py lays records out in a frame and checks them; this module decides what a record holds. Robot, edge,
the profiler and the benchmark's in-process pipeline all build and read feature records through
``encode_features`` / ``decode_features``, so per-channel ranges and the float16/float32 widths are handled the
same way everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from common.errors import InvalidArgument
from common.manifest import SplitManifest
from common.quantization import (
    decode_tensor,
    decode_tensor_per_channel,
    encode_tensor,
    encode_tensor_per_channel,
    validate_bits,
    validate_channel_ranges,
    validate_range,
)
from common.wire import TensorKind, TensorRecord, float32, validate_record


def encode_features(manifest: SplitManifest, features: Sequence[npt.ArrayLike]) -> list[TensorRecord]:
    """The head's outputs (in the manifest's cut order) as records at the split's bits and ranges."""
    bits = manifest.quantization.bits
    records = []
    for spec, tensor in zip(manifest.cut, features, strict=True):
        clip = manifest.quantization.range_of(spec.name)
        if bits <= 8 and clip.channel_lo is not None and clip.channel_hi is not None:
            records.append(per_channel_record(spec.name, tensor, bits, clip.channel_lo, clip.channel_hi))
        else:
            records.append(quantized_record(spec.name, tensor, bits, clip.lo, clip.hi))
    return records


def decode_features(manifest: SplitManifest, records: Sequence[TensorRecord]) -> dict[str, npt.NDArray[np.float32]]:
    """The tail's feeds from records already checked against the manifest; per-channel ranges come from it."""
    return {record.name: decode_record(record, _channel_ranges(manifest, record)) for record in records}


def _channel_ranges(manifest: SplitManifest, record: TensorRecord) -> tuple[list[float], list[float]] | None:
    if record.kind is not TensorKind.QUANTIZED_PER_CHANNEL:
        return None
    expected = manifest.quantization.range_of(record.name)
    if expected.channel_lo is None or expected.channel_hi is None:
        return None  # a per-channel record without ranges: decode_record refuses it
    return expected.channel_lo, expected.channel_hi


def quantized_record(name: str, x: npt.ArrayLike, bits: int, lo: float, hi: float) -> TensorRecord:
    """Encode ``x`` at ``bits`` (1..8 quantized, 16 float16, 32 float32) into a record; lo/hi kept as float32."""
    b = validate_bits(bits)
    arr = np.asarray(x)
    kind = TensorKind.QUANTIZED if b <= 8 else TensorKind.FLOAT16 if b == 16 else TensorKind.FLOAT32
    if kind is TensorKind.QUANTIZED:
        lo, hi = validate_range(lo, hi)
    else:
        lo, hi = float32(lo), float32(hi)
    record = TensorRecord(name, kind, b, lo, hi, tuple(int(d) for d in arr.shape), encode_tensor(arr, b, lo, hi))
    validate_record(record, 0)
    return record


def per_channel_record(
    name: str, x: npt.ArrayLike, bits: int, channel_lo: npt.ArrayLike, channel_hi: npt.ArrayLike
) -> TensorRecord:
    """Encode ``x`` (ndim >= 2) at 1..8 bits with one range per index of axis 1 (kind 5; the ranges stay out of
    the frame, the receiver takes them from the manifest)."""
    arr = np.asarray(x)
    payload = encode_tensor_per_channel(arr, bits, channel_lo, channel_hi)
    shape = tuple(int(d) for d in arr.shape)
    record = TensorRecord(name, TensorKind.QUANTIZED_PER_CHANNEL, int(bits), 0.0, 0.0, shape, payload)
    validate_record(record, 0)
    return record


def image_record(name: str, data: bytes | memoryview) -> TensorRecord:
    """A record carrying encoded image bytes (JPEG/PNG/WebP) untouched."""
    record = TensorRecord(name, TensorKind.ENCODED_IMAGE, 8, 0.0, 0.0, (memoryview(data).nbytes,), data)
    validate_record(record, 0)
    return record


def decode_record(
    record: TensorRecord, channel_ranges: tuple[Sequence[float], Sequence[float]] | None = None
) -> npt.NDArray[np.float32]:
    """The float32 tensor a quantized / float16 / float32 record carries (C-contiguous, writable).

    A per-channel record (kind 5) needs ``channel_ranges`` = (lo per channel, hi per channel) from the manifest.
    """
    if record.kind is TensorKind.ENCODED_IMAGE:
        raise InvalidArgument(f"tensor {record.name!r} is an encoded image; decode it with the image codec")
    if record.kind is TensorKind.QUANTIZED_PER_CHANNEL:
        if channel_ranges is None:
            raise InvalidArgument(
                f"tensor {record.name!r} is quantized per channel; its ranges come from the split's manifest"
            )
        lo, hi = validate_channel_ranges(channel_ranges[0], channel_ranges[1], record.shape[1])
        return decode_tensor_per_channel(record.payload, record.bits, lo, hi, record.shape)
    return decode_tensor(record.payload, record.bits, record.lo, record.hi, record.shape)
