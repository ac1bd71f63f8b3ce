"""One pooled, keep-alive HTTP client from the robot to its edge, and the translation of the edge's answers."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import httpx
from pydantic import SecretStr, ValidationError

from common.auth import bearer_header
from common.errors import (
    BadGateway,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from common.observability import trace_headers
from common.peer_errors import peer_error
from common.postprocess.answers import NO_OPTIONS, DetectionOptions
from common.results import EdgeResult
from robot_inference.edge_watch import EdgeWatch
from robot_inference.frame_channel import ChannelRefused, FrameChannel
from robot_inference.oip_tail import OipRequest, answer_header_length
from robot_inference.settings import EdgeChannel, EdgeProtocol

logger = logging.getLogger(__name__)

# The robot's own /health waits this long for the edge's: well under the 2 s that health probes commonly allow,
# so that a hanging edge never makes the robot itself look dead.
EDGE_HEALTH_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class EdgeReply:
    result: EdgeResult
    round_trip_ms: float
    received_bytes: int
    edge_url: str


@dataclass(frozen=True)
class OipReply:
    body: bytes
    header_length: str | None
    round_trip_ms: float
    edge_url: str


class EdgeClient:
    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        token: SecretStr | None = None,
        channel: EdgeChannel = "websocket",
        protocol: EdgeProtocol = "splitbot",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.protocol: EdgeProtocol = protocol
        self.watch = EdgeWatch(self.base_url, lambda: self.health() is not None)
        speaks_frames = channel == "websocket" and protocol == "splitbot"
        self._frames = FrameChannel(self.base_url, timeout_s, token) if speaks_frames else None
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            headers=bearer_header(token),
            limits=httpx.Limits(max_keepalive_connections=16, max_connections=64),
        )

    @property
    def channel(self) -> EdgeChannel:
        """The channel frames go over now (websocket turns into http for an edge that refused the upgrade)."""
        return "websocket" if self._frames is not None else "http"

    def infer(self, frame: bytes, request_id: str, options: DetectionOptions = NO_OPTIONS) -> EdgeReply:
        self.watch.check()
        try:
            return self._infer(frame, request_id, options)
        except UpstreamTimeout:
            self.watch.timed_out(self.timeout_s)
            raise

    def infer_oip(self, request: OipRequest, request_id: str) -> OipReply:
        """POST an Open Inference Protocol request (robot_inference/oip_tail.py); the answer's body as it came."""
        self.watch.check()
        try:
            response, round_trip_ms = self._post(
                request.path, request.body, {**request.headers, **trace_headers(request_id)}
            )
        except UpstreamTimeout:
            self.watch.timed_out(self.timeout_s)
            raise
        return OipReply(response.content, answer_header_length(response.headers), round_trip_ms, self.base_url)

    def _post(
        self, path: str, body: bytes, headers: dict[str, str], params: dict[str, str] | None = None
    ) -> tuple[httpx.Response, float]:
        """A 200 answer and the round trip in ms; our error for anything else."""
        start = time.perf_counter()
        try:
            response = self._client.post(path, content=body, headers=headers, params=params)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"the edge at {self.base_url} did not answer within its timeout") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"the edge at {self.base_url} cannot be reached: {exc}") from exc
        round_trip_ms = (time.perf_counter() - start) * 1000.0
        if response.status_code != 200:
            raise peer_error("edge", response.status_code, response.content)
        return response, round_trip_ms

    def _infer(self, frame: bytes, request_id: str, options: DetectionOptions) -> EdgeReply:
        # A frame carries tensors only: a request's own detection options travel as query parameters, over HTTP.
        if self._frames is not None and not options.given:
            try:
                return self._infer_on_socket(self._frames, frame)
            except ChannelRefused as exc:
                if exc.status == 401:
                    raise peer_error("edge", exc.status, exc.body) from exc
                # An edge without the socket (an older release): POST from now on.
                logger.warning("the edge at %s has no frame socket (%s); posting frames instead", self.base_url, exc)
                self._frames = None
        return self._infer_over_http(frame, request_id, options)

    def _infer_on_socket(self, frames: FrameChannel, frame: bytes) -> EdgeReply:
        start = time.perf_counter()
        reply = frames.exchange(frame)
        round_trip_ms = (time.perf_counter() - start) * 1000.0
        if reply.is_error:
            try:
                status = int(json.loads(reply.body)["status"])
            except (ValueError, KeyError, TypeError) as exc:
                raise BadGateway(f"the edge answered with an unreadable error: {reply.body[:200]!r}") from exc
            raise peer_error("edge", status, reply.body)
        return self._reply(reply.body, round_trip_ms)

    def _infer_over_http(self, frame: bytes, request_id: str, options: DetectionOptions) -> EdgeReply:
        headers = {"content-type": "application/octet-stream", **trace_headers(request_id)}
        response, round_trip_ms = self._post("/api/infer", frame, headers, options.query())
        return self._reply(response.content, round_trip_ms)

    def _reply(self, body: bytes, round_trip_ms: float) -> EdgeReply:
        return EdgeReply(_edge_result(body), round_trip_ms, len(body), self.base_url)

    def probe(self, body: bytes, timeout_s: float | None = None) -> tuple[float, int]:
        """POST ``body`` to the edge's /api/probe (which only counts it): round trip ms and bytes it received."""
        start = time.perf_counter()
        headers = {"content-type": "application/octet-stream"}
        timeout = httpx.Timeout(timeout_s) if timeout_s is not None else httpx.USE_CLIENT_DEFAULT
        try:
            response = self._client.post("/api/probe", content=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"the edge at {self.base_url} did not answer the link probe in time") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"the edge at {self.base_url} cannot be reached: {exc}") from exc
        round_trip_ms = (time.perf_counter() - start) * 1000.0
        if response.status_code != 200:
            raise peer_error("edge", response.status_code, response.content)
        try:
            received = int(response.json()["received"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadGateway(f"the edge's probe answer is not {{'received': n}}: {response.text[:200]}") from exc
        return round_trip_ms, received

    def health(self) -> dict[str, object] | None:
        """The edge's /health; an Open Inference Protocol server's readiness (/v2/health/ready) as {"ready": true}."""
        try:
            if self.protocol == "oip":
                ready = self._client.get("/v2/health/ready", timeout=EDGE_HEALTH_TIMEOUT_S)
                return {"ready": True, "protocol": "oip"} if ready.status_code == 200 else None
            response = self._client.get("/health", timeout=EDGE_HEALTH_TIMEOUT_S)
            response.raise_for_status()
            body: dict[str, object] = response.json()
            return body
        except (httpx.HTTPError, ValueError):
            return None

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
        self._client.close()


def _edge_result(body: bytes) -> EdgeResult:
    try:
        return EdgeResult.model_validate_json(body)
    except ValidationError as exc:
        raise BadGateway(f"the edge's answer is not an inference result: {body[:200]!r}") from exc
