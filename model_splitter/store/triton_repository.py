"""A split's tail as a Triton model repository (``<name>/1/model.onnx`` + ``<name>/config.pbtxt``), zipped.

Triton's ONNX Runtime backend serves it as it is; its dynamic batcher batches frames of many robots. The tail is,
where the split has one, the tail with the dequantizer inside: it takes the packed codes (``uint8 <cut>.codes``,
``[batch, bytes]``, common/codes.py), so a robot sends Triton what it would put in a frame and no Python runs on
the server; else (16/32-bit splits, models older than opset 13) the plain tail on float32 cut tensors.
``docs/deployment.md`` shows how to run it under NVIDIA's ``tritonserver`` image.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Literal

import onnx

from common.codes import codes_name, codes_width
from common.errors import InvalidArgument
from common.manifest import SplitManifest
from model_splitter.store.registry import TAIL_CODES_FILE, Registry

# What the tail takes: the packed codes (the tail with the dequantizer inside) or the float32 cut tensors.
TailInputs = Literal["codes", "features"]

# onnx element types -> Triton's DataType names (model_config.proto)
TRITON_TYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.DOUBLE: "TYPE_FP64",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
}
MAX_BATCH_LIMIT = 1024
MAX_DELAY_US = 1_000_000


@dataclass(frozen=True)
class TritonOptions:
    max_batch_size: int = 16
    max_queue_delay_us: int = 2000  # how long the dynamic batcher waits to fill a batch
    tensorrt: bool = False  # ONNX Runtime's TensorRT accelerator on the GPU
    fp16: bool = True  # with tensorrt: FP16 precision
    inputs: TailInputs | None = None  # None: codes where the split has them

    def checked(self) -> TritonOptions:
        if not 1 <= self.max_batch_size <= MAX_BATCH_LIMIT:
            raise InvalidArgument(f"max_batch_size must be 1..{MAX_BATCH_LIMIT}, got {self.max_batch_size}")
        if not 0 <= self.max_queue_delay_us <= MAX_DELAY_US:
            raise InvalidArgument(f"max_queue_delay_us must be 0..{MAX_DELAY_US}, got {self.max_queue_delay_us}")
        return self


def triton_repository_zip(registry: Registry, split_id: str, options: TritonOptions) -> tuple[str, bytes]:
    """(the model's name in the repository, the zip)."""
    options = options.checked()
    manifest = registry.get_split(split_id)
    inputs = options.inputs or ("codes" if manifest.code_graphs is not None else "features")
    if inputs == "codes":
        tail_path = registry.code_graph_file(split_id, TAIL_CODES_FILE)
    else:
        tail_path = registry.split_file(split_id, "tail.onnx")
    tail = onnx.load(str(tail_path), load_external_data=False)
    name = manifest.readable_name
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(tail_path, arcname=f"{name}/1/model.onnx")
        archive.writestr(f"{name}/config.pbtxt", model_config(manifest, tail, options, inputs))
    return name, buffer.getvalue()


def model_config(
    manifest: SplitManifest, tail: onnx.ModelProto, options: TritonOptions, inputs: TailInputs = "features"
) -> str:
    """config.pbtxt in Triton's text format. A tail whose batch axis is fixed gets max_batch_size 0 (no batching)
    and its full dims; otherwise the batch axis is Triton's and the dims leave it out."""
    types = {value.name: value.type.tensor_type.elem_type for value in [*tail.graph.input, *tail.graph.output]}
    batching = all(_dynamic_batch(value) for value in tail.graph.input)
    lines = [
        f'name: "{manifest.readable_name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {options.max_batch_size if batching else 0}",
        *_tensors("input", _inputs(manifest, inputs), types, batching),
        *_tensors("output", [(spec.name, spec.shape) for spec in manifest.outputs], types, batching),
        "instance_group [ { kind: KIND_AUTO count: 1 } ]",
    ]
    if batching:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}")
    if options.tensorrt:
        precision = "FP16" if options.fp16 else "FP32"
        lines.append(
            'optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt" '
            f'parameters {{ key: "precision_mode" value: "{precision}" }} }} ] }} }}'
        )
    lines.append(f'parameters {{ key: "split_id" value: {{ string_value: "{manifest.id}" }} }}')
    return "\n".join(lines) + "\n"


def _inputs(manifest: SplitManifest, inputs: TailInputs) -> list[tuple[str, list[int]]]:
    if inputs == "codes":
        return [(codes_name(spec.name), [1, codes_width(manifest, spec)]) for spec in manifest.cut]
    return [(spec.name, spec.shape) for spec in manifest.cut]


def _tensors(kind: str, tensors: list[tuple[str, list[int]]], types: dict[str, int], batching: bool) -> list[str]:
    """(name, shape with the batch axis first) as config entries; the type is the tail graph's own."""
    entries = []
    for name, shape in tensors:
        dims = shape[1:] if batching else shape
        triton_type = TRITON_TYPES.get(types.get(name, onnx.TensorProto.FLOAT), "TYPE_FP32")
        shown = ", ".join(str(d if d > 0 else -1) for d in dims) or "1"
        entries.append(f'  {{ name: "{_escaped(name)}" data_type: {triton_type} dims: [ {shown} ] }}')
    return [f"{kind} [", ",\n".join(entries), "]"]


def _dynamic_batch(value: onnx.ValueInfoProto) -> bool:
    dims = value.type.tensor_type.shape.dim
    return bool(dims) and not dims[0].HasField("dim_value")


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
