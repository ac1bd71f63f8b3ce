"""Dynamic batching on the edge: frames for the same tail run together, as one ``session.run``.

One run of a tail at a time (as one Triton model instance): frames that meet their tail busy queue, and when the
run ends the frames queued meanwhile run as the next batch (up to ``max_rows`` samples), each getting its own rows
of the outputs back. A frame that finds its tail free runs at once, unless other frames of the same tail are
already on their way through the edge (announced with ``incoming``: parsed, being dequantized): then it waits for
them at most ``window_s``. So a lone robot never waits, and robots whose frames arrive together share runs. The
wait is the frame's ``batch queue`` stage. The queue is bounded (``max_waiting`` frames per tail: beyond it, 503 at
once); a frame whose deadline passed while it waited is answered 504 without running. ``max_rows`` 1 turns
batching off: every frame runs by itself, as soon as it arrives, beside the others.

The threads are the server's worker threads, one per request: whichever waiting frame finds no leader leads the
next batch (waits, gathers, runs it, hands out the outputs), so no thread of its own is needed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    """One tail's queue, and what its next batch waits for."""

    waiting: list[_Waiting] = field(default_factory=list)
    leading: bool = False  # a waiting frame is gathering the next batch
    running: bool = False  # a batch of it is in session.run
    coming: int = 0  # frames announced (``incoming``) that have not reached the queue yet


@dataclass
class Ticket:
    """A frame on its way to a tail (``TailBatcher.incoming``)."""

    key: str
    arrived: bool = False


class TailBatcher:
    def __init__(self, window_s: float, max_rows: int, max_waiting: int) -> None:
        self.window_s = window_s
        self.max_rows = max_rows
        self.max_waiting = max_waiting
        self._changed = threading.Condition()
        self._tails: dict[str, _Tail] = {}

    @contextmanager
    def incoming(self, split_id: str) -> Iterator[Ticket]:
        """Announce a frame of ``split_id``'s tail (pass the ticket to ``run``): frames at the head of the queue
        wait for it (at most the window) to share its run."""
        ticket = Ticket(split_id)
        with self._changed:
            self._tails.setdefault(split_id, _Tail()).coming += 1
        try:
            yield ticket
        finally:
            if not ticket.arrived:  # it failed before reaching the queue
                with self._changed:
                    self._tails[split_id].coming -= 1
                    self._changed.notify_all()

    def run(
        self,
        deployment: Deployment,
        feeds: dict[str, np.ndarray],
        deadline: float | None = None,
        ticket: Ticket | None = None,
    ) -> BatchedRun:
        """The tail's outputs for ``feeds`` (``[rows, ...]`` each); ``deadline`` on ``time.monotonic()``'s clock."""
        rows = next(iter(feeds.values())).shape[0] if feeds else 1
        item = _Waiting(feeds, rows, time.monotonic(), deadline)
        key = deployment.manifest.id
        with self._changed:
            tail = self._tails.setdefault(key, _Tail())
            if ticket is not None and not ticket.arrived:
                ticket.arrived = True
                tail.coming -= 1
            batching = self.max_rows > 1 and rows < self.max_rows and deployment.part.dynamic_batch
            if batching and len(tail.waiting) >= self.max_waiting:
                raise Overloaded(
                    f"{len(tail.waiting)} frames already wait for this tail (EDGE_BATCH_QUEUE); try again shortly, "
                    "or send to another edge"
                )
            if batching:
                tail.waiting.append(item)
            self._changed.notify_all()
        if not batching:
            _check_deadline(item, time.monotonic())
            return BatchedRun(deployment.part.run(feeds), 0.0, rows)
        with self._changed:
            while not item.done:
                if tail.leading or item.taken:
                    self._changed.wait()
                    continue
                self._lead(deployment, tail)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _lead(self, deployment: Deployment, tail: _Tail) -> None:
        """Gather the next batch and run it (called, and returning, with the condition held)."""
        tail.leading = True
        while tail.running:
            self._changed.wait()
        opened = tail.waiting[0].arrived
        while tail.coming > 0 and sum(w.rows for w in tail.waiting) < self.max_rows:
            remaining = opened + self.window_s - time.monotonic()
            if remaining <= 0:
                break
            self._changed.wait(remaining)
        batch: list[_Waiting] = []
        rows = 0
        while tail.waiting and (not batch or rows + tail.waiting[0].rows <= self.max_rows):
            rows += tail.waiting[0].rows
            batch.append(tail.waiting.pop(0))
            batch[-1].taken = True
        tail.leading, tail.running = False, True
        self._changed.notify_all()
        self._changed.release()
        try:
            _execute(deployment, batch)
        finally:
            self._changed.acquire()
            tail.running = False
            self._changed.notify_all()


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
