"""The splitter's REST API. Routes translate HTTP into calls of the domain modules and nothing more."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from common.errors import InvalidArgument
from common.image_request import INFER_OPTIONS, image_request_body, read_image_request
from common.manifest import SplitManifest
from common.postprocess import Prediction
from common.results import InferenceResult
from common.service_api import read_upload
from model_splitter.bundle_zip import bundle_zip
from model_splitter.context import SplitterContext
from model_splitter.intake import classification_architectures, parse_input_shape
from model_splitter.models_service import register_torchvision, register_upload
from model_splitter.schemas import ModelRecord, ModelSummary, SplitPoint, SplitRequest
from model_splitter.split_service import create_split

ONNX_MEDIA_TYPE = "application/octet-stream"


class SplitterInferenceResult(InferenceResult):
    reference: list[Prediction]
    agrees_with_reference: bool


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
        file: UploadFile | None = File(None, description="ONNX, TorchScript (torch.jit.save) or torch.export .pt2"),
        arch: str | None = Form(None, description="a torchvision classification architecture, e.g. resnet18"),
        weights: UploadFile | None = File(None, description="state_dict for arch: .pth (weights_only) or .safetensors"),
        input_shape: str | None = Form(None, description="e.g. 1,3,224,224 (the default)"),
        name: str | None = Form(None),
    ) -> ModelRecord:
        shape = parse_input_shape(input_shape)
        if file is not None and file.filename:
            data = await read_upload(file, settings.max_model_bytes, "model file")
            return await run_in_threadpool(
                register_upload, registry, data, file.filename, shape, name, settings.allow_pickle
            )
        if arch:
            weight_bytes = None
            weight_name = None
            if weights is not None and weights.filename:
                weight_bytes = await read_upload(weights, settings.max_model_bytes, "weights file")
                weight_name = weights.filename
            return await run_in_threadpool(register_torchvision, registry, arch, weight_bytes, weight_name, shape, name)
        raise InvalidArgument("send a model file in the field 'file', or a torchvision architecture name in 'arch'")

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
    async def deploy(split_id: str) -> dict[str, Any]:
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
    ) -> SplitterInferenceResult:
        upload = await read_image_request(request, settings.max_image_bytes, tuple(INFER_OPTIONS))
        data = upload.image
        result = await run_in_threadpool(
            context.peers.infer, data, upload.option("mode", mode), upload.option("split_id", split_id)
        )
        reference = await run_in_threadpool(context.reference.predict, result.split_id, data)
        return SplitterInferenceResult(
            **result.model_dump(),
            reference=reference,
            agrees_with_reference=bool(reference) and reference[0].index == result.predictions[0].index,
        )

    @router.get("/architectures", tags=["models"], summary="torchvision classification architectures by name")
    async def architectures() -> list[str]:
        return classification_architectures()

    return router
