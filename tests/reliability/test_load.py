"""A bounded load test per service: concurrent clients on loopback for a fixed time (and at most a fixed number
of requests), every answer identical to the serial answer for the same input, resident memory stable.

Resident memory (VmRSS) is read before the warm-up, after it (thread pools, sessions and allocator arenas have
grown to their working size by then) and after the run; growth during the run must stay under a generous bound.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from common.manifest import parse_manifest
from common.tensor_records import encode_features
from common.wire import encode_frame
from tests.reliability.harness import COFFEE, OpenStack, pid_of, vm_rss_bytes
from tests.support import CHELSEA, HTTP_TIMEOUT_S, robot_infer
from tools.local_stack import ServiceProcess

CLIENTS = 8
SECONDS = 6.0
MAX_REQUESTS = 2000
WARM_UP_REQUESTS = 4 * CLIENTS
MAX_RSS_GROWTH = 64 * 2**20
MiB = 2**20

# One request: given a client and a request number, return a problem (None when the answer is right).
Request = Callable[[httpx.Client, int], "str | None"]


@dataclass
class LoadReport:
    service: str
    requests: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rss: dict[str, int] = field(default_factory=dict)

    @property
    def growth(self) -> int:
        return self.rss["after run"] - self.rss["after warm-up"]

    def summary(self) -> str:
        rss = ", ".join(f"{stage} {value / MiB:.1f} MiB" for stage, value in self.rss.items())
        return (
            f"{self.service}: {self.requests} requests from {CLIENTS} clients in {self.seconds:.1f} s "
            f"({self.requests / max(self.seconds, 1e-9):.0f}/s), {len(self.problems)} problems; "
            f"RSS {rss}; growth during the run {self.growth / MiB:+.1f} MiB"
        )


def hammer(request: Request, clients: int, seconds: float, max_requests: int) -> tuple[int, list[str], float]:
    """``clients`` threads, each with its own keep-alive connection, until the time or the request budget ends."""
    lock = threading.Lock()
    issued = 0
    problems: list[str] = []
    start = time.monotonic()
    deadline = start + seconds

    def worker() -> None:
        nonlocal issued
        with httpx.Client(timeout=HTTP_TIMEOUT_S) as client:
            while time.monotonic() < deadline:
                with lock:
                    if issued >= max_requests:
                        return
                    number = issued
                    issued += 1
                try:
                    problem = request(client, number)
                except httpx.HTTPError as exc:
                    problem = f"request {number}: {type(exc).__name__}: {exc}"
                if problem is not None:
                    with lock:
                        problems.append(problem)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return issued, problems, time.monotonic() - start


def load(service: ServiceProcess, request: Request) -> LoadReport:
    report = LoadReport(service.name)
    pid = pid_of(service)
    report.rss["before warm-up"] = vm_rss_bytes(pid)
    _, problems, _ = hammer(request, CLIENTS, SECONDS, WARM_UP_REQUESTS)
    assert problems == [], problems[:5]
    report.rss["after warm-up"] = vm_rss_bytes(pid)
    report.requests, report.problems, report.seconds = hammer(request, CLIENTS, SECONDS, MAX_REQUESTS)
    report.rss["after run"] = vm_rss_bytes(pid)
    print("\n" + report.summary())
    return report


def check(report: LoadReport) -> None:
    assert report.problems == [], f"{len(report.problems)} problems, first: {report.problems[:5]}"
    assert report.requests >= CLIENTS, "the load test barely ran"
    assert report.growth < MAX_RSS_GROWTH, report.summary()


def problem_with(response: httpx.Response, number: int, expected: object, got: Callable[[Any], object]) -> str | None:
    if response.status_code != 200:
        return f"request {number}: HTTP {response.status_code}: {response.text[:200]}"
    answer = got(response.json())
    if answer != expected:
        return f"request {number}: answer differs from the serial one: {answer} != {expected}"
    return None


def test_edge_under_load(open_stack: OpenStack) -> None:
    edge = open_stack.edge
    manifest = parse_manifest(
        httpx.get(
            f"{open_stack.splitter.url}/api/splits/{open_stack.deployed.split_id}", timeout=HTTP_TIMEOUT_S
        ).content
    )
    cut = manifest.cut[0]
    clip = manifest.quantization.range_of(cut.name)
    rng = np.random.default_rng(7)
    frames = []
    for index in range(4):
        features = rng.uniform(clip.lo, clip.hi, size=[1, *cut.shape[1:]]).astype(np.float32)
        records = encode_features(manifest, [features])  # as the robot encodes them
        frames.append(encode_frame(manifest.id, records, request_id=f"{index:032x}"))
    headers = {"content-type": "application/octet-stream"}

    def post(client: httpx.Client, frame: bytes) -> httpx.Response:
        return client.post(f"{edge.url}/api/infer", content=frame, headers=headers)

    with httpx.Client(timeout=HTTP_TIMEOUT_S) as serial:
        expected = [(post(serial, frame).json()["predictions"], f"{index:032x}") for index, frame in enumerate(frames)]
    assert len({str(answer) for answer, _ in expected}) == len(frames), "the inputs must give different answers"

    def request(client: httpx.Client, number: int) -> str | None:
        index = number % len(frames)
        return problem_with(
            post(client, frames[index]), number, expected[index], lambda body: (body["predictions"], body["request_id"])
        )

    check(load(edge, request))


def test_robot_under_load(open_stack: OpenStack) -> None:
    robot = open_stack.robot
    cases = [(image, mode) for image in (CHELSEA, COFFEE) for mode in ("split", "all-robot", "all-edge")]
    with httpx.Client(timeout=HTTP_TIMEOUT_S) as serial:
        expected = []
        for image, mode in cases:
            response = robot_infer(robot.url, image=image, mode=mode, client=serial)
            assert response.status_code == 200, response.text
            expected.append((response.json()["predictions"], mode))

    def request(client: httpx.Client, number: int) -> str | None:
        image, mode = cases[number % len(cases)]
        response = robot_infer(robot.url, image=image, mode=mode, client=client)
        return problem_with(response, number, expected[number % len(cases)], lambda b: (b["predictions"], b["mode"]))

    check(load(robot, request))


def test_splitter_under_load(open_stack: OpenStack) -> None:
    splitter = open_stack.splitter
    split_id = open_stack.deployed.split_id
    with httpx.Client(base_url=splitter.url, timeout=HTTP_TIMEOUT_S) as serial:
        manifest = serial.get(f"/api/splits/{split_id}").json()
        answers = {}
        for name, image in (("chelsea", CHELSEA), ("coffee", COFFEE)):
            response = serial.post("/api/infer", files={"image": (f"{name}.jpg", image)})
            assert response.status_code == 200, response.text
            answers[name] = (response.json()["predictions"], response.json()["reference"])

    def request(client: httpx.Client, number: int) -> str | None:
        kind = number % 4
        if kind == 0:
            return problem_with(client.get(f"{splitter.url}/api/splits/{split_id}"), number, manifest, lambda b: b)
        if kind == 1:
            tail = client.get(f"{splitter.url}/api/splits/{split_id}/tail.onnx")
            if hashlib.sha256(tail.content).hexdigest() != manifest["tail_sha256"]:
                return f"request {number}: tail.onnx differs ({tail.status_code})"
            return None
        name, image = ("chelsea", CHELSEA) if kind == 2 else ("coffee", COFFEE)
        response = client.post(f"{splitter.url}/api/infer", files={"image": (f"{name}.jpg", image)})
        return problem_with(response, number, answers[name], lambda b: (b["predictions"], b["reference"]))

    check(load(splitter, request))
