"""What the reliability tests share: services as real processes that can be killed and restarted on the same
port and data directory, resident memory of a process, the JSON log lines a service wrote, and a tiny split
registered, cut and deployed through the real splitter API."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import HTTP_TIMEOUT_S, SAMPLES, tiny_classifier
from tools.local_stack import LocalStack, ServiceProcess, free_port

STARTUP_S = 120.0
# The tests share the machine with other work; every deadline below is generous on purpose.
TINY_ONNX = tiny_classifier().SerializeToString()
TINY_SHAPE = "1,3,32,32"
COFFEE = (SAMPLES / "coffee.jpg").read_bytes()


def start_service(
    module: str, prefix: str, data_dir: Path, port: int | None = None, name: str | None = None, **settings: str
) -> ServiceProcess:
    """Start one service on ``port`` (a free one by default), configured only through its environment."""
    port = port or free_port()
    env = dict(os.environ)
    env.update({f"{prefix}_HOST": "127.0.0.1", f"{prefix}_PORT": str(port), f"{prefix}_DATA_DIR": str(data_dir)})
    env.update({f"{prefix}_{key.upper()}": value for key, value in settings.items()})
    label = name or prefix.lower()
    service = ServiceProcess(label, module, f"http://127.0.0.1:{port}", env, data_dir.parent / f"{label}.log")
    service.start(sys.executable)
    try:
        service.wait_healthy(time.monotonic() + STARTUP_S)
    except BaseException:
        service.stop()
        raise
    return service


def restart(service: ServiceProcess) -> ServiceProcess:
    """The same service again: same module, environment (so port and data directory) and log file."""
    again = ServiceProcess(service.name, service.module, service.url, service.env, service.log_path)
    deadline = time.monotonic() + STARTUP_S
    while True:  # the port of a killed process is free at once (SO_REUSEADDR), but be patient with the kernel
        again.start(sys.executable)
        try:
            again.wait_healthy(deadline)
            return again
        except RuntimeError:
            if time.monotonic() > deadline or "address already in use" not in again.log_tail().lower():
                raise
            time.sleep(0.5)


def kill9(service: ServiceProcess) -> None:
    """SIGKILL: no shutdown handler, no flushing, exactly what a crash or the OOM killer does."""
    assert service.process is not None and service.process.poll() is None, f"{service.name} is not running"
    os.kill(service.process.pid, signal.SIGKILL)
    service.process.wait(30)


def pid_of(service: ServiceProcess) -> int:
    assert service.process is not None
    return service.process.pid


def vm_rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS is in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def log_lines(service: ServiceProcess) -> list[str]:
    if not service.log_path.exists():
        return []
    return service.log_path.read_text(errors="replace").splitlines()


def json_log_entries(service: ServiceProcess) -> list[dict[str, Any]]:
    entries = []
    for line in log_lines(service):
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def wait_for_log_entry(service: ServiceProcess, request_id: str, message_part: str, timeout_s: float = 30.0) -> None:
    """The access line is written just after the response goes out, so it may lag the client by a moment."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in json_log_entries(service):
            if entry.get("request_id") == request_id and message_part in str(entry.get("message", "")):
                return
        time.sleep(0.1)
    raise AssertionError(
        f"{service.name} logged no line with request_id {request_id} and {message_part!r}:\n{service.log_tail()}"
    )


@dataclass(frozen=True)
class Deployed:
    model_id: str
    split_id: str


def register_split_deploy(splitter_url: str, headers: dict[str, str] | None = None) -> Deployed:
    """Upload the tiny classifier, cut it after ``block`` at 4 bits, deploy the split to edge and robot."""
    with httpx.Client(base_url=splitter_url, timeout=HTTP_TIMEOUT_S, headers=headers or {}) as client:
        model = client.post(
            "/api/models",
            files={"file": ("tiny.onnx", TINY_ONNX)},
            data={"input_shape": TINY_SHAPE, "task": "classification"},
        )
        assert model.status_code == 201, model.text
        model_id = model.json()["id"]
        split = client.post(f"/api/models/{model_id}/splits", json={"split_point": "block", "bits": 4})
        assert split.status_code == 201, split.text
        split_id = split.json()["id"]
        deploy = client.post(f"/api/splits/{split_id}/deploy")
        assert deploy.status_code == 200, deploy.text
    return Deployed(model_id=model_id, split_id=split_id)


@dataclass(frozen=True)
class OpenStack:
    stack: LocalStack
    deployed: Deployed

    def service(self, name: str) -> ServiceProcess:
        return next(s for s in self.stack.services if s.name == name)

    @property
    def splitter(self) -> ServiceProcess:
        return self.service("splitter")

    @property
    def robot(self) -> ServiceProcess:
        return self.service("robot")

    @property
    def edge(self) -> ServiceProcess:
        return self.service("edge")
