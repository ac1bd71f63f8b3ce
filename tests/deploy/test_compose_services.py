"""Each service started the way compose starts it, on this machine: its `command` and `environment` from the resolved
single-host configuration (with bearer tokens set and reads protected in the env file), only host, ports, data
directories and service URLs moved to loopback, free ports and temporary directories; dependents start once their
dependencies pass the compose healthcheck. Then one image goes through all three.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.deploy.support import (
    REPO_ROOT,
    SERVICES,
    VARIANTS,
    active_services,
    env_file_with,
    healthcheck_argv,
    resolve_config,
    run_one_image,
    start_order,
)
from tools.local_stack import ServiceProcess, free_port

HEALTHY_WITHIN_S = 120.0
TOKENS = {
    "SPLITBOT_SPLITTER_TOKEN": "splitter-secret",
    "SPLITBOT_ROBOT_TOKEN": "robot-secret",
    "SPLITBOT_EDGE_TOKEN": "edge-secret",
}


def loopback_environment(config: dict[str, Any], name: str, ports: dict[str, int], data_root: Path) -> dict[str, str]:
    """The service's compose environment with only host, port, data dir and peer URLs moved to this machine."""
    services = config["services"]
    prefix = SERVICES[name][0]
    env = {key: str(value) for key, value in services[name]["environment"].items()}
    moved = {
        f"{prefix}_HOST": "127.0.0.1",
        f"{prefix}_PORT": str(ports[name]),
        f"{prefix}_DATA_DIR": str(data_root / name / env[f"{prefix}_DATA_DIR"].strip("/").replace("/", "_")),
    }
    for key, value in env.items():
        if key.endswith("_URL"):
            url = urlsplit(value)
            assert url.hostname in services, f"{name}: {key}={value} does not name a compose service"
            peer_prefix = SERVICES[url.hostname][0]
            assert url.port == int(services[url.hostname]["environment"][f"{peer_prefix}_PORT"]), f"{key}={value}"
            moved[key] = f"http://127.0.0.1:{ports[url.hostname]}"
    env.update(moved)
    return env


def process_environment(compose_env: dict[str, str]) -> dict[str, str]:
    """A container sees only its image's and compose's environment; here add what a process on this host needs."""
    return {
        **compose_env,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        # In the image the package is installed into the venv; here it is this checkout.
        "PYTHONPATH": str(REPO_ROOT),
    }


def wait_for_healthcheck(service: ServiceProcess, argv: list[str], env: dict[str, str]) -> None:
    """Poll the compose healthcheck command until it exits 0, as compose does for `condition: service_healthy`."""
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    last = ""
    while time.monotonic() < deadline:
        assert service.process is not None
        if service.process.poll() is not None:
            pytest.fail(f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}")
        check = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        if check.returncode == 0:
            return
        last = check.stderr
        time.sleep(0.3)
    pytest.fail(f"{service.name}'s healthcheck never passed ({last}):\n{service.log_tail()}")


@pytest.fixture(scope="module")
def compose_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    variant = VARIANTS[0]  # single host: all three services, with the robot's depends_on
    data_root = tmp_path_factory.mktemp("compose-stack")
    env_file = env_file_with(variant, data_root / "stack.env", SPLITBOT_PROTECT_READS="true", **TOKENS)
    config = resolve_config(env_file)
    names = active_services(config, variant.profiles)
    assert names == set(SERVICES)
    ports = {name: free_port() for name in names}
    started: list[ServiceProcess] = []
    try:
        for name in start_order(config, names):
            service_config = config["services"][name]
            command = service_config["command"]
            module = SERVICES[name][1]
            assert command == ["python", "-m", module], command
            env = process_environment(loopback_environment(config, name, ports, data_root))
            service = ServiceProcess(
                name, module, f"http://127.0.0.1:{ports[name]}", env, data_root / "logs" / f"{name}.log"
            )
            service.start(sys.executable)  # `python -m <module>`, the compose command, with this venv's python
            started.append(service)
            wait_for_healthcheck(service, healthcheck_argv(service_config, sys.executable), env)
        yield {service.name: service.url for service in started}
    finally:
        for service in reversed(started):
            service.stop()


def test_one_image_through_the_compose_services(compose_stack: dict[str, str]) -> None:
    splitter_token, robot_token = TOKENS["SPLITBOT_SPLITTER_TOKEN"], TOKENS["SPLITBOT_ROBOT_TOKEN"]
    result = run_one_image(compose_stack["splitter"], compose_stack["robot"], splitter_token, robot_token)
    assert result["mode"] == "split"


def test_the_tokens_are_enforced(compose_stack: dict[str, str]) -> None:
    """The tokens compose passes are live: without them, writes (and, with protected reads, reads) are refused."""
    assert (
        httpx.post(f"{compose_stack['splitter']}/api/models", data={"arch": "resnet18"}, timeout=30).status_code == 401
    )
    assert httpx.get(f"{compose_stack['splitter']}/api/models", timeout=30).status_code == 401
    assert httpx.get(f"{compose_stack['edge']}/api/splits", timeout=30).status_code == 401
    wrong = {"authorization": "Bearer robot-secret"}
    assert httpx.get(f"{compose_stack['edge']}/api/splits", headers=wrong, timeout=30).status_code == 401


def test_health_shows_the_peers_and_providers(compose_stack: dict[str, str]) -> None:
    """Reads are protected in this stack: token holders see the details, anyone else that the service is up."""
    assert httpx.get(f"{compose_stack['robot']}/health", timeout=10).json() == {"status": "ok", "service": "robot"}
    robot_auth = {"authorization": f"Bearer {TOKENS['SPLITBOT_ROBOT_TOKEN']}"}
    splitter_auth = {"authorization": f"Bearer {TOKENS['SPLITBOT_SPLITTER_TOKEN']}"}
    robot = httpx.get(f"{compose_stack['robot']}/health", headers=robot_auth, timeout=10).json()
    assert robot["edge_url"] == compose_stack["edge"]
    assert robot["edge"] is not None and robot["edge"]["status"] == "ok", "the robot must reach the edge"
    assert "CPUExecutionProvider" in robot["available_providers"]
    splitter = httpx.get(f"{compose_stack['splitter']}/health", headers=splitter_auth, timeout=15).json()
    assert splitter["robot"] is not None and splitter["edge"] is not None, splitter


def test_healthcheck_fails_when_nothing_listens() -> None:
    """The check is not a no-op: with no service on the port it exits non-zero."""
    argv = [sys.executable, str(REPO_ROOT / "docker" / "healthcheck.py"), "EDGE"]
    result = subprocess.run(argv, env={"EDGE_PORT": str(free_port())}, capture_output=True, timeout=30)
    assert result.returncode == 1
