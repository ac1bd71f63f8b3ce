"""Percentiles and summaries of latency samples (pure, no numpy, so the tests pin the arithmetic)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel


class Summary(BaseModel):
    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction


def summarize(values: Sequence[float]) -> Summary:
    return Summary(
        n=len(values),
        p50=round(percentile(values, 50), 3),
        p90=round(percentile(values, 90), 3),
        p99=round(percentile(values, 99), 3),
        mean=round(sum(values) / len(values), 3),
        min=round(min(values), 3),
        max=round(max(values), 3),
    )


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)
