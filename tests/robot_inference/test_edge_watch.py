"""EdgeWatch: one timeout makes the edge suspect until its health check answers again."""

from __future__ import annotations

import threading
import time

import pytest

from common.errors import UpstreamUnavailable
from robot_inference.edge_watch import EdgeWatch


def test_suspect_after_a_timeout_and_clear_once_the_edge_answers() -> None:
    answering = threading.Event()
    asked = []

    def answers() -> bool:
        asked.append(time.monotonic())
        return answering.is_set()

    watch = EdgeWatch("http://edge", answers, interval_s=0.05)
    watch.check()  # nothing happened yet: frames go
    watch.timed_out(2.0)
    with pytest.raises(UpstreamUnavailable, match="within 2 s"):
        watch.check()
    watch.timed_out(2.0)  # a second timeout while suspect starts no second probe
    time.sleep(0.3)
    assert watch.suspect and len(asked) >= 3
    answering.set()
    deadline = time.monotonic() + 2
    while watch.suspect and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not watch.suspect
    watch.check()
    count = len(asked)
    time.sleep(0.2)
    assert len(asked) == count  # the probe stopped with the edge back
