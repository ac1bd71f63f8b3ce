"""``WS /api/stream``: a camera stream through the robot (protocol in docs/streams.md); the robot's own camera
(``ROBOT_SOURCE``) and ``WS /api/stream/results``, where its answers go."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from common.auth import Guard
from common.deployments import Deployment, DeploymentSet
from common.errors import InvalidArgument, SplitComputingError
from common.service_api import refuse_handshake
from robot_inference.edge_fleet import EdgeFleet
from robot_inference.pipeline import RobotPipeline
from robot_inference.stream.controller import Controller, choices_for
from robot_inference.stream.link_estimate import LinkEstimate
from robot_inference.stream.metrics import StreamMetrics
from robot_inference.stream.options import StreamOptions, parse_options
from robot_inference.stream.session import FrameLink, StreamSession
from robot_inference.stream.source import ResultHub, SourceLink, frames_of

STREAM_PATH = "/api/stream"
RESULTS_PATH = "/api/stream/results"
RTT_PINGS = 3
SOURCE_RETRY_S = 5.0
logger = logging.getLogger(__name__)


def _round_trip_ms(edge: EdgeFleet) -> float | None:
    """The quickest of a few empty probes to the edge; None when the edge cannot be reached now."""
    samples = []
    with contextlib.suppress(SplitComputingError):
        for _ in range(RTT_PINGS):
            samples.append(edge.probe(b"")[0])
    return min(samples) if samples else None


def check_stream(options: StreamOptions, deployment: Deployment, edge: EdgeFleet) -> None:
    """Refuse, before the stream starts, what no frame of it could do."""
    manifest = deployment.manifest
    if edge.protocol == "oip" and options.mode in ("auto", "all-edge"):
        raise InvalidArgument(
            f"mode {options.mode} needs the edge's own protocol (link probes, the image to the edge); this robot "
            "speaks the Open Inference Protocol (ROBOT_EDGE_PROTOCOL=oip): stream with mode split or all-robot"
        )
    if options.mode == "split" and options.bits is not None:
        widths = [manifest.quantization.bits] if edge.protocol == "oip" else manifest.quantization.widths()
        if options.bits not in widths:
            raise InvalidArgument(
                f"split {manifest.id} travels at {', '.join(map(str, widths))} bits"
                f"{' over the Open Inference Protocol' if edge.protocol == 'oip' else ''}, not {options.bits}: "
                "create it with alternatives to stream at more widths"
            )


def stream_router(
    deployments: DeploymentSet, pipeline: RobotPipeline, edge: EdgeFleet, writes: Guard, metrics: StreamMetrics
) -> APIRouter:
    router = APIRouter()

    @router.websocket(STREAM_PATH)
    async def stream(websocket: WebSocket) -> None:
        try:
            await writes(websocket)
            options = parse_options(dict(websocket.query_params))
            check_stream(options, deployments.get(options.split_id), edge)
        except SplitComputingError as exc:
            await refuse_handshake(websocket, exc)
            return
        await websocket.accept()
        await run_stream(websocket, options, deployments, pipeline, edge, metrics)

    return router


async def run_stream(
    link: FrameLink,
    options: StreamOptions,
    deployments: DeploymentSet,
    pipeline: RobotPipeline,
    edge: EdgeFleet,
    metrics: StreamMetrics,
) -> None:
    deployment = deployments.get(options.split_id)
    options = options.model_copy(update={"split_id": deployment.manifest.id})
    choices = choices_for(deployments.all(), deployment.manifest.model_id)
    estimate = LinkEstimate(rtt_ms=await run_in_threadpool(_round_trip_ms, edge))
    controller = Controller(choices, options.deadline_ms, estimate)
    await StreamSession(link, pipeline, controller, options, metrics).run()


def results_router(hub: ResultHub, source: str | None, reads: Guard) -> APIRouter:
    router = APIRouter()

    @router.websocket(RESULTS_PATH)
    async def results(websocket: WebSocket) -> None:
        try:
            await reads(websocket)
        except SplitComputingError as exc:
            await refuse_handshake(websocket, exc)
            return
        await websocket.accept()
        queue = hub.subscribe()
        try:
            await websocket.send_json({"status": "subscribed", "source": source, "error": hub.error})
            while True:
                await websocket.send_text(await queue.get())
        except (WebSocketDisconnect, RuntimeError):  # the subscriber left
            return
        finally:
            hub.unsubscribe(queue)

    return router


def source_runner(
    source: str,
    fps: float,
    options_text: str,
    deployments: DeploymentSet,
    pipeline: RobotPipeline,
    edge: EdgeFleet,
    metrics: StreamMetrics,
    hub: ResultHub,
) -> Callable[[], Coroutine[Any, Any, None]]:
    """The robot's own camera, streamed for as long as the service runs (waiting for a split, retrying a source
    that fails, with the reason in ``/health``)."""

    async def run() -> None:
        while True:
            if deployments.active_id is None:
                await asyncio.sleep(1.0)
                continue
            try:
                options = parse_options(dict(parse_qsl(options_text, keep_blank_values=True)))
                check_stream(options, deployments.get(options.split_id), edge)
                await run_stream(SourceLink(frames_of(source), fps, hub), options, deployments, pipeline, edge, metrics)
                hub.error = None
            except SplitComputingError as exc:
                hub.error = exc.message
                logger.error("ROBOT_SOURCE %s: %s", source, exc.message)
            await asyncio.sleep(SOURCE_RETRY_S)

    return run
