"""The sample photos shipped with the splitter (``model_splitter/data/samples``, licences in LICENSE.md there).

The one place that knows where they lie: the web UI offers them, calibration falls back to them when no images are
uploaded, and the planner profiles with one when the request brings none.
"""

from __future__ import annotations

from pathlib import Path

from common.errors import NotFound

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "data" / "samples"
# The only files /samples/ serves: a fixed list, never a path from the client.
SAMPLE_NAMES = ("chelsea.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg", "chelsea.png", "page.png", "text.png")
DEFAULT_SAMPLE = "chelsea.jpg"
MEDIA_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}


def available_samples() -> list[str]:
    return [name for name in SAMPLE_NAMES if (SAMPLES_DIR / name).is_file()]


def sample_path(name: str) -> Path:
    if name not in available_samples():
        raise NotFound(f"no sample photo {name[:60]!r}; GET /api/samples lists them")
    return SAMPLES_DIR / name


def unseen_photos() -> list[Path]:
    """Photos of other scenes that no calibration or training uses: what a fine-tuned tail is checked on."""
    return sorted((SAMPLES_DIR / "unseen").glob("*.jpg"))


def calibration_photos() -> list[Path]:
    """The photos calibration uses when none are uploaded: every JPEG (the PNG is a copy of one of them)."""
    return sorted(SAMPLES_DIR.glob("*.jpg"))
