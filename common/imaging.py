"""Image decoding and preprocessing, exactly as a split's manifest prescribes. Pillow and numpy only."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import InvalidImage
from common.model_io import Preprocessing

# Decoding, EXIF rotation and colour conversion hold about two full copies of the pixels at 4 bytes each (Pillow
# stores RGB as RGBX): 8 bytes per pixel at the peak, measured on a 64 Mpx PNG. The pixel limit follows from a
# per-image memory budget, and at most DECODE_SLOTS images are decoded at once per process, so a burst of huge
# images costs DECODE_SLOTS x the budget rather than one budget per request.
IMAGE_MEMORY_BUDGET_BYTES = 256 * 2**20
PEAK_BYTES_PER_PIXEL = 8
MAX_IMAGE_PIXELS = IMAGE_MEMORY_BUDGET_BYTES // PEAK_BYTES_PER_PIXEL
DECODE_SLOTS = 2
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
# Freed pixel memory stays with the C allocator; above this size it is handed back to the system at once.
TRIM_ABOVE_PIXELS = 4_000_000
_decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)
# YOLO's letterbox grey, used when a letterboxing split names no pad value.
LETTERBOX_PAD_VALUE = 114


def decode_image(data: bytes, color: str = "RGB", shorter_side: int | None = None) -> Image.Image:
    """Decode an encoded image, apply its EXIF orientation and convert it to ``color`` (RGB or L).

    With ``shorter_side`` (what preprocessing resizes to), a JPEG over the pixel budget decodes at 1/2, 1/4 or
    1/8 scale in the DCT domain, never below ``shorter_side``, instead of being refused.
    """
    if not data:
        raise InvalidImage("the image is empty: send a JPEG, PNG or WebP file")
    with _decode_slots:
        try:
            image: Image.Image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            over_budget = image.size[0] * image.size[1] > MAX_IMAGE_PIXELS
            # Only a JPEG over the budget is drafted: below it, every image decodes at full size, as torch's
            # preprocessing would, so answers do not depend on how large the camera's frames are.
            if over_budget and shorter_side is not None and image.format == "JPEG":
                image.draft(color if color in ("RGB", "L") else None, _draft_size(image.size, shorter_side))
            pixels = image.size[0] * image.size[1]
            if pixels > MAX_IMAGE_PIXELS:
                raise InvalidImage(_too_many_pixels(image.size))
            image.load()
        except Image.DecompressionBombError as exc:  # Pillow's own, larger limit, checked when it opens the file
            raise InvalidImage(f"the image has too many pixels to decode ({exc})") from exc
        except UnidentifiedImageError as exc:
            raise InvalidImage("the file is not an image we can read: send a JPEG, PNG or WebP file") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidImage(f"the image is truncated or corrupt: {exc}") from exc
        image = ImageOps.exif_transpose(image) or image
        return _to_color(image, color)


def _too_many_pixels(size: tuple[int, int]) -> str:
    return (
        f"the image is {size[0]}x{size[1]} ({size[0] * size[1]:,} pixels): too many pixels; at most "
        f"{MAX_IMAGE_PIXELS:,} are decoded ({IMAGE_MEMORY_BUDGET_BYTES // 2**20} MiB of memory per image). Send it "
        "scaled down, or as a JPEG (which decodes at reduced size)"
    )


def _draft_size(size: tuple[int, int], shorter_side: int) -> tuple[int, int]:
    scale = shorter_side / min(size)
    return (max(1, math.ceil(size[0] * scale)), max(1, math.ceil(size[1] * scale)))


def release(image: Image.Image) -> None:
    """Free a decoded image now; after a large one, return the memory to the system (glibc keeps it otherwise)."""
    pixels = image.size[0] * image.size[1]
    image.close()
    if pixels > TRIM_ABOVE_PIXELS and _malloc_trim is not None:
        _malloc_trim(0)


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): the allocator keeps its own policy
        return None
    return trim


_malloc_trim = _load_malloc_trim()


def _to_color(image: Image.Image, color: str) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: Pillow's convert() clips instead of scaling, so scale to 8 bits ourselves.
        wide = np.asarray(image, dtype=np.uint32)
        top = 65535 if image.mode != "I" else max(int(wide.max()), 1)
        image = Image.fromarray((wide * 255 // top).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white rather than whatever colour happens to hide under alpha 0.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert(color)


@dataclass(frozen=True)
class Geometry:
    """Where an image's pixels went in the model's input: ``x_input = x_image * scale_x + offset_x`` (and y).

    Post-processing answers in input pixels; this maps them back onto the image the person sent."""

    width: int
    height: int
    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    def to_image(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        image_x = np.clip((x - self.offset_x) / self.scale_x, 0, self.width)
        image_y = np.clip((y - self.offset_y) / self.scale_y, 0, self.height)
        return image_x, image_y


@dataclass(frozen=True)
class _Placement:
    resized: tuple[int, int]  # (width, height) the image is resized to
    offset: tuple[int, int]  # where its top-left corner lands in the input (negative: cropped)


def _placement(size: tuple[int, int], spec: Preprocessing) -> _Placement:
    width, height = size
    crop_h, crop_w = spec.crop
    if spec.resize == "stretch":
        return _Placement((crop_w, crop_h), (0, 0))
    if spec.resize == "letterbox":
        ratio = min(crop_w / width, crop_h / height)
        resized = (max(1, round(width * ratio)), max(1, round(height * ratio)))
        return _Placement(resized, ((crop_w - resized[0]) // 2, (crop_h - resized[1]) // 2))
    scale = spec.resize_shorter_to / min(width, height)
    resized = (max(crop_w, round(width * scale)), max(crop_h, round(height * scale)))
    return _Placement(resized, (-((resized[0] - crop_w) // 2), -((resized[1] - crop_h) // 2)))


def geometry_of(size: tuple[int, int], spec: Preprocessing) -> Geometry:
    """How :func:`preprocess` places an image of ``size`` (width, height), computed as it computes it."""
    placed = _placement(size, spec)
    return Geometry(
        width=size[0],
        height=size[1],
        scale_x=placed.resized[0] / size[0],
        scale_y=placed.resized[1] / size[1],
        offset_x=float(placed.offset[0]),
        offset_y=float(placed.offset[1]),
    )


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an encoded image as :func:`decode_image` would return it (EXIF rotation applied), read from
    its header only."""
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            width, height = image.size
            # EXIF orientations 5 to 8 turn the image a quarter: width and height swap.
            if image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                return height, width
            return width, height
    except Image.DecompressionBombError as exc:
        raise InvalidImage(f"the image has too many pixels to decode ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage("the file is not an image we can read: send a JPEG, PNG or WebP file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"the image is truncated or corrupt: {exc}") from exc


