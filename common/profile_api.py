"""Routes for the planner's measurements: ``POST /api/profile`` (robot and edge) and ``POST /api/probe`` (edge).

See ``common/profiling.py`` for how a model is profiled and ``docs/planner.md`` for how the numbers are used.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from common.auth import Guard
from common.bundles import BundleStore
from common.deployments import Deployment, DeploymentSet
from common.errors import InvalidArgument, NotDeployed, PayloadTooLarge
from common.profiling import (
    ProbeReply,
    ProfileCache,
    ProfileRequest,
    ProfileResult,
    decode_image_argument,
)
from common.sessions import SessionOptions

MAX_SAMPLE_IMAGE_BYTES = 20 * 1024 * 1024
PROBE_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _deployment_for(deployments: DeploymentSet, request: ProfileRequest) -> Deployment:
    if (request.split_id is None) == (request.model_sha256 is None):
        raise InvalidArgument("send exactly one of split_id (a split deployed here) or model_sha256")
    if request.split_id is not None:
        return deployments.get(request.split_id)
    matching = [d for d in deployments.all() if d.manifest.model_sha256 == request.model_sha256]
    if not matching:
        raise NotDeployed(
            f"no split of the model with sha256 {request.model_sha256} is deployed here; deploy one first "
            "(POST /api/deploy with its split_id)"
        )
    return matching[-1]


def profile_router(
    deployments: DeploymentSet, store: BundleStore, options: SessionOptions, write_guard: Guard
) -> APIRouter:
    router = APIRouter(tags=["planner"])
    cache = ProfileCache()

    @router.post(
        "/api/profile",
        summary="Time the full model of a deployed split on this side's provider: whole model, per node, codec",
        dependencies=[Depends(write_guard)],
    )
    async def profile(request: ProfileRequest) -> ProfileResult:
        image = decode_image_argument(request.image_base64)
        if image is not None and len(image) > MAX_SAMPLE_IMAGE_BYTES:
            raise InvalidArgument(f"the sample image is larger than {MAX_SAMPLE_IMAGE_BYTES:,} bytes")
        deployment = _deployment_for(deployments, request)
        manifest = deployment.manifest
        path = store.full_model_path(manifest.model_sha256)
        if deployment.full is None or not path.is_file():
            raise NotDeployed(f"this side does not hold the full model of split {manifest.id}; deploy it again")
        return await run_in_threadpool(cache.profile, manifest, deployment.full, path, options, request, image)

    return router


def probe_router(max_bytes: int, write_guard: Guard) -> APIRouter:
    router = APIRouter(tags=["planner"])

    @router.post(
        "/api/probe",
        summary="Link probe: read an application/octet-stream body and answer its size, nothing else",
        openapi_extra=PROBE_BODY,
        dependencies=[Depends(write_guard)],
    )
    async def probe(request: Request) -> ProbeReply:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise PayloadTooLarge(
                f"the probe body is {int(declared):,} bytes; this service accepts at most {max_bytes:,}"
            )
        received = 0
        async for chunk in request.stream():  # counted, never kept
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLarge(
                    f"the probe body is larger than {max_bytes:,} bytes, the most this service accepts"
                )
        return ProbeReply(received=received)

    return router
