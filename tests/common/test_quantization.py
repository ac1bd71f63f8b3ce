"""Quantization and bit packing: exact bytes against a slow reference, round-trip bounds, refusals."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import InvalidArgument, InvalidFrame
from common.quantization import (
    SUPPORTED_BITS,
    decode_tensor,
    dequantize,
    encode_tensor,
    pack_codes,
    packed_size,
    quantize,
    unpack_codes,
    validate_bits,
    validate_range,
)

QBITS = range(1, 9)


def ref_pack(codes: list[int], bits: int) -> bytes:
    """The spec, one bit at a time: code i's bit j is stream bit i*bits+j, stream bit k is bit k%8 of byte k//8."""
    out = bytearray((len(codes) * bits + 7) // 8)
    for i, code in enumerate(codes):
        for j in range(bits):
            k = i * bits + j
            out[k // 8] |= ((code >> j) & 1) << (k % 8)
    return bytes(out)


def ref_unpack(data: bytes, bits: int, count: int) -> list[int]:
    codes = []
    for i in range(count):
        code = 0
        for j in range(bits):
            k = i * bits + j
            code |= ((data[k // 8] >> (k % 8)) & 1) << j
        codes.append(code)
    return codes


def ref_quantize(values: list[float], bits: int, lo: float, hi: float) -> list[int]:
    """Element by element with float32 scalars, as the module docstring specifies."""
    levels = 2**bits - 1
    lo32, hi32 = np.float32(lo), np.float32(hi)
    scale = np.float32(levels / (float(hi32) - float(lo32)))
    out = []
    for v in values:
        t = float((np.float32(v) - lo32) * scale)
        out.append(0 if t != t else min(max(round(t), 0), levels))  # round() is half-to-even, like rint
    return out


def tolerance(bits: int, lo: float, hi: float) -> float:
    """Half a step, plus a few float32 ulps of the range ends for the float32 arithmetic."""
    lo32, hi32 = float(np.float32(lo)), float(np.float32(hi))
    ulp = float(np.spacing(np.float32(max(abs(lo32), abs(hi32)))))
    return (hi32 - lo32) / ((1 << bits) - 1) / 2 + 4 * ulp


# Hand-computed from the bit order in the docstring (stream LSB first).
KNOWN = [
    (1, [1, 0, 1, 1, 0, 0, 0, 0, 1], b"\x0d\x01"),
    (2, [0, 1, 2, 3, 3], b"\xe4\x03"),
    (3, [7, 0, 5], b"\x47\x01"),
    (4, [1, 2, 3], b"\x21\x03"),
    (4, [0xF, 0x0, 0xA, 0x5], b"\x0f\x5a"),
    (5, [31, 1], b"\x3f\x00"),
    (6, [42, 21], b"\x6a\x05"),
    (7, [127, 0, 1], b"\x7f\x40\x00"),
    (8, [0, 255, 7], b"\x00\xff\x07"),
]


@pytest.mark.parametrize(("bits", "codes", "expected"), KNOWN)
def test_pack_known_bytes(bits: int, codes: list[int], expected: bytes) -> None:
    assert ref_pack(codes, bits) == expected
    assert pack_codes(np.array(codes, dtype=np.uint8), bits) == expected
    assert unpack_codes(expected, bits, len(codes)).tolist() == codes


@pytest.mark.parametrize("bits", QBITS)
@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 8, 9, 15, 17, 1001])
def test_pack_matches_reference(bits: int, count: int) -> None:
    rng = np.random.default_rng(bits * 1000 + count)
    codes = rng.integers(0, 2**bits, count).astype(np.uint8)
    packed = pack_codes(codes, bits)
    assert packed == ref_pack(codes.tolist(), bits)
    assert len(packed) == packed_size(count, bits) == -(-count * bits // 8)
    out = unpack_codes(packed, bits, count)
    assert out.dtype == np.uint8 and out.shape == (count,)
    assert out.tolist() == codes.tolist() == ref_unpack(packed, bits, count)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 8).flatmap(lambda b: st.tuples(st.just(b), st.lists(st.integers(0, 2**b - 1), max_size=70))))
def test_pack_unpack_property(case: tuple[int, list[int]]) -> None:
    bits, codes = case
    packed = pack_codes(np.array(codes, dtype=np.uint8), bits)
    assert packed == ref_pack(codes, bits)
    assert unpack_codes(memoryview(packed), bits, len(codes)).tolist() == codes


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 8), st.binary(max_size=40))
def test_unpack_any_bytes_stays_in_range(bits: int, data: bytes) -> None:
    count = len(data) * 8 // bits
    if -(-count * bits // 8) != len(data):
        with pytest.raises(InvalidFrame):
            unpack_codes(data, bits, count)
        return
    codes = unpack_codes(data, bits, count)
    assert codes.tolist() == ref_unpack(data, bits, count)
    assert all(c < 2**bits for c in codes.tolist())


def test_unpack_result_is_writable_and_owned() -> None:
    for bits in QBITS:
        out = unpack_codes(b"\xff" * bits, bits, 8)
        assert out.flags.writeable and out.flags.c_contiguous
        assert out.tolist() == [2**bits - 1] * 8


def test_unpack_refuses_wrong_length() -> None:
    with pytest.raises(InvalidFrame, match=re.escape("packed codes: 3 values at 4 bits need 2 bytes, got 3")):
        unpack_codes(b"\x00\x00\x00", 4, 3)
    with pytest.raises(InvalidFrame, match=re.escape("packed codes: 9 values at 1 bits need 2 bytes, got 1")):
        unpack_codes(b"\x00", 1, 9)


def test_pack_refuses_codes_out_of_range() -> None:
    with pytest.raises(InvalidArgument, match=re.escape("codes must be in [0, 15] for 4 bits, got 16")):
        pack_codes(np.array([1, 16], dtype=np.uint8), 4)
    with pytest.raises(InvalidArgument, match=re.escape("codes must be in [0, 255] for 8 bits")):
        pack_codes(np.array([256]), 8)
    with pytest.raises(InvalidArgument, match="codes must be integers"):
        pack_codes(np.array([1.0]), 4)
    assert pack_codes(np.array([[1], [2]], dtype=np.int64), 4) == b"\x21"


@pytest.mark.parametrize("bits", QBITS)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("lo", "hi"), [(-3.0, 3.0), (0.0, 6.5), (-7.25, -1.5), (100.0, 100.5), (-1e4, 2e4)])
def test_round_trip_within_half_step(bits: int, seed: int, lo: float, hi: float) -> None:
    rng = np.random.default_rng(seed)
    x = rng.uniform(lo, hi, (3, 5, 67)).astype(np.float32)
    x.flat[:2] = [lo, hi]
    y = decode_tensor(encode_tensor(x, bits, lo, hi), bits, lo, hi, x.shape)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert float(np.max(np.abs(y.astype(np.float64) - x))) <= tolerance(bits, lo, hi)


