"""The stream page in Chromium: a sample clip through the real robot and edge, charted frame by frame."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.support import DeployedSplit, no_horizontal_scroll


def test_a_clip_plays_through_the_robot_and_every_frame_is_accounted_for(
    page: Page, deployed_split: DeployedSplit
) -> None:
    page.goto("/stream")
    page.get_by_label("Frames", exact=True).fill("20")
    page.get_by_label("Frames per second").fill("10")
    page.get_by_label("Deadline (ms)").fill("2000")
    page.get_by_role("button", name="Play the clip").click()
    expect(page.get_by_test_id("stream-count")).to_have_text("20 / 20", timeout=60_000)
    expect(page.get_by_role("button", name="Play the clip")).to_be_enabled(timeout=30_000)
    answered = int(page.get_by_test_id("stream-answered").inner_text())
    dropped = int(page.get_by_test_id("stream-dropped").inner_text())
    assert answered + dropped == 20 and answered >= 1
    dots = page.locator("#stream-chart circle.frame")
    assert dots.count() == answered
    expect(page.get_by_test_id("stream-plan")).to_have_text(re.compile(r"split at \d+ bits|all-edge|all-robot"))
    expect(page.get_by_test_id("stream-reason")).to_contain_text("deadline")
    expect(page.get_by_test_id("stream-p50")).to_have_text(re.compile(r"\d+\.\d ms"))
    expect(page.get_by_test_id("stream-error")).to_be_hidden()
    no_horizontal_scroll(page)


def test_a_refused_option_is_said_beside_the_form(page: Page, deployed_split: DeployedSplit) -> None:
    page.goto("/stream")
    page.get_by_label("Plan").select_option("split")
    page.get_by_label("Frames", exact=True).fill("5")
    page.get_by_label("Frames in flight").fill("9")  # the robot takes 1..4
    page.get_by_role("button", name="Play the clip").click()
    expect(page.get_by_test_id("stream-error")).to_contain_text("in_flight", timeout=30_000)
