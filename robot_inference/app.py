"""The robot's HTTP surface; routes only translate HTTP into calls of the pipeline."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import onnxruntime as ort
from fastapi import Depends, FastAPI, Query, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from common.auth import passes
from common.image_request import INFER_OPTIONS, image_request_body, read_image_request
from common.results import InferenceResult
from common.runtime_app import create_runtime_app
from common.service_api import DeploymentInfo, ServiceStatus, binary_response, wants_binary
from common.sessions import options_in_force
from robot_inference.edge_fleet import EdgeFleet, EdgeStatus
from robot_inference.link_probe import probe_link_router
from robot_inference.pipeline import RobotPipeline, parse_mode
from robot_inference.settings import EdgeChannel, EdgeProtocol, RobotSettings
from robot_inference.stream.metrics import StreamMetrics
from robot_inference.stream.router import results_router, source_runner, stream_router
from robot_inference.stream.source import ResultHub


class RobotHealth(ServiceStatus):
    active_split_id: str | None
    deployed: list[DeploymentInfo]
    available_providers: list[str]
    provider_options: dict[str, dict[str, str]] = Field(
        description="the options of each provider in use here (TensorRT precision, DLA core, caches)"
    )
    edge_url: str = Field(description="the edge frames go to now")
    edges: list[EdgeStatus] = Field(description="every edge of ROBOT_EDGE_URL, in the robot's view")
    edge_channel: EdgeChannel
    edge_protocol: EdgeProtocol
    edge: dict[str, Any] | None
    source: str | None = Field(None, description="ROBOT_SOURCE: the camera this robot streams by itself, if any")
    source_error: str | None = Field(None, description="why that camera is not streaming now")


def create_app(settings: RobotSettings | None = None) -> FastAPI:
    settings = settings or RobotSettings()
    edge = EdgeFleet(
        settings.edge_urls(),
        settings.edge_timeout_s,
        settings.edge_token,
        settings.edge_channel,
        settings.edge_protocol,
    )
    hub = ResultHub()
    camera: Callable[[], Coroutine[Any, Any, None]] | None = None  # set below, once the pipeline exists

    async def run_camera() -> None:
        if camera is not None:
            await camera()

    runtime = create_runtime_app(
        settings,
        service="robot",
        part="head",
        title="Robot inference",
        description="Runs the head of a split, quantizes the features and sends them to the edge.",
        on_shutdown=edge.close,
        background=run_camera,
        codes_in_graph=settings.quantize_in_graph,
    )
    app, deployments, metrics, writes = runtime.app, runtime.deployments, runtime.metrics, runtime.writes
    pipeline = RobotPipeline(deployments, edge, settings.fallback_to_robot)
    stream_metrics = StreamMetrics(metrics)
    app.include_router(probe_link_router(edge, writes))
    app.include_router(stream_router(deployments, pipeline, edge, writes, stream_metrics))
    app.include_router(results_router(hub, settings.source, runtime.reads))
    if settings.source is not None:
        camera = source_runner(
            settings.source,
            settings.source_fps,
            settings.source_options,
            deployments,
            pipeline,
            edge,
            stream_metrics,
            hub,
        )

    @app.post(
        "/api/infer",
        summary="Answer for an image with the deployed split (modes: split, all-robot, all-edge)",
        description="The image as the raw body (`Content-Type: image/jpeg`, the options as query parameters) or "
        "as the multipart field `image` (the options as form fields). For a model of task raw, "
        "`Accept: application/octet-stream` answers in the Open Inference Protocol's binary tensor layout: the "
        "JSON (each tensor's `data` replaced by `parameters.binary_data_size`), then the tensors' little-endian "
        "bytes; `Inference-Header-Content-Length` gives the JSON's length. 406 for other tasks.",
        dependencies=[Depends(writes)],
        openapi_extra=image_request_body(INFER_OPTIONS),
        response_model=InferenceResult,
    )
    async def infer(
        request: Request,
        mode: str | None = Query(None, description=INFER_OPTIONS["mode"]),
        split_id: str | None = Query(None, description=INFER_OPTIONS["split_id"]),
        score_threshold: str | None = Query(None, description=INFER_OPTIONS["score_threshold"]),
        iou_threshold: str | None = Query(None, description=INFER_OPTIONS["iou_threshold"]),
        max_detections: str | None = Query(None, description=INFER_OPTIONS["max_detections"]),
    ) -> Response:
        upload = await read_image_request(request, settings.max_image_bytes, tuple(INFER_OPTIONS))
        options = upload.detection_options(
            {"score_threshold": score_threshold, "iou_threshold": iou_threshold, "max_detections": max_detections}
        )
        result = await run_in_threadpool(
            pipeline.infer,
            upload.image,
            parse_mode(upload.option("mode", mode)),
            upload.option("split_id", split_id),
            options,
        )
        metrics.observe_stages(result.stages)
        metrics.count_bytes("sent", result.bytes.sent)
        metrics.count_bytes("received", result.bytes.received)
        if wants_binary(request.headers.get("accept")):
            return binary_response(result)
        return Response(result.model_dump_json(), media_type="application/json")

    @app.get("/health")
    async def health(request: Request) -> RobotHealth | ServiceStatus:
        if not await passes(runtime.reads, request):
            return ServiceStatus(status="ok", service="robot")
        return RobotHealth(
            status="ok",
            service="robot",
            active_split_id=deployments.active_id,
            deployed=[DeploymentInfo.of(d) for d in deployments.all()],
            available_providers=ort.get_available_providers(),
            provider_options=options_in_force(runtime.session_options),
            edge_url=edge.base_url,
            edges=edge.status(),
            edge_channel=edge.channel,
            edge_protocol=edge.protocol,
            edge=await run_in_threadpool(edge.health),
            source=settings.source,
            source_error=hub.error,
        )

    return app
