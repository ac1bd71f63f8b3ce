"""PNG figures of a results file; each says on what machine its numbers were taken.

``python -m bench.plots RESULTS.json [--out DIR]`` redraws them from a saved file.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display in CI or over ssh

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.schema import BenchResults, Plan, PlanRun

BITS_COLOURS = {2: "tab:purple", 4: "tab:blue", 8: "tab:cyan"}
PLAN_COLOURS = {"all-robot": "tab:red", "all-edge": "tab:green"}


def footer(fig: Figure, results: BenchResults) -> None:
    machine = results.machine.describe(results.config.robot_cpu_percent)
    load = results.machine.load_start
    text = (
        f"{results.config.kind} run {results.started_at[:16]} on {machine}; load avg at start "
        f"{load[0]:.1f}; {results.config.requests} requests/plan after {results.config.warmup} warm-up"
    )
    fig.text(0.01, 0.005, text, fontsize=7, color="0.35", ha="left", va="bottom")


def _measured(results: BenchResults) -> list[PlanRun]:
    return [r for r in results.runs if r.status == "measured" and r.latency is not None]


def plot_latency(results: BenchResults, path: Path) -> Path:
    """p50 latency against link rate: the baselines, the best split per bit width, every split faintly."""
    models = [m.name for m in results.models]
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(5.2 * max(len(models), 1), 4.6), squeeze=False)
    runs = _measured(results)
    best = {(b.model, b.rate_mbit): b for b in results.best}
    for ax, model in zip(axes[0], models, strict=False):
        mine = [r for r in runs if r.model == model]
        by_plan: dict[Plan, list[PlanRun]] = defaultdict(list)
        for run in mine:
            by_plan[run.plan].append(run)
        grey_label = "each split plan"
        for plan, plan_runs in by_plan.items():
            if plan.mode == "split":
                plan_runs.sort(key=lambda r: r.rate_mbit)
                xs, ys = [r.rate_mbit for r in plan_runs], [_p50(r) for r in plan_runs]
                ax.plot(xs, ys, color="0.85", lw=0.8, label=grey_label)
                grey_label = "_nolegend_"
        for bits, colour in BITS_COLOURS.items():
            rates, values, labels = [], [], []
            for rate in sorted({r.rate_mbit for r in mine}):
                candidates = [r for r in mine if r.plan.bits == bits and r.rate_mbit == rate]
                if candidates:
                    top = min(candidates, key=_p50)
                    rates.append(rate)
                    values.append(_p50(top))
                    labels.append(top.plan.point or "")
            if rates:
                ax.plot(rates, values, "o-", color=colour, lw=1.6, ms=4, label=f"best split, {bits} bits")
        for mode, colour in PLAN_COLOURS.items():
            plan_runs = sorted(by_plan.get(Plan(mode=mode), []), key=lambda r: r.rate_mbit)
            if plan_runs:
                xs = [r.rate_mbit for r in plan_runs]
                ax.plot(xs, [_p50(r) for r in plan_runs], "s-", color=colour, lw=2, ms=5, label=mode)
                ax.fill_between(
                    xs, [_p50(r) for r in plan_runs], [_p90(r) for r in plan_runs], color=colour, alpha=0.12
                )
        for (m, rate), winner in best.items():
            if m == model:
                ax.plot([rate], [winner.p50_ms], marker="*", color="gold", mec="black", ms=14, zorder=5)
                ax.annotate(
                    winner.plan.key, (rate, winner.p50_ms), textcoords="offset points", xytext=(4, -12), fontsize=7
                )
        _log_axes(ax, sorted({r.rate_mbit for r in mine}))
        ax.set_xlabel("link rate, Mbit/s (tc tbf, both directions)")
        ax.set_ylabel("end-to-end latency p50, ms (band: to p90)")
        ax.set_title(f"{model}: latency by plan (star = best)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    footer(fig, results)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(fig, path)


def plot_bytes(results: BenchResults, path: Path) -> Path:
    """Bytes the robot sends per request: every measured split point at each bit width, beside the JPEG."""
    models = [m.name for m in results.models]
    fig, axes = plt.subplots(len(models) or 1, 1, figsize=(11, 3.4 * max(len(models), 1)), squeeze=False)
    for ax, info in zip(axes[:, 0], results.models, strict=False):
        sent: dict[Plan, int] = {}
        for run in results.runs:
            if run.model == info.name and run.bytes_sent:
                sent.setdefault(run.plan, run.bytes_sent)
        points = [p for p in info.points if p.label in info.selected]
        bits_list = sorted({plan.bits for plan in sent if plan.bits is not None})
        width = 0.8 / max(len(bits_list), 1)
        for j, bits in enumerate(bits_list):
            xs = [i + (j - (len(bits_list) - 1) / 2) * width for i in range(len(points))]
            ys = [sent.get(Plan(mode="split", point=p.label, bits=bits), 0) for p in points]
            ax.bar(xs, ys, width=width, color=BITS_COLOURS.get(bits, "tab:gray"), label=f"split, {bits} bits")
        jpeg = sent.get(Plan(mode="all-edge"))
        if jpeg:
            ax.axhline(jpeg, color=PLAN_COLOURS["all-edge"], ls="--", label=f"all-edge JPEG ({jpeg:,} B)")
        ax.set_yscale("log")
        ax.set_xticks(range(len(points)), [p.label for p in points], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("bytes sent per request")
        ax.set_title(f"{info.name}: bytes on the wire per plan (all-robot sends none)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7)
    footer(fig, results)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(fig, path)


def plot_overhead(results: BenchResults, path: Path) -> Path:
    """Left: HTTP over loopback / one process. Right: measured / (compute + bytes / rate) on the capped link."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    channel_names = {"websocket": "socket", "http": "POST"}
    labels = [
        f"{o.model}\n{channel_names[o.edge_channel]}, spin {'on' if o.spinning else 'off'}" for o in results.loopback
    ]
    ratios = [o.ratio for o in results.loopback]
    colour_of = {
        ("websocket", False): "tab:blue",
        ("http", False): "tab:cyan",
        ("websocket", True): "tab:orange",
        ("http", True): "tab:olive",
    }
    colours = [colour_of[(o.edge_channel, o.spinning)] for o in results.loopback]
    bars = left.bar(range(len(ratios)), ratios, color=colours)
    for bar, o in zip(bars, results.loopback, strict=True):
        left.annotate(
            f"{o.ratio:.3f}\n{o.http.p50:.0f} / {o.in_process.p50:.0f} ms",
            (bar.get_x() + 0.4, o.ratio),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    left.axhline(1.10, color="tab:red", ls="--", label="target 1.10")
    left.axhline(1.0, color="0.3", lw=0.8)
    left.set_xticks(range(len(labels)), labels, fontsize=8)
    left.set_ylim(0.9, max([1.25, *[r * 1.08 for r in ratios]]))
    left.set_ylabel("HTTP p50 / in-process p50")
    left.set_title("loopback, uncapped: three services vs one process")
    left.legend(fontsize=7)
    runs = _measured(results)
    styles = {"all-robot": ("s", ":"), "all-edge": ("^", "--"), "split": ("o", "-")}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, model in zip(colours, [m.name for m in results.models], strict=False):
        for mode, (marker, linestyle) in styles.items():
            points = []
            for rate in sorted({r.rate_mbit for r in runs if r.model == model}):
                found = [r for r in runs if r.model == model and r.rate_mbit == rate and r.plan.mode == mode]
                found = [r for r in found if r.overhead_ratio is not None]
                if found:
                    top = min(found, key=_p50)  # for splits: the best split at this rate
                    assert top.overhead_ratio is not None
                    points.append((rate, top.overhead_ratio))
            if points:
                xs, ys = zip(*points, strict=True)
                right.plot(xs, ys, marker=marker, ls=linestyle, color=colour, label=f"{model} {mode}", lw=1.2)
    right.axhline(1.0, color="0.3", lw=0.8)
    right.set_xscale("log")
    rates = sorted({r.rate_mbit for r in runs})
    right.set_xticks(rates, [f"{r:g}" for r in rates])
    right.set_xlabel("link rate, Mbit/s")
    right.set_ylabel("measured p50 / (compute + bytes / rate)")
    right.set_title("capped link: latency over its physical limit (split: best one)")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=6, ncol=2)
    footer(fig, results)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(fig, path)


