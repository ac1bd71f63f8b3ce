"""A real Triton server serving a split's in-graph tail (tools/pytriton_tail.py), and the venv it runs from.

PyTriton's Python-backend stub only works under the interpreter of Debian's python3.11 package: under the pyenv
builds first on these machines' PATH it fails (``'_thread.RLock' object has no attribute '_recursion_count'``).
``python -m tools.triton_venv`` (``make triton-deps``) builds it once into var/triton-venv from the package index;
the tests and the benchmark that need a real Triton call ``running_triton`` and skip, saying why, without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from tools.local_stack import ServiceProcess, free_port

DEBIAN_PYTHON = Path("/usr/bin/python3.11")
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "var" / "triton-venv"
START_TIMEOUT_S = 120
INSTALL_TIMEOUT_S = 900


class TritonUnavailable(RuntimeError):
    """Why no Triton server can run on this machine."""


def requirements() -> list[str]:
    # The same ONNX Runtime as this checkout's, so Triton's tail computes what the edge's does.
    return ["nvidia-pytriton==0.7.0", f"onnxruntime=={metadata.version('onnxruntime')}", "numpy<2"]


def triton_python(venv: Path = VENV) -> Path:
    """The venv's interpreter, building the venv first where it is missing or out of date."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    wanted = "\n".join(requirements())
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not DEBIAN_PYTHON.exists():
        raise TritonUnavailable(
            f"{DEBIAN_PYTHON} (Debian's python3.11 package) is missing: PyTriton's stub runs only under it; "
            "apt-get install python3.11-venv"
        )
    try:
        subprocess.run([str(DEBIAN_PYTHON), "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *requirements()],
            check=True,
            capture_output=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise TritonUnavailable(f"building {venv} failed: {' '.join(detail)}") from exc
    except subprocess.TimeoutExpired as exc:
        raise TritonUnavailable(f"installing PyTriton into {venv} took over {INSTALL_TIMEOUT_S} s") from exc
    stamp.write_text(wanted)
    return python


@contextmanager
def running_triton(
    tail: Path, name: str, data_dir: Path, max_batch: int = 16, delay_us: int = 2000, threads: int = 1
) -> Iterator[ServiceProcess]:
    """Triton (HTTP on a free loopback port: ``.url``) serving ``tail`` as model ``name``, until the block ends."""
    python = triton_python()
    http, grpc, metrics = free_port(), free_port(), free_port()
    args = ["--tail", str(tail), "--name", name, "--http-port", str(http), "--grpc-port", str(grpc)]
    args += ["--metrics-port", str(metrics), "--max-batch", str(max_batch), "--delay-us", str(delay_us)]
    args += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    service = ServiceProcess(
        "triton",
        "tools.pytriton_tail",
        f"http://127.0.0.1:{http}",
        env,
        data_dir / "triton.log",
        args=args,
        health_path=f"/v2/models/{name}/ready",
    )
    service.start(str(python))
    try:
        service.wait_healthy(time.monotonic() + START_TIMEOUT_S)
        yield service
    finally:
        service.stop()


if __name__ == "__main__":
    try:
        print(triton_python())
    except TritonUnavailable as exc:
        print(f"no Triton venv: {exc}", file=sys.stderr)
