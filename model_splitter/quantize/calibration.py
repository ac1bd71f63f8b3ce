"""Calibration: clip ranges for the cut tensors, estimated from the activations of real images.

Images: a fitting set for the ranges and a held-out set for the fidelity, never sharing an input
(``quantize.images``).

Activations. One ONNX Runtime session of the full model, with every cut tensor of every split point added as an
extra graph output, so one pass over the images yields every split point's activations and the float model's
outputs at once (in several passes only if they would not fit in ``ACTIVATION_BUDGET_BYTES``).

Range estimators, per tensor (or per channel, axis 1) and bit width. A tensor whose calibration values are all
>= 0 (post-ReLU) gets ``lo = 0``; a signed one gets both ends estimated.

* ``fixed``: ``default_ranges.default_clip``: the bounds the graph proves (ReLU6 [0, 6]), 32 on an unproved side.
* ``percentile``: the 99.99th percentile (and the 0.01th for signed tensors), zero kept inside the range.
* ``mse``: a grid search for the range with the least squared quantization error at that bit width, on a histogram
  of at most ``MAX_SAMPLES`` values that keeps each bin's count and mean (so a bin's error is exact whenever the
  bin falls to one code): a geometric grid of clip points, refined around the best; signed tensors alternate
  between hi and lo twice.
* ``aciq`` (Banner et al., "Post training 4-bit quantization of convolutional networks"): fit a Laplace and a
  Gaussian, keep the fit with the better likelihood, and clip at the alpha that minimises the closed-form clipping
  plus rounding error at that bit width: symmetric tensors ``mean +- alpha`` with alpha ~ {2: 2.83b, 3: 3.89b,
  4: 5.03b, 5: 6.2b, 6: 7.41b, 7: 8.64b, 8: 9.89b} (Laplace, b = mean |x - mean|) or {2: 1.71, 3: 2.15, 4: 2.55,
  5: 2.94, 6: 3.29, 7: 3.61, 8: 3.92} sigma (Gaussian). A non-negative tensor is clipped to [0, alpha] with the fit
  made on its positive part (exponential / half-normal); a one-sided range spends all its codes on one side, so its
  alpha is the symmetric one of bits + 1. Ranges are kept inside the observed [min, max].

Bits 16 and 32 are not quantized; their "range" is the fixed default (the manifest carries one, unused).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from common.errors import InvalidArgument, UnprocessableModel
from common.manifest import TensorRange
from common.quantization import QUANTIZED_BITS, SUPPORTED_BITS
from model_splitter.graph.inputs import real_inputs
from model_splitter.quantize.range_estimators import (
    F64,
    aciq_range,
    fixed_range,
    histogram_of,
    mse_range,
    percentile_range,
    samples_of,
)

Method = Literal["fixed", "percentile", "mse", "aciq"]
METHODS: tuple[Method, ...] = ("fixed", "percentile", "mse", "aciq")
DEFAULT_METHOD: Method = "mse"

ACTIVATION_BUDGET_BYTES = 1 << 30
RUN_BATCH = 16

F32 = npt.NDArray[np.float32]


# --- activations -------------------------------------------------------------------------------------------------


def cpu_session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Calibration shares the splitter's cores with requests (and often robot and edge): no idle spinning.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_batched(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``feeds`` through ``session`` in chunks along axis 0 (one row at a time if the batch axis is fixed)."""
    inputs = {value.name: value for value in session.get_inputs()}
    count = len(next(iter(feeds.values())))
    fixed = any(isinstance(value.shape[0], int) for value in inputs.values() if value.shape)
    step = 1 if fixed else RUN_BATCH
    parts: list[list[np.ndarray]] = []
    for start in range(0, count, step):
        chunk = {name: array[start : start + step] for name, array in feeds.items()}
        try:
            parts.append([np.asarray(out) for out in session.run(None, chunk)])
        except Exception as exc:  # onnxruntime's own error types: this graph cannot take these images one by one
            raise UnprocessableModel(
                f"the calibration images could not be run through this part of the model one sample at a time: "
                f"{str(exc).splitlines()[0][:300]}; pick a split point whose tensors carry the batch first"
            ) from exc
    return [np.concatenate(outs) for outs in zip(*parts, strict=True)]


def _input_name(model: onnx.ModelProto) -> str:
    return real_inputs(model.graph)[0]


