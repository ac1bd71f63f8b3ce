"""Crafted uploads against the real services: nothing runs, no process balloons, every refusal is a 4xx (or 507).

Each hostile file is built here. Memory is read from /proc: ``VmHWM`` (the peak) after the request against
``VmRSS`` before it, so a request that briefly took a gigabyte shows even though it was given back.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from common.manifest import compute_split_id
from common.tensor_records import quantized_record
from common.wire import encode_frame
from tests.crafted import (
    Marker,
    jit_bytes,
    pt2_bytes,
    tiny,
    torch_save_bytes,
    with_duplicate,
    with_inflating_member,
    zero_member_zip,
)
from tests.reliability.harness import log_lines, pid_of, start_service, vm_rss_bytes
from tests.support import HTTP_TIMEOUT_S, TinySplit, robot_infer, tiny_classifier, upload_bundle
from tools.local_stack import ServiceProcess, free_port

MIB = 2**20
# Peak memory a refused request may add to a process: the limits in docs/security.md keep every case below it.
REQUEST_BUDGET = 300 * MIB


@dataclass(frozen=True)
class Services:
    splitter: ServiceProcess
    robot: ServiceProcess
    edge: ServiceProcess


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, tiny_split: TinySplit) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("crafted")
    dead = f"http://127.0.0.1:{free_port()}"
    with ExitStack() as running:
        splitter = start_service("model_splitter", "SPLITTER", root / "splitter", robot_url=dead, edge_url=dead)
        running.callback(splitter.stop)
        edge = start_service("edge_inference", "EDGE", root / "edge", max_batch="16")
        running.callback(edge.stop)
        robot = start_service("robot_inference", "ROBOT", root / "robot", edge_url=edge.url)
        running.callback(robot.stop)
        upload_bundle(edge, tiny_split.zip_bytes)
        upload_bundle(robot, tiny_split.zip_bytes)
        yield Services(splitter, robot, edge)


def vm_hwm_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


class PeakMemory:
    """How far above its resident memory before the request a service's peak went during it."""

    def __init__(self, service: ServiceProcess) -> None:
        self.pid = pid_of(service)

    def __enter__(self) -> PeakMemory:
        # The peak so far is reset to the current resident size (Linux >= 4.0: write 5 to clear_refs).
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.before = vm_rss_bytes(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.added = vm_hwm_bytes(self.pid) - self.before


def register(splitter: ServiceProcess, data: bytes, filename: str, input_shape: str = "1,3,16,16") -> httpx.Response:
    return httpx.post(
        f"{splitter.url}/api/models",
        files={"file": (filename, data)},
        data={"input_shape": input_shape},
        timeout=HTTP_TIMEOUT_S,
    )


def post_bundle(service: ServiceProcess, data: bytes) -> httpx.Response:
    return httpx.post(f"{service.url}/api/bundles", files={"bundle": ("b.zip", data)}, timeout=HTTP_TIMEOUT_S)


# ------------------------------------------------------------------------------------------------ splitter


def test_a_pt2_whose_second_copy_of_a_member_is_a_hostile_pickle_runs_nothing(
    services: Services, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    archive = with_duplicate(pt2_bytes(), "data/sample_inputs/model.pt", torch_save_bytes(Marker(marker)))
    response = register(services.splitter, archive, "evil.pt2")
    assert response.status_code == 422, response.text
    assert "two members named" in response.json()["detail"]
    assert not marker.exists()
    assert not any("weights_only=False" in line for line in log_lines(services.splitter))


def test_torchscript_code_that_inflates_to_a_gigabyte_is_refused_unread(services: Services) -> None:
    bomb = with_inflating_member(jit_bytes(torch.jit.script(tiny())), "code/__torch__/padding.py", 1024 * MIB)
    assert len(bomb) < 3 * MIB
    with PeakMemory(services.splitter) as peak:
        started = time.monotonic()
        response = register(services.splitter, bomb, "bomb.pt")
    assert response.status_code == 422, response.text
    assert "inflates" in response.json()["detail"]
    assert peak.added < REQUEST_BUDGET, f"{peak.added / MIB:.0f} MiB"
    assert time.monotonic() - started < 30


def constant_bomb() -> bytes:
    """1.4 KB of ONNX whose ConstantOfShape is [16384, 16384] float32: a gigabyte once folded."""
    shape = numpy_helper.from_array(np.array([16384, 16384], dtype=np.int64), "huge_shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"]),
        helper.make_node("ReduceSum", ["huge"], ["total"], keepdims=0),
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Add", ["flat", "total"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bomb",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
        [shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_an_onnx_file_whose_constants_fold_into_a_gigabyte_is_refused(services: Services) -> None:
    data = constant_bomb()
    assert len(data) < 2000
    with PeakMemory(services.splitter) as peak:
        response = register(services.splitter, data, "bomb.onnx")
    assert response.status_code == 422, response.text
    assert "computed from constants alone" in response.json()["detail"]
    assert peak.added < REQUEST_BUDGET, f"{peak.added / MIB:.0f} MiB"


def test_a_full_disk_is_507_with_the_bytes_needed_and_stores_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "small-disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], check=True)
    try:
        splitter = start_service("model_splitter", "SPLITTER", disk / "data")
        try:
            # about 130 kB of weights each, all different: the registry stores each
            models = [tiny_classifier(num_classes=4000, seed=i).SerializeToString() for i in range(8)]
            answers = [register(splitter, model, f"m{i}.onnx", "1,3,32,32") for i, model in enumerate(models)]
            statuses = [answer.status_code for answer in answers]
            assert 507 in statuses, statuses
            full = answers[statuses.index(507)].json()
            assert full["error"] == "insufficient_storage" and "bytes" in full["detail"]
            assert set(statuses) <= {201, 507}
            listed = httpx.get(f"{splitter.url}/api/models", timeout=HTTP_TIMEOUT_S).json()
            assert len(listed) == statuses.count(201)  # every model listed is whole; the refused left nothing
            assert not list((disk / "data" / "staging").iterdir())
        finally:
            splitter.stop()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# ------------------------------------------------------------------------------------------------ bundles


def test_a_bundle_whose_tail_inflates_to_a_gigabyte_is_refused_within_budget(
    services: Services, tiny_split: TinySplit
) -> None:
    manifest = tiny_split.manifest.to_json_bytes()
    bomb = zero_member_zip("tail.onnx", 1024 * MIB, **{"manifest.json": manifest})
    assert len(bomb) < 2 * MIB
    with PeakMemory(services.edge) as peak:
        response = post_bundle(services.edge, bomb)
    assert response.status_code == 400, response.text
    assert "tail.onnx in the bundle zip inflates" in response.json()["detail"]
    assert peak.added < REQUEST_BUDGET, f"{peak.added / MIB:.0f} MiB"


def test_a_bundle_with_two_members_of_one_name_is_refused(services: Services, tiny_split: TinySplit) -> None:
    doubled = with_duplicate(tiny_split.zip_bytes, "tail.onnx", b"a different tail")
    for service in (services.edge, services.robot):
        response = post_bundle(service, doubled)
        assert response.status_code == 400, response.text
        assert "two members named 'tail.onnx'" in response.json()["detail"]


def damaged_bundle(split: TinySplit, member: str, compression: int) -> bytes:
    """The bundle rewritten with ``member`` stored or deflated, then bytes in the middle of its data flipped."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(split.zip_bytes)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=compression if info.filename == member else 8)
    data = bytearray(out.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
    for offset in range(start, start + 16):
        data[offset] ^= 0xA5
    return bytes(data)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["bad-crc", "bad-deflate"])
def test_a_damaged_bundle_is_400_on_robot_and_edge(services: Services, tiny_split: TinySplit, compression: int) -> None:
    for service, member in ((services.edge, "tail.onnx"), (services.robot, "head.onnx")):
        response = post_bundle(service, damaged_bundle(tiny_split, member, compression))
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "bad_request" and "damaged" in response.json()["detail"]


def test_a_manifest_naming_a_path_as_its_model_is_refused(
    services: Services, tiny_split: TinySplit, tmp_path: Path
) -> None:
    target = tmp_path / "evil"
    manifest = tiny_split.manifest.model_dump(mode="json")
    manifest["model_sha256"] = str(target)
    manifest["id"] = compute_split_id(manifest)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(tiny_split.zip_bytes)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = json.dumps(manifest).encode() if info.filename == "manifest.json" else src.read(info)
            dst.writestr(info.filename, content)
    response = post_bundle(services.robot, out.getvalue())
    assert response.status_code == 400, response.text
    assert "not a sha256" in response.json()["detail"]
    assert not Path(f"{target}.onnx").exists()


# ------------------------------------------------------------------------------------------------ frames, images


def test_a_frame_batching_more_than_the_cap_is_413_before_any_work(services: Services, tiny_split: TinySplit) -> None:
    cut = tiny_split.manifest.cut[0]
    features = np.zeros((600, *cut.shape[1:]), dtype=np.float32)
    frame = encode_frame(tiny_split.manifest.id, [quantized_record(cut.name, features, 4, 0.0, 32.0)])
    started = time.monotonic()
    response = httpx.post(
        f"{services.edge.url}/api/infer",
        content=frame,
        headers={"content-type": "application/octet-stream"},
        timeout=HTTP_TIMEOUT_S,
    )
    assert response.status_code == 413, response.text
    assert "at most 16" in response.json()["detail"]
    assert time.monotonic() - started < 5


def test_a_huge_png_is_refused_and_four_at_once_stay_within_budget(services: Services) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (7999, 7999), (90, 140, 60)).save(buffer, "PNG")
    png = buffer.getvalue()
    assert len(png) < 400_000
    with PeakMemory(services.robot) as peak:
        answers = [robot_infer(services.robot.url, image=png, mode=mode) for mode in ("all-robot", "split") * 2]
    assert {answer.status_code for answer in answers} == {400}
    assert "pixels" in answers[0].json()["detail"]
    assert peak.added < REQUEST_BUDGET, f"{peak.added / MIB:.0f} MiB"
