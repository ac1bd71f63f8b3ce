"""Zero-exact affine codes (wire kinds 6 and 7): hand-computed bytes, ONNX Runtime's QuantizeLinear and
DequantizeLinear as the reference, zero exact at every width."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from common.affine import affine_channel_params, affine_params, dequantize_affine, quantize_affine
from common.errors import InvalidArgument
from common.quantization import pack_codes
from common.tensor_records import affine_channel_record, affine_record, decode_record
from common.wire import TensorKind, decode_frame, encode_frame

SPLIT = "ab" * 32


def _linear_session(op: str, shape: tuple[int, ...], axis: int | None) -> ort.InferenceSession:
    """QuantizeLinear (float -> uint8) or DequantizeLinear (uint8 -> float), scales and zero points as inputs."""
    in_type, out_type = (TensorProto.FLOAT, TensorProto.UINT8) if op == "QuantizeLinear" else (TensorProto.UINT8,) * 2
    if op == "DequantizeLinear":
        out_type = TensorProto.FLOAT
    param_shape = [shape[1]] if axis is not None else []
    attributes = {"axis": axis} if axis is not None else {}
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "scale", "zero"], ["y"], **attributes)],
        "linear",
        [
            helper.make_tensor_value_info("x", in_type, list(shape)),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, param_shape),
            helper.make_tensor_value_info("zero", TensorProto.UINT8, param_shape),
        ],
        [helper.make_tensor_value_info("y", out_type, list(shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_worked_example_bytes() -> None:
    # [-1, 3] at 2 bits: scale = 4 / 3, zero point = rint(0.75) = 1. 0 -> 1, -1 -> rint(-0.75) + 1 = 0,
    # 1 -> rint(0.75) + 1 = 2, 2.7 -> rint(2.025) + 1 = 3, NaN -> the zero point; packed 1 | 0 << 2 | 2 << 4 | 3 << 6.
    scale, zero = affine_params(-1.0, 3.0, 2)
    assert (np.float32(scale), zero) == (np.float32(4.0 / 3.0), 1)
    codes = quantize_affine(np.array([[0.0, -1.0, 1.0, 2.7, np.nan]], np.float32), 2, scale, zero)
    assert codes.tolist() == [1, 0, 2, 3, 1]
    assert pack_codes(codes, 2) == bytes([0xE1, 0x01])
    record = affine_record("x", np.array([[0.0, -1.0, 1.0, 2.7, np.nan]], np.float32), 2, -1.0, 3.0)
    assert (record.kind, record.lo, record.hi, bytes(record.payload)) == (TensorKind.AFFINE, scale, 1.0, b"\xe1\x01")
    restored = decode_record(decode_frame(encode_frame(SPLIT, [record])).tensors[0])
    assert restored.tolist() == [[0.0, -np.float32(scale), np.float32(scale), 2 * np.float32(scale), 0.0]]


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize(("lo", "hi"), [(0.0, 6.0), (-178.0, 167.0), (-1.0, 1e-3), (0.5, 9.0), (-9.0, -0.5)])
def test_codes_equal_onnx_quantize_linear(bits: int, lo: float, hi: float) -> None:
    levels = (1 << bits) - 1
    scale, zero = affine_params(lo, hi, bits)
    rng = np.random.default_rng(bits)
    x = rng.uniform(lo * 1.3 - 1, hi * 1.3 + 1, size=(2, 3, 17)).astype(np.float32)
    # Exact ties (k + 0.5 steps) and zero itself, where rounding rules differ if they differ at all.
    x[0, 0, : levels + 1] = ((np.arange(levels + 1, dtype=np.float32) - zero + 0.5) * np.float32(scale))[:17]
    x[1, 2, :4] = 0.0
    quantize = _linear_session("QuantizeLinear", x.shape, None)
    reference = quantize.run(None, {"x": x, "scale": np.array(scale, np.float32), "zero": np.array(zero, np.uint8)})[0]
    ours = quantize_affine(x, bits, scale, zero).reshape(x.shape)
    # QuantizeLinear saturates to uint8; below 8 bits the codes are the same values clamped to the levels.
    assert np.array_equal(ours, np.minimum(reference, levels))
    assert (ours[1, 2, :4] == zero).all()
    dequantize = _linear_session("DequantizeLinear", x.shape, None)
    back = dequantize.run(None, {"x": ours, "scale": np.array(scale, np.float32), "zero": np.array(zero, np.uint8)})[0]
    assert np.array_equal(dequantize_affine(ours, bits, scale, zero, x.shape), back)


def test_per_channel_codes_equal_onnx_per_axis() -> None:
    bits = 4
    lo = np.array([0.0, -2.0, -0.1, 3.0], np.float32)
    hi = np.array([6.0, 2.0, 5.0, 4.0], np.float32)
    scales, zeros = affine_channel_params(lo, hi, bits)
    x = np.random.default_rng(0).normal(1.0, 3.0, size=(2, 4, 5, 5)).astype(np.float32)
    x[:, :, 0, 0] = 0.0
    session = _linear_session("QuantizeLinear", x.shape, 1)
    reference = session.run(None, {"x": x, "scale": scales, "zero": zeros.astype(np.uint8)})[0]
    record = affine_channel_record("t", x, bits, lo, hi)
    assert record.kind is TensorKind.AFFINE_PER_CHANNEL and (record.lo, record.hi) == (0.0, 0.0)
    codes = quantize_affine(x, bits, scales, zeros).reshape(x.shape)
    assert np.array_equal(codes, np.minimum(reference, 15))
    restored = decode_record(record, (lo.tolist(), hi.tolist()))
    assert (restored[:, :, 0, 0] == 0.0).all()


def test_per_channel_with_one_range_equals_per_tensor() -> None:
    x = np.random.default_rng(1).normal(size=(1, 3, 4, 4)).astype(np.float32)
    tensor = affine_record("t", x, 3, -2.0, 2.5)
    channels = affine_channel_record("t", x, 3, [-2.0] * 3, [2.5] * 3)
    assert bytes(tensor.payload) == bytes(channels.payload)


@settings(max_examples=200, deadline=None)
@given(
    bits=st.integers(1, 8),
    lo=st.floats(-1e4, 1e4, width=32),
    width=st.floats(2.0**-10, 1e4, width=32),
)
def test_zero_is_exact_for_any_range(bits: int, lo: float, width: float) -> None:
    hi = lo + width
    if not np.float32(lo) < np.float32(hi):
        return
    scale, zero = affine_params(lo, hi, bits)
    assert 0 <= zero <= (1 << bits) - 1
    codes = quantize_affine(np.zeros((1, 8), np.float32), bits, scale, zero)
    assert (codes == zero).all()
    assert (dequantize_affine(codes, bits, scale, zero, (1, 8)) == 0.0).all()


def test_refused_parameters() -> None:
    with pytest.raises(InvalidArgument, match=r"bits must be 1\.\.8"):
        affine_params(0.0, 1.0, 16)
    with pytest.raises(InvalidArgument, match="lo < hi"):
        affine_params(1.0, 1.0, 4)
    with pytest.raises(InvalidArgument, match="channel axis 1"):
        affine_channel_record("t", np.zeros(4, np.float32), 4, [0.0], [1.0])
