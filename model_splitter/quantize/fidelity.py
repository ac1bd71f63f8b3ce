"""Fidelity of a split: how close head -> quantize -> dequantize -> tail stays to the unsplit float model.

Three numbers on the held-out images (``common.manifest.Fidelity``; the ranges were fitted on other images,
``quantize.images``):

* ``top1_agreement``: the share of images whose top-1 class (argmax of the first output) is the float model's;
* ``cosine``: the mean, over images, of the cosine similarity between the split's and the float model's output
  vectors (1 when both are zero);
* ``sqnr_db``: the cut features' signal to quantization noise ratio, 10 log10(sum x^2 / sum (x - x_hat)^2) over all
  images and all cut tensors, capped at ``SQNR_CAP_DB`` (no noise at all, as at 32 bits).

Quantization here is the wire's own records (``common.tensor_records``: the scheme, the ranges, the packing), so the
numbers are those robot and edge will produce; the table also measures what Zstandard coding makes of each held-out
image's codes (``coded_bytes``, the mean payload a frame carries). ``measure_fidelity`` checks one cut from
scratch; ``fidelity_table`` does every split point and bit width of a model at once: one pass of the full model over
the fitting and held-out images yields the float outputs and every cut tensor's activations
(``calibration.collect_activations``), the ranges are estimated from the fitting set's, and for each split point
only its tail runs, on the held-out set's dequantized activations of every bit width in one batch. At 32 bits the
tail receives the head's tensor bit for bit, so its output is the float model's up to the head/tail difference
every split is verified against (``verification.check_head_tail``); the table reuses the float outputs there
instead of running the tail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from common.errors import InvalidArgument
from common.manifest import Fidelity, Scheme, TaskFidelity, TensorRange
from common.postprocess import OutputLayout
from common.quantization import QUANTIZED_BITS
from model_splitter.graph.cutting import cut_model, tensor_value_infos
from model_splitter.quantize.bit_allocation import allocated_ranges
from model_splitter.quantize.calibration import (
    DEFAULT_METHOD,
    Method,
    check_bits,
    check_method,
    collect_activations,
    cpu_session,
    estimate_ranges,
    run_batched,
)
from model_splitter.quantize.images import CalibrationImages
from model_splitter.quantize.roundtrip import coded_bytes as coded_bytes
from model_splitter.quantize.roundtrip import roundtrip as roundtrip
from model_splitter.quantize.task_fidelity import per_image, task_fidelity
from model_splitter.records import ModelRecord, Progress, no_progress

SQNR_CAP_DB = 200.0
DEFAULT_BITS: tuple[int, ...] = (2, 4, 8, 16, 32)

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class BitsFidelity:
    bits: int
    ranges: list[TensorRange]  # one per cut tensor, as a manifest carries them
    fidelity: Fidelity


@dataclass(frozen=True)
class PointFidelity:
    label: str
    tensors: list[str]
    by_bits: dict[int, BitsFidelity]


def stack_images(images: Sequence[np.ndarray] | np.ndarray) -> F32:
    """Preprocessed images, each (1, C, H, W) or (C, H, W), as one float32 batch."""
    if isinstance(images, np.ndarray):
        return np.ascontiguousarray(images if images.ndim == 4 else images[None], dtype=np.float32)
    if not len(images):
        raise InvalidArgument("fidelity needs at least one image")
    return np.concatenate([np.asarray(image, dtype=np.float32).reshape(-1, *image.shape[-3:]) for image in images])


def sqnr_db(signal: float, noise: float) -> float:
    """10 log10(signal / noise), within [-SQNR_CAP_DB, SQNR_CAP_DB] (float16 overflow makes the noise infinite)."""
    if noise <= 0.0:
        return SQNR_CAP_DB
    if not math.isfinite(noise) or signal <= 0.0 or signal / noise <= 0.0:
        return -SQNR_CAP_DB if not math.isfinite(noise) else 0.0
    return float(max(min(10.0 * math.log10(signal / noise), SQNR_CAP_DB), -SQNR_CAP_DB))


class _TaskAnswers:
    """The float model's per-image outputs, and the comparison of a tail's answers with them, for the model's task
    (nothing for a classifier: top-1 agreement is its answer)."""

    def __init__(self, model: onnx.ModelProto, record: ModelRecord, batch: F32, outputs: list[np.ndarray]) -> None:
        self.post = record.postprocessing
        self.count = len(batch)
        self.layout = OutputLayout([o.name for o in model.graph.output], (batch.shape[2], batch.shape[3]))
        self.reference: list[list[np.ndarray]] = []
        if self.post.task != "classification":
            rows = per_image(outputs, self.count)
            if rows is None:  # no batch axis in the outputs (a torchvision detector): each image alone
                session = cpu_session(model)
                name = session.get_inputs()[0].name
                rows = [[np.asarray(o) for o in session.run(None, {name: batch[i : i + 1]})] for i in range(self.count)]
            self.reference = rows

    def compare(
        self,
        session: ort.InferenceSession,
        feeds: dict[str, F32],
        outputs: list[np.ndarray],
        run_bits: Sequence[int],
    ) -> tuple[dict[int, TaskFidelity | None], dict[int, float]]:
        """Per bit width: the task's agreement, and (for outputs without a batch axis, whose rows do not line up
        with images) the mean per-image cosine of the first output. ``feeds``/``outputs`` hold the tail's
        inputs/outputs for every bit width, image-major within each."""
        if not self.reference:
            return {}, {}
        rows = per_image(outputs, self.count * len(run_bits))
        unbatched = rows is None
        if rows is None:
            rows = [
                [np.asarray(o) for o in session.run(None, {n: f[i : i + 1] for n, f in feeds.items()})]
                for i in range(self.count * len(run_bits))
            ]
        tasks, cosines = {}, {}
        for k, bits in enumerate(run_bits):
            mine = rows[k * self.count : (k + 1) * self.count]
            tasks[bits] = task_fidelity(self.post, self.layout, self.reference, mine)
            if unbatched:
                pairs = zip(self.reference, mine, strict=True)
                cosines[bits] = float(np.mean([_cosine(ref[0], out[0]) for ref, out in pairs]))
        return tasks, cosines


def _cosine(reference: np.ndarray, output: np.ndarray) -> float:
    """One image's output cosine; outputs of different shapes (another number of boxes) count as orthogonal."""
    if reference.shape != output.shape:
        return 0.0
    if reference.size == 0:
        return 1.0
    return output_agreement(reference.reshape(1, -1), output.reshape(1, -1))[1]


