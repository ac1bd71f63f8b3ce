"""From a model's outputs to a person's answer, per task: classification, detection, segmentation, raw tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from common.manifest import SplitManifest
from common.model_io import Postprocessing
from common.postprocess.answers import NO_OPTIONS, Answer, DetectionOptions, Prediction
from common.postprocess.classification import top_k
from common.postprocess.detection import detect
from common.postprocess.raw import raw_tensors
from common.postprocess.segmentation import class_maps, segmentation_map

__all__ = ["Answer", "DetectionOptions", "OutputLayout", "Prediction", "answer_batch", "answers", "top_k"]


def answer_batch(
    outputs: Sequence[np.ndarray], manifest: SplitManifest, batch: int = 1, options: DetectionOptions = NO_OPTIONS
) -> list[Answer]:
    """One answer per image of the ``batch`` the model ran, in the model's input pixels (``placement.place`` maps
    them onto the image sent)."""
    layout = OutputLayout([spec.name for spec in manifest.outputs], (manifest.input.shape[2], manifest.input.shape[3]))
    return answers(outputs, manifest.postprocessing, layout, batch, options)


@dataclass(frozen=True)
class OutputLayout:
    """What post-processing needs to know of the model besides its task: output names, input height and width."""

    names: list[str]
    input_hw: tuple[int, int]


def answers(
    outputs: Sequence[np.ndarray],
    post: Postprocessing,
    layout: OutputLayout,
    batch: int = 1,
    options: DetectionOptions = NO_OPTIONS,
) -> list[Answer]:
    names = layout.names
    if post.task == "classification":
        return [Answer(task="classification", predictions=p) for p in top_k(np.asarray(outputs[0]), post)]
    if post.task == "detection":
        assert post.detection is not None  # the manifest's validator holds this
        found = detect(outputs, names, post.detection, post.labels, layout.input_hw, options)
        return [Answer(task="detection", detections=d) for d in found]
    if post.task == "segmentation":
        maps = class_maps(outputs[0])
        return [Answer(task="segmentation", segmentation=segmentation_map(m, post.labels)) for m in maps]
    return [Answer(task="raw", tensors=raw_tensors(outputs, names, i, batch)) for i in range(batch)]
