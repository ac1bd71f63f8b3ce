"""Frames for the edge tests: random features of the tiny split's cut, quantized and framed, posted as robots do."""

from __future__ import annotations

import httpx
import numpy as np

from common.tensor_records import quantized_record
from common.wire import encode_frame
from tests.support import TinySplit
from tools.local_stack import ServiceProcess

# The edge under test refuses frames larger than this (EDGE_MAX_FRAME_BYTES).
MAX_FRAME = 64 * 1024


def features(split: TinySplit, batch: int = 1, seed: int = 0) -> np.ndarray:
    shape = [batch, *split.manifest.cut[0].shape[1:]]
    return np.random.default_rng(seed).uniform(0, 40, size=shape).astype(np.float32)


def frame_for(split: TinySplit, x: np.ndarray, bits: int | None = None, lo: float = 0.0, hi: float = 32.0) -> bytes:
    name = split.manifest.cut[0].name
    record = quantized_record(name, x, bits or split.manifest.quantization.bits, lo, hi)
    return encode_frame(split.manifest.id, [record])


def post(edge: ServiceProcess, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{edge.url}/api/infer", content=body, headers={"content-type": "application/octet-stream"}, timeout=30
    )
