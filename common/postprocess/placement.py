"""Answers in the model's input pixels, moved onto the image the person sent (through crop, stretch or letterbox)."""

from __future__ import annotations

import numpy as np

from common.imaging import Geometry
from common.postprocess.answers import Answer, Detection
from common.postprocess.segmentation import UNSEEN, decode_png, segmentation_map


def place(answer: Answer, geometry: Geometry, labels: list[str] | None) -> Answer:
    if answer.detections:
        return answer.model_copy(update={"detections": [_place_box(d, geometry) for d in answer.detections]})
    if answer.segmentation is not None:
        ids = _place_map(decode_png(answer.segmentation.png_base64), geometry)
        return answer.model_copy(update={"segmentation": segmentation_map(ids, labels)})
    return answer


def _place_box(detection: Detection, geometry: Geometry) -> Detection:
    x1, y1, x2, y2 = detection.box
    xs, ys = geometry.to_image(np.asarray([x1, x2]), np.asarray([y1, y2]))
    return detection.model_copy(update={"box": [round(float(v), 2) for v in (xs[0], ys[0], xs[1], ys[1])]})


def _place_map(ids: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Nearest-neighbour: each image pixel takes the class of the input pixel its centre lands on."""
    height, width = ids.shape
    x = (np.arange(geometry.width) + 0.5) * geometry.scale_x + geometry.offset_x
    y = (np.arange(geometry.height) + 0.5) * geometry.scale_y + geometry.offset_y
    cols, rows = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    inside = (rows[:, None] >= 0) & (rows[:, None] < height) & (cols[None, :] >= 0) & (cols[None, :] < width)
    placed = ids[np.clip(rows, 0, height - 1)[:, None], np.clip(cols, 0, width - 1)[None, :]]
    return np.where(inside, placed, np.uint8(UNSEEN)).astype(np.uint8)
