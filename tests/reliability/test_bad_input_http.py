"""Bad input over real HTTP: every refusal is a clear 4xx and leaves nothing behind.

Decoding and intake are unit-tested in tests/common/test_imaging.py and tests/model_splitter/test_intake.py;
here the same cases travel through the real services (multipart parsing, size limits, error mapping, the robot
forwarding an edge's refusal) so that none of them can turn into a 500 or a half-registered model.
"""

from __future__ import annotations

import io
import pickle
import struct
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from tests.reliability.harness import start_service
from tests.support import CHELSEA, HTTP_TIMEOUT_S, SAMPLES, TinySplit, robot_infer, tiny_classifier, upload_bundle
from tools.local_stack import ServiceProcess, free_port

MAX_MODEL_BYTES = 1_000_000
MAX_IMAGE_BYTES = 100_000
MAX_BUNDLE_BYTES = 200_000
CHELSEA_PNG = (SAMPLES / "chelsea.png").read_bytes()  # 240 kB: over MAX_IMAGE_BYTES


@dataclass(frozen=True)
class Services:
    splitter: ServiceProcess
    splitter_data: Path
    robot: ServiceProcess
    edge: ServiceProcess


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, tiny_split: TinySplit) -> Iterator[Services]:
    root = tmp_path_factory.mktemp("bad-input")
    dead = f"http://127.0.0.1:{free_port()}"
    with ExitStack() as running:
        splitter = start_service(
            "model_splitter",
            "SPLITTER",
            root / "splitter",
            robot_url=dead,
            edge_url=dead,
            max_model_bytes=str(MAX_MODEL_BYTES),
            max_image_bytes=str(MAX_IMAGE_BYTES),
        )
        running.callback(splitter.stop)
        edge = start_service("edge_inference", "EDGE", root / "edge", max_bundle_bytes=str(MAX_BUNDLE_BYTES))
        running.callback(edge.stop)
        robot = start_service(
            "robot_inference", "ROBOT", root / "robot", edge_url=edge.url, max_image_bytes=str(MAX_IMAGE_BYTES)
        )
        running.callback(robot.stop)
        assert len(tiny_split.zip_bytes) < MAX_BUNDLE_BYTES
        upload_bundle(edge, tiny_split.zip_bytes)
        upload_bundle(robot, tiny_split.zip_bytes)
        yield Services(splitter, root / "splitter", robot, edge)


# ------------------------------------------------------------------------------------------ models, splitter


def skip_connection_only_model() -> bytes:
    """y = relu(x) + x: every path from input to output does not share one tensor, so nothing can be cut."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Add", ["a", "x"], ["y"])],
        "no_cut",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def external_data_model() -> bytes:
    """The tiny classifier with one weight 'stored' in a file outside the model's folder."""
    model = tiny_classifier()
    weight = model.graph.initializer[0]
    count = int(np.prod(weight.dims))
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../../../etc/passwd"), ("offset", "0"), ("length", str(count * 4))):
        weight.external_data.add(key=key, value=value)
    return bytes(model.SerializeToString())


def torch_saved_module() -> bytes:
    buffer = io.BytesIO()
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()), buffer)
    return buffer.getvalue()


