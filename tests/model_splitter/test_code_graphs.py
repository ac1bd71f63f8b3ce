"""The quantizer and dequantizer as ONNX graphs, run by real ONNX Runtime, against common/tensor_records.py's numpy."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from common.codes import codes_name, codes_to_features, codes_width, features_to_codes
from common.errors import FrameMismatch, InvalidArgument
from common.manifest import Quantization, SplitManifest, TensorRange, TensorSpec, sha256_hex
from common.tensor_records import decode_features, decode_record, encode_features, feature_record
from model_splitter.quantize.code_graphs import (
    dequantizer_model,
    head_with_codes,
    quantizer_model,
    tail_with_codes,
)
from model_splitter.store.registry import HEAD_CODES_FILE, TAIL_CODES_FILE
from tests.support import TinySplit

# 3 x 5 x 7 = 105 values a sample: not a multiple of 8 codes, so the last group is padded and trimmed.
SHAPE = [1, 3, 5, 7]
CHANNEL_LO = [-2.0, 0.0, -0.5]
CHANNEL_HI = [3.0, 1.5, 6.0]


def manifest_at(base: SplitManifest, bits: int, scheme: str, per_channel: bool) -> SplitManifest:
    channels = {"channel_lo": CHANNEL_LO, "channel_hi": CHANNEL_HI} if per_channel else {}
    clip = TensorRange(name="cut", lo=-1.25, hi=4.5, **channels)
    return base.model_copy(
        update={
            "cut": [TensorSpec(name="cut", shape=SHAPE)],
            "quantization": Quantization(bits=bits, ranges=[clip], scheme=scheme),  # type: ignore[arg-type]
        }
    )


def features(batch: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((batch, *SHAPE[1:])) * 3).astype(np.float32)
    x[0, 0, 0, :4] = [np.nan, np.inf, -np.inf, 0.0]
    x[-1, 1, 2, :3] = [1e30, -1e30, 0.0]
    # Values on the half steps, where rounding half to even decides the code.
    x[0, 2, 4, :] = np.float32(-1.25) + np.arange(7, dtype=np.float32) * np.float32(5.75 / 30)
    return x


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    (out,) = sessions(model).run(None, feeds)
    return np.asarray(out)


@pytest.mark.parametrize("per_channel", [False, True], ids=["tensor", "channel"])
@pytest.mark.parametrize("scheme", ["clip", "affine"])
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
def test_in_graph_codes_equal_numpy_byte_for_byte(
    tiny_split: TinySplit, bits: int, scheme: str, per_channel: bool
) -> None:
    manifest = manifest_at(tiny_split.manifest, bits, scheme, per_channel)
    clip = manifest.quantization.ranges[0]
    x = features(batch=3)
    codes = run(quantizer_model(manifest), {"cut": x})
    assert codes.dtype == np.uint8 and codes.shape == (3, (105 * bits + 7) // 8)
    records = [feature_record("cut", x[i : i + 1], bits, clip, scheme) for i in range(3)]
    for row, record in zip(codes, records, strict=True):
        assert row.tobytes() == bytes(record.payload)
    restored = run(dequantizer_model(manifest), {codes_name("cut"): codes})
    channels = (CHANNEL_LO, CHANNEL_HI) if per_channel else None
    expected = np.concatenate([decode_record(record, channels) for record in records])
    assert restored.shape == x.shape
    np.testing.assert_array_equal(restored, expected)
    if scheme == "affine":
        assert np.all(restored[x == 0] == 0)  # zero-exact, also in the graph


# 4 channels of 2 x 4 = 8 values: a channel's block is whole bytes at every width, as the graphs need.
MIXED_SHAPE = [1, 4, 2, 4]


def mixed_manifest(base: SplitManifest, widths: list[int], shape: list[int]) -> SplitManifest:
    channels = shape[1]
    clip = TensorRange(
        name="cut",
        lo=-2.0,
        hi=6.0,
        channel_lo=[-2.0, 0.0, -0.5, -1.0][:channels],
        channel_hi=[3.0, 1.5, 6.0, 0.25][:channels],
        channel_bits=widths,
    )
    quantization = Quantization(bits=sum(widths) // len(widths), ranges=[clip], scheme="affine")
    return base.model_copy(update={"cut": [TensorSpec(name="cut", shape=shape)], "quantization": quantization})


@pytest.mark.parametrize("widths", [[1, 8, 4, 3], [2, 2, 6, 6], [8, 8, 8, 8], [1, 1, 1, 1]])
def test_in_graph_codes_with_a_width_per_channel_equal_numpy_byte_for_byte(
    tiny_split: TinySplit, widths: list[int]
) -> None:
    manifest = mixed_manifest(tiny_split.manifest, widths, MIXED_SHAPE)
    clip = manifest.quantization.ranges[0]
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, *MIXED_SHAPE[1:])) * 3).astype(np.float32)
    x[0, 0, 0, :4] = [np.nan, np.inf, -np.inf, 0.0]
    codes = run(quantizer_model(manifest), {"cut": x})
    assert codes.dtype == np.uint8 and codes.shape == (3, 8 * sum(widths) // 8)
    records = [feature_record("cut", x[i : i + 1], manifest.quantization.bits, clip, "affine") for i in range(3)]
    assert {record.kind.name for record in records} == {"AFFINE_MIXED"}
    for row, record in zip(codes, records, strict=True):
        assert row.tobytes() == bytes(record.payload)
    restored = run(dequantizer_model(manifest), {codes_name("cut"): codes})
    channels = (clip.channel_lo or [], clip.channel_hi or [])
    expected = np.concatenate([decode_record(record, channels, widths) for record in records])
    np.testing.assert_array_equal(restored, expected)
    assert np.all(restored[x == 0] == 0)


def test_widths_per_channel_whose_blocks_are_not_whole_bytes_have_no_graphs(tiny_split: TinySplit) -> None:
    manifest = mixed_manifest(tiny_split.manifest, [3, 5, 4], [1, 3, 5, 7])  # 35 values a channel
    with pytest.raises(InvalidArgument, match="not whole bytes per channel"):
        quantizer_model(manifest)
    with pytest.raises(InvalidArgument, match="not whole bytes per channel"):
        dequantizer_model(manifest)


def test_float_widths_have_no_codes(tiny_split: TinySplit) -> None:
    manifest = manifest_at(tiny_split.manifest, 8, "clip", False)
    floats = manifest.model_copy(update={"quantization": manifest.quantization.model_copy(update={"bits": 16})})
    with pytest.raises(InvalidArgument, match="no codes"):
        quantizer_model(floats)


def test_head_and_tail_with_codes_serve_the_split(tiny_split: TinySplit) -> None:
    """tail_q(head_q(x)) is what the robot's numpy codes and the edge's numpy dequantization give, on the real split."""
    manifest = tiny_split.manifest
    head = onnx.load(str(tiny_split.registry.split_file(manifest.id, "head.onnx")))
    tail = onnx.load(str(tiny_split.registry.split_file(manifest.id, "tail.onnx")))
    x = np.random.default_rng(3).random((2, *manifest.input.shape[1:]), dtype=np.float32)
    features = sessions(head).run(None, {manifest.input.name: x})
    codes = sessions(head_with_codes(head, manifest)).run(None, {manifest.input.name: x})
    coding = manifest.quantization.model_copy(update={"entropy": "none"})  # the graph packs; it does not compress
    uncoded = manifest.model_copy(update={"quantization": coding})
    expected = []
    for i in range(2):
        records = encode_features(uncoded, [f[i : i + 1] for f in features])
        assert [rows[i].tobytes() for rows in codes] == [bytes(r.payload) for r in records]
        expected.append(sessions(tail).run(None, decode_features(uncoded, records))[0])
    feeds = {codes_name(s.name): c for s, c in zip(manifest.cut, codes, strict=True)}
    (answer,) = sessions(tail_with_codes(tail, manifest)).run(None, feeds)
    np.testing.assert_allclose(answer, np.concatenate(expected), rtol=1e-5, atol=1e-5)


def sessions(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_a_split_is_made_with_its_checked_code_graphs(tiny_split: TinySplit) -> None:
    """Split creation writes head_codes.onnx / tail_codes.onnx, checked, and the manifest names them by hash."""
    manifest, registry = tiny_split.manifest, tiny_split.registry
    graphs = manifest.code_graphs
    assert graphs is not None and graphs.samples == 2
    assert 0.0 <= graphs.tail_max_abs_diff <= graphs.tail_tolerance
    head_q = registry.split_file(manifest.id, HEAD_CODES_FILE).read_bytes()
    tail_q = registry.split_file(manifest.id, TAIL_CODES_FILE).read_bytes()
    assert (sha256_hex(head_q), sha256_hex(tail_q)) == (graphs.head_sha256, graphs.tail_sha256)
    x = np.random.default_rng(5).standard_normal((3, 3, 32, 32)).astype(np.float32)
    (codes,) = ort.InferenceSession(head_q).run(None, {manifest.input.name: x})
    (features,) = ort.InferenceSession(str(registry.split_file(manifest.id, "head.onnx"))).run(None, {"input": x})
    assert np.array_equal(codes, features_to_codes(manifest, [features])[codes_name(manifest.cut[0].name)])
    (answer,) = ort.InferenceSession(tail_q).run(None, {codes_name(manifest.cut[0].name): codes})
    (expected,) = ort.InferenceSession(str(registry.split_file(manifest.id, "tail.onnx"))).run(
        None, codes_to_features(manifest, {codes_name(manifest.cut[0].name): codes})
    )
    np.testing.assert_allclose(answer, expected, atol=1e-5)


def test_the_numpy_codes_round_trip_through_the_edge_decoder(tiny_split: TinySplit) -> None:
    """common/codes.py: rows are frame payloads at the split's width, and decoding them is decode_features'."""
    manifest = tiny_split.manifest
    (cut,) = manifest.cut
    features = np.random.default_rng(6).standard_normal((2, *cut.shape[1:])).astype(np.float32)
    codes = features_to_codes(manifest, [features])[codes_name(cut.name)]
    assert codes.shape == (2, codes_width(manifest, cut))
    for row, sample in zip(codes, features, strict=True):
        clip = manifest.quantization.range_of(cut.name)
        record = feature_record(cut.name, sample[None], manifest.quantization.bits, clip, manifest.quantization.scheme)
        assert row.tobytes() == bytes(record.payload)
    restored = codes_to_features(manifest, {codes_name(cut.name): codes})[cut.name]
    expected = [decode_features(manifest, encode_features(manifest, [s[None]]))[cut.name] for s in features]
    assert np.array_equal(restored, np.concatenate(expected))
    with pytest.raises(FrameMismatch, match=r"uint8 \[batch, "):
        codes_to_features(manifest, {codes_name(cut.name): codes[:, :-1]})


def test_a_cut_tensor_without_a_batch_axis_is_one_sample(tiny_split: TinySplit) -> None:
    """A detector's ``[boxes, 4]``: its codes are one row, the frame payload of the whole tensor."""
    clip = TensorRange(name="boxes", lo=0.0, hi=320.0)
    manifest = tiny_split.manifest.model_copy(
        update={
            "cut": [TensorSpec(name="boxes", shape=[150, 4])],
            "quantization": Quantization(bits=4, ranges=[clip], scheme="affine"),
        }
    )
    boxes = np.random.default_rng(2).uniform(0, 320, (150, 4)).astype(np.float32)
    codes = features_to_codes(manifest, [boxes])[codes_name("boxes")]
    record = feature_record("boxes", boxes, 4, clip, "affine")
    assert codes.shape == (1, 300) and codes[0].tobytes() == bytes(record.payload)
    assert np.array_equal(run(quantizer_model(manifest), {"boxes": boxes}), codes)
    restored = codes_to_features(manifest, {codes_name("boxes"): codes})["boxes"]
    assert np.array_equal(restored, decode_record(record))
