"""Zero-exact affine codes (wire kinds 6 and 7): ONNX ``QuantizeLinear``'s arithmetic on 1..8-bit codes.

A clip range ``[lo, hi]`` (as the manifest keeps it) becomes a scale and an integer zero point, with
``levels = 2**bits - 1`` and every float first rounded to float32::

    lo', hi'   = min(lo, 0), max(hi, 0)                       # the range always holds 0
    scale      = f32((hi' - lo') / levels)                    # computed in double, rounded once
    zero_point = clamp(rint(-lo' / scale), 0, levels)         # double of the float32 scale; an integer
    code       = clamp(rint(f32(x / scale)) + zero_point, 0, levels)    # float32 division; NaN -> zero_point
    x_hat      = f32(code - zero_point) * scale               # float32

``rint`` rounds half to even, as ``QuantizeLinear`` does. Zero maps to the code ``zero_point`` and back to exactly
0.0, so the zeros of ReLU outputs, padding and pooling survive any bit width; kind 1 (``common.quantization``) has
no code at 0 unless ``lo`` is 0. Per channel (kind 7): one (scale, zero point) per index of axis 1, each derived
from that channel's range exactly as above. Codes are packed as ``common.quantization.pack_codes`` packs them
(for 2 and 4 bits that is ONNX's ``UINT2``/``UINT4`` layout: the first code in the low bits of each byte).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.errors import InvalidArgument
from common.quantization import QUANTIZED_BITS, validate_channel_ranges, validate_range

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


def _levels(bits: int) -> int:
    if isinstance(bits, bool) or bits not in QUANTIZED_BITS:
        raise InvalidArgument(f"bits must be 1..8 for affine codes, got {bits!r}")
    return (1 << bits) - 1


def _params(lo: npt.NDArray[np.float32], hi: npt.NDArray[np.float32], levels: int) -> tuple[F32, F32]:
    low = np.minimum(lo.astype(np.float64), 0.0)
    high = np.maximum(hi.astype(np.float64), 0.0)
    scale = ((high - low) / levels).astype(np.float32)
    zero = np.clip(np.rint(-low / scale.astype(np.float64)), 0, levels).astype(np.float32)
    return scale, zero


def affine_params(lo: float, hi: float, bits: int) -> tuple[float, int]:
    """(scale, zero point) of the range ``[lo, hi]`` at ``bits`` (see the module docstring)."""
    levels = _levels(bits)
    lo32, hi32 = validate_range(lo, hi)
    scale, zero = _params(np.array([lo32], np.float32), np.array([hi32], np.float32), levels)
    return float(scale[0]), int(zero[0])


def affine_channel_params(lo: npt.ArrayLike, hi: npt.ArrayLike, bits: int) -> tuple[F32, F32]:
    """Per channel (axis 1) scales and zero points, as float32 arrays, from per-channel ranges."""
    levels = _levels(bits)
    lo32, hi32 = validate_channel_ranges(lo, hi)
    return _params(lo32, hi32, levels)


def validate_affine(scale: float, zero_point: float, bits: int) -> str | None:
    """Why (scale, zero point) cannot be a kind-6 header at ``bits``, or None when it can."""
    levels = _levels(bits)
    s = np.float32(scale)
    if not (np.isfinite(s) and s > 0 and np.isfinite(np.float32(1) / s)):
        return f"an affine scale must be a positive finite float32 whose inverse is finite, got {scale!r}"
    if not (float(zero_point).is_integer() and 0 <= zero_point <= levels):
        return f"an affine zero point must be an integer in 0..{levels} at {bits} bits, got {zero_point!r}"
    return None


def _broadcast(values: F32 | float, ndim: int) -> F32 | np.float32:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim == 0:
        return np.float32(array)
    return array.reshape((1, array.size) + (1,) * (ndim - 2))


def quantize_affine(x: npt.ArrayLike, bits: int, scale: F32 | float, zero_point: F32 | float) -> U8:
    """Flat (C order) uint8 codes of ``x``; ``scale``/``zero_point`` are scalars or one per index of axis 1."""
    levels = _levels(bits)
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise InvalidArgument(f"cannot quantize an array of dtype {arr.dtype}")
    s = _broadcast(scale, arr.ndim)
    z = _broadcast(zero_point, arr.ndim)
    t = np.empty(arr.shape, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        np.divide(arr, s, out=t, dtype=np.float32, casting="unsafe")
        np.rint(t, out=t)
        t += z
        nan = np.isnan(t)
        np.clip(t, np.float32(0), np.float32(levels), out=t)
    if nan.any():
        t[nan] = np.broadcast_to(z, t.shape)[nan]
    codes: U8 = t.reshape(-1).astype(np.uint8)
    return codes


def dequantize_affine(
    codes: npt.ArrayLike, bits: int, scale: F32 | float, zero_point: F32 | float, shape: tuple[int, ...]
) -> F32:
    """``(code - zero_point) * scale`` as float32 of ``shape`` (C-contiguous, writable)."""
    _levels(bits)
    c = np.asarray(codes)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if c.size != count:
        raise InvalidArgument(f"{c.size} codes cannot fill shape {tuple(shape)} ({count} values)")
    out: F32 = c.astype(np.float32).reshape(shape)
    out -= _broadcast(zero_point, len(shape))
    out *= _broadcast(scale, len(shape))
    return out


__all__ = [
    "affine_channel_params",
    "affine_params",
    "dequantize_affine",
    "quantize_affine",
    "validate_affine",
]