class CreatesFile:
    """A pickle that creates a file when it is loaded: what a hostile upload does, harmlessly."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def register(services: Services, files: dict[str, tuple[str, bytes]], data: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{services.splitter.url}/api/models", files=files, data=data, timeout=HTTP_TIMEOUT_S)


@pytest.mark.parametrize(
    ("name", "make", "error", "words"),
    [
        ("skip.onnx", skip_connection_only_model, "unprocessable_model", "cannot be split"),
        ("external.onnx", external_data_model, "unsafe_model_format", "path traversal"),
        ("model.pt", torch_saved_module, "unsafe_model_format", "arbitrary code"),
    ],
)
def test_models_that_cannot_be_served_are_422(services: Services, name: str, make: Any, error: str, words: str) -> None:
    response = register(services, {"file": (name, make())}, {})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == error
    assert words in response.json()["detail"]


def test_hostile_pickle_is_422_and_never_runs(services: Services, tmp_path: Path) -> None:
    marker = tmp_path / "the-pickle-ran"
    response = register(services, {"file": ("evil.pkl", pickle.dumps(CreatesFile(marker), protocol=4))}, {})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "unsafe_model_format"
    assert not marker.exists()


def test_model_and_weights_over_the_limit_are_413(services: Services) -> None:
    too_big = b"\x08" + bytes(MAX_MODEL_BYTES)
    response = register(services, {"file": ("huge.onnx", too_big)}, {})
    assert response.status_code == 413, response.text
    assert f"{MAX_MODEL_BYTES:,}" in response.json()["detail"]
    weights = register(services, {"weights": ("w.pth", too_big)}, {"arch": "resnet18"})
    assert weights.status_code == 413, weights.text


def test_image_over_the_limit_is_413_on_splitter_and_robot(services: Services) -> None:
    through_splitter = httpx.post(
        f"{services.splitter.url}/api/infer", files={"image": ("c.png", CHELSEA_PNG)}, timeout=HTTP_TIMEOUT_S
    )
    assert through_splitter.status_code == 413, through_splitter.text
    on_robot = robot_infer(services.robot.url, image=CHELSEA_PNG)
    assert on_robot.status_code == 413, on_robot.text
    assert on_robot.json()["error"] == "payload_too_large"


def test_bundle_over_the_limit_is_413(services: Services) -> None:
    response = httpx.post(
        f"{services.edge.url}/api/bundles",
        files={"bundle": ("b.zip", bytes(MAX_BUNDLE_BYTES + 1))},
        timeout=HTTP_TIMEOUT_S,
    )
    assert response.status_code == 413, response.text


def test_refusals_leave_the_registry_empty(services: Services) -> None:
    """Runs after the refusals above (file order): none of them left a model, a split or a staged file."""
    assert httpx.get(f"{services.splitter.url}/api/models", timeout=HTTP_TIMEOUT_S).json() == []
    for folder in ("models", "splits", "staging"):
        assert list((services.splitter_data / folder).iterdir()) == [], folder


# ------------------------------------------------------------------------------------------------ images, robot


def encode(image: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A few hundred bytes that declare a width x height greyscale PNG: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 8)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def small_photo() -> Image.Image:
    """Chelsea at 60x40: not square, so a wrong orientation changes the crop the model sees."""
    return Image.open(io.BytesIO(CHELSEA)).convert("RGB").resize((60, 40))


def answer(services: Services, image: bytes, mode: str = "split") -> list[dict[str, Any]]:
    response = robot_infer(services.robot.url, image=image, mode=mode)
    assert response.status_code == 200, response.text
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16", "P"])
def test_other_colour_modes_are_answered(services: Services, mode: str) -> None:
    photo = small_photo()
    if mode == "I;16":
        grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
        image = Image.fromarray(grey)
        assert image.mode == "I;16"
    else:
        image = photo.convert(mode)
    for how in ("split", "all-edge"):
        assert len(answer(services, encode(image, "JPEG" if mode == "CMYK" else "PNG"), how)) == 5


def test_every_exif_orientation_gives_the_answer_of_the_upright_image(services: Services) -> None:
    upright = small_photo()
    # The stored pixels of an image tagged with each orientation, so that applying the tag gives ``upright``.
    stored = {
        1: upright,
        2: upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        3: upright.transpose(Image.Transpose.ROTATE_180),
        4: upright.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
        5: upright.transpose(Image.Transpose.TRANSPOSE),
        6: upright.transpose(Image.Transpose.ROTATE_90),
        7: upright.transpose(Image.Transpose.TRANSVERSE),
        8: upright.transpose(Image.Transpose.ROTATE_270),
    }
    expected = answer(services, encode(upright))
    ignoring_tags = set()
    for orientation, pixels in stored.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        assert answer(services, encode(pixels, exif=exif.tobytes())) == expected, orientation
        ignoring_tags.add(str(answer(services, encode(pixels))))
    assert len(ignoring_tags) > 1, "the test images must look different to the model without their tags"


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (CHELSEA[: len(CHELSEA) // 2], "truncated"),
        (png_declaring(20_000, 20_000), "too many pixels"),
        (b"", "empty"),
        (b"GIF89a" + bytes(30), "not an image"),
    ],
    ids=["truncated", "bomb", "empty", "broken-gif"],
)
def test_broken_images_are_400_on_robot_and_edge(services: Services, image: bytes, words: str) -> None:
    for mode in ("split", "all-robot", "all-edge"):  # all-edge: the edge decodes and the robot passes its 400 on
        response = robot_infer(services.robot.url, image=image, mode=mode)
        assert response.status_code == 400, (mode, response.text)
        assert words in response.json()["detail"], (mode, response.text)
