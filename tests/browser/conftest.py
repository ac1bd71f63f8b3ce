"""Headless Debian Chromium, driven by Playwright, against the three services running as real processes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, Request, Route, sync_playwright

from tests.browser.support import WIDE, DeployedSplit
from tools.local_stack import STARTUP_TIMEOUT_S, LocalStack, ServiceProcess, free_port

CHROMIUM = Path(os.environ.get("SPLITBOT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(
        data_dir=tmp_path_factory.mktemp("ui-stack"),
        splitter_port=free_port(),
        robot_port=free_port(),
        edge_port=free_port(),
        extra_env={"ROBOT_INTRA_OP_THREADS": "1", "EDGE_INTRA_OP_THREADS": "1"},
    )
    with local:
        yield local


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.splitter_url, timeout=300.0) as client:
        yield client


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"the browser tests need Debian's Chromium at {CHROMIUM}, and it is missing: run `make test` as root "
            "(it installs it with apt), or `sudo apt-get install chromium`, or point SPLITBOT_CHROMIUM at a "
            "Chromium binary",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    launched = playwright_instance.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@dataclass
class PageWatch:
    """What a page did that it must not: script errors, and requests to anywhere but the splitter."""

    base_url: str
    errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)

    def route(self, route: Route, request: Request) -> None:
        if request.url.startswith(self.base_url):
            route.continue_()
        else:
            self.outside_requests.append(request.url)
            route.abort()


@pytest.fixture
def watch(stack: LocalStack) -> PageWatch:
    return PageWatch(base_url=stack.splitter_url)


@pytest.fixture
def page(browser: Browser, stack: LocalStack, watch: PageWatch) -> Iterator[Page]:
    context = browser.new_context(viewport=WIDE, base_url=stack.splitter_url)
    context.route("**/*", watch.route)
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    opened.on("pageerror", lambda error: watch.errors.append(str(error)))
    yield opened
    context.close()
    assert not watch.errors, f"the page raised script errors: {watch.errors}"
    assert not watch.outside_requests, f"the page asked for outside resources: {watch.outside_requests}"


@pytest.fixture(scope="session")
def resnet18_split(api: httpx.Client) -> DeployedSplit:
    """A resnet18 split at layer2, 4 bits, registered here via the API (once a session)."""
    model = api.post("/api/models", data={"arch": "resnet18"})
    assert model.status_code == 201, model.text
    model_id = model.json()["id"]
    split = api.post(f"/api/models/{model_id}/splits", json={"split_point": "layer2", "bits": 4})
    assert split.status_code == 201, split.text
    return DeployedSplit(model_id=model_id, split_id=split.json()["id"])


@pytest.fixture
def deployed_split(api: httpx.Client, resnet18_split: DeployedSplit) -> DeployedSplit:
    """The resnet18 split, deployed and active on robot and edge (other tests deploy other splits in between)."""
    deployed = api.post(f"/api/splits/{resnet18_split.split_id}/deploy")
    assert deployed.status_code == 200, deployed.text
    return resnet18_split


@pytest.fixture(scope="session")
def lonely_splitter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A splitter whose robot and edge are not running (their ports are closed); yields its URL."""
    data_dir = tmp_path_factory.mktemp("lonely")
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "SPLITTER_HOST": "127.0.0.1",
            "SPLITTER_PORT": str(port),
            "SPLITTER_DATA_DIR": str(data_dir / "splitter"),
            "SPLITTER_ROBOT_URL": f"http://127.0.0.1:{free_port()}",
            "SPLITTER_EDGE_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    service = ServiceProcess("splitter", "model_splitter", f"http://127.0.0.1:{port}", env, data_dir / "splitter.log")
    service.start(sys.executable)
    try:
        service.wait_healthy(time.monotonic() + STARTUP_TIMEOUT_S)
        yield service.url
    finally:
        service.stop()
