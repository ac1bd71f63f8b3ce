"""docker/check_pins.py evaluates environment markers for the image's platform, not for the Python running it."""

from __future__ import annotations

import sys

from tests.deploy.support import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "docker"))
from check_pins import TARGETS, for_target

LINES = [
    "# a comment",
    'numpy==2.4.6; python_version >= "3.11"',
    'numpy==1.26.4; python_version < "3.11"',
    "uvloop==0.22.1; sys_platform != 'win32'",
    "onnxruntime==1.23.0  # trailing comment",
    "",
]


def test_the_robot_gets_the_python_3_10_lines() -> None:
    assert for_target(LINES, TARGETS["robot"]) == ["numpy==1.26.4", "uvloop==0.22.1", "onnxruntime==1.23.0"]


def test_the_edge_gets_the_python_3_12_lines() -> None:
    assert for_target(LINES, TARGETS["edge"]) == ["numpy==2.4.6", "uvloop==0.22.1", "onnxruntime==1.23.0"]


def test_targets_match_their_dockerfiles() -> None:
    robot = (REPO_ROOT / "Dockerfile.robot").read_text()
    edge = (REPO_ROOT / "Dockerfile.edge").read_text()
    assert "ARG ORT_VERSION=" + TARGETS["robot"].onnxruntime.split("==")[1] in robot
    assert "ARG ORT_VERSION=" + TARGETS["edge"].onnxruntime.split("==")[1] in edge
    assert TARGETS["edge"].onnxruntime.startswith("onnxruntime-gpu==") and "ubuntu24.04" in edge
    assert "l4t-jetpack:r36" in robot and TARGETS["robot"].python == "3.10"
