"""What the edge does with one frame: check it against the split it names, decode, run, post-process."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from common.affine import affine_params
from common.deployments import Deployment, DeploymentSet
from common.errors import FrameMismatch, NotDeployed, PayloadTooLarge
from common.imaging import decode_image, preprocess, release
from common.manifest import SplitManifest
from common.observability import request_id_var
from common.postprocess import DetectionOptions, answer_batch
from common.results import EdgeResult, Mode
from common.tensor_records import decode_features
from common.timing import StageTimer
from common.wire import Frame, TensorKind, TensorRecord, decode_frame
from edge_inference.batcher import BatchedRun, TailBatcher, Ticket


@dataclass(frozen=True)
class FrameLimits:
    """What one frame may cost the edge: its size on the wire, and how many images it batches."""

    max_bytes: int
    max_batch: int


def infer_frame(
    deployments: DeploymentSet,
    data: bytes,
    limits: FrameLimits,
    batcher: TailBatcher,
    options: DetectionOptions | None = None,
    deadline: float | None = None,
) -> EdgeResult:
    """``deadline``: on ``time.monotonic()``'s clock, the time after which the answer is of no use (a frame still
    waiting for its tail then is answered 504 without running)."""
    timer = StageTimer("edge")
    with timer.stage("parse"):
        frame = decode_frame(data, max_bytes=limits.max_bytes)
    features = [record for record in frame.tensors if record.kind != TensorKind.ENCODED_IMAGE]
    batch = max((record.shape[0] for record in features if record.shape), default=1)
    if batch > limits.max_batch:
        raise PayloadTooLarge(
            f"the frame batches {batch} inputs; this edge runs at most {limits.max_batch} per frame "
            "(EDGE_MAX_BATCH): send them in several frames"
        )
    # The frame carries the robot's request id; from here on, the edge's log lines carry it too.
    request_id_var.set(frame.request_id)
    deployment = deployments.get(frame.split_id)
    if len(frame.tensors) == 1 and frame.tensors[0].kind == TensorKind.ENCODED_IMAGE:
        return _run_full_model(deployment, frame, timer, len(data), options or DetectionOptions())
    return _run_tail(deployment, frame, timer, len(data), options or DetectionOptions(), batcher, deadline)


def _run_tail(
    deployment: Deployment,
    frame: Frame,
    timer: StageTimer,
    size: int,
    options: DetectionOptions,
    batcher: TailBatcher,
    deadline: float | None,
) -> EdgeResult:
    manifest = deployment.manifest
    with batcher.incoming(manifest.id) as ticket:
        with timer.stage("dequantize"):
            feeds = decode_features(manifest, _matching_records(manifest, frame))
        run = run_batched(batcher, deployment, feeds, deadline, timer, ticket)
    outputs = run.outputs
    batch = next(iter(feeds.values())).shape[0] if feeds else 1
    result = _finish(deployment, frame, timer, outputs, batch, options, "split", deployment.part.provider, size)
    return result.model_copy(update={"tail_batch": run.batch_rows})


def _run_full_model(
    deployment: Deployment, frame: Frame, timer: StageTimer, size: int, options: DetectionOptions
) -> EdgeResult:
    manifest = deployment.manifest
    if deployment.full is None:
        raise NotDeployed(f"the edge does not hold the full model of split {manifest.id}, so it cannot run all-edge")
    with timer.stage("decode"):
        spec = manifest.preprocessing
        image = decode_image(bytes(frame.tensors[0].payload), spec.color, spec.resize_shorter_to)
    with timer.stage("preprocess"):
        batch = preprocess(image, spec)
        release(image)
    with timer.stage("model"):
        outputs = deployment.full.run({deployment.full.input_names[0]: batch})
    return _finish(deployment, frame, timer, outputs, 1, options, "all-edge", deployment.full.provider, size)


def run_batched(
    batcher: TailBatcher,
    deployment: Deployment,
    feeds: dict[str, np.ndarray],
    deadline: float | None,
    timer: StageTimer,
    ticket: Ticket | None = None,
) -> BatchedRun:
    """The tail on ``feeds`` through the batcher; its wait is the ``batch queue`` stage, the run the ``tail`` one."""
    started = time.perf_counter()
    run = batcher.run(deployment, feeds, deadline, ticket)
    total_ms = (time.perf_counter() - started) * 1000.0
    timer.add("batch queue", run.queue_ms)
    timer.add("tail", max(total_ms - run.queue_ms, 0.0))
    return run


def _finish(
    deployment: Deployment,
    frame: Frame,
    timer: StageTimer,
    outputs: list[np.ndarray],
    batch: int,
    options: DetectionOptions,
    mode: Mode,
    provider: str,
    size: int,
) -> EdgeResult:
    with timer.stage("postprocess"):
        answers = answer_batch(outputs, deployment.manifest, batch, options)
    return EdgeResult(
        split_id=frame.split_id,
        request_id=frame.request_id,
        mode=mode,
        answers=answers,
        predictions=answers[0].predictions if answers else [],
        batch_predictions=[answer.predictions for answer in answers],
        stages=timer.stages,
        provider=provider,
        received_bytes=size,
    )


def _matching_records(manifest: SplitManifest, frame: Frame) -> list[TensorRecord]:
    """The frame's tensors, after checking each one against the cut tensor the manifest declares."""
    expected = manifest.cut
    if len(frame.tensors) != len(expected):
        raise FrameMismatch(
            f"split {manifest.id} cuts {len(expected)} tensor(s), the frame carries {len(frame.tensors)}"
        )
    widths = manifest.quantization.widths()
    bits = frame.tensors[0].bits if frame.tensors else widths[0]
    if bits not in widths:
        shown = f"{widths[0]} bits" if len(widths) == 1 else f"one of {', '.join(map(str, widths))} bits"
        raise FrameMismatch(f"tensor {frame.tensors[0].name!r} arrives at {bits} bits, the split uses {shown}")
    batch_size: int | None = None
    for record, spec in zip(frame.tensors, expected, strict=True):
        if record.name != spec.name:
            raise FrameMismatch(f"frame tensor {record.name!r} is not the cut tensor {spec.name!r} of the split")
        if record.bits != bits:
            raise FrameMismatch(f"tensor {spec.name!r} arrives at {record.bits} bits, the frame's first at {bits}")
        if list(record.shape[1:]) != spec.shape[1:]:
            raise FrameMismatch(
                f"tensor {spec.name!r} has shape {list(record.shape)}, the split expects [batch, "
                + ", ".join(str(d) for d in spec.shape[1:])
                + "]"
            )
        if batch_size is not None and record.shape[0] != batch_size:
            raise FrameMismatch("the tensors of one frame must share one batch size")
        batch_size = record.shape[0]
        if bits <= 8:
            _check_range(manifest, record)
    return list(frame.tensors)


