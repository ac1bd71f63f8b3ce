"""Splitter configuration, from ``SPLITTER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings import service_urls


class SplitterSettings(BaseSettings):
    # Compose passes ${TOKEN:-} as an empty string: an empty variable means "unset", never "the empty value".
    model_config = SettingsConfigDict(env_prefix="SPLITTER_", extra="ignore", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("var/splitter")
    # A robot and an edge, or fleets of them (comma-separated): model_splitter/services/peers.py.
    robot_url: str = "http://127.0.0.1:8001"
    edge_url: str = "http://127.0.0.1:8002"
    request_timeout_s: float = 120.0
    max_model_bytes: int = 1024**3
    max_image_bytes: int = 20 * 1024 * 1024
    allow_pickle: bool = Field(
        False,
        description=(
            "Accept pickled whole nn.Modules (torch.save(model)). This EXECUTES CODE FROM THE FILE: switch it on "
            "only for files you would run as a program."
        ),
    )
    log_level: str = "info"
    token: SecretStr | None = Field(None, description="bearer token required for uploads, deletes, deploys")
    protect_reads: bool = Field(False, description="require the token for reads too (the web UI then asks for it)")
    session_hours: float = Field(12.0, gt=0, description="how long a web UI sign-in lasts")
    robot_token: SecretStr | None = Field(None, description="sent to the robot (its ROBOT_TOKEN)")
    edge_token: SecretStr | None = Field(None, description="sent to the edge (its EDGE_TOKEN)")

    @field_validator("robot_url", "edge_url")
    @classmethod
    def _service_urls(cls, value: str) -> str:
        service_urls(value)
        return value
