"""Requests against the running services, timed from the client's side, and their summaries.

Clients call from threads of this process; on the testbed those threads live in the robot's network namespace
(the camera sits beside the robot), so only the robot -> edge hop crosses the capped veth.
"""

from __future__ import annotations

import http.client
import socket
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from bench.netns import inside_netns
from bench.plans import overhead_ratio, predicted_ms
from bench.schema import EdgeThroughput, Plan, PlanRun
from bench.stats import percentile, summarize
from common.results import InferenceResult
from robot_inference.frame_channel import FrameChannel

LinkCounter = Callable[[], tuple[int, int, int]]


@dataclass(frozen=True)
class Sample:
    e2e_ms: float
    robot_ms: float
    edge_ms: float
    stages: dict[str, float]
    sent: int
    received: int


CAMERA_CLIENT = "http.client keep-alive, raw image body"


class RobotClient:
    """One keep-alive connection to the robot, as a camera process on the robot would hold it.

    The camera is user code, so it speaks the leanest HTTP at hand: the standard library's ``http.client``, the
    image as the raw body. (httpx as the camera's client costs 1.2 ms more per request than ``http.client`` on the
    benchmark VM after 20 ms of idle, as every request finds it: bench/hop_floor.py. That is the client's cost, not
    the system's, and it is left out of the figures.)
    """

    def __init__(self, base_url: str, image: bytes, timeout_s: float = 300.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout_s = timeout_s
        self.image = image
        self.connection: http.client.HTTPConnection | None = None

    def __enter__(self) -> RobotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.connection is not None:
            self.connection.close()

    def infer(self, plan: Plan, split_id: str) -> Sample:
        path = "/api/infer?" + urlencode({"mode": plan.mode, "split_id": split_id})
        start = time.perf_counter()
        status, body = self._post(path)
        e2e_ms = (time.perf_counter() - start) * 1000.0
        if status != 200:
            raise RuntimeError(f"robot answered {status} for {plan.key}: {body[:300]!r}")
        result = InferenceResult.model_validate_json(body)
        stages = {f"{s.where}:{s.name}": s.ms for s in result.stages}
        return Sample(
            e2e_ms=e2e_ms,
            robot_ms=sum(s.ms for s in result.stages if s.where == "robot"),
            edge_ms=sum(s.ms for s in result.stages if s.where == "edge"),
            stages=stages,
            sent=result.bytes.sent,
            received=result.bytes.received,
        )

    def _post(self, path: str) -> tuple[int, bytes]:
        try:
            return self._send(path)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The robot closes a connection idle past its keep-alive timeout (between plans): one fresh try.
            self._drop()
            return self._send(path)

    def _send(self, path: str) -> tuple[int, bytes]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            self.connection.request("POST", path, body=self.image, headers={"content-type": "image/jpeg"})
            response = self.connection.getresponse()
            return response.status, response.read()
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def measure(
    client: RobotClient, plan: Plan, split_id: str, requests: int, warmup: int, counter: LinkCounter | None
) -> tuple[list[Sample], tuple[float, float, float] | None]:
    """``warmup`` discarded requests, then ``requests`` timed ones; link bytes and drops per timed request."""
    for _ in range(warmup):
        client.infer(plan, split_id)
    before = counter() if counter is not None else None
    samples = [client.infer(plan, split_id) for _ in range(requests)]
    per_request: tuple[float, float, float] | None = None
    if counter is not None and before is not None:
        after = counter()
        up, down, drops = (now - then for now, then in zip(after, before, strict=True))
        per_request = (up / requests, down / requests, drops / requests)
    return samples, per_request


def plan_run(
    model: str, rate_mbit: float | None, plan: Plan, samples: list[Sample], link: tuple[float, float, float] | None
) -> PlanRun:
    """Summaries of one measured plan, with its prediction ``compute + bytes / rate`` when the link is capped.

    ``overhead_ratio`` is the median over requests of measured / predicted, each request against its own compute.
    """
    latency = summarize([s.e2e_ms for s in samples])
    robot_ms = statistics.median(s.robot_ms for s in samples)
    edge_ms = statistics.median(s.edge_ms for s in samples)
    names = sorted({name for s in samples for name in s.stages})
    stages = {name: round(statistics.median(s.stages.get(name, 0.0) for s in samples), 3) for name in names}
    sent, received = samples[-1].sent, samples[-1].received
    predicted = None
    ratio = None
    if rate_mbit is not None:
        # Per request, then the median: a request's compute varies (the robot's CPU quota, the neighbours), and
        # its own compute is what its latency should be held against.
        limits = [predicted_ms(s.robot_ms + s.edge_ms, s.sent + s.received, rate_mbit) for s in samples]
        predicted = round(statistics.median(limits), 3)
        ratio = round(statistics.median(overhead_ratio(s.e2e_ms, p) for s, p in zip(samples, limits, strict=True)), 4)
    return PlanRun(
        model=model,
        rate_mbit=rate_mbit or 0.0,
        plan=plan,
        status="measured",
        latency=latency,
        samples_ms=[round(s.e2e_ms, 3) for s in samples],
        bytes_sent=sent,
        bytes_received=received,
        link_bytes_up=round(link[0], 1) if link else None,
        link_bytes_down=round(link[1], 1) if link else None,
        link_drops=round(link[2], 2) if link else None,
        robot_ms=round(robot_ms, 3),
        edge_ms=round(edge_ms, 3),
        stages_ms=stages,
        predicted_ms=predicted,
        overhead_ratio=ratio,
    )


def edge_throughput(
    edge_url: str, model: str, plan: Plan, frame: bytes, clients: int, requests_per_client: int
) -> EdgeThroughput:
    """``clients`` robots sending the same frame back to back, all at once, each over its own frame socket (the
    robot's own ``FrameChannel``, as ROBOT_EDGE_CHANNEL=websocket sends them)."""
    start_line = threading.Barrier(clients + 1)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def robot() -> None:
        nonlocal errors
        channel = FrameChannel(edge_url, timeout_s=120.0)
        try:
            try:
                warm = channel.exchange(frame)  # connect + warm
                if warm.is_error:
                    raise RuntimeError(f"the edge refused the benchmark frame: {warm.body[:300]!r}")
            except BaseException:
                start_line.abort()  # the others, and the timer, must not wait for this robot forever
                raise
            start_line.wait()
            for _ in range(requests_per_client):
                start = time.perf_counter()
                reply = channel.exchange(frame)
                elapsed = (time.perf_counter() - start) * 1000.0
                with lock:
                    if reply.is_error:
                        errors += 1
                    else:
                        latencies.append(elapsed)
        finally:
            channel.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(robot) for _ in range(clients)]
        start_line.wait()
        began = time.perf_counter()
        for future in futures:
            future.result()
        seconds = time.perf_counter() - began
    done = len(latencies)
    return EdgeThroughput(
        model=model,
        plan=plan,
        channel="websocket",
        clients=clients,
        requests=done,
        seconds=round(seconds, 3),
        requests_per_s=round(done / seconds, 2),
        p50_ms=round(percentile(latencies, 50), 3),
        p99_ms=round(percentile(latencies, 99), 3),
        errors=errors,
    )


