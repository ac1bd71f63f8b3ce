"""The binary frame: exact layout, round trips, and a specific refusal for every kind of corruption."""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from common.errors import InvalidArgument, InvalidFrame, PayloadTooLarge
from common.quantization import packed_size
from common.tensor_records import coded_record, decode_record, image_record, per_channel_record, quantized_record
from common.wire import (
    CODE_KINDS,
    PER_CHANNEL_KINDS,
    Frame,
    TensorKind,
    TensorRecord,
    decode_frame,
    encode_frame,
    frame_overhead,
)

SPLIT = hashlib.sha256(b"resnet18/layer2").hexdigest()
REQ = "000102030405060708090a0b0c0d0e0f"
# The frame shown in docs/wire-format.md: tensor "x" = [[0.1, 0.2, 0.3]] at 4 bits over [0, 1.5] -> codes 1, 2, 3.
GOLDEN = bytes.fromhex(
    "53504c5401000100"
    "b9c3cbe3f3067e43acb81b6d7c12e17ff57127355227810adc788c7b4a651940"
    "000102030405060708090a0b0c0d0e0f"
    "0104020100000000" "0000c03f" "01000000" "03000000" "0200000000000000" "78"
    "2103"
    "407bbe7a"
)  # fmt: skip
# Offsets in GOLDEN (one tensor, ndim 2, name "x").
KIND, BITS, NDIM, NAME_LEN, LO, HI, DIM0, DIM1, PAYLOAD_LEN, NAME, PAYLOAD = 56, 57, 58, 59, 60, 64, 68, 72, 76, 84, 85


def golden_record() -> TensorRecord:
    return quantized_record("x", np.array([[0.1, 0.2, 0.3]], dtype=np.float32), 4, 0.0, 1.5)


def patch(frame: bytes, offset: int, new: bytes, reseal: bool = True) -> bytes:
    """Overwrite bytes; with reseal the CRC is recomputed, so only the structural check can object."""
    body = bytearray(frame[:-4])
    body[offset : offset + len(new)] = new
    return bytes(body) + (struct.pack("<I", zlib.crc32(body)) if reseal else frame[-4:])


def reseal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def refused(frame: bytes, message: str) -> None:
    with pytest.raises(InvalidFrame, match=re.escape(message)) as info:
        decode_frame(frame)
    assert info.value.status_code == 400


def same_records(a: TensorRecord, b: TensorRecord) -> bool:
    return (a.name, a.kind, a.bits, a.lo, a.hi, a.shape, bytes(a.payload)) == (
        b.name,
        b.kind,
        b.bits,
        b.lo,
        b.hi,
        b.shape,
        bytes(b.payload),
    )


# ---------------------------------------------------------------------------------------------- layout


def test_golden_frame_bytes() -> None:
    assert golden_record().payload == b"\x21\x03"
    frame = encode_frame(SPLIT, [golden_record()], REQ)
    assert frame == GOLDEN
    assert len(frame) == 91 == frame_overhead([("x", 2)]) + 2
    assert struct.unpack("<I", frame[-4:])[0] == zlib.crc32(frame[:-4]) == 0x7ABE7B40


def test_spec_hex_dump_is_the_golden_frame() -> None:
    spec = (Path(__file__).resolve().parents[2] / "docs" / "wire-format.md").read_text(encoding="utf-8")
    rows = re.findall(r"^[0-9a-f]{8}: ((?:[0-9a-f]{2} )+)", spec, flags=re.MULTILINE)
    assert bytes.fromhex("".join(rows)) == GOLDEN


def test_golden_frame_decodes() -> None:
    f = decode_frame(GOLDEN)
    assert f.split_id == SPLIT and f.request_id == REQ and len(f.tensors) == 1
    t = f.tensors[0]
    assert (t.name, t.kind, t.bits, t.lo, t.hi, t.shape, bytes(t.payload)) == (
        "x",
        TensorKind.QUANTIZED,
        4,
        0.0,
        1.5,
        (1, 3),
        b"\x21\x03",
    )
    assert decode_record(t).tolist() == [[0.10000000149011612, 0.20000000298023224, 0.30000001192092896]]


