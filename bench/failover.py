"""How long a robot with two edges takes to fail over when the one it uses dies (kill -9) or hangs (SIGSTOP).

A real robot (``ROBOT_EDGE_URL=a,b``, ``ROBOT_EDGE_TIMEOUT_S``) and two real edges holding the split; a client
sends a photo to the robot back to back; after ``before_s`` the edge that answered last is killed or stopped.
Per event: the frames answered and refused, the longest frame after the event (the one that met the dead or hung
edge), and how many frames after that one went to the live edge.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from tools.local_stack import ServiceProcess, free_port

START_TIMEOUT_S = 120


@dataclass
class FailoverResult:
    event: str  # "kill -9" or "SIGSTOP"
    robot_timeout_s: float
    frames: int
    errors: int
    longest_after_ms: float  # the frame that met the failed edge
    median_before_ms: float
    frames_after_on_live_edge: int
    frames_after_elsewhere: int


def _service(module: str, prefix: str, root: Path, **settings: str) -> ServiceProcess:
    port = free_port()
    env = {**os.environ, f"{prefix}_HOST": "127.0.0.1", f"{prefix}_PORT": str(port), f"{prefix}_DATA_DIR": str(root)}
    env |= {f"{prefix}_{key.upper()}": value for key, value in settings.items()}
    env |= {f"{prefix}_LOG_LEVEL": "warning", f"{prefix}_PROVIDERS": "cpu"}
    service = ServiceProcess(prefix.lower(), module, f"http://127.0.0.1:{port}", env, root / "service.log")
    service.start(sys.executable)
    service.wait_healthy(time.monotonic() + START_TIMEOUT_S)
    return service


def measure(root: Path, bundle: bytes, image: bytes, event: str, timeout_s: float, seconds: float) -> FailoverResult:
    with ExitStack() as stack:
        edges = [_service("edge_inference", "EDGE", root / f"edge-{i}") for i in range(2)]
        for edge in edges:
            stack.callback(_stop, edge)
            httpx.post(f"{edge.url}/api/bundles", files={"bundle": ("b.zip", bundle)}, timeout=120).raise_for_status()
        urls = ",".join(edge.url for edge in edges)
        robot = _service("robot_inference", "ROBOT", root / "robot", edge_url=urls, edge_timeout_s=str(timeout_s))
        stack.callback(_stop, robot)
        httpx.post(f"{robot.url}/api/bundles", files={"bundle": ("b.zip", bundle)}, timeout=120).raise_for_status()
        log: list[tuple[float, float, str | None]] = []  # (sent at, ms, edge that answered or None)
        failed_url: str | None = None
        event_at = float("inf")
        began = time.monotonic()
        with httpx.Client(base_url=robot.url, timeout=timeout_s * 4 + 30) as client:
            while time.monotonic() - began < seconds:
                if failed_url is None and time.monotonic() - began > seconds / 3 and log and log[-1][2]:
                    failed_url = log[-1][2]
                    failed = next(edge for edge in edges if edge.url == failed_url)
                    assert failed.process is not None
                    failed.process.send_signal(signal.SIGKILL if event == "kill -9" else signal.SIGSTOP)
                    event_at = time.monotonic() - began
                sent = time.monotonic() - began
                start = time.perf_counter()
                response = client.post("/api/infer", files={"image": ("photo.jpg", image)}, data={"mode": "split"})
                ms = (time.perf_counter() - start) * 1000.0
                answered = response.json().get("edge_url") if response.status_code == 200 else None
                log.append((sent, ms, answered))
    before = sorted(ms for sent, ms, _ in log if sent < event_at)
    after = [(ms, url) for sent, ms, url in log if sent >= event_at]
    live = [url for _, url in after[1:] if url is not None and url != failed_url]
    return FailoverResult(
        event=event,
        robot_timeout_s=timeout_s,
        frames=len(log),
        errors=sum(1 for _, _, url in log if url is None),
        longest_after_ms=round(max((ms for ms, _ in after), default=float("nan")), 1),
        median_before_ms=round(before[len(before) // 2], 1) if before else float("nan"),
        frames_after_on_live_edge=len(live),
        frames_after_elsewhere=len(after) - 1 - len(live) if after else 0,
    )


def _stop(service: ServiceProcess) -> None:
    if service.process is not None and service.process.poll() is None:
        service.process.send_signal(signal.SIGCONT)  # a stopped process cannot take the interrupt
    service.stop()
