"""A full disk while storing is the person's to fix, not a crash: 507 with the bytes needed and the bytes free."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.errors import InsufficientStorage

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextmanager
def disk_space_for(directory: Path, needed: int) -> Iterator[None]:
    """Turn "no space left" while writing ``needed`` bytes under ``directory`` into ``InsufficientStorage``."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _NO_SPACE:
            raise
        try:
            free = f"{shutil.disk_usage(directory).free:,} bytes are free"
        except OSError:
            free = "the free space could not be read"
        raise InsufficientStorage(
            f"the disk under {directory} is full: storing this needs {needed:,} bytes and {free}; nothing was "
            "stored. Free some space (or point the service's DATA_DIR at a larger disk) and send it again"
        ) from exc
