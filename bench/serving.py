"""Serving many robots: edge throughput with dynamic batching off and on, through Triton, and in-graph codes.

``python -m bench.serving`` registers torchvision's ImageNet mobilenet_v2 with its real weights (tools/assets), cuts
it at ``--point`` at 4 bits, and runs the head on the bundled photos to get real frames. Then ``--robots`` (1, 4, 16
and 64) client threads, each with its own keep-alive connection, send frames back to back for ``--seconds`` to:

- our edge, ``POST /api/infer`` with the wire frame, dynamic batching off (``EDGE_BATCH_MAX_ROWS=1``);
- our edge, batching on (the defaults: 2 ms window, 16 rows);
- a real Triton server (PyTriton: Triton's core, HTTP front end and dynamic batcher, 2 ms, 16 rows) serving the
  split's exported tail with the dequantizer inside, sent the codes as the robot sends them with
  ``ROBOT_EDGE_PROTOCOL=oip`` (skipped, saying why, where tools/triton_server.py cannot build its venv).

Per server and robot count: answered requests per second, p50 / p99 latency. Then failover (bench/failover.py):
a robot with two edges, the one it uses killed (kill -9) or hung (SIGSTOP) while a client streams photos through
it. Then the cost of quantizing in the graph against numpy on this split's cut (median of 50, one ONNX Runtime
thread). Everything shares this machine's
cores: the clients' threads run beside the servers, as they would not on a real fleet; the figures compare the
servers under the same load, not absolute capacity.
Results: bench/results/serving-<date>-<host>.json and .png (``--quick``: 1 and 16 robots, short runs, in
bench/results/tmp/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort

from bench.failover import measure
from bench.stats import percentile
from bench.trained import register_trained_mobilenet_v2
from common.codes import codes_to_features, features_to_codes
from common.imaging import decode_image, preprocess
from common.manifest import SplitManifest
from common.tensor_records import encode_features
from common.wire import encode_frame
from model_splitter.quantize.code_graphs import dequantizer_model, quantizer_model
from model_splitter.records import SplitRequest
from model_splitter.services.splits import create_split
from model_splitter.store.bundle_zip import bundle_zip
from model_splitter.store.registry import Registry
from model_splitter.store.samples import calibration_photos
from model_splitter.store.triton_repository import TritonOptions, triton_repository_zip
from robot_inference.oip_tail import OipRequest, infer_request
from tools.local_stack import ServiceProcess, free_port
from tools.triton_server import TritonUnavailable, running_triton

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
START_TIMEOUT_S = 120


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class LoadResult:
    server: str
    robots: int
    seconds: float
    answered: int
    errors: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    mean_tail_batch: float | None  # our edge says how many samples each frame's run had


def _split(registry: Registry, point: str, bits: int) -> SplitManifest:
    record = register_trained_mobilenet_v2(registry)
    return create_split(registry, record.id, SplitRequest(split_point=point, bits=bits))


def _features(registry: Registry, manifest: SplitManifest) -> list[list[np.ndarray]]:
    """The head's outputs on every bundled photo, as the robot computes them."""
    head = ort.InferenceSession(str(registry.split_file(manifest.id, "head.onnx")), providers=["CPUExecutionProvider"])
    spec = manifest.preprocessing
    outputs = []
    for photo in calibration_photos():
        batch = preprocess(decode_image(photo.read_bytes(), spec.color, spec.resize_shorter_to), spec)
        outputs.append([np.asarray(a) for a in head.run(None, {head.get_inputs()[0].name: batch})])
    return outputs


