"""Bits per channel from the model page, in headless Chromium against the real splitter: the clip-range choice asks
for the rate-distortion allocation, and the new split says that its bits are an average over channels of their own
widths, before and after a reload."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import job_started
from tests.support import tiny_classifier

pytestmark = pytest.mark.browser


def _register(api: httpx.Client, seed: int) -> str:
    upload = {"file": (f"tiny-widths-{seed}.onnx", tiny_classifier(seed=seed).SerializeToString())}
    model = api.post("/api/models", files=upload, data={"input_shape": "1,3,32,32", "task": "classification"})
    assert model.status_code == 201, model.text
    return str(model.json()["id"])


def test_a_split_with_bits_per_channel_from_the_model_page(page: Page, api: httpx.Client) -> None:
    model_id = _register(api, 31)

    page.goto(f"/models/{model_id}")
    page.get_by_label("block", exact=True).check()
    page.get_by_label("Clip range").select_option("per-channel")
    with job_started(page, api, f"/api/models/{model_id}/split-jobs") as created:
        page.get_by_role("button", name="Create split").click()
    manifest = created.result()
    request_body = created.json_body()
    assert request_body is not None and request_body["allocation"] == "rate-distortion"
    assert "clip" not in request_body
    (clip,) = manifest["quantization"]["ranges"]
    bits = manifest["quantization"]["bits"]
    assert sum(clip["channel_bits"]) == bits * len(clip["channel_bits"])
    words = f"block · {bits} bits on average, a width per channel · calibrated clip"
    expect(page.get_by_test_id("split-status")).to_contain_text(words)
    page.reload()
    expect(page.locator(f'li[data-split-id="{manifest["id"]}"]')).to_contain_text(words)


def test_a_calibration_with_bits_per_channel_from_the_model_page(page: Page, api: httpx.Client) -> None:
    model_id = _register(api, 32)

    page.goto(f"/models/{model_id}")
    page.get_by_label("Bits per channel", exact=True).check()
    with job_started(page, api, f"/api/models/{model_id}/calibration-jobs") as calibrating:
        page.locator("#calibrate-button").click()
    result = calibrating.result(120)
    assert result["allocation"] == "rate-distortion"
    expect(page.get_by_test_id("calibration-summary")).to_contain_text("Calibrated with mse, bits per channel")
    # The calibrated ranges are now the choice; the split takes their widths.
    page.get_by_label("block", exact=True).check()
    expect(page.get_by_label("Clip range")).to_have_value("calibrated")
    with job_started(page, api, f"/api/models/{model_id}/split-jobs") as created:
        page.get_by_role("button", name="Create split").click()
    manifest = created.result()
    assert manifest["quantization"]["ranges"][0]["channel_bits"]
    expect(page.get_by_test_id("split-status")).to_contain_text("bits on average, a width per channel")
