"""Robot configuration, from ``ROBOT_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from common.settings import RuntimeSettings, service_urls

# How frames travel to the edge: the persistent WebSocket, or one POST each.
EdgeChannel = Literal["websocket", "http"]
# What the edge speaks: our frames (/api/frames, /api/infer), or the Open Inference Protocol (KServe v2) of any
# server holding the split's tail (our edge's /v2, Triton with the splitter's triton.zip, KServe).
EdgeProtocol = Literal["splitbot", "oip"]


class RobotSettings(RuntimeSettings):
    model_config = SettingsConfigDict(env_prefix="ROBOT_", extra="ignore")

    port: int = 8001
    data_dir: Path = Path("var/robot")
    # One edge, or several comma-separated (robot_inference/edge_fleet.py: the preferred one gets each frame, the
    # next one takes it when that one is down, hung, overloaded or lacks the split).
    edge_url: str = "http://127.0.0.1:8002"
    edge_timeout_s: float = 10.0
    max_image_bytes: int = 20 * 1024 * 1024
    edge_token: SecretStr | None = None
    # websocket: frames go over one open WebSocket per inference in flight (ws://<edge>/api/frames), a millisecond
    # less per frame than http (a POST /api/infer each), which remains for edges or proxies without WebSockets.
    edge_channel: EdgeChannel = "websocket"
    # oip: split frames go as the cut's packed codes (UINT8 <cut>.codes) to <edge>/v2/models/<name>/infer, the
    # tail's outputs come back and the robot post-processes them; all-edge and adaptive streams need splitbot.
    edge_protocol: EdgeProtocol = "splitbot"
    # Run the split's head with the quantizer inside (head_codes.onnx: clip, round, pack in ONNX ops), so an
    # accelerator quantizes and only the packed codes come back to the host; the codes are the numpy ones byte for
    # byte (checked when the split is made). On a CPU numpy is faster (docs/quantization.md): off by default.
    quantize_in_graph: bool = False
    # When the edge is down or too slow, answer with the full model on the robot (if it holds it) and say so.
    fallback_to_robot: bool = False
    # A camera on the robot itself (robot_inference/stream/source.py): a directory of images, an image, a video
    # file, /dev/videoN or an rtsp:// URL. Its answers go to WS /api/stream/results and /metrics.
    source: str | None = None
    source_fps: float = Field(15.0, gt=0, le=120)
    # The stream's options as a query string, as WS /api/stream takes them: "mode=auto&deadline_ms=100".
    source_options: str = ""

    def edge_urls(self) -> list[str]:
        return service_urls(self.edge_url)

    @field_validator("edge_url")
    @classmethod
    def _some_edge(cls, value: str) -> str:
        service_urls(value)
        return value
