"""Fine-tunings run in a spawned process of their own, one at a time, reporting progress as they go.

Training holds torch and a gigabyte of features for minutes; in its own process it cannot take the splitter's
memory with it, torch's threads leave with it when it ends, and a crash there (killed for memory, a fault inside
torch) is that job's 422 while the service keeps serving. Jobs queue on a lock: two trainings on a few cores would
only slow each other down. The child sends ``("progress", text)`` as it goes, then ``("done", outcome)`` or
``("refused", message)`` for the refusals the job itself makes.
"""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any

from common.errors import SplitComputingError, UnprocessableModel
from model_splitter.records import Progress
from model_splitter.training.tuning_job import TuningJob, TuningOutcome, run_tuning

POLL_S = 0.5


def _child(connection: Connection, job: TuningJob) -> None:
    try:
        outcome = run_tuning(job, lambda text: connection.send(("progress", text)))
        connection.send(("done", outcome))
    except SplitComputingError as exc:
        connection.send(("refused", exc.message))
    except (MemoryError, RuntimeError, ValueError) as exc:  # torch's and numpy's failures on this tail
        connection.send(("refused", f"fine-tuning failed: {type(exc).__name__}: {exc}"))
    finally:
        connection.close()


class TuningWorker:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def run(self, job: TuningJob, progress: Progress) -> TuningOutcome:
        if not self._lock.acquire(blocking=False):
            progress("waiting for the fine-tuning before this one to finish")
            self._lock.acquire()
        try:
            return self._run(job, progress)
        finally:
            self._lock.release()

    def _run(self, job: TuningJob, progress: Progress) -> TuningOutcome:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(child, job), daemon=True)
        progress("starting the training process")
        process.start()
        child.close()
        try:
            while True:
                if parent.poll(POLL_S):
                    try:
                        kind, value = parent.recv()
                    except EOFError:
                        break
                    if kind == "progress":
                        progress(str(value))
                        continue
                    return _answer(kind, value)
                if not process.is_alive() and not parent.poll(0):
                    break
        finally:
            parent.close()
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        raise UnprocessableModel(
            f"the fine-tuning process died (exit code {process.exitcode}: out of memory, or a crash inside torch); "
            "nothing was stored. Fewer steps or a later cut (smaller features) need less memory"
        )


def _answer(kind: str, value: Any) -> TuningOutcome:
    if kind == "done" and isinstance(value, TuningOutcome):
        return value
    raise UnprocessableModel(str(value))


TUNING = TuningWorker()
