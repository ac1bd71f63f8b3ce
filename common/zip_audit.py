"""Checks on a zip archive before any member of it is read: one reading for every reader, and bounded inflation.

Zip archives reach us as bundles (robot and edge), ``torch.export`` archives and TorchScript files (splitter). Two
members may carry the same name, and then readers disagree on which one counts: Python's ``zipfile`` returns the
last for ``read(name)`` and the first when one walks ``infolist()``, torch's reader may take either. An audit that
reads one copy while the loader reads the other checks nothing, so an archive with a repeated name is refused
outright. Members also say how large they inflate; a member may inflate to ``max_ratio`` times its compressed
size (any member up to ``ratio_exempt_bytes``), so a few megabytes can never become gigabytes in memory. Declared
sizes cannot lie to us: ``zipfile`` stops at the declared size and fails the CRC of anything longer.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass

from common.errors import SplitComputingError

MIB = 2**20
# Stored, deflate, bzip2, lzma: what zipfile reads (torch and our bundles write the first two).
READABLE_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})


@dataclass(frozen=True)
class ZipLimits:
    max_members: int = 100_000
    max_member_bytes: int = 2 * 1024**3
    max_total_bytes: int = 4 * 1024**3
    max_ratio: float = 200.0
    ratio_exempt_bytes: int = 16 * MIB


def audit_zip(data: bytes, limits: ZipLimits, error: type[SplitComputingError], what: str) -> list[zipfile.ZipInfo]:
    """The members of ``data`` if it is a zip every reader reads alike within ``limits``; ``error`` otherwise."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise error(f"{what} is not a readable zip archive ({exc})") from exc
    if len(infos) > limits.max_members:
        raise error(f"{what} holds {len(infos)} members; at most {limits.max_members} are accepted")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        if name in seen:
            raise error(
                f"{what} holds two members named {name[:200]!r}; such an archive is read differently by different "
                "readers, so it is refused (write it again with one member per name)"
            )
        seen.add(name)
        _check_size(info, limits, error, what)
        total += info.file_size
    if total > limits.max_total_bytes:
        raise error(f"{what} inflates to {total} bytes; at most {limits.max_total_bytes} are accepted")
    return infos


def _check_size(info: zipfile.ZipInfo, limits: ZipLimits, error: type[SplitComputingError], what: str) -> None:
    name = info.filename[:200]
    if info.compress_type not in READABLE_METHODS:
        raise error(f"{name} in {what} is compressed with method {info.compress_type}, which cannot be read here")
    if info.file_size > limits.max_member_bytes:
        raise error(f"{name} in {what} inflates to {info.file_size} bytes; at most {limits.max_member_bytes}")
    allowed = max(limits.ratio_exempt_bytes, limits.max_ratio * info.compress_size)
    if info.file_size > allowed:
        raise error(
            f"{name} in {what} inflates from {info.compress_size} to {info.file_size} bytes, more than "
            f"{limits.max_ratio:g} times (a zip bomb, or data that is almost all zeros); it is refused"
        )


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, error: type[SplitComputingError], what: str) -> bytes:
    """One audited member; a damaged one (bad CRC, corrupted deflate stream, cut short) is ``error``, not a crash."""
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as exc:
        raise error(f"{info.filename[:200]} in {what} is damaged and cannot be read ({exc})") from exc
