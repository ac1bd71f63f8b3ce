"""What a split's manifest records of its fidelity: how close head -> quantize -> dequantize -> tail stays to the
unsplit float model, and, for detectors, segmenters and raw outputs, how their answers compare
(``common.manifest`` re-exports both)."""

from __future__ import annotations

from pydantic import Field

from common.model_io import Frozen as _Frozen
from common.model_io import Task
from common.model_io import is_none as _is_none


class TaskFidelity(_Frozen):
    """The split's answers against the float model's, per the task (a classifier's is its top-1 agreement)."""

    task: Task
    agreement: float = Field(
        description="share of images whose answer agrees: detection, every float box found again (same class, "
        "IoU >= 0.5) and no other; segmentation, >= 95 % of pixels the same class; raw, output cosine >= 0.99"
    )
    detection_recovery: float | None = Field(
        None, exclude_if=_is_none, description="detection: mean share of the float model's boxes found again"
    )
    detection_mean_iou: float | None = Field(
        None, exclude_if=_is_none, description="detection: mean IoU of the boxes found again"
    )
    reference_boxes: int | None = Field(
        None, exclude_if=_is_none, description="detection: the float model's boxes on the images (0: nothing to find)"
    )
    pixel_agreement: float | None = Field(
        None, exclude_if=_is_none, description="segmentation: mean share of pixels given the float model's class"
    )
    mean_iou: float | None = Field(
        None, exclude_if=_is_none, description="segmentation: mean over images of the per-class IoU with the float map"
    )
    max_abs_diff: float | None = Field(None, exclude_if=_is_none, description="raw: max |split - float| of any output")


class Fidelity(_Frozen):
    """How close head -> quantize -> dequantize -> tail stays to the unsplit float model, on calibration images."""

    top1_agreement: float = Field(description="share of images whose top-1 class equals the float model's, 0..1")
    cosine: float = Field(description="mean cosine similarity of the output vectors with the float model's")
    sqnr_db: float = Field(description="signal to quantization noise of the cut features, dB (capped at 200)")
    images: int = Field(description="how many images were measured (held out from the fitting of the ranges)")
    fit_images: int | None = Field(
        None, exclude_if=_is_none, description="how many other images the ranges were fitted on"
    )
    coded_bytes: int | None = Field(
        None,
        exclude_if=_is_none,
        description="mean payload bytes per image of the cut tensors, Zstandard-coded where that is shorter",
    )
    task: TaskFidelity | None = Field(
        None, exclude_if=_is_none, description="detectors, segmenters, raw outputs: their answers compared"
    )

    @property
    def answer_agreement(self) -> float:
        """The share of images whose answer agrees with the float model's, as the task judges it."""
        return self.task.agreement if self.task is not None else self.top1_agreement

    @property
    def task_name(self) -> str | None:
        return self.task.task if self.task is not None else None
