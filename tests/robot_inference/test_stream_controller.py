"""The stream controller on a simulated link: it follows a rate drop within three frames, does not flap near the
threshold, falls back to the fastest when nothing fits, and probes the link while it answers on the robot.

The link here is arithmetic (bytes / rate + RTT); the controller, its estimates and the results it learns from
are the real classes the robot runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from common.postprocess.answers import Answer
from common.results import InferenceResult, Providers, WireBytes
from common.timing import Stage
from robot_inference.stream.controller import (
    HOLD_FRAMES,
    HOLD_FRAMES_MAX,
    PROBE_EVERY,
    PROBE_EVERY_MAX,
    Choice,
    Controller,
)
from robot_inference.stream.link_estimate import LinkEstimate

SPLIT = "a" * 64
ROBOT_HEAD_MS = 8.0
EDGE_TAIL_MS = 4.0
FULL_MODEL_MS = 70.0
RTT_MS = 2.0
BYTES = {2: 4_000, 4: 8_000, 8: 16_000}
FIDELITY = {2: 0.80, 4: 0.95, 8: 0.99}


def choices(with_robot: bool = True) -> list[Choice]:
    out = [Choice("split", SPLIT, bits, FIDELITY[bits], BYTES[bits]) for bits in (2, 4, 8)]
    return [*out, Choice("all-robot", SPLIT, None, 1.0)] if with_robot else out


def answered(choice: Choice, mbps: float, burst: int = 0) -> InferenceResult:
    """What the robot measures for one frame of ``choice`` on a link of ``mbps`` (``burst``: bytes a token bucket
    lets through at once, as tc tbf does after an idle moment)."""
    if choice.mode == "all-robot":
        stages = [Stage(name="model", where="robot", ms=FULL_MODEL_MS)]
        sent = 0
    else:
        sent = choice.prior_bytes or BYTES[choice.bits or 8]
        wire_ms = RTT_MS + max(sent + 500 - burst, 0) * 8 / (mbps * 1e3)
        stages = [
            Stage(name="head", where="robot", ms=ROBOT_HEAD_MS),
            Stage(name="network", where="link", ms=wire_ms),
            Stage(name="tail", where="edge", ms=EDGE_TAIL_MS),
        ]
    return InferenceResult(
        mode=choice.mode,
        split_id=SPLIT,
        request_id="0" * 32,
        model_id="m" * 16,
        model_name="m",
        split_point="p",
        bits=choice.bits or 32,
        weights_trained=True,
        answer=Answer(task="classification"),
        predictions=[],
        stages=stages,
        total_ms=sum(s.ms for s in stages),
        bytes=WireBytes(sent=sent, received=500 if sent else 0, feature_fp32=0, image=0),
        providers=Providers(robot="cpu", edge="cpu"),
    )


def run(controller: Controller, schedule: list[float], burst: int = 0) -> list[Choice]:
    picked = []
    for mbps in schedule:
        decision = controller.choose()
        picked.append(decision.choice)
        controller.observe(decision.choice, answered(decision.choice, mbps, burst))
    return picked


def run_waiting(
    controller: Controller,
    schedule: list[float],
    extra_ms: Callable[[Choice, float], float],
    fps: float | None = None,
    burst: int = 0,
) -> list[Choice]:
    """As run, each frame answered ``extra_ms(choice, mbps)`` later than its compute and link say (frames queued
    somewhere), and with ``fps`` the camera's frames arriving at that pace."""
    picked = []
    for n, mbps in enumerate(schedule):
        if fps is not None:
            controller.frame_arrived(n * 1e3 / fps)
        decision = controller.choose()
        picked.append(decision.choice)
        result = answered(decision.choice, mbps, burst)
        controller.observe(decision.choice, result, result.total_ms + extra_ms(decision.choice, mbps))
    return picked


def no_wait(choice: Choice, mbps: float) -> float:
    return 0.0


def robot_queues(choice: Choice, mbps: float) -> float:
    """The robot is slower than the camera: each frame it answers waited ~80 ms for it."""
    return 80.0 if choice.mode == "all-robot" else 0.0


