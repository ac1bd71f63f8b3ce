"""Fidelity as a person sees it: the split's answers against the float model's, per the model's task.

Top-1 agreement and output cosine compare raw outputs; for a detector or a segmenter the answer is boxes or a
class map, and those are compared here, image by image, with the same post-processing robot and edge run
(``common.postprocess``) and the same judgement ``POST /api/infer`` reports (``agreement.agrees``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.manifest import TaskFidelity
from common.model_io import Postprocessing
from common.postprocess import OutputLayout, answers
from common.postprocess.agreement import agrees, detection_recovery, mask_agreement, tensor_agreement
from common.postprocess.segmentation import class_maps

Outputs = Sequence[np.ndarray]


def task_fidelity(
    post: Postprocessing, layout: OutputLayout, reference: Sequence[Outputs], found: Sequence[Outputs]
) -> TaskFidelity | None:
    """Compare per image (``reference[i]`` and ``found[i]``: every output of image i); None for a classifier, whose
    answer top-1 agreement already measures."""
    if post.task == "classification" or not reference:
        return None
    pairs = [(answers(r, post, layout)[0], answers(f, post, layout)[0]) for r, f in zip(reference, found, strict=True)]
    agreement = round(float(np.mean([agrees(r, f) for r, f in pairs])), 6)
    if post.task == "detection":
        measured = [detection_recovery(r.detections, f.detections) for r, f in pairs]
        with_boxes = [iou for (_, iou), (r, _) in zip(measured, pairs, strict=True) if r.detections]
        return TaskFidelity(
            task="detection",
            agreement=agreement,
            detection_recovery=round(float(np.mean([share for share, _ in measured])), 6),
            detection_mean_iou=round(float(np.mean(with_boxes)), 6) if with_boxes else None,
            reference_boxes=sum(len(r.detections) for r, _ in pairs),
        )
    if post.task == "segmentation":
        maps = [mask_agreement(class_maps(r[0])[0], class_maps(f[0])[0]) for r, f in zip(reference, found, strict=True)]
        return TaskFidelity(
            task="segmentation",
            agreement=agreement,
            pixel_agreement=round(float(np.mean([same for same, _ in maps])), 6),
            mean_iou=round(float(np.mean([miou for _, miou in maps])), 6),
        )
    differences = [tensor_agreement(list(r), list(f))[1] for r, f in zip(reference, found, strict=True)]
    return TaskFidelity(task="raw", agreement=agreement, max_abs_diff=float(max(differences)))


def per_image(outputs: Outputs, count: int) -> list[list[np.ndarray]] | None:
    """Image i's outputs from outputs batched over ``count`` images; None when an output has no such batch axis
    (a torchvision detector's boxes: then each image must run alone)."""
    arrays = [np.asarray(o) for o in outputs]
    if any(a.ndim == 0 or a.shape[0] != count for a in arrays):
        return None
    return [[a[i : i + 1] for a in arrays] for i in range(count)]
