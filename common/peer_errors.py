"""The one place where a peer service's error reply becomes one of our errors: the client side of ``http_errors``.

Every service answers an error as ``{"error": code, "detail": message}`` (over the frame socket with ``status`` too);
an Open Inference Protocol server (our edge's /v2 routes, Triton) as ``{"error": message}``.
The code names the class that was raised over there, so the caller raises the same class here, with the peer named
in the message: a 409 ``unknown_split`` from the edge stays ``UnknownSplit``, a 504 from the robot stays
``UpstreamTimeout``. Two exceptions, because they say nothing the person calling us could act on as such:

- 401/403: the peer refused *our* credentials (a wrong ``*_TOKEN`` in this service's settings), so ``BadGateway``;
- a code we do not know, or one that disagrees with the status (a proxy's page, an older release): the status
  decides, and any 5xx is ``UpstreamUnavailable``.
"""

from __future__ import annotations

import functools
import json

from common.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    SplitComputingError,
    UnprocessableModel,
    UnsupportedMediaType,
    UpstreamUnavailable,
)

MAX_DETAIL_CHARS = 300

_BY_STATUS: dict[int, type[SplitComputingError]] = {
    400: BadRequest,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: UnprocessableModel,
}


@functools.cache
def _known_errors() -> dict[str, type[SplitComputingError]]:
    found: dict[str, type[SplitComputingError]] = {}
    pending: list[type[SplitComputingError]] = [SplitComputingError]
    while pending:
        current = pending.pop()
        if current.__module__ == "common.errors":  # the shared tree only, whatever else this process imported
            found.setdefault(current.code, current)
        pending.extend(current.__subclasses__())
    return found


def reply_error(body: bytes | str) -> tuple[str | None, str]:
    """``(code, detail)`` of an error body; a body that is not our JSON gives ``(None, its first characters)``."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text)
    except ValueError:
        return None, text[:MAX_DETAIL_CHARS]
    if not isinstance(parsed, dict):
        return None, str(parsed)[:MAX_DETAIL_CHARS]
    code = parsed.get("error")
    if "detail" not in parsed and isinstance(code, str):
        return None, code[:MAX_DETAIL_CHARS]  # the Open Inference Protocol's {"error": message}
    return (code if isinstance(code, str) else None), str(parsed.get("detail", parsed))


def peer_error(peer: str, status: int, body: bytes | str) -> SplitComputingError:
    """Our error for ``peer``'s answer ``status`` with error ``body`` (``peer``: "edge", "robot", "splitter")."""
    code, detail = reply_error(body)
    if status in (401, 403):
        return BadGateway(f"the {peer} refused this service's credentials ({status}; check its token): {detail}")
    named = _known_errors().get(code) if code is not None else None
    if named is not None and named.status_code == status and named is not SplitComputingError:
        return named(f"the {peer} refused: {detail}" if status < 500 else f"the {peer} failed: {detail}")
    by_status = _BY_STATUS.get(status)
    if by_status is not None:
        return by_status(f"the {peer} refused: {detail}")
    if status >= 500:
        return UpstreamUnavailable(f"the {peer} could not complete the request ({status}): {detail}")
    return BadGateway(f"the {peer} answered {status}: {detail}")
