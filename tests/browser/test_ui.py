"""The web UI in headless Chromium against the real splitter, robot and edge.

The main flow registers resnet18 by name, opens its page, cuts and deploys a split, runs a photo through it, and
checks that every figure the page shows equals what the JSON API answered for the same request.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.browser.support import (
    PHONE,
    REPO_ROOT,
    SAMPLES,
    WIDE,
    DeployedSplit,
    is_post,
    job_started,
    no_horizontal_scroll,
    screenshot,
)

pytestmark = pytest.mark.browser

REGISTRATION_TIMEOUT_MS = 180_000
STAGE_WORDS = re.compile(r"^(exporting|verifying|finding split points|saving)$")
UI_FILES = [
    *sorted((REPO_ROOT / "model_splitter" / "web" / "templates").glob("*")),
    *sorted((REPO_ROOT / "model_splitter" / "web" / "static").glob("*")),
]


def integer(text: str) -> int:
    return int(text.replace(",", "").strip())


def assert_close(rendered: str, value: float, places: int) -> None:
    assert abs(float(rendered) - value) <= 0.5 * 10**-places + 1e-9, f"{rendered} shown for {value}"


def assert_result_shown(page: Page, result: dict[str, Any]) -> None:
    """Every figure of an inference answer, as the page renders it, equals the JSON."""
    expect(page.get_by_test_id("results")).to_be_visible()
    labels = page.get_by_test_id("prediction-label")
    expect(labels).to_have_count(len(result["predictions"]))
    assert labels.all_text_contents() == [p["label"] for p in result["predictions"]]
    shown = page.get_by_test_id("prediction-probability").all_text_contents()
    for text, prediction in zip(shown, result["predictions"], strict=True):
        assert_close(text, prediction["probability"] * 100, 2)

    expect(page.get_by_test_id("reference-top1")).to_have_text(result["reference"][0]["label"])
    if result["weights_trained"]:
        expect(page.get_by_test_id("agreement")).to_have_text(
            "agrees" if result["agrees_with_reference"] else "differs"
        )
    else:  # untrained: two noisy answers compared say nothing
        expect(page.get_by_test_id("agreement")).to_have_text("noise")

    stages = page.get_by_test_id("stage")
    expect(stages).to_have_count(len(result["stages"]))
    assert [stages.nth(i).get_attribute("data-stage") for i in range(stages.count())] == [
        s["name"] for s in result["stages"]
    ]
    assert page.get_by_test_id("stage-where").all_text_contents() == [s["where"] for s in result["stages"]]
    for text, stage in zip(page.get_by_test_id("stage-ms").all_text_contents(), result["stages"], strict=True):
        assert_close(text, stage["ms"], 2)
    assert_close(page.get_by_test_id("total-ms").inner_text(), result["total_ms"], 2)

    for key, testid in (
        ("sent", "sent"),
        ("received", "received"),
        ("feature_fp32", "feature-fp32"),
        ("image", "image"),
    ):
        assert integer(page.get_by_test_id(f"bytes-{testid}").inner_text()) == result["bytes"][key], key

    banner = page.locator("#result-untrained")
    if result["weights_trained"]:
        expect(banner).to_be_hidden()
    else:
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("Untrained weights")


# ---------------------------------------------------------------------------------------------------- main flow


def test_register_split_deploy_and_infer(page: Page, api: httpx.Client) -> None:
    # --- Models: register resnet18 by name, with live progress
    page.goto("/")
    expect(page.get_by_label("Architecture", exact=True)).to_have_value("resnet18")
    with page.expect_response(is_post("/api/model-jobs")) as accepted:
        page.get_by_role("button", name="Register", exact=True).click()
    assert accepted.value.status == 202
    job = accepted.value.json()
    assert job["state"] in ("queued", "running") and job["id"]
    expect(page.get_by_test_id("register-progress")).to_be_visible()
    expect(page.get_by_test_id("register-stage")).to_have_attribute("data-stage", STAGE_WORDS, timeout=60_000)
    expect(page.locator("#progress-steps li.is-current")).to_have_count(1)
    screenshot(page, "models-registering")
    page.reload()  # a reload while the job runs picks the job up again: only the resumed job can say "done"
    expect(page.get_by_test_id("register-done")).to_be_visible(timeout=REGISTRATION_TIMEOUT_MS)
    finished = api.get(f"/api/model-jobs/{job['id']}").json()
    assert finished["state"] == "done", finished
    model_id = finished["model_id"]
    row = page.locator(f'#models-body tr[data-model-id="{model_id}"]')
    expect(row).to_contain_text("resnet18")
    expect(row).to_contain_text("untrained")
    screenshot(page, "models")

    # --- Model: chart and table equal the split points of the API
    page.get_by_test_id("open-model").click()
    expect(page).to_have_url(re.compile(f"/models/{model_id}$"))
    record = api.get(f"/api/models/{model_id}").json()
    points = record["split_points"]
    expect(page.get_by_test_id("untrained-banner")).to_be_visible()
    folding = record["folding"]  # the exporter's Identity nodes on shared weights fold away
    assert folding["nodes_after"] < folding["nodes_before"], folding
    expect(page.get_by_test_id("folding")).to_have_text(
        f"{folding['nodes_after']} (folded from {folding['nodes_before']})"
    )
    expect(page.locator("#points-body tr")).to_have_count(len(points))
    expect(page.locator("#chart svg circle.dot-bytes")).to_have_count(len(points))
    expect(page.locator("#chart svg rect.dot-share")).to_have_count(len(points))

    def table() -> list[tuple[str, int]]:
        rows = page.eval_on_selector_all(
            "#points-body tr",
            "rows => rows.map(r => [r.dataset.label, r.querySelector('[data-col=bytes]').textContent])",
        )
        return [(label, integer(text)) for label, text in rows]

    assert table() == [(p["label"], p["wire_bytes"]["4"]) for p in points]
    page.locator('label[for="bits-8"]').click()
    expect(page.locator("#points-table thead")).to_contain_text("8-bit bytes")
    assert table() == [(p["label"], p["wire_bytes"]["8"]) for p in points]
    compute = page.eval_on_selector_all(
        "#points-body tr", "rows => rows.map(r => r.querySelector('[data-col=compute]').textContent)"
    )
    assert compute == [f"{p['head_flops_share'] * 100:.1f}%" for p in points]

    # pick layer2 in the table, cut it at 8 bits, deploy it
    page.get_by_label("layer2", exact=True).check()
    expect(page.get_by_test_id("selected-point")).to_have_text("layer2")
    expect(page.locator("#chart svg circle.dot-bytes.is-selected")).to_have_count(1)
    with job_started(page, api, f"/api/models/{model_id}/split-jobs") as created:
        page.get_by_role("button", name="Create split").click()
    manifest = created.result()
    assert manifest == api.get(f"/api/splits/{manifest['id']}").json()
    assert manifest["split_point"] == "layer2" and manifest["quantization"]["bits"] == 8
    split_id = manifest["id"]
    expect(page.get_by_test_id("split-id")).to_have_text(split_id[:12])
    with job_started(page, api, f"/api/splits/{split_id}/deploy-jobs") as deployed:
        page.get_by_role("button", name="Deploy to edge and robot").click()
    assert deployed.result()["robot"]["split_id"] == split_id
    expect(page.get_by_test_id("deployed")).to_be_visible()
    health = api.get("/health").json()
    for side in ("robot", "edge"):
        active = next(d for d in health[side]["deployed"] if d["split_id"] == split_id)
        box = page.get_by_test_id(f"side-{side}")
        expect(box.locator('[data-field="health"]')).to_have_text("up")
        expect(box.locator('[data-field="split"]')).to_contain_text("layer2 · 8 bits (this model)")
        expect(box.locator('[data-field="provider"]')).to_have_text(active["provider"])
    expect(page.get_by_test_id("split-list")).to_contain_text("active on edge and robot")
    screenshot(page, "model")

    # --- Inference: upload a photo, compare every figure with the JSON answer
    page.get_by_test_id("run-inference-link").click()
    expect(page).to_have_url(re.compile(rf"/infer\?split={split_id}$"))
    expect(page.get_by_label("Split", exact=True)).to_have_value(split_id)
    page.locator('label[for="image-upload"]').click()
    page.get_by_label("Image file", exact=True).set_input_files(SAMPLES / "chelsea.jpg")
    with page.expect_response(is_post("/api/infer"), timeout=120_000) as answered:
        page.get_by_role("button", name="Run inference").click()
    assert answered.value.status == 200, answered.value.text()
    result = answered.value.json()
    assert result["split_id"] == split_id and result["mode"] == "split" and result["bits"] == 8
    assert result["bytes"]["image"] == (SAMPLES / "chelsea.jpg").stat().st_size
    assert_result_shown(page, result)
    expect(page.get_by_test_id("result-mode")).to_have_text("split")
    screenshot(page, "infer-split")

    # the same request straight to the JSON API answers the same labels, stages and bytes
    again = api.post(
        "/api/infer",
        files={"image": ("chelsea.jpg", (SAMPLES / "chelsea.jpg").read_bytes(), "image/jpeg")},
        data={"split_id": split_id, "mode": "split"},
    )
    assert again.status_code == 200, again.text
    direct = again.json()
    assert [p["label"] for p in direct["predictions"]] == page.get_by_test_id("prediction-label").all_text_contents()
    assert [s["name"] for s in direct["stages"]] == [s["name"] for s in result["stages"]]
    for key in ("sent", "feature_fp32", "image"):  # "received" is JSON whose timing digits vary by a byte or two
        assert direct["bytes"][key] == result["bytes"][key], key
    assert direct["reference"] == result["reference"]

    # a bundled sample photo, everything on the edge
    page.locator('label[for="image-sample"]').click()
    page.get_by_label("Photo", exact=True).select_option("coffee.jpg")
    page.get_by_label("All on the edge").check()
    with page.expect_response(is_post("/api/infer"), timeout=120_000) as answered:
        page.get_by_role("button", name="Run inference").click()
    result = answered.value.json()
    assert result["mode"] == "all-edge"
    assert result["bytes"]["image"] == (SAMPLES / "coffee.jpg").stat().st_size
    assert result["bytes"]["sent"] > result["bytes"]["image"]
    expect(page.get_by_test_id("result-mode")).to_have_text("all on the edge")
    assert_result_shown(page, result)
    screenshot(page, "infer-all-edge")


def tiny_onnx_classifier() -> bytes:
    """Conv, ReLU, global pool, linear: a 10-class image classifier small enough to register in a second."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


