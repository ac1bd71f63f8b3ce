"""A camera on the robot itself (``ROBOT_SOURCE``): frames read here and streamed without a client.

``ROBOT_SOURCE`` is a directory of images or one image file (played in a loop, no extra dependency), or a video
file, a V4L2 device (``/dev/video0``) or a stream URL (``rtsp://...``, ``http://...``), read with OpenCV, an
optional dependency (``pip install opencv-python-headless``; ``pip install splitbot[camera]``). A video file plays
in a loop; a camera or stream is read as it delivers. Frames are paced at ``ROBOT_SOURCE_FPS``. The answers go to
``WS /api/stream/results`` (every subscriber gets every answer from when it subscribed) and into ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import InvalidArgument

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SUBSCRIBER_BACKLOG = 256
logger = logging.getLogger(__name__)


def frames_of(source: str) -> Iterator[bytes]:
    """Messages as a stream client would send them: encoded files, or raw RGB8 frames from OpenCV."""
    path = Path(source)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
        if not files:
            raise InvalidArgument(f"ROBOT_SOURCE {source!r} holds no {', '.join(IMAGE_SUFFIXES)} images")
        images = [file.read_bytes() for file in files]
        while True:
            yield from images
    yield from _video(source, loop=path.is_file())


def _video(source: str, loop: bool) -> Iterator[bytes]:
    try:
        import cv2
    except ImportError:
        raise InvalidArgument(
            f"ROBOT_SOURCE {source!r} is a video, camera or stream: reading it needs OpenCV "
            "(pip install opencv-python-headless); a directory of images needs nothing"
        ) from None
    from robot_inference.stream.frames import raw_frame

    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise InvalidArgument(f"ROBOT_SOURCE {source!r} cannot be opened (OpenCV {cv2.__version__})")
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                if not loop:
                    return
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = capture.read()
                if not ok:
                    return
            yield raw_frame(bgr[:, :, ::-1])
    finally:
        capture.release()


class ResultHub:
    """Fans a source stream's answers out to every ``WS /api/stream/results`` subscriber."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[str]] = set()
        self.error: str | None = None

    def subscribe(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._subscribers.discard(queue)

    def publish(self, text: str) -> None:
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):  # a subscriber that does not read loses answers, not us
                queue.put_nowait(text)


class SourceLink:
    """What a StreamSession reads frames from and writes answers to, for a camera on the robot."""

    def __init__(self, frames: Iterator[bytes], fps: float, hub: ResultHub) -> None:
        self._frames = frames
        self._interval = 1.0 / fps
        self._next = time.monotonic()
        self._hub = hub

    async def receive(self) -> dict[str, Any]:
        delay = self._next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next = max(self._next + self._interval, time.monotonic() - self._interval)
        data = await asyncio.to_thread(next, self._frames, None)
        if data is None:
            return {"type": "websocket.disconnect", "code": 1000}
        return {"type": "websocket.receive", "bytes": data}

    async def send_text(self, data: str) -> None:
        self._hub.publish(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self._hub.publish(json.dumps({"status": "closed", "code": code, "reason": reason}))
