"""FrameChannel against edges that go away: every way the socket can fail is one of our errors, never a crash."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from common.errors import UpstreamUnavailable
from robot_inference.frame_channel import FrameChannel


def closing_listener(reply: bytes) -> Iterator[str]:
    """Accepts each connection, reads the handshake, sends ``reply`` (maybe nothing) and closes: a dying edge."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    connection.recv(65536)
                    if reply:
                        connection.sendall(reply)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    listener.close()


@pytest.fixture(params=[b"", b"HTTP/1.1 101 Switching Protocols\r\n"], ids=["closed-before-answer", "cut-mid-answer"])
def dying_edge(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from closing_listener(request.param)


def test_an_edge_that_dies_during_the_handshake_is_unavailable(dying_edge: str) -> None:
    channel = FrameChannel(dying_edge, timeout_s=5.0)
    with pytest.raises(UpstreamUnavailable, match="cannot be reached"):
        channel.exchange(b"frame")
    channel.close()
