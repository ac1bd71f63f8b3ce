"""Reading ONNX Runtime's profile and scaling per-node times (pure: no timing is asserted)."""

from __future__ import annotations

from typing import Any

import pytest

from common.profiling import node_profile_provider, parse_node_profile, scale_nodes


def run(ts: int, nodes: dict[str, int]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"cat": "Session", "name": "model_run", "ts": ts, "dur": 100}]
    for offset, (name, dur) in enumerate(nodes.items()):
        events.append({"cat": "Node", "name": f"{name}_kernel_time", "ts": ts + offset + 1, "dur": dur})
        events.append({"cat": "Node", "name": f"{name}_fence_before", "ts": ts + offset + 1, "dur": 5})
    return events


def test_warmup_runs_are_dropped_and_the_rest_averaged() -> None:
    events = [{"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 50}]
    events += run(1000, {"conv": 9000, "relu": 9000})  # warm-up: slow, must not count
    events += run(2000, {"conv": 2000, "relu": 100})
    events += run(3000, {"conv": 4000, "relu": 300})
    nodes, runs = parse_node_profile(events, warmup=1)
    assert runs == 2
    assert nodes == {"conv": pytest.approx(3.0), "relu": pytest.approx(0.2)}


def test_no_runs_gives_nothing() -> None:
    assert parse_node_profile([], warmup=2) == ({}, 0)


def test_scaled_nodes_sum_to_the_whole_model_time() -> None:
    scaled = scale_nodes({"a": 1.0, "b": 3.0}, total_ms=2.0)
    assert scaled == {"a": pytest.approx(0.5), "b": pytest.approx(1.5)}
    assert scale_nodes({}, 5.0) == {}


def test_tensorrt_shares_come_from_another_provider() -> None:
    assert node_profile_provider("CPUExecutionProvider") == "CPUExecutionProvider"
    assert node_profile_provider("TensorrtExecutionProvider") in ("CUDAExecutionProvider", "CPUExecutionProvider")
