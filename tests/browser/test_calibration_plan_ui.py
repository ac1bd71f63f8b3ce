"""Calibration and the planner on the model page, in headless Chromium against the real splitter, robot and edge.

One flow on a small model (mobilenet_v3_small at 64x64): calibrate through the page, check the fidelity columns
against GET .../calibration, cut a split with the calibrated clip ranges, ask for a plan before and after a split is
deployed, compare the ranked table with GET .../plan, check the latency/bandwidth chart, deploy the pick.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import (
    PHONE,
    SHOWN_COLUMNS_JS,
    TABLE_FITS_JS,
    WIDE,
    DeployedSplit,
    job_started,
    no_horizontal_scroll,
    screenshot,
)

pytestmark = pytest.mark.browser

CALIBRATION_TIMEOUT_MS = 180_000
BANDWIDTH_MBPS = 20
RTT_MS = 5
UNLABELLED_JS = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(el => !(el.labels && [...el.labels].some(l => l.textContent.trim()))
                  && !(el.getAttribute('aria-label') || '').trim()
                  && !el.getAttribute('aria-labelledby'))
    .map(el => el.outerHTML.slice(0, 160))"""


def fixed(value: float, places: int) -> str:
    """JavaScript's Number.prototype.toFixed: the exact binary value rounded half up."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def percent(share: float | None) -> str:
    return "—" if share is None else fixed(share * 100, 1) + "%"


def cosine(value: float | None) -> str:
    return "—" if value is None else fixed(value, 4)


def plan_name(plan: dict[str, Any]) -> str:
    return f"{plan['split_point']} @ {plan['bits']}b" if plan["mode"] == "split" else str(plan["mode"])


def plan_row(plan: dict[str, Any], pick_key: str) -> dict[str, str]:
    """The cells of one row of the ranked table, as the page should render them."""
    return {
        "rank": "—" if plan["rank"] is None else str(plan["rank"]),
        "name": plan_name(plan) + ("pick" if plan["key"] == pick_key else ""),
        "total": fixed(plan["total_ms"], 2),
        "robot": fixed(plan["robot_ms"], 2),
        "transfer": fixed(plan["transfer_ms"], 2),
        "rtt": fixed(plan["rtt_ms"], 2),
        "edge": fixed(plan["edge_ms"], 2),
        "bytes": f"{plan['bytes']:,}",
        "top1": percent(plan["fidelity"]["top1_agreement"]),
        "cosine": cosine(plan["fidelity"]["cosine"]),
        "eligible": ("eligible" if plan["eligible"] else "no") + " " + plan["reason"],
    }


def shown_row(page: Page, index: int) -> dict[str, str]:
    return dict(
        page.get_by_test_id("plan-row")
        .nth(index)
        .evaluate("row => Object.fromEntries([...row.cells].map(c => [c.dataset.col, c.textContent.trim()]))")
    )


def test_calibrate_split_and_plan(page: Page, api: httpx.Client, deployed_split: DeployedSplit) -> None:
    registered = api.post(
        "/api/models", data={"arch": "mobilenet_v3_small", "input_shape": "1,3,64,64", "name": "mnv3-small-64"}
    )
    assert registered.status_code == 201, registered.text
    model = registered.json()
    model_id = model["id"]
    try:
        page.goto(f"/models/{model_id}")
        page.wait_for_load_state("networkidle")
        expect(page.locator("#clip-calibrated")).to_be_disabled()
        expect(page.locator("th[data-cal-col]").first).to_be_hidden()
        assert page.evaluate(UNLABELLED_JS) == []

        # no split deployed yet: the planner's 409 is explained
        page.get_by_label("Bandwidth (Mbit/s)").fill(str(BANDWIDTH_MBPS))
        page.get_by_label("RTT (ms)").fill(str(RTT_MS))
        page.get_by_role("button", name="Recommend", exact=True).click()
        # beside the planner's button, in the page's words, not the page's top
        expect(page.get_by_test_id("plan-error")).to_contain_text("Not possible right now.")
        expect(page.get_by_test_id("plan-error")).to_contain_text("Deploy a split of this model first")
        expect(page.get_by_test_id("error")).to_be_empty()
        error_box = page.get_by_test_id("plan-error").bounding_box()
        button_box = page.get_by_role("button", name="Recommend", exact=True).bounding_box()
        assert error_box is not None and button_box is not None
        assert 0 < error_box["y"] - button_box["y"] < 200  # just under the button

        # calibrate through the page
        page.get_by_label("Method", exact=True).select_option("mse")
        button = page.locator("#calibrate-button")
        with job_started(page, api, f"/api/models/{model_id}/calibration-jobs") as calibrating:
            button.click()
        expect(button).to_contain_text("Calibrating…")
        expect(button).to_be_disabled()
        # the job's stage as the splitter reports it, one split point after another
        measuring = re.compile(r"measuring \S+ \(\d+/\d+\)")
        expect(page.get_by_test_id("calibrate-status")).to_contain_text(measuring, timeout=CALIBRATION_TIMEOUT_MS)
        # a reload does not lose it: the page finds the job still running and follows it again
        page.reload()
        assert api.get(f"/api/jobs/{calibrating.id}").json()["state"] == "running"
        expect(page.get_by_test_id("calibrate-status")).to_contain_text("Calibrating…")
        expect(button).to_be_disabled()
        result = calibrating.result(CALIBRATION_TIMEOUT_MS / 1000)
        expect(page.get_by_test_id("calibrated")).to_be_visible()
        page.get_by_label("Bandwidth (Mbit/s)").fill(str(BANDWIDTH_MBPS))  # the reload emptied the form
        page.get_by_label("RTT (ms)").fill(str(RTT_MS))
        expect(button).to_have_text("Calibrate")
        expect(page.get_by_test_id("calibrate-error")).to_be_empty()

        calibration = api.get(f"/api/models/{model_id}/calibration").json()
        assert calibration == result and calibration["method"] == "mse"
        rows = page.locator("#points-body tr").evaluate_all(
            "rows => rows.map(r => [r.dataset.label, ...['top1', 'cosine', 'sqnr']"
            ".map(c => r.querySelector(`[data-col=${c}]`).textContent)])"
        )
        expected = [
            [
                label,
                percent(point["bits"]["4"]["top1_agreement"]),
                cosine(point["bits"]["4"]["cosine"]),
                fixed(point["bits"]["4"]["sqnr_db"], 1),
            ]
            for label, point in calibration["points"].items()
        ]
        assert rows == expected
        expect(page.locator("th[data-cal-col]").first).to_be_visible()

        # a split with the calibrated clip ranges
        point = "features.3"
        page.get_by_label(point, exact=True).check()
        expect(page.locator("#clip-calibrated")).to_be_enabled()
        # calibrating made the calibrated ranges the choice (nobody picked another one)
        expect(page.get_by_label("Clip range")).to_have_value("calibrated")
        page.get_by_label("Clip range").select_option("calibrated")
        with job_started(page, api, f"/api/models/{model_id}/split-jobs") as created:
            page.get_by_role("button", name="Create split").click()
        manifest = created.result()
        request_body = created.json_body()
        assert request_body is not None and request_body["clip"] == "calibrated"
        assert manifest["quantization"]["method"] == "calibrated"
        assert manifest["split_point"] == point
        expect(page.get_by_test_id("split-status")).to_contain_text("calibrated clip")
        page.locator("#deploy-split").click()
        expect(page.get_by_test_id("deployed")).to_be_visible(timeout=60_000)

        # the plan at a given link, as the JSON API answers it
        with (
            page.expect_response(lambda r: "/plan/curve?" in r.url) as curve_response,
            job_started(page, api, f"/api/models/{model_id}/plan-jobs") as planned,
        ):
            page.get_by_role("button", name="Recommend", exact=True).click()
        expect(page.get_by_test_id("plan-table")).to_be_visible()
        expect(page.get_by_test_id("plan-error")).to_be_empty()
        plan = api.get(f"/api/models/{model_id}/plan", params={"bandwidth_mbps": BANDWIDTH_MBPS, "rtt_ms": RTT_MS})
        assert plan.status_code == 200, plan.text
        # The page shows the answer it got; the API asked again answers the same plans (times measured anew may
        # differ in the hundredths of a millisecond, so the figures are compared with the page's own answer).
        answer = planned.result()
        assert sorted(p["key"] for p in plan.json()["plans"]) == sorted(p["key"] for p in answer["plans"])
        expect(page.get_by_test_id("plan-row")).to_have_count(len(answer["plans"]))
        assert shown_row(page, 0) == plan_row(answer["plans"][0], answer["pick"]["key"])
        expect(page.get_by_test_id("plan-pick")).to_have_text(plan_name(answer["pick"]))
        # every split point's predicted latency at the chosen bits, in the split-point table, as the page's own
        # answer has it (a second request measures again, a hundredth of a millisecond apart)
        predicted = {p["key"]: p["total_ms"] for p in answer["plans"]}
        shown = page.locator("#points-body tr").evaluate_all(
            "rows => rows.map(r => [r.dataset.label, r.querySelector('[data-col=predicted]').textContent])"
        )
        bits = int(page.locator('input[name="bits"]:checked').get_attribute("value") or "4")
        # two decimals as JavaScript rounds them (a tie goes up, where Python's format rounds to even)
        for label, text in shown:
            assert abs(float(text) - predicted[f"{label}@{bits}b"]) <= 0.005 + 1e-9, (label, text)
        # the chart marks the planner's pick when it is a split of this model
        marker = page.get_by_test_id("recommended-point")
        if answer["pick"]["mode"] == "split":
            labels = [p["label"] for p in api.get(f"/api/models/{model_id}/split-points").json()]
            expect(marker).to_have_attribute("data-index", str(labels.index(answer["pick"]["split_point"])))
        else:
            expect(marker).to_have_count(0)
        # after calibrating and planning, the deciding columns still fit the table's card at 1280 px
        assert page.evaluate(SHOWN_COLUMNS_JS) == ["label", "bytes", "predicted", "top1", "compute"]
        assert page.evaluate(TABLE_FITS_JS) <= 0
        pick_rows = page.locator("tr.is-pick")
        expect(pick_rows).to_have_count(1)
        assert pick_rows.get_attribute("data-key") == answer["pick"]["key"]
        last = len(answer["plans"]) - 1
        assert shown_row(page, last) == plan_row(answer["plans"][last], answer["pick"]["key"])

        curve = curve_response.value.json()
        assert curve["rtt_ms"] == RTT_MS
        lines = page.locator("#plan-curve polyline.curve-line")
        expect(lines).to_have_count(len(curve["series"]))
        assert [lines.nth(i).get_attribute("data-key") for i in range(lines.count())] == [
            s["key"] for s in curve["series"]
        ]
        expect(page.get_by_test_id("curve-key")).to_have_count(len(curve["series"]))
        assert page.evaluate(UNLABELLED_JS) == []

        for name, size in (("wide", WIDE), ("phone", PHONE)):
            page.set_viewport_size(size)
            page.wait_for_timeout(200)  # the charts redraw at the new width
            no_horizontal_scroll(page)
            screenshot(page, f"model-plan-{name}")
        page.set_viewport_size(WIDE)

        # deploy the pick
        with job_started(page, api, f"/api/models/{model_id}/plan-jobs") as deployed:
            page.get_by_role("button", name="Deploy recommended plan").click()
        done = deployed.result()
        assert done["deployed"]["robot"]["split_id"] == done["split_id"]
        expect(page.get_by_test_id("plan-deployed")).to_be_visible()
        expect(page.get_by_test_id("plan-deployed-name")).to_have_text(plan_name(done["pick"]))
        expect(page.get_by_test_id("plan-mode")).to_have_text(done["mode"])
        # The link to run it opens the inference page on that split, in that mode.
        page.get_by_test_id("plan-run-link").click()
        expect(page.get_by_label("Split", exact=True)).to_have_value(done["split_id"])
        expect(page.locator(f"#mode-{done['mode']}")).to_be_checked()
    finally:
        # the other browser tests expect the shared resnet18 split to be the active one
        restored = api.post(f"/api/splits/{deployed_split.split_id}/deploy")
        assert restored.status_code == 200, restored.text
