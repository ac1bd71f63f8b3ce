"""The model-registration form, read once for both ``POST /api/models`` and ``POST /api/model-jobs``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import File, Form, UploadFile

from common.service_api import read_upload
from model_splitter.services.models import RegistrationRequest, UploadedFile

RegistrationForm = Callable[..., Awaitable[RegistrationRequest]]


def registration_form(max_model_bytes: int) -> RegistrationForm:
    """A FastAPI dependency: the form's fields, the files read within ``max_model_bytes`` (413 past it)."""

    async def read_form(
        file: UploadFile | None = File(None, description="ONNX, TorchScript (torch.jit.save) or torch.export .pt2"),
        arch: str | None = Form(None, description="a torchvision classification architecture, e.g. resnet18"),
        weights: UploadFile | None = File(None, description="state_dict for arch: .pth (weights_only) or .safetensors"),
        input_shape: str | None = Form(None, description="e.g. 1,3,224,224 (the default)"),
        name: str | None = Form(None),
    ) -> RegistrationRequest:
        model_file = None
        if file is not None and file.filename:
            model_file = UploadedFile(await read_upload(file, max_model_bytes, "model file"), file.filename)
        weight_file = None
        if model_file is None and arch and weights is not None and weights.filename:
            weight_file = UploadedFile(await read_upload(weights, max_model_bytes, "weights file"), weights.filename)
        return RegistrationRequest(
            model_file=model_file, arch=arch, weights=weight_file, input_shape=input_shape, name=name
        )

    return read_form
