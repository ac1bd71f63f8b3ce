"""Bearer-token access control, the same for all three services.

A service with a token set refuses writes (uploads, deletes, deploys, frames) without ``Authorization: Bearer
<token>``; reads are open unless ``protect_reads`` is on; ``/health`` is always open so orchestrators can probe it,
and then tells only that the service is up. Tokens are compared in constant time and never logged or echoed.

The splitter's web UI signs in with the token once and then holds a *session* cookie, never the token itself: an
expiry, a random nonce and an HMAC of both keyed by the token (``SessionSigner``). A stolen cookie stops working at
its expiry, at sign-out (the nonce is revoked), or when the token changes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
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


DEFAULT_SESSION_S = 12 * 3600.0


class SessionSigner:
    """Issues and checks the web UI's session cookies: ``<expiry>.<nonce>.<hmac>``."""

    def __init__(self, token: SecretStr, lifetime_s: float = DEFAULT_SESSION_S) -> None:
        self._key = hashlib.sha256(b"splitbot-session\0" + token.get_secret_value().encode()).digest()
        self.lifetime_s = lifetime_s
        self._revoked: dict[str, float] = {}  # nonce -> expiry, forgotten once expired
        self._lock = threading.Lock()

    def issue(self) -> str:
        expiry = int(time.time() + self.lifetime_s)
        body = f"{expiry}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign(body)}"

    def valid(self, value: str) -> bool:
        expiry_text, _, rest = value.partition(".")
        nonce, _, signature = rest.partition(".")
        body = f"{expiry_text}.{nonce}"
        if not (expiry_text.isdigit() and nonce and hmac.compare_digest(signature.encode(), self._sign(body).encode())):
            return False
        with self._lock:
            return int(expiry_text) > time.time() and nonce not in self._revoked

    def revoke(self, value: str) -> None:
        """Sign-out: this cookie is refused from now on, even if a copy of it was kept."""
        if not self.valid(value):
            return
        expiry_text, nonce, _ = value.split(".", 2)
        now = time.time()
        with self._lock:
            self._revoked = {n: e for n, e in self._revoked.items() if e > now}
            self._revoked[nonce] = float(expiry_text)

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()


def token_guard(
    expected: SecretStr | None, setting: str, hint: str = "", sessions: SessionSigner | None = None
) -> Guard:
    """A FastAPI dependency that lets a request through only with the expected token (if one is set).

    The token comes in ``Authorization: Bearer``, or, for the splitter's web UI, as a session of ``sessions`` in
    the HttpOnly ``SameSite=Strict`` cookie its sign-in form sets (strict same-site cookies are not sent with
    cross-site requests, so a foreign page cannot borrow a signed-in browser's access).
    """

    async def check(request: HTTPConnection) -> None:
        if expected is None:
            return
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and presented:
            if not token_matches(presented, expected):
                raise Unauthorized(f"the token is not the one set in {setting}{hint}")
            return
        cookie = request.cookies.get(TOKEN_COOKIE, "")
        if cookie and sessions is not None:
            if not sessions.valid(cookie):
                raise Unauthorized(f"the sign-in has expired or ended{hint}")
            return
        raise Unauthorized(f"this endpoint needs 'Authorization: Bearer <token>' (the token set in {setting}){hint}")

    return check


async def open_access(request: HTTPConnection) -> None:
    return None


def read_guard(
    expected: SecretStr | None, setting: str, protect_reads: bool, hint: str = "", sessions: SessionSigner | None = None
) -> Guard:
    return token_guard(expected, setting, hint, sessions) if protect_reads else open_access


async def passes(guard: Guard, request: HTTPConnection) -> bool:
    """Whether ``request`` may see what ``guard`` protects (for answers that show less to strangers)."""
    try:
        await guard(request)
    except Unauthorized:
        return False
    return True