def test_it_follows_a_rate_drop_within_three_frames() -> None:
    controller = Controller(choices(with_robot=False), deadline_ms=40.0, link=LinkEstimate(rtt_ms=RTT_MS))
    # 50 Mbit/s: 8 bits costs about 8 + 2 + 2.7 + 4 ms. At 2 Mbit/s only 2 bits fits (4 kB: 18 ms on the wire).
    picked = run(controller, [50.0] * 10 + [2.0] * 10)
    assert {c.bits for c in picked[5:10]} == {8}
    after_drop = [c.bits for c in picked[10:]]
    assert after_drop.index(2) <= 3, after_drop
    assert set(after_drop[4:]) == {2}
    assert controller.link.bandwidth_mbps is not None and controller.link.bandwidth_mbps < 3.0


def test_it_climbs_back_only_after_holding_and_does_not_flap() -> None:
    controller = Controller(choices(with_robot=False), deadline_ms=40.0, link=LinkEstimate(rtt_ms=RTT_MS))
    picked = run(controller, [2.0] * 8 + [50.0] * 8)
    bits = [c.bits for c in picked]
    assert set(bits[4:8]) == {2}
    recovered = bits[8:]
    assert recovered[0] == 2 and recovered[-1] == 8, recovered
    switches = sum(1 for a, b in itertools.pairwise(bits) if a != b)
    assert switches <= 4, bits  # down once or twice at the start, up once (hysteresis), no back and forth


def test_a_step_up_that_missed_waits_longer_before_the_next_try() -> None:
    # 1 Mbit/s behind a 4 kB burst: a 2-bit frame (4.5 kB) seems to cross at 9 Mbit/s, so 8 bits looks as if it
    # fits, and then takes 100 ms on the wire. Each such try misses the 40 ms deadline.
    controller = Controller(choices(with_robot=False), deadline_ms=40.0, link=LinkEstimate(rtt_ms=RTT_MS))
    picked = run(controller, [1.0] * 400, burst=4_000)
    ups = [i for i, c in enumerate(picked) if i and (c.bits or 0) > (picked[i - 1].bits or 0)]
    gaps = [b - a for a, b in itertools.pairwise(ups)]
    assert len(ups) <= 12, ups  # with one hold of 3 frames: every 5 frames, 80 times
    assert gaps and gaps[-1] >= HOLD_FRAMES_MAX, gaps
    assert sum(1 for c in picked[200:] if c.bits == 2) >= 180
    # And no step skips a width: 2 -> 8 would quadruple the bytes on a link that was not seen to carry them.
    assert all(picked[i].bits != 8 or picked[i - 1].bits != 2 for i in ups), [c.bits for c in picked[:60]]


@pytest.mark.parametrize(("fps", "bits"), [(20.0, 4), (10.0, 8)])
def test_a_choice_whose_frames_would_queue_on_the_link_does_not_fit(fps: float, bits: int) -> None:
    # 2 Mbit/s: one 8-bit frame (16.5 kB: 66 ms on the wire, 80 ms in all) fits a 100 ms deadline, but at 20
    # frames/s the next frame comes after 50 ms and would wait behind it; at 10 frames/s it would not.
    controller = Controller(choices(with_robot=False), deadline_ms=100.0, link=LinkEstimate(rtt_ms=RTT_MS))
    picked = [c.bits for c in run_waiting(controller, [2.0] * 20, no_wait, fps)]
    assert set(picked[-8:]) == {bits}, picked


@pytest.mark.parametrize(("fps", "mode"), [(10.0, "all-robot"), (15.0, "split")])
def test_a_robot_whose_compute_takes_longer_than_the_camera_pace_does_not_fit(fps: float, mode: str) -> None:
    # The full model takes 70 ms on the robot: within a 100 ms deadline, and within 90 % of the 100 ms between
    # frames at 10 frames/s; at 15 frames/s (67 ms) the robot would fall behind the camera.
    controller = Controller(choices(), deadline_ms=100.0, link=LinkEstimate(rtt_ms=RTT_MS))
    picked: list[str] = [c.mode for c in run_waiting(controller, [50.0] * 30, no_wait, fps)]
    assert picked[-10:].count(mode) >= 9, picked


