"""Fine-tuning a split's tail from the model page, in headless Chromium against the real splitter, robot and edge:
the button starts the job, its stages show, and the new split is listed with both tails' held-out agreement."""

from __future__ import annotations

import math

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import job_started, screenshot
from tests.support import tiny_classifier

pytestmark = pytest.mark.browser


def _percent(share: float) -> str:
    """As the page writes it: JavaScript's Math.round rounds halves up."""
    return f"{math.floor(share * 1000 + 0.5) / 10:g} %"


def test_fine_tune_a_tail_from_the_model_page(page: Page, api: httpx.Client) -> None:
    upload = {"file": ("tiny-tuned.onnx", tiny_classifier(seed=27).SerializeToString())}
    model = api.post("/api/models", files=upload, data={"input_shape": "1,3,32,32", "task": "classification"})
    assert model.status_code == 201, model.text
    model_id = model.json()["id"]
    base = api.post(f"/api/models/{model_id}/splits", json={"split_point": "stem", "bits": 2})
    assert base.status_code == 201, base.text
    base_id = base.json()["id"]
    wide = api.post(f"/api/models/{model_id}/splits", json={"split_point": "stem", "bits": 32}).json()

    page.goto(f"/models/{model_id}")
    expect(page.locator(f'button[data-tune="{wide["id"]}"]')).to_have_count(0)  # nothing to learn at 32 bits
    agreement = base.json()["verification"]["fidelity"]["top1_agreement"]
    base_item = page.locator(f'li[data-split-id="{base_id}"]')
    expect(base_item.get_by_test_id("split-agreement")).to_contain_text(f"{_percent(agreement)} of 32 held-out")
    with job_started(page, api, f"/api/splits/{base_id}/fine-tune-jobs") as started:
        base_item.locator(f'button[data-tune="{base_id}"]').click()
    tuned = started.result()
    tuning = tuned["fine_tuning"]
    assert tuning["base_split"] == base_id and api.get(f"/api/splits/{tuned['id']}").json() == tuned
    status = page.get_by_test_id("split-status")
    expect(page.get_by_test_id("tuned")).to_be_visible()
    after = tuned["verification"]["fidelity"]["top1_agreement"]
    before = tuning["base_fidelity"]["top1_agreement"]
    expect(status).to_contain_text(f"{_percent(before)} → {_percent(after)} on 32 images")
    unseen_before = tuning["base_unseen_fidelity"]["top1_agreement"]
    unseen_after = tuning["unseen_fidelity"]["top1_agreement"]
    unseen = f"on 12 inputs from photos of other scenes {_percent(unseen_before)} → {_percent(unseen_after)}"
    expect(status).to_contain_text(unseen)
    worse = after < before or unseen_after < unseen_before
    if worse:
        expect(status).to_contain_text("It agrees less than its base: keep the base split.")
    else:
        expect(status).not_to_contain_text("keep the base split")
    item = page.locator(f'li[data-split-id="{tuned["id"]}"]')
    expect(item).to_contain_text("stem · 2 bits · calibrated clip · tail fine-tuned")
    expect(item.get_by_test_id("split-agreement")).to_contain_text(f"(base tail {_percent(before)}); {unseen}")
    screenshot(page, "fine-tuned")

    # After a reload the list comes from the server's view of the splits: the same words.
    page.reload()
    expect(page.locator(f'li[data-split-id="{tuned["id"]}"]')).to_contain_text("tail fine-tuned")
