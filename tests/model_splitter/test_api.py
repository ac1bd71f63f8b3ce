"""The splitter's REST API as a real uvicorn process (robot and edge deliberately absent)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support import SAMPLES, running_service, tiny_classifier
from tools.local_stack import ServiceProcess, free_port

TINY = tiny_classifier().SerializeToString()


@pytest.fixture(scope="module")
def splitter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    dead = f"http://127.0.0.1:{free_port()}"
    with running_service(
        "model_splitter", "SPLITTER", tmp_path_factory.mktemp("splitter"), robot_url=dead, edge_url=dead
    ) as service:
        yield service


@pytest.fixture(scope="module")
def client(splitter: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=splitter.url, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def model_id(client: httpx.Client) -> str:
    response = client.post("/api/models", files={"file": ("tiny.onnx", TINY)}, data={"input_shape": "1,3,32,32"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["source_format"] == "onnx" and body["fixed_batch"] is None
    assert [p["label"] for p in body["split_points"]] == ["stem.conv", "stem", "block.conv", "block", "pool", "flatten"]
    model_id: str = body["id"]
    return model_id


def test_model_listing_and_split_points(client: httpx.Client, model_id: str) -> None:
    assert model_id in [m["id"] for m in client.get("/api/models").json()]
    points = client.get(f"/api/models/{model_id}/split-points").json()
    block = next(p for p in points if p["label"] == "block")
    assert block["shape"] == [1, 8, 32, 32]
    assert block["wire_bytes"] == {"32": 32768, "16": 16384, "8": 8192, "4": 4096, "2": 2048}
    assert 0 < block["head_flops_share"] < 1
    downloaded = client.get(f"/api/models/{model_id}/model.onnx").content
    assert hashlib.sha256(downloaded).hexdigest()[:16] == model_id


def test_same_upload_twice_is_the_same_model(client: httpx.Client, model_id: str) -> None:
    again = client.post("/api/models", files={"file": ("copy.onnx", TINY)}, data={"input_shape": "1,3,32,32"})
    assert again.status_code == 201
    assert again.json()["id"] == model_id


def test_split_creation_is_content_addressed(client: httpx.Client, model_id: str) -> None:
    request = {"split_point": "block", "bits": 4}
    first = client.post(f"/api/models/{model_id}/splits", json=request)
    assert first.status_code == 201, first.text
    manifest = first.json()
    by_tensor = client.post(f"/api/models/{model_id}/splits", json={"split_point": "r2", "bits": 4})
    assert by_tensor.json()["id"] == manifest["id"]
    other_bits = client.post(f"/api/models/{model_id}/splits", json={"split_point": "block", "bits": 2})
    assert other_bits.json()["id"] != manifest["id"]
    # Calibrated as it was made (on the bundled photos, judged on held-out ones), zero-exact codes, coded.
    quantization = manifest["quantization"]
    assert (quantization["method"], quantization["scheme"], quantization["entropy"]) == ("calibrated", "affine", "zstd")
    assert quantization["ranges"][0]["lo"] == 0.0 and 0.0 < quantization["ranges"][0]["hi"] < 32.0
    fidelity = manifest["verification"]["fidelity"]
    assert (fidelity["images"], fidelity["fit_images"]) == (32, 16)
    graph = client.post(f"/api/models/{model_id}/splits", json={**request, "clip": "graph"}).json()
    assert graph["quantization"]["ranges"] == [{"name": "r2", "lo": 0.0, "hi": 32.0}]
    assert graph["quantization"]["method"] == "fixed" and graph["id"] != manifest["id"]
    assert manifest["verification"]["head_tail_max_abs_diff"] <= 1e-4
    assert client.get(f"/api/splits/{manifest['id']}").json() == manifest
    head = client.get(f"/api/splits/{manifest['id']}/head.onnx").content
    tail = client.get(f"/api/splits/{manifest['id']}/tail.onnx").content
    assert hashlib.sha256(head).hexdigest() == manifest["head_sha256"]
    assert hashlib.sha256(tail).hexdigest() == manifest["tail_sha256"]
    bundle = zipfile.ZipFile(io.BytesIO(client.get(f"/api/splits/{manifest['id']}/bundle.zip").content))
    assert sorted(bundle.namelist()) == [
        "head.onnx",
        "head_codes.onnx",
        "manifest.json",
        "model.onnx",
        "tail.onnx",
        "tail_codes.onnx",
    ]
    triton = client.get(f"/api/splits/{manifest['id']}/triton.zip", params={"max_batch_size": 4, "tensorrt": "true"})
    assert triton.status_code == 200 and triton.headers["content-type"] == "application/zip"
    repository = zipfile.ZipFile(io.BytesIO(triton.content))
    config = next(n for n in repository.namelist() if n.endswith("/config.pbtxt"))
    text = repository.read(config).decode()
    assert "max_batch_size: 4" in text and 'name: "tensorrt"' in text
    for codes_file, key in (("head_codes.onnx", "head_sha256"), ("tail_codes.onnx", "tail_sha256")):
        graph_file = client.get(f"/api/splits/{manifest['id']}/{codes_file}")
        assert hashlib.sha256(graph_file.content).hexdigest() == manifest["code_graphs"][key]
    tail_codes = client.get(f"/api/splits/{manifest['id']}/tail_codes.onnx").content
    assert repository.read(config.replace("config.pbtxt", "1/model.onnx")) == tail_codes
    features = client.get(f"/api/splits/{manifest['id']}/triton.zip", params={"inputs": "features"})
    float_repository = zipfile.ZipFile(io.BytesIO(features.content))
    assert float_repository.read(config.replace("config.pbtxt", "1/model.onnx")) == tail
    floats = client.post(f"/api/models/{model_id}/splits", json={"split_point": "block", "bits": 16}).json()
    assert "code_graphs" not in floats
    missing = client.get(f"/api/splits/{floats['id']}/tail_codes.onnx")
    assert missing.status_code == 404 and "sends floats" in missing.json()["detail"]
    kserve = client.get(f"/api/splits/{manifest['id']}/kserve.json", params={"storage_uri": "gs://b/m", "gpu": "false"})
    assert kserve.status_code == 200 and kserve.json()["spec"]["predictor"]["model"]["storageUri"] == "gs://b/m"
    no_storage = client.get(f"/api/splits/{manifest['id']}/kserve.json")
    assert no_storage.status_code == 422 and "storage_uri" in no_storage.text
    local = client.get(f"/api/splits/{manifest['id']}/kserve.json", params={"storage_uri": "/tmp/m"})
    assert local.status_code == 400 and "storage_uri must be" in local.json()["detail"]
    refused = client.get(f"/api/splits/{manifest['id']}/triton.zip", params={"max_batch_size": 0})
    assert refused.status_code == 422 and "max_batch_size" in refused.json()["detail"]


def test_signed_cut_gets_a_symmetric_default_range(client: httpx.Client, model_id: str) -> None:
    manifest = client.post(f"/api/models/{model_id}/splits", json={"split_point": "block.conv"}).json()
    assert manifest["quantization"]["ranges"][0]["lo"] < 0
    custom = client.post(f"/api/models/{model_id}/splits", json={"split_point": "block", "clip": [-1.5, 6]}).json()
    assert custom["quantization"]["ranges"][0] == {"name": "r2", "lo": -1.5, "hi": 6.0}


def test_an_infinite_clip_is_refused_before_anything_is_stored(client: httpx.Client, model_id: str) -> None:
    before = client.get(f"/api/models/{model_id}/splits").json()
    response = client.post(
        f"/api/models/{model_id}/splits",
        content=b'{"split_point": "block", "bits": 4, "clip": [-1e309, 1e309]}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert "finite" in response.json()["detail"]
    assert client.get(f"/api/models/{model_id}/splits").json() == before


def test_a_cut_tensor_whose_name_no_frame_can_carry_is_refused(client: httpx.Client) -> None:
    model = tiny_classifier(seed=3)
    long_name = "r2/" + "é" * 300  # 603 UTF-8 bytes, the block's output
    for node in model.graph.node:
        node.input[:] = [long_name if name == "r2" else name for name in node.input]
        node.output[:] = [long_name if name == "r2" else name for name in node.output]
    upload = client.post(
        "/api/models", files={"file": ("long.onnx", model.SerializeToString())}, data={"input_shape": "1,3,32,32"}
    )
    assert upload.status_code == 201, upload.text
    response = client.post(f"/api/models/{upload.json()['id']}/splits", json={"split_point": "block", "bits": 4})
    assert response.status_code == 422, response.text
    assert "603-byte name" in response.json()["detail"] and "255" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"split_point": "nowhere"}, 400, "block"),
        ({"split_point": "block", "bits": 9}, 400, "bits must be one of"),
        ({"split_point": "block", "clip": [5, 1]}, 400, "lo < hi"),
        ({"split_point": "block", "clip": [1.0, 1.0 + 1e-12]}, 400, "as float32"),
        ({"bits": 4}, 422, "split_point"),
        ({"split_point": "block", "clip": [0, 1e39]}, 422, "fit in float32"),
        ({"split_point": "block", "bits": True}, 422, "bits"),
    ],
)
def test_bad_split_requests(
    client: httpx.Client, model_id: str, body: dict[str, object], status: int, words: str
) -> None:
    response = client.post(f"/api/models/{model_id}/splits", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


@pytest.mark.parametrize(
    ("files", "data", "status", "words"),
    [
        (None, {}, 400, "arch"),
        ({"file": ("notes.txt", b"just some text")}, {}, 400, "ONNX"),
        (None, {"arch": "resnet9000"}, 400, "resnet9000"),
        ({"file": ("tiny.onnx", TINY)}, {"input_shape": "1,3,banana"}, 400, "input shape"),
    ],
)
def test_bad_model_uploads(
    client: httpx.Client, files: dict[str, tuple[str, bytes]] | None, data: dict[str, str], status: int, words: str
) -> None:
    response = client.post("/api/models", files=files, data=data) if files else client.post("/api/models", data=data)
    assert response.status_code == status, response.text
    assert words.lower() in response.json()["detail"].lower()


def test_unknown_ids_are_404(client: httpx.Client) -> None:
    assert client.get("/api/models/0123456789abcdef").status_code == 404
    assert client.get("/api/models/../../etc").status_code == 404
    assert client.get(f"/api/splits/{'0' * 64}").status_code == 404
    assert client.get(f"/api/splits/{'0' * 64}/head.onnx").status_code == 404


def test_deploy_and_infer_with_peers_down_are_503(client: httpx.Client, model_id: str) -> None:
    split_id = client.post(f"/api/models/{model_id}/splits", json={"split_point": "block"}).json()["id"]
    deploy = client.post(f"/api/splits/{split_id}/deploy")
    assert deploy.status_code == 503
    assert "is it running" in deploy.json()["detail"]
    image = (SAMPLES / "chelsea.jpg").read_bytes()
    assert client.post("/api/infer", files={"image": ("c.jpg", image)}).status_code == 503


def test_delete_removes_model_and_its_splits(client: httpx.Client) -> None:
    other = tiny_classifier(num_classes=4, seed=3).SerializeToString()
    created = client.post("/api/models", files={"file": ("other.onnx", other)}, data={"input_shape": "1,3,32,32"})
    other_id = created.json()["id"]
    split_id = client.post(f"/api/models/{other_id}/splits", json={"split_point": "stem"}).json()["id"]
    deleted = client.delete(f"/api/models/{other_id}")
    assert deleted.status_code == 200
    assert deleted.json()["deleted_splits"] == [split_id]
    assert client.get(f"/api/models/{other_id}").status_code == 404
    assert client.get(f"/api/splits/{split_id}").status_code == 404


def test_openapi_lists_the_documented_routes(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/models",
        "/api/models/{model_id}",
        "/api/models/{model_id}/split-points",
        "/api/models/{model_id}/splits",
        "/api/splits/{split_id}",
        "/api/splits/{split_id}/head.onnx",
        "/api/splits/{split_id}/tail.onnx",
        "/api/splits/{split_id}/deploy",
        "/api/infer",
    ):
        assert path in paths, path


def test_plan_without_robot_and_edge_is_503(client: httpx.Client, model_id: str) -> None:
    response = client.get(f"/api/models/{model_id}/plan", params={"bandwidth_mbps": 10, "rtt_ms": 1})
    assert response.status_code == 503, response.text
    assert "is it running?" in response.json()["detail"]


def test_restart_keeps_the_registry(tmp_path: Path) -> None:
    with running_service("model_splitter", "SPLITTER", tmp_path) as first:
        created = httpx.post(
            f"{first.url}/api/models", files={"file": ("t.onnx", TINY)}, data={"input_shape": "1,3,32,32"}, timeout=60
        ).json()
    with running_service("model_splitter", "SPLITTER", tmp_path) as second:
        assert httpx.get(f"{second.url}/api/models/{created['id']}").json() == created


def test_a_fixed_batch_onnx_export_splits_at_every_point(client: httpx.Client) -> None:
    """``torch.onnx.export`` without ``dynamic_axes`` fixes the batch at 1: the head/tail check runs at that batch."""
    model = tiny_classifier(seed=8)
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    response = client.post(
        "/api/models", files={"file": ("fixed.onnx", model.SerializeToString())}, data={"input_shape": "1,3,32,32"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["input_shape"] == [1, 3, 32, 32] and body["fixed_batch"] == 1
    assert client.get(f"/models/{body['id']}").text.count("fixed at 1") == 1  # the model page says so
    for point in body["split_points"]:
        split = client.post(f"/api/models/{body['id']}/splits", json={"split_point": point["label"], "bits": 8})
        assert split.status_code == 201, (point["label"], split.text)
        assert split.json()["verification"]["head_tail_max_abs_diff"] <= 1e-4


def test_a_fixed_batch_model_is_registered_again_with_a_dynamic_batch(client: httpx.Client) -> None:
    model = tiny_classifier(seed=9)
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    files = {"file": ("fixed.onnx", model.SerializeToString())}
    fixed = client.post("/api/models", files=files, data={"input_shape": "1,3,32,32", "task": "raw"}).json()
    rewritten = client.post(f"/api/models/{fixed['id']}/dynamic-batch")
    assert rewritten.status_code == 201, rewritten.text
    body = rewritten.json()
    assert body["fixed_batch"] is None and body["id"] != fixed["id"] and body["name"].endswith("(dynamic batch)")
    assert body["postprocessing"] == fixed["postprocessing"] and body["preprocessing"] == fixed["preprocessing"]
    assert [p["label"] for p in body["split_points"]] == [p["label"] for p in fixed["split_points"]]
    again = client.post(f"/api/models/{body['id']}/dynamic-batch")
    assert again.status_code == 409 and "dynamic already" in again.json()["detail"]


def test_four_torchvision_registrations_at_once_all_succeed(client: httpx.Client) -> None:
    """The ONNX exporter keeps global state; exports take turns instead of failing each other."""
    architectures = ["resnet18", "squeezenet1_1", "mobilenet_v2", "mnasnet0_5"]

    def register(arch: str) -> httpx.Response:
        return client.post("/api/models", data={"arch": arch, "input_shape": "1,3,96,96"})

    with ThreadPoolExecutor(max_workers=len(architectures)) as pool:
        answers = list(pool.map(register, architectures))
    assert [answer.status_code for answer in answers] == [201] * 4, [answer.text[:200] for answer in answers]
    assert [answer.json()["architecture"] for answer in answers] == architectures


def test_the_architecture_list_names_each_family(client: httpx.Client) -> None:
    listed = client.get("/api/architectures").json()
    families = {entry["name"]: entry["family"] for entry in listed}
    assert families["resnet18"] == "classification"
    assert families["deeplabv3_mobilenet_v3_large"] == "segmentation"
    assert families["ssdlite320_mobilenet_v3_large"] == "detection"
    assert set(families.values()) == {"classification", "segmentation", "detection"}
