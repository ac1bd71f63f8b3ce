"""Running one service under uvicorn with its settings; each package's ``__main__`` calls ``main``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import uvicorn
from fastapi import FastAPI
from pydantic_settings import BaseSettings

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


Settings = TypeVar("Settings", bound=BaseSettings)


def main(
    settings_type: type[Settings],
    create_app: Callable[..., FastAPI],
    argv: Sequence[str] | None = None,
    ws_max_size: Callable[[Settings], int] | None = None,
) -> int:
    """``python -m <service>``: serve, or with ``--help`` print every setting with its default and exit."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(settings_help(settings_type))
        return 0
    if args:
        print(f"unknown arguments {args}: every setting comes from the environment; see --help", file=sys.stderr)
        return 2
    settings = settings_type()
    serve(settings, create_app, ws_max_size(settings) if ws_max_size else UVICORN_WS_MAX_SIZE)  # type: ignore[arg-type]
    return 0


def settings_help(settings_type: type[BaseSettings]) -> str:
    """One line per setting: its environment variable, its default, and what it does."""
    prefix = str(settings_type.model_config.get("env_prefix", ""))
    lines = [f"{settings_type.__name__}: configured from the environment only (no flags).", ""]
    for name, field in settings_type.model_fields.items():
        default = "unset" if field.default is None else repr(field.default)
        if isinstance(field.default, Path):
            default = str(field.default)
        if field.default_factory is not None:
            default = "(computed)"
        description = f"  {field.description}" if field.description else ""
        lines.append(f"  {prefix}{name.upper():<32} default {default}{description}")
    return "\n".join(lines)