def _check_range(manifest: SplitManifest, record: TensorRecord) -> None:
    quantization = manifest.quantization.at(record.bits)
    expected = quantization.range_of(record.name)
    # Per-channel ranges travel in the manifest only: such a tensor must arrive as a per-channel kind.
    per_channel = expected.channel_lo is not None
    if quantization.scheme == "affine" and expected.channel_bits is not None:
        want = TensorKind.AFFINE_MIXED
    elif quantization.scheme == "affine":
        want = TensorKind.AFFINE_PER_CHANNEL if per_channel else TensorKind.AFFINE
    else:
        want = TensorKind.QUANTIZED_PER_CHANNEL if per_channel else TensorKind.QUANTIZED
    if record.kind is not want:
        raise FrameMismatch(
            f"tensor {record.name!r} arrives as {record.kind.name.lower()} (kind {int(record.kind)}), the split "
            f"quantizes it as {want.name.lower()} (kind {int(want)})"
        )
    if per_channel:
        return
    # The frame carries float32; the manifest's values are compared at that precision.
    if want is TensorKind.AFFINE:
        scale, zero_point = affine_params(expected.lo, expected.hi, quantization.bits)
        if np.float32(record.lo) != np.float32(scale) or record.hi != zero_point:
            raise FrameMismatch(
                f"tensor {record.name!r} arrives with scale {record.lo} and zero point {record.hi}, the split's "
                f"range [{expected.lo}, {expected.hi}] at {quantization.bits} bits gives {scale} and {zero_point}"
            )
        return
    if np.float32(record.lo) != np.float32(expected.lo) or np.float32(record.hi) != np.float32(expected.hi):
        raise FrameMismatch(
            f"tensor {record.name!r} is quantized on [{record.lo}, {record.hi}], "
            f"the split's range is [{expected.lo}, {expected.hi}]"
        )