def test_payloads_are_zero_copy_views() -> None:
    f = decode_frame(GOLDEN)
    assert isinstance(f.tensors[0].payload, memoryview) and f.tensors[0].payload.obj is GOLDEN
    buf = bytearray(GOLDEN)
    view = decode_frame(buf).tensors[0].payload
    buf[PAYLOAD] = 0x54
    assert bytes(view) == b"\x54\x03"


def test_decoded_frame_reencodes_identically() -> None:
    f = decode_frame(memoryview(GOLDEN))
    assert encode_frame(f.split_id, f.tensors, f.request_id) == GOLDEN


def test_resnet18_layer2_at_4_bits_fits_budget() -> None:
    x = np.random.default_rng(0).standard_normal((1, 128, 28, 28)).astype(np.float32)
    frame = encode_frame(SPLIT, [quantized_record("layer2", x, 4, -3.0, 3.0)])
    assert len(frame) == 50176 + frame_overhead([("layer2", 4)]) == 50176 + 102
    assert len(frame) <= 50176 + 256
    y = decode_record(decode_frame(frame).tensors[0])
    assert y.shape == (1, 128, 28, 28) and float(np.max(np.abs(y - np.clip(x, -3, 3)))) <= 0.2 + 1e-6


def test_fresh_request_id_when_none() -> None:
    a = decode_frame(encode_frame(SPLIT, [golden_record()])).request_id
    b = decode_frame(encode_frame(SPLIT, [golden_record()])).request_id
    assert re.fullmatch(r"[0-9a-f]{32}", a) and a != b and a[12] == "4"  # uuid4 version nibble


def test_several_tensors_of_every_kind_round_trip() -> None:
    rng = np.random.default_rng(7)
    a = rng.uniform(-2, 2, (2, 3, 5)).astype(np.float32)
    b = rng.standard_normal((4, 1)).astype(np.float32)
    c = rng.standard_normal((3,)).astype(np.float32)
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"
    records = [
        quantized_record("feat.a", a, 3, -2.0, 2.0),
        quantized_record("feat.b", b, 16, 0.0, 0.0),
        quantized_record("feat.c", c, 32, -1.0, 1.0),
        image_record("image", jpeg),
        quantized_record("", c, 8, -5.0, 5.0),
        quantized_record("ünïcode/名前", c, 1, -0.5, 0.5),
    ]
    frame = encode_frame(SPLIT, records, REQ)
    assert len(frame) == frame_overhead([(r.name, len(r.shape)) for r in records]) + sum(
        len(r.payload) for r in records
    )
    f = decode_frame(frame)
    assert isinstance(f, Frame) and f.split_id == SPLIT and f.request_id == REQ
    assert [t.kind for t in f.tensors] == [1, 2, 3, 4, 1, 1]
    assert all(same_records(x, y) for x, y in zip(records, f.tensors, strict=True))
    assert float(np.max(np.abs(decode_record(f.tensors[0]) - a))) <= 4 / 7 / 2 + 1e-6
    assert np.array_equal(decode_record(f.tensors[1]), b.astype(np.float16).astype(np.float32))
    assert np.array_equal(decode_record(f.tensors[2]), c)
    assert bytes(f.tensors[3].payload) == jpeg and f.tensors[3].shape == (len(jpeg),)
    assert decode_record(f.tensors[5]).tolist() == np.where(c > 0, 0.5, -0.5).tolist()
    with pytest.raises(InvalidArgument, match="is an encoded image"):
        decode_record(f.tensors[3])


def test_record_keeps_float32_range() -> None:
    r = quantized_record("t", np.zeros(3, dtype=np.float32), 4, 0.1, 0.7)
    assert (r.lo, r.hi) == (float(np.float32(0.1)), float(np.float32(0.7)))
    t = decode_frame(encode_frame(SPLIT, [r])).tensors[0]
    assert (t.lo, t.hi) == (r.lo, r.hi)


# ------------------------------------------------------------------------------------- decode refusals