def collect_activations(
    model: onnx.ModelProto, tensors: Sequence[str], batch: F32
) -> tuple[list[np.ndarray], dict[str, F32]]:
    """The model's outputs on ``batch`` and the values of ``tensors`` (each (N, ...), float32), in one pass when the
    activations fit in ACTIVATION_BUDGET_BYTES, else in several passes over groups of tensors."""
    wanted = list(dict.fromkeys(tensors))
    outputs = [value.name for value in model.graph.output]
    per_image = _per_image_bytes(model, wanted, batch[:1])
    groups: list[list[str]] = [[]]
    used = 0
    for name in wanted:
        size = per_image.get(name, 0) * len(batch)
        if groups[-1] and used + size > ACTIVATION_BUDGET_BYTES:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += size
    activations: dict[str, F32] = {}
    results: list[np.ndarray] = []
    for group in groups:
        augmented = onnx.ModelProto()
        augmented.CopyFrom(model)
        for name in group:
            if name not in outputs:
                augmented.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        session = cpu_session(augmented)
        values = run_batched(session, {_input_name(model): batch})
        by_name = {out.name: value for out, value in zip(session.get_outputs(), values, strict=True)}
        results = [by_name[name] for name in outputs]
        for name in group:
            activations[name] = np.ascontiguousarray(by_name[name], dtype=np.float32)
    return results, activations


def _per_image_bytes(model: onnx.ModelProto, tensors: list[str], one: F32) -> dict[str, int]:
    from model_splitter.graph.cutting import infer_shapes

    graph = infer_shapes(model, input_shapes={_input_name(model): list(one.shape)})
    sizes: dict[str, int] = {}
    for value in [*graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if value.name in tensors and all(dim.HasField("dim_value") for dim in dims):
            sizes[value.name] = 4 * math.prod(dim.dim_value for dim in dims)
    return sizes


def float32_ranges(lo: F64, hi: F64) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Estimated ranges in float32 (as the wire computes) with lo < hi in every row."""
    lo32 = np.nan_to_num(lo).astype(np.float32)
    hi32 = np.nan_to_num(hi).astype(np.float32)
    width = np.maximum(np.float32(1e-6), np.abs(lo32) * np.float32(1e-5))
    return lo32, np.where(hi32 > lo32, hi32, lo32 + width).astype(np.float32)


def _as_range(name: str, lo: F64, hi: F64, per_channel: bool) -> TensorRange:
    """A manifest range from estimates, in float32 (as the wire computes) and with lo < hi in every channel."""
    lo32, hi32 = float32_ranges(lo, hi)
    if not per_channel:
        return TensorRange(name=name, lo=float(lo32[0]), hi=float(hi32[0]))
    return TensorRange(
        name=name,
        lo=float(lo32.min()),
        hi=float(hi32.max()),
        channel_lo=[float(v) for v in lo32],
        channel_hi=[float(v) for v in hi32],
    )


def estimate_ranges(
    model: onnx.ModelProto,
    tensor: str,
    values: np.ndarray,
    bits_list: Sequence[int],
    method: Method,
    per_channel: bool = False,
) -> dict[int, TensorRange]:
    """The clip range of ``tensor`` for each bit width, from its calibration ``values`` (N, C, ...)."""
    check_method(method, per_channel)
    default = fixed_range(model, tensor)
    out: dict[int, TensorRange] = {}
    quantized = [bits for bits in bits_list if bits in QUANTIZED_BITS]
    for bits in bits_list:
        if bits not in quantized or method == "fixed":
            out[bits] = TensorRange(name=tensor, lo=default[0], hi=default[1])
    if method == "fixed" or not quantized:
        return out
    per_channel = per_channel and np.ndim(values) >= 2  # a tensor without a channel axis gets one range
    samples = samples_of(values, per_channel)
    hist = histogram_of(samples) if method == "mse" else None
    shared = percentile_range(samples) if method == "percentile" else None
    for bits in quantized:
        if shared is not None:
            lo, hi = shared
        elif method == "aciq":
            lo, hi = aciq_range(samples, bits)
        else:
            lo, hi = mse_range(samples, bits, hist)
        out[bits] = _as_range(tensor, lo, hi, per_channel)
    return {bits: out[bits] for bits in bits_list}


def check_method(method: str, per_channel: bool) -> Method:
    for known in METHODS:
        if method == known:
            if per_channel and known == "fixed":
                raise InvalidArgument("per-channel ranges need a data-driven method: percentile, mse or aciq")
            return known
    raise InvalidArgument(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def check_bits(bits_list: Sequence[int]) -> list[int]:
    if not bits_list:
        raise InvalidArgument("give at least one bit width")
    bad = [bits for bits in bits_list if bits not in SUPPORTED_BITS]
    if bad:
        raise InvalidArgument(f"bits must be among {', '.join(map(str, SUPPORTED_BITS))}, got {bad}")
    return sorted(set(bits_list))
