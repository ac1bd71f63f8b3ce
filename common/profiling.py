"""What a model costs on this side's hardware: whole-model time, per-node times, and the per-request constants.

The planner (``model_splitter/planning/``) predicts a split's latency from the robot's head time and the edge's
tail time. Both come from one profile of the FULL model per side, so a single call covers every candidate cut:

1. **Whole-model time** (``total_ms``): the median of ``runs`` timed runs of the session the service really uses
   for the full model (its execution provider, its threads, ``ORT_ENABLE_ALL``), after ``warmup`` runs, each run
   as in a request: after a 20 ms pause (idle time), right after decoding and preprocessing the sample image
   (timed too: the ``decode`` and ``preprocess`` stages).
2. **Per-node shares** (``nodes``): a second session on the same provider with ``enable_profiling`` and
   ``ORT_DISABLE_ALL``. At ``ORT_ENABLE_ALL`` ONNX Runtime fuses nodes (Conv+BatchNormalization+Relu becomes one
   ``FusedConv`` with a new name), so its profile cannot be mapped back to the graph's node names; with every
   optimisation off each graph node runs under its own name. The mean ``*_kernel_time`` per node over the timed
   runs is then scaled by ``total_ms / sum(node means)``: the shares come from the unfused graph, the absolute time
   from the session that serves requests, and the nodes sum to ``total_ms``. TensorRT compiles the whole graph
   into one engine node, so its per-node shares are taken on CUDA (or the CPU) instead.
3. **Per-request constants**: decode and preprocess of the sample image (timed in step 1), top-k post-processing,
   and the wire codec (quantize + pack + frame, parse + unpack + dequantize) in nanoseconds per tensor element for
   each bit width, timed on a 1 MiB float32 tensor.

Profiles are cached in memory per (model, provider, image), because a profile takes seconds on a slow robot.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field

from common.errors import InvalidArgument
from common.imaging import decode_image, preprocess, release
from common.manifest import SplitManifest
from common.postprocess import answer_batch
from common.sessions import LoadedSession, SessionOptions, _session_options, resolve_providers
from common.tensor_records import decode_record, quantized_record
from common.wire import decode_frame, encode_frame

CODEC_BITS = (2, 4, 8, 16, 32)
CODEC_ELEMENTS = 1 << 18  # 1 MiB of float32
MAX_PROBE_BYTES = 64 * 1024 * 1024
# Requests reach a side after it sat idle (the other side was computing, bytes were on the link): its thread pool
# asleep, its caches cold. Back-to-back runs would time a warmer machine than requests see.
RUN_PAUSE_S = 0.02
METHOD = (
    "total_ms: median of the service's own full-model session (ORT_ENABLE_ALL); nodes: mean kernel time per graph "
    "node from ONNX Runtime profiling at ORT_DISABLE_ALL (names kept), scaled to sum to total_ms"
)
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
_KERNEL_SUFFIX = "_kernel_time"


# --- the JSON exchanged between splitter, robot and edge ---------------------------------------------------------


class ProfileRequest(BaseModel):
    # Exactly one of the two names what to profile; the schema says so too, for clients generated from it.
    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["split_id"]}, {"required": ["model_sha256"]}]})

    split_id: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="a split deployed here: its full model is profiled"
    )
    model_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="or the sha256 of a full model held here"
    )
    runs: int = Field(10, ge=1, le=200, description="timed runs (after warm-up)")
    warmup: int = Field(2, ge=0, le=50)
    image_base64: str | None = Field(None, description="a sample image: decode and preprocess are timed on it")
    fresh: bool = Field(False, description="profile again even if a cached profile exists")


class ProfileResult(BaseModel):
    model_sha256: str
    split_id: str = Field(description="the deployed split whose manifest gave preprocessing and post-processing")
    provider: str = Field(description="execution provider of the timed full-model session")
    total_ms: float = Field(description="whole model, median over runs, on the service's own session")
    nodes: dict[str, float] = Field(description="graph node name -> ms, scaled so that they sum to total_ms")
    node_profile_ms: float = Field(description="sum of the unscaled per-node means (ORT_DISABLE_ALL)")
    node_profile_provider: str
    runs: int
    method: str = METHOD
    stages_ms: dict[str, float] = Field(
        default_factory=dict, description="decode, preprocess (with a sample image), postprocess"
    )
    encode_ns_per_element: dict[int, float] = Field(description="bits -> quantize + pack + frame, per element")
    decode_ns_per_element: dict[int, float] = Field(description="bits -> parse + unpack + dequantize, per element")
    measured_at: str
    seconds: float = Field(description="how long the profile took")
    cached: bool = False


class ProbeReply(BaseModel):
    received: int


class ProbeLinkRequest(BaseModel):
    bytes: int = Field(1_000_000, ge=1024, le=MAX_PROBE_BYTES, description="body size of the throughput samples")
    repeats: int = Field(3, ge=1, le=20, description="throughput samples")
    pings: int = Field(5, ge=1, le=50, description="empty requests for the round trip (median)")
    max_seconds: float = Field(
        1.0, gt=0, le=30, description="a slow link gets smaller bodies, so that one sample takes about this long"
    )


class LinkSample(BaseModel):
    kind: str = Field(description="rtt or throughput")
    bytes: int
    ms: float
    mbps: float | None = None


class LinkProbeResult(BaseModel):
    edge_url: str
    rtt_ms: float = Field(description="median round trip of an empty request")
    throughput_mbps: float = Field(description="median of body bits / (round trip - rtt), 10**6 bits per second")
    body_bytes: int = Field(description="body size the throughput samples used")
    samples: list[LinkSample]


# --- measuring ----------------------------------------------------------------------------------------------------


def _feeds(session: ort.InferenceSession, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for node_arg in session.get_inputs():
        shape = [dim if isinstance(dim, int) and dim > 0 else 1 for dim in node_arg.shape]
        dtype = _NUMPY_TYPES.get(node_arg.type, np.float32)
        feeds[node_arg.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _median_ms(action: Callable[[], object], runs: int, warmup: int = 0, pause_s: float = 0.0) -> float:
    for _ in range(warmup):
        action()
    times = []
    for _ in range(runs):
        if pause_s > 0:
            time.sleep(pause_s)
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))


def time_session(session: LoadedSession, runs: int, warmup: int, pause_s: float = RUN_PAUSE_S) -> float:
    """Median ms of one run of ``session`` on random inputs, each after a pause (a request comes after idle time)."""
    feeds = _feeds(session.session)
    return _median_ms(lambda: session.run(feeds), runs, warmup, pause_s)


def time_request(
    session: LoadedSession,
    manifest: SplitManifest,
    image: bytes,
    runs: int,
    warmup: int,
    pause_s: float = RUN_PAUSE_S,
) -> dict[str, float]:
    """Median ms of decode, preprocess and the full model, run one after the other as a request runs them.

    Each sequence starts after a pause. On a side whose CPU time is rationed (a cgroup quota, a thermally limited
    SoC) the model then runs on what decode and preprocess left of the budget, as it does when serving; timed
    alone after idle time, a 10 ms model can run in one unthrottled burst and look twice as fast as in a request.
    """
    spec = manifest.preprocessing
    random_feeds = _feeds(session.session)
    single_input = len(session.input_names) == 1

    def one() -> tuple[float, float, float]:
        start = time.perf_counter()
        decoded = decode_image(image, spec.color, spec.resize_shorter_to)
        decoded_at = time.perf_counter()
        batch = preprocess(decoded, spec)
        release(decoded)
        preprocessed_at = time.perf_counter()
        shape_fits = single_input and list(batch.shape) == list(random_feeds[session.input_names[0]].shape)
        session.run({session.input_names[0]: batch} if shape_fits else random_feeds)
        done = time.perf_counter()
        return decoded_at - start, preprocessed_at - decoded_at, done - preprocessed_at

    for _ in range(warmup):
        one()
    samples = []
    for _ in range(runs):
        time.sleep(pause_s)
        samples.append(one())
    names = ("decode", "preprocess", "model")
    return {name: round(statistics.median(s[i] for s in samples) * 1000.0, 4) for i, name in enumerate(names)}


def node_profile_provider(provider: str) -> str:
    """The provider whose per-node profile stands in for ``provider`` (TensorRT runs one fused engine node)."""
    if provider != "TensorrtExecutionProvider":
        return provider
    available = ort.get_available_providers()
    return "CUDAExecutionProvider" if "CUDAExecutionProvider" in available else "CPUExecutionProvider"


def parse_node_profile(events: list[dict[str, Any]], warmup: int) -> tuple[dict[str, float], int]:
    """Mean kernel ms per node name over the runs after the first ``warmup``, and the number of those runs.

    ``events`` is ONNX Runtime's profile (Chrome trace JSON): one ``model_run`` Session event per run and one
    ``<node>_kernel_time`` Node event per node and run, ``ts`` and ``dur`` in microseconds.
    """
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e["ts"]
    )
    timed = runs[warmup:] if len(runs) > warmup else runs
    if not timed:
        return {}, 0
    start = timed[0]["ts"]
    totals: dict[str, float] = {}
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith(_KERNEL_SUFFIX) or event.get("ts", 0) < start:
            continue
        node = name[: -len(_KERNEL_SUFFIX)]
        totals[node] = totals.get(node, 0.0) + float(event.get("dur", 0)) / 1000.0
    return {node: total / len(timed) for node, total in totals.items()}, len(timed)


def profile_nodes(model_path: Path, options: SessionOptions, provider: str, runs: int, warmup: int) -> dict[str, float]:
    """Mean ms per graph node of ``model_path`` on ``provider`` with every graph optimisation off."""
    session_options = _session_options(options)
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session_options.enable_profiling = True
    directory = Path(tempfile.mkdtemp(prefix="splitbot-profile-"))
    try:
        session_options.profile_file_prefix = str(directory / "profile")
        chain: list[Any] = ["CPUExecutionProvider"]
        if provider != "CPUExecutionProvider" and provider in resolve_providers((provider,)):
            first = (provider, options.provider_options[provider]) if provider in options.provider_options else provider
            chain = [first, "CPUExecutionProvider"]
        session = ort.InferenceSession(str(model_path), sess_options=session_options, providers=chain)
        feeds = _feeds(session)
        for _ in range(warmup + runs):
            session.run(None, feeds)
        profile_path = Path(session.end_profiling())
        events: list[dict[str, Any]] = json.loads(profile_path.read_text())
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    nodes, _ = parse_node_profile(events, warmup)
    return nodes


def scale_nodes(nodes: dict[str, float], total_ms: float) -> dict[str, float]:
    """Per-node times scaled to sum to ``total_ms`` (unchanged when they sum to nothing)."""
    raw = sum(nodes.values())
    if raw <= 0:
        return dict(nodes)
    factor = total_ms / raw
    return {name: round(ms * factor, 4) for name, ms in nodes.items()}


def codec_costs(elements: int = CODEC_ELEMENTS, reps: int = 3) -> tuple[dict[int, float], dict[int, float]]:
    """ns per element of encode (quantize, pack, frame) and decode (parse, unpack, dequantize) per bit width."""
    rng = np.random.default_rng(1)
    tensor = np.abs(rng.standard_normal((1, elements))).astype(np.float32) * 4.0
    split_id = "0" * 64
    encode: dict[int, float] = {}
    decode: dict[int, float] = {}
    for bits in CODEC_BITS:
        frame = encode_frame(split_id, [quantized_record("t", tensor, bits, 0.0, 32.0)])

        def encoded(b: int = bits) -> bytes:
            return encode_frame(split_id, [quantized_record("t", tensor, b, 0.0, 32.0)])

        def decoded(f: bytes = frame) -> np.ndarray:
            return decode_record(decode_frame(f, max_bytes=len(f) + 1).tensors[0])

        encode[bits] = round(_median_ms(encoded, reps, 1) * 1e6 / elements, 4)
        decode[bits] = round(_median_ms(decoded, reps, 1) * 1e6 / elements, 4)
    return encode, decode


def postprocess_ms(manifest: SplitManifest, runs: int) -> float:
    """Median ms of the task's post-processing of outputs of the model's shapes and types (random values)."""
    rng = np.random.default_rng(2)
    outputs = [
        rng.standard_normal([max(d, 0) for d in spec.shape]).astype(np.dtype(spec.dtype))
        if np.issubdtype(np.dtype(spec.dtype), np.floating)
        else rng.integers(0, 2, [max(d, 0) for d in spec.shape]).astype(np.dtype(spec.dtype))
        for spec in manifest.outputs
    ]
    return round(_median_ms(lambda: answer_batch(outputs, manifest), runs, 1), 4)


def decode_image_argument(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument("image_base64 is not valid base64") from exc


class ProfileCache:
    """Profiles per (model sha256, provider, sample image sha256); one profile runs at a time per service."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[tuple[str, str, str], ProfileResult] = {}

    def profile(
        self,
        manifest: SplitManifest,
        full: LoadedSession,
        model_path: Path,
        options: SessionOptions,
        request: ProfileRequest,
        image: bytes | None,
    ) -> ProfileResult:
        image_key = hashlib.sha256(image).hexdigest() if image is not None else ""
        key = (manifest.model_sha256, full.provider, image_key)
        with self._lock:
            cached = self._results.get(key)
            if cached is not None and not request.fresh:
                return cached.model_copy(update={"cached": True})
            began = time.perf_counter()
            stages: dict[str, float] = {}
            if image is not None:
                stages = time_request(full, manifest, image, request.runs, request.warmup)
                total_ms = stages.pop("model")
            else:
                total_ms = time_session(full, request.runs, request.warmup)
            stages["postprocess"] = postprocess_ms(manifest, max(3, min(request.runs, 10)))
            per_node_provider = node_profile_provider(full.provider)
            raw = profile_nodes(model_path, options, per_node_provider, request.runs, request.warmup)
            encode, decode = codec_costs()
            result = ProfileResult(
                model_sha256=manifest.model_sha256,
                split_id=manifest.id,
                provider=full.provider,
                total_ms=round(total_ms, 4),
                nodes=scale_nodes(raw, total_ms),
                node_profile_ms=round(sum(raw.values()), 4),
                node_profile_provider=per_node_provider,
                runs=request.runs,
                stages_ms=stages,
                encode_ns_per_element=encode,
                decode_ns_per_element=decode,
                measured_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                seconds=round(time.perf_counter() - began, 3),
            )
            self._results[key] = result
            return result
