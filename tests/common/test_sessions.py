"""Sessions test-run each execution provider at the shapes a split is served at, not at 1x1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from common.bundles import BundleStore, read_bundle_zip
from common.deployments import DeploymentSet
from common.errors import UnprocessableModel
from common.sessions import SessionOptions, create_session
from model_splitter.records import SplitRequest
from model_splitter.services.models import register_upload
from model_splitter.services.splits import create_split
from model_splitter.store.bundle_zip import bundle_zip
from model_splitter.store.registry import Registry

CPU = SessionOptions(providers=("cpu",), allow_spinning=False)


def dynamic_hw_model() -> onnx.ModelProto:
    """Two unpadded 3x3 convolutions on (batch, 3, h, w): nothing can run at 1x1, everything at 32x32."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "w3"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="/stem/Conv"),
        helper.make_node("Relu", ["c1"], ["r1"], name="/stem/Relu"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="/block/Conv"),
        helper.make_node("Relu", ["c2"], ["r2"], name="/block/Relu"),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="/Flatten"),
        helper.make_node("Gemm", ["flat", "w3"], ["output"], name="/fc/Gemm", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "dynamic-hw",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 5])],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_dynamic_hw_model_is_tested_at_the_shape_it_is_served_at() -> None:
    data = dynamic_hw_model().SerializeToString()
    with pytest.raises(UnprocessableModel, match="no execution provider could run the model"):
        create_session(data, CPU)  # 1x1: the first convolution has no output
    session = create_session(data, CPU, {"input": [1, 3, 32, 32]})
    assert session.provider == "CPUExecutionProvider"


def test_a_split_of_a_dynamic_hw_model_deploys_on_both_sides(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    data = dynamic_hw_model().SerializeToString()
    record = register_upload(registry, data, "yolo-like.onnx", (1, 3, 32, 32), "dynamic", False)
    manifest = create_split(registry, record.id, SplitRequest(split_point="stem", bits=8))
    zipped = bundle_zip(registry, manifest.id)
    for part in ("head", "tail"):
        deployments = DeploymentSet(BundleStore(tmp_path / part, part), CPU)
        deployment = deployments.install(read_bundle_zip(zipped, part))
        assert deployment.manifest.id == manifest.id and deployment.full is not None
