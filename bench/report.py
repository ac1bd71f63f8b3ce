"""Markdown tables of a results file, for the README: ``python -m bench.report RESULTS.json``."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.schema import BenchResults, PlanRun


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def latency_table(results: BenchResults) -> str:
    rates = sorted({r.rate_mbit for r in results.runs})
    lines = [
        _row(["model", "plan", *[f"{r:g} Mbit/s" for r in rates]]),
        _row(["---"] * (2 + len(rates))),
    ]
    best = {(b.model, b.rate_mbit): b for b in results.best}
    for info in results.models:
        model = info.name
        for mode in ("all-robot", "all-edge"):
            cells = []
            for rate in rates:
                run = _find(results.runs, model, rate, mode)
                cells.append(_p50_p90(run) if run is not None else "-")
            lines.append(_row([model, mode, *cells]))
        cells = []
        for rate in rates:
            winner = best.get((model, rate))
            splits = [r for r in results.runs if r.model == model and r.rate_mbit == rate and r.plan.mode == "split"]
            measured = [r for r in splits if r.status == "measured" and r.latency is not None]
            if not measured:
                cells.append("-")
                continue
            top = min(measured, key=lambda r: r.latency.p50 if r.latency else float("inf"))
            cells.append(f"{_p50_p90(top)} `{top.plan.key}`")
        lines.append(_row([model, "best split", *cells]))
        winners = []
        for rate in rates:
            winner = best.get((model, rate))
            winners.append(f"**{winner.plan.key}**" if winner else "-")
        lines.append(_row([model, "winner", *winners]))
    return "\n".join(lines)


def overhead_table(results: BenchResults) -> str:
    lines = [
        _row(
            [
                "model",
                "cut",
                "robot -> edge",
                "spinning",
                "HTTP p50 ms",
                "in-process p50 ms",
                "ratio of p50",
                "ratio of min",
            ]
        ),
        _row(["---"] * 8),
    ]
    for o in results.loopback:
        floor = f"{o.ratio_min:.3f}" if o.ratio_min is not None else "-"
        spinning = "on" if o.spinning else "off"
        cells = [o.model, o.plan.key, o.edge_channel, spinning, f"{o.http.p50:.1f}", f"{o.in_process.p50:.1f}"]
        cells.append(f"**{o.ratio:.3f}**")
        lines.append(_row([*cells, floor]))
    return "\n".join(lines)


def link_ratio_table(results: BenchResults) -> str:
    """Median over plans of measured / (compute + bytes / rate), per model and rate."""
    rates = sorted({r.rate_mbit for r in results.runs})
    lines = [_row(["model", *[f"{r:g} Mbit/s" for r in rates]]), _row(["---"] * (1 + len(rates)))]
    for info in results.models:
        cells = []
        for rate in rates:
            ratios = [
                r.overhead_ratio
                for r in results.runs
                if r.model == info.name and r.rate_mbit == rate and r.status == "measured" and r.overhead_ratio
            ]
            cells.append(f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "-")
        lines.append(_row([info.name, *cells]))
    return "\n".join(lines)


def quant_table(results: BenchResults) -> str:
    lines = [_row(["shape", "bits", "quantize+pack GB/s", "unpack+dequantize GB/s", "np.copy GB/s"])]
    lines.append(_row(["---"] * 5))
    for q in results.quant:
        shape = "x".join(map(str, q.shape))
        lines.append(
            _row([shape, str(q.bits), f"{q.quant_pack_gbps:.2f}", f"{q.unpack_dequant_gbps:.2f}", f"{q.copy_gbps:.1f}"])
        )
    return "\n".join(lines)


def throughput_table(results: BenchResults) -> str:
    lines = [_row(["model", "cut", "robot -> edge", "clients", "requests/s", "p50 ms", "p99 ms"]), _row(["---"] * 7)]
    for t in results.edge_throughput:
        figures = [f"{t.requests_per_s:.1f}", f"{t.p50_ms:.1f}", f"{t.p99_ms:.1f}"]
        lines.append(_row([t.model, t.plan.key, t.channel, str(t.clients), *figures]))
    return "\n".join(lines)


def render(results: BenchResults) -> str:
    machine = results.machine.describe(results.config.robot_cpu_percent)
    sections = [
        ("End-to-end latency p50 / p90 in ms (client to robot to edge and back):", results.runs, latency_table),
        ("Loopback overhead (127.0.0.1, nothing capped):", results.loopback, overhead_table),
        (
            "Capped link, measured p50 / (compute + bytes / rate), median (min-max) over plans:",
            results.runs,
            link_ratio_table,
        ),
        ("Codec throughput, one core:", results.quant, quant_table),
        ("Edge throughput, link uncapped:", results.edge_throughput, throughput_table),
    ]
    parts = [f"Run {results.started_at[:16]} ({results.config.kind}) on {machine}."]
    for title, data, table in sections:
        if data:
            parts.extend(["", title, "", table(results)])
    return "\n".join(parts)


def _find(runs: list[PlanRun], model: str, rate: float, mode: str) -> PlanRun | None:
    for run in runs:
        if run.model == model and run.rate_mbit == rate and run.plan.mode == mode and run.status == "measured":
            return run
    return None


def _p50_p90(run: PlanRun) -> str:
    if run.latency is None:
        return "-"
    return f"{run.latency.p50:.0f} / {run.latency.p90:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Markdown tables of a benchmark results file.")
    parser.add_argument("results", type=Path)
    print(render(BenchResults.read(parser.parse_args().results)))


if __name__ == "__main__":
    main()
