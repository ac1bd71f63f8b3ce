"""Which plans to measure, what the link alone predicts for them, and which one wins at each rate."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from bench.schema import BestPlan, Plan, PlanRun, PointInfo

ALL_ROBOT = Plan(mode="all-robot")
ALL_EDGE = Plan(mode="all-edge")


def select_points(points: Sequence[PointInfo], how: str) -> list[PointInfo]:
    """Pick split points: ``all``, ``frontier``, ``ends`` (first, middle, last) or comma-separated labels.

    ``frontier`` keeps the points that no other point beats on both head compute (flops share) and feature size.
    A dominated point sends at least as many bytes after at least as much robot compute, so while the robot is
    the slower side (always here: it is capped at a fraction of a core) it cannot be faster than the point that
    dominates it, at any rate.
    """
    ordered = sorted(points, key=lambda p: p.index)
    if not ordered:
        return []
    if how == "all":
        return ordered
    if how == "ends":
        picks = {0, len(ordered) // 2, len(ordered) - 1}
        return [ordered[i] for i in sorted(picks)]
    if how == "frontier":
        return [p for p in ordered if not any(_dominates(q, p) for q in ordered if q is not p)]
    wanted = [label.strip() for label in how.split(",") if label.strip()]
    by_label = {p.label: p for p in ordered}
    missing = [label for label in wanted if label not in by_label]
    if missing:
        raise ValueError(f"unknown split point(s) {', '.join(missing)}; known: {', '.join(by_label)}")
    return [by_label[label] for label in wanted]


def _dominates(q: PointInfo, p: PointInfo) -> bool:
    no_worse = q.head_flops_share <= p.head_flops_share and q.elements <= p.elements
    better = q.head_flops_share < p.head_flops_share or q.elements < p.elements
    # Equal on both: the earlier point (smaller index) stands for the pair.
    return no_worse and (better or q.index < p.index)


def split_plans(points: Iterable[PointInfo], bits: Iterable[int]) -> list[Plan]:
    return [Plan(mode="split", point=p.label, bits=b) for p in points for b in bits]


def transfer_ms(nbytes: float, rate_mbit: float) -> float:
    """Milliseconds that ``nbytes`` take at ``rate_mbit`` megabits per second (10**6 bits, as tc counts)."""
    if rate_mbit <= 0:
        raise ValueError(f"rate must be positive, got {rate_mbit}")
    return nbytes * 8.0 / (rate_mbit * 1e6) * 1e3


def predicted_ms(compute_ms: float, nbytes: float, rate_mbit: float) -> float:
    """The physical limit of one request: the services' own compute plus the payload bytes at line rate."""
    return compute_ms + transfer_ms(nbytes, rate_mbit)


def overhead_ratio(measured_ms: float, predicted: float) -> float:
    if predicted <= 0:
        raise ValueError(f"predicted latency must be positive, got {predicted}")
    return measured_ms / predicted


def hopeless(predicted: float, best_ms: float | None, factor: float) -> bool:
    """Whether a plan predicted to take ``predicted`` ms is not worth measuring beside the best so far.

    The prediction (compute measured at the fastest rate + bytes at this rate) is a lower bound of what a request
    will take, so a plan predicted ``factor`` times slower than a measured plan cannot win; ``factor <= 0`` never
    prunes.
    """
    return factor > 0 and best_ms is not None and predicted > factor * best_ms


def best_plans(runs: Iterable[PlanRun]) -> list[BestPlan]:
    """The measured plan with the lowest p50 per (model, rate); ties go to the lower p90, then fewer bytes."""
    groups: dict[tuple[str, float], list[PlanRun]] = defaultdict(list)
    for run in runs:
        if run.status == "measured" and run.latency is not None:
            groups[(run.model, run.rate_mbit)].append(run)
    best: list[BestPlan] = []
    for (model, rate), group in sorted(groups.items()):
        ranked = sorted(group, key=_rank)
        top = ranked[0]
        assert top.latency is not None
        second = ranked[1] if len(ranked) > 1 else None
        best.append(
            BestPlan(
                model=model,
                rate_mbit=rate,
                plan=top.plan,
                p50_ms=top.latency.p50,
                p90_ms=top.latency.p90,
                bytes_sent=top.bytes_sent,
                runner_up=second.plan if second is not None else None,
                runner_up_p50_ms=second.latency.p50 if second is not None and second.latency is not None else None,
            )
        )
    return best


def _rank(run: PlanRun) -> tuple[float, float, int]:
    assert run.latency is not None
    return (run.latency.p50, run.latency.p90, run.bytes_sent)
