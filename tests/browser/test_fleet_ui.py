"""The model page with a fleet (SPLITTER_EDGE_URL lists two edges, one of them dead): deploy, and each member shown."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.browser.support import WIDE, screenshot
from tests.support import running_service, tiny_classifier
from tools.local_stack import free_port

Fleet = tuple[str, str, str]  # splitter URL, live edge URL, dead edge URL


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root: Path = tmp_path_factory.mktemp("fleet-ui")
    splitter_port = free_port()
    splitter_url = f"http://127.0.0.1:{splitter_port}"
    dead = f"http://127.0.0.1:{free_port()}"
    with ExitStack() as stack:
        edge = stack.enter_context(running_service("edge_inference", "EDGE", root / "edge", splitter_url=splitter_url))
        robot = stack.enter_context(
            running_service(
                "robot_inference", "ROBOT", root / "robot", splitter_url=splitter_url, edge_url=f"{edge.url},{dead}"
            )
        )
        stack.enter_context(
            running_service(
                "model_splitter",
                "SPLITTER",
                root / "splitter",
                port=splitter_port,
                robot_url=robot.url,
                edge_url=f"{edge.url},{dead}",
            )
        )
        yield splitter_url, edge.url, dead


def test_a_deploy_to_a_fleet_shows_every_member(browser: Browser, fleet: Fleet) -> None:
    splitter_url, live, dead = fleet
    with httpx.Client(base_url=splitter_url, timeout=120) as api:
        files = {"file": ("tiny.onnx", tiny_classifier().SerializeToString())}
        model_id = api.post("/api/models", files=files, data={"input_shape": "1,3,32,32"}).json()["id"]
        split = api.post(f"/api/models/{model_id}/splits", json={"split_point": "block"}).json()
    context = browser.new_context(viewport=WIDE, base_url=splitter_url)
    try:
        page = context.new_page()
        page.goto(f"/models/{model_id}")
        edges = page.get_by_test_id("fleet-edge")
        expect(edges.locator("li")).to_have_count(2)
        expect(edges.locator(f'li[data-member="{dead}"]')).to_contain_text("down")
        expect(page.get_by_test_id("fleet-robot")).to_be_hidden()  # one robot: no fleet list
        page.locator(f'button[data-deploy="{split["id"]}"]').click()
        expect(page.get_by_test_id("deployed")).to_be_visible(timeout=60_000)
        expect(page.locator("#split-status")).to_contain_text("to 1 of 2 edges and 1 robot")
        expect(page.get_by_test_id("deploy-failed")).to_contain_text(f"edge {dead} did not take it")
        expect(edges.locator(f'li[data-member="{live}"]')).to_contain_text(f"up · {split['id'][:12]}")
        screenshot(page, "model-fleet")
    finally:
        context.close()