def _load(url: str, requests: Sequence[Request | OipRequest], robots: int, seconds: float, server: str) -> LoadResult:
    """``robots`` threads sending requests back to back for ``seconds``; latencies of the answered ones."""
    latencies: list[list[float]] = [[] for _ in range(robots)]
    batches: list[list[int]] = [[] for _ in range(robots)]
    errors = [0] * robots
    stop = [0.0]  # set once every robot is connected
    barrier = threading.Barrier(robots + 1)

    def robot(index: int) -> None:
        with httpx.Client(base_url=url, timeout=30.0) as client:
            client.get("/v2/health/live")  # open the connection before the clock starts
            barrier.wait()
            turn = index
            while time.monotonic() < stop[0]:
                request = requests[turn % len(requests)]
                turn += 1
                began = time.perf_counter()
                response = client.post(request.path, content=request.body, headers=request.headers)
                if response.status_code == 200:
                    latencies[index].append((time.perf_counter() - began) * 1000.0)
                    if response.headers.get("content-type", "").startswith("application/json"):
                        batches[index].append(int(response.json().get("tail_batch") or 0))
                else:
                    errors[index] += 1

    threads = [threading.Thread(target=robot, args=(i,), daemon=True) for i in range(robots)]
    for thread in threads:
        thread.start()
    stop[0] = time.monotonic() + 3600.0  # until the barrier opens
    barrier.wait()
    began = time.monotonic()
    stop[0] = began + seconds
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    every = [ms for per_robot in latencies for ms in per_robot]
    sizes = [size for per_robot in batches for size in per_robot if size]
    return LoadResult(
        server=server,
        robots=robots,
        seconds=round(elapsed, 2),
        answered=len(every),
        errors=sum(errors),
        requests_per_s=round(len(every) / elapsed, 1),
        p50_ms=round(percentile(every, 50), 2) if every else float("nan"),
        p99_ms=round(percentile(every, 99), 2) if every else float("nan"),
        mean_tail_batch=round(statistics.fmean(sizes), 2) if sizes else None,
    )


@contextmanager
def _edge(root: Path, bundle: bytes, max_rows: int) -> Iterator[ServiceProcess]:
    port = free_port()
    env = {**os.environ, "EDGE_HOST": "127.0.0.1", "EDGE_PORT": str(port), "EDGE_DATA_DIR": str(root)}
    env |= {"EDGE_BATCH_MAX_ROWS": str(max_rows), "EDGE_PROVIDERS": "cpu", "EDGE_LOG_LEVEL": "warning"}
    service = ServiceProcess("edge", "edge_inference", f"http://127.0.0.1:{port}", env, root / "edge.log")
    service.start(sys.executable)
    try:
        service.wait_healthy(time.monotonic() + START_TIMEOUT_S)
        response = httpx.post(f"{service.url}/api/bundles", files={"bundle": ("b.zip", bundle)}, timeout=120)
        response.raise_for_status()
        yield service
    finally:
        service.stop()


def _median_ms(work: Callable[[], object], runs: int = 50) -> float:
    work()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append((time.perf_counter() - began) * 1000.0)
    return round(statistics.median(times), 3)


