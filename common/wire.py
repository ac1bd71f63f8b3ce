"""The versioned binary frame that carries cut tensors from the robot to the edge (spec: docs/wire-format.md).

Version 1, all integers and floats little-endian::

    offset size  field
    0      4     magic b"SPLT"
    4      1     version = 1
    5      1     flags = 0 (no flag is defined in v1; any set bit is refused)
    6      2     tensor count N (u16, 1..16)
    8      32    split id (raw sha256 bytes; 64 lowercase hex chars for people)
    40     16    request id (raw bytes, uuid4)
    56           N tensor headers: kind u8, bits u8, ndim u8, name length u8, lo f32, hi f32,
                 ndim x dim u32, payload length u64, name (utf-8)
                 the N payloads, concatenated in header order
    last 4       CRC32 (zlib.crc32) of every byte before it

Kinds: 1 quantized (lo/hi in the header), 2 float16, 3 float32, 4 encoded image, 5 quantized per channel (the
per-channel ranges of axis 1 are not in the frame: they come from the split's manifest; lo = hi = 0 in the header),
6 affine (zero-exact codes, common/affine.py: scale and zero point in the lo/hi fields), 7 affine per channel
(scales and zero points from the manifest's ranges; lo = hi = 0), 8 affine per channel with a width per channel
(common/mixed_widths.py: widths, scales and zero points from the manifest; bits = the widths' average; lo = hi = 0).
The kind byte's high bit (0x80) says the payload of a code kind (1, 5, 6, 7, 8) is coded with Zstandard
(common/entropy.py) and is shorter than the packed codes.

Decoding checks the structure before the CRC, so that a malformed frame gets a message naming the field at
fault, and it never reads past the buffer or allocates from header values. Payloads of a decoded frame are
zero-copy memoryviews into the caller's buffer. Turning tensors into records and back is common/tensor_records.py.
"""

from __future__ import annotations

import math
import struct
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from common.affine import validate_affine
from common.entropy import coded_size_problem
from common.errors import InvalidArgument, InvalidFrame, PayloadTooLarge
from common.manifest import is_hex
from common.quantization import byte_view, packed_size, validate_range

MAGIC = b"SPLT"
VERSION = 1
MAX_TENSORS = 16
MAX_NDIM = 8
MAX_NAME_BYTES = 255
MAX_DIM = 0xFFFFFFFF
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024

_FIXED = struct.Struct("<4sBBH32s16s")
_TENSOR = struct.Struct("<BBBBff")
_PAYLOAD_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")
FIXED_HEADER_BYTES = _FIXED.size  # 56
CRC_BYTES = _CRC.size  # 4


class TensorKind(IntEnum):
    QUANTIZED = 1
    FLOAT16 = 2
    FLOAT32 = 3
    ENCODED_IMAGE = 4
    QUANTIZED_PER_CHANNEL = 5
    AFFINE = 6
    AFFINE_PER_CHANNEL = 7
    AFFINE_MIXED = 8


CODED = 0x80  # on the kind byte: the payload is the Zstandard coding of the packed codes
_KIND_BITS: dict[TensorKind, tuple[int, ...]] = {
    TensorKind.QUANTIZED: (1, 2, 3, 4, 5, 6, 7, 8),
    TensorKind.FLOAT16: (16,),
    TensorKind.FLOAT32: (32,),
    TensorKind.ENCODED_IMAGE: (8,),
    TensorKind.QUANTIZED_PER_CHANNEL: (1, 2, 3, 4, 5, 6, 7, 8),
    TensorKind.AFFINE: (1, 2, 3, 4, 5, 6, 7, 8),
    TensorKind.AFFINE_PER_CHANNEL: (1, 2, 3, 4, 5, 6, 7, 8),
    TensorKind.AFFINE_MIXED: (1, 2, 3, 4, 5, 6, 7, 8),
}
CODE_KINDS = (
    TensorKind.QUANTIZED,
    TensorKind.QUANTIZED_PER_CHANNEL,
    TensorKind.AFFINE,
    TensorKind.AFFINE_PER_CHANNEL,
    TensorKind.AFFINE_MIXED,
)
PER_CHANNEL_KINDS = (TensorKind.QUANTIZED_PER_CHANNEL, TensorKind.AFFINE_PER_CHANNEL, TensorKind.AFFINE_MIXED)


