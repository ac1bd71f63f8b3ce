"""What the browser tests share besides fixtures: viewports, screenshots, response matchers, layout checks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from playwright.sync_api import Page, Request, ViewportSize, expect

from tests.support import REPO_ROOT, SAMPLES

__all__ = [
    "PHONE",
    "REPO_ROOT",
    "SAMPLES",
    "SCREENSHOTS",
    "SHOWN_COLUMNS_JS",
    "TABLE_FITS_JS",
    "WIDE",
    "DeployedSplit",
    "is_post",
    "job_started",
    "no_horizontal_scroll",
    "run_sample",
    "screenshot",
]

TABLE_FITS_JS = """() => { const box = document.getElementById('points-scroll');
    return box.scrollWidth - box.clientWidth; }"""
SHOWN_COLUMNS_JS = """() => [...document.querySelectorAll('#points-table thead th')]
    .filter(th => th.offsetParent !== null).map(th => th.dataset.col)"""
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
WIDE: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


@dataclass(frozen=True)
class DeployedSplit:
    model_id: str
    split_id: str


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def is_post(path_end: str) -> Any:
    return lambda response: response.request.method == "POST" and response.url.split("?")[0].endswith(path_end)


@dataclass
class StartedJob:
    """A background job the page started: the request it sent, and once ``finished()``, the job's last view."""

    api: httpx.Client
    request: Request | None = None
    id: str = ""

    def json_body(self) -> Any:
        """The JSON the page sent to start the job."""
        assert self.request is not None
        return self.request.post_data_json

    def finished(self, timeout_s: float = 300.0) -> dict[str, Any]:
        """The job once it ended (as GET /api/jobs/{id}, which the page polls, answers it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.api.get(f"/api/jobs/{self.id}").json()
            if job["state"] in ("done", "failed"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {self.id} did not finish within {timeout_s} s")

    def result(self, timeout_s: float = 300.0) -> dict[str, Any]:
        job = self.finished(timeout_s)
        assert job["state"] == "done", job["error"]
        result: dict[str, Any] = job["result"]
        return result


@contextmanager
def job_started(page: Page, api: httpx.Client, path_end: str) -> Iterator[StartedJob]:
    """Around what makes the page start a job (POST ...``path_end``): the job it started, answered 202."""
    started = StartedJob(api)
    with page.expect_response(is_post(path_end)) as response:
        yield started
    assert response.value.status == 202, response.value.text()
    started.id = response.value.json()["id"]
    started.request = response.value.request


def run_sample(page: Page, sample: str = "chelsea.jpg", mode: str = "split") -> dict[str, Any]:
    """Run a bundled sample photo from the inference page already open, in ``mode``; the JSON the page got."""
    page.locator('label[for="image-sample"]').click()
    page.get_by_label("Photo", exact=True).select_option(sample)
    page.locator(f"#mode-{mode}").check()
    with page.expect_response(is_post("/api/infer"), timeout=120_000) as answered:
        page.get_by_role("button", name="Run inference").click()
    assert answered.value.status == 200, answered.value.text()
    result: dict[str, Any] = answered.value.json()
    expect(page.get_by_test_id("answer")).to_have_attribute("data-task", result["answer"]["task"])
    return result


def no_horizontal_scroll(page: Page) -> None:
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        " + Math.max(0, document.body.scrollWidth - document.documentElement.clientWidth)"
    )
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px at {page.viewport_size}"
