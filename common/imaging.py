"""Image decoding and preprocessing, exactly as a split's manifest prescribes. Pillow and numpy only."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import math
import threading
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import InvalidImage
from common.manifest import Preprocessing

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


def image_batch(data: bytes, spec: Preprocessing) -> np.ndarray:
    """Decode and preprocess in one go, the decoded pixels freed before returning."""
    image = decode_image(data, spec.color, spec.resize_shorter_to)
    try:
        return preprocess(image, spec)
    finally:
        release(image)


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Resize the shorter side, centre-crop, scale, normalise; returns a float32 NCHW batch of one."""
    crop_h, crop_w = spec.crop
    width, height = image.size
    scale = spec.resize_shorter_to / min(width, height)
    new_size = (max(crop_w, round(width * scale)), max(crop_h, round(height * scale)))
    resized = image.resize(new_size, Image.Resampling.BILINEAR)
    left = (new_size[0] - crop_w) // 2
    top = (new_size[1] - crop_h) // 2
    cropped = resized.crop((left, top, left + crop_w, top + crop_h))
    pixels = np.asarray(cropped, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    mean = np.asarray(spec.mean, dtype=np.float32) / spec.scale
    inv_std = spec.scale / np.asarray(spec.std, dtype=np.float32)
    normalised = (pixels - mean) * inv_std
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])
