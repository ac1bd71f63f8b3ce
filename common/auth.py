"""Bearer-token access control, the same for all three services.

A service with a token set refuses writes (uploads, deletes, deploys, frames) without ``Authorization: Bearer
<token>``; reads are open unless ``protect_reads`` is on; ``/health`` is always open so orchestrators can probe it.
Tokens are compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Request
from pydantic import SecretStr

from common.errors import Unauthorized

Guard = Callable[[Request], Awaitable[None]]


def bearer_header(token: SecretStr | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}


def token_guard(expected: SecretStr | None, setting: str) -> Guard:
    """A FastAPI dependency that lets a request through only with the expected bearer token (if one is set)."""
    secret = expected.get_secret_value().encode() if expected is not None else None

    async def check(request: Request) -> None:
        if secret is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise Unauthorized(f"this endpoint needs 'Authorization: Bearer <token>' (the token set in {setting})")
        if not hmac.compare_digest(presented.strip().encode(), secret):
            raise Unauthorized(f"the bearer token is not the one set in {setting}")

    return check


async def open_access(request: Request) -> None:
    return None


def read_guard(expected: SecretStr | None, setting: str, protect_reads: bool) -> Guard:
    return token_guard(expected, setting) if protect_reads else open_access
