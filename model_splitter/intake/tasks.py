"""What a registered model's outputs mean and how images become its input: the task, the detector's output
layout, class names and preprocessing, from what the person said, the torchvision family, or the outputs.

Every choice is tried at once: the model runs on one zero image and its outputs go through the chosen
post-processing, so a detector layout that does not fit is refused at registration (422), not at the first
inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import onnx
import onnxruntime as ort

from common.errors import InvalidArgument, UnprocessableModel
from common.manifest import TensorSpec
from common.model_io import (
    DETECTION_DECODERS,
    RESIZE_MODES,
    TASKS,
    DetectionDecoder,
    DetectionSpec,
    Postprocessing,
    Preprocessing,
    ResizeMode,
    Task,
)
from common.postprocess import OutputLayout, answers
from model_splitter.intake.class_names import metadata_class_names, torchvision_class_names, uploaded_class_names
from model_splitter.intake.imagenet_labels import labels_for

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
GREY_MEAN = [0.449]
GREY_STD = [0.226]
# torchvision's classification recipe: resize the shorter side to 256, centre-crop 224.
RESIZE_RATIO = 256 / 224
YOLO_PAD_VALUE = 114
Choice = TypeVar("Choice", bound=str)


@dataclass(frozen=True)
class TaskRequest:
    """The registration form's task and preprocessing fields, as text; None or empty = choose for me."""

    task: str | None = None
    detector: str | None = None
    labels: bytes | None = None
    resize: str | None = None
    pad_value: str | None = None
    scale: str | None = None
    mean: str | None = None
    std: str | None = None
    channel_order: str | None = None


@dataclass(frozen=True)
class TaskChoice:
    preprocessing: Preprocessing
    postprocessing: Postprocessing  # labels included
    outputs: list[TensorSpec] = field(default_factory=list)


def choose_task(
    model: onnx.ModelProto,
    input_shape: tuple[int, ...],
    arch: str | None,
    family: str | None,
    num_classes: int | None,
    request: TaskRequest,
) -> TaskChoice:
    """The task, its settings and the preprocessing, checked by post-processing the model's answer to zeros."""
    if len(input_shape) != 4 or input_shape[1] not in (1, 3):
        raise UnprocessableModel(
            f"input shape {list(input_shape)} is not an image batch (N, 1 or 3, H, W); only image models are served"
        )
    task = _task(request.task, family)
    names, outputs = _zero_run(model, input_shape)
    specs = [_output_spec(value, array) for value, array in zip(model.graph.output, outputs, strict=True)]
    detection = None
    if task == "detection":
        decoder = _decoder(request.detector, arch, outputs)
        detection = DetectionSpec(decoder=decoder)
    labels = _labels(request.labels, model, arch, task, num_classes)
    post = Postprocessing(task=task, labels=labels, detection=detection)
    preprocessing = _preprocessing(input_shape, task, detection, arch, request)
    try:
        answers(outputs, post, OutputLayout(names, (input_shape[2], input_shape[3])))
    except UnprocessableModel as exc:
        raise UnprocessableModel(f"the model's outputs do not fit the task {task}: {exc.message}") from exc
    return TaskChoice(preprocessing=preprocessing, postprocessing=post, outputs=specs)


def _task(text: str | None, family: str | None) -> Task:
    if not text:
        # A torchvision family says what the outputs are; an upload's outputs could be anything.
        return _one_of(family, TASKS, "task") if family else "raw"
    task = _one_of(text, TASKS, "task")
    if family is not None and task != family:
        raise InvalidArgument(f"this torchvision architecture is a {family} model; its task cannot be {task}")
    return task


def _decoder(text: str | None, arch: str | None, outputs: list[np.ndarray]) -> DetectionDecoder:
    if text:
        return _one_of(text, DETECTION_DECODERS, "detector")
    if arch is not None:
        return "boxes"  # torchvision's detectors: boxes, scores, labels out of the graph
    return infer_decoder(outputs)


def infer_decoder(outputs: list[np.ndarray]) -> DetectionDecoder:
    """The detector layout the outputs' shapes and types show (see ``DetectionDecoder`` in the manifest)."""
    ranks = [o.ndim for o in outputs]
    if len(outputs) >= 3 and any(np.issubdtype(o.dtype, np.integer) for o in outputs):
        return "boxes"
    if len(outputs) in (2, 4, 6, 8) and all(r == 3 for r in ranks):
        half = len(outputs) // 2
        scores, boxes = outputs[:half], outputs[half:]
        if len({o.shape[2] for o in scores}) == 1 and all(o.shape[2] % 4 == 0 for o in boxes):
            return "picodet"
    if len(outputs) == 1 and ranks == [3]:
        _, rows, cols = outputs[0].shape
        return "yolov8" if rows < cols else "yolov5"
    shapes = ", ".join(f"{list(o.shape)} {o.dtype}" for o in outputs)
    raise UnprocessableModel(
        f"which detector layout the outputs ({shapes}) follow is not clear: choose detector = "
        + ", ".join(DETECTION_DECODERS)
    )


