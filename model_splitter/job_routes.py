"""Registration as a background job (for the web UI's progress display), and the bundled sample photos.

``POST /api/model-jobs`` takes the same multipart fields as ``POST /api/models`` and answers 202 at once with a job
id; ``GET /api/model-jobs/{id}`` tells the state, the stage in words, and the model id or the error. The routes only
translate HTTP into calls of ``models_service`` through ``jobs.JobTable``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel

from common.errors import InvalidArgument, NotFound
from common.service_api import read_upload
from model_splitter.context import SplitterContext
from model_splitter.intake import parse_input_shape
from model_splitter.jobs import Job, JobState, JobTable, Registration
from model_splitter.models_service import register_torchvision, register_upload

SAMPLES_DIR = Path(__file__).resolve().parent / "data" / "samples"
# The only files /samples/ serves: a fixed list, never a path from the client.
SAMPLE_NAMES = ("chelsea.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg", "chelsea.png")
SAMPLE_MEDIA_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}


class JobErrorView(BaseModel):
    status: int
    code: str
    detail: str


class JobView(BaseModel):
    id: str
    state: JobState
    stage: str
    model_id: str | None
    model_name: str | None
    error: JobErrorView | None
    created_at: str
    elapsed_s: float

    @classmethod
    def of(cls, job: Job) -> JobView:
        error = job.error
        return cls(
            id=job.id,
            state=job.state,
            stage=job.stage,
            model_id=job.model_id,
            model_name=job.model_name,
            error=JobErrorView(status=error.status, code=error.code, detail=error.detail) if error else None,
            created_at=datetime.fromtimestamp(job.created_at, timezone.utc).isoformat(timespec="milliseconds"),
            elapsed_s=round(job.updated_at - job.created_at, 3),
        )


def available_samples() -> list[str]:
    return [name for name in SAMPLE_NAMES if (SAMPLES_DIR / name).is_file()]


def sample_response(name: str) -> FileResponse:
    if name not in available_samples():
        raise NotFound(f"no sample photo {name[:60]!r}; GET /api/samples lists them")
    path = SAMPLES_DIR / name
    return FileResponse(path, media_type=SAMPLE_MEDIA_TYPES.get(path.suffix, "application/octet-stream"))


def job_router(context: SplitterContext, jobs: JobTable | None = None) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(context.read_guard)])
    table = jobs or JobTable()
    registry = context.registry
    settings = context.settings

    @router.post(
        "/model-jobs",
        status_code=202,
        tags=["models"],
        summary="Register a model in the background; poll the job for progress",
        dependencies=[Depends(context.write_guard)],
    )
    async def start_model_job(
        response: Response,
        file: UploadFile | None = File(None, description="ONNX, TorchScript (torch.jit.save) or torch.export .pt2"),
        arch: str | None = Form(None, description="a torchvision classification architecture, e.g. resnet18"),
        weights: UploadFile | None = File(None, description="state_dict for arch: .pth (weights_only) or .safetensors"),
        input_shape: str | None = Form(None, description="e.g. 1,3,224,224 (the default)"),
        name: str | None = Form(None),
    ) -> JobView:
        shape = parse_input_shape(input_shape)
        registration: Registration
        if file is not None and file.filename:
            data = await read_upload(file, settings.max_model_bytes, "model file")
            registration = partial(
                register_upload, registry, data, file.filename, shape, name or None, settings.allow_pickle
            )
        elif arch:
            weight_bytes = None
            weight_name = None
            if weights is not None and weights.filename:
                weight_bytes = await read_upload(weights, settings.max_model_bytes, "weights file")
                weight_name = weights.filename
            registration = partial(register_torchvision, registry, arch, weight_bytes, weight_name, shape, name or None)
        else:
            raise InvalidArgument("send a model file in the field 'file', or a torchvision architecture name in 'arch'")
        job = table.submit(lambda progress: registration(progress=progress))
        response.headers["location"] = f"/api/model-jobs/{job.id}"
        return JobView.of(job)

    @router.get("/model-jobs/{job_id}", tags=["models"], summary="A registration job: state, stage, model or error")
    async def get_model_job(job_id: str) -> JobView:
        return JobView.of(table.get(job_id))

    @router.get("/samples", tags=["inference"], summary="Names of the bundled sample photos (served at /samples/)")
    async def samples() -> list[str]:
        return available_samples()

    return router