FIELD_CASES = [
    (0, b"SPLX", "bad magic b'SPLX': a split-computing frame starts with b'SPLT'"),
    (0, b"\x00\x00\x00\x00", "bad magic b'\\x00\\x00\\x00\\x00'"),
    (4, b"\x00", "unsupported frame version 0: this server speaks version 1"),
    (4, b"\x02", "unsupported frame version 2: this server speaks version 1"),
    (5, b"\x01", "unknown frame flags 0x01: version 1 defines none, they must be 0"),
    (5, b"\x80", "unknown frame flags 0x80"),
    (6, b"\x00\x00", "tensor count 0 out of range 1..16"),
    (6, b"\x11\x00", "tensor count 17 out of range 1..16"),
    (6, b"\xff\xff", "tensor count 65535 out of range 1..16"),
    (6, b"\x02\x00", "frame truncated: tensor 1 header needs 12 bytes at offset 85, 2 remain"),
    (
        KIND,
        b"\x00",
        "tensor 0: unknown kind 0 (1 quantized, 2 float16, 3 float32, 4 encoded image, 5 quantized per channel, "
        "6 affine, 7 affine per channel, 8 affine per channel at a width per channel)",
    ),
    (KIND, b"\x09", "tensor 0: unknown kind 9"),
    (KIND, b"\x08", "tensor 0: a per-channel quantized tensor has lo = hi = 0 (ranges are in the manifest)"),
    (KIND, b"\x06", "tensor 0: an affine scale must be a positive finite float32 whose inverse is finite, got 0.0"),
    (KIND, b"\x07", "tensor 0: a per-channel quantized tensor has lo = hi = 0 (ranges are in the manifest)"),
    (KIND, b"\x82", "tensor 0: only code kinds (1, 5, 6, 7, 8) can be coded, got kind 2 coded"),
    (KIND, b"\x81", "tensor 0: a coded payload must be shorter than the 2 bytes of packed codes it replaces, got 2"),
    (
        KIND,
        b"\x05",
        "tensor 0: a per-channel quantized tensor has lo = hi = 0 (ranges are in the manifest), got lo=0.0",
    ),
    (KIND, b"\x02", "tensor 0: bits 4 not valid for kind float16 (must be 16)"),
    (KIND, b"\x03", "tensor 0: bits 4 not valid for kind float32 (must be 32)"),
    (KIND, b"\x04", "tensor 0: bits 4 not valid for kind encoded_image (must be 8)"),
    (BITS, b"\x00", "tensor 0: bits 0 not valid for kind quantized (must be 1..8)"),
    (BITS, b"\x09", "tensor 0: bits 9 not valid for kind quantized (must be 1..8)"),
    (BITS, b"\x10", "tensor 0: bits 16 not valid for kind quantized (must be 1..8)"),
    (NDIM, b"\x00", "tensor 0: ndim 0 out of range 1..8"),
    (NDIM, b"\x09", "tensor 0: ndim 9 out of range 1..8"),
    (NDIM, b"\xff", "tensor 0: ndim 255 out of range 1..8"),
    (NDIM, b"\x01", "tensor 0: payload length 8589934595 does not match shape (1,) at 4 bits (1 bytes)"),
    (NDIM, b"\x03", "frame truncated: tensor 0 dims, payload length and name needs 21 bytes at offset 68, 19 remain"),
    (NAME_LEN, b"\xff", "frame truncated: tensor 0 dims, payload length and name needs 271 bytes at offset 68, 19"),
    (NAME_LEN, b"\x02", "frame truncated: tensor 0 payload needs 2 bytes, 1 remain"),
    (NAME_LEN, b"\x00", "frame has 1 trailing bytes between the last payload and the CRC"),
    (LO, struct.pack("<f", float("nan")), "tensor 0: quantization lo must be finite, got nan"),
    (LO, struct.pack("<f", float("-inf")), "tensor 0: quantization lo must be finite, got -inf"),
    (HI, struct.pack("<f", float("inf")), "tensor 0: quantization hi must be finite, got inf"),
    (LO, struct.pack("<f", 1.5), "tensor 0: quantization range needs lo < hi (as float32), got lo=1.5, hi=1.5"),
    (LO, struct.pack("<f", 2.0), "tensor 0: quantization range needs lo < hi (as float32), got lo=2.0, hi=1.5"),
    (DIM0, b"\x00\x00\x00\x00", "tensor 0: dim 0 is 0; every dim must be in 1..4294967295"),
    (DIM1, b"\x00\x00\x00\x00", "tensor 0: dim 1 is 0; every dim must be in 1..4294967295"),
    (DIM1, b"\x05\x00\x00\x00", "tensor 0: payload length 2 does not match shape (1, 5) at 4 bits (3 bytes)"),
    (DIM1, b"\xff\xff\xff\xff", "tensor 0: payload length 2 does not match shape (1, 4294967295) at 4 bits"),
    (PAYLOAD_LEN, b"\x03", "tensor 0: payload length 3 does not match shape (1, 3) at 4 bits (2 bytes)"),
    (PAYLOAD_LEN, b"\xff" * 8, "tensor 0: payload length 18446744073709551615 does not match shape (1, 3)"),
    (NAME, b"\xff", "tensor 0: name is not valid utf-8 (invalid start byte at byte 0)"),
]