def link_goodput(
    sender_ns: str | None, receiver_ns: str | None, receiver_ip: str, rate_mbit: float, seconds: float = 1.0
) -> float:
    """Mbit/s a raw TCP stream reaches through the link: what tbf really lets through at ``rate_mbit``."""
    nbytes = int(rate_mbit * 1e6 / 8 * seconds)
    ready = threading.Event()
    port_box: list[int] = []

    def receive() -> None:
        with inside_netns(receiver_ns), socket.create_server((receiver_ip, 0)) as server:
            server.settimeout(60.0)
            port_box.append(server.getsockname()[1])
            ready.set()
            connection, _ = server.accept()
            with connection:
                connection.settimeout(60.0)
                got = 0
                while got < nbytes:
                    chunk = connection.recv(1 << 20)
                    if not chunk:
                        break
                    got += len(chunk)
                connection.sendall(b"k")

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    if not ready.wait(10.0):
        raise RuntimeError("the goodput receiver did not start")
    payload = b"\0" * nbytes
    with inside_netns(sender_ns), socket.create_connection((receiver_ip, port_box[0]), timeout=60.0) as sender:
        start = time.perf_counter()
        sender.sendall(payload)
        sender.recv(1)
        elapsed = time.perf_counter() - start
    receiver.join(10.0)
    return round(nbytes * 8 / elapsed / 1e6, 2)