@pytest.mark.parametrize("bits", QBITS)
@pytest.mark.parametrize("count", [1, 3, 7, 1001])
def test_odd_counts(bits: int, count: int) -> None:
    x = np.linspace(-2.0, 1.0, count, dtype=np.float32)
    codes = quantize(x, bits, -2.0, 1.0)
    assert codes.tolist() == ref_quantize(x.tolist(), bits, -2.0, 1.0)
    payload = encode_tensor(x, bits, -2.0, 1.0)
    assert payload == ref_pack(codes.tolist(), bits)
    y = decode_tensor(payload, bits, -2.0, 1.0, (count,))
    assert float(np.max(np.abs(y - x))) <= tolerance(bits, -2.0, 1.0)


@pytest.mark.parametrize("bits", QBITS)
def test_quantize_matches_scalar_reference(bits: int) -> None:
    x = np.random.default_rng(bits).normal(0.0, 2.0, 2000).astype(np.float32)
    assert quantize(x, bits, -2.5, 3.0).tolist() == ref_quantize(x.tolist(), bits, -2.5, 3.0)


def test_values_outside_range_clip_to_the_ends() -> None:
    x = np.array([-100.0, -1.0001, 5.0001, 1e30, -np.inf, np.inf, np.nan], dtype=np.float32)
    assert quantize(x, 4, -1.0, 5.0).tolist() == [0, 0, 15, 15, 0, 15, 0]
    y = decode_tensor(encode_tensor(x, 4, -1.0, 5.0), 4, -1.0, 5.0, x.shape)
    assert y.tolist() == [-1.0, -1.0, 5.0, 5.0, -1.0, 5.0, -1.0]
    assert dequantize(np.array([0, 255], dtype=np.uint8), 8, -7.5, -0.5, (2,)).tolist() == [-7.5, -0.5]


def test_rint_rounds_half_to_even() -> None:
    x = np.array([0.5, 1.5, 2.5, 3.5, 14.5], dtype=np.float32)
    assert quantize(x, 4, 0.0, 15.0).tolist() == [0, 2, 2, 4, 14]


