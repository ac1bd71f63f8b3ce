"""Edge configuration, from ``EDGE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from common.settings import RuntimeSettings


class EdgeSettings(RuntimeSettings):
    model_config = SettingsConfigDict(env_prefix="EDGE_", extra="ignore")

    port: int = 8002
    data_dir: Path = Path("var/edge")
    max_frame_bytes: int = 64 * 1024 * 1024
    # Inputs one frame may batch: each costs the tail's activations for one image, so the cap bounds memory.
    max_batch: int = 32
