"""Image decoding and preprocessing, exactly as a split's manifest prescribes. Pillow and numpy only."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import InvalidImage
from common.manifest import Preprocessing

# Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; we make the warning an error so a
# decompression bomb is refused before its pixels are allocated.
MAX_IMAGE_PIXELS = 64_000_000
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")


def decode_image(data: bytes, color: str = "RGB") -> Image.Image:
    """Decode an encoded image, apply its EXIF orientation and convert it to ``color`` (RGB or L)."""
    if not data:
        raise InvalidImage("the image is empty: send a JPEG, PNG or WebP file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
            try:
                image: Image.Image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
                image.load()
            finally:
                Image.MAX_IMAGE_PIXELS = previous_limit
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"the image has too many pixels (limit {MAX_IMAGE_PIXELS:,}): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage("the file is not an image we can read: send a JPEG, PNG or WebP file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"the image is truncated or corrupt: {exc}") from exc
    image = ImageOps.exif_transpose(image) or image
    return _to_color(image, color)


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
