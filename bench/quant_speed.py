"""Throughput of the cut-tensor codec on one core: quantize+pack and unpack+dequantize, beside np.copy.

GB/s counts float32 input bytes (4 per element) in both directions, so the figures compare directly with
the copy of the same array. Median of 50 runs. Run: ``python bench/quant_speed.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.quantization import dequantize, pack_codes, quantize, unpack_codes

RUNS = 50
SHAPES: tuple[tuple[int, ...], ...] = ((1, 128, 28, 28), (1, 64, 56, 56))
BITS = (2, 4, 8)


def median_seconds(fn: Callable[[], object]) -> float:
    fn()  # warm caches and allocator
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def codec_seconds(x: np.ndarray, bits: int) -> tuple[float, float]:
    packed = pack_codes(quantize(x, bits, -3.0, 3.0), bits)
    enc = median_seconds(lambda: pack_codes(quantize(x, bits, -3.0, 3.0), bits))
    dec = median_seconds(lambda: dequantize(unpack_codes(packed, bits, x.size), bits, -3.0, 3.0, x.shape))
    return enc, dec


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'shape':<18}{'bits':>5}{'quant+pack GB/s':>17}{'unpack+dequant GB/s':>21}{'np.copy GB/s':>14}")
    for shape in SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        gb = x.nbytes / 1e9
        copy_rate = gb / median_seconds(partial(np.copy, x))
        label = "x".join(map(str, shape))
        for bits in BITS:
            enc, dec = codec_seconds(x, bits)
            print(f"{label:<18}{bits:>5}{gb / enc:>17.2f}{gb / dec:>21.2f}{copy_rate:>14.2f}")


if __name__ == "__main__":
    main()
