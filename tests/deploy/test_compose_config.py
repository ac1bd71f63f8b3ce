"""The compose files and Dockerfiles, checked without a Docker engine.

`docker-compose config -q` (Debian's 1.29) validates every variant against the compose schema; the rest reads the
resolved configuration and asserts what a deployment relies on: what runs where, healthchecks that gate the
dependents, the GPU, the volumes, the addresses, pinned and torch-free images.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.support import (
    DOCKERFILES,
    HEALTHCHECK_IN_IMAGE,
    REPO_ROOT,
    SERVICES,
    VARIANTS,
    Variant,
    active_services,
    compose_config,
    compose_env,
    depends_on,
    docker_compose,
    env_file_with,
    kind_of,
    load_pyproject,
    resolve_config,
    run_compose,
)

PYPROJECT = load_pyproject()
VARIANT_IDS = [variant.name for variant in VARIANTS]


@pytest.fixture(scope="module", params=VARIANTS, ids=VARIANT_IDS)
def variant_config(request: pytest.FixtureRequest) -> tuple[Variant, dict[str, Any]]:
    return request.param, compose_config(request.param)


def dockerfile(name: str) -> str:
    return (REPO_ROOT / name).read_text()


def arg_default(text: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S*)$", text, re.MULTILINE)
    assert match, f"no ARG {name}=<default>"
    return match.group(1).strip('"')


# --- docker-compose config ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_config_is_valid_with_the_env_file(variant: Variant) -> None:
    result = run_compose(["--env-file", str(variant.env_file), "config", "-q"])
    assert result.returncode == 0, result.stderr
    # An unset variable without a default is interpolated as "" with only a warning: none may be missing.
    assert "WARNING" not in result.stderr, result.stderr


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_config_is_valid_with_explicit_files_and_profiles(variant: Variant, tmp_path: Path) -> None:
    """The same variant spelled out on the command line (docs/deployment.md shows both)."""
    settings = {k: v for k, v in variant.settings().items() if not k.startswith("COMPOSE_")}
    no_env_file = tmp_path / "empty.env"  # a developer's own .env in the checkout must not count
    no_env_file.write_text("")
    args = ["--env-file", str(no_env_file)]
    args += [arg for file in variant.files for arg in ("-f", file)]
    args += [arg for profile in variant.profiles for arg in ("--profile", profile)]
    result = subprocess.run(
        [docker_compose(), *args, "config"],
        cwd=REPO_ROOT,
        env={**compose_env(), **settings},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == compose_config(variant), "the env file and the flags must agree"


def test_no_top_level_name() -> None:
    for path in REPO_ROOT.glob("docker-compose*.yml"):
        assert "name" not in yaml.safe_load(path.read_text()), f"{path.name}: docker-compose 1.29 rejects `name:`"


def test_each_variant_runs_what_its_host_needs(variant_config: tuple[Variant, dict[str, Any]]) -> None:
    variant, config = variant_config
    assert active_services(config, variant.profiles) == variant.active


def test_dependencies_are_healthy_services_of_the_same_host(variant_config: tuple[Variant, dict[str, Any]]) -> None:
    """Compose v2 refuses to start a service whose dependency is in a profile that is not active."""
    variant, config = variant_config
    for name in variant.active:
        for dep, how in depends_on(config["services"][name]).items():
            assert dep in variant.active, f"{variant.name}: {name} depends on {dep}, which does not run there"
            assert how.get("condition") == "service_healthy", f"{name} -> {dep}: {how}"
            assert "healthcheck" in config["services"][dep]


def test_dependency_graph() -> None:
    single_host = compose_config(VARIANTS[0])["services"]
    assert set(depends_on(single_host["edge"])) == {"splitter"}
    assert set(depends_on(single_host["robot"])) == {"edge", "splitter"}
    assert not depends_on(single_host["splitter"])
    jetson = compose_config(VARIANTS[2])["services"]
    assert not depends_on(jetson["robot"]), "the robot's peers run on another host"


def test_services_as_containers(variant_config: tuple[Variant, dict[str, Any]]) -> None:
    variant, config = variant_config
    volumes = config.get("volumes") or {}
    for name in variant.active:
        service = config["services"][name]
        prefix, module = SERVICES[kind_of(name)]
        env = service["environment"]
        assert service["command"] == ["python", "-m", module]
        assert service["restart"] == "unless-stopped"
        assert env[f"{prefix}_HOST"] == "0.0.0.0", "a container must listen on every interface"
        port = int(env[f"{prefix}_PORT"])
        assert service["healthcheck"]["test"] == ["CMD", "python", HEALTHCHECK_IN_IMAGE, prefix]
        assert service["healthcheck"]["timeout"] in ("10s", "15s"), "the splitter's /health may take 6 s"
        published = [p for p in service["ports"] if int(str(p).split(":")[-1].split("/")[0]) == port]
        assert published, f"{name}: port {port} is not published: {service['ports']}"
        # The data directory is a named volume, declared at the top level.
        mounts = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}
        data_dir = env[f"{prefix}_DATA_DIR"]
        assert data_dir in mounts, f"{name}: {data_dir} is not on a volume"
        assert mounts[data_dir] in volumes, f"{name}: {mounts[data_dir]} is not a named volume"
        assert service["build"]["dockerfile"] == f"Dockerfile.{kind_of(name)}"
    if "splitter" in variant.active:
        assert config["services"]["splitter"]["environment"]["SPLITTER_DATA_DIR"] == "/data/registry"


def test_urls_point_at_services_that_run_there(variant_config: tuple[Variant, dict[str, Any]]) -> None:
    """A URL names a compose service of the same host (and its port), or an address from the env file."""
    variant, config = variant_config
    services = config["services"]
    for name in variant.active:
        for key, value in services[name]["environment"].items():
            if not key.endswith("_URL"):
                continue
            for listed in str(value).split(","):  # a fleet lists several
                url = urlsplit(listed)
                assert url.scheme == "http" and url.hostname and url.port, f"{name}: {key}={value}"
                if url.hostname in services:
                    assert url.hostname in variant.active, f"{variant.name}: {name}'s {key} names {url.hostname}"
                    target_prefix = SERVICES[kind_of(url.hostname)][0]
                    assert url.port == int(services[url.hostname]["environment"][f"{target_prefix}_PORT"]), key
                else:
                    assert str(value) in variant.settings().values(), f"{name}: {key}={value} is not from the env file"
    wanted = {"ROBOT_EDGE_URL", "ROBOT_SPLITTER_URL", "EDGE_SPLITTER_URL", "SPLITTER_ROBOT_URL", "SPLITTER_EDGE_URL"}
    present = {key for name in variant.active for key in services[name]["environment"] if key.endswith("_URL")}
    assert present == {key for key in wanted if key.split("_")[0].lower() in variant.active}


def test_the_fleet_example_deploys_everywhere_and_spreads_the_robots() -> None:
    fleet = compose_config(next(v for v in VARIANTS if v.name == "fleet"))["services"]
    edges = ["http://edge:8002", "http://edge-2:8002"]
    assert fleet["splitter"]["environment"]["SPLITTER_EDGE_URL"].split(",") == edges
    robots = [name for name in fleet if kind_of(name) == "robot"]
    assert fleet["splitter"]["environment"]["SPLITTER_ROBOT_URL"].split(",") == [f"http://{r}:8001" for r in robots]
    firsts = {fleet[robot]["environment"]["ROBOT_EDGE_URL"].split(",")[0] for robot in robots}
    assert firsts == set(edges)  # not every robot prefers the same edge
    for robot in robots:
        assert sorted(fleet[robot]["environment"]["ROBOT_EDGE_URL"].split(",")) == sorted(edges)
        assert set(depends_on(fleet[robot])) == {"splitter", "edge", "edge-2"}
    published = [str(port).split(":")[1] for service in fleet.values() for port in service["ports"]]
    assert len(published) == len(set(published)), "every service on its own host port"


def test_two_hosts_reach_each_other_by_the_env_file() -> None:
    gpu = compose_config(VARIANTS[1])["services"]
    jetson = compose_config(VARIANTS[2])["services"]
    assert gpu["splitter"]["environment"]["SPLITTER_ROBOT_URL"] == "http://jetson.local:8001"
    assert jetson["robot"]["environment"]["ROBOT_EDGE_URL"] == "http://gpu-server.local:8002"
    assert jetson["robot"]["environment"]["ROBOT_SPLITTER_URL"] == "http://gpu-server.local:8000"
    for services in (gpu, jetson):
        for service in services.values():
            assert all(str(p).startswith("0.0.0.0:") for p in service["ports"]), "the other host must reach it"
    single = compose_config(VARIANTS[0])["services"]
    for service in single.values():
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"]), "one host: publish on loopback"


def test_each_token_reaches_its_service_and_its_callers(tmp_path: Path) -> None:
    tokens = {"SPLITBOT_SPLITTER_TOKEN": "s-token", "SPLITBOT_ROBOT_TOKEN": "r-token", "SPLITBOT_EDGE_TOKEN": "e-token"}
    env_file = env_file_with(VARIANTS[0], tmp_path / "tokens.env", SPLITBOT_PROTECT_READS="true", **tokens)
    services = resolve_config(env_file)["services"]
    splitter, robot, edge = (services[name]["environment"] for name in ("splitter", "robot", "edge"))
    assert splitter["SPLITTER_TOKEN"] == robot["ROBOT_SPLITTER_TOKEN"] == edge["EDGE_SPLITTER_TOKEN"] == "s-token"
    assert robot["ROBOT_TOKEN"] == splitter["SPLITTER_ROBOT_TOKEN"] == "r-token"
    assert edge["EDGE_TOKEN"] == splitter["SPLITTER_EDGE_TOKEN"] == robot["ROBOT_EDGE_TOKEN"] == "e-token"
    assert splitter["SPLITTER_PROTECT_READS"] == robot["ROBOT_PROTECT_READS"] == edge["EDGE_PROTECT_READS"] == "true"
    # The env files ship without tokens: empty, which the services read as "no token".
    for variant in VARIANTS:
        for service in compose_config(variant)["services"].values():
            assert all(value == "" for key, value in service["environment"].items() if key.endswith("_TOKEN"))


def test_gpu_for_the_edge_and_the_jetson_robot() -> None:
    for variant in (VARIANTS[0], VARIANTS[1]):
        edge = compose_config(variant)["services"]["edge"]
        devices = edge["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), devices
        assert "runtime" not in edge
    jetson_robot = compose_config(VARIANTS[2])["services"]["robot"]
    assert jetson_robot["runtime"] == "nvidia"
    assert jetson_robot["environment"]["ROBOT_PROVIDERS"] == "tensorrt,cuda,cpu"
    args = jetson_robot["build"]["args"]
    robot_dockerfile = dockerfile("Dockerfile.robot")
    # The Jetson build is exactly the Dockerfile's default build.
    for arg in ("BASE_IMAGE", "ORT_PACKAGE", "ORT_VERSION", "ORT_INDEX_URL"):
        assert args[arg] == arg_default(robot_dockerfile, arg), arg
    assert args["BASE_IMAGE"].startswith("nvcr.io/nvidia/l4t-jetpack:r36.")
    assert args["ORT_INDEX_URL"].startswith("https://pypi.jetson-ai-lab.io/jp6/")
    cpu_robot = compose_config(VARIANTS[0])["services"]["robot"]
    assert "runtime" not in cpu_robot and "deploy" not in cpu_robot
    assert cpu_robot["build"]["args"]["ORT_PACKAGE"] == "onnxruntime"
    assert cpu_robot["build"]["args"]["ORT_INDEX_URL"] == ""


def test_volumes_and_restart_policy_in_the_file() -> None:
    base = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert set(base["volumes"]) == {"registry", "edge-data", "robot-data"}
    fleet = yaml.safe_load((REPO_ROOT / "docker-compose.fleet.yml").read_text())
    assert set(fleet["volumes"]) == {"edge-2-data", "robot-2-data", "robot-3-data"}
    for name, service in base["services"].items():
        assert service["restart"] == "unless-stopped", name
        assert service["profiles"], f"{name} must belong to a profile (robot or edge)"


# --- Dockerfiles ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_basics(name: str) -> None:
    text = dockerfile(name)
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2, "multi-stage: a build stage and a runtime stage"
    assert re.search(r"^COPY --from=build /opt/venv /opt/venv$", text, re.MULTILINE)
    user = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("0", "root"), "the service must not run as root"
    assert re.search(r"^HEALTHCHECK .*\n?.*healthcheck\.py", text, re.MULTILINE)
    for label in ("title", "description", "version", "licenses", "source", "revision", "base.name"):
        assert f"org.opencontainers.image.{label}=" in text, label
    assert arg_default(text, "VERSION") == PYPROJECT["project"]["version"]
    base = arg_default(text, "BASE_IMAGE")
    assert ":" in base and not base.endswith(":latest"), f"{name}: pin the base image by tag ({base})"
    for pin in ("PIP_VERSION", "SETUPTOOLS_VERSION"):
        assert re.fullmatch(r"\d+(\.\d+)+", arg_default(text, pin)), pin
    assert "--constraint docker/constraints.txt" in text


@pytest.mark.parametrize("name", ["Dockerfile.robot", "Dockerfile.edge"])
def test_no_torch_in_robot_and_edge_images(name: str) -> None:
    text = dockerfile(name)
    for line in text.splitlines():
        if "torch" in line and not line.lstrip().startswith("#"):
            assert "import torch" in line and "must not be" in text, f"{name} installs torch: {line}"
    service = name.split(".")[1]
    assert f"docker/requirements.py {service} --replace onnxruntime" in text
    requirements = requirements_for(service, "--replace", "onnxruntime", "onnxruntime-gpu==1")
    assert not [r for r in requirements if r.startswith(("torch", "torchvision"))], requirements


def test_image_pins_agree() -> None:
    edge, robot, splitter = (dockerfile(f"Dockerfile.{n}") for n in ("edge", "robot", "splitter"))
    assert arg_default(edge, "ORT_PACKAGE") == "onnxruntime-gpu"
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu2[24]\.04", arg_default(edge, "BASE_IMAGE"))
    assert arg_default(splitter, "BASE_IMAGE").startswith("python:3.") and "slim" in arg_default(splitter, "BASE_IMAGE")
    assert arg_default(splitter, "TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
    splitter_extra = PYPROJECT["project"]["optional-dependencies"]["splitter"]
    assert f"torch=={arg_default(splitter, 'TORCH_VERSION')}" in splitter_extra
    assert f"torchvision=={arg_default(splitter, 'TORCHVISION_VERSION')}" in splitter_extra
    cpu_robot = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]["robot"]["build"]["args"]
    assert cpu_robot["BASE_IMAGE"] == arg_default(splitter, "BASE_IMAGE"), "one Python image for the CPU images"
    assert cpu_robot["ORT_VERSION"] == arg_default(splitter, "ORT_VERSION"), "one onnxruntime for the CPU images"
    for text in (edge, robot, splitter):
        assert arg_default(text, "PIP_VERSION") == arg_default(splitter, "PIP_VERSION")


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for entry in (".git", ".venv", "var", "tests", ".env"):
        assert entry in ignored, entry
    for needed in ("pyproject.toml", "README.md", "common", "docker"):
        assert needed not in ignored, needed


# --- pinned dependencies --------------------------------------------------------------------------------------------


def requirements_for(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "docker/requirements.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.splitlines()


def test_requirements_helper() -> None:
    edge = requirements_for("edge", "--replace", "onnxruntime", "onnxruntime-gpu==1.26.0")
    assert edge == [*PYPROJECT["project"]["dependencies"], "onnxruntime-gpu==1.26.0"]
    splitter = requirements_for("splitter")
    assert "torch==2.14.1" in splitter and "onnxruntime>=1.17" in splitter
    # A Dockerfile that swaps a package pyproject.toml no longer names, or asks for an unknown extra, fails the build.
    for bad in (["edge", "--replace", "onnxruntime-foo", "x"], ["no-such-extra"]):
        result = subprocess.run([sys.executable, "docker/requirements.py", *bad], cwd=REPO_ROOT, capture_output=True)
        assert result.returncode == 2, bad


def _closure(requirements: list[str]) -> set[str]:
    """Installed distributions that the given requirements pull in (extras' requirements only where asked)."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            continue
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name in seen:
            continue
        seen.add(name)
        for line in dist.requires or []:
            dep = Requirement(line)
            environments = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
            if dep.marker is None or any(dep.marker.evaluate(env) for env in environments):
                pending.append(dep)
    return seen


def test_constraints_pin_every_runtime_dependency() -> None:
    """Each image installs with docker/constraints.txt: a dependency without a line there would float."""
    project = PYPROJECT["project"]
    runtime = [*project["dependencies"]]
    for extra in ("robot", "edge", "splitter"):
        runtime += project["optional-dependencies"][extra]
    pinned = set()
    for line in (REPO_ROOT / "docker" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.split(";")[0].partition("==")
            assert re.fullmatch(r"\d+(\.\d+)*", version.strip()), f"not an exact pin: {line}"
            pinned.add(re.sub(r"[-_.]+", "-", name.strip()).lower())
    # Pinned by build arguments instead; nvidia-*, cuda-* and triton belong to the CUDA torch wheel, not the CPU one.
    by_build_arg = {"onnxruntime", "torch", "torchvision", "setuptools", "pip"}
    missing = {
        name
        for name in _closure(runtime) - pinned - by_build_arg
        if not name.startswith(("nvidia-", "cuda-")) and name != "triton"
    }
    assert not missing, f"add to docker/constraints.txt: {sorted(missing)}"