def output_agreement(reference: np.ndarray, outputs: np.ndarray) -> tuple[float, float]:
    """(top-1 agreement, mean cosine similarity) of two batches of outputs."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    out = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    top1 = float(np.mean(np.argmax(ref, axis=1) == np.argmax(out, axis=1)))
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    dots = np.sum(ref * out, axis=1)
    both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(out, axis=1) == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
    # Non-finite outputs (float16 overflow on the wire) count as orthogonal.
    return top1, float(np.mean(np.clip(np.nan_to_num(cosines, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)))


def _energy(x: np.ndarray) -> float:
    """Sum of squares: float32 dot products of blocks (fast), added up in float64 (accurate enough for dB)."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    block = 1 << 16
    with np.errstate(over="ignore", invalid="ignore"):
        value = math.fsum(float(np.dot(flat[i : i + block], flat[i : i + block])) for i in range(0, flat.size, block))
    return value if math.isfinite(value) else math.inf


def _noise(original: np.ndarray, restored: np.ndarray) -> tuple[float, float]:
    """(signal energy, noise energy) of a round trip."""
    with np.errstate(over="ignore", invalid="ignore"):
        diff = np.subtract(restored, original, dtype=np.float32)
    return _energy(original), _energy(diff)


def measure_fidelity(
    model: onnx.ModelProto,
    cut_tensors: list[str],
    bits: int,
    ranges: list[TensorRange],
    images: Sequence[np.ndarray] | np.ndarray,
    scheme: Scheme = "affine",
) -> Fidelity:
    """Run head -> quantize -> dequantize -> tail and the full model on ``images`` (preprocessed, each (1, C, H, W))
    and compare; ``ranges`` names one range per cut tensor (ignored at 16 and 32 bits)."""
    batch = stack_images(images)
    by_name = {entry.name: entry for entry in ranges}
    missing = [name for name in cut_tensors if name not in by_name and bits in QUANTIZED_BITS]
    if missing:
        raise InvalidArgument(f"no clip range for cut tensor(s) {missing}")
    head, tail = cut_model(model, cut_tensors, input_shape=(1, *batch.shape[1:]))
    return parts_fidelity(model, head, tail, bits, ranges, batch, scheme)


def parts_fidelity(
    model: onnx.ModelProto,
    head: onnx.ModelProto,
    tail: onnx.ModelProto,
    bits: int,
    ranges: list[TensorRange],
    batch: F32,
    scheme: Scheme = "affine",
) -> Fidelity:
    """``measure_fidelity`` of a head and tail already cut (a fine-tuned tail is not the model's own)."""
    by_name = {entry.name: entry for entry in ranges}
    head_session = cpu_session(head)
    feed = {value.name: batch for value in head_session.get_inputs()}
    reference = run_batched(cpu_session(model), feed)[0]
    cut = run_batched(head_session, feed)
    signal = noise = 0.0
    restored: dict[str, F32] = {}
    for name, value in zip((out.name for out in head_session.get_outputs()), cut, strict=True):
        restored[name] = roundtrip(value, bits, by_name.get(name), scheme)
        s, n = _noise(value, restored[name])
        signal, noise = signal + s, noise + n
    outputs = run_batched(cpu_session(tail), restored)[0]
    top1, cosine = output_agreement(reference, outputs)
    return Fidelity(top1_agreement=top1, cosine=cosine, sqnr_db=sqnr_db(signal, noise), images=len(batch))


