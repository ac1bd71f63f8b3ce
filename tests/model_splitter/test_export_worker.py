"""Exports in a worker process: a worker that dies fails its own registration only; the next one gets a fresh one."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from common.errors import UnprocessableModel
from model_splitter.intake.worker import ExportWorker
from tests.support import running_service


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_dead_worker_is_that_call_s_error_and_the_next_call_gets_a_fresh_worker() -> None:
    worker = ExportWorker()
    try:
        first = worker.run(os.getpid)
        assert first != os.getpid()
        with pytest.raises(UnprocessableModel, match="export worker process died"):
            worker.run(die)
        second = worker.run(os.getpid)
        assert second not in (first, os.getpid())
    finally:
        worker.close()


def worker_pids(parent: int) -> list[int]:
    """The splitter's spawned export worker (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def test_a_registration_whose_worker_is_killed_answers_422_and_the_service_goes_on(tmp_path: Path) -> None:
    with running_service("model_splitter", "SPLITTER", tmp_path) as splitter:
        assert splitter.process is not None
        client = httpx.Client(base_url=splitter.url, timeout=300)
        answers: list[httpx.Response] = []
        registering = threading.Thread(
            target=lambda: answers.append(client.post("/api/models", data={"arch": "resnet50"})), daemon=True
        )
        registering.start()
        deadline = time.monotonic() + 120
        while not worker_pids(splitter.process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        (pid,) = worker_pids(splitter.process.pid)
        time.sleep(2.0)  # inside the export now
        os.kill(pid, signal.SIGKILL)  # what the kernel's OOM killer does
        registering.join(120)
        (killed,) = answers
        assert killed.status_code == 422 and "export worker process died" in killed.json()["detail"]
        assert client.get("/api/models").json() == []  # nothing half-stored
        again = client.post("/api/models", data={"arch": "resnet18", "input_shape": "1,3,64,64"})
        assert again.status_code == 201, again.text
        assert worker_pids(splitter.process.pid) and pid not in worker_pids(splitter.process.pid)
        client.close()
