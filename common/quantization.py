"""Uniform clip quantization of cut tensors and the dense bit packing of the codes.

Quantization (bits 1..8), with ``levels = 2**bits - 1`` and ``lo``/``hi`` first rounded to float32 (the wire
carries them as float32, so robot and edge must compute with the same numbers)::

    code  = clip(rint((x - lo) * levels / (hi - lo)), 0, levels)     # uint8; NaN -> 0, +inf -> levels, -inf -> 0
    x_hat = lo + code * (hi - lo) / levels                            # float32

Arithmetic is float32 (never float64), ``rint`` rounds half to even, values outside ``[lo, hi]`` clip to the
end codes. For values inside the range ``|x - x_hat| <= step / 2`` up to float32 rounding (a few ulps of
``max(|lo|, |hi|)``), where ``step = (hi - lo) / levels``.

Bit packing: the codes form one little-endian bit stream. Code ``i`` occupies stream bits
``[i*bits, (i+1)*bits)``, least significant bit of the code first; stream bit ``k`` is bit ``k % 8`` (LSB first)
of byte ``k // 8``. The last byte is zero-padded; the packed size is ``ceil(count * bits / 8)``. Examples:
4 bits: byte ``j = code[2j] | code[2j+1] << 4``; 2 bits: four codes per byte, code 0 in the low two bits;
three 4-bit codes 1, 2, 3 pack to ``21 03``. Readers ignore the padding bits.

Bits 16 and 32 are not quantized: the tensor travels as little-endian float16 / float32, without clipping
(float16 overflows to +-inf).

Per-channel quantization (``quantize_per_channel`` / ``dequantize_per_channel``) is the same arithmetic with one
``[lo_c, hi_c]`` per index ``c`` of axis 1 (the channel axis of NCHW and of (batch, C, ...) tensors): each channel
uses exactly the float32 scale and step that ``quantize(x[:, c], bits, lo_c, hi_c)`` would, so a tensor whose
channels all share one range gives the same codes as per-tensor quantization. The codes are packed the same way.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import numpy.typing as npt

from common.errors import InvalidArgument, InvalidFrame

FLOAT32_MAX = float(np.finfo(np.float32).max)

SUPPORTED_BITS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 16, 32)
QUANTIZED_BITS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


def validate_bits(bits: object) -> int:
    """Return ``bits`` if it is one of SUPPORTED_BITS, else raise InvalidArgument."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or int(bits) not in SUPPORTED_BITS:
        raise InvalidArgument(f"bits must be one of {', '.join(map(str, SUPPORTED_BITS))}, got {bits!r}")
    return int(bits)


def _validate_quantized_bits(bits: object) -> int:
    b = validate_bits(bits)
    if b not in QUANTIZED_BITS:
        raise InvalidArgument(f"bits must be 1..8 for quantization and packing, got {b}")
    return b


def validate_range(lo: object, hi: object) -> tuple[float, float]:
    """Check a quantization range and return it rounded to float32 (as the wire carries it).

    Refuses non-numbers, non-finite values (also after float32 rounding) and ``lo >= hi`` (also after
    rounding: 1.0 and 1.0 + 1e-12 collapse to one float32).
    """
    rounded: list[float] = []
    for name, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise InvalidArgument(f"quantization {name} must be a real number, got {v!r}")
        f = float(v)
        if not math.isfinite(f):
            raise InvalidArgument(f"quantization {name} must be finite, got {f!r}")
        with np.errstate(over="ignore"):
            rounded.append(float(np.float32(f)))
    lo32, hi32 = rounded
    if not (math.isfinite(lo32) and math.isfinite(hi32)):
        raise InvalidArgument(f"quantization range [{lo!r}, {hi!r}] does not fit in float32")
    if not lo32 < hi32:
        raise InvalidArgument(f"quantization range needs lo < hi (as float32), got lo={lo32!r}, hi={hi32!r}")
    return lo32, hi32


def packed_size(count: int, bits: int) -> int:
    """Bytes that ``count`` values take at ``bits``: ceil(count*bits/8) for 1..8, 2*count for 16, 4*count for 32."""
    b = validate_bits(bits)
    if count < 0:
        raise InvalidArgument(f"count must be >= 0, got {count}")
    return (count * b + 7) // 8


