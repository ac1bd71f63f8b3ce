"""Running one service under uvicorn with its settings; each package's ``__main__`` calls this."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import uvicorn
from fastapi import FastAPI

from common.observability import configure_logging


class ServiceSettings(Protocol):
    host: str
    port: int
    log_level: str


def serve(settings: ServiceSettings, create_app: Callable[..., FastAPI]) -> None:
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level, log_config=None
    )
