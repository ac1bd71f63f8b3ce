"""Dead ends and wrong facts a new user met (issue 18), each held here: the docs render, the all-robot result says
what ran, the split picker names its model, stale results are marked, untrained answers are called noise."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, Response, expect

from tests.browser.support import (
    PHONE,
    SAMPLES,
    SHOWN_COLUMNS_JS,
    TABLE_FITS_JS,
    WIDE,
    DeployedSplit,
    is_post,
    job_started,
    no_horizontal_scroll,
    run_sample,
    screenshot,
)
from tests.support import tiny_classifier
from tools.local_stack import LocalStack


def watch_outside(page: Page, base_url: str) -> list[str]:
    """The URLs ``page`` asks for outside ``base_url``, as it asks for them."""
    outside: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(base_url) else outside.append(request.url))
    return outside


def test_the_api_docs_render_their_operations_on_every_service(browser: Browser, stack: LocalStack) -> None:
    for name, url in (("splitter", stack.splitter_url), ("robot", stack.robot_url), ("edge", stack.edge_url)):
        for size_name, size in (("wide", WIDE), ("phone", PHONE)):
            context = browser.new_context(viewport=size)
            page = context.new_page()
            outside = watch_outside(page, url)
            page.goto(f"{url}/docs")
            expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
            assert page.locator(".opblock").count() >= 3
            expect(page.get_by_text("Unable to render this definition")).to_have_count(0)
            expect(page.locator(".opblock-summary-path", has_text="/api/infer").first).to_be_visible()
            assert not outside, f"the {name} docs asked for outside resources: {outside}"
            screenshot(page, f"docs-{name}-{size_name}")
            context.close()


def test_all_robot_results_say_no_split_ran_and_the_bytes_fit(page: Page, deployed_split: DeployedSplit) -> None:
    page.goto(f"/infer?split={deployed_split.split_id}")
    run_sample(page, "chelsea.jpg", "all-robot")
    expect(page.get_by_test_id("result-point")).to_have_text("none: the whole model")
    expect(page.get_by_test_id("result-bits")).to_have_text("—")
    sent_row = page.locator(".bytes-sent")
    expect(sent_row).to_contain_text("everything ran on the robot")
    expect(page.locator(".bytes-received")).not_to_contain_text("0 B 0 B")
    card = page.get_by_test_id("bytes").locator("xpath=ancestor::div[contains(@class,'card')][1]")
    overflow = card.evaluate("(node) => node.scrollWidth - node.clientWidth")
    assert overflow <= 0, f"the bytes card overflows by {overflow}px"
    no_horizontal_scroll(page)
    for size_name, size in (("wide", WIDE), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_timeout(100)
        no_horizontal_scroll(page)
        screenshot(page, f"infer-all-robot-{size_name}")
    page.set_viewport_size(WIDE)


def test_the_split_picker_names_the_model_and_the_mode_comes_from_the_link(
    page: Page, api: httpx.Client, deployed_split: DeployedSplit
) -> None:
    name = api.get(f"/api/models/{deployed_split.model_id}").json()["name"]
    page.goto(f"/infer?split={deployed_split.split_id}&mode=all-edge")
    expect(page.locator("#mode-all-edge")).to_be_checked()
    selected = page.get_by_label("Split", exact=True).locator("option:checked")
    expect(selected).to_contain_text(name)
    expect(page.get_by_test_id("split-detail")).to_contain_text(f"{name}, cut at layer2, 4 bits")


def test_a_result_beside_changed_inputs_is_marked_stale(page: Page, deployed_split: DeployedSplit) -> None:
    page.goto(f"/infer?split={deployed_split.split_id}")
    run_sample(page, "chelsea.jpg")
    expect(page.get_by_test_id("stale")).to_be_hidden()
    page.get_by_label("Photo", exact=True).select_option("coffee.jpg")
    expect(page.get_by_test_id("stale")).to_be_visible()
    run_sample(page, "coffee.jpg")
    expect(page.get_by_test_id("stale")).to_be_hidden()


def test_untrained_answers_are_called_noise_not_a_disagreement(page: Page, deployed_split: DeployedSplit) -> None:
    page.goto(f"/infer?split={deployed_split.split_id}")
    result = run_sample(page)
    assert result["weights_trained"] is False
    expect(page.get_by_test_id("agreement")).to_have_text("noise")
    expect(page.locator("#agreement-help")).to_contain_text("Untrained weights")


def test_an_uncalibrated_model_page_asks_for_nothing_that_is_not_there(
    page: Page, api: httpx.Client, deployed_split: DeployedSplit
) -> None:
    failures: list[str] = []

    def note(response: Response) -> None:
        if response.status >= 400:
            failures.append(f"{response.status} {response.url}")

    page.on("response", note)
    assert api.get(f"/api/models/{deployed_split.model_id}/calibration").status_code == 404
    page.goto(f"/models/{deployed_split.model_id}")
    expect(page.get_by_test_id("split-chart")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert not failures, failures
    sample = (SAMPLES / "chelsea.jpg").stat().st_size
    expect(page.locator(".raw-label")).to_have_text(f"all-edge: chelsea.jpg {sample / 1000:.1f} kB")


def test_an_onnx_upload_is_read_not_exported(page: Page, tmp_path: Path) -> None:
    upload = tmp_path / "tiny-read.onnx"
    upload.write_bytes(tiny_classifier(seed=5).SerializeToString())
    page.goto("/")
    page.locator('label[for="source-file"]').click()
    page.get_by_label("Model file", exact=True).set_input_files(upload)
    page.locator("#input-shape").fill("1,3,32,32")
    page.get_by_role("button", name="Register", exact=True).click()
    expect(page.get_by_test_id("register-done")).to_contain_text("Registered tiny-read", timeout=60_000)
    expect(page.locator('#progress-steps li[data-stage="exporting"]')).to_have_text("Reading the ONNX file")


def test_a_bad_clip_range_is_refused_beside_the_button_with_the_fields_marked(
    page: Page, api: httpx.Client, deployed_split: DeployedSplit
) -> None:
    page.goto(f"/models/{deployed_split.model_id}")
    page.get_by_label("layer2", exact=True).check()
    page.locator("#clip-mode").select_option("custom")
    page.locator("#clip-lo").fill("5")
    page.locator("#clip-hi").fill("1")
    page.get_by_role("button", name="Create split").click()
    expect(page.get_by_test_id("split-error")).to_contain_text("low < high")
    expect(page.get_by_test_id("error")).to_be_empty()
    expect(page.locator("#clip-lo")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#clip-hi")).to_have_attribute("aria-invalid", "true")
    page.locator("#clip-lo").fill("0")
    page.locator("#clip-hi").fill("8")
    with job_started(page, api, f"/api/models/{deployed_split.model_id}/split-jobs") as created:
        page.get_by_role("button", name="Create split").click()
    assert created.result()["quantization"]["ranges"][0]["lo"] == 0
    expect(page.get_by_test_id("split-error")).to_be_empty()
    expect(page.locator("#clip-lo")).not_to_have_attribute("aria-invalid", "true")
    screenshot(page, "model-split-error-cleared")


def nearest_rank(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def test_compare_runs_each_plan_and_tabulates_what_the_api_answered(page: Page, deployed_split: DeployedSplit) -> None:
    page.goto(f"/infer?split={deployed_split.split_id}")
    answers: list[dict[str, object]] = []
    page.on("response", lambda r: answers.append(r.json()) if is_post("/api/infer")(r) and r.ok else None)
    page.locator("#compare-runs").fill("0")
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_test_id("error")).to_contain_text("1 to 100")
    expect(page.locator("#compare-runs")).to_have_attribute("aria-invalid", "true")
    page.locator("#compare-runs").fill("3")
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_test_id("compare-row")).to_have_count(3, timeout=120_000)
    expect(page.get_by_test_id("compare-status")).to_contain_text("Compared 3 runs")
    assert len(answers) == 9
    for mode in ("split", "all-robot", "all-edge"):
        mine = [a for a in answers if a["mode"] == mode]
        assert len(mine) == 3
        totals = [float(a["total_ms"]) for a in mine]  # type: ignore[arg-type]
        row = page.locator(f'[data-testid="compare-row"][data-mode="{mode}"]')
        # two decimals as JavaScript rounds them (a tie goes up; Python's format rounds it to even)
        shown_p50 = float(row.locator('[data-col="p50"]').inner_text())
        assert abs(shown_p50 - nearest_rank(totals, 0.5)) <= 0.005 + 1e-9, (mode, shown_p50, totals)
        waterfall = page.locator(f'[data-testid="compare-waterfall"][data-mode="{mode}"]')
        median = next(a for a in mine if float(a["total_ms"]) == nearest_rank(totals, 0.5))  # type: ignore[arg-type]
        expect(waterfall.get_by_test_id("compare-stage")).to_have_count(len(median["stages"]))  # type: ignore[arg-type]
    screenshot(page, "infer-compare-wide")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(200)
    no_horizontal_scroll(page)
    screenshot(page, "infer-compare-phone")


def test_the_chart_marks_the_pareto_points_and_shows_a_points_values_on_hover(
    page: Page, api: httpx.Client, deployed_split: DeployedSplit
) -> None:
    points = api.get(f"/api/models/{deployed_split.model_id}/split-points").json()
    cost = [(p["wire_bytes"]["4"], p["head_flops_share"]) for p in points]
    expected = [
        i
        for i, (b, f) in enumerate(cost)
        if not any(j != i and bj <= b and fj <= f and (bj < b or fj < f) for j, (bj, fj) in enumerate(cost))
    ]
    page.goto(f"/models/{deployed_split.model_id}")
    dots = page.get_by_test_id("pareto-dot")
    expect(dots).to_have_count(len(expected))
    assert [int(i) for i in dots.evaluate_all("nodes => nodes.map(n => n.dataset.index)")] == expected
    middle = expected[len(expected) // 2]
    page.locator(f'.hit[data-index="{middle}"]').hover()
    readout = page.get_by_test_id("chart-readout")
    expect(readout).to_have_attribute("data-index", str(middle))
    expect(readout).to_contain_text(points[middle]["label"])
    expect(readout).to_contain_text("(Pareto)")
    expect(readout).to_contain_text(f"{round(points[middle]['head_flops_share'] * 100, 1)}% of compute in the head")
    screenshot(page, "model-chart-hover")


def test_the_split_point_table_keeps_its_label_in_view_and_lets_columns_be_chosen(
    page: Page, deployed_split: DeployedSplit
) -> None:
    page.goto(f"/models/{deployed_split.model_id}")
    expect(page.locator("#points-body tr").first).to_be_visible()
    # by default the label and the deciding columns, and they fit the card at 1280 px
    assert page.evaluate(SHOWN_COLUMNS_JS) == ["label", "bytes", "compute"]
    assert page.evaluate(TABLE_FITS_JS) <= 0

    chooser = page.get_by_test_id("column-chooser")
    chooser.locator("summary").click()
    for words in ("# (graph order)", "Shape", "fp32 bytes", "Head params"):
        chooser.get_by_label(words).check()
    assert page.evaluate(SHOWN_COLUMNS_JS) == ["label", "index", "shape", "bytes", "fp32", "compute", "params"]
    first = page.locator("#points-body tr").first
    expect(first.locator('[data-col="shape"]')).to_be_visible()

    # narrow enough to scroll sideways: the label column stays where it was, the others move under it
    page.set_viewport_size({"width": 1000, "height": 800})
    page.wait_for_timeout(100)
    overflow = page.evaluate(TABLE_FITS_JS)
    assert overflow > 0
    label = first.locator('[data-col="label"]')
    bytes_cell = first.locator('[data-col="bytes"]')
    before_label, before_bytes = label.bounding_box(), bytes_cell.bounding_box()
    page.get_by_test_id("points-scroll").evaluate("box => { box.scrollLeft = box.scrollWidth; }")
    page.wait_for_timeout(100)
    after_label, after_bytes = label.bounding_box(), bytes_cell.bounding_box()
    assert before_label and before_bytes and after_label and after_bytes
    assert abs(after_label["x"] - before_label["x"]) < 1
    assert before_bytes["x"] - after_bytes["x"] > overflow / 2
    screenshot(page, "model-points-columns")

    # the choice is kept in this browser
    page.set_viewport_size(WIDE)
    page.reload()
    expect(page.locator("#points-body tr").first).to_be_visible()
    expect(page.locator("#column-shape")).to_be_checked()
    assert page.evaluate(SHOWN_COLUMNS_JS) == ["label", "index", "shape", "bytes", "fp32", "compute", "params"]


def test_a_fixed_batch_model_is_made_dynamic_from_its_page(page: Page, api: httpx.Client) -> None:
    model = tiny_classifier(seed=12)
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    files = {"file": ("fixed.onnx", model.SerializeToString())}
    fixed = api.post("/api/models", files=files, data={"input_shape": "1,3,32,32"}).json()
    page.goto(f"/models/{fixed['id']}")
    expect(page.get_by_test_id("batch")).to_contain_text("fixed at 1")
    page.get_by_test_id("make-dynamic").click()
    page.wait_for_url(lambda url: fixed["id"] not in url)
    expect(page.get_by_test_id("batch")).to_have_text("dynamic")
    expect(page.get_by_role("heading", level=1)).to_contain_text("(dynamic batch)")
    expect(page.get_by_test_id("make-dynamic")).to_have_count(0)
