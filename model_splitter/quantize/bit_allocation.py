"""Bits per channel of a cut tensor, by rate-distortion (Auto-Split's Lagrangian, applied to the channels).

At an average of ``bits`` per value, every channel starts at 1 bit and the next bit goes to the channel whose
squared error on the fitting features drops most, until the channels hold ``bits`` on average (greedy on the
convex hull of each channel's error curve, which is what the Lagrangian's solution is when the curves are convex);
each channel gets the MSE-fitted affine range of its own width. The payload is then exactly as large as at
``bits`` for every channel (common/mixed_widths.py). Measured against uniform widths: bench/bit_allocation.py.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import onnx

from common.errors import InvalidArgument
from common.manifest import TensorRange
from common.quantization import QUANTIZED_BITS
from model_splitter.quantize.calibration import float32_ranges
from model_splitter.quantize.range_estimators import fixed_range, histogram_of, mse_range, samples_of
from model_splitter.quantize.roundtrip import roundtrip

F32 = npt.NDArray[np.float32]
Ranges = dict[int, tuple[F32, F32]]


def channel_ranges(fit: np.ndarray) -> Ranges:
    """Per-channel MSE ranges of the fitting features (N, C, ...) at every width, as float32 with lo < hi."""
    samples = samples_of(fit, per_channel=True)
    hist = histogram_of(samples)
    out: Ranges = {}
    for bits in QUANTIZED_BITS:
        out[bits] = float32_ranges(*mse_range(samples, bits, hist))
    return out


def range_at(name: str, widths: np.ndarray, ranges: Ranges, mixed: bool = True) -> TensorRange:
    """The manifest range of channels coded at ``widths``, each with its own width's range."""
    lo = np.array([ranges[int(bits)][0][c] for c, bits in enumerate(widths)], dtype=np.float32)
    hi = np.array([ranges[int(bits)][1][c] for c, bits in enumerate(widths)], dtype=np.float32)
    return TensorRange(
        name=name,
        lo=float(lo.min()),
        hi=float(hi.max()),
        channel_lo=[float(v) for v in lo],
        channel_hi=[float(v) for v in hi],
        channel_bits=[int(b) for b in widths] if mixed else None,
    )


def restored(x: np.ndarray, widths: np.ndarray, ranges: Ranges) -> F32:
    """What the tail receives when ``x`` (N, C, ...) travels with channel ``c`` at ``widths[c]`` bits."""
    return roundtrip(x, int(widths.sum() // len(widths)), range_at("t", widths, ranges), "affine")


def distortion(fit: np.ndarray, ranges: Ranges) -> npt.NDArray[np.float64]:
    """(C, 8): each channel's squared error on the fitting features at 1..8 bits."""
    channels = fit.shape[1]
    table = np.empty((channels, len(QUANTIZED_BITS)))
    for column, bits in enumerate(QUANTIZED_BITS):
        widths = np.full(channels, bits)
        error = roundtrip(fit, bits, range_at("t", widths, ranges, mixed=False), "affine") - fit
        table[:, column] = np.square(np.moveaxis(error, 1, 0).reshape(channels, -1), dtype=np.float64).sum(axis=1)
    return table


def allocate(table: npt.NDArray[np.float64], average: int) -> npt.NDArray[np.int64]:
    """Widths 1..8 per channel summing to ``average * C``: greedy on the largest drop of squared error per bit."""
    channels = table.shape[0]
    widths = np.ones(channels, dtype=np.int64)
    gains = [(-(table[c, 0] - table[c, 1]), c) for c in range(channels)]
    heapq.heapify(gains)
    for _ in range((average - 1) * channels):
        _, c = heapq.heappop(gains)
        widths[c] += 1
        if widths[c] < QUANTIZED_BITS[-1]:
            heapq.heappush(gains, (-(table[c, widths[c] - 1] - table[c, widths[c]]), c))
    return widths


def allocated_range(name: str, fit: np.ndarray, bits: int) -> TensorRange:
    """The range of ``name`` with widths per channel averaging ``bits``, fitted on ``fit`` (N, C, ...)."""
    if fit.ndim < 2 or fit.shape[1] < 2:
        raise InvalidArgument(
            f"bits per channel need a tensor with channels (axis 1); {name[:60]!r} has shape {list(fit.shape[1:])}"
        )
    ranges = channel_ranges(fit)
    return range_at(name, allocate(distortion(fit, ranges), bits), ranges)


def allocated_ranges(
    model: onnx.ModelProto, tensor: str, fit: np.ndarray, bits_list: Sequence[int]
) -> dict[int, TensorRange]:
    """``allocated_range`` at each quantized width; 16 and 32 bits keep the default range (they use none)."""
    default = fixed_range(model, tensor)
    return {
        bits: allocated_range(tensor, fit, bits)
        if bits in QUANTIZED_BITS
        else TensorRange(name=tensor, lo=default[0], hi=default[1])
        for bits in bits_list
    }