@pytest.mark.parametrize(("offset", "new", "message"), FIELD_CASES)
@pytest.mark.parametrize("sealed", [True, False])
def test_each_bad_field_is_refused_with_its_own_message(offset: int, new: bytes, message: str, sealed: bool) -> None:
    # Structure is checked before the CRC, so the message names the field whether or not the CRC was fixed up.
    refused(patch(GOLDEN, offset, new, reseal=sealed), message)


def test_bits_change_that_still_fits_is_caught_by_crc_only_when_unsealed() -> None:
    # 3 codes at 3 bits also take 2 bytes: structurally valid, so only the CRC can tell.
    assert decode_frame(patch(GOLDEN, BITS, b"\x03")).tensors[0].bits == 3
    refused(patch(GOLDEN, BITS, b"\x03", reseal=False), "frame CRC32 mismatch")


def _kind_frame(record: TensorRecord) -> bytes:
    return encode_frame(SPLIT, [record], REQ)


def test_float_and_image_kind_refusals() -> None:
    f16 = _kind_frame(quantized_record("h", np.ones((2,), dtype=np.float32), 16, -1.0, 1.0))
    # kind 2 with ndim 1, name "h": lo at 60, hi at 64, dims at 68, payload length at 72
    refused(patch(f16, LO, struct.pack("<f", float("nan"))), "tensor 0: lo and hi must be finite float32 values")
    refused(patch(f16, HI, struct.pack("<f", float("inf"))), "tensor 0: lo and hi must be finite float32 values")
    assert decode_frame(patch(f16, LO, struct.pack("<f", 5.0))).tensors[0].lo == 5.0  # no ordering for floats
    refused(patch(f16, BITS, b"\x20"), "tensor 0: bits 32 not valid for kind float16 (must be 16)")
    refused(patch(f16, 72, b"\x03"), "tensor 0: payload length 3 does not match shape (2,) at 16 bits (4 bytes)")

    img = _kind_frame(image_record("img", b"\x89PNG\r\n"))
    refused(patch(img, LO, struct.pack("<f", 1.0)), "tensor 0: an encoded image has lo = hi = 0, got lo=1.0, hi=0.0")
    refused(patch(img, HI, struct.pack("<f", -1.0)), "an encoded image has lo = hi = 0, got lo=0.0, hi=-1.0")
    refused(patch(img, NDIM, b"\x02"), "tensor 0: an encoded image has ndim 1 (its byte length), got 2")
    refused(patch(img, BITS, b"\x04"), "tensor 0: bits 4 not valid for kind encoded_image (must be 8)")
    refused(patch(img, 72, b"\x05"), "tensor 0: payload length 5 does not match the image byte length 6 in dims")
    refused(patch(img, DIM0, b"\x00"), "tensor 0: dim 0 is 0; every dim must be in 1..4294967295")


def test_per_channel_kind() -> None:
    x = np.array([[[0.1, 0.2], [10.0, 20.0], [-1.0, 1.0]]], dtype=np.float32)  # (1, 3, 2): three channels
    lo, hi = [0.0, 0.0, -1.0], [0.3, 30.0, 1.0]
    record = per_channel_record("pc", x, 4, lo, hi)
    assert (record.kind, record.lo, record.hi, record.shape) == (TensorKind.QUANTIZED_PER_CHANNEL, 0.0, 0.0, (1, 3, 2))
    frame = _kind_frame(record)
    decoded = decode_frame(frame).tensors[0]
    assert same_records(record, decoded)
    y = decode_record(decoded, (lo, hi))
    steps = np.array([0.3, 30.0, 2.0]) / 15
    assert np.all(np.abs(y - x) <= steps[None, :, None] / 2 + 1e-6)
    with pytest.raises(InvalidArgument, match="ranges come from the split's manifest"):
        decode_record(decoded)
    with pytest.raises(InvalidArgument, match="2 per-channel ranges for a tensor with 3 channels"):
        decode_record(decoded, (lo[:2], hi[:2]))
    # kind 5 with ndim 3, name "pc": lo at 60, hi at 64
    refused(patch(frame, HI, struct.pack("<f", 1.0)), "a per-channel quantized tensor has lo = hi = 0")
    refused(patch(frame, NDIM, b"\x01"), "tensor 0: a per-channel quantized tensor needs ndim >= 2")
    refused(patch(frame, BITS, b"\x10"), "tensor 0: bits 16 not valid for kind quantized_per_channel (must be 1..8)")


