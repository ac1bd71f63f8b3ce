"""FrameChannel against edges that go away: every way the socket can fail is one of our errors, never a crash."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from common.errors import UpstreamUnavailable
from robot_inference.frame_channel import FrameChannel
from tests.support import tcp_server


def closing_after(reply: bytes) -> Callable[[socket.socket], None]:
    """Reads the handshake, sends ``reply`` (maybe nothing) and closes: an edge that dies while answering."""

    def serve(connection: socket.socket) -> None:
        with connection:
            connection.settimeout(2)
            try:
                connection.recv(65536)
                if reply:
                    connection.sendall(reply)
            except OSError:
                pass

    return serve


@pytest.fixture(params=[b"", b"HTTP/1.1 101 Switching Protocols\r\n"], ids=["closed-before-answer", "cut-mid-answer"])
def dying_edge(request: pytest.FixtureRequest) -> Iterator[str]:
    with tcp_server(closing_after(request.param)) as url:
        yield url


def test_an_edge_that_dies_during_the_handshake_is_unavailable(dying_edge: str) -> None:
    channel = FrameChannel(dying_edge, timeout_s=5.0)
    with pytest.raises(UpstreamUnavailable, match="cannot be reached"):
        channel.exchange(b"frame")
    channel.close()
