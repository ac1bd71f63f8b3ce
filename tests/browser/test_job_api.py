"""The JSON routes behind the UI (background jobs of every kind, sample photos) and the job table itself; no browser
needed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from common.errors import Conflict, InvalidArgument, NotFound
from model_splitter.records import ModelRecord
from model_splitter.store.jobs import Job, JobTable
from model_splitter.store.samples import SAMPLE_NAMES
from tests.browser.support import SAMPLES, DeployedSplit
from tests.support import tiny_classifier


def wait_finished(table: JobTable, job_id: str, timeout_s: float = 10.0) -> Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = table.get(job_id)
        if job.finished:
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish")


def fake_record(model_id: str = "0123456789abcdef") -> ModelRecord:
    return ModelRecord.model_validate(
        {
            "id": model_id,
            "name": "fake",
            "sha256": "0" * 64,
            "size_bytes": 1,
            "source_format": "onnx",
            "architecture": None,
            "input_shape": [1, 3, 8, 8],
            "weights_trained": True,
            "export_max_abs_diff": None,
            "num_classes": 2,
            "opset": 17,
            "created_at": "2024-01-01T00:00:00.000+00:00",
            "preprocessing": {"resize_shorter_to": 9, "crop": [8, 8], "mean": [0, 0, 0], "std": [1, 1, 1]},
            "split_points": [],
        }
    )


# ---------------------------------------------------------------------------------------------------- job table


def test_a_job_reports_its_stages_then_its_model() -> None:
    table = JobTable(workers=1)
    release = threading.Event()
    seen: list[str] = []

    def registration(progress: Callable[[str], None]) -> ModelRecord:
        progress("exporting")
        seen.append(table.list()[0].stage)
        release.wait(5)
        progress("verifying")
        return fake_record()

    job = table.submit(registration)
    assert job.state == "queued"
    time.sleep(0.1)
    assert table.get(job.id).state == "running" and table.get(job.id).stage == "exporting"
    release.set()
    done = wait_finished(table, job.id)
    assert (done.state, done.stage, done.model_id, done.error) == ("done", "done", "0123456789abcdef", None)
    assert seen == ["exporting"]
    table.close()


def test_a_failed_job_keeps_the_status_and_the_message() -> None:
    table = JobTable(workers=1)

    def refused(progress: Callable[[str], None]) -> ModelRecord:
        raise InvalidArgument("the file is not a model we recognise")

    def broken(progress: Callable[[str], None]) -> ModelRecord:
        raise RuntimeError("boom")

    failed = wait_finished(table, table.submit(refused).id)
    assert failed.state == "failed" and failed.error is not None
    assert (failed.error.status, failed.error.code) == (400, "invalid_argument")
    assert failed.error.detail == "the file is not a model we recognise"
    crashed = wait_finished(table, table.submit(broken).id)
    assert crashed.error is not None and crashed.error.status == 500 and "boom" in crashed.error.detail
    table.close()


def test_the_table_is_bounded() -> None:
    table = JobTable(workers=1, max_remembered=3, max_pending=2)
    ids = [table.submit(lambda progress: fake_record()).id for _ in range(2)]
    for job_id in ids:
        wait_finished(table, job_id)
    for _ in range(3):
        wait_finished(table, table.submit(lambda progress: fake_record()).id)
    assert len(table.list()) == 3
    with pytest.raises(NotFound):
        table.get(ids[0])

    gate = threading.Event()
    blocked = [table.submit(lambda progress: (gate.wait(5), fake_record())[1]) for _ in range(2)]
    with pytest.raises(Conflict):
        table.submit(lambda progress: fake_record())
    gate.set()
    for job in blocked:
        assert wait_finished(table, job.id).state == "done"
    table.close()


# ---------------------------------------------------------------------------------------------------- HTTP


def test_job_routes_refuse_bad_requests(api: httpx.Client) -> None:
    nothing = api.post("/api/model-jobs", data={"name": "x"})
    assert nothing.status_code == 400 and nothing.json()["error"] == "invalid_argument"
    shape = api.post("/api/model-jobs", data={"arch": "resnet18", "input_shape": "a,b"})
    assert shape.status_code == 400 and "input shape" in shape.json()["detail"]
    unknown = api.get("/api/model-jobs/nope")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"


def test_a_text_file_job_fails_with_the_registration_error(api: httpx.Client) -> None:
    accepted = api.post("/api/model-jobs", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert accepted.status_code == 202
    job = accepted.json()
    assert {"id", "state", "stage"} <= job.keys()
    assert accepted.headers["location"] == f"/api/model-jobs/{job['id']}"
    deadline = time.monotonic() + 60
    while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
        job = api.get(f"/api/model-jobs/{job['id']}").json()
    direct = api.post("/api/models", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert job["state"] == "failed" and job["model_id"] is None
    assert job["error"] == {
        "status": direct.status_code,
        "code": direct.json()["error"],
        "detail": direct.json()["detail"],
    }


def test_samples_are_listed_and_served_by_name_only(api: httpx.Client) -> None:
    assert api.get("/api/samples").json() == list(SAMPLE_NAMES)
    photo = api.get("/samples/chelsea.jpg")
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert photo.content == (SAMPLES / "chelsea.jpg").read_bytes()
    assert api.get("/samples/chelsea.png").headers["content-type"] == "image/png"
    for name in ("LICENSE.md", "..%2F..%2Fapp.py", "%2Fetc%2Fpasswd", "CHELSEA.JPG"):
        assert api.get(f"/samples/{name}").status_code == 404, name


# ---------------------------------------------------------------------------------------------------- other kinds


def follow(api: httpx.Client, accepted: httpx.Response, timeout_s: float = 300.0) -> tuple[dict[str, Any], list[str]]:
    """Poll the job ``accepted`` started until it ends: its last view and every stage seen on the way."""
    assert accepted.status_code == 202, accepted.text
    job: dict[str, Any] = accepted.json()
    assert accepted.headers["location"] == f"/api/jobs/{job['id']}"
    stages = [job["stage"]]
    deadline = time.monotonic() + timeout_s
    while job["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, f"job {job['id']} still {job['state']} ({job['stage']})"
        time.sleep(0.02)
        job = api.get(f"/api/jobs/{job['id']}").json()
        if job["stage"] != stages[-1]:
            stages.append(job["stage"])
    return job, stages


@pytest.fixture(scope="module")
def tiny_model(api: httpx.Client) -> dict[str, Any]:
    """A tiny classifier uploaded as ONNX: calibrating it takes seconds."""
    onnx_bytes = tiny_classifier(num_classes=10, size=32).SerializeToString()
    created = api.post("/api/models", files={"file": ("tiny.onnx", onnx_bytes, "application/octet-stream")})
    assert created.status_code == 201, created.text
    model: dict[str, Any] = created.json()
    return model


def test_a_calibration_job_answers_what_calibrate_stores(api: httpx.Client, tiny_model: dict[str, Any]) -> None:
    model_id = tiny_model["id"]
    accepted = api.post(f"/api/models/{model_id}/calibration-jobs", data={"method": "percentile", "bits": "2,4"})
    assert accepted.json()["kind"] == "calibration" and accepted.json()["model_id"] == model_id
    job, stages = follow(api, accepted)
    assert job["state"] == "done", job["error"]
    assert (job["model_name"], job["error"]) == (tiny_model["name"], None)
    stored = api.get(f"/api/models/{model_id}/calibration").json()
    assert job["result"] == stored
    assert (stored["method"], stored["bits"]) == ("percentile", [2, 4])
    assert stages[-1] == "done" and all(stage for stage in stages)
    listed = api.get("/api/jobs", params={"model_id": model_id}).json()
    assert listed[0]["id"] == job["id"]
    assert api.get("/api/jobs", params={"model_id": model_id, "active": "true"}).json() == []


def test_a_split_job_answers_the_manifest(api: httpx.Client, tiny_model: dict[str, Any]) -> None:
    model_id = tiny_model["id"]
    body = {"split_point": tiny_model["split_points"][0]["label"], "bits": 8}
    job, _ = follow(api, api.post(f"/api/models/{model_id}/split-jobs", json=body))
    assert job["state"] == "done", job["error"]
    assert (job["kind"], job["split_point"], job["split_id"]) == ("split", body["split_point"], None)
    assert job["result"] == api.get(f"/api/splits/{job['result']['id']}").json()
    assert job["result"]["split_point"] == body["split_point"]


def test_job_routes_check_what_they_can_at_once(api: httpx.Client, tiny_model: dict[str, Any]) -> None:
    model_id = tiny_model["id"]
    for path in ("/api/models/0123456789abcdef/calibration-jobs", "/api/models/0123456789abcdef/plan-jobs"):
        missing = api.post(path)
        assert missing.status_code == 404 and missing.json()["error"] == "not_found", path
    method = api.post(f"/api/models/{model_id}/calibration-jobs", data={"method": "guess"})
    assert method.status_code == 400 and "method" in method.json()["detail"]
    assert api.post(f"/api/models/{model_id}/calibration-jobs", data={"bits": "9"}).status_code == 400
    point = api.post(f"/api/models/{model_id}/split-jobs", json={"split_point": "nowhere", "bits": 4})
    direct = api.post(f"/api/models/{model_id}/splits", json={"split_point": "nowhere", "bits": 4})
    assert (point.status_code, point.json()) == (direct.status_code, direct.json())
    assert point.status_code in (400, 404)
    assert api.post("/api/splits/0123456789abcdef/deploy-jobs").status_code == 404
    assert api.post(f"/api/models/{model_id}/plan-jobs", params={"bandwidth_mbps": "0"}).status_code == 422


def test_a_plan_job_fails_as_the_plan_does(api: httpx.Client, tiny_model: dict[str, Any]) -> None:
    model_id = tiny_model["id"]
    direct = api.get(f"/api/models/{model_id}/plan", params={"bandwidth_mbps": 10, "rtt_ms": 2})
    assert direct.status_code == 409  # nothing of it is deployed: neither side can time it
    job, _ = follow(api, api.post(f"/api/models/{model_id}/plan-jobs", params={"bandwidth_mbps": 10, "rtt_ms": 2}))
    assert job["state"] == "failed" and job["kind"] == "plan"
    assert job["error"] == {"status": 409, "code": direct.json()["error"], "detail": direct.json()["detail"]}


def test_deploy_and_plan_jobs_report_their_steps(api: httpx.Client, resnet18_split: DeployedSplit) -> None:
    split_id = resnet18_split.split_id
    job, stages = follow(api, api.post(f"/api/splits/{split_id}/deploy-jobs"))
    assert job["state"] == "done", job["error"]
    assert (job["kind"], job["split_id"], job["model_id"]) == ("deployment", split_id, resnet18_split.model_id)
    assert job["result"]["edge"]["split_id"] == split_id and job["result"]["robot"]["split_id"] == split_id
    assert api.get("/health").json()["robot"]["active_split_id"] == split_id
    assert set(stages) <= {"queued", "starting", "the edge loads the tail", "the robot loads the head", "done"}

    params = {"bandwidth_mbps": 20, "rtt_ms": 2, "deploy": "true"}
    planned, stages = follow(api, api.post(f"/api/models/{resnet18_split.model_id}/plan-jobs", params=params))
    assert planned["state"] == "done", planned["error"]
    assert planned["kind"] == "plan-deployment"
    result = planned["result"]
    assert result["pick"]["key"] in {plan["key"] for plan in result["plans"]}
    assert result["deployed"]["robot"]["split_id"] == result["split_id"]
    assert api.get("/health").json()["robot"]["active_split_id"] == result["split_id"]
