"""What a fine-tuned tail buys at few bits: held-out top-1 agreement of a trained classifier, before and after.

``python -m bench.fine_tuning`` registers torchvision's ImageNet mobilenet_v2 (real weights, tools/assets) in a
scratch registry and, at a spread of cuts (every ``--every``-th split point, and the three best at 2 bits in
bench/results/quantization-fidelity.json), makes the split the API makes (calibrated at creation: MSE per tensor,
affine codes) at 2 and at 4 bits and fine-tunes its tail as ``POST /api/splits/{id}/fine-tune`` does (default
steps and learning rate). It reports, for base and fine-tuned tails, the agreement with the float model on the 32
held-out inputs the service uses (other transforms of the 4 bundled photos) and on photos that neither the ranges
nor the training ever saw (``tools.assets.UNSEEN_PHOTOS``, each as it is, mirrored and its centre: 24 inputs). At
the three best cuts it also trains one tail across 2 and 4 bits. Results: bench/results/fine-tuning.json and .png.
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
import onnx
from PIL import Image, ImageOps

from bench.agreement_plot import Panel, agreement_figure, save_result
from bench.trained import register_trained_mobilenet_v2
from common.imaging import preprocess
from common.manifest import SplitManifest
from model_splitter.quantize.fidelity import parts_fidelity
from model_splitter.records import ModelRecord, SplitRequest
from model_splitter.services.fine_tuning import DEFAULT_ANCHOR, DEFAULT_STEPS, FineTuneRequest, fine_tune_split
from model_splitter.services.splits import create_split
from model_splitter.store.registry import Registry
from tools.assets import UNSEEN_PHOTOS, ensure

REPO = Path(__file__).resolve().parents[1]
QUANTIZATION_RESULTS = REPO / "bench" / "results" / "quantization-fidelity.json"
BITS = (2, 4)


def unseen_batch(record: ModelRecord) -> np.ndarray:
    images = []
    for name in UNSEEN_PHOTOS:
        with Image.open(ensure(name)) as opened:
            photo = opened.convert("RGB")
        width, height = photo.size
        centre = photo.crop((width // 5, height // 5, width - width // 5, height - height // 5))
        images += [photo, ImageOps.mirror(photo), centre]
    return np.concatenate([preprocess(image, record.preprocessing) for image in images]).astype(np.float32)


def best_at_two_bits(count: int) -> list[str]:
    rows = json.loads(QUANTIZATION_RESULTS.read_text())["fidelity"]["affine, mse per tensor"]
    at2 = sorted((r for r in rows if r["bits"] == 2), key=lambda r: (-r["top1_agreement"], -r["cosine"]))
    return [r["point"] for r in at2[:count]]


def _unseen(registry: Registry, model: onnx.ModelProto, manifest: SplitManifest, batch: np.ndarray) -> dict[str, float]:
    head = onnx.load(str(registry.split_file(manifest.id, "head.onnx")))
    tail = onnx.load(str(registry.split_file(manifest.id, "tail.onnx")))
    q = manifest.quantization
    out = {str(q.bits): parts_fidelity(model, head, tail, q.bits, list(q.ranges), batch, q.scheme).top1_agreement}
    for variant in q.alternatives or []:
        fidelity = parts_fidelity(model, head, tail, variant.bits, list(variant.ranges), batch, q.scheme)
        out[str(variant.bits)] = fidelity.top1_agreement
    return out


def _row(
    registry: Registry, model: onnx.ModelProto, base: SplitManifest, tuned: SplitManifest, batch: np.ndarray
) -> dict[str, Any]:
    assert tuned.fine_tuning is not None and tuned.verification.fidelity is not None
    before, after = _unseen(registry, model, base, batch), _unseen(registry, model, tuned, batch)
    bits = str(base.quantization.bits)
    row: dict[str, Any] = {
        "point": base.split_point,
        "bits": base.quantization.bits,
        "held_out_base": round(tuned.fine_tuning.base_fidelity.top1_agreement, 4),
        "held_out_tuned": round(tuned.verification.fidelity.top1_agreement, 4),
        "unseen_base": round(before[bits], 4),
        "unseen_tuned": round(after[bits], 4),
        "train_seconds": tuned.fine_tuning.seconds,
        "samples": tuned.fine_tuning.samples,
        "loss": [round(tuned.fine_tuning.first_loss, 4), round(tuned.fine_tuning.last_loss, 4)],
    }
    for variant, base_variant in zip(
        tuned.quantization.alternatives or [], base.quantization.alternatives or [], strict=True
    ):
        assert variant.fidelity is not None and base_variant.fidelity is not None
        row[f"held_out_base_{variant.bits}b"] = round(base_variant.fidelity.top1_agreement, 4)
        row[f"held_out_tuned_{variant.bits}b"] = round(variant.fidelity.top1_agreement, 4)
        row[f"unseen_base_{variant.bits}b"] = round(before[str(variant.bits)], 4)
        row[f"unseen_tuned_{variant.bits}b"] = round(after[str(variant.bits)], 4)
    return row


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for bits in BITS:
        mine = [r for r in rows if r["bits"] == bits]
        if not mine:
            continue
        out[str(bits)] = {
            key: round(statistics.fmean(r[key] for r in mine), 4)
            for key in ("held_out_base", "held_out_tuned", "unseen_base", "unseen_tuned")
        } | {
            "points": len(mine),
            "tuned_at_least_0.99": sum(1 for r in mine if r["held_out_tuned"] >= 0.99),
            "tuned_at_least_0.95": sum(1 for r in mine if r["held_out_tuned"] >= 0.95),
            "median_train_seconds": statistics.median(r["train_seconds"] for r in mine),
        }
    return out


def run(out: Path, every: int, steps: int, anchor: float) -> dict[str, Any]:
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        registry = Registry(Path(scratch))
        record = register_trained_mobilenet_v2(registry)
        model = onnx.load(str(registry.model_onnx_path(record.id)))
        singles = [p.label for p in record.split_points if p.dtype == "float32" and len(p.tensors or [p.tensor]) == 1]
        best = best_at_two_bits(3)
        points = list(dict.fromkeys([*singles[::every], *best]))
        batch = unseen_batch(record)
        rows, across = [], []
        for point in points:
            for bits in BITS:
                base = create_split(registry, record.id, SplitRequest(split_point=point, bits=bits))
                tuned = fine_tune_split(registry, base.id, FineTuneRequest(steps=steps, anchor=anchor))
                rows.append(_row(registry, model, base, tuned, batch))
                print(json.dumps(rows[-1]), flush=True)
        for point in best:
            base = create_split(registry, record.id, SplitRequest(split_point=point, bits=2, alternatives=[4]))
            tuned = fine_tune_split(registry, base.id, FineTuneRequest(steps=steps, widths="all", anchor=anchor))
            across.append(_row(registry, model, base, tuned, batch))
            print(json.dumps(across[-1]), flush=True)
    result = {
        "model": "mobilenet_v2, torchvision IMAGENET1K_V1 weights",
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch CPU training, onnxruntime CPU",
        "steps": steps,
        "anchor": anchor,
        "images": {"fit": 16, "held_out": 32, "unseen": len(batch), "unseen_photos": UNSEEN_PHOTOS},
        "best_three_at_2_bits": best,
        "summary": _summary(rows),
        "per_width": rows,
        "across_widths": across,
        "seconds": round(time.perf_counter() - began, 1),
    }
    save_result(out, result, plot)
    print(json.dumps(result["summary"]), flush=True)
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    styles = (("held_out_base", "o--"), ("held_out_tuned", "o-"), ("unseen_base", "s--"), ("unseen_tuned", "s-"))
    panels = []
    for bits in BITS:
        rows = [r for r in result["per_width"] if r["bits"] == bits]
        series = {key.replace("_", " "): ([r[key] for r in rows], style) for key, style in styles}
        title = f"{bits} bits, {result['steps']} steps, anchor {result.get('anchor', 0.0):g}"
        panels.append(Panel(title, [r["point"] for r in rows], series))
    title = f"Fine-tuned tails, mobilenet_v2 (ImageNet weights) — {result['machine']}"
    agreement_figure(path, panels, "top-1 agreement with the float model", title)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fine-tuning.json")
    parser.add_argument("--every", type=int, default=6, help="fine-tune at every n-th split point")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--anchor", type=float, default=DEFAULT_ANCHOR, help="the L2-SP weight (0: none)")
    args = parser.parse_args()
    run(args.out, args.every, args.steps, args.anchor)


if __name__ == "__main__":
    main()
