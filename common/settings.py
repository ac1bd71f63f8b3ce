"""Settings that robot and edge share; each service subclasses this once with its own environment prefix."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.sessions import SessionOptions


class RuntimeSettings(BaseSettings):
    # Compose passes ${TOKEN:-} as an empty string: an empty variable means "unset", never "the empty value".
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("var/runtime")
    splitter_url: str = "http://127.0.0.1:8000"
    providers: str = "tensorrt,cuda,cpu"
    intra_op_threads: int = 0
    # Spinning workers burn the cores that a co-located head/tail or service needs; off by default here.
    allow_spinning: bool = False
    fetch_timeout_s: float = 120.0
    # Uploaded bundle zips (POST /api/bundles): 413 beyond.
    max_bundle_bytes: int = 2 * 1024**3
    log_level: str = "info"
    token: SecretStr | None = None
    protect_reads: bool = False
    splitter_token: SecretStr | None = None

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        if not names:
            raise ValueError("providers must name at least one of tensorrt, cuda, cpu")
        return ",".join(names)

    def session_options(self) -> SessionOptions:
        # TensorRT builds an engine per model on first use (minutes on a Jetson); caching it under the data
        # directory makes a restart take seconds instead.
        trt_cache = self.data_dir / "tensorrt-cache"
        return SessionOptions(
            providers=tuple(self.providers.split(",")),
            intra_op_threads=self.intra_op_threads,
            allow_spinning=self.allow_spinning,
            provider_options={
                "TensorrtExecutionProvider": {
                    "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": str(trt_cache),
                    "trt_timing_cache_enable": "True",
                    "trt_timing_cache_path": str(trt_cache),
                }
            },
        )
