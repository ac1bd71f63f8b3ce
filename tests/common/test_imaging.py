from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from common.errors import InvalidImage
from common.imaging import decode_image, preprocess, release
from common.model_io import Preprocessing
from tests.support import SAMPLES

SPEC = Preprocessing(resize_shorter_to=256, crop=[224, 224], mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_preprocess_matches_the_torchvision_recipe_by_hand() -> None:
    image = decode_image((SAMPLES / "chelsea.jpg").read_bytes())
    batch = preprocess(image, SPEC)
    assert batch.shape == (1, 3, 224, 224) and batch.dtype == np.float32
    width, height = image.size
    scale = 256 / min(width, height)
    resized = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR)
    left, top = (resized.width - 224) // 2, (resized.height - 224) // 2
    pixels = np.asarray(resized.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    expected = ((pixels - np.array(SPEC.mean)) / np.array(SPEC.std)).transpose(2, 0, 1)
    np.testing.assert_allclose(batch[0], expected, atol=1e-5)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied(orientation: int) -> None:
    # A 40x20 image whose left half is red: after orientation the red half must be where the tag says.
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20, 0] = 255
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = decode_image(encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    expected = np.asarray(
        {
            1: image,
            2: image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
            3: image.transpose(Image.Transpose.ROTATE_180),
            4: image.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
            5: image.transpose(Image.Transpose.TRANSPOSE),
            6: image.transpose(Image.Transpose.ROTATE_270),
            7: image.transpose(Image.Transpose.TRANSVERSE),
            8: image.transpose(Image.Transpose.ROTATE_90),
        }[orientation]
    )
    assert decoded.size == (expected.shape[1], expected.shape[0])
    assert np.abs(np.asarray(decoded, dtype=int) - expected).mean() < 8


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA", "I;16", "1"])
def test_other_colour_modes_become_rgb(mode: str) -> None:
    source = Image.new("RGB", (30, 30), (200, 100, 50))
    image = source.convert(mode) if mode != "I;16" else Image.fromarray(np.full((30, 30), 40000, dtype=np.uint16))
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(encode(image, fmt))
    assert decoded.mode == "RGB" and decoded.size == (30, 30)
    if mode == "I;16":
        assert np.asarray(decoded)[0, 0, 0] == 40000 * 255 // 65535


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(decode_image(encode(image)))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    ("data", "words"),
    [(b"", "empty"), (b"plain text", "not an image"), ((SAMPLES / "chelsea.jpg").read_bytes()[:2000], "truncated")],
)
def test_bad_images_are_refused(data: bytes, words: str) -> None:
    with pytest.raises(InvalidImage, match=words):
        decode_image(data)


def test_an_image_over_the_memory_budget_is_refused_before_its_pixels_exist() -> None:
    bomb = encode(Image.new("L", (9000, 9000)), "PNG")
    assert len(bomb) < 200_000
    with pytest.raises(InvalidImage, match=r"9000x9000 \(81,000,000 pixels\): too many pixels; at most 33,554,432"):
        decode_image(bomb)


def test_a_large_jpeg_decodes_at_reduced_scale_but_never_below_the_model_size() -> None:
    photo = Image.open(SAMPLES / "chelsea.jpg").convert("RGB").resize((451 * 16, 300 * 16))  # 34.6 Mpx
    data = encode(photo, "JPEG")
    with pytest.raises(InvalidImage, match="pixels"):
        decode_image(data)  # at full size it is over the budget
    reduced = decode_image(data, "RGB", shorter_side=256)
    assert reduced.size == (451 * 2, 300 * 2)  # 1/8 scale: the smallest that keeps the shorter side >= 256
    release(reduced)


def test_greyscale_model_gets_one_channel() -> None:
    spec = Preprocessing(resize_shorter_to=32, crop=[28, 28], mean=[0.5], std=[0.5], color="L")
    batch = preprocess(decode_image((SAMPLES / "coffee.jpg").read_bytes(), "L"), spec)
    assert batch.shape == (1, 1, 28, 28)
    assert batch.min() >= -1.0 and batch.max() <= 1.0


@pytest.mark.parametrize(("color", "order"), [("RGB", "RGB"), ("RGB", "BGR"), ("L", "RGB")])
def test_preprocess_gives_the_float32_recipe_bit_for_bit(color: str, order: str) -> None:
    # The channel-first buffer must hold exactly what (pixels - mean / scale) * (scale / std) gives channel-last.
    channels = 3 if color == "RGB" else 1
    spec = Preprocessing(
        resize_shorter_to=224,
        crop=[224, 200],
        mean=[0.485, 0.456, 0.406][:channels],
        std=[0.229, 0.224, 0.225][:channels],
        color=color,
        channel_order=order,
        resize="stretch",
    )
    shape = (300, 410, 3) if channels == 3 else (300, 410)
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8))
    pixels = np.asarray(image.resize((200, 224), Image.Resampling.BILINEAR), dtype=np.float32)
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels[:, :, ::-1] if order == "BGR" else pixels
    mean = np.asarray(spec.mean, dtype=np.float32) / spec.scale
    inv_std = spec.scale / np.asarray(spec.std, dtype=np.float32)
    expected = ((pixels - mean) * inv_std).transpose(2, 0, 1)[None]
    batch = preprocess(image, spec)
    assert batch.flags.c_contiguous and batch.dtype == np.float32
    assert np.array_equal(batch, expected)
