"""A detector's outputs as boxes: decoding each supported layout, then thresholds and class-aware NMS (numpy only).

Boxes come out in the model's input pixels; :mod:`common.postprocess.placement` maps them onto the image sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from common.errors import UnprocessableModel
from common.model_io import DetectionSpec
from common.postprocess.answers import Detection, DetectionOptions
from common.postprocess.classification import label_of

# At most this many candidates, best first, go into NMS (ultralytics caps at 30,000 for a whole batch).
MAX_NMS_CANDIDATES = 5000
PICODET_STRIDES = (8, 16, 32, 64)


@dataclass(frozen=True)
class Candidates:
    """One image's scored boxes before NMS: boxes [K, 4] as x1, y1, x2, y2 in input pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    suppressed: bool = False  # NMS already ran in the graph


@dataclass(frozen=True)
class Thresholds:
    score: float
    iou: float
    max_detections: int
    iou_requested: bool = False  # a graph's own NMS stands unless the request asks for another threshold

    @classmethod
    def of(cls, spec: DetectionSpec, options: DetectionOptions) -> Thresholds:
        return cls(
            score=spec.score_threshold if options.score_threshold is None else options.score_threshold,
            iou=spec.iou_threshold if options.iou_threshold is None else options.iou_threshold,
            max_detections=spec.max_detections if options.max_detections is None else options.max_detections,
            iou_requested=options.iou_threshold is not None,
        )


def detect(
    outputs: Sequence[np.ndarray],
    names: Sequence[str],
    spec: DetectionSpec,
    labels: list[str] | None,
    input_hw: tuple[int, int],
    options: DetectionOptions,
) -> list[list[Detection]]:
    """Detections per image of the batch, best score first."""
    limits = Thresholds.of(spec, options)
    batches = decode(outputs, names, spec, input_hw, limits.score)
    results: list[list[Detection]] = []
    for found in batches:
        keep = select(found, limits)
        results.append(
            [
                Detection(
                    box=[round(float(v), 2) for v in found.boxes[i]],
                    score=round(float(found.scores[i]), 5),
                    label=label_of(labels, int(found.class_ids[i])),
                    class_id=int(found.class_ids[i]),
                )
                for i in keep
            ]
        )
    return results


def decode(
    outputs: Sequence[np.ndarray], names: Sequence[str], spec: DetectionSpec, input_hw: tuple[int, int], floor: float
) -> list[Candidates]:
    """The candidates per image scoring at least ``floor``."""
    if spec.decoder == "boxes":
        return [_graph_boxes(outputs, names, floor)]
    if spec.decoder == "picodet":
        return _picodet(outputs, input_hw, floor)
    (output,) = _single(outputs, spec.decoder)
    if output.ndim != 3:
        raise UnprocessableModel(f"a {spec.decoder} head gives one [N, ..., ...] tensor, this one is {output.shape}")
    rows = np.swapaxes(output, 1, 2) if spec.decoder == "yolov8" else output
    return [_yolo(item, spec.decoder, floor) for item in rows.astype(np.float32, copy=False)]


def select(found: Candidates, limits: Thresholds) -> np.ndarray:
    """Indices kept: over the score threshold, not suppressed by a better box of the same class, best first."""
    order: np.ndarray = np.argsort(-found.scores, kind="stable")
    order = order[found.scores[order] >= limits.score][:MAX_NMS_CANDIDATES]
    if found.suppressed and not limits.iou_requested:
        return order[: limits.max_detections]
    kept = class_aware_nms(found.boxes[order], found.scores[order], found.class_ids[order], limits.iou)
    chosen: np.ndarray = order[kept][: limits.max_detections]
    return chosen


def class_aware_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS within each class; ``boxes`` sorted best first. Returns the kept indices, in that order."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    # Boxes of different classes are moved apart so that one pass never lets them suppress each other.
    span = float(np.max(np.abs(boxes))) + 1.0
    shifted = boxes.astype(np.float64) + (class_ids.astype(np.float64) * 2.0 * span)[:, None]
    areas = np.clip(shifted[:, 2] - shifted[:, 0], 0, None) * np.clip(shifted[:, 3] - shifted[:, 1], 0, None)
    alive = np.ones(len(boxes), dtype=bool)
    kept: list[int] = []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        kept.append(i)
        rest = np.flatnonzero(alive[i + 1 :]) + i + 1
        if len(rest) == 0:
            break
        overlap = _intersection(shifted[i], shifted[rest])
        iou = overlap / np.maximum(areas[i] + areas[rest] - overlap, 1e-9)
        alive[rest[iou > iou_threshold]] = False
    return np.asarray(kept, dtype=np.int64)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [M, 4] with every box of ``b`` [K, 4]."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    overlap = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    result: np.ndarray = overlap / np.maximum(area_a[:, None] + area_b[None, :] - overlap, 1e-9)
    return result


def _intersection(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    result: np.ndarray = width * height
    return result


def _single(outputs: Sequence[np.ndarray], decoder: str) -> tuple[np.ndarray]:
    if len(outputs) < 1:
        raise UnprocessableModel(f"a {decoder} head needs one output tensor, the model has none")
    return (np.asarray(outputs[0]),)


def _corners(centre_boxes: np.ndarray) -> np.ndarray:
    cx, cy, w, h = (centre_boxes[:, i] for i in range(4))
    return np.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), axis=1)


