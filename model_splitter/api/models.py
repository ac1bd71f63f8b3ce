"""The splitter's REST API. Routes translate HTTP into calls of the domain modules and nothing more."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from common.image_request import INFER_OPTIONS, image_request_body, read_image_request
from common.manifest import SplitManifest
from common.postprocess import Answer, Prediction
from common.postprocess.agreement import agrees
from common.results import InferenceResult
from model_splitter.api.registration import registration_form
from model_splitter.context import SplitterContext
from model_splitter.records import ModelRecord, ModelSummary, SplitPoint, SplitRequest, no_progress
from model_splitter.services.models import (
    RegistrationRequest,
    architecture_list,
    register_dynamic_batch,
    registration_of,
)
from model_splitter.services.peers import PeerDeployment
from model_splitter.services.splits import create_split
from model_splitter.store.bundle_zip import bundle_zip
from model_splitter.store.kserve_manifest import KServeOptions, inference_service_json
from model_splitter.store.registry import HEAD_CODES_FILE, TAIL_CODES_FILE
from model_splitter.store.triton_repository import TailInputs, TritonOptions, triton_repository_zip

ONNX_MEDIA_TYPE = "application/octet-stream"


class SplitterInferenceResult(InferenceResult):
    reference_answer: Answer = Field(description="the unsplit float model's answer, run on the splitter")
    reference: list[Prediction] = Field(description="classification: the reference's top-k (else empty)")
    agrees_with_reference: bool = Field(
        description="classification: the same top-1; detection: every reference box found again (same class, "
        "IoU >= 0.5) and no other; segmentation: >= 95 % of pixels the same class; raw: cosine >= 0.99"
    )


class ArchitectureView(BaseModel):
    name: str
    family: Literal["classification", "segmentation", "detection"]


class DeletedModel(BaseModel):
    id: str
    deleted_splits: list[str]


def api_router(context: SplitterContext) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(context.read_guard)])
    writes = [Depends(context.write_guard)]
    registry = context.registry
    settings = context.settings

    @router.post(
        "/models",
        status_code=201,
        tags=["models"],
        summary="Register a model (upload or torchvision name)",
        dependencies=writes,
    )
    async def register_model(
        request: RegistrationRequest = Depends(registration_form(settings.max_model_bytes)),
    ) -> ModelRecord:
        registration = registration_of(registry, request, settings.allow_pickle)
        return await run_in_threadpool(registration, no_progress)

    @router.get("/models", tags=["models"])
    async def list_models() -> list[ModelSummary]:
        return [ModelSummary.of(record) for record in registry.list_models()]

    @router.get("/models/{model_id}", tags=["models"])
    async def get_model(model_id: str) -> ModelRecord:
        return registry.get_model(model_id)

    @router.delete(
        "/models/{model_id}", tags=["models"], summary="Delete a model and the splits cut from it", dependencies=writes
    )
    async def delete_model(model_id: str) -> DeletedModel:
        removed = await run_in_threadpool(registry.delete_model, model_id)
        context.reference.forget(model_id)
        return DeletedModel(id=model_id, deleted_splits=removed)

    @router.get("/models/{model_id}/split-points", tags=["models"])
    async def split_points(model_id: str) -> list[SplitPoint]:
        return registry.get_model(model_id).split_points

    @router.get("/models/{model_id}/model.onnx", tags=["models"], response_class=FileResponse)
    async def model_onnx(model_id: str) -> FileResponse:
        return FileResponse(registry.model_onnx_path(model_id), media_type=ONNX_MEDIA_TYPE, filename="model.onnx")

    @router.get("/models/{model_id}/splits", tags=["splits"])
    async def model_splits(model_id: str) -> list[SplitManifest]:
        registry.get_model(model_id)
        return [m for m in registry.list_splits() if m.model_id == model_id]

    @router.post(
        "/models/{model_id}/dynamic-batch",
        status_code=201,
        tags=["models"],
        summary="Register a fixed-batch model again with a dynamic batch axis, if it verifiably answers the same",
        dependencies=writes,
    )
    async def dynamic_batch(model_id: str) -> ModelRecord:
        return await run_in_threadpool(register_dynamic_batch, registry, model_id)

    @router.post(
        "/models/{model_id}/splits",
        status_code=201,
        tags=["splits"],
        summary="Cut the model into a split",
        dependencies=writes,
    )
    async def new_split(model_id: str, request: SplitRequest) -> SplitManifest:
        return await run_in_threadpool(create_split, registry, model_id, request)

    @router.get("/splits/{split_id}", tags=["splits"], summary="The split's manifest")
    async def get_split(split_id: str) -> SplitManifest:
        return registry.get_split(split_id)

    @router.get("/splits/{split_id}/head.onnx", tags=["splits"], response_class=FileResponse)
    async def head_onnx(split_id: str) -> FileResponse:
        return FileResponse(
            registry.split_file(split_id, "head.onnx"), media_type=ONNX_MEDIA_TYPE, filename="head.onnx"
        )

    @router.get("/splits/{split_id}/tail.onnx", tags=["splits"], response_class=FileResponse)
    async def tail_onnx(split_id: str) -> FileResponse:
        return FileResponse(
            registry.split_file(split_id, "tail.onnx"), media_type=ONNX_MEDIA_TYPE, filename="tail.onnx"
        )

    @router.get(
        "/splits/{split_id}/{part}_codes.onnx",
        tags=["splits"],
        response_class=FileResponse,
        summary="head: the head with the quantizer inside (outputs: the packed uint8 codes <cut>.codes); tail: the "
        "tail with the dequantizer inside (inputs: those codes)",
    )
    async def codes_onnx(split_id: str, part: Literal["head", "tail"]) -> FileResponse:
        name = HEAD_CODES_FILE if part == "head" else TAIL_CODES_FILE
        return FileResponse(registry.code_graph_file(split_id, name), media_type=ONNX_MEDIA_TYPE, filename=name)

    @router.get(
        "/splits/{split_id}/triton.zip",
        tags=["splits"],
        response_class=Response,
        summary="The tail as a Triton model repository: <name>/1/model.onnx and <name>/config.pbtxt",
    )
    async def triton_zip(
        split_id: str,
        max_batch_size: int = Query(16, ge=1, le=1024, description="Triton's max_batch_size (batching tails)"),
        max_queue_delay_us: int = Query(2000, ge=0, le=1_000_000, description="the dynamic batcher's wait"),
        tensorrt: bool = Query(False, description="ONNX Runtime's TensorRT accelerator on Triton's GPU"),
        fp16: bool = Query(True, description="with tensorrt: FP16 precision"),
        inputs: TailInputs | None = Query(
            None,
            description="codes: the tail takes the packed uint8 codes; features: float32 cut tensors "
            "(default: codes where the split has them)",
        ),
    ) -> Response:
        options = TritonOptions(max_batch_size, max_queue_delay_us, tensorrt, fp16, inputs)
        name, data = await run_in_threadpool(triton_repository_zip, registry, split_id, options)
        headers = {"content-disposition": f'attachment; filename="{name}-triton.zip"'}
        return Response(data, media_type="application/zip", headers=headers)

    @router.get(
        "/splits/{split_id}/kserve.json",
        tags=["splits"],
        response_class=Response,
        summary="A KServe InferenceService (Triton runtime) serving the tail from the unzipped triton.zip",
    )
    async def kserve_json(
        split_id: str,
        storage_uri: str = Query(..., description="where the unzipped triton.zip lies (s3://, gs://, pvc://, ...)"),
        gpu: bool = Query(True, description="ask for one NVIDIA GPU per replica"),
        min_replicas: int = Query(1, ge=0, le=1000),
        max_replicas: int = Query(1, ge=1, le=1000),
    ) -> Response:
        options = KServeOptions(storage_uri, gpu, min_replicas, max_replicas)
        text = inference_service_json(registry.get_split(split_id), options)
        return Response(text, media_type="application/json")

    @router.get("/splits/{split_id}/bundle.zip", tags=["splits"], response_class=Response)
    async def split_bundle(split_id: str) -> Response:
        data = await run_in_threadpool(bundle_zip, registry, split_id)
        headers = {"content-disposition": f'attachment; filename="split-{split_id[:12]}.zip"'}
        return Response(data, media_type="application/zip", headers=headers)

    @router.post(
        "/splits/{split_id}/deploy",
        tags=["splits"],
        summary="Deploy to the configured edge, then robot",
        dependencies=writes,
    )
    async def deploy(split_id: str) -> PeerDeployment:
        registry.get_split(split_id)
        return await run_in_threadpool(context.peers.deploy, split_id)

    @router.post(
        "/infer",
        tags=["inference"],
        summary="Run an image through robot and edge, beside the reference",
        description="The image as the raw body (`Content-Type: image/jpeg`, the options as query parameters) or "
        "as the multipart field `image` (the options as form fields).",
        dependencies=writes,
        openapi_extra=image_request_body(INFER_OPTIONS),
        response_model=SplitterInferenceResult,
    )
    async def infer(
        request: Request,
        mode: str | None = Query(None, description=INFER_OPTIONS["mode"]),
        split_id: str | None = Query(None, description=INFER_OPTIONS["split_id"]),
        score_threshold: str | None = Query(None, description=INFER_OPTIONS["score_threshold"]),
        iou_threshold: str | None = Query(None, description=INFER_OPTIONS["iou_threshold"]),
        max_detections: str | None = Query(None, description=INFER_OPTIONS["max_detections"]),
    ) -> SplitterInferenceResult:
        upload = await read_image_request(request, settings.max_image_bytes, tuple(INFER_OPTIONS))
        options = upload.detection_options(
            {"score_threshold": score_threshold, "iou_threshold": iou_threshold, "max_detections": max_detections}
        )
        data = upload.image
        result = await run_in_threadpool(
            context.peers.infer, data, upload.option("mode", mode), upload.option("split_id", split_id), options
        )
        reference = await run_in_threadpool(context.reference.answer, result.split_id, data, options)
        return SplitterInferenceResult(
            **result.model_dump(),
            reference_answer=reference,
            reference=reference.predictions,
            agrees_with_reference=agrees(reference, result.answer),
        )

    @router.get(
        "/models/{model_id}/labels",
        tags=["models"],
        summary="The model's class names by class id (null when it has none)",
    )
    async def labels(model_id: str) -> list[str] | None:
        return registry.model_labels(model_id)

    @router.get(
        "/architectures",
        tags=["models"],
        summary="torchvision architectures by name, with their family (classification, segmentation, detection)",
    )
    async def architectures() -> list[ArchitectureView]:
        return [ArchitectureView(name=a.name, family=a.family) for a in architecture_list()]

    return router
