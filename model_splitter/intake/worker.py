"""Exports run in a worker process: one at a time, and a crash there is that registration's error, not the service's.

torch's exporters keep global state (two exports at once in one process collide), and exporting a large or broken
model can exhaust memory or crash inside torch. Every intake that touches torch runs in one spawned worker process
(``run_intake``), so registrations queue behind each other and all succeed, and when the worker dies (killed for
memory, a segfault) the registration that was running answers a 422 saying so, nothing is stored, and the next
registration starts a fresh worker. ONNX uploads need no torch and take the same road, so that one queue orders
every registration.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import ParamSpec, TypeVar

from common.errors import UnprocessableModel

P = ParamSpec("P")
R = TypeVar("R")


class ExportWorker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def run(self, work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``work(*args, **kwargs)`` in the worker (a module-level function: it is pickled by name)."""
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            pool = self._pool
        try:
            return pool.submit(work, *args, **kwargs).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise UnprocessableModel(
                "the export worker process died while handling this model (out of memory, or a crash inside "
                "torch); nothing was stored, and the next registration starts a fresh worker. A model this large "
                "may need a machine with more memory"
            ) from None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


EXPORTS = ExportWorker()
