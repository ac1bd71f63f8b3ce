"""``/api/frames``: the persistent WebSocket a robot keeps open to its edge, one wire frame per message.

``POST /api/infer`` takes the same frames, but every request then goes through an HTTP client, the request
parser, the router and the dependency resolver; on the 2-vCPU benchmark VM that costs about a millisecond more
per frame than a message on an open socket, on a CPU whose caches went cold while the robot computed. Robots
use this socket by default (``ROBOT_EDGE_CHANNEL``).

Protocol (docs/wire-format.md): the robot sends a binary message holding one frame; the edge answers each with
either a binary message, the EdgeResult as UTF-8 JSON, or a text message, an error as JSON
``{"status": <HTTP status>, "error": ..., "detail": ...}`` (the same words POST /api/infer would answer with).
The connection stays open after an error. A handshake without the edge's token is refused with 401.
"""

from __future__ import annotations

import json
import logging
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from common.auth import Guard
from common.deployments import DeploymentSet
from common.errors import InvalidFrame, PayloadTooLarge, SplitComputingError, Unauthorized
from common.observability import Metrics, request_id_var
from common.results import EdgeResult
from common.service_api import refuse_handshake
from edge_inference.batcher import TailBatcher
from edge_inference.pipeline import FrameLimits, infer_frame

FRAMES_PATH = "/api/frames"
METHOD = "WS"
logger = logging.getLogger(__name__)


def frame_socket_router(
    deployments: DeploymentSet, metrics: Metrics, writes: Guard, limits: FrameLimits, batcher: TailBatcher
) -> APIRouter:
    router = APIRouter()

    @router.websocket(FRAMES_PATH)
    async def frames(websocket: WebSocket) -> None:
        try:
            await writes(websocket)
        except Unauthorized as exc:
            await refuse_handshake(websocket, exc)
            return
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await _answer(websocket, message.get("bytes"), deployments, metrics, limits, batcher)
        except WebSocketDisconnect:
            return

    return router


async def _answer(
    websocket: WebSocket,
    data: bytes | None,
    deployments: DeploymentSet,
    metrics: Metrics,
    limits: FrameLimits,
    batcher: TailBatcher,
) -> None:
    start = time.perf_counter()
    try:
        if data is None:
            raise InvalidFrame("frames travel as binary WebSocket messages, this one was text")
        if len(data) > limits.max_bytes:
            raise PayloadTooLarge(
                f"the frame is {len(data):,} bytes; this service accepts at most {limits.max_bytes:,}"
            )
        metrics.count_bytes("received", len(data))
        result: EdgeResult = await run_in_threadpool(infer_frame, deployments, data, limits, batcher)
    except SplitComputingError as exc:
        reply = json.dumps({"status": exc.status_code, **exc.to_dict()})
        await websocket.send_text(reply)
        metrics.count_bytes("sent", len(reply.encode()))
        metrics.record_request(METHOD, FRAMES_PATH, FRAMES_PATH, exc.status_code, start)
        return
    body = result.model_dump_json().encode()
    await websocket.send_bytes(body)
    metrics.observe_stages(result.stages)
    metrics.count_bytes("sent", len(body))
    # The frame carried the robot's request id: this frame's log line carries it too.
    token = request_id_var.set(result.request_id)
    try:
        metrics.record_request(METHOD, FRAMES_PATH, FRAMES_PATH, 200, start)
    finally:
        request_id_var.reset(token)
