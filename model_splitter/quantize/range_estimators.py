"""Clip-range estimators for calibration: percentile, MSE search and ACIQ, per tensor or per channel."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx

from common.errors import InvalidArgument
from model_splitter.quantize.default_ranges import default_clip

PERCENTILE = 99.99
MAX_SAMPLES = 1 << 20  # values per tensor the estimators look at (all channels together)
MIN_SAMPLES_PER_CHANNEL = 1024
HISTOGRAM_BINS = 2048  # per tensor; per channel fewer (PER_CHANNEL_BINS), there being many histograms
PER_CHANNEL_BINS = 128

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Samples:
    """Calibration values of one tensor as rows: one row for the whole tensor, or one per channel (axis 1)."""

    rows: F64  # (rows, n)
    minimum: F64  # (rows,) over all values, not only the sampled ones
    maximum: F64

    @property
    def signed(self) -> npt.NDArray[np.bool_]:
        return self.minimum < 0


def samples_of(values: np.ndarray, per_channel: bool, seed: int = 0) -> Samples:
    """Subsample ``values`` (N, C, ...) to at most MAX_SAMPLES values (at least MIN_SAMPLES_PER_CHANNEL a channel)."""
    array = np.asarray(values, dtype=np.float32)
    if per_channel:
        if array.ndim < 2:
            raise InvalidArgument(f"per-channel ranges need a channel axis 1; the tensor has shape {list(array.shape)}")
        rows = np.moveaxis(array, 1, 0).reshape(array.shape[1], -1)
    else:
        rows = array.reshape(1, -1)
    finite = np.where(np.isfinite(rows), rows, 0.0)
    minimum = finite.min(axis=1).astype(np.float64)
    maximum = finite.max(axis=1).astype(np.float64)
    per_row = max(MAX_SAMPLES // rows.shape[0], MIN_SAMPLES_PER_CHANNEL)
    if rows.shape[1] > per_row:
        pick = np.random.default_rng(seed).integers(0, rows.shape[1], per_row)
        finite = finite[:, pick]
    return Samples(finite.astype(np.float64), minimum, maximum)


def fixed_range(model: onnx.ModelProto, tensor: str) -> tuple[float, float]:
    return default_clip(model, tensor)


def percentile_range(samples: Samples, percentile: float = PERCENTILE) -> tuple[F64, F64]:
    high = np.percentile(samples.rows, percentile, axis=1)
    low = np.percentile(samples.rows, 100.0 - percentile, axis=1)
    lo = np.where(samples.signed, np.minimum(low, 0.0), 0.0)
    hi = np.maximum(high, 0.0)
    return lo, hi


@functools.cache
def aciq_alpha(distribution: Literal["laplace", "gauss"], bits: int) -> float:
    """The clip point, in units of b (Laplace) or sigma (Gaussian), that minimises clipping plus rounding error of
    a symmetric range quantized to 2**bits levels; the closed forms of Banner et al."""
    rounding = 3.0 * 4.0**bits

    def error(alpha: float) -> float:
        if distribution == "laplace":
            clipping = 2.0 * math.exp(-alpha)
        else:
            tail = math.erfc(alpha / math.sqrt(2.0))
            clipping = (1.0 + alpha * alpha) * tail - alpha * math.sqrt(2.0 / math.pi) * math.exp(-alpha * alpha / 2)
        return clipping + alpha * alpha / rounding

    # The error is convex in alpha on the range that matters: golden-section search.
    a, b = 0.01, 40.0
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(100):
        if error(c) < error(d):
            b, d = d, c
            c = b - ratio * (b - a)
        else:
            a, c = c, d
            d = a + ratio * (b - a)
    return (a + b) / 2.0


def aciq_range(samples: Samples, bits: int) -> tuple[F64, F64]:
    rows = samples.rows
    signed = samples.signed
    # Non-negative rows: fit the positive part (exponential vs half-normal), clip to [0, alpha] at bits + 1.
    positive = rows > 0
    count = np.maximum(positive.sum(axis=1), 1)
    scale_exp = np.where(positive, rows, 0.0).sum(axis=1) / count
    sigma_half = np.sqrt(np.where(positive, rows * rows, 0.0).sum(axis=1) / count)
    with np.errstate(divide="ignore", invalid="ignore"):
        ll_exp = -(1.0 + np.log(scale_exp))
        ll_half = 0.5 * np.log(2.0 / (np.pi * sigma_half**2)) - 0.5
    one_sided = np.where(
        ll_exp >= ll_half,
        aciq_alpha("laplace", bits + 1) * scale_exp,
        aciq_alpha("gauss", bits + 1) * sigma_half,
    )
    # Signed rows: Laplace (b = mean |x - mean|) vs Gaussian, mean +- alpha.
    mean = rows.mean(axis=1)
    b = np.abs(rows - mean[:, None]).mean(axis=1)
    sigma = rows.std(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ll_laplace = -(1.0 + np.log(2.0 * b))
        ll_gauss = -0.5 * (1.0 + np.log(2.0 * np.pi * sigma**2))
    alpha = np.where(ll_laplace >= ll_gauss, aciq_alpha("laplace", bits) * b, aciq_alpha("gauss", bits) * sigma)
    lo = np.where(signed, np.maximum(mean - alpha, samples.minimum), 0.0)
    hi = np.where(signed, np.minimum(mean + alpha, samples.maximum), np.minimum(one_sided, samples.maximum))
    return lo, hi


@dataclass(frozen=True)
class Histogram:
    """Per row: how many values fell in each of the equal bins over [min(lo, 0), max(hi, 0)], and their mean."""

    count: npt.NDArray[np.float32]  # (rows, bins)
    mean: npt.NDArray[np.float32]


def histogram_of(samples: Samples) -> Histogram:
    rows = samples.rows
    bins = HISTOGRAM_BINS if rows.shape[0] == 1 else PER_CHANNEL_BINS
    low = np.minimum(samples.minimum, 0.0)[:, None]
    span = np.maximum(np.maximum(samples.maximum, 0.0)[:, None] - low, 1e-30)
    which = np.clip(((rows - low) / span * bins).astype(np.int64), 0, bins - 1)
    flat = (which + np.arange(rows.shape[0])[:, None] * bins).reshape(-1)
    size = rows.shape[0] * bins
    count = np.bincount(flat, minlength=size).astype(np.float64)
    total = np.bincount(flat, weights=rows.reshape(-1), minlength=size)
    mean = np.where(count > 0, total / np.maximum(count, 1.0), 0.0)
    shape = (rows.shape[0], bins)
    return Histogram(count.astype(np.float32).reshape(shape), mean.astype(np.float32).reshape(shape))


_CELLS = 1 << 22  # rows x candidates x bins evaluated at once


def _squared_error(hist: Histogram, lo: F64, hi: F64, levels: int) -> F64:
    """Quantization error of every (row, candidate) range; lo and hi are (rows, candidates).

    A bin's values all fall to the code of their mean (exact unless the bin straddles a rounding boundary); their
    error is then count * (mean - level)^2 plus their spread around the mean, which no range changes and is left
    out. No cancellation, so float32 is enough.
    """
    rows, bins = hist.count.shape
    out = np.empty(lo.shape)
    chunk = max(1, _CELLS // max(1, lo.shape[1] * bins))
    for start in range(0, rows, chunk):
        part = slice(start, start + chunk)
        low = lo[part].astype(np.float32)[..., None]
        step = np.maximum((hi[part] - lo[part]) / levels, 1e-30).astype(np.float32)[..., None]
        mean = hist.mean[part][:, None, :]
        codes = np.clip(np.rint((mean - low) / step), 0, levels)
        error = mean - (low + codes * step)
        out[part] = np.einsum("rkb,rkb,rb->rk", error, error, hist.count[part], dtype=np.float64)
    return out


def _grids(rows: int) -> tuple[F64, int, int]:
    """Coarse geometric grid of clip fractions, points per refinement, refinements: finer for one histogram."""
    if rows == 1:
        return np.geomspace(1.0 / 256.0, 1.0, 48), 17, 2
    return np.geomspace(1.0 / 256.0, 1.0, 24), 9, 3


def _search(hist: Histogram, levels: int, fixed: F64, extreme: F64, make: Callable[[F64, F64], tuple[F64, F64]]) -> F64:
    """Best clip point ``extreme * f`` per row over a geometric grid of f, refined around the best f."""
    coarse, points, refinements = _grids(len(extreme))
    grid = np.broadcast_to(coarse, (len(extreme), len(coarse)))
    best_f = np.ones(len(extreme))
    for _ in range(refinements + 1):
        candidates = extreme[:, None] * grid
        lo, hi = make(fixed[:, None], candidates)
        error = _squared_error(hist, np.broadcast_to(lo, grid.shape), np.broadcast_to(hi, grid.shape), levels)
        pick = np.argmin(error, axis=1)
        best_f = grid[np.arange(len(extreme)), pick]
        below = grid[np.arange(len(extreme)), np.maximum(pick - 1, 0)]
        above = grid[np.arange(len(extreme)), np.minimum(pick + 1, grid.shape[1] - 1)]
        grid = np.linspace(below, above, points, axis=1)
    result: F64 = extreme * best_f
    return result


def mse_range(samples: Samples, bits: int, hist: Histogram | None = None) -> tuple[F64, F64]:
    hist = hist if hist is not None else histogram_of(samples)
    levels = (1 << bits) - 1
    top = np.maximum(samples.maximum, 0.0)
    bottom = np.minimum(samples.minimum, 0.0)
    lo = bottom.copy()
    hi = top.copy()
    rounds = 2 if bool(samples.signed.any()) else 1
    for _ in range(rounds):
        hi = _search(hist, levels, lo, top, lambda fixed, cand: (fixed, cand))
        if rounds > 1:
            lo = _search(hist, levels, hi, bottom, lambda fixed, cand: (cand, fixed))
    return lo, hi
