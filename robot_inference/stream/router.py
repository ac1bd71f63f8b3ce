"""``WS /api/stream``: a camera stream through the robot (protocol in docs/streams.md)."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from common.auth import Guard
from common.deployments import DeploymentSet
from common.errors import InvalidArgument, SplitComputingError
from common.service_api import refuse_handshake
from robot_inference.edge_client import EdgeClient
from robot_inference.pipeline import RobotPipeline
from robot_inference.stream.controller import Controller, LinkEstimate, choices_for
from robot_inference.stream.metrics import StreamMetrics
from robot_inference.stream.options import parse_options
from robot_inference.stream.session import StreamSession

STREAM_PATH = "/api/stream"
RTT_PINGS = 3


def _round_trip_ms(edge: EdgeClient) -> float | None:
    """The quickest of a few empty probes to the edge; None when the edge cannot be reached now."""
    samples = []
    with contextlib.suppress(SplitComputingError):
        for _ in range(RTT_PINGS):
            samples.append(edge.probe(b"")[0])
    return min(samples) if samples else None


def stream_router(
    deployments: DeploymentSet, pipeline: RobotPipeline, edge: EdgeClient, writes: Guard, metrics: StreamMetrics
) -> APIRouter:
    router = APIRouter()

    @router.websocket(STREAM_PATH)
    async def stream(websocket: WebSocket) -> None:
        try:
            await writes(websocket)
            options = parse_options(dict(websocket.query_params))
            deployment = deployments.get(options.split_id)
            if options.mode == "split" and options.bits is not None:
                widths = deployment.manifest.quantization.widths()
                if options.bits not in widths:
                    raise InvalidArgument(
                        f"split {deployment.manifest.id} travels at {', '.join(map(str, widths))} bits, "
                        f"not {options.bits}: create it with alternatives to stream at more widths"
                    )
        except SplitComputingError as exc:
            await refuse_handshake(websocket, exc)
            return
        options = options.model_copy(update={"split_id": deployment.manifest.id})
        choices = choices_for(deployments.all(), deployment.manifest.model_id)
        link = LinkEstimate(rtt_ms=await run_in_threadpool(_round_trip_ms, edge))
        controller = Controller(choices, options.deadline_ms, link)
        await websocket.accept()
        await StreamSession(websocket, pipeline, controller, options, metrics).run()

    return router