@dataclass(frozen=True)
class TensorRecord:
    name: str
    kind: TensorKind
    bits: int
    lo: float
    hi: float
    shape: tuple[int, ...]
    payload: bytes | memoryview  # the packed codes, or their Zstandard coding when ``coded``
    coded: bool = False


@dataclass(frozen=True)
class Frame:
    split_id: str  # 64 lowercase hex chars
    request_id: str  # 32 lowercase hex chars
    tensors: tuple[TensorRecord, ...]


def frame_overhead(tensors: Iterable[tuple[str, int]]) -> int:
    """Bytes a frame spends besides payloads, for tensors given as (name, ndim)."""
    return FIXED_HEADER_BYTES + CRC_BYTES + sum(_tensor_header_size(name, ndim) for name, ndim in tensors)


def encode_frame(split_id: str, tensors: Sequence[TensorRecord], request_id: str | None = None) -> bytes:
    """Serialize a frame; every field is validated (InvalidArgument) so that decode_frame accepts the result."""
    if not isinstance(split_id, str) or not is_hex(split_id, 64):
        raise InvalidArgument(f"split id must be 64 lowercase hex chars (a sha256), got {split_id!r}")
    if request_id is None:
        request_id = uuid.uuid4().hex
    elif not isinstance(request_id, str) or not is_hex(request_id, 32):
        raise InvalidArgument(f"request id must be 32 lowercase hex chars (a uuid4 hex), got {request_id!r}")
    if not 1 <= len(tensors) <= MAX_TENSORS:
        raise InvalidArgument(f"a frame carries 1..{MAX_TENSORS} tensors, got {len(tensors)}")
    names = [validate_record(r, i) for i, r in enumerate(tensors)]
    _refuse_duplicates([r.name for r in tensors], InvalidArgument)

    parts: list[bytes | memoryview] = [
        _FIXED.pack(MAGIC, VERSION, 0, len(tensors), bytes.fromhex(split_id), bytes.fromhex(request_id))
    ]
    for r, name in zip(tensors, names, strict=True):
        payload_len = memoryview(r.payload).nbytes
        parts.append(
            _TENSOR.pack(int(r.kind) | (CODED if r.coded else 0), r.bits, len(r.shape), len(name), r.lo, r.hi)
            + struct.pack(f"<{len(r.shape)}I", *r.shape)
            + _PAYLOAD_LEN.pack(payload_len)
            + name
        )
    parts.extend(byte_view(r.payload) for r in tensors)
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    parts.append(_CRC.pack(crc))
    return b"".join(parts)  # the one copy of each payload


