"""The edge's HTTP surface; every route only translates HTTP into calls of the pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import onnxruntime as ort
from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from common.auth import bearer_header, read_guard, token_guard
from common.bundles import BundleStore
from common.deployments import DeploymentSet
from common.docs_ui import install_offline_docs
from common.http_errors import install_error_handlers
from common.observability import Metrics, install_observability
from common.profile_api import probe_router, profile_router
from common.results import EdgeResult
from common.service_api import DeploymentInfo, deployment_router, read_limited
from edge_inference.pipeline import infer_frame
from edge_inference.settings import EdgeSettings

FRAME_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class EdgeHealth(BaseModel):
    status: str
    service: str
    active_split_id: str | None
    deployed: list[DeploymentInfo]
    available_providers: list[str]


def create_app(settings: EdgeSettings | None = None) -> FastAPI:
    settings = settings or EdgeSettings()
    deployments = DeploymentSet(BundleStore(settings.data_dir, "tail"), settings.session_options())
    client = httpx.Client(timeout=settings.fetch_timeout_s, headers=bearer_header(settings.splitter_token))
    metrics = Metrics("edge")
    writes = token_guard(settings.token, "EDGE_TOKEN")
    reads = read_guard(settings.token, "EDGE_TOKEN", settings.protect_reads)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(deployments.restore)
        yield
        client.close()

    app = FastAPI(
        title="Edge inference",
        description="Runs the tails of deployed splits on frames of quantized features sent by robots.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_offline_docs(app)
    install_error_handlers(app)
    install_observability(app, metrics, reads)
    app.include_router(
        deployment_router(deployments, client, settings.splitter_url, writes, reads, settings.max_bundle_bytes)
    )
    app.include_router(
        profile_router(deployments, BundleStore(settings.data_dir, "tail"), settings.session_options(), writes)
    )
    app.include_router(probe_router(settings.max_frame_bytes, writes))

    @app.post(
        "/api/infer",
        summary="Run the tail on one wire frame (application/octet-stream, see docs/wire-format.md)",
        openapi_extra=FRAME_BODY,
        dependencies=[Depends(writes)],
        response_model=EdgeResult,
    )
    async def infer(request: Request) -> Response:
        data = await read_limited(request, settings.max_frame_bytes, "frame")
        metrics.count_bytes("received", len(data))
        result = await run_in_threadpool(infer_frame, deployments, data, settings.max_frame_bytes)
        metrics.observe_stages(result.stages)
        # Serialized here so that the bytes sent back are counted exactly (the robot counts what it receives).
        body = result.model_dump_json().encode()
        metrics.count_bytes("sent", len(body))
        return Response(body, media_type="application/json")

    @app.get("/health")
    async def health() -> EdgeHealth:
        return EdgeHealth(
            status="ok",
            service="edge",
            active_split_id=deployments.active_id,
            deployed=[DeploymentInfo.of(d) for d in deployments.all()],
            available_providers=ort.get_available_providers(),
        )

    return app
