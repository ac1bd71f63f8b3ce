"""The splitter service: REST API, web UI and static assets."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from common.auth import passes
from common.docs_ui import install_offline_docs
from common.errors import NotReady
from common.http_errors import install_error_handlers
from common.observability import Metrics, install_observability
from model_splitter.api.calibration import calibration_router
from model_splitter.api.fine_tuning import fine_tuning_router
from model_splitter.api.jobs import job_router
from model_splitter.api.models import api_router
from model_splitter.api.plans import plan_router
from model_splitter.api.stream import stream_router
from model_splitter.context import SplitterContext
from model_splitter.intake.torch_formats import refuse_code_in_torch_loads
from model_splitter.intake.worker import EXPORTS
from model_splitter.settings import SplitterSettings
from model_splitter.web.routes import STATIC_DIR, ui_router


def create_app(settings: SplitterSettings | None = None) -> FastAPI:
    context = SplitterContext.build(settings or SplitterSettings())
    if not context.settings.allow_pickle:
        refuse_code_in_torch_loads()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        context.jobs.close()
        context.peers.close()
        EXPORTS.close()

    app = FastAPI(
        title="Model splitter",
        description="Registers models, finds where they can be cut, creates and deploys splits.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_offline_docs(app)
    app.state.context = context
    install_error_handlers(app)
    install_observability(app, Metrics("splitter"), context.read_guard)
    app.include_router(api_router(context))
    app.include_router(calibration_router(context))
    app.include_router(fine_tuning_router(context))
    app.include_router(job_router(context))
    app.include_router(plan_router(context))
    app.include_router(stream_router(context))
    app.include_router(ui_router(context))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health/live", tags=["service"], summary="Liveness: the process answers (for restarts)")
    async def live() -> dict[str, str]:
        return {"status": "ok", "service": "splitter"}

    @app.get("/health/ready", tags=["service"], summary="Readiness: the registry can be written; 503 otherwise")
    async def ready() -> dict[str, str]:
        if not os.access(context.registry.root, os.W_OK):
            raise NotReady(f"the splitter cannot write its registry at {context.registry.root}: check the volume")
        return {"status": "ready", "service": "splitter"}

    @app.get("/health", tags=["service"])
    async def health(request: Request) -> dict[str, Any]:
        if not await passes(context.read_guard, request):
            return {"status": "ok", "service": "splitter"}
        robots = await run_in_threadpool(context.peers.fleet_health, "robot")
        edges = await run_in_threadpool(context.peers.fleet_health, "edge")
        return {
            "status": "ok",
            "service": "splitter",
            "models": len(context.registry.list_models()),
            "robot": robots[0].health,  # the first of each list: the one inference and planning use
            "edge": edges[0].health,
            "robots": [member.model_dump() for member in robots],
            "edges": [member.model_dump() for member in edges],
        }

    return app