def test_duplicate_names_refused() -> None:
    z = np.zeros(2, dtype=np.float32)
    frame = encode_frame(SPLIT, [quantized_record("a", z, 8, 0, 1), quantized_record("b", z, 8, 0, 1)], REQ)
    second_name = frame.index(b"b", 56 + 12 + 4 + 8 + 1)
    refused(patch(frame, second_name, b"a"), "tensor 1: name 'a' appears twice; tensor names in a frame must be unique")


def _truncation_message(frame: bytes, k: int) -> str:
    return f"frame too short: {k} bytes, the fixed header and CRC alone need 60" if k < 60 else "frame truncated: "


def _multi_frame() -> bytes:
    c = np.linspace(-1, 1, 7, dtype=np.float32)
    return encode_frame(
        SPLIT,
        [quantized_record("a", c, 3, -1, 1), image_record("i", b"abc"), quantized_record("h", c, 16, 0, 0)],
        REQ,
    )


@pytest.mark.parametrize("frame", [GOLDEN, _multi_frame()], ids=["golden", "three-tensors"])
def test_truncation_at_every_offset_refused(frame: bytes) -> None:
    for k in range(len(frame)):
        with pytest.raises(InvalidFrame) as info:
            decode_frame(frame[:k])
        assert info.value.message.startswith(_truncation_message(frame, k)), (k, info.value.message)


def test_truncated_payload_message_is_exact() -> None:
    x = np.zeros((1, 128, 28, 28), dtype=np.float32)
    frame = encode_frame(SPLIT, [quantized_record("layer2", x, 4, -1, 1)], REQ)
    header_end = frame_overhead([("layer2", 4)]) - 4
    refused(frame[: header_end + 1200 + 4], "frame truncated: tensor 0 payload needs 50176 bytes, 1200 remain")
    refused(frame[: header_end - 3], "frame truncated: tensor 0 dims, payload length and name needs 30 bytes")


def test_trailing_bytes_refused() -> None:
    refused(GOLDEN + b"\x00", "frame has 1 trailing bytes between the last payload and the CRC")
    refused(reseal(GOLDEN[:-4] + b"junk"), "frame has 4 trailing bytes between the last payload and the CRC")
    refused(reseal(GOLDEN[:-4] + GOLDEN[:-4]), "frame has 87 trailing bytes")


def test_crc_mismatch_refused() -> None:
    bad = GOLDEN[:-1] + b"\x85"
    refused(bad, "frame CRC32 mismatch: trailer says 0x85be7b40, the frame bytes give 0x7abe7b40")
    flipped = patch(GOLDEN, PAYLOAD, b"\x20", reseal=False)
    actual = zlib.crc32(flipped[:-4])
    refused(flipped, f"frame CRC32 mismatch: trailer says 0x7abe7b40, the frame bytes give 0x{actual:08x}")
    refused(patch(GOLDEN, 8, b"\x00", reseal=False), "frame CRC32 mismatch")  # split id
    refused(patch(GOLDEN, 40, b"\xff", reseal=False), "frame CRC32 mismatch")  # request id


