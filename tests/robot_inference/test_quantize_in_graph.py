"""ROBOT_QUANTIZE_IN_GRAPH: the robot runs the head with the quantizer inside and sends what it gives, as it is."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from common.bundles import read_bundle_zip
from common.errors import BadRequest
from tests.support import TinySplit, make_tiny_split, robot_infer, running_service, upload_bundle
from tools.local_stack import ServiceProcess

Robots = tuple[ServiceProcess, ServiceProcess, ServiceProcess]


@pytest.fixture(scope="module", params=["one width", "a width per channel"])
def robots(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_split: TinySplit
) -> Iterator[Robots]:
    """Quantizing in the graph, quantizing in numpy, and quantizing in the graph speaking the protocol; for a
    split at one width and for one with a width per channel (wire kind 8)."""
    root = tmp_path_factory.mktemp("in-graph")
    split = tiny_split if request.param == "one width" else make_tiny_split(root, allocation="rate-distortion")
    assert split.manifest.code_graphs is not None
    assert (request.param == "one width") == (split.manifest.quantization.ranges[0].channel_bits is None)
    with (
        running_service("edge_inference", "EDGE", root / "edge") as edge,
        running_service("robot_inference", "ROBOT", root / "g", edge_url=edge.url, quantize_in_graph="true") as graph,
        running_service("robot_inference", "ROBOT", root / "n", edge_url=edge.url) as numpy_robot,
        running_service(
            "robot_inference", "ROBOT", root / "o", edge_url=edge.url, quantize_in_graph="true", edge_protocol="oip"
        ) as oip,
    ):
        for service in (edge, graph, numpy_robot, oip):
            upload_bundle(service, split.zip_bytes)
        yield graph, numpy_robot, oip


def test_in_graph_codes_make_the_same_frame_and_answer(robots: Robots) -> None:
    graph, numpy_robot, oip = robots
    deployed = httpx.get(f"{graph.url}/api/splits", timeout=30).json()
    assert [d["codes_in_graph"] for d in deployed] == [True]
    assert [d["codes_in_graph"] for d in httpx.get(f"{numpy_robot.url}/api/splits", timeout=30).json()] == [False]
    in_graph = robot_infer(graph.url, mode="split").json()
    in_numpy = robot_infer(numpy_robot.url, mode="split").json()
    assert in_graph["bytes"]["sent"] == in_numpy["bytes"]["sent"]  # the same codes, coded the same way
    assert in_graph["answer"] == in_numpy["answer"]
    names = [stage["name"] for stage in in_graph["stages"]]
    assert "head + quantize (in graph)" in names and "head" not in names
    over_oip = robot_infer(oip.url, mode="split").json()
    assert over_oip["answer"] == in_numpy["answer"]
    assert "head + quantize (in graph)" in [stage["name"] for stage in over_oip["stages"]]


def test_a_bundle_whose_codes_graph_was_changed_is_refused(tiny_split: TinySplit) -> None:
    source = zipfile.ZipFile(io.BytesIO(tiny_split.zip_bytes))
    changed = io.BytesIO()
    with zipfile.ZipFile(changed, "w") as archive:
        for name in source.namelist():
            data = source.read(name)
            archive.writestr(name, data + b"\0" if name == "head_codes.onnx" else data)
    with pytest.raises(BadRequest, match=r"head_codes\.onnx does not match"):
        read_bundle_zip(changed.getvalue(), "head")