def quantize(x: npt.ArrayLike, bits: int, lo: float, hi: float) -> U8:
    """Quantize ``x`` to flat (C order) uint8 codes in ``[0, 2**bits - 1]``; NaN maps to code 0."""
    b = _validate_quantized_bits(bits)
    lo32, hi32 = validate_range(lo, hi)
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise InvalidArgument(f"cannot quantize an array of dtype {arr.dtype}")
    levels = (1 << b) - 1
    # One float32 temporary, C order whatever the input layout; every later op works in place on it.
    t = np.empty(arr.shape, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        np.subtract(arr, np.float32(lo32), out=t, dtype=np.float32, casting="unsafe")
        t *= np.float32(levels / (hi32 - lo32))
        # clip is several times faster than fmax/fmin but keeps NaN, hence the isnan fix-up below.
        np.clip(t, np.float32(0), np.float32(levels), out=t)
        np.rint(t, out=t)
        codes: U8 = t.reshape(-1).astype(np.uint8)
    nan = np.isnan(t.reshape(-1))
    if nan.any():
        codes[nan] = 0
    return codes


def dequantize(codes: npt.ArrayLike, bits: int, lo: float, hi: float, shape: tuple[int, ...]) -> F32:
    """Map codes back to float32 ``lo + code * step``, reshaped to ``shape`` (C-contiguous, writable)."""
    b = _validate_quantized_bits(bits)
    lo32, hi32 = validate_range(lo, hi)
    c = np.asarray(codes)
    count = _count(shape)
    if c.size != count:
        raise InvalidArgument(f"{c.size} codes cannot fill shape {tuple(shape)} ({count} values)")
    out: F32 = c.astype(np.float32).reshape(shape)
    out *= np.float32((hi32 - lo32) / ((1 << b) - 1))
    out += np.float32(lo32)
    return out


def pack_codes(codes: npt.ArrayLike, bits: int) -> bytes:
    """Pack uint8 codes (< 2**bits) densely, LSB first (see the module docstring for the bit order)."""
    b = _validate_quantized_bits(bits)
    c = np.ascontiguousarray(codes).reshape(-1)
    if c.dtype != np.uint8:
        if c.dtype.kind not in "iu":
            raise InvalidArgument(f"codes must be integers, got dtype {c.dtype}")
        if c.size and (int(c.min()) < 0 or int(c.max()) > 255):
            raise InvalidArgument(f"codes must be in [0, {(1 << b) - 1}] for {b} bits")
        c = c.astype(np.uint8)
    if b == 8:
        return c.tobytes()
    if c.size and int(c.max()) >= 1 << b:
        raise InvalidArgument(f"codes must be in [0, {(1 << b) - 1}] for {b} bits, got {int(c.max())}")
    if b == 1:
        return np.packbits(c, bitorder="little").tobytes()
    n = c.size
    if b in (2, 4):
        # Little-endian word views: with per = 8 // b codes in a word of per bytes, OR-ing the word with itself
        # shifted right by (8 - b) * k lands code k at bit k*b of the low byte; the cast keeps that byte.
        per = 8 // b
        w: npt.NDArray[np.unsignedinteger[Any]] = _padded(c, per).view(_word(b))
        acc = w.copy()
        for k in range(1, per):
            acc |= w >> ((8 - b) * k)
        return acc.astype(np.uint8).tobytes()
    # 3, 5, 6, 7 bits: eight codes (one <u8 word of bytes) become exactly `b` bytes.
    w64 = _padded(c, 8).view("<u8")
    acc64 = np.zeros_like(w64)
    mask = np.uint64((1 << b) - 1)
    for k in range(8):
        acc64 |= ((w64 >> np.uint64(8 * k)) & mask) << np.uint64(k * b)
    return acc64.view(np.uint8).reshape(-1, 8)[:, :b].tobytes()[: (n * b + 7) // 8]


def unpack_codes(data: bytes | bytearray | memoryview, bits: int, count: int) -> U8:
    """Inverse of pack_codes: ``count`` uint8 codes, each < 2**bits (a writable array).

    Raises InvalidFrame if ``len(data) != ceil(count * bits / 8)``.
    """
    b = _validate_quantized_bits(bits)
    if count < 0:
        raise InvalidArgument(f"count must be >= 0, got {count}")
    raw = byte_view(data)
    need = (count * b + 7) // 8
    if raw.nbytes != need:
        raise InvalidFrame(f"packed codes: {count} values at {b} bits need {need} bytes, got {raw.nbytes}")
    p = np.frombuffer(raw, dtype=np.uint8)
    if b == 8:
        return p.copy()
    if b == 1:
        return np.unpackbits(p, count=count, bitorder="little")
    if b in (2, 4):
        per = 8 // b
        w: npt.NDArray[np.unsignedinteger[Any]] = p.astype(_word(b))
        mask = (1 << b) - 1
        acc = (w & mask).astype(_word(b), copy=False)  # keep the explicit byte order for the view below
        for k in range(1, per):
            acc |= (w & (mask << (k * b))) << ((8 - b) * k)
        return acc.view(np.uint8)[:count]
    groups = -(-count // 8)
    buf = np.zeros((groups, 8), dtype=np.uint8)
    if groups * b == p.size:
        buf[:, :b] = p.reshape(groups, b)
    else:
        tail = np.zeros(groups * b, dtype=np.uint8)
        tail[: p.size] = p
        buf[:, :b] = tail.reshape(groups, b)
    w64 = buf.view("<u8").reshape(-1)
    out64 = np.zeros_like(w64)
    m = np.uint64((1 << b) - 1)
    for k in range(8):
        out64 |= ((w64 >> np.uint64(k * b)) & m) << np.uint64(8 * k)
    return out64.view(np.uint8)[:count]


def encode_tensor(x: npt.ArrayLike, bits: int, lo: float, hi: float) -> bytes:
    """Payload bytes for ``x``: quantize+pack for bits 1..8, little-endian float16 / float32 for 16 / 32."""
    b = validate_bits(bits)
    if b == 16:
        with np.errstate(over="ignore"):
            return np.ascontiguousarray(x, dtype="<f2").tobytes()
    if b == 32:
        return np.ascontiguousarray(x, dtype="<f4").tobytes()
    return pack_codes(quantize(x, b, lo, hi), b)


def decode_tensor(
    payload: bytes | bytearray | memoryview, bits: int, lo: float, hi: float, shape: tuple[int, ...]
) -> F32:
    """Inverse of encode_tensor: a float32 array of ``shape``, C-contiguous and writable.

    Raises InvalidFrame if the payload length does not match ``shape`` and ``bits``.
    """
    b = validate_bits(bits)
    count = _count(shape)
    raw = byte_view(payload)
    need = packed_size(count, b)
    if raw.nbytes != need:
        raise InvalidFrame(f"tensor payload is {raw.nbytes} bytes, shape {tuple(shape)} at {b} bits needs {need}")
    if b in (16, 32):
        dtype = "<f2" if b == 16 else "<f4"
        out: F32 = np.frombuffer(raw, dtype=dtype).astype(np.float32).reshape(shape)
        return out
    return dequantize(unpack_codes(raw, b, count), b, lo, hi, shape)


def validate_channel_ranges(lo: npt.ArrayLike, hi: npt.ArrayLike, channels: int | None = None) -> tuple[F32, F32]:
    """Check per-channel ranges (1-D, equal length, each valid as in validate_range); return them as float32."""
    lo_arr = np.asarray(lo)
    hi_arr = np.asarray(hi)
    if lo_arr.ndim != 1 or hi_arr.ndim != 1 or lo_arr.size == 0 or lo_arr.size != hi_arr.size:
        raise InvalidArgument(
            f"per-channel ranges need two non-empty 1-D lists of equal length, got {lo_arr.shape} and {hi_arr.shape}"
        )
    if channels is not None and lo_arr.size != channels:
        raise InvalidArgument(f"{lo_arr.size} per-channel ranges for a tensor with {channels} channels (axis 1)")
    if lo_arr.dtype.kind not in "biuf" or hi_arr.dtype.kind not in "biuf":
        raise InvalidArgument("per-channel ranges must be real numbers")
    with np.errstate(over="ignore", invalid="ignore"):
        lo32 = lo_arr.astype(np.float32)
        hi32 = hi_arr.astype(np.float32)
    bad = ~(np.isfinite(lo32) & np.isfinite(hi32) & (lo32 < hi32))
    if bad.any():
        c = int(np.argmax(bad))
        raise InvalidArgument(
            f"per-channel range of channel {c} must be finite float32 values with lo < hi, "
            f"got [{lo_arr[c]!r}, {hi_arr[c]!r}]"
        )
    return lo32, hi32


def channel_view(lo32: F32, hi32: F32, ndim: int, bits: int) -> tuple[F32, F32, F32]:
    """lo, scale (levels / (hi - lo), computed in float64 and rounded once) and step, shaped to broadcast on axis 1."""
    levels = (1 << bits) - 1
    span = hi32.astype(np.float64) - lo32.astype(np.float64)
    shape = (1, lo32.size) + (1,) * (ndim - 2)
    scale = (levels / span).astype(np.float32).reshape(shape)
    step = (span / levels).astype(np.float32).reshape(shape)
    return lo32.reshape(shape), scale, step


def quantize_per_channel(x: npt.ArrayLike, bits: int, lo: npt.ArrayLike, hi: npt.ArrayLike) -> U8:
    """Quantize ``x`` (ndim >= 2) with one range per index of axis 1; flat C-order uint8 codes, NaN -> 0."""
    b = _validate_quantized_bits(bits)
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise InvalidArgument(f"cannot quantize an array of dtype {arr.dtype}")
    if arr.ndim < 2:
        raise InvalidArgument(f"per-channel quantization needs a tensor with a channel axis 1, got shape {arr.shape}")
    lo32, hi32 = validate_channel_ranges(lo, hi, arr.shape[1])
    lo_b, scale_b, _ = channel_view(lo32, hi32, arr.ndim, b)
    levels = (1 << b) - 1
    t = np.empty(arr.shape, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        np.subtract(arr, lo_b, out=t, dtype=np.float32, casting="unsafe")
        t *= scale_b
        np.clip(t, np.float32(0), np.float32(levels), out=t)
        np.rint(t, out=t)
        codes: U8 = t.reshape(-1).astype(np.uint8)
    nan = np.isnan(t.reshape(-1))
    if nan.any():
        codes[nan] = 0
    return codes


def dequantize_per_channel(
    codes: npt.ArrayLike, bits: int, lo: npt.ArrayLike, hi: npt.ArrayLike, shape: tuple[int, ...]
) -> F32:
    """Inverse of quantize_per_channel: ``lo_c + code * step_c`` as float32 of ``shape`` (C-contiguous, writable)."""
    b = _validate_quantized_bits(bits)
    c = np.asarray(codes)
    count = _count(shape)
    if len(shape) < 2:
        raise InvalidArgument(f"per-channel quantization needs a tensor with a channel axis 1, got shape {shape}")
    if c.size != count:
        raise InvalidArgument(f"{c.size} codes cannot fill shape {tuple(shape)} ({count} values)")
    lo32, hi32 = validate_channel_ranges(lo, hi, int(shape[1]))
    lo_b, _, step_b = channel_view(lo32, hi32, len(shape), b)
    out: F32 = c.astype(np.float32).reshape(shape)
    out *= step_b
    out += lo_b
    return out


def encode_tensor_per_channel(x: npt.ArrayLike, bits: int, lo: npt.ArrayLike, hi: npt.ArrayLike) -> bytes:
    """Payload bytes for ``x`` quantized per channel (axis 1) at 1..8 bits and packed."""
    b = _validate_quantized_bits(bits)
    return pack_codes(quantize_per_channel(x, b, lo, hi), b)


def decode_tensor_per_channel(
    payload: bytes | bytearray | memoryview, bits: int, lo: npt.ArrayLike, hi: npt.ArrayLike, shape: tuple[int, ...]
) -> F32:
    """Inverse of encode_tensor_per_channel. Raises InvalidFrame if the payload length does not match."""
    b = _validate_quantized_bits(bits)
    count = _count(shape)
    raw = byte_view(payload)
    need = packed_size(count, b)
    if raw.nbytes != need:
        raise InvalidFrame(f"tensor payload is {raw.nbytes} bytes, shape {tuple(shape)} at {b} bits needs {need}")
    return dequantize_per_channel(unpack_codes(raw, b, count), b, lo, hi, shape)


def _count(shape: tuple[int, ...]) -> int:
    dims = tuple(shape)
    if any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0 for d in dims):
        raise InvalidArgument(f"shape must be non-negative integers, got {dims!r}")
    return math.prod(int(d) for d in dims)


def _padded(c: U8, multiple: int) -> U8:
    rem = c.size % multiple
    if rem == 0:
        return c
    out = np.zeros(c.size + multiple - rem, dtype=np.uint8)
    out[: c.size] = c
    return out


def _word(bits: int) -> np.dtype[np.unsignedinteger[Any]]:
    # Explicit little-endian so the byte views mean the same on any host.
    return np.dtype("<u2") if bits == 4 else np.dtype("<u4")


def byte_view(data: bytes | bytearray | memoryview) -> memoryview:
    """A flat unsigned-byte view of any buffer, without copying."""
    mv = memoryview(data)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


__all__ = [
    "QUANTIZED_BITS",
    "SUPPORTED_BITS",
    "channel_view",
    "decode_tensor",
    "decode_tensor_per_channel",
    "dequantize",
    "dequantize_per_channel",
    "encode_tensor",
    "encode_tensor_per_channel",
    "pack_codes",
    "packed_size",
    "quantize",
    "quantize_per_channel",
    "unpack_codes",
    "validate_bits",
    "validate_channel_ranges",
    "validate_range",
]
