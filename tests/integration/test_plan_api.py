"""Auto-split against the real services: robot and edge profiles, the link probe, the plan, its deployment.

The tiny classifier keeps every profile to milliseconds. Which plan wins depends on measured times, so the tests
that check a pick force it with the what-if parameters (a huge image, a zero round trip, an edge 10**6 times
faster...) into a case that no timing can turn around; the others check structure and arithmetic only.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support import SAMPLES, tiny_classifier
from tools.local_stack import LocalStack

SIZE = 32
NODE_NAMES = {node.name for node in tiny_classifier(size=SIZE).graph.node}


@dataclass(frozen=True)
class Deployed:
    model_id: str
    model_sha256: str
    split_id: str
    points: int


def register(client: httpx.Client, seed: int) -> dict[str, Any]:
    model = tiny_classifier(size=SIZE, seed=seed).SerializeToString()
    response = client.post(
        "/api/models",
        files={"file": ("tiny.onnx", model)},
        data={"input_shape": f"1,3,{SIZE},{SIZE}", "name": f"tiny-plan-{seed}"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def splitter(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.splitter_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def deployed(splitter: httpx.Client) -> Deployed:
    model = register(splitter, seed=11)
    split = splitter.post(f"/api/models/{model['id']}/splits", json={"split_point": "block", "bits": 8})
    assert split.status_code == 201, split.text
    assert splitter.post(f"/api/splits/{split.json()['id']}/deploy").status_code == 200
    return Deployed(model["id"], model["sha256"], split.json()["id"], len(model["split_points"]))


def get_plan(splitter: httpx.Client, model_id: str, method: str = "GET", **params: object) -> httpx.Response:
    return splitter.request(method, f"/api/models/{model_id}/plan", params=params)


# --- robot and edge: /api/profile, /api/probe, /api/probe-link --------------------------------------------------


def test_profile_on_both_sides(stack: LocalStack, deployed: Deployed) -> None:
    image = base64.b64encode((SAMPLES / "chelsea.jpg").read_bytes()).decode()
    for url in (stack.robot_url, stack.edge_url):
        body = {"split_id": deployed.split_id, "runs": 3, "image_base64": image, "fresh": True}
        response = httpx.post(f"{url}/api/profile", json=body, timeout=120)
        assert response.status_code == 200, response.text
        profile = response.json()
        assert profile["provider"] == "CPUExecutionProvider"
        assert profile["model_sha256"] == deployed.model_sha256
        assert set(profile["nodes"]) == NODE_NAMES  # ORT_DISABLE_ALL keeps every graph node's name
        assert sum(profile["nodes"].values()) == pytest.approx(profile["total_ms"], rel=1e-3, abs=1e-3)
        assert {"decode", "preprocess", "postprocess"} <= set(profile["stages_ms"])
        assert set(profile["encode_ns_per_element"]) == {"2", "4", "8", "16", "32"}
        assert profile["cached"] is False
        by_model = httpx.post(f"{url}/api/profile", json={"model_sha256": deployed.model_sha256}, timeout=120)
        assert by_model.status_code == 200, by_model.text
        assert by_model.json()["split_id"] == deployed.split_id


def test_profile_refuses_what_is_not_deployed(stack: LocalStack) -> None:
    for url in (stack.robot_url, stack.edge_url):
        unknown_split = httpx.post(f"{url}/api/profile", json={"split_id": "0" * 64}, timeout=30)
        assert unknown_split.status_code == 409, unknown_split.text
        assert "deploy" in unknown_split.json()["detail"]
        unknown_model = httpx.post(f"{url}/api/profile", json={"model_sha256": "f" * 64}, timeout=30)
        assert unknown_model.status_code == 409, unknown_model.text
        neither = httpx.post(f"{url}/api/profile", json={"runs": 3}, timeout=30)
        assert neither.status_code == 400
        too_many_runs = httpx.post(f"{url}/api/profile", json={"split_id": "0" * 64, "runs": 10_000}, timeout=30)
        assert too_many_runs.status_code == 422


def test_edge_probe_counts_the_body(stack: LocalStack) -> None:
    response = httpx.post(
        f"{stack.edge_url}/api/probe", content=bytes(100_000), headers={"content-type": "application/octet-stream"}
    )
    assert response.status_code == 200
    assert response.json() == {"received": 100_000}
    assert httpx.post(f"{stack.edge_url}/api/probe").json() == {"received": 0}


def test_robot_probes_the_link(stack: LocalStack) -> None:
    response = httpx.post(f"{stack.robot_url}/api/probe-link", json={"bytes": 200_000, "repeats": 2}, timeout=60)
    assert response.status_code == 200, response.text
    probe = response.json()
    assert probe["rtt_ms"] > 0 and probe["throughput_mbps"] > 0
    kinds = [s["kind"] for s in probe["samples"]]
    assert kinds.count("rtt") == 5 and kinds.count("throughput") == 3  # the sizing sample, then the repeats
    assert 16 * 1024 <= probe["body_bytes"] <= 200_000
    assert httpx.post(f"{stack.robot_url}/api/probe-link", json={"bytes": 10}).status_code == 422


# --- the splitter: GET/POST /api/models/{id}/plan, /plan/curve -----------------------------------------------------


def test_plan_with_given_link(splitter: httpx.Client, deployed: Deployed) -> None:
    response = get_plan(splitter, deployed.model_id, bandwidth_mbps=10, rtt_ms=1.5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["link"] == {
        "bandwidth_mbps": 10.0,
        "rtt_ms": 1.5,
        "bandwidth_source": "given",
        "rtt_source": "given",
        "probe": None,
    }
    plans = body["plans"]
    assert len(plans) == 2 + 5 * deployed.points
    assert body["pick"] == plans[0] and plans[0]["rank"] == 1
    eligible = [p for p in plans if p["eligible"]]
    assert [p["rank"] for p in eligible] == list(range(1, len(eligible) + 1))
    assert [p["total_ms"] for p in eligible] == sorted(p["total_ms"] for p in eligible)
    if not body["calibrated"]:
        assert any("calibrat" in note for note in body["notes"])
        assert {p["key"] for p in plans if not p["eligible"]} == {
            p["key"] for p in plans if p["mode"] == "split" and p["bits"] <= 8
        }
    for p in plans:
        parts = p["robot_ms"] + p["transfer_ms"] + p["rtt_ms"] + p["edge_ms"]
        assert p["total_ms"] == pytest.approx(parts, abs=2e-3)
        if p["mode"] == "split":
            assert p["share_source"] == "profile"
            assert p["transfer_ms"] == pytest.approx((p["bytes"] + p["response_bytes"]) * 8 / 10e6 * 1e3, abs=1e-3)
    assert {p["key"] for p in plans if p["mode"] == "all-robot"} == {"all-robot"}
    assert next(p for p in plans if p["key"] == "all-robot")["bytes"] == 0


def test_plan_measures_the_link_when_not_given(splitter: httpx.Client, deployed: Deployed) -> None:
    response = get_plan(splitter, deployed.model_id, rtt_ms=0.5)
    assert response.status_code == 200, response.text
    link = response.json()["link"]
    assert link["bandwidth_source"] == "measured" and link["rtt_source"] == "given"
    assert link["bandwidth_mbps"] == link["probe"]["throughput_mbps"] > 0
    assert link["rtt_ms"] == 0.5


def test_post_plan_deploys_the_pick_and_the_robot_runs_it(
    stack: LocalStack, splitter: httpx.Client, deployed: Deployed
) -> None:
    # A 1 TB image rules out all-edge; an edge 10**6 times faster, no round trip and a 1 Tbit/s link make the
    # last split point (8 values, float32) cheaper than all-robot whatever the profiles say.
    forced = {"bandwidth_mbps": 1e6, "rtt_ms": 0, "image_bytes": 10**12, "edge_scale": 1e-6}
    response = get_plan(splitter, deployed.model_id, "POST", **forced)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "split" == body["pick"]["mode"] and body["created_split"] is True
    assert body["pick"]["bits"] >= 16  # not calibrated: nothing narrower passes the floor
    manifest = splitter.get(f"/api/splits/{body['split_id']}").json()
    assert (manifest["split_point"], manifest["quantization"]["bits"]) == (
        body["pick"]["split_point"],
        body["pick"]["bits"],
    )
    assert httpx.get(f"{stack.robot_url}/health").json()["active_split_id"] == body["split_id"]
    answer = infer(stack, body["mode"], body["split_id"])
    assert (answer["mode"], answer["split_id"], answer["bits"]) == ("split", body["split_id"], body["pick"]["bits"])

    # A 10 s round trip leaves all-robot as the only sensible plan.
    response = get_plan(splitter, deployed.model_id, "POST", bandwidth_mbps=0.001, rtt_ms=10_000)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "all-robot" and body["created_split"] is False
    assert infer(stack, body["mode"], body["split_id"])["mode"] == "all-robot"


def test_a_robot_a_million_times_slower_sends_the_image(splitter: httpx.Client, deployed: Deployed) -> None:
    response = get_plan(splitter, deployed.model_id, bandwidth_mbps=1e6, rtt_ms=0, robot_scale=1e6)
    assert response.status_code == 200, response.text
    assert response.json()["pick"]["key"] == "all-edge"


def test_curve_shows_the_best_plans_against_bandwidth(splitter: httpx.Client, deployed: Deployed) -> None:
    response = splitter.get(
        f"/api/models/{deployed.model_id}/plan/curve", params={"bandwidths": "1,10,100", "rtt_ms": 1, "top": 3}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["bandwidths_mbps"] == [1.0, 10.0, 100.0] and len(body["winners"]) == 3
    keys = [s["key"] for s in body["series"]]
    assert set(body["winners"]) <= set(keys) and len(keys) >= 3
    assert all(len(s["total_ms"]) == 3 for s in body["series"])
    bad = splitter.get(f"/api/models/{deployed.model_id}/plan/curve", params={"bandwidths": "fast"})
    assert bad.status_code == 400


def test_plan_needs_a_deployed_split_and_a_known_model(splitter: httpx.Client) -> None:
    lonely = register(splitter, seed=12)
    response = get_plan(splitter, lonely["id"], bandwidth_mbps=10, rtt_ms=1)
    assert response.status_code == 409
    assert f"POST /api/models/{lonely['id']}/splits" in response.json()["detail"]
    assert get_plan(splitter, "0123456789abcdef").status_code == 404
    assert get_plan(splitter, lonely["id"], bandwidth_mbps=0).status_code == 422


def infer(stack: LocalStack, mode: str, split_id: str) -> dict[str, Any]:
    with open(SAMPLES / "chelsea.jpg", "rb") as handle:
        response = httpx.post(
            f"{stack.robot_url}/api/infer",
            files={"image": ("chelsea.jpg", handle)},
            data={"mode": mode, "split_id": split_id},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
