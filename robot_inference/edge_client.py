"""One pooled, keep-alive HTTP client from the robot to its edge, and the translation of the edge's answers."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from common.auth import bearer_header
from common.errors import (
    BadGateway,
    BadRequest,
    FrameMismatch,
    PayloadTooLarge,
    SplitComputingError,
    UnknownSplit,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from common.observability import REQUEST_ID_HEADER
from common.results import EdgeResult

_EDGE_ERRORS: dict[int, type[SplitComputingError]] = {
    400: BadRequest,
    401: BadGateway,
    409: UnknownSplit,
    413: PayloadTooLarge,
    422: FrameMismatch,
}


# The robot's own /health waits this long for the edge's: well under the 2 s that health probes commonly allow,
# so that a hanging edge never makes the robot itself look dead.
EDGE_HEALTH_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class EdgeReply:
    result: EdgeResult
    round_trip_ms: float
    received_bytes: int


class EdgeClient:
    def __init__(self, base_url: str, timeout_s: float, token: SecretStr | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            headers=bearer_header(token),
            limits=httpx.Limits(max_keepalive_connections=16, max_connections=64),
        )

    def infer(self, frame: bytes, request_id: str) -> EdgeReply:
        start = time.perf_counter()
        headers = {"content-type": "application/octet-stream", REQUEST_ID_HEADER: request_id}
        try:
            response = self._client.post("/api/infer", content=frame, headers=headers)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"the edge at {self.base_url} did not answer within its timeout") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"the edge at {self.base_url} cannot be reached: {exc}") from exc
        round_trip_ms = (time.perf_counter() - start) * 1000.0
        if response.status_code != 200:
            raise self._error_from(response)
        return EdgeReply(
            result=EdgeResult.model_validate_json(response.content),
            round_trip_ms=round_trip_ms,
            received_bytes=len(response.content),
        )

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
            raise self._error_from(response)
        try:
            received = int(response.json()["received"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadGateway(f"the edge's probe answer is not {{'received': n}}: {response.text[:200]}") from exc
        return round_trip_ms, received

    def health(self) -> dict[str, object] | None:
        try:
            response = self._client.get("/health", timeout=EDGE_HEALTH_TIMEOUT_S)
            response.raise_for_status()
            body: dict[str, object] = response.json()
            return body
        except (httpx.HTTPError, ValueError):
            return None

    def _error_from(self, response: httpx.Response) -> SplitComputingError:
        try:
            detail = str(response.json().get("detail", response.text))
        except ValueError:
            detail = response.text[:300]
        error_class = _EDGE_ERRORS.get(response.status_code)
        if error_class is not None:
            return error_class(f"the edge refused the request: {detail}")
        if response.status_code >= 500:
            return UpstreamUnavailable(f"the edge failed ({response.status_code}): {detail}")
        return BadGateway(f"the edge answered {response.status_code}: {detail}")

    def close(self) -> None:
        self._client.close()
