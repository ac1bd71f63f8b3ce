"""Held-out top-1 agreement of a trained classifier at every cut, by code scheme, range method and bit width, and
what Zstandard coding saves.

``python -m bench.quantization_fidelity`` registers torchvision's ImageNet mobilenet_v2 (real weights, tools/assets)
in a scratch registry and runs the splitter's own calibration (``fidelity_table``) over every split point at 2, 4
and 8 bits for each configuration: the graph's bounds ("fixed") and calibrated MSE ranges, per tensor and per
channel, with the old clip codes and the zero-exact affine codes. Ranges are fitted on the 16 bundled fitting
inputs and agreement is measured on the 32 held-out ones (``model_splitter.quantize.images``). For the served
configuration (affine, MSE per tensor) it then measures, per cut and bit width, the payload per frame packed,
Zstandard-coded (level 1, what the robot sends), zlib-coded (level 1) and the order-0 entropy bound of the code
histogram (what an arithmetic or ANS coder over that histogram could reach at best), and the time to code and
decode one frame's codes. Results: bench/results/quantization-fidelity.json and .png.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from bench.trained import register_trained_mobilenet_v2
from common.entropy import code_payload, decode_payload
from common.manifest import Scheme
from common.quantization import unpack_codes
from common.tensor_records import feature_record
from model_splitter.quantize.calibration import Method, collect_activations
from model_splitter.quantize.fidelity import fidelity_table
from model_splitter.quantize.images import calibration_sets
from model_splitter.records import ModelRecord
from model_splitter.store.registry import Registry
from model_splitter.store.samples import calibration_photos

REPO = Path(__file__).resolve().parents[1]
BITS = (2, 4, 8)
CONFIGS: tuple[tuple[str, Scheme, Method, bool], ...] = (
    ("clip, graph bounds", "clip", "fixed", False),
    ("affine, graph bounds", "affine", "fixed", False),
    ("clip, mse per tensor", "clip", "mse", False),
    ("affine, mse per tensor", "affine", "mse", False),
    ("affine, mse per channel", "affine", "mse", True),
)
SERVED = "affine, mse per tensor"
TENSOR_GROUP = 8


def _entropy_bytes(codes: np.ndarray, bits: int) -> float:
    counts = np.bincount(codes, minlength=1 << bits).astype(np.float64)
    p = counts[counts > 0] / codes.size
    return float(-(p * np.log2(p)).sum() * codes.size / 8)


def _coding_rows(
    model: onnx.ModelProto, record: ModelRecord, table: dict[str, Any], held_out: np.ndarray
) -> list[dict[str, Any]]:
    """Per single-tensor cut and bit width: mean payload bytes packed / zstd / zlib / entropy bound, coding times."""
    points = [p for p in record.split_points if p.dtype == "float32" and len(p.tensors or [p.tensor]) == 1]
    rows = []
    for start in range(0, len(points), TENSOR_GROUP):
        group = points[start : start + TENSOR_GROUP]
        _, activations = collect_activations(model, [p.tensor for p in group], held_out)
        for point in group:
            for bits in BITS:
                clip = table[point.label].by_bits[bits].ranges[0]
                sizes: dict[str, list[float]] = {"packed": [], "zstd": [], "zlib": [], "entropy": []}
                encode_ms, decode_ms = [], []
                for row in activations[point.tensor]:
                    encoded = feature_record(point.tensor, row[None], bits, clip, "affine")
                    packed = bytes(encoded.payload)
                    began = time.perf_counter()
                    coded = code_payload(packed)
                    encode_ms.append((time.perf_counter() - began) * 1e3)
                    began = time.perf_counter()
                    decode_payload(coded, len(packed))
                    decode_ms.append((time.perf_counter() - began) * 1e3)
                    values = unpack_codes(packed, bits, row.size)
                    sizes["packed"].append(len(packed))
                    sizes["zstd"].append(min(len(coded), len(packed)))
                    sizes["zlib"].append(min(len(zlib.compress(packed, 1)), len(packed)))
                    sizes["entropy"].append(_entropy_bytes(values, bits))
                mean = {name: statistics.fmean(values) for name, values in sizes.items()}
                rows.append(
                    {
                        "point": point.label,
                        "bits": bits,
                        "packed_bytes": round(mean["packed"]),
                        "zstd_bytes": round(mean["zstd"]),
                        "zlib_bytes": round(mean["zlib"]),
                        "entropy_bound_bytes": round(mean["entropy"]),
                        "zstd_saving": round(1 - mean["zstd"] / mean["packed"], 4),
                        "zstd_encode_ms_median": round(statistics.median(encode_ms), 4),
                        "zstd_decode_ms_median": round(statistics.median(decode_ms), 4),
                    }
                )
        del activations
    return rows


def run(out: Path) -> dict[str, Any]:
    registry = Registry(Path(tempfile.mkdtemp()) / "registry")
    began = time.perf_counter()
    record = register_trained_mobilenet_v2(registry)
    print(f"registered mobilenet_v2 in {time.perf_counter() - began:.1f} s", flush=True)
    model = onnx.load(str(registry.model_onnx_path(record.id)))
    images = calibration_sets(None, record.preprocessing, calibration_photos())
    results: dict[str, list[dict[str, Any]]] = {}
    tables: dict[str, Any] = {}
    for name, scheme, method, per_channel in CONFIGS:
        began = time.perf_counter()
        table = fidelity_table(model, record, images, BITS, method, per_channel, scheme)
        tables[name] = {row.label: row for row in table}
        results[name] = [
            {
                "point": row.label,
                "bits": bits,
                "top1_agreement": round(row.by_bits[bits].fidelity.top1_agreement, 4),
                "cosine": round(row.by_bits[bits].fidelity.cosine, 5),
                "sqnr_db": round(row.by_bits[bits].fidelity.sqnr_db, 2),
            }
            for row in table
            for bits in BITS
        ]
        print(f"{name}: {len(table)} points in {time.perf_counter() - began:.1f} s", flush=True)
    summary = {
        name: {
            str(bits): {
                "mean_top1": round(statistics.fmean(r["top1_agreement"] for r in rows if r["bits"] == bits), 4),
                "points_at_least_0.99": sum(1 for r in rows if r["bits"] == bits and r["top1_agreement"] >= 0.99),
                "points": sum(1 for r in rows if r["bits"] == bits),
            }
            for bits in BITS
        }
        for name, rows in results.items()
    }
    coding = _coding_rows(model, record, tables[SERVED], images.held_out)
    result = {
        "model": "mobilenet_v2, torchvision IMAGENET1K_V1 weights",
        "images": {"fit": len(images.fit), "held_out": len(images.held_out), "source": "bundled photos"},
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, onnxruntime CPU",
        "summary": summary,
        "fidelity": results,
        "coding": coding,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    for name, by_bits in summary.items():
        print(name, json.dumps(by_bits), flush=True)
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    for name, rows in result["fidelity"].items():
        at4 = [r for r in rows if r["bits"] == 4]
        top.plot(range(len(at4)), [r["top1_agreement"] for r in at4], marker=".", label=name)
    top.set_ylabel("held-out top-1 agreement, 4 bits")
    top.legend(fontsize=8)
    at4 = [r for r in result["coding"] if r["bits"] == 4]
    labels = [r["point"] for r in at4]
    for key in ("packed_bytes", "zstd_bytes", "zlib_bytes", "entropy_bound_bytes"):
        bottom.plot(range(len(at4)), [r[key] for r in at4], marker=".", label=key.replace("_", " "))
    bottom.set_yscale("log")
    bottom.set_ylabel("payload bytes per frame, 4 bits")
    bottom.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    bottom.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "quantization-fidelity.json")
    run(parser.parse_args().out)


if __name__ == "__main__":
    main()
