"""Sessions test-run each execution provider at the shapes a split is served at, not at 1x1."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from common import sessions as sessions_module
from common.bundles import BundleStore, read_bundle_zip
from common.deployments import DeploymentSet
from common.errors import UnprocessableModel
from common.sessions import SessionOptions, create_session, options_in_force, tensorrt_profile
from edge_inference.settings import EdgeSettings
from model_splitter.records import SplitRequest
from model_splitter.services.models import register_upload
from model_splitter.services.splits import create_split
from model_splitter.store.bundle_zip import bundle_zip
from model_splitter.store.registry import Registry
from robot_inference.settings import RobotSettings

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


def test_provider_settings_reach_the_options_onnx_runtime_receives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_TRT_DLA_CORE", "1")
    monkeypatch.setenv("EDGE_TRT_FP16", "false")
    monkeypatch.setenv("EDGE_TRT_WORKSPACE_BYTES", str(2 << 30))
    monkeypatch.setenv("EDGE_CUDA_DEVICE_ID", "3")
    options = EdgeSettings().session_options()
    tensorrt = options.provider_options["TensorrtExecutionProvider"]
    assert tensorrt["trt_fp16_enable"] == "False" and tensorrt["device_id"] == "3"
    assert tensorrt["trt_dla_enable"] == "True" and tensorrt["trt_dla_core"] == "1"
    assert tensorrt["trt_max_workspace_size"] == str(2 << 30)
    assert options.provider_options["CUDAExecutionProvider"] == {"device_id": "3"}


def test_fp16_is_on_by_default_where_tensorrt_runs() -> None:
    tensorrt = RobotSettings().session_options().provider_options["TensorrtExecutionProvider"]
    assert tensorrt["trt_fp16_enable"] == "True" and "trt_dla_enable" not in tensorrt


def test_the_optimisation_profile_spans_batch_1_to_the_maximum_at_the_served_shape() -> None:
    profile = tensorrt_profile({"input": [1, 3, 224, 224]}, max_batch=8)
    assert profile == {
        "trt_profile_min_shapes": "input:1x3x224x224",
        "trt_profile_opt_shapes": "input:1x3x224x224",
        "trt_profile_max_shapes": "input:8x3x224x224",
    }
    two = tensorrt_profile({"a": [1, 8], "b": [1, 4, 4]}, max_batch=2)
    assert two["trt_profile_max_shapes"] == "a:2x8,b:2x4x4"


def test_tensorrt_preferred_where_it_is_absent_falls_back_with_a_logged_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this build has TensorRT")
    sessions_module._reported_missing.discard("TensorrtExecutionProvider")
    options = RobotSettings().session_options()
    with caplog.at_level(logging.WARNING, logger="common.sessions"):
        session = create_session(dynamic_hw_model().SerializeToString(), options, {"input": [1, 3, 32, 32]})
    assert session.provider == "CPUExecutionProvider"
    assert any("TensorrtExecutionProvider is not in this onnxruntime build" in r.getMessage() for r in caplog.records)
    assert "TensorrtExecutionProvider" not in options_in_force(options)
    assert "CPUExecutionProvider" in options_in_force(options)
