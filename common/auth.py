"""Bearer-token access control, the same for all three services.

A service with a token set refuses writes (uploads, deletes, deploys, frames) without ``Authorization: Bearer
<token>``; reads are open unless ``protect_reads`` is on; ``/health`` is always open so orchestrators can probe it.
Tokens are compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from pydantic import SecretStr
from starlette.requests import HTTPConnection

from common.errors import Unauthorized

# Requests and WebSocket handshakes alike (both are HTTP connections with headers and cookies).
Guard = Callable[[HTTPConnection], Awaitable[None]]
TOKEN_COOKIE = "splitbot_token"


def bearer_header(token: SecretStr | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}


def token_matches(presented: str, expected: SecretStr | None) -> bool:
    if expected is None:
        return True
    return hmac.compare_digest(presented.strip().encode(), expected.get_secret_value().encode())


def token_guard(expected: SecretStr | None, setting: str, hint: str = "") -> Guard:
    """A FastAPI dependency that lets a request through only with the expected token (if one is set).

    The token comes in ``Authorization: Bearer``, or, for the splitter's web UI, in the HttpOnly ``SameSite=Strict``
    cookie its sign-in form sets (strict same-site cookies are not sent with cross-site requests, so a foreign page
    cannot borrow a signed-in browser's access).
    """

    async def check(request: HTTPConnection) -> None:
        if expected is None:
            return
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            presented = request.cookies.get(TOKEN_COOKIE, "")
            if not presented:
                raise Unauthorized(
                    f"this endpoint needs 'Authorization: Bearer <token>' (the token set in {setting}){hint}"
                )
        if not token_matches(presented, expected):
            raise Unauthorized(f"the token is not the one set in {setting}{hint}")

    return check


async def open_access(request: HTTPConnection) -> None:
    return None


def read_guard(expected: SecretStr | None, setting: str, protect_reads: bool, hint: str = "") -> Guard:
    return token_guard(expected, setting, hint) if protect_reads else open_access
