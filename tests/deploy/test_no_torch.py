"""The robot and the edge install and serve without torch.

A fresh virtual environment gets exactly what the robot and edge images install: the core dependencies and the
[robot] and [edge] extras pinned by docker/constraints.txt, setuptools at the Dockerfiles' version, then the package
itself, built without isolation from a copy of the files the Dockerfiles copy (nothing is written into this
checkout). torch must not import there; robot and edge then run from it, the splitter from the main venv, and one
image goes through all three.

The wheels are kept in a wheelhouse under pip's cache directory (PIP_CACHE_DIR, or ~/.cache/pip): a run installs from
there offline and downloads only what is missing, so the test stays fast where pip's own HTTP cache does not hold.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.support import REPO_ROOT, run_one_image
from tools.local_stack import STARTUP_TIMEOUT_S, ServiceProcess, free_port

# What Dockerfile.robot and Dockerfile.edge copy into the build stage.
PACKAGE_FILES = ("pyproject.toml", "README.md", "common", "model_splitter", "robot_inference", "edge_inference")
PIP_TIMEOUT_S = 600


def wheelhouse() -> Path:
    cache = os.environ.get("PIP_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip"
    )
    return Path(cache) / "splitbot-deploy-wheels"


def setuptools_pin() -> str:
    match = re.search(r"^ARG SETUPTOOLS_VERSION=(\S+)$", (REPO_ROOT / "Dockerfile.robot").read_text(), re.MULTILINE)
    assert match
    return f"setuptools=={match.group(1)}"


def clean_environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    """This venv's pip (``--python`` points it at the new environment, which needs no pip of its own)."""
    return run([sys.executable, "-m", "pip", *args], env=clean_environment(), timeout=PIP_TIMEOUT_S)


def copy_package_sources(destination: Path) -> None:
    destination.mkdir()
    for name in PACKAGE_FILES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, destination / name)


@pytest.fixture(scope="module")
def no_torch_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("no-torch")
    source = root / "src"
    copy_package_sources(source)
    venv = root / "venv"
    created = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    assert created.returncode == 0, created.stderr
    python = str(venv / "bin" / "python")
    listed = run([sys.executable, str(REPO_ROOT / "docker" / "requirements.py"), "robot", "edge"], cwd=source)
    assert listed.returncode == 0, listed.stderr
    requirements = root / "requirements.txt"
    requirements.write_text(listed.stdout + setuptools_pin() + "\n")
    pinned = ["--constraint", str(REPO_ROOT / "docker" / "constraints.txt"), "--requirement", str(requirements)]
    wheels = wheelhouse()
    offline = ["--no-index", "--find-links", str(wheels)]
    installed = pip("--python", python, "install", "--quiet", "--no-compile", *offline, *pinned)
    if installed.returncode != 0:  # the first run, or new pins: fetch what is missing, then install offline
        wheels.mkdir(parents=True, exist_ok=True)
        fetched = pip("download", "--quiet", "--only-binary=:all:", "--dest", str(wheels), *pinned)
        assert fetched.returncode == 0, f"pip download failed:\n{fetched.stdout}{fetched.stderr}"
        installed = pip("--python", python, "install", "--quiet", "--no-compile", *offline, *pinned)
    assert installed.returncode == 0, f"pip install failed:\n{installed.stdout}{installed.stderr}"
    # As in the Dockerfiles: the package alone, built with the pinned setuptools already installed.
    local_build = ["--no-index", "--no-deps", "--no-build-isolation", str(source)]
    package = pip("--python", python, "install", "--quiet", "--no-compile", *local_build)
    assert package.returncode == 0, f"pip install of the package failed:\n{package.stdout}{package.stderr}"
    return Path(python)


def test_torch_is_not_installed(no_torch_python: Path, tmp_path: Path) -> None:
    probe = run([str(no_torch_python), "-c", "import torch"], cwd=tmp_path, env=clean_environment(), timeout=60)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr, probe.stderr
    listed = pip("--python", str(no_torch_python), "list", "--format=freeze")
    names = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert not names & {"torch", "torchvision", "onnx", "onnxscript"}, sorted(names)
    assert "onnxruntime" in names


def test_robot_and_edge_import(no_torch_python: Path, tmp_path: Path) -> None:
    code = (
        "import sys, robot_inference.app, edge_inference.app, robot_inference.__main__, edge_inference.__main__; "
        "assert 'torch' not in sys.modules; print(robot_inference.app.__file__)"
    )
    probe = run([str(no_torch_python), "-c", code], cwd=tmp_path, env=clean_environment(), timeout=120)
    assert probe.returncode == 0, probe.stderr
    # Imported from the installed package, not from this checkout.
    assert str(no_torch_python.parents[1]) in probe.stdout, probe.stdout


@pytest.fixture(scope="module")
def mixed_stack(
    no_torch_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[str, ServiceProcess]]]:
    """Edge and robot from the torch-free venv, the splitter from the main venv, all from a directory outside
    the checkout so that `python -m` cannot pick the sources up from the working directory."""
    data = tmp_path_factory.mktemp("no-torch-stack")
    ports = {"splitter": free_port(), "robot": free_port(), "edge": free_port()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    base = clean_environment()
    specs = [
        ("edge", "edge_inference", str(no_torch_python), {"EDGE_SPLITTER_URL": urls["splitter"]}),
        (
            "robot",
            "robot_inference",
            str(no_torch_python),
            {"ROBOT_SPLITTER_URL": urls["splitter"], "ROBOT_EDGE_URL": urls["edge"]},
        ),
        (
            "splitter",
            "model_splitter",
            sys.executable,
            {"SPLITTER_ROBOT_URL": urls["robot"], "SPLITTER_EDGE_URL": urls["edge"], "PYTHONPATH": str(REPO_ROOT)},
        ),
    ]
    services: list[tuple[ServiceProcess, str]] = []
    for name, module, python, extra in specs:
        prefix = name.upper()
        env = {
            **base,
            f"{prefix}_HOST": "127.0.0.1",
            f"{prefix}_PORT": str(ports[name]),
            f"{prefix}_DATA_DIR": str(data / name),
            f"{prefix}_INTRA_OP_THREADS": "1",
            **extra,
        }
        services.append((ServiceProcess(name, module, urls[name], env, data / "logs" / f"{name}.log"), python))
    here = Path.cwd()
    try:
        os.chdir(data)  # the children's working directory
        try:
            for service, python in services:
                service.start(python)
        finally:
            os.chdir(here)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        for service, _ in services:
            service.wait_healthy(deadline)
        yield {service.name: (service.url, service) for service, _ in services}
    finally:
        for service, _ in reversed(services):
            service.stop()


def test_one_image_through_torch_free_robot_and_edge(
    mixed_stack: dict[str, tuple[str, ServiceProcess]], no_torch_python: Path
) -> None:
    for side in ("robot", "edge"):
        url, service = mixed_stack[side]
        assert service.process is not None and service.process.args[0] == str(no_torch_python)
        health = httpx.get(f"{url}/health", timeout=10).json()
        assert health["status"] == "ok" and health["service"] == side
    result = run_one_image(mixed_stack["splitter"][0], mixed_stack["robot"][0])
    assert result["providers"], result
