"""The planner validation's pure parts: picking, errors, the results file and its figure (nothing is timed)."""

from __future__ import annotations

from pathlib import Path

from bench.schema import machine_info
from bench.stats import summarize
from bench.validate_planner import PlanCheck, PlannerValidation, RateSummary, ValidationConfig, _pick, parse_args, plot


def check(key: str, predicted: float, measured: float | None, eligible: bool = True) -> PlanCheck:
    return PlanCheck(
        rate_mbit=10.0,
        key=key,
        mode="split" if "@" in key else key,
        point=key.split("@")[0] if "@" in key else None,
        bits=int(key.split("@")[1][:-1]) if "@" in key else None,
        eligible=eligible,
        predicted_ms=predicted,
        predicted_nominal_ms=predicted,
        predicted={"robot_ms": predicted, "transfer_ms": 0.0, "rtt_ms": 0.0, "edge_ms": 0.0},
        status="measured" if measured is not None else "pruned",
        latency=summarize([measured]) if measured is not None else None,
        error_pct=round((predicted - measured) / measured * 100, 2) if measured is not None else None,
    )


def test_pick_against_best_measured() -> None:
    checks = [
        check("all-robot", 100.0, 104.0),
        check("layer2@4b", 80.0, 98.0, eligible=False),
        check("layer2@16b", 90.0, 101.0),
        check("conv1@32b", 900.0, None),
    ]
    eligible = _pick(checks, eligible_only=True)
    assert eligible is not None
    assert (eligible.pick, eligible.best) == ("layer2@16b", "layer2@16b") and eligible.within_target
    any_plan = _pick(checks, eligible_only=False)
    assert any_plan is not None
    assert (any_plan.pick, any_plan.best, any_plan.over_best_pct) == ("layer2@4b", "layer2@4b", 0.0)
    slow = _pick([check("all-robot", 50.0, 120.0), check("all-edge", 60.0, 100.0)], eligible_only=True)
    assert slow is not None and slow.over_best_pct == 20.0 and not slow.within_target


def test_results_file_and_figure(tmp_path: Path) -> None:
    args = parse_args(["--quick"])
    checks = [check("all-robot", 100.0, 104.0), check("layer2@16b", 90.0, 101.0), check("all-edge", 300.0, None)]
    results = PlannerValidation(
        started_at="2026-01-01T00:00:00",
        machine=machine_info(),
        config=ValidationConfig(
            model="resnet18",
            input_shape=None,
            rates_mbit=[10.0],
            bits=[4, 32],
            points=args.points,
            requests=args.requests,
            warmup=args.warmup,
            confirm=args.confirm,
            prune_factor=3.0,
            robot_cpu_percent=50.0,
            robot_threads=1,
            edge_threads=2,
            image="chelsea.jpg",
            image_bytes=35042,
        ),
        checks=checks,
        rates=[
            RateSummary(
                rate_mbit=10.0,
                probe_throughput_mbps=9.6,
                probe_rtt_ms=1.0,
                eligible=_pick(checks, True),
                any_plan=_pick(checks, False),
                measured=2,
                pruned=1,
                median_abs_error_pct=7.0,
                max_abs_error_pct=10.9,
                median_abs_error_nominal_pct=7.0,
                load_avg=1.0,
            )
        ],
    )
    path = tmp_path / "planner.json"
    results.write(path)
    assert PlannerValidation.model_validate_json(path.read_text()) == results
    png = plot(results, tmp_path / "planner.png")
    assert png.stat().st_size > 10_000
