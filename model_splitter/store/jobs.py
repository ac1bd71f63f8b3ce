"""Background work (registering, calibrating, creating a split, planning, deploying), so that a browser can show
progress instead of waiting on one long request.

A job runs a function of a progress callback that returns its result (a ``ModelRecord``, a calibration, a plan, a
deployment: any pydantic model) on a thread pool of its kind: registrations, CPU-heavy calibrations and split
creations (one at a time, they would only share the cores), and deployments and plans (mostly waiting on the robot
and the edge) do not queue behind each other. The job table remembers each job's state (queued, running, done,
failed), the stage the work last reported ("exporting", "measuring features.4 (3/12)", ...), the model it is about,
its result, or the error's HTTP status and message. Only the most recent ``max_remembered`` jobs are kept;
finished jobs are forgotten first, oldest first.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel

from common.errors import Conflict, NotFound, SplitComputingError
from model_splitter.records import ModelRecord, Progress

logger = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed"]
JobKind = Literal["registration", "calibration", "split", "fine-tuning", "plan", "plan-deployment", "deployment"]
Work = Callable[[Progress], BaseModel]

DEFAULT_WORKERS = 2
# Calibration and split creation run ONNX Runtime over every split point: two at once only halve each other's speed.
LANE_WORKERS: dict[JobKind, int] = {
    "calibration": 1,
    "split": 1,
    "fine-tuning": 1,
    "plan": 2,
    "plan-deployment": 1,
    "deployment": 2,
}
DEFAULT_MAX_REMEMBERED = 100
# Jobs waiting or running at once; more are refused (409) rather than queued without bound.
DEFAULT_MAX_PENDING = 16


@dataclass(frozen=True)
class JobError:
    status: int
    code: str
    detail: str


@dataclass(frozen=True)
class Job:
    id: str
    kind: JobKind
    state: JobState
    stage: str
    created_at: float
    updated_at: float
    model_id: str | None = None
    model_name: str | None = None
    subject: str | None = None  # what the job works on within the model: a split id, a split point
    result: BaseModel | None = None
    error: JobError | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")


class JobTable:
    """A bounded table of jobs, each run on the thread pool of its kind; every method is thread-safe."""

    def __init__(
        self,
        workers: int = DEFAULT_WORKERS,
        max_remembered: int = DEFAULT_MAX_REMEMBERED,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        if workers < 1 or not 1 <= max_pending <= max_remembered:
            raise ValueError("a job table needs a worker, and room to remember at least the jobs it lets wait")
        self._max_pending = max_pending
        sizes: dict[JobKind, int] = {"registration": workers, **LANE_WORKERS}
        self._executors = {
            kind: ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"{kind}-job") for kind, size in sizes.items()
        }
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._max_remembered = max_remembered

    def submit(
        self,
        work: Work,
        kind: JobKind = "registration",
        model_id: str | None = None,
        model_name: str | None = None,
        subject: str | None = None,
    ) -> Job:
        now = time.time()
        job = Job(
            id=uuid.uuid4().hex,
            kind=kind,
            state="queued",
            stage="queued",
            created_at=now,
            updated_at=now,
            model_id=model_id,
            model_name=model_name,
            subject=subject,
        )
        with self._lock:
            pending = sum(1 for known in self._jobs.values() if not known.finished)
            if pending >= self._max_pending:
                raise Conflict(
                    f"{pending} jobs (registrations, calibrations, plans, deployments) are already queued or running; "
                    "wait for one to finish and try again"
                )
            self._jobs[job.id] = job
            self._forget_old()
        self._executors[kind].submit(self._run, job.id, work)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(
                f"no job {job_id[:40]!r}: it never existed or was forgotten (the splitter remembers the last "
                f"{self._max_remembered} jobs and forgets them on restart); GET /api/jobs lists those it knows"
            )
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def close(self) -> None:
        """Stop taking work; queued jobs are cancelled, running ones finish."""
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)

    # --- internals ----------------------------------------------------------------------------------------------
    def _update(self, job_id: str, change: Callable[[Job], Job]) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs[job_id] = replace(change(job), updated_at=time.time())

    def _run(self, job_id: str, work: Work) -> None:
        self._update(job_id, lambda job: replace(job, state="running", stage="starting"))

        def progress(stage: str) -> None:
            self._update(job_id, lambda job: replace(job, stage=stage))

        try:
            result = work(progress)
        except SplitComputingError as exc:
            error = JobError(status=exc.status_code, code=exc.code, detail=exc.message)
            self._update(job_id, lambda job: replace(job, state="failed", error=error))
        except Exception as exc:  # a job must always end, and the person must see how
            logger.exception("job %s failed", job_id)
            error = JobError(
                status=500,
                code="internal_error",
                detail=f"the job failed unexpectedly ({type(exc).__name__}: {str(exc)[:300]}); "
                "the splitter's log has the details",
            )
            self._update(job_id, lambda job: replace(job, state="failed", error=error))
        else:
            self._update(job_id, lambda job: _finished(job, result))

    def _forget_old(self) -> None:
        # Called with the lock held. Finished jobs go first (oldest first); unfinished ones only if nothing else can.
        excess = len(self._jobs) - self._max_remembered
        if excess <= 0:
            return
        finished = [job_id for job_id, job in self._jobs.items() if job.finished]
        for job_id in finished[:excess]:
            del self._jobs[job_id]
        while len(self._jobs) > self._max_remembered:
            self._jobs.popitem(last=False)


def _finished(job: Job, result: BaseModel) -> Job:
    done = replace(job, state="done", stage="done", result=result)
    if isinstance(result, ModelRecord):  # a registration learns its model only now
        return replace(done, model_id=result.id, model_name=result.name)
    return done