def test_every_single_bit_flip_is_refused() -> None:
    for i in range(len(GOLDEN) * 8):
        corrupted = bytearray(GOLDEN)
        corrupted[i // 8] ^= 1 << (i % 8)
        with pytest.raises(InvalidFrame):
            decode_frame(bytes(corrupted))


def test_oversize_refused_before_parsing() -> None:
    with pytest.raises(PayloadTooLarge, match=re.escape("frame is 91 bytes, the limit is 90")) as info:
        decode_frame(GOLDEN, max_bytes=90)
    assert info.value.status_code == 413
    with pytest.raises(PayloadTooLarge, match=re.escape("frame is 1000 bytes, the limit is 100")):
        decode_frame(b"\x00" * 1000, max_bytes=100)
    assert decode_frame(GOLDEN, max_bytes=91).request_id == REQ


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    for candidate in (data, GOLDEN[:8] + data, reseal(GOLDEN[:56] + data)):
        try:
            f = decode_frame(candidate)
        except InvalidFrame:
            continue
        assert encode_frame(f.split_id, f.tensors, f.request_id) == candidate  # whatever is accepted is canonical


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 86), st.integers(0, 255)), min_size=1, max_size=4))
def test_resealed_random_header_edits_refused_or_valid(edits: list[tuple[int, int]]) -> None:
    body = bytearray(GOLDEN[:-4])
    for offset, value in edits:
        body[offset] = value
    try:
        f = decode_frame(reseal(bytes(body)))
    except InvalidFrame:
        return
    t = f.tensors[0]  # whatever got through must be self-consistent
    assert len(t.payload) == packed_size(int(np.prod(t.shape)), t.bits)
    assert t.kind is not TensorKind.QUANTIZED or t.lo < t.hi


# ------------------------------------------------------------------------------------- encode refusals