def test_quantize_flattens_in_c_order_for_any_layout_and_dtype() -> None:
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 23.0
    expected = quantize(np.ascontiguousarray(x.transpose(2, 0, 1)).astype(np.float32), 8, 0.0, 1.0)
    assert quantize(x.transpose(2, 0, 1), 8, 0.0, 1.0).tolist() == expected.tolist()
    assert quantize(np.asfortranarray(x), 3, 0.0, 1.0).tolist() == quantize(x, 3, 0.0, 1.0).tolist()
    assert quantize(np.array([0, 1, 2], dtype=np.int32), 2, 0.0, 3.0).tolist() == [0, 1, 2]
    assert quantize(x, 8, 0.0, 1.0).tolist() == [round(v * 255) for v in x.astype(np.float32).ravel().tolist()]


def test_dequantize_output_is_fresh_float32() -> None:
    y = dequantize(np.array([0, 1, 2, 3], dtype=np.uint8), 2, -3.0, 3.0, (2, 2))
    assert y.dtype == np.float32 and y.flags.c_contiguous and y.flags.writeable
    assert y.tolist() == [[-3.0, -1.0], [1.0, 3.0]]
    with pytest.raises(InvalidArgument, match=re.escape("4 codes cannot fill shape (3,) (3 values)")):
        dequantize(np.zeros(4, dtype=np.uint8), 2, -3.0, 3.0, (3,))


@pytest.mark.parametrize("bits", SUPPORTED_BITS)
def test_decode_is_writable_from_readonly_bytes(bits: int) -> None:
    x = np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5)
    payload = bytes(encode_tensor(x, bits, -1.0, 1.0))
    y = decode_tensor(memoryview(payload), bits, -1.0, 1.0, (2, 5))
    assert y.flags.writeable and y.flags.c_contiguous and y.dtype == np.float32 and y.shape == (2, 5)
    y[0, 0] = 42.0
    assert decode_tensor(payload, bits, -1.0, 1.0, (2, 5))[0, 0] == -1.0


def test_float16_and_float32_are_raw_little_endian_without_clipping() -> None:
    x = np.array([[0.1, -2.5, 1000.0], [70000.0, -1e-8, 3.0]], dtype=np.float32)
    with np.errstate(over="ignore"):
        expected16 = x.astype("<f2")
    p16 = encode_tensor(x, 16, 0.0, 1.0)
    assert p16 == expected16.tobytes()
    assert p16[:2] == np.float16(0.1).tobytes() == b"\x66\x2e"
    y16 = decode_tensor(p16, 16, 0.0, 1.0, (2, 3))
    assert y16.tolist() == expected16.astype(np.float32).tolist()
    assert y16[0, 2] == 1000.0 and y16[1, 0] == np.inf
    p32 = encode_tensor(x, 32, 0.0, 1.0)
    assert p32 == x.astype("<f4").tobytes()
    assert p32[4:8] == b"\x00\x00\x20\xc0"  # -2.5
    assert np.array_equal(decode_tensor(p32, 32, 0.0, 1.0, (2, 3)), x)
    assert encode_tensor(x.astype(np.float64), 32, 0, 1) == p32


def test_decode_tensor_refuses_wrong_payload_length() -> None:
    msg = "tensor payload is 11 bytes, shape (2, 3) at 16 bits needs 12"
    with pytest.raises(InvalidFrame, match=re.escape(msg)):
        decode_tensor(b"\x00" * 11, 16, 0.0, 1.0, (2, 3))
    with pytest.raises(InvalidFrame, match=re.escape("shape (1, 128, 28, 28) at 4 bits needs 50176")):
        decode_tensor(b"\x00" * 1200, 4, 0.0, 1.0, (1, 128, 28, 28))


def test_packed_size() -> None:
    assert [packed_size(1001, b) for b in QBITS] == [126, 251, 376, 501, 626, 751, 876, 1001]
    assert packed_size(100352, 4) == 50176
    assert packed_size(5, 16) == 10 and packed_size(5, 32) == 20 and packed_size(0, 3) == 0
    with pytest.raises(InvalidArgument):
        packed_size(5, 12)
    with pytest.raises(InvalidArgument, match="count must be >= 0"):
        packed_size(-1, 4)


@pytest.mark.parametrize("bad", [0, 9, 12, 64, -4, True, 4.0, "4", None])
def test_validate_bits_refuses(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="bits must be one of 1, 2, 3, 4, 5, 6, 7, 8, 16, 32"):
        validate_bits(bad)


