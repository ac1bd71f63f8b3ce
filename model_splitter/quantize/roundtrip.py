"""A tensor through the wire and back, as robot and edge will code it: the one quantizer calibration, fidelity and
bit allocation measure with (``common.tensor_records``: the scheme, the ranges, the widths, the packing)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.errors import InvalidArgument
from common.manifest import Scheme, TensorRange
from common.quantization import validate_bits
from common.tensor_records import coded_record, decode_record, feature_record

F32 = npt.NDArray[np.float32]


def roundtrip(x: np.ndarray, bits: int, clip: TensorRange | None, scheme: Scheme = "affine") -> F32:
    """What the edge feeds the tail when the robot sends ``x`` at ``bits`` with ``clip`` in ``scheme``."""
    b = validate_bits(bits)
    array = np.ascontiguousarray(x, dtype=np.float32)
    if b == 32:
        return array
    if b <= 8 and clip is None:
        raise InvalidArgument(f"quantizing at {b} bits needs a clip range")
    record = feature_record("t", array, b, clip or TensorRange(name="t", lo=-1.0, hi=1.0), scheme)
    ranges = (clip.channel_lo, clip.channel_hi) if clip is not None and clip.channel_lo and clip.channel_hi else None
    return decode_record(record, ranges, clip.channel_bits if clip is not None else None)


def coded_bytes(x: np.ndarray, bits: int, clip: TensorRange, scheme: Scheme) -> int:
    """The total payload of ``x``'s images (axis 0) sent one frame each, each Zstandard-coded when that is shorter."""
    total = 0
    for row in np.ascontiguousarray(x, dtype=np.float32):
        record = coded_record(feature_record("t", row[None], bits, clip, scheme))
        total += memoryview(record.payload).nbytes
    return total
