"""Zstandard-coded payloads in frames: round trip, and every way a coded payload can lie refused before it costs
memory."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import zstandard

from common.entropy import code_payload, decode_payload
from common.errors import InvalidFrame
from common.tensor_records import affine_record, coded_record, decode_record
from common.wire import CODED, TensorRecord, decode_frame, encode_frame

SPLIT = "cd" * 32


def _sparse(shape: tuple[int, ...] = (1, 32, 16, 16)) -> np.ndarray:
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    return np.maximum(x - 1.0, 0.0)  # about 84 % zeros, as after a ReLU with a negative bias


def test_sparse_codes_shrink_and_round_trip() -> None:
    x = _sparse()
    plain = affine_record("t", x, 4, 0.0, 3.0)
    coded = coded_record(plain)
    assert coded.coded and len(coded.payload) < 0.5 * len(plain.payload)
    frame = encode_frame(SPLIT, [coded])
    assert frame[56] == int(coded.kind) | CODED
    parsed = decode_frame(frame).tensors[0]
    assert parsed.coded
    assert np.array_equal(decode_record(parsed), decode_record(plain))


def test_incompressible_codes_stay_plain() -> None:
    noise = np.random.default_rng(1).uniform(0, 3, size=(1, 4096)).astype(np.float32)
    plain = affine_record("t", noise, 8, 0.0, 3.0)
    assert coded_record(plain) is plain


def _frame_with_payload(payload: bytes, plain: TensorRecord) -> bytes:
    """A frame whose coded payload is ``payload``, valid in every other field (the CRC included)."""
    record = TensorRecord(plain.name, plain.kind, plain.bits, plain.lo, plain.hi, plain.shape, b"\0", coded=True)
    head = encode_frame(SPLIT, [coded_record(plain)])
    coded_len = len(coded_record(plain).payload)
    prefix = head[: len(head) - 4 - coded_len]
    length_at = len(prefix) - len(record.name) - 8
    body = prefix[:length_at] + len(payload).to_bytes(8, "little") + prefix[length_at + 8 :] + payload
    return body + zlib.crc32(body).to_bytes(4, "little")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # A small frame that says it inflates to far more than the tensor holds: refused from its header.
        (lambda n: zstandard.ZstdCompressor().compress(b"\0" * (n * 1000)), "its Zstandard header says"),
        (lambda n: zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * n), "says not stated"),
        (lambda n: b"not zstd at all", "its header cannot be read"),
        (lambda n: code_payload(b"\0" * n)[:-3], "exactly one Zstandard frame"),
        (lambda n: code_payload(b"\0" * n) + code_payload(b"\0"), "exactly one Zstandard frame"),
    ],
)
def test_lying_payloads_are_refused(make, message: str) -> None:  # type: ignore[no-untyped-def]
    plain = affine_record("t", _sparse(), 4, 0.0, 3.0)
    frame = _frame_with_payload(make(len(plain.payload)), plain)
    with pytest.raises(InvalidFrame, match=message):
        parsed = decode_frame(frame).tensors[0]
        decode_record(parsed)


def test_decode_payload_bounds_the_output() -> None:
    with pytest.raises(InvalidFrame, match="must decode to 10 bytes"):
        decode_payload(code_payload(b"\1" * 100), 10)
    assert decode_payload(code_payload(b"\1" * 100), 100) == b"\1" * 100


def test_threads_code_at_the_same_time() -> None:
    # Requests run in a thread pool: each thread codes with its own Zstandard context.
    from concurrent.futures import ThreadPoolExecutor

    payloads = [bytes([i % 7]) * 50_000 + bytes(range(256)) * i for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        coded = list(pool.map(code_payload, payloads))
    assert [decode_payload(c, len(p)) for c, p in zip(coded, payloads, strict=True)] == payloads