def test_the_next_width_is_in_reach_even_when_it_more_than_doubles_the_bytes() -> None:
    # Coded sizes: 2 bits 3 kB, 4 bits 8 kB, 8 bits 16 kB. From 2 bits, twice the bytes reaches nothing: the next
    # rung (4 bits) is still a step, and from there 8 bits.
    sizes = {2: 3_000, 4: 8_000, 8: 16_000}
    ladder = [Choice("split", SPLIT, bits, FIDELITY[bits], sizes[bits]) for bits in (2, 4, 8)]
    controller = Controller(ladder, deadline_ms=40.0, link=LinkEstimate(rtt_ms=RTT_MS))
    picked = run(controller, [2.0] * 10 + [50.0] * 20)
    assert picked[-1].bits == 8, [c.bits for c in picked]


def test_nothing_fits_means_the_fastest() -> None:
    controller = Controller(choices(with_robot=False), deadline_ms=5.0, link=LinkEstimate(rtt_ms=RTT_MS))
    run(controller, [50.0] * 5)
    decision = controller.choose()
    assert decision.choice.bits == 2 and "nothing is predicted to meet" in decision.reason


def test_the_robot_answers_when_it_fits_and_nothing_over_the_link_could_beat_it() -> None:
    controller = Controller(choices(), deadline_ms=100.0, link=LinkEstimate(rtt_ms=RTT_MS))
    picked = run(controller, [1.0] * 30)  # the robot's 70 ms fits the deadline, and no split is as faithful
    assert {c.mode for c in picked} == {"all-robot"}


def test_while_the_robot_misses_the_deadline_the_link_is_probed_and_recovery_is_seen() -> None:
    controller = Controller(choices(), deadline_ms=50.0, link=LinkEstimate(rtt_ms=RTT_MS))
    # 0.3 Mbit/s: every split is slower than the robot's 70 ms, which misses the deadline too: the fastest, the robot.
    picked = run(controller, [0.3] * 30 + [50.0] * 30)
    thin = picked[:30]
    assert [c.mode for c in thin[-15:]].count("all-robot") >= 13
    probes = [c for c in thin[5:] if c.mode == "split"]
    assert probes and {c.bits for c in probes} == {2}  # the fewest bytes probe the link
    assert {c.bits for c in picked[-5:]} == {8}  # the link came back: the best split that fits


def test_probes_that_miss_the_deadline_are_spaced_out_and_a_recovered_link_brings_them_back() -> None:
    # A split as faithful as the robot (so the link is probed while the robot meets the deadline), on a link where
    # its 16 kB take 130 ms: each probe misses the 100 ms deadline.
    faithful = [Choice("split", SPLIT, 8, 1.0, BYTES[8]), Choice("all-robot", SPLIT, None, 1.0)]
    controller = Controller(faithful, deadline_ms=100.0, link=LinkEstimate(rtt_ms=RTT_MS))
    picked = run(controller, [1.0] * 300)
    probes = [i for i, c in enumerate(picked) if c.mode == "split"]
    assert 3 <= len(probes) <= 6, probes  # every 10th frame would be 30
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert gaps == sorted(gaps) and max(gaps) <= PROBE_EVERY_MAX + 1, gaps
    # The link comes back: the next probe (within the longest interval) meets the deadline, and probing is back to
    # every PROBE_EVERY frames.
    recovered = run(controller, [50.0] * (PROBE_EVERY_MAX + 4 * PROBE_EVERY))
    later = [i for i, c in enumerate(recovered) if c.mode == "split"]
    assert later[0] <= PROBE_EVERY_MAX, later
    assert [b - a for a, b in itertools.pairwise(later)][-2:] == [PROBE_EVERY, PROBE_EVERY], later


def test_a_probe_as_faithful_as_the_robot_is_sent_only_where_it_is_expected_in_time() -> None:
    # The robot meets the deadline; 8 bits is as faithful but its 16 kB take 130 ms at 1 Mbit/s, 2 bits 36 ms.
    both = [
        Choice("split", SPLIT, 8, 1.0, BYTES[8]),
        Choice("split", SPLIT, 2, FIDELITY[2], BYTES[2]),
        Choice("all-robot", SPLIT, None, 1.0),
    ]
    controller = Controller(both, deadline_ms=100.0, link=LinkEstimate(rtt_ms=RTT_MS))
    picked = run(controller, [1.0] * 200)
    probes = [c.bits for c in picked if c.mode == "split"]
    assert probes[0] == 8 and set(probes[1:]) == {2}, probes  # once the link was seen slow: the probe in time
    assert len(probes) >= 15  # and those meet the deadline, so probing stays every PROBE_EVERY frames


