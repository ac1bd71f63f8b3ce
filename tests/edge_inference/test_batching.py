"""Dynamic batching on the edge with real ONNX Runtime sessions: a deliberately slow tail, so the queue is real."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from common.deployments import Deployment
from common.errors import DeadlineExceeded, Overloaded
from common.sessions import LoadedSession
from common.tensor_records import encode_features
from common.wire import encode_frame
from edge_inference.batcher import BatchedRun, TailBatcher
from tests.edge_inference.support import features, post
from tests.support import TinySplit, running_service, upload_bundle

WIDTH = 1024


def slow_tail(repeats: int) -> onnx.ModelProto:
    """x [batch, WIDTH] -> y [batch, WIDTH]: ``repeats`` dense layers, slow per run and nearly flat per row."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((WIDTH, WIDTH)) / 32).astype(np.float32), "w")
    nodes, current = [], "x"
    for i in range(repeats):
        out = "y" if i == repeats - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [current, "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTH])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def deployment_of(model: onnx.ModelProto, split: TinySplit) -> Deployment:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return Deployment(split.manifest, LoadedSession(session, "CPUExecutionProvider", ["x"], ["y"]), None)


@pytest.fixture(scope="module")
def slow(tiny_split: TinySplit) -> Deployment:
    return deployment_of(slow_tail(3000), tiny_split)  # about half a second a run


def rows(seed: int, count: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((count, WIDTH)).astype(np.float32)}


def test_frames_meeting_a_busy_tail_run_as_one_and_each_gets_its_own_rows(slow: Deployment) -> None:
    batcher = TailBatcher(window_s=5.0, max_rows=16, max_waiting=64)
    alone = [slow.part.run(rows(seed))[0] for seed in range(8)]
    with ThreadPoolExecutor(8) as pool:
        runs: list[BatchedRun] = list(pool.map(lambda seed: batcher.run(slow, rows(seed)), range(8)))
    for run, expected in zip(runs, alone, strict=True):
        np.testing.assert_allclose(run.outputs[0], expected, rtol=1e-5, atol=1e-6)
    assert max(run.batch_rows for run in runs) > 1  # frames waited for the busy tail and ran together
    executions = sum(1 / run.batch_rows for run in runs)
    assert executions < 8
    assert any(run.queue_ms > 0 for run in runs) and all(run.queue_ms < 5000 for run in runs)


def test_a_lone_frame_runs_at_once_and_batching_can_be_off(slow: Deployment) -> None:
    for max_rows in (16, 1):
        run = TailBatcher(window_s=5.0, max_rows=max_rows, max_waiting=4).run(slow, rows(1, count=3))
        assert run.batch_rows == 3 and run.outputs[0].shape == (3, WIDTH)
        assert run.queue_ms < 100  # a free tail with nothing on its way never waits for the window


def test_a_frame_waits_for_frames_announced_on_their_way(slow: Deployment) -> None:
    """A frame at a free tail waits (at most the window) for a frame still being decoded, and they run as one."""
    batcher = TailBatcher(window_s=5.0, max_rows=16, max_waiting=4)
    with ThreadPoolExecutor(2) as pool, batcher.incoming(slow.manifest.id) as ticket:
        first = pool.submit(batcher.run, slow, rows(0))
        time.sleep(0.2)  # the second frame is still "being decoded"
        second = batcher.run(slow, rows(1), None, ticket)
        assert first.result().batch_rows == second.batch_rows == 2
        assert first.result().queue_ms >= 150
    alone = TailBatcher(window_s=0.3, max_rows=16, max_waiting=4)
    with alone.incoming(slow.manifest.id):  # announced, but it never arrives: the window bounds the wait
        began = time.monotonic()
        assert alone.run(slow, rows(2)).batch_rows == 1
        assert 0.25 < time.monotonic() - began < 3


def test_the_queue_is_bounded_and_a_stale_frame_is_not_run(slow: Deployment) -> None:
    batcher = TailBatcher(window_s=30.0, max_rows=16, max_waiting=1)
    started = threading.Event()

    def first() -> BatchedRun:
        started.set()
        return batcher.run(slow, rows(0))

    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(first)
        started.wait()
        time.sleep(0.05)  # the first frame is running now: the tail is busy
        begun = time.monotonic()
        stale = pool.submit(batcher.run, slow, rows(1), time.monotonic() + 0.01)
        time.sleep(0.05)
        with pytest.raises(Overloaded, match="EDGE_BATCH_QUEUE"):
            batcher.run(slow, rows(2))  # one frame already waits: the queue is full
        with pytest.raises(DeadlineExceeded, match="was not run"):
            stale.result()
        waited = time.monotonic() - begun
        first_run = running.result()
    # it was refused as soon as the tail was free, not after a run of its own
    assert first_run.batch_rows == 1 and waited < 30


def test_the_edge_answers_every_robot_its_own_frame_and_refuses_stale_ones(
    tmp_path: Path, tiny_split: TinySplit
) -> None:
    manifest = tiny_split.manifest
    frames = [
        encode_frame(manifest.id, encode_features(manifest, [features(tiny_split, seed=seed)])) for seed in range(12)
    ]
    with running_service("edge_inference", "EDGE", tmp_path, batch_window_ms="50") as edge:
        upload_bundle(edge, tiny_split.zip_bytes)
        alone = [post(edge, frame).json() for frame in frames]
        with ThreadPoolExecutor(12) as pool:
            together = list(pool.map(lambda frame: post(edge, frame).json(), frames))
        stale = httpx.post(f"{edge.url}/api/infer", content=frames[0], headers={"X-Deadline-Ms": "0.001"}, timeout=30)
        garbled = httpx.post(f"{edge.url}/api/infer", content=frames[0], headers={"X-Deadline-Ms": "soon"}, timeout=30)
    for mine, expected in zip(together, alone, strict=True):
        assert [p["label"] for p in mine["predictions"]] == [p["label"] for p in expected["predictions"]]
        np.testing.assert_allclose(
            [p["probability"] for p in mine["predictions"]],
            [p["probability"] for p in expected["predictions"]],
            atol=1e-6,
        )
        assert 1 <= mine["tail_batch"] <= 12
        assert any(stage["name"] == "batch queue" for stage in mine["stages"])
    assert stale.status_code == 504 and stale.json()["error"] == "deadline_exceeded"
    assert garbled.status_code == 400 and "X-Deadline-Ms" in garbled.json()["detail"]
