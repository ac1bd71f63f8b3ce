"""The zip audit: one reading for every reader, bounded inflation, damaged members refused in words."""

from __future__ import annotations

import io
import zipfile

import pytest

from common.errors import BadRequest
from common.zip_audit import MIB, ZipLimits, audit_zip, read_member
from tests.crafted import with_duplicate, zero_member_zip


def archive(**members: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return out.getvalue()


def test_a_plain_archive_passes_with_its_members_in_order() -> None:
    infos = audit_zip(archive(a=b"x" * 100, b=b"y"), ZipLimits(), BadRequest, "the zip")
    assert [info.filename for info in infos] == ["a", "b"]


def test_a_repeated_member_name_is_refused_whichever_copy_a_reader_would_take() -> None:
    data = with_duplicate(archive(**{"root/data.pkl": b"first", "root/other": b"z"}), "data.pkl", b"second")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # the two readings this guards against
        assert zf.read("root/data.pkl") == b"second" and zf.read(zf.infolist()[0]) == b"first"
    with pytest.raises(BadRequest, match=r"two members named 'root/data\.pkl'"):
        audit_zip(data, ZipLimits(), BadRequest, "the zip")


def test_a_zip_bomb_is_refused_from_its_declared_sizes() -> None:
    bomb = zero_member_zip("tail.onnx", 64 * MIB)
    assert len(bomb) < MIB
    with pytest.raises(BadRequest, match="more than 200 times"):
        audit_zip(bomb, ZipLimits(), BadRequest, "the bundle")
    # the same member is fine where small members may compress any amount
    audit_zip(bomb, ZipLimits(ratio_exempt_bytes=64 * MIB), BadRequest, "the bundle")


def test_member_total_and_count_limits() -> None:
    data = archive(a=b"1" * 1000, b=b"2" * 1000, c=b"3")
    with pytest.raises(BadRequest, match="at most 999"):
        audit_zip(data, ZipLimits(max_member_bytes=999), BadRequest, "the zip")
    with pytest.raises(BadRequest, match="inflates to 2001 bytes"):
        audit_zip(data, ZipLimits(max_total_bytes=2000), BadRequest, "the zip")
    with pytest.raises(BadRequest, match="3 members"):
        audit_zip(data, ZipLimits(max_members=2), BadRequest, "the zip")


def test_not_a_zip_is_refused_in_words() -> None:
    with pytest.raises(BadRequest, match="not a readable zip"):
        audit_zip(b"PK\x03\x04 truncated", ZipLimits(), BadRequest, "the zip")


def damaged(compression: int) -> tuple[bytes, zipfile.ZipInfo]:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as zf:
        zf.writestr("tail.onnx", bytes(range(256)) * 64)
    data = bytearray(out.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for offset in range(start + 5, start + 40):
        data[offset] ^= 0x5A
    return bytes(data), info


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["bad-crc", "bad-deflate"])
def test_a_damaged_member_is_an_error_not_a_crash(compression: int) -> None:
    data, _ = damaged(compression)
    infos = audit_zip(data, ZipLimits(), BadRequest, "the bundle")
    with (
        zipfile.ZipFile(io.BytesIO(data)) as zf,
        pytest.raises(BadRequest, match=r"tail\.onnx in the bundle is damaged"),
    ):
        read_member(zf, infos[0], BadRequest, "the bundle")


def test_a_member_in_a_compression_method_nothing_here_reads_is_refused_before_reading() -> None:
    data = bytearray(archive(a=b"payload"))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.infolist()[0]
    central = bytes(data).rindex(b"PK\x01\x02")
    data[info.header_offset + 8 : info.header_offset + 10] = (99).to_bytes(2, "little")  # the local header
    data[central + 10 : central + 12] = (99).to_bytes(2, "little")  # the central directory
    with pytest.raises(BadRequest, match="compressed with method 99"):
        audit_zip(bytes(data), ZipLimits(), BadRequest, "the zip")
