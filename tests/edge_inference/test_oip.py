"""The edge speaks the Open Inference Protocol: NVIDIA's own client, tritonclient, runs a deployed tail."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from common.codes import codes_name, codes_to_features, codes_width, features_to_codes
from tests.edge_inference.support import features
from tests.support import TinySplit, running_service
from tools.local_stack import ServiceProcess


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with running_service("edge_inference", "EDGE", tmp_path_factory.mktemp("oip-edge")) as service:
        yield service


@pytest.fixture(scope="module")
def client(edge: ServiceProcess) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(edge.url.removeprefix("http://"))
    yield connection
    connection.close()


def test_ready_only_with_a_tail_loaded(
    edge: ServiceProcess, client: triton.InferenceServerClient, tiny_split: TinySplit
) -> None:
    assert client.is_server_live()
    assert not client.is_server_ready()
    not_ready = httpx.get(f"{edge.url}/v2/health/ready")
    assert not_ready.status_code == 503 and set(not_ready.json()) == {"error"}
    deploy(edge, tiny_split)
    assert client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]


def deploy(edge: ServiceProcess, split: TinySplit) -> None:
    response = httpx.post(f"{edge.url}/api/bundles", files={"bundle": ("b.zip", split.zip_bytes)}, timeout=60)
    assert response.status_code == 200, response.text


def tail_outputs(split: TinySplit, x: np.ndarray) -> list[np.ndarray]:
    tail = ort.InferenceSession(str(split.registry.split_file(split.manifest.id, "tail.onnx")))
    outputs: list[np.ndarray] = tail.run(None, {split.manifest.cut[0].name: x})
    return outputs


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_tail_runs_for_tritonclient_by_split_id_and_by_name(
    edge: ServiceProcess, client: triton.InferenceServerClient, tiny_split: TinySplit, binary: bool
) -> None:
    deploy(edge, tiny_split)
    manifest = tiny_split.manifest
    readable = f"tiny-{manifest.split_point}-{manifest.quantization.bits}b"
    x = features(tiny_split, batch=2, seed=4)
    expected = tail_outputs(tiny_split, x)[0]
    for name in (manifest.id, readable):
        assert client.is_model_ready(name)
        metadata = client.get_model_metadata(name)
        assert metadata["name"] == readable and metadata["versions"] == ["1"]
        width = codes_width(manifest, manifest.cut[0])
        assert metadata["inputs"] == [
            {"name": codes_name(manifest.cut[0].name), "datatype": "UINT8", "shape": [-1, width]}
        ]
        assert [o["name"] for o in metadata["outputs"]] == ["output"]
        tensor = triton.InferInput(manifest.cut[0].name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        wanted = [triton.InferRequestedOutput("output", binary_data=binary)]
        result = client.infer(name, [tensor], outputs=wanted, request_id="r-1")
        got = result.as_numpy("output")
        assert got is not None and got.shape == (2, 10)
        np.testing.assert_array_equal(got, expected)  # the same tail on the same float32 features
        assert result.get_response()["id"] == "r-1"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_tail_runs_on_the_codes_a_robot_sends(
    edge: ServiceProcess, client: triton.InferenceServerClient, tiny_split: TinySplit, binary: bool
) -> None:
    """UINT8 <cut>.codes in, as the Triton repository's tail takes them: the answer of the tail on decoded codes."""
    deploy(edge, tiny_split)
    manifest = tiny_split.manifest
    codes = features_to_codes(manifest, [features(tiny_split, batch=3, seed=8)])
    (name,) = codes
    tensor = triton.InferInput(name, list(codes[name].shape), "UINT8")
    tensor.set_data_from_numpy(codes[name], binary_data=binary)
    result = client.infer(manifest.readable_name, [tensor], outputs=[triton.InferRequestedOutput("output", binary)])
    expected = tail_outputs(tiny_split, codes_to_features(manifest, codes)[manifest.cut[0].name])[0]
    np.testing.assert_array_equal(result.as_numpy("output"), expected)
    short = triton.InferInput(name, [1, codes[name].shape[1] - 1], "UINT8")
    short.set_data_from_numpy(codes[name][:1, :-1])
    with pytest.raises(InferenceServerException, match=r"must be uint8 \[batch, "):
        client.infer(manifest.id, [short])


def test_protocol_errors_name_what_is_wrong(
    edge: ServiceProcess, client: triton.InferenceServerClient, tiny_split: TinySplit
) -> None:
    deploy(edge, tiny_split)
    with pytest.raises(InferenceServerException, match="no model 'nope'"):
        client.get_model_metadata("nope")
    wrong = triton.InferInput(tiny_split.manifest.cut[0].name, [1, 3, 32, 32], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 3, 32, 32), dtype=np.float32))
    with pytest.raises(InferenceServerException, match=r"the model takes \[batch, 8, 32, 32\]"):
        client.infer(tiny_split.manifest.id, [wrong])
    as_int = triton.InferInput(tiny_split.manifest.cut[0].name, [1, 8, 32, 32], "INT32")
    as_int.set_data_from_numpy(np.zeros((1, 8, 32, 32), dtype=np.int32))
    with pytest.raises(InferenceServerException, match="FP32"):
        client.infer(tiny_split.manifest.id, [as_int])
    garbled = httpx.post(f"{edge.url}/v2/models/{tiny_split.manifest.id}/infer", content=b"{not json", timeout=30)
    assert garbled.status_code == 400 and "not JSON" in garbled.json()["error"]
