"""Dynamic batching on the edge: frames for the same tail that meet in its queue run as one ``session.run``.

A frame that finds its tail idle runs at once, so a lone robot pays nothing for batching. A frame that finds the
tail busy waits for the run in progress to end, at most ``window_s``, gathering the frames that arrive meanwhile
(up to ``max_rows`` samples); the gathered frames then run as one batch and each gets its own rows of the outputs
back. The wait is the frame's ``batch queue`` stage. The queue is bounded (``max_waiting`` frames per tail:
beyond it, 503 at once); a frame whose deadline passed while it waited is answered 504 without running.

The threads are the server's worker threads, one per request: whichever waiting frame finds no leader leads the
next batch (gathers, runs it, hands out the outputs), so no thread of its own is needed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from starlette.requests import Request

from common.deployments import Deployment
from common.errors import DeadlineExceeded, InvalidArgument, Overloaded

DEADLINE_HEADER = "X-Deadline-Ms"


@dataclass(frozen=True)
class BatchedRun:
    outputs: list[np.ndarray]  # this frame's rows of every output
    queue_ms: float  # how long it waited to be run
    batch_rows: int  # the samples of the run it went in (its own included)


@dataclass
class _Waiting:
    feeds: dict[str, np.ndarray]
    rows: int
    arrived: float
    deadline: float | None
    taken: bool = False  # in a batch being run
    result: BatchedRun | None = None
    error: Exception | None = None

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None


@dataclass
class _Tail:
    """One tail's queue, whether some frame is leading its next batch, and how many runs of it are going."""

    waiting: list[_Waiting] = field(default_factory=list)
    leading: bool = False
    running: int = 0


class TailBatcher:
    def __init__(self, window_s: float, max_rows: int, max_waiting: int) -> None:
        self.window_s = window_s
        self.max_rows = max_rows
        self.max_waiting = max_waiting
        self._changed = threading.Condition()
        self._tails: dict[str, _Tail] = {}

    def run(self, deployment: Deployment, feeds: dict[str, np.ndarray], deadline: float | None = None) -> BatchedRun:
        """The tail's outputs for ``feeds`` (``[rows, ...]`` each); ``deadline`` on ``time.monotonic()``'s clock."""
        rows = next(iter(feeds.values())).shape[0] if feeds else 1
        item = _Waiting(feeds, rows, time.monotonic(), deadline)
        if self.window_s <= 0 or rows >= self.max_rows or not deployment.part.dynamic_batch:
            _check_deadline(item, time.monotonic())
            return BatchedRun(deployment.part.run(feeds), 0.0, rows)
        key = deployment.manifest.id
        with self._changed:
            tail = self._tails.setdefault(key, _Tail())
            if len(tail.waiting) >= self.max_waiting:
                raise Overloaded(
                    f"{len(tail.waiting)} frames already wait for this tail (EDGE_BATCH_QUEUE); try again shortly, "
                    "or send to another edge"
                )
            tail.waiting.append(item)
            self._changed.notify_all()
            while not item.done:
                if tail.leading or item.taken:
                    self._changed.wait()
                    continue
                tail.leading = True
                batch = self._gather(tail)
                tail.leading = False
                tail.running += 1
                self._changed.notify_all()  # a frame left waiting may lead the next batch now
                self._changed.release()
                try:
                    _execute(deployment, batch)
                finally:
                    self._changed.acquire()
                    tail.running -= 1
                    self._changed.notify_all()
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _gather(self, tail: _Tail) -> list[_Waiting]:
        """Wait (the condition held) while the tail is busy, for at most the window, then take the frames that
        fit in one run, oldest first."""
        opened = tail.waiting[0].arrived
        while tail.running > 0 and sum(w.rows for w in tail.waiting) < self.max_rows:
            remaining = opened + self.window_s - time.monotonic()
            if remaining <= 0:
                break
            self._changed.wait(remaining)
        taken: list[_Waiting] = []
        rows = 0
        while tail.waiting and (not taken or rows + tail.waiting[0].rows <= self.max_rows):
            rows += tail.waiting[0].rows
            taken.append(tail.waiting.pop(0))
            taken[-1].taken = True
        return taken


def _execute(deployment: Deployment, batch: list[_Waiting]) -> None:
    """Run the batch's live frames as one; every frame of it ends with a result or an error."""
    started = time.monotonic()
    live = []
    for item in batch:
        try:
            _check_deadline(item, started)
            live.append(item)
        except DeadlineExceeded as exc:
            item.error = exc
    if not live:
        return
    names = list(live[0].feeds)
    try:
        feeds = {name: np.concatenate([item.feeds[name] for item in live]) for name in names}
        outputs = deployment.part.run(feeds)
    except Exception as exc:  # the batch's failure is each of its frames' failure, raised in its own request
        for item in live:
            item.error = exc
        return
    total = sum(item.rows for item in live)
    offset = 0
    for item in live:
        mine = [_rows(output, offset, item.rows, total) for output in outputs]
        item.result = BatchedRun(mine, (started - item.arrived) * 1000.0, total)
        offset += item.rows


def _rows(output: np.ndarray, offset: int, rows: int, total: int) -> np.ndarray:
    """A frame's rows of one output; an output without the batch axis goes whole to every frame."""
    array = np.asarray(output)
    if array.ndim and array.shape[0] == total:
        return array[offset : offset + rows]
    return array


def _check_deadline(item: _Waiting, now: float) -> None:
    if item.deadline is not None and now > item.deadline:
        late = (now - item.deadline) * 1000.0
        raise DeadlineExceeded(
            f"the frame's deadline passed {late:.1f} ms before its tail could run it; it was not run "
            "(a later frame will be more useful)"
        )


def deadline_from(request: Request) -> float | None:
    """The request's ``X-Deadline-Ms`` (ms from now) on ``time.monotonic()``'s clock; None without one."""
    text = request.headers.get(DEADLINE_HEADER)
    if text is None:
        return None
    try:
        ms = float(text)
    except ValueError:
        ms = float("nan")
    if not 0 < ms <= 3_600_000:
        raise InvalidArgument(f"{DEADLINE_HEADER} must be milliseconds in (0, 3600000], got {text[:40]!r}")
    return time.monotonic() + ms / 1000.0
