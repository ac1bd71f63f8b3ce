"""The edges a robot may send to (``ROBOT_EDGE_URL``, comma-separated), and failing over between them in one frame.

Every frame goes to the preferred edge: the first, among those not suspect (an edge whose frame timed out, until
its health check answers: robot_inference/edge_watch.py) and not refused recently (an edge that could not be
reached, was overloaded or lacked the split, for ``RETRY_AFTER_S``), with the lowest recent round trip. When that
edge dies, hangs, is overloaded or does not hold the split, the same frame goes on to the next edge at once, so a
frame waits at most one timeout (a hung edge's) and the frames after it go straight to a live edge. With one edge
this is that edge's client, its errors unchanged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, Field, SecretStr

from common.errors import Overloaded, SplitComputingError, UnknownSplit, UpstreamTimeout, UpstreamUnavailable
from common.postprocess.answers import NO_OPTIONS, DetectionOptions
from robot_inference.edge_client import EdgeClient, EdgeReply, OipReply
from robot_inference.oip_tail import OipRequest
from robot_inference.settings import EdgeChannel, EdgeProtocol

RETRY_AFTER_S = 2.0  # how long an edge that refused or could not be reached goes to the back of the line
SMOOTHING = 0.2  # weight of the newest round trip in an edge's running estimate
# Errors another edge may not have: down, hung, full, or without this split.
FAILOVER = (UpstreamUnavailable, UpstreamTimeout, Overloaded, UnknownSplit)
Reply = TypeVar("Reply", EdgeReply, OipReply)


class EdgeStatus(BaseModel):
    url: str
    suspect: bool = Field(description="a frame timed out here; skipped until its health check answers")
    refused_s_ago: float | None = Field(description="seconds since it last could not take a frame (None: never)")
    round_trip_ms: float | None = Field(description="running estimate over the frames it answered")
    answered: int
    failed: int


@dataclass
class _Edge:
    client: EdgeClient
    round_trip_ms: float | None = None
    refused_at: float | None = None
    answered: int = 0
    failed: int = 0


class EdgeFleet:
    def __init__(
        self,
        urls: list[str],
        timeout_s: float,
        token: SecretStr | None = None,
        channel: EdgeChannel = "websocket",
        protocol: EdgeProtocol = "splitbot",
    ) -> None:
        if not urls:
            raise ValueError("a robot needs at least one edge URL")
        self._edges = [_Edge(EdgeClient(url, timeout_s, token, channel, protocol)) for url in urls]
        self._lock = threading.Lock()
        self.protocol: EdgeProtocol = protocol
        self.timeout_s = timeout_s

    @property
    def urls(self) -> list[str]:
        return [edge.client.base_url for edge in self._edges]

    @property
    def base_url(self) -> str:
        """The edge frames go to now."""
        return self.preferred().base_url

    @property
    def channel(self) -> EdgeChannel:
        return self.preferred().channel

    def preferred(self) -> EdgeClient:
        return self._ordered()[0].client

    def infer(self, frame: bytes, request_id: str, options: DetectionOptions = NO_OPTIONS) -> EdgeReply:
        return self._first_answer(lambda client: client.infer(frame, request_id, options))

    def infer_oip(self, request: OipRequest, request_id: str) -> OipReply:
        return self._first_answer(lambda client: client.infer_oip(request, request_id))

    def probe(self, body: bytes, timeout_s: float | None = None) -> tuple[float, int]:
        return self.preferred().probe(body, timeout_s)

    def health(self) -> dict[str, object] | None:
        """The preferred edge's health (None when it does not answer)."""
        return self.preferred().health()

    def status(self) -> list[EdgeStatus]:
        now = time.monotonic()
        with self._lock:
            return [
                EdgeStatus(
                    url=edge.client.base_url,
                    suspect=edge.client.watch.suspect,
                    refused_s_ago=None if edge.refused_at is None else round(now - edge.refused_at, 2),
                    round_trip_ms=None if edge.round_trip_ms is None else round(edge.round_trip_ms, 2),
                    answered=edge.answered,
                    failed=edge.failed,
                )
                for edge in self._edges
            ]

    def close(self) -> None:
        for edge in self._edges:
            edge.client.close()

    def _ordered(self) -> list[_Edge]:
        now = time.monotonic()
        with self._lock:
            ranked = sorted(
                enumerate(self._edges),
                key=lambda item: (
                    item[1].client.watch.suspect,
                    item[1].refused_at is not None and now - item[1].refused_at < RETRY_AFTER_S,
                    item[1].round_trip_ms or 0.0,
                    item[0],
                ),
            )
        return [edge for _, edge in ranked]

    def _first_answer(self, send: Callable[[EdgeClient], Reply]) -> Reply:
        failures: list[SplitComputingError] = []
        for edge in self._ordered():
            try:
                reply = send(edge.client)
            except FAILOVER as exc:
                with self._lock:
                    edge.failed += 1
                    edge.refused_at = time.monotonic()
                failures.append(exc)
                continue
            with self._lock:
                edge.answered += 1
                previous = edge.round_trip_ms
                sample = reply.round_trip_ms
                edge.round_trip_ms = sample if previous is None else previous + SMOOTHING * (sample - previous)
            return reply
        if len(failures) == 1:
            raise failures[0]
        last = failures[-1]
        reasons = "; ".join(failure.message for failure in failures)
        raise type(last)(f"all {len(failures)} edges failed this frame: {reasons}")
