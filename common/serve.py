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


# uvicorn's own default for the largest WebSocket message it takes.
UVICORN_WS_MAX_SIZE = 16 * 1024 * 1024


def serve(
    settings: ServiceSettings, create_app: Callable[..., FastAPI], ws_max_size: int = UVICORN_WS_MAX_SIZE
) -> None:
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        ws_max_size=ws_max_size,
    )
