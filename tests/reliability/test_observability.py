"""Request ids that follow one inference through all three services' logs, JSON log lines, and the Prometheus
metrics of each service counting exactly what was done."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable

import httpx

from tests.reliability.harness import COFFEE, OpenStack, log_lines, wait_for_log_entry
from tests.support import CHELSEA, HTTP_TIMEOUT_S, Samples, delta, robot_infer, scrape, value

# The robot sends its frames over the edge's WebSocket (ROBOT_EDGE_CHANNEL=websocket, the default).
EDGE_FRAME_LINE = "WS /api/frames -> 200"
LOG_KEYS = {"time", "level", "logger", "request_id", "message"}


def test_one_request_id_through_splitter_robot_and_edge(open_stack: OpenStack) -> None:
    request_id = uuid.uuid4().hex
    response = httpx.post(
        f"{open_stack.splitter.url}/api/infer",
        files={"image": ("c.jpg", CHELSEA)},
        headers={"x-request-id": request_id},
        timeout=HTTP_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id
    assert response.json()["request_id"] == request_id
    for service in (open_stack.splitter, open_stack.robot):
        wait_for_log_entry(service, request_id, "POST /api/infer -> 200")
    wait_for_log_entry(open_stack.edge, request_id, EDGE_FRAME_LINE)


def test_the_robot_makes_an_id_when_none_is_given_and_the_edge_logs_it(open_stack: OpenStack) -> None:
    response = robot_infer(open_stack.robot.url)
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0
    assert response.json()["request_id"] == request_id
    wait_for_log_entry(open_stack.robot, request_id, "POST /api/infer -> 200")
    wait_for_log_entry(open_stack.edge, request_id, EDGE_FRAME_LINE)


def test_a_w3c_traceparent_names_the_request_and_travels_to_the_edge(open_stack: OpenStack) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    response = robot_infer(open_stack.robot.url, headers={"traceparent": traceparent})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == trace_id and response.json()["request_id"] == trace_id
    version, answered_trace, span, flags = response.headers["traceparent"].split("-")
    assert (version, answered_trace, flags) == ("00", trace_id, "01") and len(span) == 16
    wait_for_log_entry(open_stack.edge, trace_id, EDGE_FRAME_LINE)


def test_an_invalid_traceparent_is_ignored(open_stack: OpenStack) -> None:
    response = robot_infer(open_stack.robot.url, headers={"traceparent": f"00-{'0' * 32}-{'1' * 16}-01"})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] != "0" * 32 and len(response.headers["x-request-id"]) == 32


def test_an_id_that_a_frame_cannot_carry_is_still_followed(open_stack: OpenStack) -> None:
    """A frame has room for 16 bytes; any other id is answered and logged beside the one the frame carried."""
    caller_id = "checkout-7/robot-arm"
    response = robot_infer(open_stack.robot.url, headers={"x-request-id": caller_id})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == caller_id
    frame_id = response.json()["request_id"]
    assert len(frame_id) == 32
    wait_for_log_entry(open_stack.edge, frame_id, EDGE_FRAME_LINE)
    wait_for_log_entry(open_stack.robot, caller_id, frame_id)


def test_every_log_line_is_one_json_object_with_a_request_id(open_stack: OpenStack) -> None:
    for service in (open_stack.splitter, open_stack.robot, open_stack.edge):
        lines = log_lines(service)
        assert lines
        for number, line in enumerate(lines, 1):
            if not line.startswith("{") and ":onnxruntime:" in line:
                continue  # ONNX Runtime's C++ logger writes to stderr itself (GPU provider notes, for instance)
            entry = json.loads(line)
            assert set(entry) >= LOG_KEYS, f"{service.log_path}:{number}: {line[:200]}"


def stage_counts(before: Samples, after: Samples, service: str, stages: Iterable[tuple[str, str]]) -> dict[str, float]:
    return {
        f"{where}:{stage}": delta(
            before, after, "splitbot_stage_seconds_count", service=service, stage=stage, where=where
        )
        for stage, where in stages
    }


def test_metrics_count_requests_stages_and_bytes_exactly(open_stack: OpenStack) -> None:
    robot, edge, splitter = open_stack.robot, open_stack.edge, open_stack.splitter
    before = {s.name: scrape(s) for s in (robot, edge, splitter)}
    results = []
    for image in (CHELSEA, COFFEE, CHELSEA):
        response = robot_infer(robot.url, image=image)
        assert response.status_code == 200, response.text
        results.append(response.json())
    assert httpx.get(f"{splitter.url}/api/models", timeout=HTTP_TIMEOUT_S).status_code == 200
    assert httpx.get(f"{splitter.url}/api/models/0123456789abcdef", timeout=HTTP_TIMEOUT_S).status_code == 404
    after = {s.name: scrape(s) for s in (robot, edge, splitter)}
    runs = len(results)

    robot_infer_labels = {"route": "/api/infer", "method": "POST", "status": "200"}
    edge_frame_labels = {"route": "/api/frames", "method": "WS", "status": "200"}
    for name, labels in (("robot", robot_infer_labels), ("edge", edge_frame_labels)):
        assert delta(before[name], after[name], "splitbot_requests_total", service=name, **labels) == runs
        route = labels["route"]
        assert delta(before[name], after[name], "splitbot_request_seconds_count", service=name, route=route) == runs
        assert value(after[name], "splitbot_request_seconds_sum", service=name, route=route) > 0

    robot_stages = [("decode", "robot"), ("head", "robot"), ("quantize", "robot"), ("network", "link")]
    robot_stages += [("parse", "edge"), ("dequantize", "edge"), ("tail", "edge")]
    assert set(stage_counts(before["robot"], after["robot"], "robot", robot_stages).values()) == {runs}
    edge_stages = [("parse", "edge"), ("dequantize", "edge"), ("tail", "edge"), ("postprocess", "edge")]
    assert set(stage_counts(before["edge"], after["edge"], "edge", edge_stages).values()) == {runs}

    sent = sum(r["bytes"]["sent"] for r in results)
    received = sum(r["bytes"]["received"] for r in results)
    assert sent > 0 and received > 0
    wire = "splitbot_wire_bytes_total"
    assert delta(before["robot"], after["robot"], wire, service="robot", direction="sent") == sent
    assert delta(before["robot"], after["robot"], wire, service="robot", direction="received") == received
    assert delta(before["edge"], after["edge"], wire, service="edge", direction="received") == sent
    assert delta(before["edge"], after["edge"], wire, service="edge", direction="sent") == received

    requests = "splitbot_requests_total"
    listing = {"service": "splitter", "route": "/api/models", "method": "GET", "status": "200"}
    missing = {"service": "splitter", "route": "/api/models/{model_id}", "method": "GET", "status": "404"}
    assert delta(before["splitter"], after["splitter"], requests, **listing) == 1
    assert delta(before["splitter"], after["splitter"], requests, **missing) == 1
