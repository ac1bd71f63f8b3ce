"""One camera stream (a client's WebSocket, or the robot's own camera): frames pipelined through head, link and
tail, answered in order.

Three tasks share the session. The receiver numbers each arriving frame (from 0) and queues it; a full queue
drops its oldest frame (a robot wants the newest answer) or the arriving one, as the options say, and the frame's
notice is ``dropped``. The worker takes the newest waiting frame as soon as fewer than ``in_flight`` frames are
being worked on, asks the controller how to answer it, runs the robot's part (decode, preprocess, head, quantize)
on the session's one compute thread, and hands the frame to the link: with two frames in flight the head of frame
n + 1 runs while frame n is on the link or in the tail. The sender writes one JSON message per frame, in frame
order, whatever order the answers come back in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import WebSocketDisconnect

from common.errors import InvalidArgument, SplitComputingError
from common.observability import request_id_var
from robot_inference.pipeline import Prepared, RobotPipeline
from robot_inference.stream.controller import Choice, Controller, Decision
from robot_inference.stream.frames import frame_image
from robot_inference.stream.metrics import StreamMetrics
from robot_inference.stream.options import StreamOptions, parse_options

logger = logging.getLogger(__name__)


class FrameLink(Protocol):
    """Where frames come from and answers go: a client's WebSocket, or the robot's own camera (``source.py``)."""

    async def receive(self) -> MutableMapping[str, Any]: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(frozen=True)
class _Frame:
    number: int
    data: bytes
    arrived: float


class StreamSession:
    def __init__(
        self,
        link: FrameLink,
        pipeline: RobotPipeline,
        controller: Controller,
        options: StreamOptions,
        metrics: StreamMetrics,
    ) -> None:
        self.link = link
        self.pipeline = pipeline
        self.controller = controller
        self.options = options
        self.metrics = metrics
        self._waiting: deque[_Frame] = deque()
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(1)  # sized in run(), once the options are final
        self._outbox: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._outbox_changed = asyncio.Event()
        self._next = 0
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-head")
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        first = await self.link.receive()
        if first["type"] == "websocket.disconnect":
            return
        pending: bytes | None = first.get("bytes")
        if pending is None:  # a first text message holds the options
            try:
                self.options = parse_options(first.get("text") or "")
            except InvalidArgument as exc:
                await self.link.send_text(json.dumps({"status": "error", "http_status": 400, **exc.to_dict()}))
                await self.link.close(code=1008, reason=exc.message[:120])
                return
            self.controller.deadline_ms = self.options.deadline_ms
        self._slots = asyncio.Semaphore(self.options.in_flight)
        if pending is not None:
            self._arrive(pending)
        receiver = asyncio.create_task(self._receive())
        worker = asyncio.create_task(self._work())
        sender = asyncio.create_task(self._send())
        try:
            await receiver  # the camera hung up (or sent something that ends the stream)
        finally:
            for task in (worker, sender, *self._tasks):
                task.cancel()
            for task in (worker, sender, *self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._compute.shutdown(wait=False, cancel_futures=True)

    # --- receiving -------------------------------------------------------------------------------------------

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.link.receive()
            except WebSocketDisconnect:
                return
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                number = self._ticket()
                refused = InvalidArgument("frames are binary messages; options go in the first message only")
                self._resolve(number, _error(number, refused))
                continue
            self._arrive(data)

    def _arrive(self, data: bytes) -> None:
        frame = _Frame(self._ticket(), data, time.perf_counter())
        self.controller.frame_arrived(frame.arrived * 1e3)
        if len(self._waiting) >= self.options.queue:
            dropped = self._waiting.popleft() if self.options.drop == "oldest" else frame
            self._drop(
                dropped, "a newer frame arrived while it waited" if dropped is not frame else "the queue was full"
            )
            if dropped is frame:
                return
        self._waiting.append(frame)
        self._arrived.set()

    def _ticket(self) -> int:
        number = self._next
        self._next += 1
        self._outbox[number] = asyncio.get_running_loop().create_future()
        self._outbox_changed.set()
        return number

    def _drop(self, frame: _Frame, why: str) -> None:
        self.metrics.frames.labels("dropped").inc()
        self._resolve(frame.number, {"frame": frame.number, "status": "dropped", "reason": why})

    def _resolve(self, number: int, message: dict[str, Any]) -> None:
        future = self._outbox.get(number)
        if future is not None and not future.done():
            future.set_result(message)

    # --- working -----------------------------------------------------------------------------------------------

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            frame = self._waiting.popleft()  # the queue holds at most `queue` frames, oldest first
            decision = self._decide()
            try:
                prepared = await loop.run_in_executor(self._compute, self._prepare, frame, decision.choice)
            except SplitComputingError as exc:
                self._fail(frame, exc)
                continue
            task = asyncio.create_task(self._complete(frame, decision, prepared))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _decide(self) -> Decision:
        options = self.options
        if options.mode == "auto":
            return self.controller.choose()
        wanted = [c for c in self.controller.choices if c.mode == options.mode]
        if options.mode == "split" and options.bits is not None:
            wanted = [c for c in wanted if c.bits == options.bits]
        wanted = [c for c in wanted if c.split_id == options.split_id] or wanted
        # Nothing listed (all-robot without the full model here): the pipeline says why in the frame's answer.
        choice = wanted[0] if wanted else Choice(options.mode, options.split_id or "", options.bits, 0.0)
        return Decision(choice, self.controller.predict(choice), f"fixed by the stream's options: mode {options.mode}")

    def _prepare(self, frame: _Frame, choice: Choice) -> Prepared:
        request_id_var.set(uuid.uuid4().hex)
        return self.pipeline.prepare(frame_image(frame.data), choice.mode, choice.split_id, choice.bits)

    async def _complete(self, frame: _Frame, decision: Decision, prepared: Prepared) -> None:
        try:
            result = await asyncio.to_thread(self.pipeline.complete, prepared)
        except SplitComputingError as exc:
            self._fail(frame, exc)
            return
        self._slots.release()
        answered = time.perf_counter()
        latency_ms = (answered - frame.arrived) * 1e3
        self.controller.observe(decision.choice, result, latency_ms, answered * 1e3)
        met = latency_ms <= self.options.deadline_ms
        link = self.controller.link
        self.metrics.answered(result, latency_ms, met, link)
        self._resolve(
            frame.number,
            {
                "frame": frame.number,
                "status": "ok",
                "latency_ms": round(latency_ms, 3),
                "deadline_ms": self.options.deadline_ms,
                "deadline_met": met,
                "choice": {
                    "mode": decision.choice.mode,
                    "split_id": decision.choice.split_id,
                    "bits": decision.choice.bits,
                    "fidelity": round(decision.choice.fidelity, 4),
                    "predicted_ms": round(decision.predicted_ms, 3),
                    "reason": decision.reason,
                },
                "link": {
                    "bandwidth_mbps": None if link.bandwidth_mbps is None else round(link.bandwidth_mbps, 3),
                    "rtt_ms": None if link.rtt_ms is None else round(link.rtt_ms, 3),
                },
                "result": json.loads(result.model_dump_json()),
            },
        )

    def _fail(self, frame: _Frame, exc: SplitComputingError) -> None:
        self._slots.release()
        self.metrics.frames.labels("error").inc()
        logger.warning("stream frame %d: %s", frame.number, exc.message)
        self._resolve(frame.number, _error(frame.number, exc))

    # --- sending -------------------------------------------------------------------------------------------------

    async def _send(self) -> None:
        number = 0
        while True:
            while number not in self._outbox:
                self._outbox_changed.clear()
                await self._outbox_changed.wait()
            message = await self._outbox[number]
            del self._outbox[number]
            await self.link.send_text(json.dumps(message))
            number += 1


def _error(number: int, exc: SplitComputingError) -> dict[str, Any]:
    return {"frame": number, "status": "error", "http_status": exc.status_code, **exc.to_dict()}
