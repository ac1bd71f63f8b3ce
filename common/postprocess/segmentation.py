"""A segmenter's output as a class map: a PNG of class ids and the share of pixels per class."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from common.errors import UnprocessableModel
from common.postprocess.answers import ClassShare, SegmentationMap
from common.postprocess.classification import label_of

# Pixels of the image the model never saw (cropped away by a centre crop) get this id.
UNSEEN = 255
UNSEEN_LABEL = "(outside the model's view)"
MAX_CLASSES = UNSEEN


def class_maps(output: np.ndarray) -> np.ndarray:
    """[N, H, W] uint8 class ids from [N, C, H, W] scores (argmax; one channel: logit > 0), or [N, H, W] ids."""
    scores = np.asarray(output)
    if scores.ndim == 3 and np.issubdtype(scores.dtype, np.integer):
        ids = scores
    elif scores.ndim == 4 and scores.shape[1] == 1:
        ids = (scores[:, 0] > 0).astype(np.int64)
    elif scores.ndim == 4:
        if scores.shape[1] > MAX_CLASSES:
            raise UnprocessableModel(f"a segmenter with {scores.shape[1]} classes: at most {MAX_CLASSES} are served")
        ids = np.argmax(scores, axis=1)
    else:
        raise UnprocessableModel(
            f"a segmenter's first output is [N, classes, H, W] scores or [N, H, W] class ids, this one is "
            f"{list(scores.shape)} {scores.dtype}"
        )
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= MAX_CLASSES):
        raise UnprocessableModel(f"class ids must lie in 0..{MAX_CLASSES - 1}")
    return ids.astype(np.uint8)


def segmentation_map(ids: np.ndarray, labels: list[str] | None) -> SegmentationMap:
    """The answer for one [H, W] class map."""
    counts = np.bincount(ids.ravel(), minlength=1)
    total = max(int(ids.size), 1)
    present = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    return SegmentationMap(
        width=int(ids.shape[1]),
        height=int(ids.shape[0]),
        png_base64=encode_png(ids),
        classes=[
            ClassShare(
                class_id=c,
                label=UNSEEN_LABEL if c == UNSEEN else label_of(labels, c),
                share=round(float(counts[c]) / total, 6),
            )
            for c in present
        ],
    )


def encode_png(ids: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8), mode="L").save(buffer, format="PNG", optimize=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png(text: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(text)), formats=("PNG",)) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)
