"""What robot and edge apps share: deployments restored at start-up, the deploy/bundle/profile routes, token
guards, offline docs, error mapping, logs and metrics. Each service adds only its own inference routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from common.auth import Guard, bearer_header, read_guard, token_guard
from common.bundles import BundleStore, Part
from common.deployments import DeploymentSet
from common.docs_ui import install_offline_docs
from common.errors import NotReady
from common.http_errors import install_error_handlers
from common.observability import Metrics, install_observability
from common.profile_api import profile_router
from common.service_api import ServiceStatus, deployment_router
from common.sessions import SessionOptions
from common.settings import RuntimeSettings


@dataclass
class RuntimeApp:
    app: FastAPI
    deployments: DeploymentSet
    metrics: Metrics
    writes: Guard
    reads: Guard
    session_options: SessionOptions


def create_runtime_app(
    settings: RuntimeSettings,
    *,
    service: str,
    part: Part,
    title: str,
    description: str,
    on_shutdown: Callable[[], None] = lambda: None,
    background: Callable[[], Coroutine[Any, Any, None]] | None = None,
    codes_in_graph: bool = False,
) -> RuntimeApp:
    """``background``: work that runs for the service's lifetime once its bundles are restored (the robot's camera
    source), cancelled at shutdown. ``codes_in_graph``: deploy each split's half with the codes inside too."""
    store = BundleStore(settings.data_dir, part)
    session_options = settings.session_options()
    deployments = DeploymentSet(store, session_options, codes_in_graph)
    fetch_client = httpx.Client(timeout=settings.fetch_timeout_s, headers=bearer_header(settings.splitter_token))
    token_setting = f"{service.upper()}_TOKEN"
    writes = token_guard(settings.token, token_setting)
    reads = read_guard(settings.token, token_setting, settings.protect_reads)
    metrics = Metrics(service)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(deployments.restore)
        task = asyncio.create_task(background()) if background is not None else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        on_shutdown()
        fetch_client.close()

    app = FastAPI(title=title, description=description, lifespan=lifespan, docs_url=None, redoc_url=None)
    install_offline_docs(app)
    install_error_handlers(app)
    install_observability(app, metrics, reads)
    app.include_router(
        deployment_router(deployments, fetch_client, settings.splitter_url, writes, reads, settings.max_bundle_bytes)
    )
    app.include_router(profile_router(deployments, store, session_options, writes))

    @app.get("/health/live", tags=["service"], summary="Liveness: the process answers (for restarts)")
    async def live() -> ServiceStatus:
        return ServiceStatus(status="ok", service=service)

    @app.get(
        "/health/ready",
        tags=["service"],
        summary="Readiness: a split is loaded and its sessions ran once (for load balancers); 503 until then",
    )
    async def ready() -> ServiceStatus:
        if deployments.active_id is None:
            raise NotReady(f"the {service} holds no split yet: deploy one (POST /api/deploy or POST /api/bundles)")
        return ServiceStatus(status="ready", service=service)

    return RuntimeApp(
        app=app, deployments=deployments, metrics=metrics, writes=writes, reads=reads, session_options=session_options
    )
