"""Long work as background jobs (for the web UI's progress display), and the names of the sample photos.

Each ``POST .../*-jobs`` route takes what its waiting twin takes (``POST /api/models``, ``.../calibrate``,
``.../splits``, ``.../plan``, ``/api/splits/{id}/deploy``, ``.../fine-tune``), checks what can be checked at once
(the model or split exists, the form's values: a 4xx now, not a failed job later), and answers 202 with the job;
``GET /api/jobs/{id}`` tells its state, its stage in words, and then the waiting twin's answer (``result``) or its
error. The routes only translate HTTP into calls of the services through ``store.jobs.JobTable``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from model_splitter.api.calibration import calibration_form
from model_splitter.api.fine_tuning import fine_tune_form
from model_splitter.api.plans import plan_params
from model_splitter.api.registration import registration_form
from model_splitter.context import SplitterContext
from model_splitter.records import SplitRequest
from model_splitter.services.calibration import CalibrationRequest
from model_splitter.services.fine_tuning import FineTuneRequest, check_tunable, fine_tune_split
from model_splitter.services.models import RegistrationRequest, registration_of
from model_splitter.services.plans import PlanParams, PlanService
from model_splitter.services.splits import check_request, create_split, find_split_point
from model_splitter.store.jobs import Job, JobKind, JobState
from model_splitter.store.samples import available_samples

MAX_LISTED_JOBS = 100


class JobErrorView(BaseModel):
    status: int
    code: str
    detail: str


class JobView(BaseModel):
    id: str
    kind: JobKind
    state: JobState
    stage: str
    model_id: str | None
    model_name: str | None
    split_id: str | None = Field(None, description="the split a deployment job deploys, a fine-tuning tunes")
    split_point: str | None = Field(None, description="where a split job cuts")
    result: dict[str, Any] | None = Field(
        None, description="once done: what the waiting route answers (a model, calibration, split, plan, deployment)"
    )
    error: JobErrorView | None
    created_at: str
    elapsed_s: float

    @classmethod
    def of(cls, job: Job) -> JobView:
        error = job.error
        return cls(
            id=job.id,
            kind=job.kind,
            state=job.state,
            stage=job.stage,
            model_id=job.model_id,
            model_name=job.model_name,
            split_id=job.subject if job.kind in ("deployment", "fine-tuning") else None,
            split_point=job.subject if job.kind == "split" else None,
            result=job.result.model_dump(mode="json") if job.result is not None else None,
            error=JobErrorView(status=error.status, code=error.code, detail=error.detail) if error else None,
            created_at=datetime.fromtimestamp(job.created_at, timezone.utc).isoformat(timespec="milliseconds"),
            elapsed_s=round(job.updated_at - job.created_at, 3),
        )


def job_router(context: SplitterContext) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(context.read_guard)])
    writes = [Depends(context.write_guard)]
    table = context.jobs
    registry = context.registry
    settings = context.settings
    plans = PlanService(registry, context.peers)

    def started(job: Job, response: Response) -> JobView:
        response.headers["location"] = f"/api/jobs/{job.id}"
        return JobView.of(job)

    @router.post(
        "/model-jobs",
        status_code=202,
        tags=["models"],
        summary="Register a model in the background; poll the job for progress",
        dependencies=writes,
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

    @router.post(
        "/models/{model_id}/calibration-jobs",
        status_code=202,
        tags=["calibration"],
        summary="Calibrate in the background (the form of POST .../calibrate); poll the job for progress",
        dependencies=writes,
    )
    async def start_calibration_job(
        model_id: str,
        response: Response,
        request: CalibrationRequest = Depends(calibration_form(settings.max_image_bytes)),
    ) -> JobView:
        record = registry.get_model(model_id)
        job = table.submit(
            lambda progress: request.run(registry, model_id, progress), "calibration", record.id, record.name
        )
        return started(job, response)

    @router.post(
        "/models/{model_id}/split-jobs",
        status_code=202,
        tags=["splits"],
        summary="Cut the model into a split in the background (the body of POST .../splits)",
        dependencies=writes,
    )
    async def start_split_job(model_id: str, request: SplitRequest, response: Response) -> JobView:
        check_request(request)
        record = registry.get_model(model_id)
        find_split_point(record, request.split_point)
        job = table.submit(
            lambda progress: create_split(registry, model_id, request, progress),
            "split",
            record.id,
            record.name,
            subject=request.split_point,
        )
        return started(job, response)

    @router.post(
        "/models/{model_id}/plan-jobs",
        status_code=202,
        tags=["planner"],
        summary="Plan in the background (GET .../plan's parameters); with deploy=true also create and deploy the pick",
        dependencies=writes,
    )
    async def start_plan_job(
        model_id: str,
        response: Response,
        params: PlanParams = Depends(plan_params),
        deploy: bool = Query(False, description="then create and deploy the pick, as POST .../plan does"),
    ) -> JobView:
        record = registry.get_model(model_id)
        work = plans.deploy if deploy else plans.plan
        kind: JobKind = "plan-deployment" if deploy else "plan"
        job = table.submit(lambda progress: work(model_id, params, progress), kind, record.id, record.name)
        return started(job, response)

    @router.post(
        "/splits/{split_id}/deploy-jobs",
        status_code=202,
        tags=["splits"],
        summary="Deploy to the edge, then the robot, in the background (a TensorRT engine build takes minutes)",
        dependencies=writes,
    )
    async def start_deploy_job(split_id: str, response: Response) -> JobView:
        manifest = registry.get_split(split_id)
        job = table.submit(
            lambda progress: context.peers.deploy(split_id, progress),
            "deployment",
            manifest.model_id,
            manifest.model_name,
            subject=manifest.id,
        )
        return started(job, response)

    @router.post(
        "/splits/{split_id}/fine-tune-jobs",
        status_code=202,
        tags=["splits"],
        summary="Fine-tune the split's tail in the background (the form of POST .../fine-tune)",
        dependencies=writes,
    )
    async def start_fine_tune_job(
        split_id: str,
        response: Response,
        request: FineTuneRequest = Depends(fine_tune_form(settings.max_image_bytes)),
    ) -> JobView:
        manifest = registry.get_split(split_id)
        check_tunable(manifest)
        job = table.submit(
            lambda progress: fine_tune_split(registry, split_id, request, progress),
            "fine-tuning",
            manifest.model_id,
            manifest.model_name,
            subject=manifest.id,
        )
        return started(job, response)

    @router.get("/jobs", tags=["jobs"], summary="Recent jobs, newest first; filter by model, unfinished only")
    async def list_jobs(
        model_id: str | None = Query(None, max_length=100),
        active: bool = Query(False, description="only jobs still queued or running"),
    ) -> list[JobView]:
        found = [
            job
            for job in reversed(table.list())
            if (model_id is None or job.model_id == model_id) and not (active and job.finished)
        ]
        return [JobView.of(job) for job in found[:MAX_LISTED_JOBS]]

    @router.get("/jobs/{job_id}", tags=["jobs"], summary="A job: state, stage, then its result or error")
    async def get_job(job_id: str) -> JobView:
        return JobView.of(table.get(job_id))

    @router.get("/samples", tags=["inference"], summary="Names of the bundled sample photos (served at /samples/)")
    async def samples() -> list[str]:
        return available_samples()

    return router
