"""Run all three services on one machine: ``make up`` and the integration tests both use this.

Each service runs as its own uvicorn process, configured only through its environment (exactly as a container
would be), with its logs in ``<data dir>/logs``. ``python -m tools.local_stack`` starts them, registers
a default model, creates and deploys a default split, prints the URLs and waits for Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from tools.assets import ASSETS, ensure

STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    name: str
    module: str
    url: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)
    health_path: str = "/health"  # 200 here means ready

    def start(self, python: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process owns it for its whole life
        self.process = subprocess.Popen(
            [python, "-m", self.module, *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}{self.health_path}", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become healthy at {self.url}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class LocalStack:
    data_dir: Path
    host: str = "127.0.0.1"
    splitter_port: int = 8000
    robot_port: int = 8001
    edge_port: int = 8002
    extra_env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable
    services: list[ServiceProcess] = field(default_factory=list)

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    @property
    def splitter_url(self) -> str:
        return self.url(self.splitter_port)

    @property
    def robot_url(self) -> str:
        return self.url(self.robot_port)

    @property
    def edge_url(self) -> str:
        return self.url(self.edge_port)

    def _env(self, prefix: str, port: int, data: str, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {f"{prefix}_HOST": self.host, f"{prefix}_PORT": str(port), f"{prefix}_DATA_DIR": str(self.data_dir / data)}
        )
        env.update({f"{prefix}_{key.upper()}": value for key, value in extra.items()})
        env.update(self.extra_env)
        return env

    def start(self) -> LocalStack:
        logs = self.data_dir / "logs"
        self.services = [
            ServiceProcess(
                "edge",
                "edge_inference",
                self.edge_url,
                self._env("EDGE", self.edge_port, "edge", splitter_url=self.splitter_url),
                logs / "edge.log",
            ),
            ServiceProcess(
                "robot",
                "robot_inference",
                self.robot_url,
                self._env("ROBOT", self.robot_port, "robot", splitter_url=self.splitter_url, edge_url=self.edge_url),
                logs / "robot.log",
            ),
            ServiceProcess(
                "splitter",
                "model_splitter",
                self.splitter_url,
                self._env("SPLITTER", self.splitter_port, "splitter", robot_url=self.robot_url, edge_url=self.edge_url),
                logs / "splitter.log",
            ),
        ]
        try:
            for service in self.services:
                service.start(self.python)
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            for service in self.services:
                service.wait_healthy(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


@dataclass(frozen=True)
class DefaultModel:
    """The split ``make up`` deploys: a torchvision architecture, its weights, where to cut, at how many bits."""

    arch: str
    split_point: str
    bits: int
    weights: Path | None = None
    calibrate: bool = True


def make_up_model(trained: bool = True) -> DefaultModel:
    """What ``make up`` deploys: torchvision's ImageNet mobilenet_v2, cut after features.7 at 4 calibrated bits."""
    return DefaultModel("mobilenet_v2", "features.7", 4, ensure("mobilenet_v2") if trained else None)


def deploy_default(splitter_url: str, model: DefaultModel) -> tuple[str, str]:
    """Register ``model`` by name (with its weights), calibrate it, cut it, deploy the split; (model id, split id)."""
    with httpx.Client(base_url=splitter_url, timeout=900.0) as client:
        files = {"weights": (model.weights.name, model.weights.read_bytes())} if model.weights else None
        registered = client.post("/api/models", data={"arch": model.arch}, files=files)
        registered.raise_for_status()
        model_id = registered.json()["id"]
        split: dict[str, object] = {"split_point": model.split_point, "bits": model.bits}
        if model.calibrate and model.bits <= 8:
            client.post(f"/api/models/{model_id}/calibrate", data={"bits": str(model.bits)}).raise_for_status()
            split["clip"] = "calibrated"
        created = client.post(f"/api/models/{model_id}/splits", json=split)
        created.raise_for_status()
        split_id = created.json()["id"]
        client.post(f"/api/splits/{split_id}/deploy").raise_for_status()
    return model_id, split_id


def main() -> None:
    parser = argparse.ArgumentParser(description="Run splitter, robot and edge locally.")
    parser.add_argument("--data-dir", type=Path, default=Path("var"))
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    default = make_up_model(trained=False)
    parser.add_argument("--arch", default=default.arch, help="default model, a torchvision architecture")
    parser.add_argument("--split-point", default=default.split_point)
    parser.add_argument("--bits", type=int, default=default.bits)
    parser.add_argument(
        "--untrained", action="store_true", help="no weights (the default uses torchvision's ImageNet mobilenet_v2)"
    )
    parser.add_argument("--no-default-model", action="store_true")
    args = parser.parse_args()
    stack = LocalStack(data_dir=args.data_dir.resolve(), host=args.host)
    stopping = False

    def _request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _request_stop)
    print("starting edge, robot and splitter ...", flush=True)
    with stack:
        if not args.no_default_model:
            weights = None if args.untrained or args.arch not in ASSETS else ensure(args.arch)
            chosen = DefaultModel(args.arch, args.split_point, args.bits, weights)
            trained = "trained" if weights else "untrained"
            print(
                f"registering {args.arch} ({trained}), calibrating and deploying a split at {args.split_point} "
                f"({args.bits} bits) ...",
                flush=True,
            )
            model_id, split_id = deploy_default(stack.splitter_url, chosen)
            print(f"  model {model_id}, split {split_id}", flush=True)
        print(f"\n  web UI + splitter API  {stack.splitter_url}/   (API docs: {stack.splitter_url}/docs)")
        print(f"  robot                  {stack.robot_url}/docs")
        print(f"  edge                   {stack.edge_url}/docs")
        print(f"  logs                   {stack.data_dir / 'logs'}\n\nCtrl-C stops all three.", flush=True)
        try:
            while not stopping and all(s.process is not None and s.process.poll() is None for s in stack.services):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        print("\nstopping ...", flush=True)
    print("stopped.")


if __name__ == "__main__":
    main()