def test_frames_that_queue_behind_a_busy_robot_count_against_its_plan() -> None:
    # The robot's 70 ms of compute fits a 100 ms deadline, but frames come faster than that: each waits ~80 ms.
    controller = Controller(choices(), deadline_ms=100.0, link=LinkEstimate(rtt_ms=RTT_MS))
    picked = run_waiting(controller, [50.0] * 12, robot_queues)
    assert picked[0].mode == "all-robot"
    assert {c.mode for c in picked[-5:]} == {"split"}, [c.key for c in picked]


def test_a_robot_that_cannot_keep_up_is_retried_less_and_less_often() -> None:
    # As above, but for 600 frames: each time the robot is tried it queues frames again.
    controller = Controller(choices(), deadline_ms=100.0, link=LinkEstimate(rtt_ms=RTT_MS))
    picked = run_waiting(controller, [50.0] * 600, robot_queues)
    tries = [i for i, c in enumerate(picked) if c.mode == "all-robot" and picked[i - 1].mode != "all-robot"]
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert 3 <= len(tries) <= 8, tries  # tried again (the load that made it wait may have passed): not every 19th
    assert gaps[-1] >= 2 * gaps[0], gaps  # frame as with one fading rate, and less and less often


def test_a_better_choice_is_not_kept_waiting_behind_one_on_a_long_hold() -> None:
    # At 2 bits on a fast link; the robot (the best fidelity, and it fits) has failed its steps up before, so its
    # hold is the longest. While it waits that out, 4 and then 8 bits, which have not failed, take over.
    controller = Controller(choices(), deadline_ms=100.0, link=LinkEstimate(rtt_ms=RTT_MS))
    run(controller, [50.0] * 5)  # every cost seen once
    two, robot = controller.choices[0], controller.choices[3]
    controller._switch(two)
    controller._hold[robot.key] = HOLD_FRAMES_MAX
    picked = run(controller, [50.0] * (HOLD_FRAMES_MAX + 20))
    bits = [c.bits for c in picked]
    assert 8 in bits[: 2 * HOLD_FRAMES + 2], bits  # 2 -> 4 -> 8, a hold each, not 48 frames at 2 bits
    assert picked[-1].mode == "all-robot", [c.key for c in picked]  # and the robot's turn comes after its hold


def test_waiting_seen_on_a_thin_link_does_not_keep_its_plans_out_once_the_link_is_back() -> None:
    # On a thin link the wider codes queue (300 ms beyond their prediction); once the link is fast again they take
    # over as the hold allows, without waiting for that queueing to be forgotten at the robot's slow rate.
    controller = Controller(choices(with_robot=False), deadline_ms=40.0, link=LinkEstimate(rtt_ms=RTT_MS))

    def wide_codes_queue(choice: Choice, mbps: float) -> float:
        return 300.0 if mbps < 10 and (choice.bits or 0) > 2 else 0.0

    schedule = [2.0] * 200 + [50.0] * 100
    picked = [c.bits for c in run_waiting(controller, schedule, wide_codes_queue, burst=4_000)]
    # At most the longest hold for the first step and a short one for the next (and a few frames for the estimate).
    assert 8 in picked[200 : 200 + HOLD_FRAMES_MAX + 2 * HOLD_FRAMES + 5], picked[200:]
    assert picked[-20:] == [8] * 20, picked[200:]


def test_frames_in_flight_together_do_not_hide_the_link_rate() -> None:
    # 10 kB frames on an 8 Mbit/s link (10 ms each) with a 2 ms round trip, sent two at a time: the second waits
    # for the first's bytes, so its own transfer time reads 20 ms. Counted as its own, the rate would look halved.
    link = LinkEstimate(rtt_ms=2.0)
    wire_ms = 10.0
    now = 1000.0
    for _ in range(20):
        first_end = now + 2.0 + wire_ms
        link.observe(10_000, first_end - now, first_end)
        second_end = first_end + wire_ms
        link.observe(10_000, second_end - now, second_end)
        now = second_end + 5.0
    assert link.bandwidth_mbps is not None
    assert link.bandwidth_mbps == pytest.approx(8.0, rel=0.05)

    naive = LinkEstimate(rtt_ms=2.0)
    for _ in range(20):
        naive.observe(10_000, 12.0)
        naive.observe(10_000, 22.0)
    assert naive.bandwidth_mbps is not None and naive.bandwidth_mbps < 6.5