def _labels(
    uploaded: bytes | None, model: onnx.ModelProto, arch: str | None, task: Task, num_classes: int | None
) -> list[str] | None:
    if uploaded:
        return uploaded_class_names(uploaded)
    if arch is not None:
        names = torchvision_class_names(arch, num_classes if task == "classification" else None)
        if names is not None:
            return names
    names = metadata_class_names(model)
    if names is not None:
        return names
    return labels_for(num_classes) if task == "classification" else None


def default_preprocessing(input_shape: tuple[int, ...]) -> Preprocessing:
    """A classifier's: torchvision's recipe (shorter side to 8/7 of the input, centre crop, ImageNet mean/std)."""
    return _preprocessing(input_shape, "classification", None, None, TaskRequest())


def _preprocessing(
    input_shape: tuple[int, ...], task: Task, detection: DetectionSpec | None, arch: str | None, request: TaskRequest
) -> Preprocessing:
    height, width = input_shape[2], input_shape[3]
    grey = input_shape[1] == 1
    mean, std = (GREY_MEAN, GREY_STD) if grey else (IMAGENET_MEAN, IMAGENET_STD)
    resize: ResizeMode = "shorter_crop"
    pad_value: int | None = None
    if detection is not None and detection.decoder in ("yolov8", "yolov5"):
        resize, pad_value = "letterbox", YOLO_PAD_VALUE
        mean, std = [0.0] * len(mean), [1.0] * len(std)
    elif detection is not None or task == "segmentation":
        resize = "stretch"  # a detector or segmenter sees the whole frame
    if detection is not None and arch is not None:
        mean, std = [0.0] * len(mean), [1.0] * len(std)  # torchvision's detectors normalise inside the graph
    chosen_resize = _one_of(request.resize, RESIZE_MODES, "resize") if request.resize else resize
    if request.pad_value:
        pad_value = _integer(request.pad_value, "pad_value")
    elif chosen_resize == "letterbox" and pad_value is None:
        pad_value = YOLO_PAD_VALUE
    try:
        return Preprocessing(
            resize_shorter_to=round(min(height, width) * RESIZE_RATIO) if chosen_resize == "shorter_crop" else height,
            crop=[height, width],
            mean=_numbers(request.mean, "mean", mean, 0.0),
            std=_numbers(request.std, "std", std, 1.0),
            color="L" if grey else "RGB",
            scale=_number(request.scale, "scale") if request.scale else 1.0 / 255.0,
            resize=chosen_resize,
            pad_value=pad_value if chosen_resize == "letterbox" else None,
            channel_order=_one_of(request.channel_order.upper(), ("RGB", "BGR"), "channel_order")
            if request.channel_order
            else "RGB",
        )
    except ValueError as exc:  # the model's own checks (lengths, positive std) in words
        raise InvalidArgument(f"preprocessing: {exc}") from None


def _numbers(text: str | None, name: str, default: list[float], none_value: float) -> list[float]:
    if not text:
        return default
    if text.strip().lower() == "none":
        return [none_value] * len(default)
    values = [_number(part, name) for part in text.replace(" ", "").split(",") if part]
    if len(values) != len(default):
        raise InvalidArgument(f"{name} needs {len(default)} comma-separated values (or none), got {text!r}")
    return values


def _number(text: str, name: str) -> float:
    cleaned = text.strip()
    try:
        if "/" in cleaned:  # "1/255", as people write the scale
            top, bottom = cleaned.split("/", 1)
            value = float(top) / float(bottom)
        else:
            value = float(cleaned)
    except (ValueError, ZeroDivisionError):
        raise InvalidArgument(f"{name} must be a number such as 0.5 or 1/255, got {text!r}") from None
    if not np.isfinite(value):
        raise InvalidArgument(f"{name} must be finite, got {text!r}")
    return value


def _integer(text: str, name: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidArgument(f"{name} must be a whole number, got {text!r}") from None


def _one_of(text: str, allowed: tuple[Choice, ...], name: str) -> Choice:
    for option in allowed:
        if text == option:
            return option
    raise InvalidArgument(f"{name} must be one of {', '.join(allowed)}, got {text!r}")


def _zero_run(model: onnx.ModelProto, input_shape: tuple[int, ...]) -> tuple[list[str], list[np.ndarray]]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    graph_input = session.get_inputs()[0]
    outputs = session.run(None, {graph_input.name: np.zeros(input_shape, dtype=np.float32)})
    return [o.name for o in session.get_outputs()], [np.asarray(o) for o in outputs]


def _output_spec(value: onnx.ValueInfoProto, array: np.ndarray) -> TensorSpec:
    return TensorSpec(name=value.name, shape=list(array.shape), dtype=array.dtype.name)
