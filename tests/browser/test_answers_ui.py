"""The inference page draws each task's answer: boxes where the JSON puts them, a mask with its legend, raw tensors;
and the registration form carries an upload's task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.browser.support import SAMPLES, is_post, run_sample, screenshot
from tests.support import tiny_classifier
from tools.assets import ensure

# How far a drawn box may sit from where the JSON puts it, in screen pixels (the SVG's own anti-aliasing).
BOX_SLACK_PX = 1.5


def deploy(api: httpx.Client, model_id: str, point: str, bits: int) -> str:
    split = api.post(f"/api/models/{model_id}/splits", json={"split_point": point, "bits": bits})
    assert split.status_code == 201, split.text
    split_id: str = split.json()["id"]
    assert api.post(f"/api/splits/{split_id}/deploy").status_code == 200
    return split_id


def open_and_run(page: Page, split_id: str, sample: str, mode: str = "split") -> dict[str, Any]:
    page.goto(f"/infer?split={split_id}")
    return run_sample(page, sample, mode)


def test_a_detector_registered_in_the_form_draws_its_boxes_where_the_json_puts_them(
    page: Page, api: httpx.Client, tmp_path: Path
) -> None:
    upload = tmp_path / "layout_cdla.onnx"
    upload.write_bytes(ensure("layout_cdla").read_bytes())
    page.goto("/")
    page.locator('label[for="source-file"]').click()
    page.get_by_label("Model file", exact=True).set_input_files(upload)
    expect(page.get_by_label("Output layout")).to_be_hidden()
    page.get_by_label("Task", exact=True).select_option("detection")
    expect(page.get_by_label("Output layout")).to_be_visible()
    page.locator("#input-shape").fill("")  # the file declares its own 1x3x800x608
    with page.expect_response(is_post("/api/model-jobs")) as accepted:
        page.get_by_role("button", name="Register", exact=True).click()
    expect(page.get_by_test_id("register-done")).to_contain_text("Registered layout_cdla", timeout=120_000)
    model_id = api.get(f"/api/model-jobs/{accepted.value.json()['id']}").json()["model_id"]
    record = api.get(f"/api/models/{model_id}").json()
    assert record["postprocessing"]["detection"]["decoder"] == "picodet"

    split_id = deploy(api, model_id, "div#8", 8)
    for mode in ("split", "all-edge"):
        result = open_and_run(page, split_id, "page.png", mode)
        detections = result["answer"]["detections"]
        assert detections, "the layout detector finds the page's title lines"
        drawn = page.get_by_test_id("box")
        expect(drawn).to_have_count(len(detections))
        expect(page.get_by_test_id("detection")).to_have_count(len(detections))
        on_screen = page.evaluate(
            """() => {
                const img = document.querySelector('[data-testid="detections-figure"] img');
                const frame = img.getBoundingClientRect();
                const scale = frame.width / img.naturalWidth;
                return {
                    natural: [img.naturalWidth, img.naturalHeight],
                    boxes: [...document.querySelectorAll('[data-testid="box"]')].map((rect) => {
                        const r = rect.getBoundingClientRect();
                        return [r.left - frame.left, r.top - frame.top, r.right - frame.left, r.bottom - frame.top]
                            .map((v) => v / scale);
                    }),
                    scale,
                };
            }"""
        )
        assert on_screen["natural"] == [384, 191]  # page.png as sent
        slack = BOX_SLACK_PX / on_screen["scale"] + 2  # plus the stroke, drawn half outside the box
        for shown, detection in zip(on_screen["boxes"], detections, strict=True):
            assert all(abs(a - b) <= slack for a, b in zip(shown, detection["box"], strict=True)), (shown, detection)
        labels = page.get_by_test_id("detection").all_text_contents()
        assert [d["label"] in text for d, text in zip(detections, labels, strict=True)] == [True] * len(detections)
        expect(page.get_by_test_id("agreement")).to_have_text("agrees")
        screenshot(page, f"infer-detection-{mode}")


def test_a_segmenter_overlays_its_mask_with_a_legend(page: Page, api: httpx.Client) -> None:
    model = api.post("/api/models", data={"arch": "lraspp_mobilenet_v3_large"})
    assert model.status_code == 201, model.text
    singles = [p["label"] for p in model.json()["split_points"] if len(p["tensors"]) == 1]
    split_id = deploy(api, model.json()["id"], singles[len(singles) // 2], 8)
    result = open_and_run(page, split_id, "chelsea.jpg", "all-edge")
    segmentation = result["answer"]["segmentation"]
    mask = page.get_by_test_id("mask")
    expect(mask).to_be_visible()
    size = mask.evaluate("(canvas) => [canvas.width, canvas.height]")
    assert size == [segmentation["width"], segmentation["height"]] == [451, 300]
    expect(page.get_by_test_id("mask-class")).to_have_count(len(segmentation["classes"]))
    first = page.get_by_test_id("mask-class").first
    expect(first).to_contain_text(segmentation["classes"][0]["label"])
    screenshot(page, "infer-segmentation")


def test_raw_tensors_are_listed(page: Page, api: httpx.Client) -> None:
    upload = {"file": ("tiny-raw.onnx", tiny_classifier(seed=3).SerializeToString())}
    model = api.post("/api/models", files=upload, data={"input_shape": "1,3,32,32"})
    assert model.status_code == 201, model.text
    split_id = deploy(api, model.json()["id"], "block", 8)
    result = open_and_run(page, split_id, "coffee.jpg")
    (tensor,) = result["answer"]["tensors"]
    row = page.get_by_test_id("tensor")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("output")
    expect(row).to_contain_text("[1, 10] FP32")
    expect(row).to_contain_text(f"{tensor['data'][0]:.4g}"[:5])
    screenshot(page, "infer-raw")


def test_the_samples_include_document_pages() -> None:
    assert (SAMPLES / "page.png").is_file() and (SAMPLES / "text.png").is_file()