def test_upload_an_onnx_file_then_delete_it(page: Page, api: httpx.Client, tmp_path: Path) -> None:
    upload = tmp_path / "tiny.onnx"
    upload.write_bytes(tiny_onnx_classifier())
    page.goto("/")
    page.locator('label[for="source-file"]').click()
    page.get_by_label("Model file", exact=True).set_input_files(upload)
    page.locator("#input-shape").fill("1,3,8,8")
    page.locator("#model-name").fill("tiny-ui")
    with page.expect_response(is_post("/api/model-jobs")) as accepted:
        page.get_by_role("button", name="Register", exact=True).click()
    expect(page.get_by_test_id("register-done")).to_contain_text("Registered tiny-ui", timeout=60_000)
    model_id = api.get(f"/api/model-jobs/{accepted.value.json()['id']}").json()["model_id"]
    record = api.get(f"/api/models/{model_id}").json()
    assert record["source_format"] == "onnx" and record["weights_trained"] and record["input_shape"] == [1, 3, 8, 8]
    row = page.locator(f'#models-body tr[data-model-id="{model_id}"]')
    expect(row).to_contain_text("tiny-ui")
    expect(row.get_by_text("untrained")).to_have_count(0)

    page.goto(f"/models/{model_id}")
    expect(page.locator("#points-body tr")).to_have_count(len(record["split_points"]))
    expect(page.get_by_test_id("untrained-banner")).to_have_count(0)

    page.goto("/")
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        page.get_by_role("button", name="Delete tiny-ui").click()
    assert deleted.value.status == 200
    expect(row).to_have_count(0)
    expect(page.get_by_test_id("register-done")).to_contain_text("Deleted tiny-ui")
    assert api.get(f"/api/models/{model_id}").status_code == 404


