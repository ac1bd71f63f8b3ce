"""A sample camera clip streamed through the robot, for the UI's stream page: the splitter plays the camera.

The clip is the bundled photos' held-out variants (``quantize.images``: rotated, zoomed, cropped, blurred,
darkened; 32 frames, cycled) as JPEGs. The splitter opens the robot's ``WS /api/stream`` with the page's options,
sends the frames at the page's rate and hands every answer on, slimmed to what the page charts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from functools import lru_cache
from io import BytesIO
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from common.auth import bearer_header
from common.errors import BadGateway, UpstreamUnavailable
from model_splitter.quantize.images import held_out_images
from model_splitter.store.samples import calibration_photos


class SampleStreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: str = Field("auto", description="auto, split, all-edge or all-robot (as the robot's stream takes it)")
    split_id: str | None = None
    bits: int | None = None
    deadline_ms: float = Field(100.0, gt=0, le=60_000)
    in_flight: int = Field(2, ge=1, le=4)
    fps: float = Field(15.0, gt=0, le=30)
    frames: int = Field(90, ge=1, le=900)

    def robot_query(self) -> str:
        fields = self.model_dump(exclude={"fps", "frames"}, exclude_none=True)
        return "&".join(f"{key}={value}" for key, value in fields.items())


@lru_cache(maxsize=1)
def sample_clip() -> tuple[bytes, ...]:
    frames = []
    for _, image in held_out_images(calibration_photos()):
        buffer = BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
        frames.append(buffer.getvalue())
    return tuple(frames)


def slim(answer: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of one robot answer: numbers to chart and the top answer, not the whole result."""
    out = {key: answer.get(key) for key in ("frame", "status", "latency_ms", "deadline_met", "reason", "detail")}
    if answer.get("status") == "ok":
        result = answer.get("result") or {}
        predictions = result.get("predictions") or []
        out.update(
            choice=answer.get("choice"),
            link=answer.get("link"),
            sent_bytes=(result.get("bytes") or {}).get("sent"),
            top=predictions[0]["label"] if predictions else result.get("answer", {}).get("task"),
        )
    return out


async def play_sample(
    robot_url: str,
    token: SecretStr | None,
    options: SampleStreamOptions,
    emit: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Stream the clip through the robot; ``emit`` gets every answer as it arrives, in frame order."""
    url = robot_url.replace("http://", "ws://").replace("https://", "wss://") + "/api/stream?" + options.robot_query()
    clip = sample_clip()
    try:
        async with connect(url, additional_headers=bearer_header(token), max_size=None, open_timeout=30) as robot:

            async def send() -> None:
                loop = asyncio.get_running_loop()
                start = loop.time()
                for number in range(options.frames):
                    await robot.send(clip[number % len(clip)])
                    await asyncio.sleep(max(0.0, start + (number + 1) / options.fps - loop.time()))

            sender = asyncio.create_task(send())
            try:
                for _ in range(options.frames):
                    await emit(slim(json.loads(await robot.recv())))
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
    except InvalidStatus as exc:
        body = exc.response.body or b""
        try:
            detail = json.loads(body).get("detail", body.decode(errors="replace"))
        except (ValueError, AttributeError):
            detail = body.decode(errors="replace")[:300]
        raise BadGateway(f"the robot refused the stream ({exc.response.status_code}): {detail}") from None
    except (OSError, TimeoutError) as exc:
        raise UpstreamUnavailable(f"the robot at {robot_url} cannot be reached for a stream: {exc}") from None
    except ConnectionClosed as exc:
        raise BadGateway(f"the robot closed the stream: {exc}") from None
