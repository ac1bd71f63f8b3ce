"""``make bench`` / ``make bench-quick``: every measurement of the issue, one results file, its figures.

Phases, in order (``--phases`` picks some):

quant       quantize+pack and unpack+dequantize GB/s beside np.copy (bench/quant_speed.py's method)
loopback    the three services on 127.0.0.1, uncapped, against the same split in one process
link        what a raw TCP stream gets through tbf at each rate
latency     on the testbed: all-robot, all-edge and the split plans at each rate, p50/p90, bytes, prediction
throughput  on the testbed, link uncapped: 1, 4, 16 robots posting frames to the edge at once

The results file is rewritten after every measurement (``complete: false`` until the end), so a run that dies or
is stopped keeps what it measured. Exit status 2 when the testbed cannot be built (not root, no iproute2, no cpu
cgroup): a benchmark that cannot run must not look like one that passed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.control import SplitterControl
from bench.inprocess import InProcessPipeline, loopback_overhead, quant_speeds
from bench.measure import CAMERA_CLIENT, RobotClient, edge_throughput, link_goodput, measure, plan_run
from bench.netns import BenchCgroups, TestbedUnavailable, inside_netns, missing_prerequisites
from bench.plans import ALL_EDGE, ALL_ROBOT, best_plans, hopeless, predicted_ms, select_points, split_plans
from bench.plots import plot_all
from bench.report import render
from bench.schema import BenchResults, LinkCheck, ModelInfo, Plan, PlanRun, RunConfig, machine_info
from bench.testbed import EDGE_IP, Names, Testbed, TestbedConfig, make_cgroups, signals_raise
from common.sessions import SessionOptions

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
PHASES = ("quant", "loopback", "link", "latency", "throughput")
TESTBED_PHASES = ("link", "latency", "throughput")

FULL = {
    "models": "resnet18,resnet50,mobilenet_v2",
    "rates": "2,10,50,200",
    "bits": "2,4,8",
    "points": "frontier",
    "requests": 30,
    "warmup": 3,
    "clients": "1,4,16",
    "loopback_models": "resnet18,resnet50",
    "spinning": "both",
    "loopback_channels": "websocket,http",
    "loopback_requests": 60,
}
QUICK = {
    "models": "resnet18",
    "rates": "10,200",
    "bits": "4",
    "points": "ends",
    "requests": 10,
    "warmup": 2,
    "clients": "1,4",
    "loopback_models": "resnet18",
    "spinning": "off",
    "loopback_channels": "websocket",
    "loopback_requests": 10,
}


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CI variant: resnet18, 2 rates, 3 points, 4 bits")
    parser.add_argument("--models", help=f"comma list (default {FULL['models']})")
    parser.add_argument("--rates", help=f"Mbit/s, comma list (default {FULL['rates']})")
    parser.add_argument("--bits", help=f"comma list (default {FULL['bits']})")
    parser.add_argument("--points", help="all | frontier | ends | comma list of labels (default frontier)")
    parser.add_argument("--requests", type=int, help="timed requests per plan and rate (default 30)")
    parser.add_argument("--warmup", type=int, help="discarded requests before them (default 3)")
    parser.add_argument("--clients", help="concurrent robots for the edge throughput (default 1,4,16)")
    parser.add_argument("--loopback-models", help="models of the loopback overhead (default resnet18,resnet50)")
    parser.add_argument("--spinning", choices=("off", "on", "both"), help="ONNX Runtime spinning for loopback")
    parser.add_argument("--loopback-requests", type=int, help="per side and setting (default 60: a stable median)")
    parser.add_argument("--loopback-channels", help="robot -> edge channels on loopback: websocket,http")
    parser.add_argument("--loopback-threads", type=int, default=2, help="intra-op threads on loopback (2 cores)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma list of {', '.join(PHASES)}")
    parser.add_argument("--robot-cpu", type=float, default=50.0, help="robot's CPU cap, percent of one core")
    parser.add_argument(
        "--cpu-period-us",
        type=int,
        default=10_000,
        help="CFS period; the quota is --robot-cpu %% of it (see bench.netns.BenchCgroups)",
    )
    parser.add_argument(
        "--cpu-shares",
        type=int,
        default=32768,
        help="cgroup weight of the benchmark's processes, 1024 = one ordinary process (see bench.netns.BenchCgroups)",
    )
    parser.add_argument("--robot-threads", type=int, default=1, help="robot intra-op threads (it has < 1 core)")
    parser.add_argument("--edge-threads", type=int, default=2)
    parser.add_argument("--burst", default="32kbit", help="tbf burst")
    parser.add_argument("--tbf-latency", default="50ms", help="tbf latency (queue length)")
    parser.add_argument(
        "--prune-factor",
        type=float,
        default=3.0,
        help="skip a plan predicted this many times slower than the best measured at that rate (0: measure everything)",
    )
    parser.add_argument("--throughput-requests", type=int, default=0, help="per client (default: 64 total, >= 4)")
    parser.add_argument("--input-shape", default=None, help="registration input shape, e.g. 1,3,224,224")
    parser.add_argument("--image", type=Path, default=REPO / "model_splitter" / "data" / "samples" / "chelsea.jpg")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/<date>-<host>)")
    parser.add_argument("--plots-dir", type=Path, default=None)
    parser.add_argument("--budget-min", type=float, default=0.0, help="stop starting new split plans after this")
    parser.add_argument("--keep-data", action="store_true", help="keep the services' data dirs and logs")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _stem(quick: bool) -> str:
    stamp = f"{dt.date.today().isoformat()}-{socket.gethostname()}"
    return f"quick-{stamp}" if quick else stamp


class Run:
    """One benchmark run: its arguments, the results so far, and where they go."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.monotonic()
        self.phases = set(_csv(args.phases))
        unknown = self.phases - set(PHASES)
        if unknown:
            raise SystemExit(f"unknown phase(s): {', '.join(sorted(unknown))}")
        self.stem = _stem(args.quick)
        self.out: Path = args.out or RESULTS_DIR / f"{self.stem}.json"
        default_plots = RESULTS_DIR / "tmp" / self.stem if args.quick else self.out.parent
        self.plots_dir: Path = args.plots_dir or default_plots
        self.image = args.image.read_bytes()
        self.testbed_config = TestbedConfig(
            robot_cpu_percent=args.robot_cpu,
            cpu_period_us=args.cpu_period_us,
            cpu_shares=args.cpu_shares,
            burst=args.burst,
            tbf_latency=args.tbf_latency,
            robot_threads=args.robot_threads,
            edge_threads=args.edge_threads,
            keep_data=args.keep_data,
        )
        self.cgroups: BenchCgroups | None = None
        self.rates = sorted((float(r) for r in _csv(args.rates)), reverse=True)  # fastest first: see latency()
        self.results = BenchResults(
            started_at=dt.datetime.now().isoformat(timespec="seconds"),
            machine=machine_info(),
            config=RunConfig(
                kind="quick" if args.quick else "full",
                models=_csv(args.models),
                rates_mbit=sorted(self.rates),
                bits=[int(b) for b in _csv(args.bits)],
                points=args.points,
                requests=args.requests,
                warmup=args.warmup,
                robot_cpu_percent=args.robot_cpu,
                cpu_period_us=args.cpu_period_us,
                cpu_shares=args.cpu_shares,
                robot_threads=args.robot_threads,
                edge_threads=args.edge_threads,
                burst=args.burst,
                tbf_latency=args.tbf_latency,
                prune_factor=args.prune_factor,
                image=args.image.name,
                image_bytes=len(self.image),
                clients=[int(c) for c in _csv(args.clients)],
                loopback_models=_csv(args.loopback_models),
                loopback_threads=args.loopback_threads,
                loopback_channels=_csv(args.loopback_channels),
                camera_client=CAMERA_CLIENT,
            ),
        )

    def save(self) -> None:
        self.results.write(self.out)

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {message}", flush=True)

    def over_budget(self) -> bool:
        budget: float = self.args.budget_min
        return budget > 0 and time.monotonic() - self.started > budget * 60

    # --- phases -----------------------------------------------------------------------------------------------

    def quant(self) -> None:
        self.results.quant = quant_speeds()
        for q in self.results.quant:
            self.log(
                f"codec {q.shape} {q.bits} bits: quantize+pack {q.quant_pack_gbps:.2f} GB/s, "
                f"unpack+dequantize {q.unpack_dequant_gbps:.2f} GB/s, copy {q.copy_gbps:.1f} GB/s"
            )
        self.save()

    def loopback(self) -> None:
        spins = {"off": [False], "on": [True], "both": [False, True]}[self.args.spinning]
        for channel in self.results.config.loopback_channels:
            for spinning in spins:
                found = loopback_overhead(
                    self.results.config.loopback_models,
                    self.image,
                    self.args.loopback_requests or self.args.requests,
                    self.args.warmup,
                    self.args.loopback_threads,
                    spinning,
                    channel,
                )
                for o in found:
                    self.log(
                        f"loopback {o.model} {o.plan.key} {channel} spinning {'on' if spinning else 'off'}: "
                        f"HTTP {o.http.p50:.1f} ms / in-process {o.in_process.p50:.1f} ms = {o.ratio:.3f}"
                    )
                self.results.loopback.extend(found)
                self.save()

    def testbed(self) -> None:
        self.log(f"building the testbed (robot capped at {self.args.robot_cpu:g}% of one core) ...")
        with Testbed(self.testbed_config, cgroups=self.cgroups) as bed, inside_netns(bed.names.robot_ns):
            # From here this thread (and every thread it starts) talks from inside the robot's namespace.
            if "link" in self.phases:
                for rate in self.rates:
                    bed.set_rate(rate)
                    goodput = link_goodput(None, bed.names.edge_ns, EDGE_IP, rate)
                    self.results.link.append(LinkCheck(rate_mbit=rate, goodput_mbit=goodput))
                    self.log(f"link at {rate:g} Mbit/s: TCP goodput {goodput:.1f} Mbit/s")
                self.save()
            for i, model in enumerate(self.results.config.models):
                if i > 0:
                    bed.restart_runtime()
                try:
                    self.model(bed, model)
                except Exception as exc:  # one model's failure must not lose the others' numbers
                    traceback.print_exc()
                    self.results.errors.append(f"{model}: {type(exc).__name__}: {exc}")
                    bed.print_logs()
                self.save()
            if bed.cgroups is not None:
                self.results.robot_cpu_stat = bed.cgroups.robot_stat()

    def model(self, bed: Testbed, model: str) -> None:
        bed.set_rate(None)  # bundles travel over the same veth: deploy uncapped
        self.log(f"{model}: registering, cutting and deploying ...")
        bits = self.results.config.bits
        with SplitterControl(bed.splitter_url) as splitter:
            model_id, points = splitter.register(model, self.args.input_shape)
            selected = select_points(points, self.args.points)
            info = ModelInfo(name=model, model_id=model_id, points=points, selected=[p.label for p in selected])
            plans = split_plans(selected, bits)
            for plan in plans:
                assert plan.point is not None and plan.bits is not None
                split_id = splitter.create_split(model_id, plan.point, plan.bits)
                splitter.deploy(split_id)
                info.splits[plan.key] = split_id
            self.results.models.append(info)
            self.save()
            frame_plan = Plan(mode="split", point=selected[len(selected) // 2].label, bits=4 if 4 in bits else bits[0])
            frame = b""
            if "throughput" in self.phases:
                split_id = info.splits[frame_plan.key]
                head, tail = splitter.halves(split_id)
                options = SessionOptions(providers=("cpu",), intra_op_threads=self.args.edge_threads)
                frame = InProcessPipeline(splitter.manifest(split_id), head, tail, options).frame(self.image)
        self.log(f"{model}: {len(points)} split points, measuring {len(selected)}: {', '.join(info.selected)}")
        if "latency" in self.phases:
            self.latency(bed, info, plans)
        if "throughput" in self.phases:
            bed.set_rate(None)
            for clients in self.results.config.clients:
                per_client = self.args.throughput_requests or max(4, 64 // clients)
                found = edge_throughput(bed.edge_url, model, frame_plan, frame, clients, per_client)
                self.results.edge_throughput.append(found)
                self.log(
                    f"{model} edge, {clients} clients: {found.requests_per_s:.1f} req/s, p50 "
                    f"{found.p50_ms:.1f} ms, p99 {found.p99_ms:.1f} ms"
                )
            self.save()

    def latency(self, bed: Testbed, info: ModelInfo, plans: list[Plan]) -> None:
        any_split = next(iter(info.splits.values()))
        args, model = self.args, info.name
        with RobotClient(bed.robot_url, self.image) as robot:

            def one(plan: Plan, split_id: str, rate: float) -> PlanRun:
                bed.set_rate(rate)
                try:
                    samples, link = measure(robot, plan, split_id, args.requests, args.warmup, bed.link_counters)
                except Exception as exc:  # a timeout at 2 Mbit/s is a result too, not the end of the run
                    run = PlanRun(model=model, rate_mbit=rate, plan=plan, status="failed", note=str(exc)[:300])
                    self.log(f"{model} {rate:g} Mbit/s {plan.key}: FAILED {exc}")
                else:
                    run = plan_run(model, rate, plan, samples, link)
                    self.log(_describe(run))
                self.results.runs.append(run)
                self.save()
                return run

            # The baselines first at every rate: they are what a split plan must beat to be worth measuring.
            for rate in self.rates:
                for plan in (ALL_ROBOT, ALL_EDGE):
                    one(plan, any_split, rate)
            for plan in plans:
                if self.over_budget():
                    self.results.errors.append(f"{model}: time budget spent before {plan.key}")
                    self.log(f"{model}: time budget spent, skipping the remaining split plans")
                    break
                reference: PlanRun | None = None  # its compute, measured at the fastest rate
                for rate in self.rates:
                    if reference is not None and reference.robot_ms is not None and reference.edge_ms is not None:
                        nbytes = reference.bytes_sent + reference.bytes_received
                        predicted = predicted_ms(reference.robot_ms + reference.edge_ms, nbytes, rate)
                        best = self._best_p50(model, rate)
                        if hopeless(predicted, best, args.prune_factor):
                            self.results.runs.append(_pruned(reference, rate, predicted, best, args.prune_factor))
                            continue
                    run = one(plan, info.splits[plan.key], rate)
                    if reference is None and run.status == "measured":
                        reference = run

    def _best_p50(self, model: str, rate: float) -> float | None:
        found = [
            r.latency.p50
            for r in self.results.runs
            if r.model == model and r.rate_mbit == rate and r.status == "measured" and r.latency is not None
        ]
        return min(found) if found else None

    def finish(self) -> list[Path]:
        self.results.best = best_plans(self.results.runs)
        self.results.machine.load_end = os.getloadavg()
        self.results.finished_at = dt.datetime.now().isoformat(timespec="seconds")
        self.results.duration_s = round(time.monotonic() - self.started, 1)
        self.save()
        return plot_all(self.results, self.plots_dir, self.stem)


def _pruned(reference: PlanRun, rate: float, predicted: float, best: float | None, factor: float) -> PlanRun:
    return PlanRun(
        model=reference.model,
        rate_mbit=rate,
        plan=reference.plan,
        status="pruned",
        bytes_sent=reference.bytes_sent,
        bytes_received=reference.bytes_received,
        robot_ms=reference.robot_ms,
        edge_ms=reference.edge_ms,
        predicted_ms=round(predicted, 3),
        note=f"predicted {predicted:.0f} ms > {factor:g} x best measured {best or 0:.0f} ms at this rate",
    )


def _describe(run: PlanRun) -> str:
    assert run.latency is not None
    ratio = f", x{run.overhead_ratio:.2f} of predicted" if run.overhead_ratio is not None else ""
    if run.link_drops:
        ratio += f", {run.link_drops:.1f} packets dropped/request"
    return (
        f"{run.model} {run.rate_mbit:g} Mbit/s {run.plan.key}: p50 {run.latency.p50:.1f} ms, p90 "
        f"{run.latency.p90:.1f} ms, {run.bytes_sent:,} B sent (robot {run.robot_ms:.0f} ms, edge "
        f"{run.edge_ms:.0f} ms{ratio})"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run(args)
    if run.phases & set(TESTBED_PHASES):
        problems = missing_prerequisites()
        if problems:
            print("error: the robot-edge testbed cannot be built here:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 2
    phases: list[tuple[str, Callable[[], None]]] = [("quant", run.quant), ("loopback", run.loopback)]
    if run.phases & set(TESTBED_PHASES):
        phases.append(("testbed", run.testbed))
    status = 0
    try:
        with signals_raise():
            if not missing_prerequisites():
                # Before anything starts, so the loopback stack and the testbed's edge are born weighted too.
                try:
                    run.cgroups = make_cgroups(Names.for_pid(os.getpid()).tag, run.testbed_config)
                    run.cgroups.enter()
                except TestbedUnavailable as exc:
                    if run.phases & set(TESTBED_PHASES):
                        raise
                    print(f"warning: measuring without the CPU weight: {exc}", file=sys.stderr)
            for name, phase in phases:
                if name == "testbed" or name in run.phases:
                    run.log(f"phase {name}")
                    phase()
        run.results.complete = not run.results.errors
    except KeyboardInterrupt:
        run.results.errors.append("interrupted")
        print("\ninterrupted; the testbed is gone, partial results kept", file=sys.stderr)
        status = 130
    except TestbedUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        run.results.errors.append(str(exc))
        status = 2
    finally:
        if run.cgroups is not None:
            run.cgroups.remove()
    figures = run.finish()
    print(render(run.results))
    run.log(f"results: {run.out}")
    for figure in figures:
        run.log(f"figure: {figure}")
    if run.results.errors and status == 0:
        print("errors:\n  " + "\n  ".join(run.results.errors), file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