def _yolo(rows: np.ndarray, decoder: str, floor: float) -> Candidates:
    """One image of a YOLO head: rows [A, 4 + C] (v8) or [A, 5 + C] (v5, objectness times class score)."""
    first_class = 4 if decoder == "yolov8" else 5
    if rows.shape[1] <= first_class:
        raise UnprocessableModel(
            f"a {decoder} head has {first_class} box values then one score per class per anchor; this one has "
            f"{rows.shape[1]} values per anchor"
        )
    class_scores = rows[:, first_class:]
    if decoder == "yolov5":
        class_scores = class_scores * rows[:, 4:5]
    class_ids = np.argmax(class_scores, axis=1)
    scores = class_scores[np.arange(len(rows)), class_ids]
    keep = scores >= floor
    return Candidates(_corners(rows[keep, :4]), scores[keep], class_ids[keep])


def _picodet(outputs: Sequence[np.ndarray], input_hw: tuple[int, int], floor: float) -> list[Candidates]:
    """PP-PicoDet: per stride, class scores [N, A, C] (the first half of the outputs) and box distributions
    [N, A, 4 (R + 1)] (the second half), as PaddleDetection exports it without its NMS."""
    arrays = [np.asarray(o, dtype=np.float32) for o in outputs]
    levels = len(arrays) // 2
    if len(arrays) % 2 or not 1 <= levels <= len(PICODET_STRIDES) or any(a.ndim != 3 for a in arrays):
        raise UnprocessableModel(
            "a picodet head gives per stride a [N, anchors, classes] score tensor, then per stride a "
            f"[N, anchors, 4 x bins] box tensor; this model's outputs are {[list(a.shape) for a in arrays]}"
        )
    score_maps = sorted(arrays[:levels], key=lambda a: -a.shape[1])
    box_maps = sorted(arrays[levels:], key=lambda a: -a.shape[1])
    height, width = input_hw
    results: list[Candidates] = []
    for item in range(arrays[0].shape[0]):
        boxes, scores, class_ids = [], [], []
        for stride, score_map, box_map in zip(PICODET_STRIDES, score_maps, box_maps, strict=False):
            centres = _grid_centres(height, width, stride)
            if len(centres) != score_map.shape[1] or box_map.shape[1] != score_map.shape[1]:
                raise UnprocessableModel(
                    f"picodet stride {stride}: {score_map.shape[1]} anchors, but a {height}x{width} input has "
                    f"{len(centres)} at that stride"
                )
            anchor, class_id = np.nonzero(score_map[item] >= floor)  # every class over the floor: multi-label
            distance = _expected_distance(box_map[item][anchor]) * stride
            boxes.append(np.concatenate((centres[anchor] - distance[:, :2], centres[anchor] + distance[:, 2:]), 1))
            scores.append(score_map[item][anchor, class_id])
            class_ids.append(class_id)
        results.append(
            Candidates(
                np.clip(np.concatenate(boxes), 0, [width, height, width, height]),
                np.concatenate(scores),
                np.concatenate(class_ids),
            )
        )
    return results


def _grid_centres(height: int, width: int, stride: int) -> np.ndarray:
    rows, cols = -(-height // stride), -(-width // stride)
    ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return np.stack(((xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride), axis=1)


def _expected_distance(distributions: np.ndarray) -> np.ndarray:
    """GFL's box regression: each side's distance is the expectation of a softmax over R + 1 bins."""
    bins = distributions.reshape(len(distributions), 4, distributions.shape[1] // 4)
    bins = np.exp(bins - bins.max(axis=2, keepdims=True))
    bins /= bins.sum(axis=2, keepdims=True)
    result: np.ndarray = (bins * np.arange(bins.shape[2])).sum(axis=2)
    return result


def _graph_boxes(outputs: Sequence[np.ndarray], names: Sequence[str], floor: float) -> Candidates:
    """torchvision's detectors: boxes [K, 4], scores [K] and labels [K] out of the graph (NMS already in it)."""
    pool = {name: np.asarray(output) for name, output in zip(names, outputs, strict=False)}
    shapes = ", ".join(f"{n} {list(a.shape)} {a.dtype}" for n, a in pool.items())
    # By name where the exporter kept the names, else by what each one looks like, boxes first: a [4, 4] box
    # tensor would otherwise pass for four scores.
    boxes = _take(pool, "boxes", lambda a: a.ndim >= 2 and a.shape[-1] == 4 and np.issubdtype(a.dtype, np.floating))
    labels = _take(pool, "labels", lambda a: np.issubdtype(a.dtype, np.integer))
    scores = _take(pool, "scores", lambda a: np.issubdtype(a.dtype, np.floating))
    if boxes is None or labels is None or scores is None:
        raise UnprocessableModel(
            f"a 'boxes' detector gives boxes [K, 4], scores [K] and integer labels [K]; its outputs are: {shapes}"
        )
    boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise UnprocessableModel(f"{len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels do not match")
    keep = scores >= floor
    return Candidates(boxes[keep].astype(np.float32), scores[keep], labels[keep].astype(np.int64), suppressed=True)


def _take(pool: dict[str, np.ndarray], role: str, fits: Callable[[np.ndarray], bool]) -> np.ndarray | None:
    chosen = next((name for name in pool if role in name.lower()), None)
    if chosen is None:
        chosen = next((name for name, array in pool.items() if fits(array)), None)
    return pool.pop(chosen) if chosen is not None else None
