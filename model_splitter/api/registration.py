"""The model-registration form, read once for both ``POST /api/models`` and ``POST /api/model-jobs``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import File, Form, UploadFile

from common.service_api import read_upload
from model_splitter.services.models import (
    MAX_LABEL_FILE_BYTES,
    RegistrationRequest,
    TaskRequest,
    UploadedFile,
)

RegistrationForm = Callable[..., Awaitable[RegistrationRequest]]


def registration_form(max_model_bytes: int) -> RegistrationForm:
    """A FastAPI dependency: the form's fields, the files read within ``max_model_bytes`` (413 past it)."""

    async def read_form(
        file: UploadFile | None = File(None, description="ONNX, TorchScript (torch.jit.save) or torch.export .pt2"),
        arch: str | None = Form(None, description="a torchvision classification architecture, e.g. resnet18"),
        weights: UploadFile | None = File(None, description="state_dict for arch: .pth (weights_only) or .safetensors"),
        input_shape: str | None = Form(None, description="e.g. 1,3,224,224 (the default)"),
        name: str | None = Form(None),
        task: str | None = Form(
            None,
            description="classification, detection, segmentation or raw; default: the torchvision family, raw for "
            "an upload",
        ),
        detector: str | None = Form(
            None,
            description="detection: the output layout, boxes (torchvision), yolov8, yolov5 or picodet; default: "
            "read from the outputs' shapes",
        ),
        labels: UploadFile | None = File(
            None, description="class names, one per line or a JSON list; default: the model's metadata"
        ),
        resize: str | None = Form(
            None,
            description="shorter_crop (classifiers), stretch (detectors, segmenters) or letterbox (YOLO); default "
            "by task",
        ),
        pad_value: str | None = Form(None, description="letterbox: the padding's grey level, 0..255 (114)"),
        scale: str | None = Form(None, description="pixel values are multiplied by this first, e.g. 1/255 (default)"),
        mean: str | None = Form(None, description="per channel after scaling, e.g. 0.485,0.456,0.406, or none"),
        std: str | None = Form(None, description="per channel after scaling, e.g. 0.229,0.224,0.225, or none"),
        channel_order: str | None = Form(None, description="RGB (default) or BGR (models trained with OpenCV)"),
    ) -> RegistrationRequest:
        model_file = None
        if file is not None and file.filename:
            model_file = UploadedFile(await read_upload(file, max_model_bytes, "model file"), file.filename)
        weight_file = None
        if model_file is None and arch and weights is not None and weights.filename:
            weight_file = UploadedFile(await read_upload(weights, max_model_bytes, "weights file"), weights.filename)
        label_bytes = None
        if labels is not None and labels.filename:
            label_bytes = await read_upload(labels, MAX_LABEL_FILE_BYTES, "label file")
        choice = TaskRequest(
            task=task,
            detector=detector,
            labels=label_bytes,
            resize=resize,
            pad_value=pad_value,
            scale=scale,
            mean=mean,
            std=std,
            channel_order=channel_order,
        )
        return RegistrationRequest(
            model_file=model_file, arch=arch, weights=weight_file, input_shape=input_shape, name=name, task=choice
        )

    return read_form
