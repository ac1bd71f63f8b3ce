"""``python -m <service> --help`` prints the settings and exits; nothing else on the command line is taken."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CASES = [
    ("model_splitter", "SPLITTER", "SPLITTER_MAX_MODEL_BYTES"),
    ("robot_inference", "ROBOT", "ROBOT_EDGE_URL"),
    ("edge_inference", "EDGE", "EDGE_MAX_BATCH"),
]


@pytest.mark.parametrize(("module", "prefix", "setting"), CASES)
def test_help_prints_every_setting_and_exits(module: str, prefix: str, setting: str) -> None:
    env = {**os.environ, f"{prefix}_TOKEN": "do-not-print-me"}
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert setting in done.stdout and f"{prefix}_TOKEN" in done.stdout
    assert "do-not-print-me" not in done.stdout  # defaults only, never what the environment holds
    wrong = subprocess.run([sys.executable, "-m", module, "--port", "1"], capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "environment" in wrong.stderr
