"""Registering a model: intake, export, verification, split-point analysis, then the registry."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial

import onnx

from common.errors import Conflict, InvalidArgument, UnprocessableModel
from model_splitter.graph.analysis import analyse_split_points
from model_splitter.graph.batch_rewrite import dynamic_batch_model, fixed_batch_of
from model_splitter.graph.folding import fold_constants
from model_splitter.intake.class_names import MAX_LABEL_FILE_BYTES as MAX_LABEL_FILE_BYTES
from model_splitter.intake.formats import DEFAULT_INPUT_SHAPE as DEFAULT_INPUT_SHAPE
from model_splitter.intake.formats import IntakeResult, intake_torchvision, intake_upload, parse_input_shape
from model_splitter.intake.tasks import TaskChoice, choose_task
from model_splitter.intake.tasks import TaskRequest as TaskRequest
from model_splitter.intake.tasks import default_preprocessing as default_preprocessing
from model_splitter.intake.torch_formats import refuse_code_in_torch_loads
from model_splitter.intake.torchvision_models import Architecture, architectures, family_of
from model_splitter.intake.worker import EXPORTS
from model_splitter.records import ModelRecord, Progress, no_progress
from model_splitter.store.registry import MODEL_ID_HEX_LENGTH, Registry

NO_TASK_REQUEST = TaskRequest()


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
    task: TaskRequest = NO_TASK_REQUEST


# A registration waiting to run, now or as a background job.
Registration = Callable[[Progress], ModelRecord]


def registration_of(registry: Registry, request: RegistrationRequest, allow_pickle: bool) -> Registration:
    """The registration ``request`` asks for, ready to run now or as a background job (checked before either)."""
    shape = parse_input_shape(request.input_shape)
    name = request.name or None
    if request.model_file is not None:
        upload = request.model_file
        return partial(register_upload, registry, upload.data, upload.filename, shape, name, allow_pickle, request.task)
    if request.arch:
        weights = request.weights
        weight_bytes, weight_name = (weights.data, weights.filename) if weights is not None else (None, None)
        return partial(
            register_torchvision, registry, request.arch, weight_bytes, weight_name, shape, name, request.task
        )
    raise InvalidArgument("send a model file in the field 'file', or a torchvision architecture name in 'arch'")


def architecture_list() -> list[Architecture]:
    """The torchvision architectures registration takes by name, with their family."""
    return list(architectures())


def register_upload(
    registry: Registry,
    data: bytes,
    filename: str | None,
    input_shape: tuple[int, ...],
    name: str | None,
    allow_pickle: bool,
    task: TaskRequest = NO_TASK_REQUEST,
    progress: Progress = no_progress,
) -> ModelRecord:
    progress("exporting")
    result = EXPORTS.run(_guarded_intake_upload, data, filename, input_shape, allow_pickle)
    return _finish(registry, result, name or _stem(filename) or "model", task, progress)


def _guarded_intake_upload(
    data: bytes, filename: str | None, input_shape: tuple[int, ...], allow_pickle: bool
) -> IntakeResult:
    """In the export worker: loads there are weights-only too, unless the operator allowed pickles."""
    if not allow_pickle:
        refuse_code_in_torch_loads()
    return intake_upload(data, filename, input_shape, allow_pickle=allow_pickle)


def register_torchvision(
    registry: Registry,
    arch: str,
    weights: bytes | None,
    weights_filename: str | None,
    input_shape: tuple[int, ...],
    name: str | None,
    task: TaskRequest = NO_TASK_REQUEST,
    progress: Progress = no_progress,
) -> ModelRecord:
    progress("exporting")
    result = EXPORTS.run(intake_torchvision, arch, weights, weights_filename, input_shape)
    return _finish(registry, result, name or arch, task, progress)


def register_dynamic_batch(registry: Registry, model_id: str, progress: Progress = no_progress) -> ModelRecord:
    """A fixed-batch model again, with a dynamic batch axis, as a model of its own (same task, labels and
    preprocessing); 409 when its batch is dynamic already, 422 when the rewrite does not answer as it does."""
    record = registry.get_model(model_id)
    progress("rewriting the batch axis")
    model = onnx.load(str(registry.model_onnx_path(model_id)))
    rewritten, difference = dynamic_batch_model(model, record.input_shape)
    result = IntakeResult(
        model=rewritten,
        source_format=record.source_format,
        architecture=record.architecture,
        input_shape=tuple(record.input_shape),
        weights_trained=record.weights_trained,
        export_max_abs_diff=difference,
        num_classes=record.num_classes,
    )
    labels = registry.model_labels(model_id)
    choice = TaskChoice(
        preprocessing=record.preprocessing,
        postprocessing=record.postprocessing.model_copy(update={"labels": labels}),
        outputs=record.outputs,
    )
    return _finish(registry, result, f"{record.name} (dynamic batch)", NO_TASK_REQUEST, progress, choice)


def _finish(
    registry: Registry,
    result: IntakeResult,
    name: str,
    task: TaskRequest,
    progress: Progress,
    choice: TaskChoice | None = None,
) -> ModelRecord:
    """``choice``: the task as decided already (a rewrite of a registered model keeps that model's)."""
    progress("folding constants")
    model, folding = fold_constants(result.model, result.input_shape)
    progress("verifying")
    family = family_of(result.architecture) if result.architecture else None
    if choice is None:
        choice = choose_task(model, result.input_shape, result.architecture, family, result.num_classes, task)
    onnx_bytes = model.SerializeToString()
    progress("finding split points")
    points = analyse_split_points(model, (1, *result.input_shape[1:]), pair_cuts=True)
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
        fixed_batch=fixed_batch_of(model),
        weights_trained=result.weights_trained,
        export_max_abs_diff=result.export_max_abs_diff,
        num_classes=result.num_classes,
        opset=max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0),
        created_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        preprocessing=choice.preprocessing,
        postprocessing=choice.postprocessing.model_copy(update={"labels": None}),
        outputs=choice.outputs,
        split_points=points,
        folding=folding,
    )
    _same_as_registered(registry, record, choice.postprocessing.labels)
    progress("saving")
    return registry.save_model(record, onnx_bytes, choice.postprocessing.labels)


def _same_as_registered(registry: Registry, record: ModelRecord, labels: list[str] | None) -> None:
    """A model id names the graph; registering it again is a no-op, unless it would change what its answers mean."""
    if not registry.has_model(record.id):
        return
    held = registry.get_model(record.id)
    if (held.postprocessing, held.preprocessing, registry.model_labels(record.id)) != (
        record.postprocessing,
        record.preprocessing,
        labels,
    ):
        raise Conflict(
            f"this model is already registered as {record.id} with task {held.postprocessing.task} and its "
            f"preprocessing and class names; to register it with other ones, DELETE /api/models/{record.id} first"
        )


def _stem(filename: str | None) -> str | None:
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] or None
