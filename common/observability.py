"""Request ids, structured logs and Prometheus metrics, installed the same way on every service.

A request id comes from the caller's ``X-Request-ID`` header or is made here; the robot puts it into the wire
frame and the header of its call to the edge, so one inference can be followed through both services' logs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone

from fastapi import Depends, FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.auth import TOKEN_COOKIE, Guard
from common.manifest import is_hex
from common.timing import Stage

REQUEST_ID_HEADER = "x-request-id"
# W3C trace context: "00-<trace id, 32 hex>-<parent span id, 16 hex>-<flags>". A request id of 32 hex digits is a
# trace id too, so OpenTelemetry tooling sees one trace from the camera to the edge.
TRACEPARENT_HEADER = "traceparent"
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access_log = logging.getLogger("splitbot.access")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """One registry per app, so several apps in one process (tests) never share counters."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        # process_* (CPU seconds, resident memory, open files) and python_info, as Prometheus dashboards expect.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "splitbot_requests", "HTTP requests", ["service", "route", "method", "status"], registry=self.registry
        )
        self.request_seconds = Histogram(
            "splitbot_request_seconds", "HTTP request latency", ["service", "route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.stage_seconds = Histogram(
            "splitbot_stage_seconds", "Pipeline stage latency", ["service", "stage", "where"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.wire_bytes = Counter(
            "splitbot_wire_bytes", "Bytes of frames and answers", ["service", "direction"], registry=self.registry
        )

    def record_request(self, method: str, path: str, route: str, status: int, start: float) -> None:
        """Count and time one request (or one WebSocket message) and write its access log line."""
        elapsed = time.perf_counter() - start
        self.requests.labels(self.service, route, method, str(status)).inc()
        self.request_seconds.labels(self.service, route).observe(elapsed)
        access_log.info(
            "%s %s -> %d",
            method,
            path,
            status,
            extra={"fields": {"status": status, "ms": round(elapsed * 1000, 2), "route": route}},
        )

    def observe_stages(self, stages: Iterable[Stage]) -> None:
        for stage in stages:
            self.stage_seconds.labels(self.service, stage.name, stage.where).observe(stage.ms / 1000.0)

    def count_bytes(self, direction: str, amount: int) -> None:
        if amount > 0:
            self.wire_bytes.labels(self.service, direction).inc(amount)


# At debug level, libraries log request headers (uvicorn's and the robot's WebSocket handshakes write
# "authorization: Bearer ..." lines, or tuples like (b'authorization', b'Basic ...')); no credential may reach a
# log, whoever wrote the line and whatever its scheme: the whole value of any authorization header, any bearer
# token, the session cookie, and a token in a query string.
_SECRETS = (
    re.compile(r"(?i)(authorization['\"]?\s*[:,=]\s*(?:b?['\"])?)[^'\"\r\n]+"),
    re.compile(rf"(?i)(bearer\s+[\"']?|{TOKEN_COOKIE}=)[^\s;,'\"]+"),
    re.compile(r"(?i)([?&](?:access_)?token=)[^&\s'\"]+"),
)


def redact(text: str) -> str:
    for pattern in _SECRETS:
        text = pattern.sub(r"\1[redacted]", text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            # UTC with milliseconds: lines of robot and edge line up across hosts to within a pipeline stage.
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": request_id_var.get(),
            "message": redact(record.getMessage()),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log repeats ours without the request id; ours says more.
    logging.getLogger("uvicorn.access").disabled = True


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a valid W3C ``traceparent`` (version 00, ids not all zeros), else None."""
    match = _TRACEPARENT.fullmatch((traceparent or "").strip())
    if match is None or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return match.group(1)


def traceparent_for(request_id: str) -> str | None:
    """A ``traceparent`` continuing the trace ``request_id`` names (with a new span id), if it is a trace id."""
    if not is_hex(request_id, 32) or set(request_id) == {"0"}:
        return None
    return f"00-{request_id}-{uuid.uuid4().hex[:16]}-01"


def outgoing_trace_headers() -> dict[str, str]:
    """Headers that carry this request's id to a peer (none outside a request)."""
    request_id = request_id_var.get()
    return trace_headers(request_id) if request_id != "-" else {}


def trace_headers(request_id: str) -> dict[str, str]:
    """``X-Request-Id``, and for an id that is a trace id, a ``traceparent`` continuing that trace."""
    headers = {REQUEST_ID_HEADER: request_id}
    if (traceparent := traceparent_for(request_id)) is not None:
        headers[TRACEPARENT_HEADER] = traceparent
    return headers


class ObservabilityMiddleware:
    """Request id, access log line and request metrics around every HTTP request.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` runs the app in a second task behind memory
    streams, which cost about a millisecond a request on these machines, on both hops of every inference.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = headers.get(REQUEST_ID_HEADER) or trace_id_of(headers.get(TRACEPARENT_HEADER)) or uuid.uuid4().hex
        token = request_id_var.set(request_id[:64])
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                answer = MutableHeaders(scope=message)
                answer[REQUEST_ID_HEADER] = request_id_var.get()
                if (traceparent := traceparent_for(request_id_var.get())) is not None:
                    answer[TRACEPARENT_HEADER] = traceparent
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.record_request(scope["method"], scope["path"], _route_template(scope), status, start)
            request_id_var.reset(token)


def install_observability(app: FastAPI, metrics: Metrics, metrics_guard: Guard) -> None:
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)

    @app.get(
        "/metrics",
        tags=["service"],
        summary="Prometheus metrics",
        dependencies=[Depends(metrics_guard)],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
    )
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
