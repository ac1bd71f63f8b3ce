"""A split's tail as a Triton model repository: the layout Triton loads, a config its own schema parses, the tail."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from common.codes import codes_name, codes_to_features, codes_width, features_to_codes
from common.errors import InvalidArgument, NotFound
from model_splitter.store.registry import TAIL_CODES_FILE
from model_splitter.store.triton_repository import TritonOptions, triton_repository_zip
from tests.support import TinySplit, make_tiny_split


def parsed(config: bytes) -> model_config_pb2.ModelConfig:
    return text_format.Parse(config.decode(), model_config_pb2.ModelConfig())


def test_the_repository_holds_the_tail_and_a_config_triton_reads(tiny_split: TinySplit) -> None:
    manifest = tiny_split.manifest
    options = TritonOptions(max_batch_size=8, inputs="features")
    name, data = triton_repository_zip(tiny_split.registry, manifest.id, options)
    assert name == f"tiny-{manifest.split_point}-{manifest.quantization.bits}b"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == [f"{name}/1/model.onnx", f"{name}/config.pbtxt"]
        tail = archive.read(f"{name}/1/model.onnx")
        config = parsed(archive.read(f"{name}/config.pbtxt"))
    assert tail == tiny_split.registry.split_file(manifest.id, "tail.onnx").read_bytes()
    assert (config.name, config.platform, config.max_batch_size) == (name, "onnxruntime_onnx", 8)
    (cut,) = config.input
    assert cut.name == manifest.cut[0].name and list(cut.dims) == manifest.cut[0].shape[1:]
    assert cut.data_type == model_config_pb2.TYPE_FP32
    (output,) = config.output
    assert output.name == "output" and list(output.dims) == [10]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert config.parameters["split_id"].string_value == manifest.id
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    # what Triton's ONNX Runtime backend will load runs a batch as the config declares it
    session = ort.InferenceSession(tail)
    batch = np.zeros((8, *cut.dims), dtype=np.float32)
    assert session.run(None, {cut.name: batch})[0].shape == (8, *output.dims)


def test_by_default_the_tail_takes_the_codes_a_robot_sends(tiny_split: TinySplit) -> None:
    """The repository's tail is the one with the dequantizer inside: uint8 codes in, the split's answer out."""
    manifest, registry = tiny_split.manifest, tiny_split.registry
    name, data = triton_repository_zip(registry, manifest.id, TritonOptions(max_batch_size=4))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        tail_q = archive.read(f"{name}/1/model.onnx")
        config = parsed(archive.read(f"{name}/config.pbtxt"))
    assert tail_q == registry.split_file(manifest.id, TAIL_CODES_FILE).read_bytes()
    (cut,) = manifest.cut
    (codes_input,) = config.input
    assert codes_input.name == codes_name(cut.name) and codes_input.data_type == model_config_pb2.TYPE_UINT8
    assert list(codes_input.dims) == [codes_width(manifest, cut)]
    features = np.random.default_rng(3).standard_normal((4, *cut.shape[1:])).astype(np.float32)
    codes = features_to_codes(manifest, [features])
    (answer,) = ort.InferenceSession(tail_q).run(None, codes)
    tail = ort.InferenceSession(str(registry.split_file(manifest.id, "tail.onnx")))
    (expected,) = tail.run(None, codes_to_features(manifest, codes))
    assert answer.shape == (4, *config.output[0].dims)
    np.testing.assert_allclose(answer, expected, atol=1e-5)


def test_a_split_without_codes_exports_its_float_tail(tmp_path: Path) -> None:
    split = make_tiny_split(tmp_path, bits=16)
    assert split.manifest.code_graphs is None
    name, data = triton_repository_zip(split.registry, split.manifest.id, TritonOptions())
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        config = parsed(archive.read(f"{name}/config.pbtxt"))
    assert [entry.data_type for entry in config.input] == [model_config_pb2.TYPE_FP32]
    with pytest.raises(NotFound, match=r"no tail_codes\.onnx: it sends floats"):
        triton_repository_zip(split.registry, split.manifest.id, TritonOptions(inputs="codes"))


def test_tensorrt_fp16_is_an_option(tiny_split: TinySplit) -> None:
    _, data = triton_repository_zip(
        tiny_split.registry, tiny_split.manifest.id, TritonOptions(tensorrt=True, fp16=True, max_queue_delay_us=500)
    )
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        (config_name,) = [n for n in archive.namelist() if n.endswith("config.pbtxt")]
        config = parsed(archive.read(config_name))
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    assert config.dynamic_batching.max_queue_delay_microseconds == 500


def test_options_out_of_range_are_refused(tiny_split: TinySplit) -> None:
    with pytest.raises(InvalidArgument, match="max_batch_size"):
        triton_repository_zip(tiny_split.registry, tiny_split.manifest.id, TritonOptions(max_batch_size=0))
