"""``make bench-planner``: the auto-split planner's predictions against measurements on the emulated link.

On the benchmark's testbed (``bench/testbed.py``: robot and edge in two network namespaces joined by a veth capped
by ``tc tbf``, the robot in a CPU cgroup) this

1. registers the model, cuts and deploys a split for every selected split point x bit width (link uncapped);
2. at each rate, fastest first: asks the splitter for the plan twice, once as a person would (``GET
   /api/models/{id}/plan`` without bandwidth or rtt: the robot probes the link) and once with the tc rate as the
   bandwidth (and the probed round trip), then measures every plan from a camera client in the robot's namespace,
   interleaved (round r sends request r of every plan in turn, so slow drifts of the shared machine's load fall on
   all plans alike; each timed request follows ``--warm-each`` untimed ones of the same plan, so that it finds its
   weights in the caches as a robot running one plan does). Plans predicted more than ``--prune-factor`` times
   slower than the best prediction at that rate are not measured (their predictions are kept); the contenders get
   ``--confirm`` more requests;
3. reports per plan and rate the prediction error ``(predicted - measured p50) / measured p50``, and per rate the
   picked plan's measured p50 against the best measured plan's: among the plans that pass the fidelity floor (what
   ``POST /plan`` would deploy) and among all plans (the latency model alone). The target is within 10%.

Results: ``bench/results/planner-<date>-<host>.json`` and a PNG beside it. Needs root, like ``make bench``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from bench.control import SplitterControl
from bench.measure import RobotClient, Sample, link_goodput
from bench.netns import inside_netns, missing_prerequisites
from bench.plans import select_points
from bench.schema import Plan, RunRecord, machine_info
from bench.stats import Summary, summarize
from bench.testbed import EDGE_IP, Testbed, TestbedConfig, signals_raise

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
SCHEMA_VERSION = 1
TARGET_PCT = 10.0
PLAN_TIMEOUT_S = 900.0


class ValidationConfig(BaseModel):
    model: str
    input_shape: str | None
    rates_mbit: list[float]
    bits: list[int]
    points: str
    requests: int
    warmup: int
    confirm: int
    warm_each: int = 0
    prune_factor: float
    robot_cpu_percent: float
    cpu_period_us: int = 10_000
    robot_threads: int
    edge_threads: int
    image: str
    image_bytes: int


class PlanCheck(BaseModel):
    rate_mbit: float
    key: str
    mode: str
    point: str | None
    bits: int | None
    eligible: bool = Field(description="passes the fidelity floor (without calibration: float splits, baselines)")
    predicted_ms: float = Field(description="the planner's total with the probed link (GET /plan, no parameters)")
    predicted_nominal_ms: float = Field(description="the planner's total with bandwidth = the tc rate")
    predicted: dict[str, float] = Field(description="breakdown of predicted_ms")
    status: Literal["measured", "pruned", "failed"]
    latency: Summary | None = None
    measured: dict[str, float] = Field(
        default_factory=dict, description="medians: robot_ms, edge_ms, network_ms and each stage ('robot:head')"
    )
    bytes_sent: int | None = None
    error_pct: float | None = Field(None, description="(predicted_ms - measured p50) / measured p50, percent")
    error_nominal_pct: float | None = None
    note: str = ""


class Pick(BaseModel):
    pick: str
    pick_p50_ms: float | None = Field(None, description="None if the pick could not be measured")
    best: str
    best_p50_ms: float
    over_best_pct: float | None = Field(None, description="(pick p50 - best p50) / best p50, percent")
    within_target: bool


class RateSummary(BaseModel):
    rate_mbit: float
    goodput_mbit: float | None = Field(None, description="a raw TCP stream through the link (bench.measure)")
    probe_throughput_mbps: float
    probe_rtt_ms: float
    eligible: Pick | None = Field(None, description="among plans passing the fidelity floor (what POST /plan deploys)")
    any_plan: Pick | None = Field(None, description="among all plans (the latency model alone)")
    measured: int
    pruned: int
    median_abs_error_pct: float | None
    max_abs_error_pct: float | None
    median_abs_error_nominal_pct: float | None
    load_avg: float = Field(description="1-minute load average when the rate's measurements began")
    robot_ratio: float | None = Field(None, description="median over measured plans of measured / predicted robot_ms")
    edge_ratio: float | None = Field(None, description="the same for edge_ms")
    network_ratio: float | None = Field(
        None, description="the same for the robot's network stage against predicted transfer_ms + rtt_ms"
    )


class PlannerValidation(RunRecord):
    config: ValidationConfig
    model_id: str | None = None
    profiles: dict[str, Any] = Field(default_factory=dict, description="robot and edge profile summaries")
    notes: list[str] = Field(default_factory=list)
    rates: list[RateSummary] = Field(default_factory=list)
    checks: list[PlanCheck] = Field(default_factory=list)
    median_abs_error_pct: float | None = None
    picks_within_target: str | None = Field(None, description="e.g. 4/4 rates, among eligible plans")
    errors: list[str] = Field(default_factory=list)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".json.partial")
        temporary.write_text(self.model_dump_json(indent=1))
        os.replace(temporary, path)


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--input-shape", default=None)
    parser.add_argument("--rates", default="2,10,50,200", help="Mbit/s, comma list")
    parser.add_argument("--bits", default="2,4,8,16,32")
    parser.add_argument("--points", default="frontier", help="all | frontier | ends | labels (bench.plans)")
    parser.add_argument("--requests", type=int, default=10, help="timed requests per plan and rate")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--confirm", type=int, default=10, help="extra requests for the plans near the best")
    parser.add_argument(
        "--warm-each", type=int, default=1, help="untimed requests before each timed one (interleaving cools caches)"
    )
    parser.add_argument("--prune-factor", type=float, default=3.0, help="0 measures every plan at every rate")
    parser.add_argument("--robot-cpu", type=float, default=50.0, help="robot's CPU cap, percent of one core")
    parser.add_argument(
        "--cpu-period-us", type=int, default=10_000, help="CFS period of the robot's quota (bench.netns.BenchCgroups)"
    )
    parser.add_argument("--robot-threads", type=int, default=1)
    parser.add_argument("--edge-threads", type=int, default=2)
    parser.add_argument("--image", type=Path, default=REPO / "model_splitter" / "data" / "samples" / "chelsea.jpg")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rates, 3 points, 2 bit widths, 4 requests")
    args = parser.parse_args(argv)
    if args.quick:
        args.rates, args.bits, args.points = "10,200", "4,32", "ends"
        args.requests, args.warmup, args.confirm, args.warm_each = 4, 1, 2, 0
    return args


def _pct(predicted: float, measured: float) -> float:
    return round((predicted - measured) / measured * 100.0, 2)


def _pick(checks: list[PlanCheck], eligible_only: bool) -> Pick | None:
    pool = [c for c in checks if c.eligible or not eligible_only]
    measured = [c for c in pool if c.status == "measured" and c.latency is not None]
    if not pool or not measured:
        return None
    picked = min(pool, key=lambda c: c.predicted_ms)
    best = min(measured, key=lambda c: c.latency.p50 if c.latency else float("inf"))
    assert best.latency is not None
    pick_p50 = picked.latency.p50 if picked.latency is not None else None
    over = _pct(pick_p50, best.latency.p50) if pick_p50 is not None else None
    return Pick(
        pick=picked.key,
        pick_p50_ms=pick_p50,
        best=best.key,
        best_p50_ms=best.latency.p50,
        over_best_pct=over,
        within_target=over is not None and over <= TARGET_PCT,
    )


def _ratio(checks: list[PlanCheck], measured: str, predicted: tuple[str, ...]) -> float | None:
    """Median over measured plans of a measured stage sum against the planner's terms for it (where both > 0)."""
    ratios = []
    for c in checks:
        expected = sum(c.predicted[name] for name in predicted)
        if c.status == "measured" and expected > 0 and c.measured.get(measured, 0.0) > 0:
            ratios.append(c.measured[measured] / expected)
    return round(statistics.median(ratios), 3) if ratios else None


