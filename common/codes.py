"""The cut as packed code tensors: what an Open Inference Protocol server (ours, Triton) takes instead of a frame.

The codes of cut tensor ``t`` are one ``uint8`` tensor named ``t.codes`` of shape ``[batch, bytes]``; row ``i`` is
byte for byte the payload a frame would carry for sample ``i`` at the split's own width (packed, never Zstandard
coded: a tensor is its own length). ``model_splitter/quantize/code_graphs.py`` builds the same computation as ONNX
graphs; this module is its numpy twin, for the robot (codes out) and the edge (codes in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from common.errors import FrameMismatch, InvalidArgument
from common.manifest import SplitManifest, TensorSpec
from common.quantization import QUANTIZED_BITS, packed_size
from common.tensor_records import coded_record, codes_record, decode_features, feature_record
from common.wire import TensorRecord

CODES_SUFFIX = ".codes"


def codes_name(tensor: str) -> str:
    return tensor + CODES_SUFFIX


def has_codes(manifest: SplitManifest) -> bool:
    """Splits at 1..8 bits send codes; at 16 and 32 bits they send floats."""
    return manifest.quantization.bits in QUANTIZED_BITS


def codes_width(manifest: SplitManifest, spec: TensorSpec) -> int:
    """Bytes in one sample's row of ``codes_name(spec.name)``."""
    return packed_size(spec.elements, manifest.quantization.bits)


def features_to_codes(manifest: SplitManifest, features: Sequence[npt.ArrayLike]) -> dict[str, npt.NDArray[np.uint8]]:
    """The head's outputs (in the manifest's cut order) as code tensors at the split's width: one row per sample,
    a sample being the tensor as the manifest declares it (``[1, ...]``, or the whole of a tensor without a batch
    axis, such as a detector's ``[boxes, 4]``)."""
    _need_codes(manifest)
    quantization = manifest.quantization
    codes = {}
    for spec, tensor in zip(manifest.cut, features, strict=True):
        clip = quantization.range_of(spec.name)
        samples = _samples(spec, np.asarray(tensor))
        records = [
            feature_record(spec.name, sample, quantization.bits, clip, quantization.scheme) for sample in samples
        ]
        rows = [np.frombuffer(record.payload, np.uint8) for record in records]
        codes[codes_name(spec.name)] = np.stack(rows) if rows else np.zeros((0, codes_width(manifest, spec)), np.uint8)
    return codes


def _samples(spec: TensorSpec, tensor: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
    if spec.elements == 0 or tensor.size % spec.elements:
        raise FrameMismatch(
            f"the head's {spec.name!r} has {tensor.size} values, not a whole number of samples of {list(spec.shape)}"
        )
    return [row.reshape(spec.shape) for row in tensor.reshape(-1, spec.elements)]


def codes_to_records(manifest: SplitManifest, codes: Mapping[str, npt.NDArray[np.uint8]]) -> list[TensorRecord]:
    """One sample's code tensors (``[1, bytes]`` each) as the frame records ``encode_features`` would have made
    of its features: same kinds and envelopes, Zstandard-coded where the manifest asks for it."""
    _need_codes(manifest)
    quantization = manifest.quantization
    records = []
    for spec in manifest.cut:
        rows = codes[codes_name(spec.name)]
        if rows.shape[0] != 1:
            raise FrameMismatch(
                f"a frame carries one sample's codes here, {codes_name(spec.name)!r} has {rows.shape[0]}"
            )
        clip = quantization.range_of(spec.name)
        record = codes_record(
            spec.name, (1, *spec.shape[1:]), quantization.bits, clip, quantization.scheme, rows[0].tobytes()
        )
        records.append(coded_record(record) if quantization.entropy == "zstd" else record)
    return records


def codes_to_features(
    manifest: SplitManifest, codes: Mapping[str, npt.NDArray[np.uint8]]
) -> dict[str, npt.NDArray[np.float32]]:
    """The tail's float feeds from code tensors; every tensor must be there, ``[batch, bytes]``, one batch for all."""
    _need_codes(manifest)
    expected = {codes_name(spec.name): spec for spec in manifest.cut}
    if set(codes) != set(expected):
        raise FrameMismatch(f"split {manifest.id} takes the code tensors {sorted(expected)}, got {sorted(codes)}")
    batches = {array.shape[0] if array.ndim else -1 for array in codes.values()}
    quantization = manifest.quantization
    features: dict[str, npt.NDArray[np.float32]] = {}
    for name, spec in expected.items():
        array = codes[name]
        width = codes_width(manifest, spec)
        if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != width or len(batches) != 1:
            raise FrameMismatch(
                f"{name!r} is {array.dtype} {list(array.shape)}; it must be uint8 [batch, {width}] (the packed "
                f"{quantization.bits}-bit codes of one {list(spec.shape[1:])} sample a row), one batch for all"
            )
        clip = quantization.range_of(spec.name)
        sample_shape = tuple(spec.shape)
        rows = [
            codes_record(spec.name, sample_shape, quantization.bits, clip, quantization.scheme, row.tobytes())
            for row in array
        ]
        decoded = [decode_features(manifest, [record])[spec.name] for record in rows]
        features[spec.name] = np.concatenate(decoded) if decoded else np.zeros((0, *spec.shape[1:]), dtype=np.float32)
    return features


def _need_codes(manifest: SplitManifest) -> None:
    if not has_codes(manifest):
        raise InvalidArgument(
            f"split {manifest.id} sends {manifest.quantization.bits}-bit floats: it has no codes; send the cut "
            "tensors as floats"
        )
