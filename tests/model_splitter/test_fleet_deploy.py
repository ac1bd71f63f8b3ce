"""The splitter deploys a split to a fleet (SPLITTER_ROBOT_URL / SPLITTER_EDGE_URL lists): real services, one dead."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import httpx

from tests.support import running_service, tiny_classifier
from tools.local_stack import free_port

TIMEOUT_S = 120
CHELSEA = Path(__file__).resolve().parents[2] / "model_splitter" / "data" / "samples" / "chelsea.jpg"


def register_tiny(client: httpx.Client) -> str:
    files = {"file": ("tiny.onnx", tiny_classifier().SerializeToString())}
    model = client.post("/api/models", files=files, data={"input_shape": "1,3,32,32"})
    assert model.status_code == 201, model.text
    model_id: str = model.json()["id"]
    return model_id


def test_a_split_reaches_every_live_member_and_the_dead_one_is_named(tmp_path: Path) -> None:
    splitter_port = free_port()
    splitter_url = f"http://127.0.0.1:{splitter_port}"
    dead_edge = f"http://127.0.0.1:{free_port()}"
    with ExitStack() as stack:
        edges = [
            stack.enter_context(
                running_service("edge_inference", "EDGE", tmp_path / f"e{i}", splitter_url=splitter_url)
            )
            for i in range(2)
        ]
        edge_urls = [edges[0].url, dead_edge, edges[1].url]
        robots = [
            stack.enter_context(
                running_service(
                    "robot_inference",
                    "ROBOT",
                    tmp_path / f"r{i}",
                    splitter_url=splitter_url,
                    edge_url=",".join(edge_urls),
                )
            )
            for i in range(2)
        ]
        splitter = stack.enter_context(
            running_service(
                "model_splitter",
                "SPLITTER",
                tmp_path / "splitter",
                port=splitter_port,
                robot_url=",".join(robot.url for robot in robots),
                edge_url=",".join(edge_urls),
            )
        )
        client = stack.enter_context(httpx.Client(base_url=splitter.url, timeout=TIMEOUT_S))
        model = client.post(
            "/api/models",
            files={"file": ("tiny.onnx", tiny_classifier().SerializeToString())},
            data={"input_shape": "1,3,32,32"},
        )
        assert model.status_code == 201, model.text
        split = client.post(f"/api/models/{model.json()['id']}/splits", json={"split_point": "block", "bits": 4}).json()
        deployed = client.post(f"/api/splits/{split['id']}/deploy")
        assert deployed.status_code == 200, deployed.text
        members = {(m["side"], m["url"]): m for m in deployed.json()["members"]}
        assert set(members) == {("edge", url) for url in edge_urls} | {("robot", r.url) for r in robots}
        assert "cannot be reached" in members[("edge", dead_edge)]["error"]
        for key, member in members.items():
            if key != ("edge", dead_edge):
                assert member["deployment"]["split_id"] == split["id"] and member["error"] is None
        health = client.get("/health").json()
        assert [e["url"] for e in health["edges"]] == edge_urls
        by_url = {e["url"]: e["health"] for e in health["edges"]}
        assert by_url[dead_edge] is None and by_url[edges[1].url]["active_split_id"] == split["id"]
        assert all(r["health"]["active_split_id"] == split["id"] for r in health["robots"])
        # and each robot answers through its edges
        for robot in robots:
            photo = {"image": ("chelsea.jpg", CHELSEA.read_bytes())}
            answer = httpx.post(f"{robot.url}/api/infer", files=photo, timeout=TIMEOUT_S)
            assert answer.status_code == 200 and answer.json()["edge_url"] in (edges[0].url, edges[1].url)


def test_a_fleet_where_no_edge_takes_the_split_fails_the_deploy(tmp_path: Path) -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    with running_service("model_splitter", "SPLITTER", tmp_path, edge_url=",".join(dead)) as splitter:
        client = httpx.Client(base_url=splitter.url, timeout=TIMEOUT_S)
        model = client.post(
            "/api/models",
            files={"file": ("tiny.onnx", tiny_classifier().SerializeToString())},
            data={"input_shape": "1,3,32,32"},
        )
        split = client.post(f"/api/models/{model.json()['id']}/splits", json={"split_point": "block"}).json()
        refused = client.post(f"/api/splits/{split['id']}/deploy")
        assert refused.status_code == 503 and dead[0] in refused.json()["detail"]
        client.close()
