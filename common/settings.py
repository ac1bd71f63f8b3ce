"""Settings that robot and edge share; each service subclasses this once with its own environment prefix."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.sessions import SessionOptions


def service_urls(value: str) -> list[str]:
    """One service URL or several comma-separated (a fleet), without trailing slashes; ValueError otherwise."""
    urls = [url.strip().rstrip("/") for url in value.split(",") if url.strip()]
    if not urls or not all(url.startswith(("http://", "https://")) for url in urls):
        raise ValueError(f"must be one or more comma-separated http(s):// URLs, got {value!r}")
    return urls


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
    # TensorRT and CUDA execution-provider options (used only where those providers are in the build).
    trt_fp16: bool = True  # half-precision kernels where TensorRT runs: about 2x on a Jetson Orin's tensor cores
    trt_dla_core: int | None = None  # a Jetson's deep-learning accelerator (0 or 1); GPU fallback for its layers
    trt_workspace_bytes: int | None = None  # TensorRT's own default when unset
    trt_max_batch: int = 16  # the optimisation profile's largest batch (its smallest and optimum are 1)
    cuda_device_id: int = 0
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
        tensorrt = {
            "device_id": str(self.cuda_device_id),
            "trt_fp16_enable": str(self.trt_fp16),
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(trt_cache),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(trt_cache),
        }
        if self.trt_dla_core is not None:
            tensorrt |= {"trt_dla_enable": "True", "trt_dla_core": str(self.trt_dla_core)}
        if self.trt_workspace_bytes is not None:
            tensorrt["trt_max_workspace_size"] = str(self.trt_workspace_bytes)
        return SessionOptions(
            providers=tuple(self.providers.split(",")),
            intra_op_threads=self.intra_op_threads,
            allow_spinning=self.allow_spinning,
            provider_options={
                "TensorrtExecutionProvider": tensorrt,
                "CUDAExecutionProvider": {"device_id": str(self.cuda_device_id)},
            },
            tensorrt_max_batch=self.trt_max_batch,
        )
