"""The robot's link probe: round trip and throughput to its edge, over the same pooled client frames use.

Round trip: the median of ``pings`` empty POSTs to the edge's ``/api/probe`` (after one that opens the connection),
so it holds what every request pays besides its bytes: propagation, HTTP and JSON on both sides.

Throughput: ``repeats`` POSTs of ``bytes`` each; one sample is ``bits / (round trip - rtt)``, the result their
median, in 10**6 bits per second of body (goodput: TCP/IP headers are not counted, as the planner's byte counts
do not count them either). A first 64 KiB sample estimates the rate so that a slow link gets bodies small enough
to take about ``max_seconds`` each, instead of minutes.
"""

from __future__ import annotations

import statistics

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from common.auth import Guard
from common.errors import BadGateway
from common.profiling import LinkProbeResult, LinkSample, ProbeLinkRequest
from robot_inference.edge_fleet import EdgeFleet

FIRST_SAMPLE_BYTES = 64 * 1024
MIN_SAMPLE_BYTES = 16 * 1024


def _mbps(nbytes: int, transfer_ms: float) -> float:
    return nbytes * 8 / (transfer_ms / 1000.0) / 1e6


def probe_link(fleet: EdgeFleet, request: ProbeLinkRequest) -> LinkProbeResult:
    """Every sample from the edge frames go to now."""
    edge = fleet.preferred()
    samples: list[LinkSample] = []
    edge.probe(b"")  # opens (or reuses) the pooled connection, so no sample pays the TCP handshake
    pings = []
    for _ in range(request.pings):
        ms, _ = edge.probe(b"")
        pings.append(ms)
        samples.append(LinkSample(kind="rtt", bytes=0, ms=round(ms, 3)))
    rtt = statistics.median(pings)
    # Longest wait: the slowest link we still want to measure (~0.1 Mbit/s) carrying the first sample.
    timeout_s = max(30.0, request.max_seconds * 10)

    def sample(size: int) -> float:
        ms, received = edge.probe(bytes(size), timeout_s)
        if received != size:
            raise BadGateway(f"the edge counted {received} bytes of a {size}-byte probe")
        # A transfer faster than the timer's resolution allows would divide by ~0: floor it at 1% of the rtt.
        transfer = max(ms - rtt, 0.01 * rtt, 0.001)
        mbps = _mbps(size, transfer)
        samples.append(LinkSample(kind="throughput", bytes=size, ms=round(ms, 3), mbps=round(mbps, 3)))
        return mbps

    first = min(request.bytes, FIRST_SAMPLE_BYTES)
    estimate = sample(first)
    affordable = int(estimate * 1e6 / 8 * request.max_seconds)
    size = max(min(request.bytes, affordable), min(request.bytes, MIN_SAMPLE_BYTES))
    rates = [sample(size) for _ in range(request.repeats)]
    return LinkProbeResult(
        edge_url=edge.base_url,
        rtt_ms=round(rtt, 3),
        throughput_mbps=round(statistics.median(rates), 3),
        body_bytes=size,
        samples=samples,
    )


def probe_link_router(edge: EdgeFleet, write_guard: Guard) -> APIRouter:
    router = APIRouter(tags=["planner"])

    @router.post(
        "/api/probe-link",
        summary="Measure round trip (empty requests) and throughput (bodies of the given size) to the edge",
        dependencies=[Depends(write_guard)],
    )
    async def probe(request: ProbeLinkRequest | None = None) -> LinkProbeResult:
        return await run_in_threadpool(probe_link, edge, request or ProbeLinkRequest())

    return router
