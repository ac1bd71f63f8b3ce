"""A width per channel (wire kind 8): the bit stream against a reference written value by value, each channel's
values as kind 7 gives them at its width, zero exact, the frame round trip, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from common.affine import affine_channel_params, quantize_affine
from common.errors import InvalidArgument
from common.manifest import Quantization, TensorRange
from common.mixed_widths import decode_mixed, encode_mixed
from common.quantization import packed_size
from common.tensor_records import affine_channel_record, coded_record, decode_record, mixed_record
from common.wire import TensorKind, decode_frame, encode_frame

SPLIT = "cd" * 32
RNG = np.random.default_rng(8)
LO = [-2.0, -1.0, -3.0, -0.5, 0.1, -4.0]
HI = [2.0, 1.0, 0.5, 3.0, 4.0, 0.25]


def _features(shape: tuple[int, ...] = (2, 6, 3, 5)) -> np.ndarray:
    x = RNG.standard_normal(shape).astype(np.float32) * 2
    x[0, 2] = 0.0
    x[1, 0].flat[:3] = [np.nan, np.inf, -np.inf]
    x[1, 4].flat[-1] = 1e30
    return x


def _reference_stream(x: np.ndarray, widths: list[int]) -> bytes:
    """Each value's code (kind 7 at its channel's width), its low ``width`` bits one by one, LSB first."""
    bits: list[int] = []
    codes = {c: np.frombuffer(_channel_codes(x[:, c : c + 1], widths[c], c), np.uint8) for c in range(x.shape[1])}
    position = dict.fromkeys(range(x.shape[1]), 0)
    for _ in range(x.shape[0]):
        for c in range(x.shape[1]):
            for _value in range(int(np.prod(x.shape[2:]))):
                code = int(codes[c][position[c]])
                position[c] += 1
                bits += [(code >> k) & 1 for k in range(widths[c])]
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        out[i // 8] |= bit << (i % 8)
    return bytes(out)


def _channel_codes(channel: np.ndarray, bits: int, c: int) -> bytes:
    """One channel's codes, one per byte, in C order (kind 7's quantizer at ``bits``, unpacked)."""
    scales, zero_points = affine_channel_params([LO[c]], [HI[c]], bits)
    return quantize_affine(channel, bits, scales, zero_points).tobytes()


# 15 values a channel: blocks end inside bytes; 16: every block is whole bytes (the packer's fast path).
@pytest.mark.parametrize("shape", [(2, 6, 3, 5), (2, 6, 4, 4), (3, 6)])
@pytest.mark.parametrize("widths", [[1, 8, 4, 2, 5, 4], [3, 3, 3, 3, 3, 3], [8, 1, 1, 8, 4, 2], [7, 5, 3, 1, 2, 6]])
def test_the_stream_is_each_value_at_its_channels_width(widths: list[int], shape: tuple[int, ...]) -> None:
    x = _features(shape)
    payload = encode_mixed(x, widths, LO, HI)
    assert payload == _reference_stream(x, widths)
    average = sum(widths) // len(widths)
    assert len(payload) == packed_size(x.size, average)
    decoded = decode_mixed(payload, widths, LO, HI, x.shape)
    for c, bits in enumerate(widths):
        alone = affine_channel_record("c", x[:, c : c + 1], bits, [LO[c]], [HI[c]])
        np.testing.assert_array_equal(decoded[:, c : c + 1], decode_record(alone, ([LO[c]], [HI[c]])))
    assert np.all(decoded[0, 2] == 0.0)  # zero has a code at every width


@pytest.mark.parametrize("bits", range(1, 9))
def test_one_width_for_all_is_kind_7_byte_for_byte(bits: int) -> None:
    x = _features()
    assert encode_mixed(x, [bits] * 6, LO, HI) == bytes(affine_channel_record("t", x, bits, LO, HI).payload)


def test_a_frame_carries_it_and_the_manifest_decodes_it() -> None:
    x = np.zeros((1, 6, 16, 16), np.float32)  # sparse, as after a ReLU: Zstandard shortens the codes
    x[0, :, ::5, ::7] = RNG.standard_normal((6, 4, 3))
    widths = [2, 6, 4, 4, 3, 5]
    clip = TensorRange(name="t", lo=min(LO), hi=max(HI), channel_lo=LO, channel_hi=HI, channel_bits=widths)
    record = mixed_record("t", x, clip)
    assert (record.kind, record.bits, record.lo, record.hi) == (TensorKind.AFFINE_MIXED, 4, 0.0, 0.0)
    for sent in (record, coded_record(record)):
        (back,) = decode_frame(encode_frame(SPLIT, [sent])).tensors
        assert back.kind is TensorKind.AFFINE_MIXED and back.coded == sent.coded
        np.testing.assert_array_equal(
            decode_record(back, (LO, HI), widths), decode_mixed(record.payload, widths, LO, HI, x.shape)
        )
    assert coded_record(record).coded
    with pytest.raises(InvalidArgument, match="widths are in the manifest"):
        decode_record(record, (LO, HI))
    with pytest.raises(InvalidArgument, match="average 3"):
        decode_record(record, (LO, HI), [3] * 6)


@pytest.mark.parametrize(
    ("widths", "message"),
    [
        ([1, 2, 3, 4, 5, 6], "average a whole number of bits"),
        ([0, 8, 4, 4, 4, 4], "must be 1..8 bits, got \\[0\\]"),
        ([9, 3, 4, 4, 4, 0], "must be 1..8 bits"),
        ([4, 4, 4], "3 channel widths for a tensor with 6 channels"),
    ],
)
def test_widths_that_cannot_code_the_tensor_are_refused(widths: list[int], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        encode_mixed(_features(), widths, LO, HI)


def test_a_payload_of_the_wrong_size_is_refused() -> None:
    x = _features()
    payload = encode_mixed(x, [4] * 6, LO, HI)
    with pytest.raises(InvalidArgument, match="payload bytes"):
        decode_mixed(payload[:-1], [4] * 6, LO, HI, x.shape)


def test_the_manifest_holds_widths_only_where_they_fit() -> None:
    with pytest.raises(ValidationError, match="channel_bits needs channel_lo"):
        TensorRange(name="t", lo=-1, hi=1, channel_bits=[4, 4])
    with pytest.raises(ValidationError, match="2 channel widths for a tensor with 3"):
        TensorRange(name="t", lo=-1, hi=1, channel_lo=[-1, -1, -1], channel_hi=[1, 1, 1], channel_bits=[4, 4])
    clip = TensorRange(name="t", lo=-1, hi=1, channel_lo=[-1, -1], channel_hi=[1, 1], channel_bits=[2, 6])
    assert Quantization(bits=4, ranges=[clip], scheme="affine").ranges[0].average_bits() == 4
    with pytest.raises(ValidationError, match="average 4 bits"):
        Quantization(bits=2, ranges=[clip], scheme="affine")
    with pytest.raises(ValidationError, match="need affine codes"):
        Quantization(bits=4, ranges=[clip], scheme="clip")
