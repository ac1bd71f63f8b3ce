"""Resolve an image's pinned requirements for the platform and Python it runs on, with pip's own resolver.

    python docker/check_pins.py robot      # JetPack 6: aarch64, CPython 3.10
    python docker/check_pins.py edge       # CUDA image on Ubuntu 24.04: x86_64, CPython 3.12

A pin in ``docker/constraints.txt`` that has no wheel for that platform, or that conflicts with another, fails
here (exit 1) instead of in a ``docker build`` on the Jetson. pip evaluates environment markers against the
interpreter it runs in, not the target, so the markers are evaluated here for the target first. What is not
checked: the Jetson's ``onnxruntime-gpu`` comes from the Jetson AI Lab index (not PyPI; its JetPack 6 wheels are
cp310 builds of the same release), so PyPI's ``onnxruntime`` of the same version stands in for it; the
splitter's torch comes from the PyTorch CPU index and is not resolved here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

sys.path.insert(0, str(Path(__file__).resolve().parent))
from requirements import main as print_requirements  # docker/requirements.py, beside this file

DOCKER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Target:
    extra: str
    onnxruntime: str  # what stands in for the image's ORT_PACKAGE==ORT_VERSION on PyPI
    python: str
    machine: str
    platforms: tuple[str, ...]


def _manylinux(machine: str, glibc_minors: range) -> tuple[str, ...]:
    return (f"manylinux2014_{machine}", *(f"manylinux_2_{minor}_{machine}" for minor in glibc_minors))


TARGETS = {
    # Dockerfile.robot: nvcr.io/nvidia/l4t-jetpack:r36.4.0 (Ubuntu 22.04, glibc 2.35), ORT_VERSION=1.23.0
    "robot": Target("robot", "onnxruntime==1.23.0", "3.10", "aarch64", _manylinux("aarch64", range(17, 36))),
    # Dockerfile.edge: nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 (glibc 2.39), ORT_VERSION=1.26.0
    "edge": Target("edge", "onnxruntime-gpu==1.26.0", "3.12", "x86_64", _manylinux("x86_64", range(17, 40))),
}


def for_target(lines: list[str], target: Target) -> list[str]:
    """The lines whose markers hold on ``target``, without their markers."""
    environment = {
        "python_version": target.python,
        "python_full_version": f"{target.python}.0",
        "platform_machine": target.machine,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    kept = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            requirement.marker = None
            kept.append(str(requirement))
    return kept


def check(name: str, download_dir: Path) -> int:
    target = TARGETS[name]
    work = Path(tempfile.mkdtemp(prefix=f"pins-{name}-"))
    requirements_txt = work / "requirements.txt"
    with requirements_txt.open("w") as out:
        sys.stdout, saved = out, sys.stdout
        try:
            pyproject = str(DOCKER.parent / "pyproject.toml")
            status = print_requirements(
                [target.extra, "--replace", "onnxruntime", target.onnxruntime, "--pyproject", pyproject]
            )
        finally:
            sys.stdout = saved
    if status != 0:
        return status
    constraints = (DOCKER / "constraints.txt").read_text().splitlines()
    (work / "constraints.txt").write_text("\n".join(for_target(constraints, target)) + "\n")
    (work / "requested.txt").write_text("\n".join(for_target(requirements_txt.read_text().splitlines(), target)))
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    for platform in target.platforms:
        command += ["--platform", platform]
    command += [
        "--python-version",
        target.python,
        "--implementation",
        "cp",
        "--abi",
        f"cp{target.python.replace('.', '')}",
    ]
    command += ["-c", str(work / "constraints.txt"), "-r", str(work / "requested.txt"), "-d", str(download_dir)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"check_pins.py: the {name} image's pins do not resolve for {target.machine} / CPython {target.python}:")
        print(done.stdout + done.stderr)
        return 1
    wheels = sorted(path.name for path in download_dir.glob("*.whl"))
    print(f"{name}: {len(wheels)} wheels resolve for {target.machine} / CPython {target.python}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", choices=sorted(TARGETS))
    args = parser.parse_args(argv)
    status = 0
    for name in args.images:
        with tempfile.TemporaryDirectory(prefix=f"wheels-{name}-") as wheels:
            status = max(status, check(name, Path(wheels)))
    return status


if __name__ == "__main__":
    sys.exit(main())