def _code_costs(manifest: SplitManifest, features: list[np.ndarray]) -> dict[str, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    quantizer = ort.InferenceSession(quantizer_model(manifest).SerializeToString(), options)
    dequantizer = ort.InferenceSession(dequantizer_model(manifest).SerializeToString(), options)
    feeds = {spec.name: array for spec, array in zip(manifest.cut, features, strict=True)}
    codes = features_to_codes(manifest, features)
    return {
        "quantize_numpy_ms": _median_ms(lambda: features_to_codes(manifest, features)),
        "quantize_graph_ms": _median_ms(lambda: quantizer.run(None, feeds)),
        "dequantize_numpy_ms": _median_ms(lambda: codes_to_features(manifest, codes)),
        "dequantize_graph_ms": _median_ms(lambda: dequantizer.run(None, codes)),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    registry = Registry(root / "registry")
    began = time.perf_counter()
    manifest = _split(registry, args.point, args.bits)
    print(f"split {manifest.readable_name} in {time.perf_counter() - began:.1f} s", flush=True)
    samples = _features(registry, manifest)
    frames = [
        Request(
            "/api/infer",
            encode_frame(manifest.id, encode_features(manifest, f)),
            {"content-type": "application/octet-stream"},
        )
        for f in samples
    ]
    codes_requests = [infer_request(manifest, features_to_codes(manifest, f), "0" * 32) for f in samples]
    bundle = bundle_zip(registry, manifest.id)
    loads: list[LoadResult] = []
    for server, max_rows in (("edge, batching off", 1), ("edge, batching on", 16)):
        with _edge(root / server.replace(" ", "").replace(",", "-"), bundle, max_rows) as edge:
            for robots in args.robots:
                loads.append(_load(edge.url, frames, robots, args.seconds, server))
                print(json.dumps(asdict(loads[-1])), flush=True)
    triton_note = None
    try:
        name, data = triton_repository_zip(registry, manifest.id, TritonOptions(max_batch_size=16))
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(root / "triton")
        tail = root / "triton" / name / "1" / "model.onnx"
        with running_triton(
            tail, name, root / "triton", max_batch=16, delay_us=2000, threads=args.triton_threads
        ) as server:
            for robots in args.robots:
                loads.append(_load(server.url, codes_requests, robots, args.seconds, "triton (pytriton), batching on"))
                print(json.dumps(asdict(loads[-1])), flush=True)
    except TritonUnavailable as exc:
        triton_note = f"not measured: {exc}"
        print(triton_note, flush=True)
    photo = calibration_photos()[0].read_bytes()
    failovers = [
        asdict(measure(root / f"failover-{i}", bundle, photo, event, args.failover_timeout_s, args.failover_seconds))
        for i, event in enumerate(("kill -9", "SIGSTOP"))
    ]
    for failover in failovers:
        print(json.dumps(failover), flush=True)
    costs = _code_costs(manifest, samples[0])
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "host": socket.gethostname(),
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "onnxruntime": ort.__version__,
        },
        "split": {
            "model": "mobilenet_v2, torchvision IMAGENET1K_V1 weights",
            "point": manifest.split_point,
            "bits": manifest.quantization.bits,
            "frame_bytes": statistics.median(len(r.body) for r in frames),
            "codes_request_bytes": statistics.median(len(r.body) for r in codes_requests),
            "tail_onnx_bytes": onnx.load(str(registry.split_file(manifest.id, "tail.onnx"))).ByteSize(),
        },
        "seconds_per_run": args.seconds,
        "loads": [asdict(load) for load in loads],
        "triton": triton_note or "measured",
        "failover": failovers,
        "code_costs_one_thread": costs,
        "ratios": _ratios(loads),
    }
    return result


def _ratios(loads: list[LoadResult]) -> dict[str, float]:
    """The issue's target figures: batching's gain at 16 robots and its p99 against one robot's."""
    by = {(load.server, load.robots): load for load in loads}
    off16, on16 = by.get(("edge, batching off", 16)), by.get(("edge, batching on", 16))
    on1 = by.get(("edge, batching on", 1))
    ratios: dict[str, float] = {}
    if off16 and on16:
        ratios["requests_per_s_on_over_off_16_robots"] = round(on16.requests_per_s / off16.requests_per_s, 3)
    if on16 and on1:
        ratios["p99_16_robots_over_1_robot_batching_on"] = round(on16.p99_ms / on1.p99_ms, 3)
    return ratios


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    servers = sorted({load["server"] for load in result["loads"]})
    for server in servers:
        rows = [load for load in result["loads"] if load["server"] == server]
        robots = [row["robots"] for row in rows]
        left.plot(robots, [row["requests_per_s"] for row in rows], marker="o", label=server)
        right.plot(robots, [row["p99_ms"] for row in rows], marker="o", label=server)
    for axes, label in ((left, "answered requests / s"), (right, "p99 latency (ms)")):
        axes.set_xscale("log", base=2)
        axes.set_xlabel("robots sending back to back")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
    left.legend(fontsize=8)
    split = result["split"]
    machine = result["machine"]
    figure.suptitle(
        f"{split['model']} at {split['point']}, {split['bits']} bits; {machine['cpus']} CPUs ({machine['host']})",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--point", default="features.10")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--robots", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--triton-threads", type=int, default=0, help="ONNX Runtime threads in Triton's function")
    parser.add_argument("--failover-timeout-s", type=float, default=1.0, help="the robot's ROBOT_EDGE_TIMEOUT_S")
    parser.add_argument("--failover-seconds", type=float, default=9.0, help="each failover run (the event at 1/3)")
    parser.add_argument("--quick", action="store_true", help="1 and 16 robots, 2 s each, results in tmp/")
    args = parser.parse_args()
    if args.quick:
        args.robots, args.seconds, args.failover_seconds = [1, 16], 2.0, 4.5
    stem = f"serving-{dt.date.today().isoformat()}-{socket.gethostname()}"
    out = (RESULTS / "tmp" if args.quick else RESULTS) / f"{stem}.json"
    result = run(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
