"""The images calibration fits ranges on and the different images its fidelity is measured on.

Ranges fitted and judged on the same images flatter themselves (a range that clips nothing of the fitting set can
still clip the next photo), so the two sets never share an input:

* **uploads**: every other image fits (the 1st, 3rd, ...), the others are held out; at least two are needed.
* **the bundled photos** (``model_splitter/data/samples/*.jpg``, 4 photos): each gives 4 fitting variants (itself,
  mirrored left to right, its central 60 %, one corner's 60 %, the corner turning with the photo's index) and 8
  held-out variants made by transforms the fitting set never uses: rotated by +-8 degrees, zoomed to the central
  45 %, 80 % crops anchored at the left and right edges, a 90 % crop from the bottom mirrored, blurred (a third of
  the size and back) and darkened to 70 %. 16 fitting and 32 held-out inputs in all.

Every input goes through the model's own preprocessing. The preprocessed bundled sets are kept per preprocessing
(a few at most: one per registered input layout), so a split created at the default calibration does not decode
and resize 48 photos again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageEnhance, ImageOps

from common.errors import InvalidArgument
from common.imaging import decode_image, preprocess
from common.model_io import Preprocessing

MAX_CALIBRATION_IMAGES = 64
CROP_SHARE = 0.6
ROTATION_DEGREES = 8.0
_CACHE_LIMIT = 8

F32 = npt.NDArray[np.float32]
Variant = Callable[[Image.Image], Image.Image]


@dataclass(frozen=True)
class CalibrationImages:
    fit: F32  # (N, C, H, W): the ranges are estimated on these
    held_out: F32  # (M, C, H, W): fidelity is measured on these
    source: Literal["uploaded", "bundled"]


def _crop(photo: Image.Image, share: float, anchor_x: float, anchor_y: float) -> Image.Image:
    """The ``share`` of each side, placed at (anchor_x, anchor_y) in 0..1 of the free room."""
    width, height = photo.size
    w, h = round(width * share), round(height * share)
    left, top = round((width - w) * anchor_x), round((height - h) * anchor_y)
    return photo.crop((left, top, left + w, top + h))


def _rotated(degrees: float) -> Variant:
    def rotate(photo: Image.Image) -> Image.Image:
        # The central 80 % of a photo rotated by 8 degrees holds no corner filled by the rotation.
        turned = photo.rotate(degrees, resample=Image.Resampling.BILINEAR)
        return _crop(turned, 0.8, 0.5, 0.5)

    return rotate


def _blurred(photo: Image.Image) -> Image.Image:
    width, height = photo.size
    small = photo.resize((max(1, width // 3), max(1, height // 3)), Image.Resampling.BILINEAR)
    return small.resize((width, height), Image.Resampling.BILINEAR)


HELD_OUT_VARIANTS: tuple[tuple[str, Variant], ...] = (
    ("rotated-left", _rotated(ROTATION_DEGREES)),
    ("rotated-right-mirrored", lambda p: ImageOps.mirror(_rotated(-ROTATION_DEGREES)(p))),
    ("zoomed", lambda p: _crop(p, 0.45, 0.5, 0.5)),
    ("left", lambda p: _crop(p, 0.8, 0.0, 0.5)),
    ("right", lambda p: _crop(p, 0.8, 1.0, 0.5)),
    ("bottom-mirrored", lambda p: ImageOps.mirror(_crop(p, 0.9, 0.5, 1.0))),
    ("blurred", _blurred),
    ("darkened", lambda p: ImageEnhance.Brightness(p).enhance(0.7)),
)


def _open(path: Path) -> Image.Image:
    with Image.open(path) as opened:
        return ImageOps.exif_transpose(opened).convert("RGB")


def bundled_images(photos: Sequence[Path]) -> list[tuple[str, Image.Image]]:
    """The fitting set: each bundled photo, mirrored, its centre and one corner (16 from 4 photos)."""
    out: list[tuple[str, Image.Image]] = []
    for number, path in enumerate(photos):
        photo = _open(path)
        corner_x = 0.0 if number % 2 == 0 else 1.0
        corner_y = 0.0 if number % 4 < 2 else 1.0
        out += [
            (path.stem, photo),
            (f"{path.stem}-mirrored", ImageOps.mirror(photo)),
            (f"{path.stem}-centre", _crop(photo, CROP_SHARE, 0.5, 0.5)),
            (f"{path.stem}-corner", _crop(photo, CROP_SHARE, corner_x, corner_y)),
        ]
    return out


def held_out_images(photos: Sequence[Path]) -> list[tuple[str, Image.Image]]:
    """The held-out set: each bundled photo under the 8 transforms the fitting set does not use (32 from 4)."""
    out: list[tuple[str, Image.Image]] = []
    for path in photos:
        photo = _open(path)
        out += [(f"{path.stem}-{name}", variant(photo)) for name, variant in HELD_OUT_VARIANTS]
    return out


def unseen_images(photos: Sequence[Path]) -> list[tuple[str, Image.Image]]:
    """Photos no fitting or training set uses, each as it is, mirrored and its centre (12 from 4)."""
    out: list[tuple[str, Image.Image]] = []
    for path in photos:
        photo = _open(path)
        out += [
            (path.stem, photo),
            (f"{path.stem}-mirrored", ImageOps.mirror(photo)),
            (f"{path.stem}-centre", _crop(photo, CROP_SHARE, 0.5, 0.5)),
        ]
    return out


def unseen_batch(photos: Sequence[Path], spec: Preprocessing) -> F32:
    return _batch([image for _, image in unseen_images(photos)], spec)


def _batch(images: Sequence[Image.Image], spec: Preprocessing) -> F32:
    return np.concatenate([preprocess(image.convert(spec.color), spec) for image in images]).astype(
        np.float32, copy=False
    )


_bundled_cache: dict[tuple[str, tuple[str, ...]], tuple[F32, F32]] = {}
_cache_lock = threading.Lock()


def _bundled_sets(spec: Preprocessing, photos: Sequence[Path]) -> tuple[F32, F32]:
    key = (spec.model_dump_json(), tuple(str(path) for path in photos))
    with _cache_lock:
        cached = _bundled_cache.get(key)
    if cached is None:
        fit = _batch([image for _, image in bundled_images(photos)], spec)
        held_out = _batch([image for _, image in held_out_images(photos)], spec)
        fit.setflags(write=False)
        held_out.setflags(write=False)
        cached = (fit, held_out)
        with _cache_lock:
            if len(_bundled_cache) >= _CACHE_LIMIT:
                _bundled_cache.pop(next(iter(_bundled_cache)))
            _bundled_cache[key] = cached
    return cached


def calibration_sets(
    uploads: Sequence[bytes] | None, spec: Preprocessing, photos: Sequence[Path] = ()
) -> CalibrationImages:
    """The fitting and held-out batches: from the uploaded images, or from the bundled ``photos``."""
    if uploads:
        if len(uploads) > MAX_CALIBRATION_IMAGES:
            raise InvalidArgument(f"at most {MAX_CALIBRATION_IMAGES} calibration images, got {len(uploads)}")
        if len(uploads) < 2:
            raise InvalidArgument(
                "upload at least 2 calibration images: every other one fits the ranges, the rest measure them"
            )
        images = [decode_image(data, spec.color) for data in uploads]
        return CalibrationImages(_batch(images[0::2], spec), _batch(images[1::2], spec), "uploaded")
    if not photos:
        raise InvalidArgument("no calibration images: upload some in the field 'images'")
    fit, held_out = _bundled_sets(spec, photos)
    return CalibrationImages(fit, held_out, "bundled")
