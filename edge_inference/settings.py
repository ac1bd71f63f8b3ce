"""Edge configuration, from ``EDGE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import RuntimeSettings


class EdgeSettings(RuntimeSettings):
    model_config = SettingsConfigDict(env_prefix="EDGE_", extra="ignore")

    port: int = 8002
    data_dir: Path = Path("var/edge")
    max_frame_bytes: int = 64 * 1024 * 1024
    # Inputs one frame may batch: each costs the tail's activations for one image, so the cap bounds memory.
    max_batch: int = 32
    # Dynamic batching (edge_inference/batcher.py): one run of a tail at a time, the frames queued meanwhile run
    # as the next batch; a frame finding its tail free waits at most the window for frames of it already being
    # decoded. batch_max_rows 1 turns batching off.
    batch_window_ms: float = Field(2.0, ge=0, le=1000)
    batch_max_rows: int = Field(16, ge=1, le=1024)  # samples in one batched run
    batch_queue: int = Field(64, ge=1, le=100_000)  # frames that may wait per tail; beyond it, 503 at once
