"""Files built to test intake and uploads: tiny torch modules in every archive format, and hostile variants.

Nothing here is downloaded: every archive is written by torch in the test run, then rewritten member by member.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


class TinyNet(torch.nn.Module):
    """Conv, BatchNorm, pooling and a 5-way classifier: every layer kind the exporters treat specially."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)))
        return self.fc(y.mean(dim=(2, 3)))


def tiny() -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a wrong export shows in the outputs
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net


def jit_bytes(module: torch.jit.ScriptModule) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    return buffer.getvalue()


def torch_save_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def pt2_bytes(dynamic_batch: bool = True) -> bytes:
    dims = ({0: torch.export.Dim("batch", min=1, max=64)},) if dynamic_batch else None
    program = torch.export.export(tiny(), (torch.randn(2, 3, 16, 16),), dynamic_shapes=dims)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def rewrite_zip(data: bytes, change: Callable[[str, bytes], bytes]) -> bytes:
    """Copy an archive, passing every member (by its name below the root folder) through ``change``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, change(info.filename.split("/", 1)[1], src.read(info)))
    return out.getvalue()


class Marker:
    """Unpickling this runs a shell command; the tests assert that its file never appears."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def add_member(data: bytes, name: str, content: bytes) -> bytes:
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr(name, content)
    return out.getvalue()


def with_duplicate(data: bytes, relative: str, content: bytes) -> bytes:
    """The archive with a second member named like the first one ending in ``relative``, placed after it."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        name = next(n for n in zf.namelist() if n.split("/", 1)[-1] == relative)
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a") as zf, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Duplicate name")
        zf.writestr(name, content)
    return out.getvalue()


def zero_member_zip(name: str, size: int, **others: bytes) -> bytes:
    """A zip whose member ``name`` inflates to ``size`` zero bytes from a few hundred kilobytes: a zip bomb."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for other, content in others.items():
            zf.writestr(other, content)
        _write_inflating(zf, name, size, b"\0")
    return out.getvalue()


def with_inflating_member(data: bytes, relative: str, size: int, fill: bytes = b"#") -> bytes:
    """The archive with one more member under its root folder, ``size`` bytes of ``fill`` deflated to almost none."""
    root = zipfile.ZipFile(io.BytesIO(data)).namelist()[0].split("/", 1)[0]
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as zf:
        _write_inflating(zf, f"{root}/{relative}", size, fill)
    return out.getvalue()


def _write_inflating(zf: zipfile.ZipFile, name: str, size: int, fill: bytes) -> None:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    chunk = fill * ((1 << 20) // len(fill))
    with zf.open(info, "w", force_zip64=True) as member:
        for _ in range(size // len(chunk)):
            member.write(chunk)