def decode_frame(data: bytes | bytearray | memoryview, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Frame:
    """Parse and check a frame. InvalidFrame names the first problem found; PayloadTooLarge if over max_bytes."""
    mv = byte_view(data)
    size = mv.nbytes
    if size > max_bytes:
        raise PayloadTooLarge(f"frame is {size} bytes, the limit is {max_bytes}")
    minimum = FIXED_HEADER_BYTES + CRC_BYTES
    if size < minimum:
        raise InvalidFrame(f"frame too short: {size} bytes, the fixed header and CRC alone need {minimum}")
    magic, version, flags, count, split_raw, request_raw = _FIXED.unpack_from(mv, 0)
    if magic != MAGIC:
        raise InvalidFrame(f"bad magic {bytes(magic)!r}: a split-computing frame starts with {MAGIC!r}")
    if version != VERSION:
        raise InvalidFrame(f"unsupported frame version {version}: this server speaks version {VERSION}")
    if flags != 0:
        raise InvalidFrame(f"unknown frame flags 0x{flags:02x}: version {VERSION} defines none, they must be 0")
    if not 1 <= count <= MAX_TENSORS:
        raise InvalidFrame(f"tensor count {count} out of range 1..{MAX_TENSORS}")

    end = size - CRC_BYTES
    off = FIXED_HEADER_BYTES
    headers: list[tuple[str, TensorKind, bool, int, float, float, tuple[int, ...], int]] = []
    for i in range(count):
        _need(off, _TENSOR.size, end, f"tensor {i} header")
        kind_raw, bits, ndim, name_len, lo, hi = _TENSOR.unpack_from(mv, off)
        off += _TENSOR.size
        coded = bool(kind_raw & CODED)
        kind = _kind(kind_raw & ~CODED)
        if isinstance(kind, str):
            raise InvalidFrame(f"tensor {i}: {kind}")
        if coded and kind not in CODE_KINDS:
            raise InvalidFrame(f"tensor {i}: only code kinds (1, 5, 6, 7, 8) can be coded, got kind {int(kind)} coded")
        _refuse(_bits_problem(kind, bits), i)
        _refuse(_ndim_problem(kind, ndim), i)
        _need(off, 4 * ndim + _PAYLOAD_LEN.size + name_len, end, f"tensor {i} dims, payload length and name")
        shape = struct.unpack_from(f"<{ndim}I", mv, off)
        off += 4 * ndim
        (payload_len,) = _PAYLOAD_LEN.unpack_from(mv, off)
        off += _PAYLOAD_LEN.size
        name_raw = bytes(mv[off : off + name_len])
        off += name_len
        _refuse(_dims_problem(shape), i)
        _refuse(_range_problem(kind, bits, lo, hi), i)
        _refuse(_payload_problem(kind, bits, shape, payload_len, coded), i)
        try:
            name = name_raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidFrame(f"tensor {i}: name is not valid utf-8 ({e.reason} at byte {e.start})") from None
        headers.append((name, kind, coded, bits, lo, hi, shape, payload_len))
    _refuse_duplicates([h[0] for h in headers], InvalidFrame)

    records = []
    for i, (name, kind, coded, bits, lo, hi, shape, payload_len) in enumerate(headers):
        if payload_len > end - off:
            raise InvalidFrame(f"frame truncated: tensor {i} payload needs {payload_len} bytes, {end - off} remain")
        payload = mv[off : off + payload_len]
        if coded:
            _refuse(coded_size_problem(payload, packed_size(math.prod(shape), bits)), i)
        records.append(TensorRecord(name, kind, bits, lo, hi, shape, payload, coded))
        off += payload_len
    if off != end:
        raise InvalidFrame(f"frame has {end - off} trailing bytes between the last payload and the CRC")
    (stated,) = _CRC.unpack_from(mv, end)
    actual = zlib.crc32(mv[:end])
    if stated != actual:
        raise InvalidFrame(f"frame CRC32 mismatch: trailer says 0x{stated:08x}, the frame bytes give 0x{actual:08x}")
    return Frame(bytes(split_raw).hex(), bytes(request_raw).hex(), tuple(records))


def _tensor_header_size(name: str, ndim: int) -> int:
    return _TENSOR.size + 4 * ndim + _PAYLOAD_LEN.size + len(name.encode("utf-8"))


def validate_record(r: object, i: int) -> bytes:
    """Check one record for encoding; returns its utf-8 name."""
    if not isinstance(r, TensorRecord):
        raise InvalidArgument(f"tensor {i}: expected a TensorRecord, got {type(r).__name__}")
    kind = _kind(r.kind)
    if isinstance(kind, str):
        raise InvalidArgument(f"tensor {i} ({r.name!r}): {kind}")
    if r.coded and kind not in CODE_KINDS:
        raise InvalidArgument(f"tensor {i} ({r.name!r}): only code kinds (1, 5, 6, 7, 8) can be coded")
    if not isinstance(r.name, str):
        raise InvalidArgument(f"tensor {i}: name must be a str, got {type(r.name).__name__}")
    try:
        name = r.name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"tensor {i}: name {r.name!r} cannot be encoded as utf-8") from None
    if len(name) > MAX_NAME_BYTES:
        raise InvalidArgument(f"tensor {i}: name is {len(name)} utf-8 bytes, at most {MAX_NAME_BYTES} fit")
    shape = tuple(r.shape)
    if any(isinstance(d, bool) or not isinstance(d, int) for d in shape):
        raise InvalidArgument(f"tensor {i} ({r.name!r}): shape must be ints, got {shape!r}")
    if isinstance(r.bits, bool) or not isinstance(r.bits, int):
        raise InvalidArgument(f"tensor {i} ({r.name!r}): bits must be an int, got {r.bits!r}")
    for problem in (
        _bits_problem(kind, r.bits),
        _ndim_problem(kind, len(shape)),
        _dims_problem(shape),
        _range_problem(kind, r.bits, r.lo, r.hi),
        _payload_problem(kind, r.bits, shape, memoryview(r.payload).nbytes, r.coded),
        coded_size_problem(r.payload, packed_size(math.prod(shape), r.bits)) if r.coded else None,
    ):
        if problem is not None:
            raise InvalidArgument(f"tensor {i} ({r.name!r}): {problem}")
    return name