class Validation:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.monotonic()
        stem = f"planner-{dt.date.today().isoformat()}-{socket.gethostname()}"
        self.out: Path = args.out or RESULTS_DIR / f"{stem}.json"
        self.image = args.image.read_bytes()
        self.rates = sorted((float(r) for r in _csv(args.rates)), reverse=True)
        self.config = TestbedConfig(
            robot_cpu_percent=args.robot_cpu,
            cpu_period_us=args.cpu_period_us,
            robot_threads=args.robot_threads,
            edge_threads=args.edge_threads,
        )
        self.results = PlannerValidation(
            started_at=dt.datetime.now().isoformat(timespec="seconds"),
            machine=machine_info(),
            config=ValidationConfig(
                model=args.model,
                input_shape=args.input_shape,
                rates_mbit=sorted(self.rates),
                bits=[int(b) for b in _csv(args.bits)],
                points=args.points,
                requests=args.requests,
                warmup=args.warmup,
                confirm=args.confirm,
                warm_each=args.warm_each,
                prune_factor=args.prune_factor,
                robot_cpu_percent=args.robot_cpu,
                cpu_period_us=args.cpu_period_us,
                robot_threads=args.robot_threads,
                edge_threads=args.edge_threads,
                image=args.image.name,
                image_bytes=len(self.image),
            ),
        )

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {message}", flush=True)

    def save(self) -> None:
        self.results.write(self.out)

    def run(self) -> None:
        with Testbed(self.config) as bed:
            bed.set_rate(None)
            splits = self.deploy(bed)
            for rate in self.rates:
                try:
                    self.at_rate(bed, rate, splits)
                except Exception as exc:  # one rate's failure must not lose the others
                    traceback.print_exc()
                    self.results.errors.append(f"{rate:g} Mbit/s: {type(exc).__name__}: {exc}")
                    bed.print_logs()
                self.save()

    def deploy(self, bed: Testbed) -> dict[str, str]:
        """Register the model, cut and deploy a split per point x bits; plan key -> split id."""
        self.log(f"{self.args.model}: registering, cutting and deploying (link uncapped) ...")
        splits: dict[str, str] = {}
        with inside_netns(bed.names.edge_ns), SplitterControl(bed.splitter_url) as splitter:
            model_id, points = splitter.register(self.args.model, self.args.input_shape)
            self.results.model_id = model_id
            for point in select_points(points, self.args.points):
                for bits in self.results.config.bits:
                    plan = Plan(mode="split", point=point.label, bits=bits)
                    split_id = splitter.create_split(model_id, point.label, bits)
                    splitter.deploy(split_id)
                    splits[plan.key] = split_id
            self.log(f"{len(splits)} splits deployed; profiling robot and edge ...")
            warm = self.plan(splitter.client, {"bandwidth_mbps": 100, "rtt_ms": 1})  # profiles once, cached
            self.results.profiles = {"robot": warm["robot"], "edge": warm["edge"]}
            self.results.notes = warm["notes"]
            self.log(
                f"robot {warm['robot']['provider']} full model {warm['robot']['total_ms']:.1f} ms, "
                f"edge {warm['edge']['provider']} {warm['edge']['total_ms']:.1f} ms"
            )
        self.save()
        return splits

    def plan(self, client: httpx.Client, params: dict[str, float]) -> dict[str, Any]:
        assert self.results.model_id is not None
        response = client.get(f"/api/models/{self.results.model_id}/plan", params=params, timeout=PLAN_TIMEOUT_S)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def at_rate(self, bed: Testbed, rate: float, splits: dict[str, str]) -> None:
        bed.set_rate(rate)
        with inside_netns(bed.names.edge_ns), httpx.Client(base_url=bed.splitter_url) as client:
            probed = self.plan(client, {})  # as a person would call it: the robot probes the link
            rtt = probed["link"]["rtt_ms"]
            nominal = self.plan(client, {"bandwidth_mbps": rate, "rtt_ms": rtt})
        link = probed["link"]
        # The planner ranks every split point; only the selected ones are deployed. Its picks (among eligible
        # plans and among all) are measured whatever they are: deploy them now if needed, with the link uncapped.
        wanted = {probed["pick"]["key"], min(probed["plans"], key=lambda p: p["total_ms"])["key"]}
        missing = [p for p in probed["plans"] if p["key"] in wanted and p["mode"] == "split" and p["key"] not in splits]
        if missing:
            bed.set_rate(None)
            with inside_netns(bed.names.edge_ns), SplitterControl(bed.splitter_url) as splitter:
                for p in missing:
                    self.log(f"{rate:g} Mbit/s: deploying the pick {p['key']}, outside the selected points")
                    splits[p["key"]] = splitter.create_split(self.results.model_id or "", p["split_point"], p["bits"])
                    splitter.deploy(splits[p["key"]])
            bed.set_rate(rate)
        self.log(
            f"{rate:g} Mbit/s: probe {link['bandwidth_mbps']:.2f} Mbit/s, rtt {rtt:.2f} ms; "
            f"pick {probed['pick']['key']} ({probed['pick']['total_ms']:.1f} ms predicted)"
        )
        nominal_totals = {p["key"]: p["total_ms"] for p in nominal["plans"]}
        any_split = next(iter(splits.values()))
        candidates = [p for p in probed["plans"] if p["mode"] != "split" or p["key"] in splits]
        best_predicted = min(p["total_ms"] for p in candidates)
        picks = {probed["pick"]["key"], min(candidates, key=lambda p: p["total_ms"])["key"]}
        factor = self.args.prune_factor
        checks: dict[str, PlanCheck] = {}
        to_measure: list[tuple[Plan, str]] = []
        for p in candidates:
            plan = Plan(mode=p["mode"], point=p["split_point"], bits=p["bits"])
            pruned = factor > 0 and p["total_ms"] > factor * best_predicted and p["key"] not in picks
            checks[p["key"]] = PlanCheck(
                rate_mbit=rate,
                key=p["key"],
                mode=p["mode"],
                point=p["split_point"],
                bits=p["bits"],
                eligible=p["eligible"],
                predicted_ms=p["total_ms"],
                predicted_nominal_ms=nominal_totals[p["key"]],
                predicted={k: p[k] for k in ("robot_ms", "transfer_ms", "rtt_ms", "edge_ms")},
                status="pruned" if pruned else "measured",
                bytes_sent=p["bytes"],
                note=f"predicted > {factor:g} x best predicted ({best_predicted:.0f} ms)" if pruned else "",
            )
            if not pruned:
                to_measure.append((plan, splits.get(p["key"], any_split)))
        self.log(f"{rate:g} Mbit/s: measuring {len(to_measure)} plans, {len(checks) - len(to_measure)} pruned")
        load = os.getloadavg()[0]
        samples = self.measure(bed, to_measure, checks, self.args.requests, self.args.warmup)
        # A second, interleaved round for the contenders (the picks and every plan within 25% of the best p50), so
        # that "pick vs best" rests on more than one noisy median.
        p50 = {key: statistics.median(s.e2e_ms for s in found) for key, found in samples.items()}
        if p50 and self.args.confirm > 0:
            best = min(p50.values())
            contenders = [
                (plan, sid)
                for plan, sid in to_measure
                if plan.key in p50 and (plan.key in picks or p50[plan.key] <= 1.25 * best)
            ]
            self.log(f"{rate:g} Mbit/s: {self.args.confirm} more requests for {len(contenders)} contenders")
            more = self.measure(bed, contenders, checks, self.args.confirm, 0)
            for key, found in more.items():
                samples[key].extend(found)
        for key, found in samples.items():
            self.finish_check(checks[key], found)
        ordered = sorted(checks.values(), key=lambda c: c.predicted_ms)
        self.results.checks.extend(ordered)
        self.results.rates.append(self.summarize(bed, rate, link, ordered, load))

    def measure(
        self, bed: Testbed, plans: list[tuple[Plan, str]], checks: dict[str, PlanCheck], requests: int, warmup: int
    ) -> dict[str, list[Sample]]:
        samples: dict[str, list[Sample]] = {plan.key: [] for plan, _ in plans}
        live = list(plans)
        with inside_netns(bed.names.robot_ns), RobotClient(bed.robot_url, self.image) as robot:

            def one(plan: Plan, split_id: str) -> Sample | None:
                try:
                    return robot.infer(plan, split_id)
                except Exception as exc:  # a timeout is a result too
                    checks[plan.key].status = "failed"
                    checks[plan.key].note = str(exc)[:300]
                    return None

            for plan, split_id in list(live):
                for _ in range(warmup):
                    if one(plan, split_id) is None:
                        live.remove((plan, split_id))
                        break
            for _ in range(requests):
                for plan, split_id in list(live):
                    # Untimed requests first: the previous plan's sessions just evicted this one's weights from the
                    # caches, which a robot that keeps running one plan never sees.
                    found = None
                    for _ in range(1 + self.args.warm_each):
                        found = one(plan, split_id)
                        if found is None:
                            break
                    if found is None:
                        live.remove((plan, split_id))
                    else:
                        samples[plan.key].append(found)
        return {key: found for key, found in samples.items() if found and checks[key].status == "measured"}

    def finish_check(self, check: PlanCheck, samples: list[Sample]) -> None:
        check.latency = summarize([s.e2e_ms for s in samples])
        check.measured = {
            "robot_ms": round(statistics.median(s.robot_ms for s in samples), 3),
            "edge_ms": round(statistics.median(s.edge_ms for s in samples), 3),
            "network_ms": round(statistics.median(s.stages.get("link:network", 0.0) for s in samples), 3),
        }
        for stage in sorted({name for s in samples for name in s.stages}):  # "robot:head", "edge:tail", ...
            check.measured[stage] = round(statistics.median(s.stages.get(stage, 0.0) for s in samples), 3)
        check.bytes_sent = samples[-1].sent
        check.error_pct = _pct(check.predicted_ms, check.latency.p50)
        check.error_nominal_pct = _pct(check.predicted_nominal_ms, check.latency.p50)
        self.log(
            f"  {check.key:22s} predicted {check.predicted_ms:8.1f} ms, measured p50 {check.latency.p50:8.1f} ms "
            f"({check.error_pct:+.0f}%)"
        )

    def summarize(
        self, bed: Testbed, rate: float, link: dict[str, Any], checks: list[PlanCheck], load: float
    ) -> RateSummary:
        goodput = None
        try:
            with inside_netns(bed.names.robot_ns):
                goodput = link_goodput(None, bed.names.edge_ns, EDGE_IP, rate)
        except Exception as exc:
            self.results.errors.append(f"goodput at {rate:g} Mbit/s: {exc}")
        errors = [abs(c.error_pct) for c in checks if c.error_pct is not None]
        nominal = [abs(c.error_nominal_pct) for c in checks if c.error_nominal_pct is not None]
        summary = RateSummary(
            rate_mbit=rate,
            goodput_mbit=goodput,
            probe_throughput_mbps=link["bandwidth_mbps"],
            probe_rtt_ms=link["rtt_ms"],
            eligible=_pick(checks, eligible_only=True),
            any_plan=_pick(checks, eligible_only=False),
            measured=sum(c.status == "measured" for c in checks),
            pruned=sum(c.status == "pruned" for c in checks),
            median_abs_error_pct=round(statistics.median(errors), 2) if errors else None,
            max_abs_error_pct=round(max(errors), 2) if errors else None,
            median_abs_error_nominal_pct=round(statistics.median(nominal), 2) if nominal else None,
            load_avg=round(load, 2),
            robot_ratio=_ratio(checks, "robot_ms", ("robot_ms",)),
            edge_ratio=_ratio(checks, "edge_ms", ("edge_ms",)),
            network_ratio=_ratio(checks, "network_ms", ("transfer_ms", "rtt_ms")),
        )
        self.log(
            f"{rate:g} Mbit/s: measured / predicted: robot x{summary.robot_ratio}, edge x{summary.edge_ratio}, "
            f"network x{summary.network_ratio} (load {load:.2f})"
        )
        for label, pick in (("eligible", summary.eligible), ("any plan", summary.any_plan)):
            if pick is not None:
                self.log(
                    f"{rate:g} Mbit/s ({label}): pick {pick.pick} p50 {pick.pick_p50_ms} ms, best measured "
                    f"{pick.best} {pick.best_p50_ms} ms: {pick.over_best_pct}% over (target <= {TARGET_PCT:g}%)"
                )
        return summary

    def finish(self) -> Path:
        errors = [abs(c.error_pct) for c in self.results.checks if c.error_pct is not None]
        self.results.median_abs_error_pct = round(statistics.median(errors), 2) if errors else None
        within = [r.eligible.within_target for r in self.results.rates if r.eligible is not None]
        self.results.picks_within_target = f"{sum(within)}/{len(within)} rates"
        self.results.finished_at = dt.datetime.now().isoformat(timespec="seconds")
        self.results.duration_s = round(time.monotonic() - self.started, 1)
        self.results.complete = not self.results.errors
        self.save()
        return plot(self.results, self.out.with_suffix(".png"))


