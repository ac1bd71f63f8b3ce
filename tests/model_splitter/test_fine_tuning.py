"""Fine-tuned tails through the real services: a new split whose tail learnt from the float model, the same head
and graph, figures measured on held-out images, served by robot and edge exactly as its tail computes; the job
route with its stages; and the refusals (widths without codes, bad forms, operators torch cannot run here)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from common.imaging import decode_image, preprocess
from common.manifest import SplitManifest
from model_splitter.quantize.fidelity import roundtrip
from model_splitter.quantize.images import unseen_batch
from model_splitter.services.fine_tuning import DEFAULT_ANCHOR
from model_splitter.store.samples import unseen_photos
from tests.support import SAMPLES, running_stack, tiny_classifier
from tools.local_stack import ServiceProcess

STEPS = 40


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, ServiceProcess, ServiceProcess]]:
    root = tmp_path_factory.mktemp("fine-tuning-stack")
    with running_stack(root) as services:
        yield services


def _register(client: httpx.Client, model: onnx.ModelProto, name: str) -> str:
    upload = {"file": (f"{name}.onnx", model.SerializeToString())}
    response = client.post("/api/models", files=upload, data={"input_shape": "1,3,32,32", "task": "classification"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _split(client: httpx.Client, model_id: str, point: str, bits: int) -> SplitManifest:
    response = client.post(f"/api/models/{model_id}/splits", json={"split_point": point, "bits": bits})
    assert response.status_code == 201, response.text
    return SplitManifest.model_validate(response.json())


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_a_fine_tuned_tail_is_a_new_split_served_as_it_computes(
    stack: tuple[ServiceProcess, ServiceProcess, ServiceProcess],
) -> None:
    splitter, robot, edge = stack
    image = (SAMPLES / "chelsea.jpg").read_bytes()
    with httpx.Client(base_url=splitter.url, timeout=300) as client:
        model_id = _register(client, tiny_classifier(), "tiny")
        base = _split(client, model_id, "stem", 2)
        # Without the anchor: the tiny tail's loss, already small, must still fall in a few steps.
        response = client.post(f"/api/splits/{base.id}/fine-tune", data={"steps": str(STEPS), "anchor": "0"})
        assert response.status_code == 201, response.text
        tuned = SplitManifest.model_validate(response.json())
        assert client.get(f"/api/splits/{tuned.id}").json() == response.json()

        tuning = tuned.fine_tuning
        assert tuning is not None and tuning.base_split == base.id and tuning.bits == [2]
        assert (tuning.steps, tuning.samples, tuning.images, tuning.anchor) == (STEPS, 16 * 9, "bundled", 0.0)
        assert tuning.last_loss < tuning.first_loss
        # The base tail measured again on the held-out images is what its own split says it is.
        assert base.verification.fidelity is not None and tuned.verification.fidelity is not None
        assert tuning.base_fidelity.top1_agreement == base.verification.fidelity.top1_agreement
        assert tuning.base_fidelity.cosine == pytest.approx(base.verification.fidelity.cosine, abs=1e-6)
        assert tuned.verification.fidelity.images == 32 and tuned.verification.fidelity.fit_images == 16
        # Both tails on the photos of other scenes: the base one as the base split itself answers them.
        assert tuning.unseen_fidelity is not None and tuning.base_unseen_fidelity is not None
        assert tuning.unseen_fidelity.images == tuning.base_unseen_fidelity.images == 12
        unseen = unseen_batch(unseen_photos(), base.preprocessing)
        head_model = onnx.load_from_string(client.get(f"/api/splits/{base.id}/head.onnx").content)
        base_tail = onnx.load_from_string(client.get(f"/api/splits/{base.id}/tail.onnx").content)
        (base_features,) = _session(head_model).run(None, {"input": unseen})
        (base_logits,) = _session(base_tail).run(
            None, {base.cut[0].name: roundtrip(base_features, 2, base.quantization.ranges[0])}
        )
        (float_logits,) = _session(tiny_classifier()).run(None, {"input": unseen})
        agreeing = np.mean(np.argmax(base_logits, axis=1) == np.argmax(float_logits, axis=1))
        assert tuning.base_unseen_fidelity.top1_agreement == pytest.approx(agreeing)
        assert tuned.id != base.id and tuned.readable_name.endswith("-tuned")
        assert tuned.head_sha256 == base.head_sha256 and tuned.tail_sha256 != base.tail_sha256
        assert tuned.quantization == base.quantization and tuned.cut == base.cut
        assert tuned.code_graphs is not None

        old_tail = onnx.load_from_string(client.get(f"/api/splits/{base.id}/tail.onnx").content)
        new_tail = onnx.load_from_string(client.get(f"/api/splits/{tuned.id}/tail.onnx").content)
        assert [n.SerializeToString() for n in new_tail.graph.node] == [
            n.SerializeToString() for n in old_tail.graph.node
        ]
        changed = [
            a.name
            for a, b in zip(old_tail.graph.initializer, new_tail.graph.initializer, strict=True)
            if not np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
        ]
        assert sorted(changed) == ["b2", "b3", "w2", "w3"]

        bundle = client.get(f"/api/splits/{tuned.id}/bundle.zip").content
        for service in (edge, robot):
            installed = httpx.post(f"{service.url}/api/bundles", files={"bundle": ("b.zip", bundle)}, timeout=60)
            assert installed.status_code == 200, installed.text
        answer = client.post("/api/infer", files={"image": ("c.jpg", image)}, data={"split_id": tuned.id})
        assert answer.status_code == 200, answer.text

        head = onnx.load_from_string(client.get(f"/api/splits/{tuned.id}/head.onnx").content)
        batch = preprocess(decode_image(image), tuned.preprocessing)
        (features,) = _session(head).run(None, {"input": batch})
        restored = roundtrip(features, 2, tuned.quantization.ranges[0])
        (logits,) = _session(new_tail).run(None, {tuned.cut[0].name: restored})
        assert [p["index"] for p in answer.json()["predictions"]] == list(np.argsort(-logits[0])[:5])


def _with_sin(model: onnx.ModelProto) -> onnx.ModelProto:
    """The tiny classifier with a Sin after the second ReLU: a tail torch's reading here cannot run."""
    graph = model.graph
    pool = next(n for n in graph.node if n.op_type == "GlobalAveragePool")
    pool.input[0] = "waved"
    at = list(graph.node).index(pool)
    graph.node.insert(at, helper.make_node("Sin", ["r2"], ["waved"], name="/block/wave/Sin"))
    onnx.checker.check_model(model)
    return model


