"""The benchmark harness's pure parts: statistics, plan selection, the link arithmetic, the results file, figures.

Nothing here times anything or needs root: the measurements themselves run under ``make bench`` / ``bench-quick``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import netns
from bench.measure import Sample, plan_run
from bench.netns import BenchCgroups, Shaper
from bench.plans import (
    ALL_EDGE,
    ALL_ROBOT,
    best_plans,
    hopeless,
    overhead_ratio,
    predicted_ms,
    select_points,
    split_plans,
    transfer_ms,
)
from bench.plots import plot_all
from bench.report import render
from bench.run import main as run_main
from bench.run import parse_args
from bench.schema import (
    SCHEMA_VERSION,
    BenchResults,
    EdgeThroughput,
    LinkCheck,
    LoopbackOverhead,
    Machine,
    ModelInfo,
    Plan,
    PlanRun,
    PointInfo,
    QuantSpeed,
    RunConfig,
)
from bench.stats import percentile, summarize
from bench.testbed import Names

# --- statistics -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear(q: float) -> None:
    values = list(np.random.default_rng(1).lognormal(4, 0.5, size=37))
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edges() -> None:
    assert percentile([7.0], 90) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize() -> None:
    summary = summarize([float(v) for v in range(1, 101)])
    assert summary.n == 100
    assert summary.p50 == 50.5
    assert summary.p90 == pytest.approx(90.1)
    assert summary.min == 1.0 and summary.max == 100.0 and summary.mean == 50.5


# --- plans ----------------------------------------------------------------------------------------------------


def _point(index: int, label: str, elements: int, flops: float) -> PointInfo:
    return PointInfo(
        index=index,
        label=label,
        shape=[1, elements],
        elements=elements,
        head_flops_share=flops,
        wire_bytes={"4": elements // 2},
    )


POINTS = [
    _point(0, "conv1", 800, 0.1),
    _point(1, "relu", 800, 0.1),  # same size and compute as conv1: conv1 stands for both
    _point(2, "pool", 200, 0.15),
    _point(3, "block1", 200, 0.4),  # as big as pool after more compute: dominated
    _point(4, "block2", 100, 0.6),
    _point(5, "wide", 400, 0.7),  # bigger than block2 after more compute: dominated
    _point(6, "head", 10, 0.99),
]


def test_frontier_keeps_only_undominated_points() -> None:
    assert [p.label for p in select_points(POINTS, "frontier")] == ["conv1", "pool", "block2", "head"]


def test_other_selections() -> None:
    assert [p.label for p in select_points(POINTS, "all")] == [p.label for p in POINTS]
    assert [p.label for p in select_points(POINTS, "ends")] == ["conv1", "block1", "head"]
    assert [p.label for p in select_points(POINTS, "head, pool")] == ["head", "pool"]
    with pytest.raises(ValueError, match="nope"):
        select_points(POINTS, "pool,nope")
    assert select_points([], "frontier") == []


def test_split_plans_cross_points_and_bits() -> None:
    plans = split_plans(POINTS[:2], [2, 8])
    assert [p.key for p in plans] == ["conv1@2b", "conv1@8b", "relu@2b", "relu@8b"]
    assert ALL_ROBOT.key == "all-robot" and ALL_EDGE.key == "all-edge"


def test_link_arithmetic() -> None:
    assert transfer_ms(125_000, 1.0) == pytest.approx(1000.0)  # 1 Mbit at 1 Mbit/s
    assert transfer_ms(35_131, 2.0) == pytest.approx(140.524)
    assert predicted_ms(60.0, 50_000, 10.0) == pytest.approx(100.0)
    assert overhead_ratio(110.0, 100.0) == pytest.approx(1.1)
    with pytest.raises(ValueError):
        transfer_ms(1, 0.0)
    with pytest.raises(ValueError):
        overhead_ratio(1.0, 0.0)


def test_hopeless() -> None:
    assert hopeless(301.0, 100.0, 3.0)
    assert not hopeless(300.0, 100.0, 3.0)
    assert not hopeless(10_000.0, 100.0, 0.0)  # factor 0 measures everything
    assert not hopeless(10_000.0, None, 3.0)  # nothing measured yet at that rate


def _run(
    model: str, rate: float, plan: Plan, p50: float, p90: float | None = None, status: str = "measured"
) -> PlanRun:
    samples = [p50, p50, p90 if p90 is not None else p50]
    return PlanRun(
        model=model,
        rate_mbit=rate,
        plan=plan,
        status=status,  # type: ignore[arg-type]
        latency=summarize(samples) if status == "measured" else None,
        bytes_sent=100,
    )


def test_best_plans_per_model_and_rate() -> None:
    split = Plan(mode="split", point="pool", bits=4)
    runs = [
        _run("m", 2.0, ALL_ROBOT, 200.0),
        _run("m", 2.0, ALL_EDGE, 400.0),
        _run("m", 2.0, split, 150.0),
        _run("m", 200.0, ALL_ROBOT, 200.0),
        _run("m", 200.0, ALL_EDGE, 90.0),
        _run("m", 200.0, split, 10.0, status="pruned"),  # a prediction never wins
        _run("m", 200.0, Plan(mode="split", point="head", bits=2), 5.0, status="failed"),
        _run("other", 2.0, ALL_ROBOT, 1.0),
    ]
    best = {(b.model, b.rate_mbit): b for b in best_plans(runs)}
    assert best[("m", 2.0)].plan == split
    assert best[("m", 2.0)].runner_up == ALL_ROBOT and best[("m", 2.0)].runner_up_p50_ms == 200.0
    assert best[("m", 200.0)].plan == ALL_EDGE
    assert best[("other", 2.0)].plan == ALL_ROBOT and best[("other", 2.0)].runner_up is None


def test_best_plan_tie_goes_to_lower_p90() -> None:
    a = _run("m", 10.0, ALL_ROBOT, 100.0, p90=150.0)
    b = _run("m", 10.0, ALL_EDGE, 100.0, p90=120.0)
    assert a.latency is not None and b.latency is not None and a.latency.p50 == b.latency.p50
    assert best_plans([a, b])[0].plan == ALL_EDGE


def test_plan_run_predicts_compute_plus_bytes_over_rate() -> None:
    stages = {"robot:head": 30.0, "edge:tail": 20.0}
    samples = [
        Sample(e2e_ms=ms, robot_ms=30.0, edge_ms=20.0, stages=stages, sent=24_000, received=1_000)
        for ms in (80.0, 90.0, 100.0)
    ]
    run = plan_run("m", 10.0, Plan(mode="split", point="pool", bits=4), samples, (26_000.0, 3_000.0, 0.5))
    # 50 ms compute + 25,000 bytes at 10 Mbit/s (20 ms) = 70 ms; p50 90 ms.
    assert run.predicted_ms == pytest.approx(70.0)
    assert run.overhead_ratio == pytest.approx(90.0 / 70.0, abs=1e-4)
    assert run.latency is not None and run.latency.p50 == 90.0
    assert (
        run.link_bytes_up == 26_000.0
        and run.link_drops == 0.5
        and run.stages_ms == {"edge:tail": 20.0, "robot:head": 30.0}
    )
    uncapped = plan_run("m", None, ALL_ROBOT, samples, None)
    assert uncapped.predicted_ms is None and uncapped.overhead_ratio is None


# --- results file, report, figures ----------------------------------------------------------------------------


def _results() -> BenchResults:
    machine = Machine(
        host="testhost",
        cpu="Test CPU",
        cores=2,
        memory_gib=24.0,
        kernel="6.0",
        python="3.11",
        onnxruntime="1.0",
        gpu=None,
        load_start=(0.5, 0.4, 0.3),
    )
    config = RunConfig(
        kind="quick",
        models=["m"],
        rates_mbit=[2.0, 200.0],
        bits=[4],
        points="ends",
        requests=3,
        warmup=1,
        robot_cpu_percent=50.0,
        cpu_period_us=100_000,
        cpu_shares=32768,
        robot_threads=1,
        edge_threads=2,
        burst="32kbit",
        tbf_latency="50ms",
        prune_factor=3.0,
        image="chelsea.jpg",
        image_bytes=35_042,
        clients=[1, 4],
        loopback_models=["m"],
        loopback_threads=2,
    )
    split = Plan(mode="split", point="pool", bits=4)
    runs = [
        _run("m", rate, plan, p50)
        for rate, plan, p50 in [
            (2.0, ALL_ROBOT, 200.0),
            (2.0, ALL_EDGE, 400.0),
            (2.0, split, 150.0),
            (200.0, ALL_ROBOT, 200.0),
            (200.0, ALL_EDGE, 90.0),
            (200.0, split, 120.0),
        ]
    ]
    for run in runs:
        run.overhead_ratio = 1.1
    results = BenchResults(
        started_at="2025-01-01T00:00:00",
        machine=machine,
        config=config,
        link=[LinkCheck(rate_mbit=2.0, goodput_mbit=1.9)],
        models=[ModelInfo(name="m", model_id="id", points=POINTS, selected=["conv1", "pool", "head"])],
        runs=runs,
        loopback=[
            LoopbackOverhead(
                model="m",
                plan=split,
                spinning=spinning,
                threads=2,
                edge_channel="websocket",
                http=summarize([44.0, 45.0]),
                in_process=summarize([40.0, 41.0]),
                ratio=1.1,
                ratio_min=1.1,
                in_process_stages_ms={"robot:head": 20.0},
                http_stages_ms={"robot:head": 20.0, "link:network": 3.0},
            )
            for spinning in (False, True)
        ],
        quant=[QuantSpeed(shape=[1, 8, 4, 4], bits=4, quant_pack_gbps=2.0, unpack_dequant_gbps=3.0, copy_gbps=9.0)],
        edge_throughput=[
            EdgeThroughput(
                model="m",
                plan=split,
                channel="websocket",
                clients=c,
                requests=8,
                seconds=1.0,
                requests_per_s=8.0 * c,
                p50_ms=10.0 * c,
                p99_ms=20.0 * c,
            )
            for c in (1, 4)
        ],
    )
    results.best = best_plans(results.runs)
    return results


def test_results_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "2025-01-01-testhost.json"
    results = _results()
    results.write(path)
    assert not list(path.parent.glob("*.partial"))  # written whole, then renamed
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    assert {"machine", "config", "runs", "best", "loopback", "quant", "edge_throughput", "link"} <= raw.keys()
    assert raw["runs"][0]["latency"].keys() >= {"p50", "p90", "n"}
    assert raw["runs"][0]["plan"] == {"mode": "all-robot", "point": None, "bits": None}
    assert BenchResults.read(path) == results


def test_results_file_is_validated_on_read(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    raw = json.loads(_results().model_dump_json())
    raw["runs"][0]["plan"]["mode"] = "telepathy"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError):
        BenchResults.read(path)


def test_report_tables() -> None:
    text = render(_results())
    assert "| m | winner | **pool@4b** | **all-edge** |" in text
    assert "2-core" in text and "robot capped at 50% of one core" in text
    assert "| m | pool@4b | websocket | off | 44.5 | 40.5 | **1.100** | 1.100 |" in text
    assert "| m | pool@4b | websocket | 4 |" in text


def test_plots_write_pngs_that_name_the_machine(tmp_path: Path) -> None:
    written = plot_all(_results(), tmp_path, "quick-test")
    assert sorted(p.name for p in written) == [
        "quick-test-bytes.png",
        "quick-test-latency.png",
        "quick-test-overhead.png",
        "quick-test-throughput.png",
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000
    assert "testhost: 2-core" in _results().machine.describe(50.0)


# --- testbed pieces that need no root -------------------------------------------------------------------------


def test_names_fit_interface_limits() -> None:
    names = Names.for_pid(4_194_304)  # the largest pid Linux hands out
    assert len(names.robot_veth) <= 15 and len(names.edge_veth) <= 15
    assert names.robot_ns == "sbb4194304-robot" and names.edge_ns == "sbb4194304-edge"


def test_shaper_adds_then_changes_then_deletes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(netns, "sh", lambda *argv, check=True: calls.append(argv) or "")
    shaper = Shaper("ns", "dev0", "32kbit", "50ms")
    shaper.apply(10.0, None)
    shaper.apply(2.5, 10.0)
    shaper.apply(None, 2.5)
    shaper.apply(None, None)  # nothing to delete
    assert [c[6] for c in calls] == ["add", "change", "del"]
    assert calls[0][-8:] == ("root", "tbf", "rate", "10mbit", "burst", "32kbit", "latency", "50ms")
    assert "2.5mbit" in calls[1]


def test_cgroup_quota_and_robot_wrapper() -> None:
    cgroups = BenchCgroups("sbb1", "v1", robot_percent=50.0, period_us=100_000)
    assert cgroups.quota_us == 50_000
    assert str(cgroups.robot).endswith("cpu/sbb1/robot")
    argv = cgroups.wrap_robot(["ip", "netns", "exec", "ns", "python"])
    assert argv[:2] == ["sh", "-c"] and argv[3].endswith("sbb1/robot/cgroup.procs") and argv[-1] == "python"
    assert str(BenchCgroups("sbb1", "v2", 25.0).main) == "/sys/fs/cgroup/sbb1/main"


def test_quick_defaults_and_overrides() -> None:
    quick = parse_args(["--quick"])
    assert (quick.models, quick.rates, quick.bits, quick.points, quick.requests, quick.warmup) == (
        "resnet18",
        "10,200",
        "4",
        "ends",
        10,
        2,
    )
    full = parse_args(["--rates", "5", "--requests", "40"])
    assert full.rates == "5" and full.requests == 40 and full.bits == "2,4,8" and full.points == "frontier"
    assert full.robot_cpu == 50.0 and full.prune_factor == 3.0


def test_bench_refuses_loudly_without_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    out = tmp_path / "quick.json"
    assert run_main(["--quick", "--out", str(out), "--plots-dir", str(tmp_path)]) == 2
    assert "must run as root" in capsys.readouterr().err
    assert not out.exists()  # nothing that could pass for a result


def test_hop_floor_measures_every_client_against_a_real_echo_server() -> None:
    from bench.hop_floor import measure

    rows = measure(requests=5, idle_ms=[0.0, 1.0])
    assert [(r["client"], r["idle_ms"]) for r in rows] == [
        (client, idle) for idle in (0.0, 1.0) for client in ("http.client", "httpx", "websocket")
    ]
    assert all(r["p50_ms"] > 0 for r in rows)
