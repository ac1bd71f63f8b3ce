"""The stream benchmark's own arithmetic: when the controller had to follow a rate drop, and by how many frames."""

from __future__ import annotations

from bench.stream import FrameLog, choice_counts, frames_to_follow, starts


def frame(n: int, rate: float, bits: int | None, status: str = "ok", met: bool = True) -> FrameLog:
    mode = "split" if bits is not None else "all-robot"
    return FrameLog(
        n, n / 15, status, 10.0, met, mode if status == "ok" else None, bits, split="s" * 12, rate_mbit=rate
    )


def test_a_plan_that_kept_the_deadline_after_a_drop_had_nothing_to_follow() -> None:
    frames = [frame(n, 50.0, 8) for n in range(10)] + [frame(n, 5.0, 8) for n in range(10, 30)]
    assert frames_to_follow(frames) == [{"from_mbit": 50.0, "to_mbit": 5.0, "frames": None}]


def test_following_counts_answered_frames_only() -> None:
    before = [frame(n, 5.0, 8) for n in range(10)]
    # The drop: two frames still at 8 bits miss, two are dropped in the queue, then 2 bits.
    after = [
        frame(10, 1.0, 8, met=False),
        frame(11, 1.0, None, status="dropped"),
        frame(12, 1.0, None, status="dropped"),
        frame(13, 1.0, 8, met=False),
        *[frame(n, 1.0, 2) for n in range(14, 30)],
    ]
    assert frames_to_follow(before + after) == [{"from_mbit": 5.0, "to_mbit": 1.0, "frames": 3}]


def test_segments_start_where_the_schedule_says_and_choices_are_counted_by_plan() -> None:
    assert starts([(15.0, 50.0), (15.0, 5.0), (10.0, None)]) == [0.0, 15.0, 30.0]
    frames = [frame(0, 5.0, 8), frame(1, 5.0, 8), frame(2, 5.0, None), frame(3, 5.0, 2, status="dropped")]
    assert choice_counts(frames) == {"all-robot": 1, "ssssssssssss@8": 2}