def _rec(**changes: object) -> TensorRecord:
    base: dict[str, object] = {
        "name": "t",
        "kind": TensorKind.QUANTIZED,
        "bits": 4,
        "lo": 0.0,
        "hi": 1.0,
        "shape": (1, 3),
        "payload": b"\x21\x03",
    }
    base.update(changes)
    return TensorRecord(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_rec(kind=9), "tensor 0 ('t'): unknown kind 9"),
        (_rec(coded=True), "tensor 0 ('t'): a coded payload must be shorter than the 2 bytes of packed codes"),
        (_rec(bits=16), "tensor 0 ('t'): bits 16 not valid for kind quantized (must be 1..8)"),
        (_rec(bits=4.0), "tensor 0 ('t'): bits must be an int, got 4.0"),
        (_rec(kind=TensorKind.FLOAT32), "tensor 0 ('t'): bits 4 not valid for kind float32 (must be 32)"),
        (_rec(shape=()), "tensor 0 ('t'): ndim 0 out of range 1..8"),
        (_rec(shape=(1,) * 9), "tensor 0 ('t'): ndim 9 out of range 1..8"),
        (_rec(shape=(0, 3)), "tensor 0 ('t'): dim 0 is 0; every dim must be in 1..4294967295"),
        (_rec(shape=(1, 2**32)), "tensor 0 ('t'): dim 1 is 4294967296; every dim must be in 1..4294967295"),
        (_rec(shape=(1, 3.0)), "tensor 0 ('t'): shape must be ints"),
        (_rec(lo=1.0), "tensor 0 ('t'): quantization range needs lo < hi"),
        (_rec(hi=float("nan")), "tensor 0 ('t'): quantization hi must be finite, got nan"),
        (_rec(payload=b"\x21"), "tensor 0 ('t'): payload length 1 does not match shape (1, 3) at 4 bits (2 bytes)"),
        (_rec(name="n" * 256), "tensor 0: name is 256 utf-8 bytes, at most 255 fit"),
        (_rec(name="\ud800"), "tensor 0: name '\\ud800' cannot be encoded as utf-8"),
        (_rec(name=5), "tensor 0: name must be a str, got int"),
        (_rec(kind=TensorKind.FLOAT16, bits=16, shape=(1,), lo=1e39), "lo and hi must be finite float32 values"),
        (_rec(kind=TensorKind.ENCODED_IMAGE, bits=8, shape=(2,)), "an encoded image has lo = hi = 0"),
        (_rec(kind=TensorKind.ENCODED_IMAGE, bits=8, shape=(1, 2), lo=0.0, hi=0.0), "an encoded image has ndim 1"),
        (
            _rec(kind=TensorKind.ENCODED_IMAGE, bits=8, shape=(3,), lo=0.0, hi=0.0),
            "payload length 2 does not match the image byte length 3 in dims",
        ),
    ],
)
def test_encode_refuses_bad_records(record: TensorRecord, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        encode_frame(SPLIT, [record], REQ)


def test_encode_refuses_bad_frame_fields() -> None:
    r = golden_record()
    with pytest.raises(InvalidArgument, match="split id must be 64 lowercase hex chars"):
        encode_frame(SPLIT.upper(), [r])
    with pytest.raises(InvalidArgument, match="split id must be 64 lowercase hex chars"):
        encode_frame(SPLIT[:-1], [r])
    with pytest.raises(InvalidArgument, match="request id must be 32 lowercase hex chars"):
        encode_frame(SPLIT, [r], REQ + "0")
    with pytest.raises(InvalidArgument, match=re.escape("a frame carries 1..16 tensors, got 0")):
        encode_frame(SPLIT, [], REQ)
    many = [quantized_record(f"t{i}", np.zeros(1, dtype=np.float32), 8, 0, 1) for i in range(17)]
    with pytest.raises(InvalidArgument, match=re.escape("a frame carries 1..16 tensors, got 17")):
        encode_frame(SPLIT, many, REQ)
    assert len(decode_frame(encode_frame(SPLIT, many[:16], REQ)).tensors) == 16
    with pytest.raises(InvalidArgument, match=re.escape("tensor 1: name 'x' appears twice")):
        encode_frame(SPLIT, [r, r], REQ)
    with pytest.raises(InvalidArgument, match="expected a TensorRecord, got tuple"):
        encode_frame(SPLIT, [("x", 1)], REQ)  # type: ignore[list-item]


def test_quantized_record_refuses_bad_input() -> None:
    with pytest.raises(InvalidArgument, match="bits must be one of"):
        quantized_record("t", np.zeros(3, dtype=np.float32), 12, 0, 1)
    with pytest.raises(InvalidArgument, match=re.escape("tensor 0 ('t'): ndim 0 out of range 1..8")):
        quantized_record("t", np.float32(1.0), 8, 0, 1)
    with pytest.raises(InvalidArgument, match="quantization range needs lo < hi"):
        quantized_record("t", np.zeros(3, dtype=np.float32), 8, 1, 1)


# ------------------------------------------------------------------------------------ property round trip

names = st.text(max_size=12).filter(lambda s: len(s.encode("utf-8")) <= 255)
shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)
f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def records(draw: st.DrawFn, name: str) -> TensorRecord:
    kind = draw(st.sampled_from(list(TensorKind)))
    if kind is TensorKind.ENCODED_IMAGE:
        return image_record(name, draw(st.binary(min_size=1, max_size=30)))
    shape = draw(shapes)
    bits = draw(st.integers(1, 8)) if kind in CODE_KINDS else 16
    bits = 32 if kind is TensorKind.FLOAT32 else bits
    lo, hi = draw(f32), draw(f32)
    if kind in PER_CHANNEL_KINDS:
        lo = hi = 0.0
        shape = (*shape, 2) if len(shape) < 2 else shape
    if kind is TensorKind.QUANTIZED:
        lo, hi = min(lo, hi), max(lo, hi)
        assume(lo < hi)
    if kind is TensorKind.AFFINE:
        lo = draw(st.floats(2.0**-20, 2.0**20, width=32))
        hi = float(draw(st.integers(0, (1 << bits) - 1)))
    n = packed_size(int(np.prod(shape)), bits)
    payload = draw(st.binary(min_size=n, max_size=n))
    if kind in CODE_KINDS and draw(st.booleans()):
        coded = coded_record(TensorRecord(name, kind, bits, lo, hi, shape, payload))
        if coded.coded:
            return coded
    return TensorRecord(name, kind, bits, lo, hi, shape, payload)


@st.composite
def frames(draw: st.DrawFn) -> tuple[str, list[TensorRecord], str]:
    tensor_names = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    split = draw(st.binary(min_size=32, max_size=32)).hex()
    req = draw(st.binary(min_size=16, max_size=16)).hex()
    return split, [draw(records(n)) for n in tensor_names], req


@settings(max_examples=200, deadline=None)
@given(frames())
def test_frame_round_trip_property(case: tuple[str, list[TensorRecord], str]) -> None:
    split, recs, req = case
    frame = encode_frame(split, recs, req)
    assert len(frame) == frame_overhead([(r.name, len(r.shape)) for r in recs]) + sum(len(r.payload) for r in recs)
    f = decode_frame(frame)
    assert f.split_id == split and f.request_id == req
    assert all(same_records(a, b) for a, b in zip(recs, f.tensors, strict=True))
    assert encode_frame(f.split_id, f.tensors, f.request_id) == frame
