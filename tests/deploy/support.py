"""Shared by the deployment tests: the compose variants, `docker-compose config`, and one image through a stack."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = REPO_ROOT / "docker" / "env"
SAMPLE_IMAGE = REPO_ROOT / "model_splitter" / "data" / "samples" / "chelsea.jpg"
DOCKERFILES = ("Dockerfile.robot", "Dockerfile.edge", "Dockerfile.splitter")
# The settings prefix and the module each compose service runs.
SERVICES = {
    "splitter": ("SPLITTER", "model_splitter"),
    "robot": ("ROBOT", "robot_inference"),
    "edge": ("EDGE", "edge_inference"),
}
HEALTHCHECK_IN_IMAGE = "/opt/splitbot/healthcheck.py"


def kind_of(name: str) -> str:
    """The service a compose service runs: ``edge-2`` (the fleet example's second edge) runs the edge."""
    return name.split("-")[0]


@dataclass(frozen=True)
class Variant:
    """One way to run the compose files, as selected by an env file under docker/env/."""

    name: str
    active: frozenset[str]  # the services that run in this variant

    @property
    def env_file(self) -> Path:
        return ENV_DIR / f"{self.name}.env"

    def settings(self) -> dict[str, str]:
        return read_env_file(self.env_file)

    @property
    def files(self) -> list[str]:
        return self.settings()["COMPOSE_FILE"].split(":")

    @property
    def profiles(self) -> list[str]:
        return [p for p in self.settings().get("COMPOSE_PROFILES", "").split(",") if p]


VARIANTS = (
    Variant("single-host", frozenset({"splitter", "edge", "robot"})),
    Variant("gpu-server", frozenset({"splitter", "edge"})),
    Variant("jetson", frozenset({"robot"})),
    Variant("fleet", frozenset({"splitter", "edge", "edge-2", "robot", "robot-2", "robot-3"})),
)


def load_pyproject() -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the TOML reader pip vendors
        from pip._vendor import tomli as tomllib
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        project: dict[str, Any] = tomllib.load(handle)
    return project


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def docker_compose() -> str:
    """Debian's docker-compose 1.29: it validates and resolves compose files without a Docker engine."""
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail(
            "docker-compose is not installed: `make compose-deps` (apt-get install docker-compose) - "
            "the deployment checks need it and must not pass without it"
        )
    return found


def compose_env() -> dict[str, str]:
    """Nothing from the caller's shell may leak into the interpolation: only what the env file sets counts."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}


def run_compose(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [docker_compose(), *args], cwd=REPO_ROOT, env=compose_env(), capture_output=True, text=True, timeout=120
    )


def resolve_config(env_file: Path) -> dict[str, Any]:
    """The configuration exactly as compose resolves it (files, overrides, interpolation) with this env file."""
    result = run_compose(["--env-file", str(env_file), "config"])
    assert result.returncode == 0, f"docker-compose config failed with {env_file}:\n{result.stderr}"
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@cache
def compose_config(variant: Variant) -> dict[str, Any]:
    """One variant's resolved configuration, cached for the session: treat it as read-only."""
    return resolve_config(variant.env_file)


def env_file_with(variant: Variant, destination: Path, **values: str) -> Path:
    """A copy of the variant's env file with some values set (the tokens, say)."""
    lines = [line for line in variant.env_file.read_text().splitlines() if line.partition("=")[0] not in values]
    destination.write_text("\n".join([*lines, *(f"{key}={value}" for key, value in values.items())]) + "\n")
    return destination


def active_services(config: dict[str, Any], profiles: list[str]) -> set[str]:
    """What Compose v2 starts with these profiles (docker-compose 1.29's `config` lists every service)."""
    return {
        name
        for name, service in config["services"].items()
        if not service.get("profiles") or set(service["profiles"]) & set(profiles)
    }


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return dict(deps)


def start_order(config: dict[str, Any], names: set[str]) -> list[str]:
    """Dependencies first, as compose starts them."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"depends_on cycle: {' -> '.join((*path, name))}"
        if name in order:
            return
        for dep in sorted(depends_on(config["services"][name])):
            visit(dep, (*path, name))
        order.append(name)

    for name in sorted(names):
        visit(name, ())
    return order


def healthcheck_argv(service: dict[str, Any], python: str) -> list[str]:
    """The compose healthcheck command, with the in-image interpreter and script mapped to this checkout."""
    test = list(service["healthcheck"]["test"])
    assert test[0] == "CMD", f"healthcheck must be an exec-form CMD: {test}"
    argv = test[1:]
    assert argv[0] == "python" and argv[1] == HEALTHCHECK_IN_IMAGE, argv
    return [python, str(REPO_ROOT / "docker" / "healthcheck.py"), *argv[2:]]


def bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def run_one_image(
    splitter_url: str, robot_url: str, splitter_token: str | None = None, robot_token: str | None = None
) -> dict[str, Any]:
    """Register resnet18 (64x64 to be quick), cut at its first split point, deploy, send chelsea.jpg to the robot."""
    with httpx.Client(timeout=300.0, headers=bearer(splitter_token)) as client:
        model = client.post(f"{splitter_url}/api/models", data={"arch": "resnet18", "input_shape": "1,3,64,64"})
        assert model.status_code == 201, model.text
        record = model.json()
        assert record["split_points"], record
        label = record["split_points"][0]["label"]
        split = client.post(f"{splitter_url}/api/models/{record['id']}/splits", json={"split_point": label, "bits": 4})
        assert split.status_code == 201, split.text
        split_id = split.json()["id"]
        deploy = client.post(f"{splitter_url}/api/splits/{split_id}/deploy")
        assert deploy.status_code == 200, deploy.text
        with SAMPLE_IMAGE.open("rb") as image:
            answer = client.post(
                f"{robot_url}/api/infer",
                files={"image": ("chelsea.jpg", image, "image/jpeg")},
                headers=bearer(robot_token),
            )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        assert len(body["predictions"]) == 5, body
        assert body["split_id"] == split_id
        return body
