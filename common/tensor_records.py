"""Tensors into frame records and back: the n-bit codec applied per cut tensor, as the split's manifest says.

common/wire.py lays records out in a frame and checks them; this module decides what a record holds. Robot, edge,
the profiler and the benchmark's in-process pipeline all build and read feature records through
``encode_features`` / ``decode_features``, so the code scheme (clip or zero-exact affine), per-channel ranges,
Zstandard coding and the float16/float32 widths are handled the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from common.affine import affine_channel_params, affine_params, dequantize_affine, quantize_affine
from common.entropy import code_payload, decode_payload
from common.errors import InvalidArgument
from common.manifest import SplitManifest, TensorRange
from common.mixed_widths import decode_mixed, encode_mixed, validate_widths
from common.quantization import (
    decode_tensor,
    decode_tensor_per_channel,
    encode_tensor,
    encode_tensor_per_channel,
    pack_codes,
    packed_size,
    unpack_codes,
    validate_bits,
    validate_channel_ranges,
    validate_range,
)
from common.wire import CODE_KINDS, PER_CHANNEL_KINDS, TensorKind, TensorRecord, float32, validate_record


def encode_features(
    manifest: SplitManifest, features: Sequence[npt.ArrayLike], bits: int | None = None
) -> list[TensorRecord]:
    """The head's outputs (in the manifest's cut order) as records at the split's bits (or another of its widths),
    ranges and code scheme, Zstandard-coded where the manifest asks for it and the coding is shorter."""
    try:
        quantization = manifest.quantization.at(bits if bits is not None else manifest.quantization.bits)
    except KeyError:
        widths = ", ".join(map(str, manifest.quantization.widths()))
        raise InvalidArgument(f"split {manifest.id} has no {bits}-bit width (it has {widths})") from None
    records = []
    for spec, tensor in zip(manifest.cut, features, strict=True):
        clip = quantization.range_of(spec.name)
        record = feature_record(spec.name, tensor, quantization.bits, clip, quantization.scheme)
        records.append(coded_record(record) if quantization.entropy == "zstd" else record)
    return records


def feature_record(name: str, tensor: npt.ArrayLike, bits: int, clip: TensorRange, scheme: str) -> TensorRecord:
    """One cut tensor as a record: kinds 6/7 (affine) or 1/5 (clip) at 1..8 bits, float16/float32 above."""
    per_channel = clip.channel_lo is not None and clip.channel_hi is not None
    if bits <= 8 and scheme == "affine":
        if per_channel and clip.channel_bits is not None:
            return mixed_record(name, tensor, clip)
        if per_channel:
            return affine_channel_record(name, tensor, bits, clip.channel_lo or [], clip.channel_hi or [])
        return affine_record(name, tensor, bits, clip.lo, clip.hi)
    if bits <= 8 and per_channel:
        return per_channel_record(name, tensor, bits, clip.channel_lo or [], clip.channel_hi or [])
    return quantized_record(name, tensor, bits, clip.lo, clip.hi)


def codes_record(
    name: str, shape: tuple[int, ...], bits: int, clip: TensorRange, scheme: str, payload: bytes
) -> TensorRecord:
    """The record ``feature_record`` would have made of a tensor of ``shape`` whose packed codes are ``payload``
    (1..8 bits): the envelope a code tensor that came without a frame needs to be decoded."""
    per_channel = clip.channel_lo is not None and clip.channel_hi is not None
    if scheme == "affine" and per_channel:
        kind = TensorKind.AFFINE_MIXED if clip.channel_bits is not None else TensorKind.AFFINE_PER_CHANNEL
        record = TensorRecord(name, kind, bits, 0.0, 0.0, shape, payload)
    elif scheme == "affine":
        scale, zero_point = affine_params(clip.lo, clip.hi, bits)
        record = TensorRecord(name, TensorKind.AFFINE, bits, scale, float(zero_point), shape, payload)
    elif per_channel:
        record = TensorRecord(name, TensorKind.QUANTIZED_PER_CHANNEL, bits, 0.0, 0.0, shape, payload)
    else:
        lo, hi = validate_range(clip.lo, clip.hi)
        record = TensorRecord(name, TensorKind.QUANTIZED, bits, lo, hi, shape, payload)
    validate_record(record, 0)
    return record


def coded_record(record: TensorRecord) -> TensorRecord:
    """``record`` with its packed codes Zstandard-coded, or ``record`` itself when coding would not save a byte."""
    if record.kind not in CODE_KINDS or record.coded:
        return record
    coded = code_payload(record.payload)
    if len(coded) >= memoryview(record.payload).nbytes:
        return record
    return TensorRecord(record.name, record.kind, record.bits, record.lo, record.hi, record.shape, coded, coded=True)


def decode_features(manifest: SplitManifest, records: Sequence[TensorRecord]) -> dict[str, npt.NDArray[np.float32]]:
    """The tail's feeds from records already checked against the manifest; per-channel ranges come from it."""
    return {record.name: _decode_with_manifest(manifest, record) for record in records}


def _decode_with_manifest(manifest: SplitManifest, record: TensorRecord) -> npt.NDArray[np.float32]:
    if record.kind not in PER_CHANNEL_KINDS:
        return decode_record(record)
    expected = manifest.quantization.at(record.bits).range_of(record.name)
    if expected.channel_lo is None or expected.channel_hi is None:
        return decode_record(record)  # a per-channel record without ranges: decode_record refuses it
    return decode_record(record, (expected.channel_lo, expected.channel_hi), expected.channel_bits)


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