def test_validate_bits_accepts() -> None:
    assert [validate_bits(b) for b in SUPPORTED_BITS] == list(SUPPORTED_BITS)
    assert validate_bits(np.int64(4)) == 4


@pytest.mark.parametrize("bits", [16, 32])
def test_quantize_refuses_float_widths(bits: int) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(f"bits must be 1..8 for quantization and packing, got {bits}")):
        quantize(np.zeros(3, dtype=np.float32), bits, 0.0, 1.0)
    with pytest.raises(InvalidArgument, match=re.escape("bits must be 1..8")):
        pack_codes(np.zeros(3, dtype=np.uint8), bits)


@pytest.mark.parametrize(
    ("lo", "hi", "message"),
    [
        (1.0, 1.0, "needs lo < hi (as float32), got lo=1.0, hi=1.0"),
        (2.0, -2.0, "needs lo < hi (as float32), got lo=2.0, hi=-2.0"),
        (1.0, 1.0 + 1e-12, "needs lo < hi (as float32), got lo=1.0, hi=1.0"),
        (float("nan"), 1.0, "quantization lo must be finite, got nan"),
        (0.0, float("inf"), "quantization hi must be finite, got inf"),
        (-1e39, 0.0, "does not fit in float32"),
        ("0", 1.0, "quantization lo must be a real number, got '0'"),
        (0.0, None, "quantization hi must be a real number, got None"),
    ],
)
def test_validate_range_refuses(lo: object, hi: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        validate_range(lo, hi)
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        quantize(np.zeros(2, dtype=np.float32), 4, lo, hi)  # type: ignore[arg-type]


def test_validate_range_rounds_to_float32() -> None:
    assert validate_range(-3, 0.1) == (-3.0, float(np.float32(0.1)))


def test_quantize_refuses_non_numeric_arrays() -> None:
    with pytest.raises(InvalidArgument, match="cannot quantize an array of dtype complex128"):
        quantize(np.zeros(2, dtype=complex), 4, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- per channel


@pytest.mark.parametrize("bits", QBITS)
def test_per_channel_matches_per_tensor_channel_by_channel(bits: int) -> None:
    from common.quantization import dequantize_per_channel, quantize_per_channel

    rng = np.random.default_rng(bits)
    x = rng.normal(0, 3, (2, 5, 4, 3)).astype(np.float32)
    lo = rng.uniform(-4, -0.1, 5)
    hi = rng.uniform(0.1, 4, 5)
    codes = quantize_per_channel(x, bits, lo, hi).reshape(x.shape)
    y = dequantize_per_channel(codes, bits, lo, hi, x.shape)
    assert y.dtype == np.float32 and y.flags.c_contiguous and y.flags.writeable
    for c in range(5):
        # Byte for byte what the per-tensor functions give on that channel alone, with its own range.
        assert np.array_equal(codes[:, c], quantize(x[:, c], bits, lo[c], hi[c]).reshape(x[:, c].shape))
        assert np.array_equal(y[:, c], dequantize(codes[:, c], bits, lo[c], hi[c], x[:, c].shape))


def test_per_channel_with_one_shared_range_is_per_tensor() -> None:
    from common.quantization import decode_tensor_per_channel, encode_tensor_per_channel

    x = np.random.default_rng(1).uniform(-1, 9, (1, 3, 7)).astype(np.float32)
    payload = encode_tensor_per_channel(x, 3, [-1.0] * 3, [8.0] * 3)
    assert payload == encode_tensor(x, 3, -1.0, 8.0)
    assert np.array_equal(
        decode_tensor_per_channel(payload, 3, [-1.0] * 3, [8.0] * 3, x.shape),
        decode_tensor(payload, 3, -1.0, 8.0, x.shape),
    )


def test_per_channel_refusals() -> None:
    from common.quantization import decode_tensor_per_channel, quantize_per_channel, validate_channel_ranges

    x = np.zeros((1, 2, 3), dtype=np.float32)
    with pytest.raises(InvalidArgument, match="3 per-channel ranges for a tensor with 2 channels"):
        quantize_per_channel(x, 4, [0, 0, 0], [1, 1, 1])
    with pytest.raises(InvalidArgument, match=re.escape("per-channel range of channel 1 must be finite")):
        validate_channel_ranges([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(InvalidArgument, match="channel axis 1"):
        quantize_per_channel(np.zeros(3, dtype=np.float32), 4, [0.0], [1.0])
    with pytest.raises(InvalidFrame, match="at 4 bits needs 3"):
        decode_tensor_per_channel(b"\x00", 4, [0.0, 0.0], [1.0, 1.0], (1, 2, 3))
