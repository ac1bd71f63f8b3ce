"""The results file, ``bench/results/<date>-<host>.json``: one pydantic model, validated on write and on read."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from bench.stats import Summary

SCHEMA_VERSION = 1
PlanMode = Literal["all-robot", "all-edge", "split"]


class Plan(BaseModel, frozen=True):
    mode: PlanMode
    point: str | None = Field(None, description="split point label (split plans only)")
    bits: int | None = Field(None, description="bits per value on the wire (split plans only)")

    @property
    def key(self) -> str:
        return self.mode if self.mode != "split" else f"{self.point}@{self.bits}b"


class PointInfo(BaseModel):
    """One candidate split point as the splitter lists it."""

    index: int
    label: str
    shape: list[int]
    elements: int
    head_flops_share: float
    wire_bytes: dict[str, int]


class Machine(BaseModel):
    host: str
    cpu: str
    cores: int
    memory_gib: float
    kernel: str
    python: str
    onnxruntime: str
    gpu: str | None
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] | None = None

    def describe(self, robot_cpu_percent: float | None = None) -> str:
        gpu = self.gpu or "no GPU"
        text = f"{self.host}: {self.cores}-core {platform.machine()} ({self.cpu}), {gpu}"
        if robot_cpu_percent is not None:
            text += f"; robot capped at {robot_cpu_percent:g}% of one core"
        return text


class RunConfig(BaseModel):
    kind: Literal["full", "quick"]
    models: list[str]
    rates_mbit: list[float]
    bits: list[int]
    points: str
    requests: int
    warmup: int
    robot_cpu_percent: float
    cpu_period_us: int
    cpu_shares: int
    robot_threads: int
    edge_threads: int
    burst: str
    tbf_latency: str
    prune_factor: float
    image: str
    image_bytes: int
    clients: list[int]
    loopback_models: list[str]
    loopback_threads: int
    loopback_channels: list[str] = Field(default_factory=lambda: ["http"])
    camera_client: str = Field("httpx, multipart form", description="how the benchmark's camera posts images")


class LinkCheck(BaseModel):
    rate_mbit: float
    goodput_mbit: float = Field(description="a raw TCP transfer robot -> edge through the capped veth")


class ModelInfo(BaseModel):
    name: str
    model_id: str
    points: list[PointInfo]
    selected: list[str]
    splits: dict[str, str] = Field(default_factory=dict, description="plan key -> split id")


class PlanRun(BaseModel):
    """One plan at one rate: measured (n requests after warm-up) or pruned (its prediction is hopeless)."""

    model: str
    rate_mbit: float
    plan: Plan
    status: Literal["measured", "pruned", "failed"]
    latency: Summary | None = None
    samples_ms: list[float] = Field(default_factory=list)
    bytes_sent: int = Field(0, description="body the robot sent to the edge per request (frame or JPEG)")
    bytes_received: int = Field(0, description="JSON answer body from the edge per request")
    link_bytes_up: float | None = Field(None, description="robot->edge bytes on the veth per request, all headers")
    link_bytes_down: float | None = None
    link_drops: float | None = Field(None, description="packets tbf dropped per request, both directions")
    robot_ms: float | None = Field(None, description="median of the robot's own stages (decode .. quantize)")
    edge_ms: float | None = Field(None, description="median of the edge's own stages (parse .. postprocess)")
    stages_ms: dict[str, float] = Field(default_factory=dict, description="median per stage, 'where:name'")
    predicted_ms: float | None = Field(None, description="median of robot + edge compute + (sent + received) / rate")
    overhead_ratio: float | None = Field(None, description="median over requests of measured / predicted")
    note: str = ""


class BestPlan(BaseModel):
    model: str
    rate_mbit: float
    plan: Plan
    p50_ms: float
    p90_ms: float
    bytes_sent: int
    runner_up: Plan | None = None
    runner_up_p50_ms: float | None = None


class LoopbackOverhead(BaseModel):
    model: str
    plan: Plan
    spinning: bool
    threads: int
    # Results written before the robot had the frame socket posted every frame.
    edge_channel: Literal["websocket", "http"] = Field("http", description="ROBOT_EDGE_CHANNEL of the robot")
    http: Summary
    in_process: Summary
    ratio: float = Field(description="http p50 / in-process p50")
    ratio_min: float | None = Field(None, description="http min / in-process min: the floor, least disturbed")
    in_process_stages_ms: dict[str, float]
    http_stages_ms: dict[str, float]


class QuantSpeed(BaseModel):
    shape: list[int]
    bits: int
    quant_pack_gbps: float
    unpack_dequant_gbps: float
    copy_gbps: float


class EdgeThroughput(BaseModel):
    model: str
    plan: Plan
    # Results written before the frame socket measured robots posting frames.
    channel: Literal["websocket", "http"] = "http"
    clients: int
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int = 0


class RunRecord(BaseModel):
    """What every results file starts with: when, on what machine, and whether the run finished."""

    schema_version: int = SCHEMA_VERSION
    complete: bool = False
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    machine: Machine


class BenchResults(RunRecord):
    config: RunConfig
    link: list[LinkCheck] = Field(default_factory=list)
    robot_cpu_stat: dict[str, int] = Field(default_factory=dict)
    models: list[ModelInfo] = Field(default_factory=list)
    runs: list[PlanRun] = Field(default_factory=list)
    best: list[BestPlan] = Field(default_factory=list)
    loopback: list[LoopbackOverhead] = Field(default_factory=list)
    quant: list[QuantSpeed] = Field(default_factory=list)
    edge_throughput: list[EdgeThroughput] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".json.partial")
        temporary.write_text(self.model_dump_json(indent=1))
        os.replace(temporary, path)  # a reader (or a crash) never sees half a file

    @classmethod
    def read(cls, path: Path) -> BenchResults:
        return cls.model_validate_json(path.read_text())


def machine_info() -> Machine:
    import onnxruntime as ort

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0.0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) / 1024**2
    providers = ort.get_available_providers()
    gpu = next((p for p in providers if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")), None)
    return Machine(
        host=socket.gethostname(),
        cpu=cpu,
        cores=os.cpu_count() or 0,
        memory_gib=round(memory, 1),
        kernel=platform.release(),
        python=platform.python_version(),
        onnxruntime=ort.__version__,
        gpu=gpu,
        load_start=os.getloadavg(),
    )