def _wait(client: httpx.Client, job_id: str) -> tuple[dict[str, object], set[str]]:
    stages: set[str] = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        stages.add(str(job["stage"]))
        if job["state"] in ("done", "failed"):
            return job, stages
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end")


def test_the_job_route_and_the_refusals(stack: tuple[ServiceProcess, ServiceProcess, ServiceProcess]) -> None:
    splitter, _, _ = stack
    with httpx.Client(base_url=splitter.url, timeout=300) as client:
        model_id = _register(client, tiny_classifier(seed=1), "tiny-1")
        base = _split(client, model_id, "block", 4)
        started = client.post(f"/api/splits/{base.id}/fine-tune-jobs", data={"steps": "3000"})
        assert started.status_code == 202, started.text
        assert started.headers["location"] == f"/api/jobs/{started.json()['id']}"
        assert started.json()["kind"] == "fine-tuning" and started.json()["split_id"] == base.id
        job, stages = _wait(client, started.json()["id"])
        assert job["state"] == "done", job
        assert any(stage.startswith("training the tail: step") for stage in stages), stages
        result = job["result"]
        assert isinstance(result, dict) and result["fine_tuning"]["base_split"] == base.id
        assert result["fine_tuning"]["anchor"] == DEFAULT_ANCHOR > 0
        assert client.get(f"/api/splits/{result['id']}").status_code == 200

        wide = _split(client, model_id, "block", 32)
        refused = client.post(f"/api/splits/{wide.id}/fine-tune")
        assert refused.status_code == 400 and "1..8 bits" in refused.json()["detail"]
        assert client.post(f"/api/splits/{wide.id}/fine-tune-jobs").status_code == 400
        for form, words in (({"steps": "0"}, "steps: "), ({"learning_rate": "1"}, "learning_rate: ")):
            bad = client.post(f"/api/splits/{base.id}/fine-tune", data=form)
            assert bad.status_code == 422 and words in bad.json()["detail"], bad.text
        one = client.post(
            f"/api/splits/{base.id}/fine-tune", files=[("images", ("a.jpg", (SAMPLES / "chelsea.jpg").read_bytes()))]
        )
        assert one.status_code == 400 and "at least 2" in one.json()["detail"]
        assert client.post(f"/api/splits/{'0' * 64}/fine-tune").status_code == 404

        waved = _register(client, _with_sin(tiny_classifier(seed=2)), "waved")
        split = _split(client, waved, "stem", 4)
        unsupported = client.post(f"/api/splits/{split.id}/fine-tune", data={"steps": "5"})
        assert unsupported.status_code == 422 and "Sin" in unsupported.json()["detail"], unsupported.text
        assert client.get("/health").status_code == 200
