"""Fine-tuning a split's tail for its bit width: a new split, its tail trained, measured against the old one.

The tail learns, by distillation from the float model (``training.distillation``), to answer from the features
the wire delivers at the split's width what the float model answers from the image. The head, the cut, the ranges
and the codes stay the base split's, so the robot sends exactly what it sent; only the tail's weights change
(``training.onnx_module``), so the new tail takes the same inputs and gives the same outputs. Training runs in a
worker process (``training.worker``) on the fitting images and crops of them (the bundled photos, or the uploads'
fitting half: ``quantize.images``); both tails are then measured on the held-out images, and the new split carries
both figures (``fine_tuning.base_fidelity`` and ``verification.fidelity``). The held-out images are other views of
the photos the tail trained on, so both tails are also measured on photos of other scenes that nothing trains or
calibrates on (``store.samples.unseen_photos``): a tail that learnt its few photos rather than its bit width shows
there. ``widths="all"`` trains one tail across the split's width and its alternatives (each measured again); else
the new split keeps only the width it was trained for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx

from common.errors import InvalidArgument, UnprocessableModel
from common.manifest import BitsVariant, Fidelity, FineTuning, SplitManifest, TensorRange, sha256_hex
from common.quantization import QUANTIZED_BITS
from model_splitter.quantize.fidelity import parts_fidelity
from model_splitter.quantize.images import MAX_CALIBRATION_IMAGES, calibration_sets, unseen_batch
from model_splitter.records import Progress, no_progress
from model_splitter.services.splits import save_with_code_graphs
from model_splitter.store.registry import Registry
from model_splitter.store.samples import calibration_photos, unseen_photos
from model_splitter.training.distillation import Schedule
from model_splitter.training.tuning_job import TuningJob
from model_splitter.training.worker import TUNING

Widths = Literal["split", "all"]
DEFAULT_STEPS = 200
MAX_STEPS = 5000
MAX_IMAGES = MAX_CALIBRATION_IMAGES
MAX_LEARNING_RATE = 0.1
DEFAULT_ANCHOR = 100.0
MAX_ANCHOR = 1e4
DEFAULT_LEARNING_RATE = 1e-4
BATCH_SIZE = 16
CROPS_PER_IMAGE = 8


@dataclass(frozen=True)
class FineTuneRequest:
    uploads: list[bytes] = field(default_factory=list)
    steps: int = DEFAULT_STEPS
    learning_rate: float = DEFAULT_LEARNING_RATE
    widths: Widths = "split"
    anchor: float = DEFAULT_ANCHOR

    def check(self) -> None:
        if not 1 <= self.steps <= MAX_STEPS:
            raise InvalidArgument(f"steps must be 1..{MAX_STEPS}, got {self.steps}")
        if not 0.0 < self.learning_rate <= MAX_LEARNING_RATE:
            raise InvalidArgument(f"learning_rate must be in (0, {MAX_LEARNING_RATE}], got {self.learning_rate}")
        if not 0.0 <= self.anchor <= MAX_ANCHOR:
            raise InvalidArgument(f"anchor must be in [0, {MAX_ANCHOR:g}], got {self.anchor}")
        if len(self.uploads) > MAX_IMAGES:
            raise InvalidArgument(f"at most {MAX_IMAGES} images, got {len(self.uploads)}")


def check_tunable(manifest: SplitManifest) -> None:
    """What can be refused before any work: widths without quantization, outputs without a batch axis."""
    if manifest.quantization.bits not in QUANTIZED_BITS:
        raise InvalidArgument(
            f"split {manifest.id} sends {manifest.quantization.bits}-bit floats: there is no quantization error "
            "for a tail to learn; fine-tune a split at 1..8 bits"
        )
    if any(not spec.shape or spec.shape[0] != 1 for spec in manifest.outputs):
        raise UnprocessableModel(
            "fine-tuning needs outputs with a batch axis (one row per image); this model's outputs "
            f"{[spec.shape for spec in manifest.outputs]} mix the images' answers (post-processing inside the graph)"
        )


def fine_tune_split(
    registry: Registry, split_id: str, request: FineTuneRequest, progress: Progress = no_progress
) -> SplitManifest:
    request.check()
    base = registry.get_split(split_id)
    check_tunable(base)
    record = registry.get_model(base.model_id)
    q = base.quantization
    widths = {q.bits: list(q.ranges)}
    if request.widths == "all":
        widths |= {v.bits: list(v.ranges) for v in q.alternatives or [] if v.bits in QUANTIZED_BITS}
    images = calibration_sets(request.uploads or None, record.preprocessing, calibration_photos())
    head_bytes = registry.split_file(split_id, "head.onnx").read_bytes()
    tail_bytes = registry.split_file(split_id, "tail.onnx").read_bytes()
    job = TuningJob(
        model_path=str(registry.model_onnx_path(record.id)),
        head=head_bytes,
        tail=tail_bytes,
        ranges=widths,
        scheme=q.scheme,
        images=np.ascontiguousarray(images.fit),
        sample_bytes=sum(4 * int(np.prod(spec.shape[1:])) for spec in base.cut),
        classifier=record.postprocessing.task == "classification",
        schedule=Schedule(
            steps=request.steps, batch_size=BATCH_SIZE, learning_rate=request.learning_rate, anchor=request.anchor
        ),
        crops_per_image=CROPS_PER_IMAGE,
        threads=max(1, os.cpu_count() or 1),
    )
    outcome = TUNING.run(job, progress)
    progress(f"measuring both tails on {len(images.held_out)} held-out images")
    model = onnx.load(str(registry.model_onnx_path(record.id)))
    head, tail = onnx.load_from_string(head_bytes), onnx.load_from_string(tail_bytes)
    tuned = onnx.load_from_string(outcome.tail)

    def measured(part: onnx.ModelProto, bits: int, ranges: list[TensorRange], like: Fidelity | None) -> Fidelity:
        found = parts_fidelity(model, head, part, bits, ranges, images.held_out, q.scheme)
        if like is None:
            return found
        return found.model_copy(update={"fit_images": like.fit_images, "coded_bytes": like.coded_bytes})

    base_fidelity = measured(tail, q.bits, list(q.ranges), base.verification.fidelity)
    fidelity = measured(tuned, q.bits, list(q.ranges), base.verification.fidelity)
    unseen = unseen_batch(unseen_photos(), record.preprocessing)
    progress(f"measuring both tails on {len(unseen)} inputs from photos of other scenes")
    base_unseen = parts_fidelity(model, head, tail, q.bits, list(q.ranges), unseen, q.scheme)
    tuned_unseen = parts_fidelity(model, head, tuned, q.bits, list(q.ranges), unseen, q.scheme)
    alternatives = [
        BitsVariant(bits=v.bits, ranges=v.ranges, fidelity=measured(tuned, v.bits, list(v.ranges), v.fidelity))
        for v in q.alternatives or []
        if v.bits in widths
    ]
    manifest = base.model_copy(
        update={
            "id": "",
            "tail_sha256": sha256_hex(outcome.tail),
            "quantization": q.model_copy(update={"alternatives": alternatives or None}),
            "verification": base.verification.model_copy(update={"fidelity": fidelity}),
            "code_graphs": None,
            "fine_tuning": FineTuning(
                base_split=base.id,
                bits=sorted(widths),
                steps=request.steps,
                learning_rate=request.learning_rate,
                anchor=request.anchor,
                samples=outcome.samples,
                images=images.source,
                first_loss=outcome.log.first_loss,
                last_loss=outcome.log.last_loss,
                seconds=round(outcome.log.seconds, 1),
                base_fidelity=base_fidelity,
                unseen_fidelity=tuned_unseen,
                base_unseen_fidelity=base_unseen,
            ),
        }
    )
    return save_with_code_graphs(registry, manifest, (head, tuned), (head_bytes, outcome.tail), record, progress)
