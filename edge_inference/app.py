"""The edge's HTTP surface; every route only translates HTTP into calls of the pipeline."""

from __future__ import annotations

import onnxruntime as ort
from fastapi import Depends, FastAPI, Query, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from common.auth import passes
from common.postprocess.answers import DETECTION_OPTIONS, parse_detection_options
from common.profile_api import probe_router
from common.results import EdgeResult
from common.runtime_app import create_runtime_app
from common.service_api import DeploymentInfo, ServiceStatus, read_limited
from common.sessions import options_in_force
from edge_inference.batcher import TailBatcher, deadline_from
from edge_inference.frame_socket import frame_socket_router
from edge_inference.oip import oip_router
from edge_inference.pipeline import FrameLimits, infer_frame
from edge_inference.settings import EdgeSettings

FRAME_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class EdgeHealth(ServiceStatus):
    active_split_id: str | None
    deployed: list[DeploymentInfo]
    available_providers: list[str]
    provider_options: dict[str, dict[str, str]] = Field(
        description="the options of each provider in use here (TensorRT precision, DLA core, caches)"
    )


def create_app(settings: EdgeSettings | None = None) -> FastAPI:
    settings = settings or EdgeSettings()
    runtime = create_runtime_app(
        settings,
        service="edge",
        part="tail",
        title="Edge inference",
        description="Runs the tails of deployed splits on frames of quantized features sent by robots.",
    )
    app, deployments, metrics, writes = runtime.app, runtime.deployments, runtime.metrics, runtime.writes
    limits = FrameLimits(max_bytes=settings.max_frame_bytes, max_batch=settings.max_batch)
    batcher = TailBatcher(settings.batch_window_ms / 1000.0, settings.batch_max_rows, settings.batch_queue)
    app.include_router(probe_router(settings.max_frame_bytes, writes))
    app.include_router(frame_socket_router(deployments, metrics, writes, limits, batcher))
    app.include_router(oip_router(deployments, runtime.reads, writes, settings.max_frame_bytes, batcher))

    @app.post(
        "/api/infer",
        summary="Run the tail on one wire frame (application/octet-stream, see docs/wire-format.md)",
        description="`X-Deadline-Ms`: how many milliseconds from its arrival the frame's answer is still of use; "
        "a frame still waiting for its tail after that is answered 504 without running.",
        openapi_extra=FRAME_BODY,
        dependencies=[Depends(writes)],
        response_model=EdgeResult,
    )
    async def infer(
        request: Request,
        score_threshold: str | None = Query(None, description=DETECTION_OPTIONS["score_threshold"]),
        iou_threshold: str | None = Query(None, description=DETECTION_OPTIONS["iou_threshold"]),
        max_detections: str | None = Query(None, description=DETECTION_OPTIONS["max_detections"]),
    ) -> Response:
        options = parse_detection_options(
            {"score_threshold": score_threshold, "iou_threshold": iou_threshold, "max_detections": max_detections}
        )
        deadline = deadline_from(request)
        data = await read_limited(request, settings.max_frame_bytes, "frame")
        metrics.count_bytes("received", len(data))
        result = await run_in_threadpool(infer_frame, deployments, data, limits, batcher, options, deadline)
        metrics.observe_stages(result.stages)
        # Serialized here so that the bytes sent back are counted exactly (the robot counts what it receives).
        body = result.model_dump_json().encode()
        metrics.count_bytes("sent", len(body))
        return Response(body, media_type="application/json")

    @app.get("/health")
    async def health(request: Request) -> EdgeHealth | ServiceStatus:
        if not await passes(runtime.reads, request):
            return ServiceStatus(status="ok", service="edge")
        return EdgeHealth(
            status="ok",
            service="edge",
            active_split_id=deployments.active_id,
            deployed=[DeploymentInfo.of(d) for d in deployments.all()],
            available_providers=ort.get_available_providers(),
            provider_options=options_in_force(runtime.session_options),
        )

    return app