_EXIF_ORIENTATION = 0x0112


def image_batch(data: bytes, spec: Preprocessing) -> np.ndarray:
    """Decode and preprocess in one go, the decoded pixels freed before returning."""
    image = decode_image(data, spec.color, spec.resize_shorter_to)
    try:
        return preprocess(image, spec)
    finally:
        release(image)


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Resize (shorter side + centre crop, stretch, or letterbox), scale, normalise, order the channels; returns a
    float32 NCHW batch of one."""
    crop_h, crop_w = spec.crop
    placed = _placement(image.size, spec)
    resized = image.resize(placed.resized, Image.Resampling.BILINEAR)
    if spec.resize == "letterbox":
        fill = spec.pad_value if spec.pad_value is not None else LETTERBOX_PAD_VALUE
        canvas = Image.new(resized.mode, (crop_w, crop_h), (fill,) * len(resized.getbands()))
        canvas.paste(resized, placed.offset)
        framed = canvas
    else:
        left, top = -placed.offset[0], -placed.offset[1]
        framed = resized.crop((left, top, left + crop_w, top + crop_h))
    pixels = np.asarray(framed)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if spec.channel_order == "BGR":
        pixels = pixels[:, :, ::-1]
    mean = (np.asarray(spec.mean, dtype=np.float32) / spec.scale)[:, None, None]
    inv_std = (spec.scale / np.asarray(spec.std, dtype=np.float32))[:, None, None]
    # Written channel-first into one buffer: broadcasting over a last axis of 3 is several times slower, and on a
    # robot's small CPU share this is a visible part of a frame. Same float32 operations, same values.
    out = np.empty((1, pixels.shape[2], crop_h, crop_w), dtype=np.float32)
    np.subtract(pixels.transpose(2, 0, 1), mean, out=out[0], dtype=np.float32)
    out *= inv_std
    return out
