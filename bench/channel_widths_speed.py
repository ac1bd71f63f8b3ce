"""What a width per channel costs the robot and the edge: kind 8 records against kind 7 at the same average bits.

``python -m bench.channel_widths_speed`` times, on one core, encoding a ReLU'd cut tensor into its frame record
(quantize + pack) and decoding it (unpack + dequantize) for wire kind 7 (every channel at 4 bits) and kind 8
(a quarter of the channels at 2 bits, a quarter at 6, the rest at 4: the same bytes), median of 51 runs, at shapes
of mobilenet_v2's cuts (56x56 and 112x112 blocks are whole bytes, the packer's fast path; 7x7 is not), in numpy
and, where the code graphs take the layout, in ONNX Runtime (``quantize/code_graphs.py``, one thread). Results:
bench/results/channel-widths-speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from common.codes import codes_name
from common.errors import InvalidArgument
from common.manifest import Quantization, TensorRange, TensorSpec
from common.tensor_records import affine_channel_record, decode_record, mixed_record
from model_splitter.quantize.code_graphs import dequantizer_model, quantizer_model

REPO = Path(__file__).resolve().parents[1]
SHAPES: tuple[tuple[int, ...], ...] = ((1, 96, 56, 56), (1, 32, 112, 112), (1, 1280, 7, 7), (1, 1280))
RUNS = 51


def median_ms(fn: Callable[[], object]) -> float:
    fn()
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return round(statistics.median(times) * 1000, 3)


@dataclass(frozen=True)
class _Cut:
    quantization: Quantization
    cut: list[TensorSpec]


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _in_graph(x: np.ndarray, clip: TensorRange, bits: int) -> dict[str, float] | None:
    """(encode, decode) medians of the code graphs for ``clip``'s widths, or None where they do not take it."""
    cut = _Cut(Quantization(bits=bits, ranges=[clip], scheme="affine"), [TensorSpec(name="t", shape=list(x.shape))])
    try:
        quantizer, dequantizer = _session(quantizer_model(cut)), _session(dequantizer_model(cut))
    except InvalidArgument:
        return None
    (codes,) = quantizer.run(None, {"t": x})
    return {
        "encode": median_ms(lambda: quantizer.run(None, {"t": x})),
        "decode": median_ms(lambda: dequantizer.run(None, {codes_name("t"): codes})),
    }


def measure(shape: tuple[int, ...]) -> dict[str, Any]:
    channels = shape[1]
    x = np.maximum(np.random.default_rng(0).standard_normal(shape).astype(np.float32), 0)
    lo, hi = [0.0] * channels, [3.0] * channels
    widths = np.full(channels, 4)
    widths[0::4], widths[1::4] = 2, 6
    clip = TensorRange(name="t", lo=0, hi=3, channel_lo=lo, channel_hi=hi, channel_bits=[int(w) for w in widths])
    uniform, mixed = affine_channel_record("t", x, 4, lo, hi), mixed_record("t", x, clip)
    assert len(bytes(uniform.payload)) == len(bytes(mixed.payload))
    uniform_clip = clip.model_copy(update={"channel_bits": None})
    graphs = {"kind 7": _in_graph(x, uniform_clip, 4), "kind 8": _in_graph(x, clip, 4)}
    return {
        "shape": list(shape),
        "payload_bytes": len(bytes(mixed.payload)),
        "encode_ms": {
            "kind 7": median_ms(lambda: affine_channel_record("t", x, 4, lo, hi)),
            "kind 8": median_ms(lambda: mixed_record("t", x, clip)),
        },
        "decode_ms": {
            "kind 7": median_ms(lambda: decode_record(uniform, (lo, hi))),
            "kind 8": median_ms(lambda: decode_record(mixed, (lo, hi), clip.channel_bits)),
        },
        "in_graph_ms": graphs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "channel-widths-speed.json")
    args = parser.parse_args()
    rows = [measure(shape) for shape in SHAPES]
    for row in rows:
        print(json.dumps(row))
    result = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, numpy, one core", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
