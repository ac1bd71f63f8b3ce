"""The robot's end of the edge's ``/api/frames`` WebSocket (see edge_inference/frame_socket.py).

A small pool of open connections, one per inference in flight: a frame goes out as one binary message and its
answer comes back on the same connection. A connection that failed, timed out or was closed is dropped; a frame
that met a connection the edge had closed while it sat in the pool (an edge restart) is sent once more on a
fresh one, since running a frame twice has no side effects.
"""

from __future__ import annotations

import contextlib
import queue
from dataclasses import dataclass

from pydantic import SecretStr
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from common.auth import bearer_header
from common.errors import UpstreamTimeout, UpstreamUnavailable

FRAMES_PATH = "/api/frames"
POOL_SIZE = 16
# The answer is a small JSON document; a megabyte-sized one would be a broken edge.
MAX_REPLY_BYTES = 16 * 1024 * 1024


class ChannelRefused(Exception):
    """The edge answered the handshake with an HTTP status instead of upgrading."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"the edge refused the WebSocket with HTTP {status}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class ChannelReply:
    """A binary answer (an EdgeResult as JSON) or a text one (an error as JSON)."""

    body: bytes
    is_error: bool


class _Connection:
    """One open WebSocket and what closes it (websockets 17 wants its connections entered as contexts)."""

    def __init__(self, url: str, headers: dict[str, str], timeout_s: float) -> None:
        self._stack = contextlib.ExitStack()
        self.socket = self._stack.enter_context(
            connect(
                url,
                additional_headers=headers,
                open_timeout=timeout_s,
                close_timeout=1.0,
                max_size=MAX_REPLY_BYTES,
                compression=None,  # frames are already dense bit-packed codes
            )
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()

    def abort(self) -> None:
        """Drop the connection without the closing handshake: a peer that stopped answering would make ``close``
        wait its close timeout too, doubling what a hung edge costs the frame."""
        with contextlib.suppress(Exception):
            self.socket.close_socket()
        self.close()


class FrameChannel:
    def __init__(self, base_url: str, timeout_s: float, token: SecretStr | None = None) -> None:
        # Errors name the edge URL as configured (ROBOT_EDGE_URL), which is what a person would go and check.
        self.base_url = base_url.rstrip("/")
        scheme, _, rest = self.base_url.partition("://")
        self.url = f"{'wss' if scheme == 'https' else 'ws'}://{rest}{FRAMES_PATH}"
        self.timeout_s = timeout_s
        self._headers = bearer_header(token)
        self._idle: queue.LifoQueue[_Connection] = queue.LifoQueue(maxsize=POOL_SIZE)

    def exchange(self, frame: bytes) -> ChannelReply:
        """Send ``frame``, wait for its answer; UpstreamUnavailable / UpstreamTimeout / ChannelRefused."""
        pooled = self._take_idle()
        if pooled is not None:
            try:
                return self._exchange_on(pooled, frame)
            except ConnectionClosed:
                pass  # closed while idle (an edge restart): once more on a fresh connection
        connection = self._open()
        try:
            return self._exchange_on(connection, frame)
        except ConnectionClosed as exc:
            raise UpstreamUnavailable(f"the edge at {self.base_url} closed the frame socket: {exc}") from exc

    def close(self) -> None:
        while (connection := self._take_idle()) is not None:
            connection.close()

    def _exchange_on(self, connection: _Connection, frame: bytes) -> ChannelReply:
        try:
            connection.socket.send(frame)
            answer = connection.socket.recv(timeout=self.timeout_s)
        except TimeoutError as exc:
            connection.abort()
            raise UpstreamTimeout(f"the edge at {self.base_url} did not answer within its timeout") from exc
        except ConnectionClosed:
            connection.close()
            raise
        except OSError as exc:
            connection.close()
            raise UpstreamUnavailable(f"the edge at {self.base_url} cannot be reached: {exc}") from exc
        self._give_back(connection)
        if isinstance(answer, str):
            return ChannelReply(answer.encode(), is_error=True)
        return ChannelReply(answer, is_error=False)

    def _open(self) -> _Connection:
        try:
            return _Connection(self.url, self._headers, self.timeout_s)
        except InvalidStatus as exc:
            raise ChannelRefused(exc.response.status_code, bytes(exc.response.body or b"")) from exc
        except TimeoutError as exc:
            raise UpstreamTimeout(f"the edge at {self.base_url} did not answer within its timeout") from exc
        except (OSError, InvalidHandshake, ConnectionClosed) as exc:
            # ConnectionClosed: the edge went away during the handshake (killed, or restarting)
            raise UpstreamUnavailable(f"the edge at {self.base_url} cannot be reached: {exc}") from exc

    def _take_idle(self) -> _Connection | None:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return None

    def _give_back(self, connection: _Connection) -> None:
        try:
            self._idle.put_nowait(connection)
        except queue.Full:
            connection.close()
