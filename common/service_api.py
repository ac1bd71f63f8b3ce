"""HTTP pieces that robot and edge share: bounded body reading, the deployment routes, WebSocket refusals."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx
from fastapi import APIRouter, Depends, File, Request, Response, UploadFile, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as AnyUploadFile

from common.auth import Guard
from common.bundles import fetch_bundle, read_bundle_zip
from common.deployments import Deployment, DeploymentSet
from common.errors import InvalidArgument, NotAcceptable, PayloadTooLarge, SplitComputingError
from common.postprocess.raw import HEADER_LENGTH, binary_answer
from common.results import InferenceResult

MAX_BUNDLE_UPLOAD_BYTES = 2 * 1024**3
logger = logging.getLogger(__name__)


async def read_limited(request: Request, limit: int, what: str) -> bytes:
    """Read a request body, refusing it with 413 as soon as it passes ``limit`` bytes (never buffered whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the {what} is {int(declared):,} bytes; this service accepts at most {limit:,}")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"the {what} is larger than {limit:,} bytes, the most this service accepts")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload(upload: AnyUploadFile, limit: int, what: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the {what} is larger than {limit:,} bytes, the most this service accepts")
    return data


async def read_image_uploads(uploads: Sequence[AnyUploadFile] | None, most: int, limit: int, what: str) -> list[bytes]:
    """The files of a multipart field that a form left empty or filled (a browser sends an empty part when no file
    is chosen): at most ``most`` of them, counted before any is read, each within ``limit`` bytes."""
    files = [upload for upload in uploads or [] if upload.filename]
    if len(files) > most:
        raise InvalidArgument(f"at most {most} {what}s, got {len(files)}")
    return [await read_upload(upload, limit, what) for upload in files]


HEX64 = r"^[0-9a-f]{64}$"


class DeployRequest(BaseModel):
    split_id: str = Field(pattern=HEX64, description="the split to pull from the splitter (64 lowercase hex)")


class ServiceStatus(BaseModel):
    """All ``/health`` tells a caller who may not read (``*_PROTECT_READS`` without the token): that it is up."""

    status: str
    service: str


class DeploymentInfo(BaseModel):
    split_id: str
    model_id: str
    model_name: str
    split_point: str
    bits: int
    provider: str
    full_model_provider: str | None
    weights_trained: bool
    codes_in_graph: bool = Field(False, description="this side quantizes (dequantizes) inside its half's graph")

    @classmethod
    def of(cls, deployment: Deployment) -> DeploymentInfo:
        manifest = deployment.manifest
        return cls(
            split_id=manifest.id,
            model_id=manifest.model_id,
            model_name=manifest.model_name,
            split_point=manifest.split_point,
            bits=manifest.quantization.bits,
            provider=deployment.part.provider,
            full_model_provider=deployment.full.provider if deployment.full else None,
            weights_trained=manifest.weights_trained,
            codes_in_graph=deployment.codes is not None,
        )


def deployment_router(
    deployments: DeploymentSet,
    client: httpx.Client,
    splitter_url: str,
    write_guard: Guard,
    read_guard: Guard,
    max_bundle_bytes: int = MAX_BUNDLE_UPLOAD_BYTES,
) -> APIRouter:
    router = APIRouter(tags=["deployment"])
    part = deployments.part
    writes = [Depends(write_guard)]

    @router.post(
        "/api/deploy",
        summary=f"Pull a split's manifest, {part}.onnx and full model from the splitter",
        dependencies=writes,
    )
    async def deploy(request: DeployRequest) -> DeploymentInfo:
        files = await run_in_threadpool(
            fetch_bundle, client, splitter_url, request.split_id, part, deployments.store, deployments.with_codes
        )
        deployment = await run_in_threadpool(deployments.install, files)
        return DeploymentInfo.of(deployment)

    @router.post(
        "/api/bundles",
        summary="Deploy an uploaded bundle zip (manifest.json, head/tail.onnx, model.onnx)",
        dependencies=writes,
    )
    async def upload_bundle(bundle: UploadFile = File(...)) -> DeploymentInfo:
        data = await read_upload(bundle, max_bundle_bytes, "bundle")
        files = await run_in_threadpool(read_bundle_zip, data, part)
        deployment = await run_in_threadpool(deployments.install, files)
        return DeploymentInfo.of(deployment)

    @router.get("/api/splits", summary="The splits deployed here", dependencies=[Depends(read_guard)])
    async def list_splits() -> list[DeploymentInfo]:
        return [DeploymentInfo.of(d) for d in deployments.all()]

    return router


def wants_binary(accept: str | None) -> bool:
    """Whether the caller asks for the binary tensor layout (``Accept: application/octet-stream``, before JSON)."""
    kinds = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    return "application/octet-stream" in kinds and (
        "application/json" not in kinds or kinds.index("application/octet-stream") < kinds.index("application/json")
    )


def binary_response(result: InferenceResult) -> Response:
    """A raw-task answer in the Open Inference Protocol's binary tensor layout (406 for any other task)."""
    if result.answer.task != "raw":
        raise NotAcceptable(
            f"binary answers carry raw tensors; this split's task is {result.answer.task}: ask for application/json "
            "(or register the model with task raw)"
        )
    body, header_length = binary_answer(result.model_dump(mode="json"))
    return Response(body, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)})


async def refuse_handshake(websocket: WebSocket, exc: SplitComputingError) -> None:
    """Refuse a WebSocket handshake with the error's status and its usual JSON body where the server can answer the
    upgrade with HTTP (uvicorn's websockets implementation can), else close with 1008 and the message."""
    logger.warning("WebSocket %s refused: %s", websocket.url.path, exc.message)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(exc.to_dict(), status_code=exc.status_code))
    else:
        await websocket.close(code=1008, reason=exc.message[:120])
