"""Lossless coding of packed codes (Zstandard), for the tensors of a frame whose tensor kind has the coded bit.

Features after a ReLU are mostly the zero code, which a dense bit packing still spends ``bits`` on; Zstandard at
level 1 (its fastest with entropy coding) finds the repeats and the skewed histogram. A coded payload is one
Zstandard frame whose header states the content size: the decoder checks that size against the packed size the
tensor header implies *before* it decompresses anything, so a frame can never make it allocate more than an
uncoded one would, and trailing bytes after the Zstandard frame are refused.
"""

from __future__ import annotations

import threading

import zstandard

from common.errors import InvalidFrame
from common.quantization import byte_view

LEVEL = 1

# A Zstandard context must not be used by two threads at once (requests run in a thread pool): one per thread.
_contexts = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    compressor: zstandard.ZstdCompressor | None = getattr(_contexts, "compressor", None)
    if compressor is None:
        compressor = zstandard.ZstdCompressor(level=LEVEL, write_content_size=True, write_checksum=False)
        _contexts.compressor = compressor
    return compressor


def code_payload(payload: bytes | memoryview) -> bytes:
    """The Zstandard frame of ``payload`` (callers keep the original when this is not smaller)."""
    return _compressor().compress(byte_view(payload))


def coded_size_problem(coded: bytes | memoryview, expected: int) -> str | None:
    """Why ``coded`` cannot be the coding of ``expected`` bytes (a header check: nothing is decompressed)."""
    try:
        declared = zstandard.frame_content_size(byte_view(coded))
    except zstandard.ZstdError:
        return "a coded payload must be one Zstandard frame; its header cannot be read"
    if declared != expected:
        shown = "not stated" if declared < 0 else f"{declared} bytes"
        return f"a coded payload must decode to {expected} bytes, its Zstandard header says {shown}"
    return None


def decode_payload(coded: bytes | memoryview, expected: int) -> bytes:
    """The ``expected`` packed bytes a coded payload holds; InvalidFrame when it does not hold exactly those."""
    problem = coded_size_problem(coded, expected)
    if problem is not None:
        raise InvalidFrame(problem)
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = decompressor.decompress(byte_view(coded))
    except zstandard.ZstdError as exc:
        raise InvalidFrame(f"a coded payload does not decode: {exc}") from None
    if len(out) != expected or decompressor.unused_data:
        raise InvalidFrame(f"a coded payload must be exactly one Zstandard frame of {expected} bytes")
    return out


__all__ = ["LEVEL", "code_payload", "coded_size_problem", "decode_payload"]
