"""Registration as a background job (for the web UI's progress display), and the names of the sample photos.

``POST /api/model-jobs`` takes the same multipart fields as ``POST /api/models`` and answers 202 at once with a job
id; ``GET /api/model-jobs/{id}`` tells the state, the stage in words, and the model id or the error. The routes only
translate HTTP into calls of ``services.models`` through ``store.jobs.JobTable``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

from model_splitter.api.registration import registration_form
from model_splitter.context import SplitterContext
from model_splitter.services.models import RegistrationRequest, registration_of
from model_splitter.store.jobs import Job, JobState, JobTable
from model_splitter.store.samples import available_samples


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
        response: Response, request: RegistrationRequest = Depends(registration_form(settings.max_model_bytes))
    ) -> JobView:
        job = table.submit(registration_of(registry, request, settings.allow_pickle))
        response.headers["location"] = f"/api/model-jobs/{job.id}"
        return JobView.of(job)

    @router.get("/model-jobs/{job_id}", tags=["models"], summary="A registration job: state, stage, model or error")
    async def get_model_job(job_id: str) -> JobView:
        return JobView.of(table.get(job_id))

    @router.get("/samples", tags=["inference"], summary="Names of the bundled sample photos (served at /samples/)")
    async def samples() -> list[str]:
        return available_samples()

    return router