def plot_throughput(results: BenchResults, path: Path) -> Path:
    """Left: edge requests/s and latency against concurrent robots. Right: codec GB/s beside np.copy."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    by_model: dict[str, list[tuple[int, float, float, float]]] = defaultdict(list)
    for t in results.edge_throughput:
        by_model[f"{t.model} {t.plan.key}"].append((t.clients, t.requests_per_s, t.p50_ms, t.p99_ms))
    for label, rows in by_model.items():
        rows.sort()
        line = left.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label=f"{label} req/s")[0]
        for clients, rps, p50, p99 in rows:
            left.annotate(
                f"p50 {p50:.0f} / p99 {p99:.0f} ms",
                (clients, rps),
                fontsize=6,
                textcoords="offset points",
                xytext=(3, 4),
                color=line.get_color(),
            )
    left.set_xscale("log", base=2)
    levels = sorted({t.clients for t in results.edge_throughput})
    left.set_xticks(levels, [str(c) for c in levels])
    left.set_xlabel("concurrent robot clients (link uncapped)")
    left.set_ylabel("edge requests/s")
    left.set_title("edge throughput")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7)
    quant = results.quant
    labels = [f"{'x'.join(map(str, q.shape[1:]))}\n{q.bits} bits" for q in quant]
    xs = range(len(quant))
    right.bar([x - 0.27 for x in xs], [q.quant_pack_gbps for q in quant], 0.27, label="quantize + pack")
    right.bar(list(xs), [q.unpack_dequant_gbps for q in quant], 0.27, label="unpack + dequantize")
    right.bar([x + 0.27 for x in xs], [q.copy_gbps for q in quant], 0.27, label="np.copy", color="0.7")
    right.axhline(1.0, color="tab:red", ls="--", label="target 1 GB/s")
    right.set_yscale("log")
    right.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    right.set_xticks(list(xs), labels, fontsize=7)
    right.set_ylabel("GB/s of float32, one core")
    right.set_title("cut-tensor codec throughput")
    right.legend(fontsize=7)
    footer(fig, results)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(fig, path)


def plot_all(results: BenchResults, directory: Path, stem: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if results.runs:
        written.append(plot_latency(results, directory / f"{stem}-latency.png"))
        written.append(plot_bytes(results, directory / f"{stem}-bytes.png"))
    if results.loopback or results.runs:
        written.append(plot_overhead(results, directory / f"{stem}-overhead.png"))
    if results.edge_throughput or results.quant:
        written.append(plot_throughput(results, directory / f"{stem}-throughput.png"))
    return written


def _log_axes(ax: Axes, rates: list[float]) -> None:
    """Log-log with plain numbers (2, 10, 50, 200 and 20, 50, 100 ms), not 10^x."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _p50(run: PlanRun) -> float:
    assert run.latency is not None
    return run.latency.p50


def _p90(run: PlanRun) -> float:
    assert run.latency is not None
    return run.latency.p90


def main() -> None:
    parser = argparse.ArgumentParser(description="Draw the benchmark figures from a results file.")
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="directory (default: beside the results file)")
    args = parser.parse_args()
    results = BenchResults.read(args.results)
    for path in plot_all(results, args.out or args.results.parent, args.results.stem):
        print(path)


if __name__ == "__main__":
    main()
