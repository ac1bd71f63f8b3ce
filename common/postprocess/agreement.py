"""How close one answer is to another (a split's to the unsplit float model's), per task."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.postprocess.answers import Answer, Detection
from common.postprocess.detection import iou_matrix
from common.postprocess.segmentation import decode_png

MATCH_IOU = 0.5
# A segmentation answer agrees when this share of its pixels has the reference's class.
PIXEL_AGREEMENT = 0.95
# Raw tensors agree when their cosine similarity reaches this.
RAW_COSINE = 0.99


def detection_recovery(reference: Sequence[Detection], found: Sequence[Detection]) -> tuple[float, float]:
    """(share of ``reference`` boxes matched by a box of the same class at IoU >= 0.5, mean IoU of the matches).

    Greedy, best reference score first; each found box matches at most once. Nothing to find counts as all found."""
    if not reference:
        return 1.0, 1.0
    ious = iou_matrix(_boxes(reference), _boxes(found))
    same_class = np.asarray([[r.class_id == f.class_id for f in found] for r in reference], dtype=bool)
    ious = np.where(same_class.reshape(ious.shape), ious, 0.0)
    taken = np.zeros(len(found), dtype=bool)
    matched: list[float] = []
    for row in np.argsort([-r.score for r in reference], kind="stable"):
        if not len(found):
            break
        candidates = np.where(taken, -1.0, ious[row])
        best = int(np.argmax(candidates))
        if candidates[best] >= MATCH_IOU:
            taken[best] = True
            matched.append(float(candidates[best]))
    return len(matched) / len(reference), float(np.mean(matched)) if matched else 0.0


def mask_agreement(reference: np.ndarray, found: np.ndarray) -> tuple[float, float]:
    """(share of pixels with the same class, mean IoU over the classes either map has)."""
    if reference.shape != found.shape:
        return 0.0, 0.0
    same = float(np.mean(reference == found)) if reference.size else 1.0
    ious = []
    for class_id in np.union1d(np.unique(reference), np.unique(found)):
        a, b = reference == class_id, found == class_id
        ious.append(float(np.logical_and(a, b).sum()) / max(float(np.logical_or(a, b).sum()), 1.0))
    return same, float(np.mean(ious)) if ious else 1.0


def tensor_agreement(reference: Sequence[np.ndarray], found: Sequence[np.ndarray]) -> tuple[float, float]:
    """(cosine similarity of all values, max |difference|) of two lists of same-shaped tensors."""
    if [np.shape(a) for a in reference] != [np.shape(b) for b in found]:
        return 0.0, float("inf")
    a = np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in reference]) if reference else np.zeros(0)
    b = np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in found]) if found else np.zeros(0)
    if not a.size:
        return 1.0, 0.0
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / norms) if norms > 0 else float(np.array_equal(a, b))
    return cosine, float(np.max(np.abs(a - b)))


def agrees(reference: Answer, answer: Answer) -> bool:
    """Whether ``answer`` gives a person the same answer as ``reference``."""
    if reference.task != answer.task:
        return False
    if reference.task == "classification":
        return (
            bool(reference.predictions)
            and bool(answer.predictions)
            and (reference.predictions[0].index == answer.predictions[0].index)
        )
    if reference.task == "detection":
        recovered, _ = detection_recovery(reference.detections, answer.detections)
        return recovered == 1.0 and len(answer.detections) == len(reference.detections)
    if reference.task == "segmentation":
        if reference.segmentation is None or answer.segmentation is None:
            return False
        same, _ = mask_agreement(
            decode_png(reference.segmentation.png_base64), decode_png(answer.segmentation.png_base64)
        )
        return same >= PIXEL_AGREEMENT
    cosine, _ = tensor_agreement(
        [_array(t.data, t.shape) for t in reference.tensors], [_array(t.data, t.shape) for t in answer.tensors]
    )
    return cosine >= RAW_COSINE


def _boxes(detections: Sequence[Detection]) -> np.ndarray:
    return np.asarray([d.box for d in detections], dtype=np.float64).reshape(-1, 4)


def _array(data: Sequence[float | int | bool | None], shape: list[int]) -> np.ndarray:
    values = np.asarray([np.nan if v is None else v for v in data], dtype=np.float64)
    return values.reshape(shape) if values.size == int(np.prod(shape)) else values
