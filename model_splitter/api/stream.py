"""``WS /api/stream/sample``: the stream page's socket; the splitter plays a sample clip through the robot."""

from __future__ import annotations

import json

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from common.errors import InvalidArgument, SplitComputingError
from common.service_api import refuse_handshake
from model_splitter.context import SplitterContext
from model_splitter.services.sample_stream import SampleStreamOptions, play_sample


def stream_router(context: SplitterContext) -> APIRouter:
    router = APIRouter()
    settings = context.settings

    @router.websocket("/api/stream/sample")
    async def sample_stream(websocket: WebSocket) -> None:
        try:
            await context.write_guard(websocket)
        except SplitComputingError as exc:
            await refuse_handshake(websocket, exc)
            return
        # Accepted before the options are read: a browser cannot read a refused handshake's body, a message it can.
        await websocket.accept()

        async def emit(message: dict[str, object]) -> None:
            await websocket.send_text(json.dumps(message))

        try:
            try:
                options = SampleStreamOptions.model_validate(dict(websocket.query_params))
            except ValidationError as exc:
                first = exc.errors()[0]
                raise InvalidArgument(f"stream option {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
            await play_sample(settings.robot_url, settings.robot_token, options, emit)
            await emit({"status": "done", "frames": options.frames})
        except SplitComputingError as exc:
            await emit({"status": "error", "http_status": exc.status_code, **exc.to_dict()})
        except WebSocketDisconnect:
            return
        await websocket.close()

    return router
