"""Registering a model: intake, export, verification, split-point analysis, then the registry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial

import onnx

from common.errors import InvalidArgument, UnprocessableModel
from common.manifest import Preprocessing
from model_splitter.graph.analysis import analyse_split_points
from model_splitter.graph.inputs import fed_inputs
from model_splitter.intake.formats import DEFAULT_INPUT_SHAPE as DEFAULT_INPUT_SHAPE
from model_splitter.intake.formats import IntakeResult, intake_torchvision, intake_upload, parse_input_shape
from model_splitter.intake.imagenet_labels import labels_for
from model_splitter.intake.torchvision_models import Architecture, architectures
from model_splitter.records import ModelRecord, Progress, no_progress
from model_splitter.store.jobs import Registration
from model_splitter.store.registry import MODEL_ID_HEX_LENGTH, Registry

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
GREY_MEAN = [0.449]
GREY_STD = [0.226]
# torchvision's classification recipe: resize the shorter side to 256, centre-crop 224.
RESIZE_RATIO = 256 / 224


@dataclass(frozen=True)
class UploadedFile:
    data: bytes
    filename: str


@dataclass(frozen=True)
class RegistrationRequest:
    """What a person sends to register a model: a file, or a torchvision name with optional weights."""

    model_file: UploadedFile | None
    arch: str | None
    weights: UploadedFile | None
    input_shape: str | None
    name: str | None


def registration_of(registry: Registry, request: RegistrationRequest, allow_pickle: bool) -> Registration:
    """The registration ``request`` asks for, ready to run now or as a background job (checked before either)."""
    shape = parse_input_shape(request.input_shape)
    name = request.name or None
    if request.model_file is not None:
        upload = request.model_file
        return partial(register_upload, registry, upload.data, upload.filename, shape, name, allow_pickle)
    if request.arch:
        weights = request.weights
        weight_bytes, weight_name = (weights.data, weights.filename) if weights is not None else (None, None)
        return partial(register_torchvision, registry, request.arch, weight_bytes, weight_name, shape, name)
    raise InvalidArgument("send a model file in the field 'file', or a torchvision architecture name in 'arch'")


def architecture_list() -> list[Architecture]:
    """The torchvision architectures registration takes by name, with their family."""
    return list(architectures())


def default_preprocessing(input_shape: tuple[int, ...]) -> Preprocessing:
    if len(input_shape) != 4 or input_shape[1] not in (1, 3):
        raise UnprocessableModel(
            f"input shape {list(input_shape)} is not an image batch (N, 1 or 3, H, W); only image models are served"
        )
    height, width = input_shape[2], input_shape[3]
    grey = input_shape[1] == 1
    return Preprocessing(
        resize_shorter_to=round(min(height, width) * RESIZE_RATIO),
        crop=[height, width],
        mean=GREY_MEAN if grey else IMAGENET_MEAN,
        std=GREY_STD if grey else IMAGENET_STD,
        color="L" if grey else "RGB",
    )


def register_upload(
    registry: Registry,
    data: bytes,
    filename: str | None,
    input_shape: tuple[int, ...],
    name: str | None,
    allow_pickle: bool,
    progress: Progress = no_progress,
) -> ModelRecord:
    progress("exporting")
    result = intake_upload(data, filename, input_shape, allow_pickle=allow_pickle)
    return _finish(registry, result, name or _stem(filename) or "model", progress)


def register_torchvision(
    registry: Registry,
    arch: str,
    weights: bytes | None,
    weights_filename: str | None,
    input_shape: tuple[int, ...],
    name: str | None,
    progress: Progress = no_progress,
) -> ModelRecord:
    progress("exporting")
    result = intake_torchvision(arch, weights, weights_filename, input_shape)
    return _finish(registry, result, name or arch, progress)


def _finish(registry: Registry, result: IntakeResult, name: str, progress: Progress) -> ModelRecord:
    progress("verifying")
    preprocessing = default_preprocessing(result.input_shape)
    onnx_bytes = result.model.SerializeToString()
    progress("finding split points")
    points = analyse_split_points(result.model, (1, *result.input_shape[1:]), pair_cuts=True)
    if not points:
        raise UnprocessableModel(
            "the model has no single tensor, nor a pair of floating-point tensors, that every path from input to "
            "output passes through, so it cannot be split; it can still be run whole on the robot or the edge"
        )
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    record = ModelRecord(
        id=sha[:MODEL_ID_HEX_LENGTH],
        name=name,
        sha256=sha,
        size_bytes=len(onnx_bytes),
        source_format=result.source_format,
        architecture=result.architecture,
        input_shape=list(result.input_shape),
        fixed_batch=_fixed_batch(result.model),
        weights_trained=result.weights_trained,
        export_max_abs_diff=result.export_max_abs_diff,
        num_classes=result.num_classes,
        opset=max((o.version for o in result.model.opset_import if o.domain in ("", "ai.onnx")), default=0),
        created_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        preprocessing=preprocessing,
        split_points=points,
    )
    progress("saving")
    return registry.save_model(record, onnx_bytes, labels_for(result.num_classes))


def _stem(filename: str | None) -> str | None:
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] or None


def _fixed_batch(model: onnx.ModelProto) -> int | None:
    (graph_input,) = fed_inputs(model.graph)
    dims = graph_input.type.tensor_type.shape.dim
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") else None
