"""The physical limit without HTTP: the split pipeline in one process, and the codec's raw throughput.

``InProcessPipeline`` does what robot and edge do for one request, with the same library calls and the same
ONNX Runtime session options, minus the services: decode, preprocess, head, quantize + frame, parse +
dequantize, tail, top-k. The loopback overhead ratio divides the HTTP latency through the three services by it.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from bench.control import SplitterControl
from bench.measure import RobotClient, Sample
from bench.quant_speed import BITS, SHAPES, codec_seconds, median_seconds
from bench.schema import LoopbackOverhead, Plan, QuantSpeed
from bench.stats import summarize
from common.imaging import decode_image, preprocess
from common.manifest import SplitManifest
from common.postprocess import Prediction, top_k
from common.sessions import SessionOptions, create_session
from common.tensor_records import decode_features, encode_features
from common.timing import StageTimer
from common.wire import decode_frame, encode_frame
from tools.local_stack import LocalStack, free_port

SETTLE_S = 0.01


class InProcessPipeline:
    def __init__(self, manifest: SplitManifest, head: bytes, tail: bytes, options: SessionOptions) -> None:
        self.manifest = manifest
        self.head = create_session(head, options)
        self.tail = create_session(tail, options)

    def frame(self, image: bytes) -> bytes:
        """The wire frame the robot would send for ``image`` (for the edge throughput runs)."""
        return self._frame(image, StageTimer("robot"))

    def _frame(self, image: bytes, timer: StageTimer) -> bytes:
        manifest = self.manifest
        with timer.stage("decode"):
            decoded = decode_image(image, manifest.preprocessing.color)
        with timer.stage("preprocess"):
            batch = preprocess(decoded, manifest.preprocessing)
        with timer.stage("head"):
            features = self.head.run({self.head.input_names[0]: batch})
        with timer.stage("quantize"):
            return encode_frame(manifest.id, encode_features(manifest, features))

    def run(self, image: bytes) -> tuple[list[Prediction], StageTimer]:
        timer = StageTimer("robot")
        frame = self._frame(image, timer)
        edge = StageTimer("edge")
        with edge.stage("parse"):
            parsed = decode_frame(frame)
        with edge.stage("dequantize"):
            feeds = decode_features(self.manifest, parsed.tensors)
        with edge.stage("tail"):
            output = self.tail.run(feeds)[0]
        with edge.stage("postprocess"):
            predictions = top_k(np.asarray(output), self.manifest.postprocessing)[0]
        timer.stages.extend(edge.stages)
        return predictions, timer


def loopback_overhead(
    models: list[str],
    image: bytes,
    requests: int,
    warmup: int,
    threads: int,
    spinning: bool,
    channel: str = "websocket",
    bits: int = 4,
) -> list[LoopbackOverhead]:
    """HTTP through splitter-deployed robot and edge on 127.0.0.1 against the same split in this process.

    Each model is cut at its middle split point (layer2 for resnet18, as ``make up`` deploys it).

    The two alternate request by request, so that the load of a shared machine falls on both alike.
    """
    flag = "true" if spinning else "false"
    env = {
        "ROBOT_INTRA_OP_THREADS": str(threads),
        "EDGE_INTRA_OP_THREADS": str(threads),
        "ROBOT_ALLOW_SPINNING": flag,
        "EDGE_ALLOW_SPINNING": flag,
        "ROBOT_PROVIDERS": "cpu",
        "EDGE_PROVIDERS": "cpu",
        "ROBOT_EDGE_CHANNEL": channel,
    }
    options = SessionOptions(providers=("cpu",), intra_op_threads=threads, allow_spinning=spinning)
    results = []
    with tempfile.TemporaryDirectory(prefix="sbb-loopback-") as data_dir:
        stack = LocalStack(
            data_dir=Path(data_dir),
            splitter_port=free_port(),
            robot_port=free_port(),
            edge_port=free_port(),
            extra_env=env,
        )
        with stack, SplitterControl(stack.splitter_url) as splitter, RobotClient(stack.robot_url, image) as robot:
            for model in models:
                model_id, points = splitter.register(model)
                label = sorted(points, key=lambda p: p.index)[len(points) // 2].label
                split_id = splitter.create_split(model_id, label, bits)
                splitter.deploy(split_id)
                head, tail = splitter.halves(split_id)
                pipeline = InProcessPipeline(splitter.manifest(split_id), head, tail, options)
                plan = Plan(mode="split", point=label, bits=bits)
                http, local = _alternate(robot, pipeline, plan, split_id, image, requests, warmup)
                http_summary = summarize([s.e2e_ms for s in http])
                local_summary = summarize([ms for ms, _ in local])
                results.append(
                    LoopbackOverhead(
                        model=model,
                        plan=plan,
                        spinning=spinning,
                        threads=threads,
                        edge_channel="http" if channel == "http" else "websocket",
                        http=http_summary,
                        in_process=local_summary,
                        ratio=round(http_summary.p50 / local_summary.p50, 4),
                        ratio_min=round(http_summary.min / local_summary.min, 4),
                        in_process_stages_ms=_median_stages([stages for _, stages in local]),
                        http_stages_ms=_median_stages([s.stages for s in http]),
                    )
                )
    return results


def _alternate(
    robot: RobotClient,
    pipeline: InProcessPipeline,
    plan: Plan,
    split_id: str,
    image: bytes,
    requests: int,
    warmup: int,
) -> tuple[list[Sample], list[tuple[float, dict[str, float]]]]:
    """Request by request, HTTP and in-process in turn (the order flips each time), so both see the same load.

    The pause between the two lets the idle side's ONNX Runtime workers stop spinning (with spinning on) before
    the other side is timed; it is not part of either measurement.
    """
    for _ in range(warmup):
        robot.infer(plan, split_id)
        pipeline.run(image)
    http: list[Sample] = []
    local: list[tuple[float, dict[str, float]]] = []

    def one_local() -> None:
        start = time.perf_counter()
        _, timer = pipeline.run(image)
        elapsed = (time.perf_counter() - start) * 1000.0
        local.append((elapsed, {f"{s.where}:{s.name}": s.ms for s in timer.stages}))

    for i in range(requests):
        for side in ("http", "local") if i % 2 == 0 else ("local", "http"):
            time.sleep(SETTLE_S)
            if side == "http":
                http.append(robot.infer(plan, split_id))
            else:
                one_local()
    return http, local


def _median_stages(samples: list[dict[str, float]]) -> dict[str, float]:
    names = sorted({name for sample in samples for name in sample})
    return {name: round(statistics.median(s.get(name, 0.0) for s in samples), 3) for name in names}


def quant_speeds(repeats: int = 3) -> list[QuantSpeed]:
    """bench/quant_speed.py's measurement (median of 50 calls, one core), the best of ``repeats`` passes.

    One median covers about a millisecond of work. The first pass in a freshly started process ran np.copy of
    the 400 kB array at 3 GB/s where every later pass ran it at 20 GB/s, so whole passes repeat (in time, not
    back to back) and each figure keeps its best.
    """
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
    best: dict[tuple[int, int], tuple[float, float, float]] = {}
    for _ in range(repeats):
        for i, x in enumerate(arrays):
            copy = median_seconds(partial(np.copy, x))
            for bits in BITS:
                encode, decode = codec_seconds(x, bits)
                seen = best.get((i, bits), (math.inf, math.inf, math.inf))
                best[(i, bits)] = (min(seen[0], encode), min(seen[1], decode), min(seen[2], copy))
    speeds = []
    for (i, bits), (encode, decode, copy) in best.items():
        gigabytes = arrays[i].nbytes / 1e9
        speeds.append(
            QuantSpeed(
                shape=list(SHAPES[i]),
                bits=bits,
                quant_pack_gbps=round(gigabytes / encode, 3),
                unpack_dequant_gbps=round(gigabytes / decode, 3),
                copy_gbps=round(gigabytes / copy, 3),
            )
        )
    return speeds