def plot(results: PlannerValidation, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    rate_list = sorted({c.rate_mbit for c in results.checks})
    cmap = plt.get_cmap("viridis")
    colours = {rate: cmap(i / max(len(rate_list) - 1, 1) * 0.9) for i, rate in enumerate(rate_list)}
    measured = [c for c in results.checks if c.latency is not None]
    for rate, colour in colours.items():
        mine = [c for c in measured if c.rate_mbit == rate]
        for eligible, marker in ((True, "o"), (False, "x")):
            chosen = [c for c in mine if c.eligible is eligible]
            left.scatter(
                [c.latency.p50 for c in chosen if c.latency is not None],
                [c.predicted_ms for c in chosen],
                color=colour,
                marker=marker,
                s=22,
                label=f"{rate:g} Mbit/s" + ("" if eligible else " (below floor)"),
            )
    if measured:
        lo = min(min(c.predicted_ms for c in measured), min(c.latency.p50 for c in measured if c.latency)) * 0.8
        hi = max(max(c.predicted_ms for c in measured), max(c.latency.p50 for c in measured if c.latency)) * 1.2
        left.plot([lo, hi], [lo, hi], color="black", lw=1)
        left.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.85", label="within 10%")
        left.set_xlim(lo, hi)
        left.set_ylim(lo, hi)
    left.set_xscale("log")
    left.set_yscale("log")
    for axis in (left.xaxis, left.yaxis):  # plain numbers (20, 50, 100 ms), not 10^x
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())
    left.set_xlabel("measured end-to-end p50, ms")
    left.set_ylabel("predicted by the planner (probed link), ms")
    left.set_title(f"{results.config.model}: predicted vs measured, every measured plan")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)

    rates = sorted(results.rates, key=lambda r: r.rate_mbit)
    xs = range(len(rates))
    groups = (
        ("eligible", -0.3, "tab:blue", "tab:green", "among plans passing the fidelity floor"),
        ("any_plan", 0.1, "lightsteelblue", "lightgreen", "among all plans"),
    )
    for attribute, offset, pick_colour, best_colour, label in groups:
        picks: list[Pick | None] = [getattr(r, attribute) for r in rates]
        right.bar(
            [x + offset for x in xs],
            [p.pick_p50_ms or 0.0 if p else 0.0 for p in picks],
            width=0.2,
            color=pick_colour,
            label=f"the planner's pick, {label}",
        )
        right.bar(
            [x + offset + 0.2 for x in xs],
            [p.best_p50_ms if p else 0.0 for p in picks],
            width=0.2,
            color=best_colour,
            label=f"best measured, {label}",
        )
        for x, p in zip(xs, picks, strict=True):
            if p is None:
                continue
            over = f"{p.over_best_pct:+.1f}%" if p.over_best_pct is not None else "not measured"
            text = f"{p.pick}\n{over}" if p.pick == p.best else f"{p.pick}\n{over}\nbest: {p.best}"
            right.annotate(
                text, (x + offset + 0.1, max(p.pick_p50_ms or 0.0, p.best_p50_ms)), textcoords="offset points",
                xytext=(0, 3), ha="center", fontsize=6,
            )  # fmt: skip
    right.set_xticks(list(xs), [f"{r.rate_mbit:g}" for r in rates])
    right.set_xlabel("link rate, Mbit/s (tc tbf)")
    right.set_ylabel("measured p50, ms")
    right.set_title(f"pick vs best measured (target: within {TARGET_PCT:g}%)")
    right.grid(True, axis="y", alpha=0.3)
    right.legend(fontsize=7)
    machine = results.machine.describe(results.config.robot_cpu_percent)
    fig.text(
        0.01,
        0.005,
        f"{results.started_at[:16]} on {machine}; load avg at start {results.machine.load_start[0]:.1f}; "
        f"{results.config.requests} requests/plan, interleaved; median |error| {results.median_abs_error_pct}%",
        fontsize=7,
        color="0.35",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problems = missing_prerequisites()
    if problems:
        print("error: the robot-edge testbed cannot be built here:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    validation = Validation(args)
    status = 0
    try:
        with signals_raise():
            validation.run()
    except KeyboardInterrupt:
        validation.results.errors.append("interrupted")
        status = 130
    except Exception as exc:
        traceback.print_exc()
        validation.results.errors.append(f"{type(exc).__name__}: {exc}")
        status = 1
    png = validation.finish()
    print(f"results: {validation.out}\nfigure:  {png}")
    for rate in sorted(validation.results.rates, key=lambda r: r.rate_mbit):
        e = rate.eligible
        print(
            f"{rate.rate_mbit:6g} Mbit/s: median |error| {rate.median_abs_error_pct}% (nominal rate: "
            f"{rate.median_abs_error_nominal_pct}%), pick {e.pick if e else '-'} "
            f"{e.over_best_pct if e else '-'}% over best {e.best if e else '-'}"
        )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