def fidelity_table(
    model: onnx.ModelProto,
    record: ModelRecord,
    images: CalibrationImages,
    bits_list: Sequence[int] = DEFAULT_BITS,
    method: Method = DEFAULT_METHOD,
    per_channel: bool = False,
    scheme: Scheme = "affine",
    labels: Sequence[str] | None = None,
    progress: Progress = no_progress,
    allocated: bool = False,
) -> list[PointFidelity]:
    """Ranges fitted on ``images.fit`` and fidelity measured on ``images.held_out``, for every (floating-point)
    split point of ``record`` (or those named in ``labels``) and every bit width; ``allocated``: a width per
    channel (``quantize.bit_allocation``, affine codes only)."""
    if allocated and scheme != "affine":
        raise InvalidArgument("bits per channel are affine codes: leave the scheme out or make it affine")
    bits_sorted = check_bits(bits_list)
    check_method(method, per_channel)
    fit, held_out = stack_images(images.fit), stack_images(images.held_out)
    points = [
        point for point in record.split_points if point.dtype == "float32" and (labels is None or point.label in labels)
    ]
    tensors = list(dict.fromkeys(name for point in points for name in point.tensors))
    progress("collecting activations")
    outputs, activations = collect_activations(model, tensors, np.concatenate([fit, held_out]))
    fitted = len(fit)
    reference = outputs[0][fitted:]
    answers_of = _TaskAnswers(model, record, held_out, [out[fitted:] for out in outputs])
    progress("estimating ranges")
    ranges = {
        name: allocated_ranges(model, name, activations[name][:fitted], bits_sorted)
        if allocated
        else estimate_ranges(model, name, activations[name][:fitted], bits_sorted, method, per_channel)
        for name in tensors
    }
    measured = {name: activations[name][fitted:] for name in tensors}
    del activations
    count = len(held_out)
    run_bits = [bits for bits in bits_sorted if bits != 32]
    value_infos = tensor_value_infos(model) if run_bits else {}
    table: list[PointFidelity] = []
    for number, point in enumerate(points):
        progress(f"measuring {point.label} ({number + 1}/{len(points)})")
        feeds: dict[str, list[F32]] = {name: [] for name in point.tensors}
        noise = {bits: (0.0, 0.0) for bits in bits_sorted}
        coded: dict[int, int] = {}
        for bits in run_bits:
            signal_sum, noise_sum = 0.0, 0.0
            for name in point.tensors:
                restored = roundtrip(measured[name], bits, ranges[name][bits], scheme)
                s, n = _noise(measured[name], restored)
                signal_sum, noise_sum = signal_sum + s, noise_sum + n
                feeds[name].append(restored)
            noise[bits] = (signal_sum, noise_sum)
            if bits in QUANTIZED_BITS:
                total = sum(coded_bytes(measured[name], bits, ranges[name][bits], scheme) for name in point.tensors)
                coded[bits] = round(total / count)
        split_outputs: np.ndarray | None = None
        task_by_bits: dict[int, TaskFidelity | None] = {}
        unbatched_cosine: dict[int, float] = {}
        if run_bits:
            _, tail = cut_model(model, point.tensors, value_infos, tuple(record.input_shape))
            session = cpu_session(tail)
            stacked = {name: np.concatenate(parts) for name, parts in feeds.items()}
            del feeds
            split_all = run_batched(session, stacked)
            split_outputs = split_all[0]
            task_by_bits, unbatched_cosine = answers_of.compare(session, stacked, split_all, run_bits)
        by_bits: dict[int, BitsFidelity] = {}
        for bits in bits_sorted:
            if bits == 32 or split_outputs is None:
                top1, cosine, sqnr = 1.0, 1.0, SQNR_CAP_DB  # the float outputs themselves (module docstring)
            else:
                at = run_bits.index(bits) * count
                if bits in unbatched_cosine:  # rows are boxes, not images: the task's answer is the agreement
                    task = task_by_bits.get(bits)
                    top1, cosine = (task.agreement if task else 0.0), unbatched_cosine[bits]
                else:
                    top1, cosine = output_agreement(reference, split_outputs[at : at + count])
                sqnr = sqnr_db(*noise[bits])
            fidelity = Fidelity(
                top1_agreement=top1,
                cosine=cosine,
                sqnr_db=sqnr,
                images=count,
                fit_images=fitted,
                coded_bytes=coded.get(bits),
                task=task_by_bits.get(bits),
            )
            by_bits[bits] = BitsFidelity(
                bits=bits, ranges=[ranges[name][bits] for name in point.tensors], fidelity=fidelity
            )
        table.append(PointFidelity(label=point.label, tensors=list(point.tensors), by_bits=by_bits))
    return table
