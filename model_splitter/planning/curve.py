"""Latency against bandwidth: the planner's ranking repeated over a range of link speeds (``GET .../plan/curve``).

A robot's link speed varies, so one bandwidth's pick is not the whole answer: the curve shows where the winner
changes and how close the runners-up come, i.e. what a wrong bandwidth estimate would cost. Each point is what
``planner.plan`` predicts at that bandwidth; only the choice of which plans to draw is made here.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from model_splitter.planning.planner import PlanEstimate, PlanMode, PlannerInputs, estimate_plans, rank_plans


class CurveSeries(BaseModel):
    key: str
    mode: PlanMode
    split_point: str | None
    bits: int | None
    total_ms: list[float]


class PlanCurve(BaseModel):
    bandwidths_mbps: list[float]
    rtt_ms: float
    winners: list[str] = Field(description="the pick at each bandwidth")
    series: list[CurveSeries] = Field(description="the winners, then the plans that come closest to winning")


def curve(inputs: PlannerInputs, bandwidths: Sequence[float], rtt_ms: float, top: int = 5) -> PlanCurve:
    """Predicted latency of the best few eligible plans at each bandwidth: where the winner changes."""
    per_bandwidth = [rank_plans(estimate_plans(inputs, bw, rtt_ms)) for bw in bandwidths]
    winners = [plans[0].key for plans in per_bandwidth]
    totals: dict[str, list[float]] = {}
    info: dict[str, PlanEstimate] = {}
    for plans in per_bandwidth:
        for p in plans:
            if p.eligible:
                totals.setdefault(p.key, []).append(p.total_ms)
                info.setdefault(p.key, p)
    best = [plans[0].total_ms for plans in per_bandwidth]

    def closeness(key: str) -> float:
        return min(total / max(b, 1e-9) for total, b in zip(totals[key], best, strict=True))

    chosen = list(dict.fromkeys(winners))
    for key in sorted(totals, key=closeness):
        if len(chosen) >= max(top, len(set(winners))):
            break
        if key not in chosen:
            chosen.append(key)
    return PlanCurve(
        bandwidths_mbps=list(bandwidths),
        rtt_ms=rtt_ms,
        winners=winners,
        series=[
            CurveSeries(
                key=key,
                mode=info[key].mode,
                split_point=info[key].split_point,
                bits=info[key].bits,
                total_ms=totals[key],
            )
            for key in chosen
        ],
    )