# ---------------------------------------------------------------------------------------------------- errors


def test_a_text_file_as_model_is_refused_in_words(page: Page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a neural network\n")
    page.goto("/")
    page.locator('label[for="source-file"]').click()
    page.get_by_label("Model file", exact=True).set_input_files(notes)
    page.get_by_role("button", name="Register", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("not a model we recognise", timeout=60_000)
    expect(alert).to_contain_text("ONNX")
    expect(page.get_by_role("button", name="Register", exact=True)).to_be_enabled()
    expect(page.get_by_test_id("register-progress")).to_be_hidden()
    screenshot(page, "models-error")


def test_a_missing_model_file_is_asked_for(page: Page) -> None:
    page.goto("/")
    page.locator('label[for="source-file"]').click()
    page.get_by_role("button", name="Register", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("Choose a model file")


def test_a_text_file_as_image_is_refused_in_words(page: Page, deployed_split: DeployedSplit, tmp_path: Path) -> None:
    fake = tmp_path / "photo.jpg"
    fake.write_text("not really a photo")
    page.goto(f"/infer?split={deployed_split.split_id}")
    page.locator('label[for="image-upload"]').click()
    page.get_by_label("Image file", exact=True).set_input_files(fake)
    page.get_by_role("button", name="Run inference").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("not an image")
    expect(alert).to_contain_text("JPEG, PNG or WebP")
    expect(page.get_by_test_id("results")).to_be_hidden()
    screenshot(page, "infer-error")


def test_an_unreachable_splitter_is_explained(page: Page, deployed_split: DeployedSplit) -> None:
    page.goto("/infer")
    page.route("**/api/infer", lambda route: route.abort("connectionrefused"))
    page.get_by_role("button", name="Run inference").click()
    expect(page.get_by_role("alert")).to_contain_text("did not answer")


def test_robot_and_edge_down_are_explained(browser: Browser, lonely_splitter: str) -> None:
    context = browser.new_context(viewport=WIDE, base_url=lonely_splitter)
    try:
        page = context.new_page()
        page.goto("/infer")
        expect(page.locator('.svc[data-side="robot"]')).to_contain_text("robot down")
        expect(page.locator('.svc[data-side="edge"]')).to_contain_text("edge down")
        page.get_by_role("button", name="Run inference").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("A service is unavailable.")
        expect(alert).to_contain_text("cannot be reached: is it running?")
        screenshot(page, "infer-robot-down")
    finally:
        context.close()


def test_an_unknown_model_page_says_so(page: Page) -> None:
    response = page.goto("/models/0123456789abcdef")
    assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_contain_text("no model 0123456789abcdef")
    expect(page.get_by_role("link", name="Back to the models")).to_be_visible()


# ---------------------------------------------------------------------------------------------------- layout, a11y


def page_paths(deployed_split: DeployedSplit) -> dict[str, str]:
    return {"models": "/", "model": f"/models/{deployed_split.model_id}", "infer": "/infer"}


@pytest.mark.parametrize(("size_name", "size"), [("wide", WIDE), ("phone", PHONE)])
def test_no_sideways_scrolling(page: Page, deployed_split: DeployedSplit, size_name: str, size: ViewportSize) -> None:
    page.set_viewport_size(size)
    for name, path in page_paths(deployed_split).items():
        page.goto(path)
        page.wait_for_load_state("networkidle")
        if name == "model":
            page.get_by_label("layer2", exact=True).check()
        if name == "infer":
            page.get_by_role("button", name="Run inference").click()
            expect(page.get_by_test_id("results")).to_be_visible(timeout=60_000)
        no_horizontal_scroll(page)
        screenshot(page, f"{name}-{size_name}")


def test_every_control_is_labelled(page: Page, deployed_split: DeployedSplit) -> None:
    unlabelled_js = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(el => !(el.labels && [...el.labels].some(l => l.textContent.trim()))
                      && !(el.getAttribute('aria-label') || '').trim()
                      && !el.getAttribute('aria-labelledby'))
        .map(el => el.outerHTML.slice(0, 160))"""
    nameless_buttons_js = """() => [...document.querySelectorAll('button, a[href]')]
        .filter(el => !(el.textContent.trim() || el.getAttribute('aria-label')))
        .map(el => el.outerHTML.slice(0, 160))"""
    for name, path in page_paths(deployed_split).items():
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert page.locator("input:not([type=hidden]), select").count() > 0, name
        assert page.evaluate(unlabelled_js) == [], f"controls without a label on the {name} page"
        assert page.evaluate(nameless_buttons_js) == [], f"buttons or links without a name on the {name} page"


def tab_through(page: Page, presses: int) -> list[str]:
    seen = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("() => document.activeElement ? document.activeElement.id : ''"))
    return seen


def test_keyboard_reaches_the_forms(page: Page, deployed_split: DeployedSplit) -> None:
    page.goto("/")
    seen = tab_through(page, 14)
    for control in ("source-arch", "arch", "weights", "input-shape", "model-name", "register-button"):
        assert control in seen, f"Tab never reached #{control} on the models page: {seen}"

    page.goto(f"/models/{deployed_split.model_id}")
    page.wait_for_load_state("networkidle")
    seen = tab_through(page, 16)  # the table's column chooser comes before its rows
    for control in ("bits-4", "clip-mode", "point-0"):
        assert control in seen, f"Tab never reached #{control} on the model page: {seen}"
    page.locator("#point-0").focus()
    page.keyboard.press("ArrowDown")  # radio group: the arrow keys choose the split point
    expect(page.get_by_test_id("selected-point")).to_have_text(
        page.locator("#point-1").get_attribute("value") or "missing"
    )
    assert "create-split" in tab_through(page, 3)

    page.goto("/infer")
    seen = tab_through(page, 12)
    for control in ("split-select", "mode-split", "image-sample", "sample-select", "run-button"):
        assert control in seen, f"Tab never reached #{control} on the inference page: {seen}"
    page.locator("#run-button").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("results")).to_be_visible(timeout=60_000)


# ---------------------------------------------------------------------------------------------------- offline


OUTSIDE_URL = re.compile(r"(?i)https?://|(?:src|href|action)\s*=\s*[\"']?//|url\(\s*[\"']?//|@import")


def test_templates_and_static_files_name_no_outside_url() -> None:
    assert any(p.suffix == ".html" for p in UI_FILES) and any(p.suffix == ".js" for p in UI_FILES)
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()[:120]}"
        for path in UI_FILES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE_URL.search(line)
    ]
    assert offenders == []
