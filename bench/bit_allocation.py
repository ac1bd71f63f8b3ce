"""Whether bits given per channel keep more of the answer than the same bits spread evenly (issue 13, item 4).

``python -m bench.bit_allocation`` registers torchvision's ImageNet mobilenet_v2 (real weights, tools/assets) and,
at every floating-point single-tensor cut with a channel axis, compares at the same payload bytes:

* **uniform**: every channel at ``b`` bits, its own MSE-fitted affine range (what ``per_channel=true`` calibration
  gives);
* **allocated**: each channel at 1..8 bits, chosen by rate-distortion (Auto-Split's Lagrangian, solved greedily:
  start every channel at 1 bit and give the next bit to the channel whose squared error drops most, until the
  channels hold ``b`` bits on average), each at its MSE-fitted range for its own width.

Both fit on the 16 bundled fitting inputs and are judged on the 32 held-out ones (``quantize.images``), by top-1
agreement with the float model. The quantizer is the wire's own (``quantize.fidelity.roundtrip``, affine codes,
allocated widths as wire kind 8: common/mixed_widths.py), and the allocation is the one a split gets with
``"allocation": "rate-distortion"`` (model_splitter/quantize/bit_allocation.py). Results:
bench/results/bit-allocation.json and .png.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from bench.agreement_plot import Panel, agreement_figure, save_result
from bench.trained import register_trained_mobilenet_v2
from model_splitter.graph.cutting import cut_model
from model_splitter.quantize.bit_allocation import allocate, channel_ranges, distortion, restored
from model_splitter.quantize.calibration import cpu_session, run_batched
from model_splitter.quantize.fidelity import output_agreement
from model_splitter.quantize.images import calibration_sets
from model_splitter.store.registry import Registry
from model_splitter.store.samples import calibration_photos

REPO = Path(__file__).resolve().parents[1]
AVERAGES = (2, 4)
STYLES = (("uniform", "o--"), ("allocated", "o-"))
F32 = npt.NDArray[np.float32]


def measure_point(model: onnx.ModelProto, tensor: str, fit_in: F32, held_in: F32, reference: F32) -> dict[str, Any]:
    head, tail = cut_model(model, [tensor], input_shape=(1, *fit_in.shape[1:]))
    head_session, tail_session = cpu_session(head), cpu_session(tail)
    feed_name = head_session.get_inputs()[0].name
    fit = run_batched(head_session, {feed_name: fit_in})[0]
    held = run_batched(head_session, {feed_name: held_in})[0]
    tail_input = tail_session.get_inputs()[0].name
    ranges = channel_ranges(fit)
    table = distortion(fit, ranges)
    row: dict[str, Any] = {"tensor": tensor, "channels": int(fit.shape[1])}
    for average in AVERAGES:
        widths = allocate(table, average)
        for name, chosen in (("uniform", np.full(fit.shape[1], average)), ("allocated", widths)):
            outputs = run_batched(tail_session, {tail_input: restored(held, chosen, ranges)})[0]
            top1, cosine = output_agreement(reference, outputs)
            error = float(np.square(restored(held, chosen, ranges) - held, dtype=np.float64).mean())
            row[f"{name}_{average}"] = {"top1": round(top1, 4), "cosine": round(cosine, 4), "mse": error}
        row[f"widths_{average}"] = {str(b): int(np.sum(widths == b)) for b in range(1, 9) if np.any(widths == b)}
    return row


def run(out: Path) -> dict[str, Any]:
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        registry = Registry(Path(scratch))
        record = register_trained_mobilenet_v2(registry)
        model = onnx.load(str(registry.model_onnx_path(record.id)))
        images = calibration_sets(None, record.preprocessing, calibration_photos())
        session = cpu_session(model)
        reference = run_batched(session, {session.get_inputs()[0].name: images.held_out})[0]
        rows = []
        for point in record.split_points:
            if point.dtype != "float32" or len(point.tensors) != 1 or len(point.shape) < 2 or point.shape[1] < 2:
                continue
            row = {"point": point.label} | measure_point(model, point.tensor, images.fit, images.held_out, reference)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = _summary(rows)
    result = {
        "model": "mobilenet_v2, torchvision IMAGENET1K_V1 weights",
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, onnxruntime CPU",
        "images": {"fit": 16, "held_out": 32},
        "summary": summary,
        "points": rows,
        "seconds": round(time.perf_counter() - began, 1),
    }
    save_result(out, result, plot)
    print(json.dumps(summary), flush=True)
    return result


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def top1(row: dict[str, Any], name: str, average: int) -> float:
        return float(row[f"{name}_{average}"]["top1"])

    out: dict[str, Any] = {}
    for average in AVERAGES:
        out[str(average)] = {
            name: {
                "mean_top1": round(statistics.fmean(top1(r, name, average) for r in rows), 4),
                "points_at_least_0.99": sum(1 for r in rows if top1(r, name, average) >= 0.99),
            }
            for name in ("uniform", "allocated")
        } | {
            "points_better": sum(1 for r in rows if top1(r, "allocated", average) > top1(r, "uniform", average)),
            "points_worse": sum(1 for r in rows if top1(r, "allocated", average) < top1(r, "uniform", average)),
            "median_mse_ratio": round(
                statistics.median(
                    r[f"allocated_{average}"]["mse"] / max(r[f"uniform_{average}"]["mse"], 1e-30) for r in rows
                ),
                4,
            ),
        }
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    rows = result["points"]
    panels = [
        Panel(
            f"{average} bits per value on average (same bytes)",
            [r["point"] for r in rows],
            {name: ([r[f"{name}_{average}"]["top1"] for r in rows], style) for name, style in STYLES},
        )
        for average in AVERAGES
    ]
    title = f"Per-channel bit allocation vs uniform, mobilenet_v2 — {result['machine']}"
    agreement_figure(path, panels, "held-out top-1 agreement with the float model", title, fontsize=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bit-allocation.json")
    args = parser.parse_args()
    run(args.out)


if __name__ == "__main__":
    main()
