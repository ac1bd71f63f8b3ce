"""Creating a split: cut the registered graph, verify head then tail equals the whole, write the bundle."""

from __future__ import annotations

import onnx

from common.errors import InvalidArgument, UnprocessableModel
from common.manifest import (
    Postprocessing,
    Quantization,
    SplitManifest,
    TensorRange,
    TensorSpec,
    Verification,
    sha256_hex,
)
from common.quantization import SUPPORTED_BITS
from model_splitter.cutting import cut_model
from model_splitter.registry import Registry
from model_splitter.schemas import ModelRecord, SplitPoint, SplitRequest
from model_splitter.verification import head_tail_max_abs_diff

MAX_HEAD_TAIL_DIFF = 1e-4
DEFAULT_CLIP = (0.0, 32.0)
# For tensors that can be negative (no ReLU-like op produced them) the fixed default is symmetric.
DEFAULT_SIGNED_CLIP = (-32.0, 32.0)
NON_NEGATIVE_OPS = frozenset({"Relu", "Clip", "Sigmoid", "HardSigmoid", "Softmax", "Abs"})


def find_split_point(record: ModelRecord, name: str) -> SplitPoint:
    for point in record.split_points:
        if name in (point.label, point.tensor):
            return point
    examples = ", ".join(p.label for p in record.split_points[:8])
    raise InvalidArgument(
        f"{name!r} is not a split point of model {record.id}; use a label or tensor name from "
        f"GET /api/models/{record.id}/split-points (for example: {examples})"
    )


def default_clip(model: onnx.ModelProto, tensor: str) -> tuple[float, float]:
    for node in model.graph.node:
        if tensor in node.output:
            if node.op_type in NON_NEGATIVE_OPS:
                return DEFAULT_CLIP
            return DEFAULT_SIGNED_CLIP
    return DEFAULT_SIGNED_CLIP


def check_request(request: SplitRequest) -> None:
    if request.bits not in SUPPORTED_BITS:
        raise InvalidArgument(f"bits must be one of {', '.join(map(str, SUPPORTED_BITS))}, got {request.bits}")
    if request.clip is not None:
        lo, hi = request.clip
        if not lo < hi:
            raise InvalidArgument(f"clip must be [lo, hi] with lo < hi, got [{lo}, {hi}]")


def create_split(registry: Registry, model_id: str, request: SplitRequest) -> SplitManifest:
    check_request(request)
    record = registry.get_model(model_id)
    point = find_split_point(record, request.split_point)
    model = onnx.load(str(registry.model_onnx_path(model_id)))
    head, tail = cut_model(model, [point.tensor])
    difference = head_tail_max_abs_diff(model, head, tail, tuple(record.input_shape))
    if not difference <= MAX_HEAD_TAIL_DIFF:
        raise UnprocessableModel(
            f"cutting at {point.label} changes the output by {difference:.3g} (more than {MAX_HEAD_TAIL_DIFF}); "
            "this split point cannot be used"
        )
    head_bytes = head.SerializeToString()
    tail_bytes = tail.SerializeToString()
    lo, hi = request.clip if request.clip is not None else default_clip(model, point.tensor)
    output = model.graph.output[0].name
    manifest = SplitManifest(
        model_id=record.id,
        model_name=record.name,
        model_sha256=record.sha256,
        weights_trained=record.weights_trained,
        split_point=point.label,
        input=TensorSpec(name=_input_name(model), shape=[1, *record.input_shape[1:]]),
        outputs=[TensorSpec(name=output, shape=[1, record.num_classes] if record.num_classes else [1])],
        cut=[TensorSpec(name=point.tensor, label=point.label, shape=point.shape, dtype=point.dtype)],
        quantization=Quantization(
            bits=request.bits, method="fixed", ranges=[TensorRange(name=point.tensor, lo=lo, hi=hi)]
        ),
        preprocessing=record.preprocessing,
        postprocessing=Postprocessing(labels=registry.model_labels(record.id)),
        verification=Verification(head_tail_max_abs_diff=difference, export_max_abs_diff=record.export_max_abs_diff),
        head_sha256=sha256_hex(head_bytes),
        tail_sha256=sha256_hex(tail_bytes),
    ).with_id()
    return registry.save_split(manifest, head_bytes, tail_bytes)


def _input_name(model: onnx.ModelProto) -> str:
    initializers = {init.name for init in model.graph.initializer}
    return str(next(i.name for i in model.graph.input if i.name not in initializers))
