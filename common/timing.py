"""Per-stage wall-clock timings, reported to people as a waterfall."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel


class Stage(BaseModel):
    name: str
    where: str
    ms: float


class StageTimer:
    def __init__(self, where: str) -> None:
        self.where = where
        self.stages: list[Stage] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)

    def add(self, name: str, ms: float, where: str | None = None) -> None:
        self.stages.append(Stage(name=name, where=where or self.where, ms=round(ms, 3)))
