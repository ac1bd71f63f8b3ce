"""After an edge timeout, fail the next frames at once while a background probe waits for the edge to answer.

A hung edge (accepting connections, answering nothing) would otherwise cost every frame the full timeout, and a
robot streaming at 15 frames per second would queue seconds of frames behind it. One timeout is paid; from then
on frames are refused at once (or answered on the robot, with ``ROBOT_FALLBACK_TO_ROBOT``) until the edge answers
its health check again, which a daemon thread asks every ``interval_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from common.errors import UpstreamUnavailable

DEFAULT_PROBE_INTERVAL_S = 1.0


class EdgeWatch:
    def __init__(self, base_url: str, answers: Callable[[], bool], interval_s: float = DEFAULT_PROBE_INTERVAL_S):
        self.base_url = base_url
        self._answers = answers
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._since: float | None = None  # monotonic time of the timeout that made the edge suspect
        self._timeout_s = 0.0

    @property
    def suspect(self) -> bool:
        with self._lock:
            return self._since is not None

    def check(self) -> None:
        """Raise at once while the edge is suspect."""
        with self._lock:
            since, timeout_s = self._since, self._timeout_s
        if since is not None:
            raise UpstreamUnavailable(
                f"the edge at {self.base_url} did not answer a frame within {timeout_s:g} s "
                f"({time.monotonic() - since:.1f} s ago); frames fail at once until it answers its health check "
                f"again (asked every {self._interval_s:g} s)"
            )

    def timed_out(self, timeout_s: float) -> None:
        """A frame waited ``timeout_s`` for nothing: mark the edge suspect and start the probe (once)."""
        with self._lock:
            if self._since is not None:
                return
            self._since, self._timeout_s = time.monotonic(), timeout_s
        threading.Thread(target=self._probe, name="edge-watch", daemon=True).start()

    def _probe(self) -> None:
        while not self._answers():
            time.sleep(self._interval_s)
        with self._lock:
            self._since = None