def _kind(raw: object) -> TensorKind | str:
    try:
        return TensorKind(raw)  # type: ignore[arg-type]  # anything TensorKind() refuses is reported below
    except (ValueError, TypeError):
        return (
            f"unknown kind {raw!r} (1 quantized, 2 float16, 3 float32, 4 encoded image, 5 quantized per channel, "
            "6 affine, 7 affine per channel, 8 affine per channel at a width per channel)"
        )


def _bits_problem(kind: TensorKind, bits: int) -> str | None:
    allowed = _KIND_BITS[kind]
    if bits in allowed:
        return None
    want = "1..8" if kind in CODE_KINDS else str(allowed[0])
    return f"bits {bits} not valid for kind {kind.name.lower()} (must be {want})"


def _ndim_problem(kind: TensorKind, ndim: int) -> str | None:
    if kind is TensorKind.ENCODED_IMAGE and ndim != 1:
        return f"an encoded image has ndim 1 (its byte length), got {ndim}"
    if kind in PER_CHANNEL_KINDS and ndim < 2:
        return f"a per-channel quantized tensor needs ndim >= 2 (channels on axis 1), got {ndim}"
    if not 1 <= ndim <= MAX_NDIM:
        return f"ndim {ndim} out of range 1..{MAX_NDIM}"
    return None


def _dims_problem(shape: tuple[int, ...]) -> str | None:
    for j, d in enumerate(shape):
        if not 1 <= d <= MAX_DIM:
            return f"dim {j} is {d}; every dim must be in 1..{MAX_DIM}"
    return None


def _range_problem(kind: TensorKind, bits: int, lo: float, hi: float) -> str | None:
    if kind is TensorKind.QUANTIZED:
        try:
            validate_range(lo, hi)
        except InvalidArgument as e:
            return e.message
        return None
    if kind is TensorKind.ENCODED_IMAGE:
        return None if lo == 0 and hi == 0 else f"an encoded image has lo = hi = 0, got lo={lo!r}, hi={hi!r}"
    if kind is TensorKind.AFFINE:
        return validate_affine(lo, hi, bits) if bits in _KIND_BITS[kind] else None
    if kind in PER_CHANNEL_KINDS:
        if lo == 0 and hi == 0:
            return None
        return f"a per-channel quantized tensor has lo = hi = 0 (ranges are in the manifest), got lo={lo!r}, hi={hi!r}"
    if not (math.isfinite(float32(lo)) and math.isfinite(float32(hi))):
        return f"lo and hi must be finite float32 values, got lo={lo!r}, hi={hi!r}"
    return None


def _payload_problem(
    kind: TensorKind, bits: int, shape: tuple[int, ...], payload_len: int, coded: bool = False
) -> str | None:
    if kind is TensorKind.ENCODED_IMAGE:
        need = shape[0]
        if payload_len != need:
            return f"payload length {payload_len} does not match the image byte length {need} in dims"
        return None
    need = packed_size(math.prod(shape), bits)
    if coded and payload_len >= need:
        return f"a coded payload must be shorter than the {need} bytes of packed codes it replaces, got {payload_len}"
    if not coded and payload_len != need:
        return f"payload length {payload_len} does not match shape {shape} at {bits} bits ({need} bytes)"
    return None


def _refuse_duplicates(names: list[str], error: type[InvalidArgument] | type[InvalidFrame]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise error(f"tensor {i}: name {name!r} appears twice; tensor names in a frame must be unique")
        seen.add(name)


def _need(off: int, n: int, end: int, what: str) -> None:
    if n > end - off:
        raise InvalidFrame(f"frame truncated: {what} needs {n} bytes at offset {off}, {max(end - off, 0)} remain")


def _refuse(problem: str | None, i: int) -> None:
    if problem is not None:
        raise InvalidFrame(f"tensor {i}: {problem}")


def float32(v: float) -> float:
    """``v`` as the frame stores it (float32), inf where it does not fit."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", v))[0])
    except (OverflowError, struct.error):
        return math.inf


__all__ = [
    "CODED",
    "CODE_KINDS",
    "CRC_BYTES",
    "DEFAULT_MAX_FRAME_BYTES",
    "FIXED_HEADER_BYTES",
    "MAGIC",
    "MAX_NDIM",
    "MAX_TENSORS",
    "PER_CHANNEL_KINDS",
    "VERSION",
    "Frame",
    "TensorKind",
    "TensorRecord",
    "decode_frame",
    "encode_frame",
    "float32",
    "frame_overhead",
    "validate_record",
]
