"""Background model registrations, so that a browser can show progress instead of waiting on one long request.

A job runs ``register_upload`` / ``register_torchvision`` (or any function of a progress callback that returns a
``ModelRecord``) on a small thread pool. The job table remembers each job's state (queued, running, done, failed),
the stage word the registration last reported ("exporting", "verifying", ...), the resulting model id, or the
error's HTTP status and message. Only the most recent ``max_remembered`` jobs are kept; finished jobs are forgotten
first, oldest first.
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

from common.errors import Conflict, NotFound, SplitComputingError
from model_splitter.records import ModelRecord, Progress

logger = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed"]
Registration = Callable[[Progress], ModelRecord]

DEFAULT_WORKERS = 2
DEFAULT_MAX_REMEMBERED = 100
# Registrations waiting or running at once; more are refused (409) rather than queued without bound.
DEFAULT_MAX_PENDING = 16


@dataclass(frozen=True)
class JobError:
    status: int
    code: str
    detail: str


@dataclass(frozen=True)
class Job:
    id: str
    state: JobState
    stage: str
    created_at: float
    updated_at: float
    model_id: str | None = None
    model_name: str | None = None
    error: JobError | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")


class JobTable:
    """A bounded table of registration jobs run on a thread pool; every method is thread-safe."""

    def __init__(
        self,
        workers: int = DEFAULT_WORKERS,
        max_remembered: int = DEFAULT_MAX_REMEMBERED,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        if workers < 1 or not 1 <= max_pending <= max_remembered:
            raise ValueError("a job table needs a worker, and room to remember at least the jobs it lets wait")
        self._max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._max_remembered = max_remembered

    def submit(self, registration: Registration) -> Job:
        now = time.time()
        job = Job(id=uuid.uuid4().hex, state="queued", stage="queued", created_at=now, updated_at=now)
        with self._lock:
            pending = sum(1 for known in self._jobs.values() if not known.finished)
            if pending >= self._max_pending:
                raise Conflict(
                    f"{pending} model registrations are already queued or running; wait for one to finish and try again"
                )
            self._jobs[job.id] = job
            self._forget_old()
        self._executor.submit(self._run, job.id, registration)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(
                f"no registration job {job_id[:40]!r}: it never existed or was forgotten (the splitter remembers "
                f"the last {self._max_remembered} jobs and forgets them on restart); see GET /api/models"
            )
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def close(self) -> None:
        """Stop taking work; queued jobs are cancelled, running ones finish."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- internals ----------------------------------------------------------------------------------------------
    def _update(self, job_id: str, change: Callable[[Job], Job]) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs[job_id] = replace(change(job), updated_at=time.time())

    def _run(self, job_id: str, registration: Registration) -> None:
        self._update(job_id, lambda job: replace(job, state="running", stage="starting"))

        def progress(stage: str) -> None:
            self._update(job_id, lambda job: replace(job, stage=stage))

        try:
            record = registration(progress)
        except SplitComputingError as exc:
            error = JobError(status=exc.status_code, code=exc.code, detail=exc.message)
            self._update(job_id, lambda job: replace(job, state="failed", error=error))
        except Exception as exc:  # a job must always end, and the person must see how
            logger.exception("registration job %s failed", job_id)
            error = JobError(
                status=500,
                code="internal_error",
                detail=f"the registration failed unexpectedly ({type(exc).__name__}: {str(exc)[:300]}); "
                "the splitter's log has the details",
            )
            self._update(job_id, lambda job: replace(job, state="failed", error=error))
        else:
            self._update(
                job_id, lambda job: replace(job, state="done", stage="done", model_id=record.id, model_name=record.name)
            )

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
