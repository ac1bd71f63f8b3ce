"""A stream's camera frames as they arrive: an encoded image (JPEG, PNG, WebP), or raw RGB pixels behind a header.

Raw layout (little-endian): the 4 ASCII bytes ``RGB8``, height u32, width u32, then height x width x 3 bytes, row
by row, each pixel R, G, B. A camera process that already holds pixels sends them without encoding a JPEG first.
"""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image

from common.errors import InvalidImage

RAW_MAGIC = b"RGB8"
_RAW_HEADER = struct.Struct("<4sII")
MAX_RAW_PIXELS = 4096 * 4096


def raw_frame(pixels: np.ndarray) -> bytes:
    """The message a camera sends for an (H, W, 3) uint8 image."""
    array = np.ascontiguousarray(pixels, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"raw frames are (height, width, 3) uint8 pixels, got shape {array.shape}")
    return _RAW_HEADER.pack(RAW_MAGIC, array.shape[0], array.shape[1]) + array.tobytes()


def frame_image(message: bytes) -> bytes | Image.Image:
    """The image a message carries: the encoded file as it came, or the raw pixels as an image."""
    if not message.startswith(RAW_MAGIC):
        return message
    if len(message) < _RAW_HEADER.size:
        raise InvalidImage(f"a raw frame needs its {_RAW_HEADER.size}-byte header (RGB8, height, width)")
    _, height, width = _RAW_HEADER.unpack_from(message)
    if not (height >= 1 and width >= 1 and height * width <= MAX_RAW_PIXELS):
        raise InvalidImage(f"a raw frame of {width}x{height} pixels: each side >= 1, at most {MAX_RAW_PIXELS} pixels")
    need = _RAW_HEADER.size + height * width * 3
    if len(message) != need:
        raise InvalidImage(f"a raw {width}x{height} RGB frame is {need} bytes with its header, got {len(message)}")
    pixels = np.frombuffer(message, dtype=np.uint8, offset=_RAW_HEADER.size).reshape(height, width, 3)
    return Image.fromarray(pixels, "RGB")
