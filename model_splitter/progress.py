"""How long-running work (registration, calibration) tells its stage to whoever waits: a callback taking the stage."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def no_progress(_: str) -> None:
    """The default when nobody listens (the synchronous routes)."""
    return None