def affine_record(name: str, x: npt.ArrayLike, bits: int, lo: float, hi: float) -> TensorRecord:
    """Encode ``x`` at 1..8 bits as zero-exact affine codes of ``[lo, hi]`` (kind 6: scale and zero point in the
    header's lo and hi fields)."""
    arr = np.asarray(x)
    scale, zero_point = affine_params(lo, hi, bits)
    payload = pack_codes(quantize_affine(arr, bits, scale, zero_point), bits)
    shape = tuple(int(d) for d in arr.shape)
    record = TensorRecord(name, TensorKind.AFFINE, int(bits), scale, float(zero_point), shape, payload)
    validate_record(record, 0)
    return record


def affine_channel_record(
    name: str, x: npt.ArrayLike, bits: int, channel_lo: npt.ArrayLike, channel_hi: npt.ArrayLike
) -> TensorRecord:
    """Encode ``x`` (ndim >= 2) as affine codes with one scale and zero point per index of axis 1 (kind 7; they
    derive from the manifest's channel ranges, so they stay out of the frame)."""
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise InvalidArgument(f"per-channel quantization needs a tensor with a channel axis 1, got shape {arr.shape}")
    lo32, hi32 = validate_channel_ranges(channel_lo, channel_hi, arr.shape[1])
    scales, zero_points = affine_channel_params(lo32, hi32, bits)
    payload = pack_codes(quantize_affine(arr, bits, scales, zero_points), bits)
    shape = tuple(int(d) for d in arr.shape)
    record = TensorRecord(name, TensorKind.AFFINE_PER_CHANNEL, int(bits), 0.0, 0.0, shape, payload)
    validate_record(record, 0)
    return record


def mixed_record(name: str, x: npt.ArrayLike, clip: TensorRange) -> TensorRecord:
    """Encode ``x`` (ndim >= 2) as affine codes at a width per channel (kind 8; the widths, scales and zero points
    derive from the manifest's range, so they stay out of the frame; the header's bits is the widths' average)."""
    arr = np.asarray(x)
    widths, lo, hi = clip.channel_bits or [], clip.channel_lo or [], clip.channel_hi or []
    payload = encode_mixed(arr, widths, lo, hi)
    shape = tuple(int(d) for d in arr.shape)
    record = TensorRecord(name, TensorKind.AFFINE_MIXED, int(sum(widths) // len(widths)), 0.0, 0.0, shape, payload)
    validate_record(record, 0)
    return record


def image_record(name: str, data: bytes | memoryview) -> TensorRecord:
    """A record carrying encoded image bytes (JPEG/PNG/WebP) untouched."""
    record = TensorRecord(name, TensorKind.ENCODED_IMAGE, 8, 0.0, 0.0, (memoryview(data).nbytes,), data)
    validate_record(record, 0)
    return record


def decode_record(
    record: TensorRecord,
    channel_ranges: tuple[Sequence[float], Sequence[float]] | None = None,
    channel_bits: Sequence[int] | None = None,
) -> npt.NDArray[np.float32]:
    """The float32 tensor a quantized / float16 / float32 record carries (C-contiguous, writable).

    A per-channel record (kinds 5, 7 and 8) needs ``channel_ranges`` = (lo per channel, hi per channel) from the
    manifest, and kind 8 its ``channel_bits``. A coded payload is decoded (bounded by the packed size) first.
    """
    if record.kind is TensorKind.ENCODED_IMAGE:
        raise InvalidArgument(f"tensor {record.name!r} is an encoded image; decode it with the image codec")
    count = int(np.prod(record.shape, dtype=np.int64))
    payload = decode_payload(record.payload, packed_size(count, record.bits)) if record.coded else record.payload
    ranges: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None
    if record.kind in PER_CHANNEL_KINDS:
        if channel_ranges is None:
            raise InvalidArgument(
                f"tensor {record.name!r} is quantized per channel; its ranges come from the split's manifest"
            )
        ranges = validate_channel_ranges(channel_ranges[0], channel_ranges[1], record.shape[1])
    if record.kind is TensorKind.AFFINE_MIXED and ranges is not None:
        if channel_bits is None:
            raise InvalidArgument(f"tensor {record.name!r} has a width per channel; the widths are in the manifest")
        widths, average = validate_widths(channel_bits, record.shape[1])
        if average != record.bits:
            raise InvalidArgument(
                f"tensor {record.name!r} says {record.bits} bits per value; its channel widths average {average}"
            )
        return decode_mixed(payload, widths.tolist(), ranges[0], ranges[1], record.shape)
    if record.kind is TensorKind.AFFINE:
        codes = unpack_codes(payload, record.bits, count)
        return dequantize_affine(codes, record.bits, record.lo, record.hi, record.shape)
    if record.kind is TensorKind.AFFINE_PER_CHANNEL and ranges is not None:
        scales, zero_points = affine_channel_params(ranges[0], ranges[1], record.bits)
        codes = unpack_codes(payload, record.bits, count)
        return dequantize_affine(codes, record.bits, scales, zero_points, record.shape)
    if ranges is not None:
        return decode_tensor_per_channel(payload, record.bits, ranges[0], ranges[1], record.shape)
    return decode_tensor(payload, record.bits, record.lo, record.hi, record.shape)
