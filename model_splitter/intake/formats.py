"""Turn an uploaded model into one in-memory ONNX model plus the facts the splitter needs about it.

Accepted: ONNX files, TorchScript archives, ``torch.export`` archives (``.pt2``) and torchvision architectures by
name with an optional state_dict. Pickled whole modules are refused unless the operator enabled ``allow_pickle``,
which executes code from the file. The torch-format loaders and their safety checks live in ``torch_formats``, the
ONNX checks in ``onnx_checks``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch

from common.errors import BadRequest, InvalidArgument, UnprocessableModel, UnsafeModelFormat
from model_splitter.intake import onnx_checks, pt2_audit, torch_formats, torchvision_models
from model_splitter.intake.export import export_any, export_program, max_abs_difference_to_torch
from model_splitter.intake.torch_formats import SAFE_FILE_FORMATS, SAFE_FORMATS, shorten

DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
MAX_DIM = 4096
# 3 x 2048 x 2048 at batch 1 (48 MiB of float32): larger inputs make exports take minutes and tie up the service.
MAX_ELEMENTS = 3 * 2048 * 2048


@dataclass(frozen=True)
class IntakeResult:
    model: onnx.ModelProto  # single file, weights inside, opset >= 17, input dim 0 dynamic where we exported it
    source_format: str  # "onnx" | "torchscript" | "torch.export" | "torchvision"
    architecture: str | None  # torchvision arch name when known
    input_shape: tuple[int, ...]  # the shape the model was checked with
    weights_trained: bool  # False for a torchvision architecture registered without weights
    export_max_abs_diff: float | None  # torch vs onnxruntime on a random input, None for ONNX uploads
    num_classes: int | None  # last dim of the output when the output is 2-D


# ------------------------------------------------------------------------------------------------ input shape


def parse_input_shape(text: str | None) -> tuple[int, ...]:
    """``"1,3,224,224"`` or ``"1x3x224x224"`` (brackets and spaces tolerated); empty means (1, 3, 224, 224)."""
    if text is None or not text.strip():
        return DEFAULT_INPUT_SHAPE
    parts = [p for p in re.split(r"[,xX\s]+", text.strip().strip("()[]")) if p]
    if not parts or not all(p.isascii() and p.isdigit() for p in parts):
        raise InvalidArgument(f"input shape {text[:60]!r} is not a list of integers; write it like 1,3,224,224")
    shape = tuple(int(p) for p in parts)
    check_shape_limits(shape, InvalidArgument, "input shape")
    return shape


def check_shape_limits(shape: tuple[int, ...], error: type[Exception], what: str) -> None:
    if not 2 <= len(shape) <= 6:
        raise error(f"{what} {shape} has {len(shape)} dimensions; 2 to 6 are accepted, e.g. 1,3,224,224")
    if any(d < 1 or d > MAX_DIM for d in shape):
        raise error(f"{what} {shape}: every dimension must be between 1 and {MAX_DIM}")
    if int(np.prod(shape, dtype=np.int64)) > MAX_ELEMENTS:
        raise error(f"{what} {shape} has more than {MAX_ELEMENTS} elements; declare a smaller input")


# ------------------------------------------------------------------------------------------------- detection


def detect_format(data: bytes, filename: str | None) -> str:
    """By content: "onnx", "torchscript", "torch.export", "pickle", "safetensors" or "unknown".

    The filename only breaks ties: a file that fails every content test but is named ``.onnx`` is "onnx", so
    that the person hears why it is not a valid ONNX model.
    """
    members = torch_formats.zip_members(data)
    if members is not None:
        if torch_formats.is_torch_export_archive(members):
            return "torch.export"
        if torch_formats.is_torchscript_archive(members):
            return "torchscript"
        return "pickle" if any(m.endswith(".pkl") for m in members) else "unknown"
    if data[:1] == b"\x80":  # pickle protocol 2+ (torch.save's legacy format starts with one too)
        return "pickle"
    if torch_formats.is_safetensors(data):
        return "safetensors"
    # ModelProto's first field is ir_version (tag 0x08) in every serializer we know; parse only the odd ones
    if data[:1] == b"\x08" or (filename or "").lower().endswith(".onnx") or _parse_onnx(data) is not None:
        return "onnx"
    return "unknown"


def _parse_onnx(data: bytes) -> onnx.ModelProto | None:
    try:
        model = onnx.load_model_from_string(data)
    except Exception:  # protobuf DecodeError and friends: not ONNX
        return None
    # protobuf parses many random byte strings; a real model names its IR version and has a graph with nodes
    return model if model.ir_version > 0 and len(model.graph.node) > 0 else None


# ------------------------------------------------------------------------------------------------- uploads


def intake_upload(
    data: bytes, filename: str | None, input_shape: tuple[int, ...], allow_pickle: bool = False
) -> IntakeResult:
    """Check and convert an uploaded model file.

    ``allow_pickle=True`` (an operator setting: it executes code from the file) accepts whole modules saved with
    ``torch.save(model)``; otherwise they are refused with ``UnsafeModelFormat``.
    """
    fmt = detect_format(data, filename)
    if fmt == "onnx":
        return _intake_onnx(data, input_shape)
    if fmt == "torchscript":
        module = torch_formats.load_torchscript(data)
        return _from_module(module, "torchscript", None, input_shape, weights_trained=True)
    if fmt == "torch.export":
        return _intake_pt2(data, input_shape)
    if fmt == "pickle":
        return _intake_pickle(data, input_shape, allow_pickle)
    if fmt == "safetensors":
        raise UnprocessableModel(
            "a .safetensors file holds only weights; register it together with its torchvision architecture name"
        )
    raise BadRequest(f"the file is not a model we recognise; accepted are {SAFE_FORMATS}")


def _intake_pickle(data: bytes, input_shape: tuple[int, ...], allow_pickle: bool) -> IntakeResult:
    if allow_pickle:
        module = torch_formats.load_pickled_module(data)
        return _from_module(module, "pickle", None, input_shape, weights_trained=True)
    if _holds_only_tensors(data):
        raise UnprocessableModel(
            "this file is a state_dict (weights without the model's code); register it together with its "
            "torchvision architecture name, or upload the whole model as " + SAFE_FILE_FORMATS
        )
    raise UnsafeModelFormat(
        "pickled Python models (torch.save(model)) can run arbitrary code when loaded and are not accepted; "
        "upload the model as " + SAFE_FORMATS
    )


def _holds_only_tensors(data: bytes) -> bool:
    """Whether the restricted unpickler reads the file: then it is a state_dict, not a pickled module."""
    try:
        loaded = torch_formats.load_weights_only(data)
    except (BadRequest, UnprocessableModel):
        return False
    return isinstance(loaded, dict)


def _from_module(
    module: torch.nn.Module | torch.jit.ScriptModule,
    source_format: str,
    architecture: str | None,
    input_shape: tuple[int, ...],
    weights_trained: bool,
    dynamic_batch: bool = True,
    classifier: bool = True,
) -> IntakeResult:
    model = _shortened(lambda: export_any(module, input_shape, dynamic_batch))
    diff = _shortened(lambda: max_abs_difference_to_torch(module, model, input_shape))
    num_classes = _num_classes(model) if classifier else None
    return IntakeResult(model, source_format, architecture, input_shape, weights_trained, diff, num_classes)


def _intake_pt2(data: bytes, declared: tuple[int, ...]) -> IntakeResult:
    program = pt2_audit.load_pt2(data)
    input_shape = _program_input_shape(program, declared)
    model = _shortened(lambda: export_program(program, input_shape))
    diff = _shortened(lambda: max_abs_difference_to_torch(program.module(), model, input_shape))
    return IntakeResult(model, "torch.export", None, input_shape, True, diff, _num_classes(model))


def _program_input_shape(program: torch.export.ExportedProgram, declared: tuple[int, ...]) -> tuple[int, ...]:
    """The program's static dims, the declared ones where the program's are symbolic."""
    names = program.graph_signature.user_inputs
    if len(names) != 1:
        raise UnprocessableModel(f"the program takes {len(names)} inputs; we cut single-input models")
    placeholder = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == names[0])
    value = placeholder.meta.get("val")
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise UnprocessableModel("the program's input is not a floating-point tensor")
    return _merge_dims([d if isinstance(d, int) else None for d in value.shape], declared)


def _merge_dims(model_dims: list[int | None], declared: tuple[int, ...]) -> tuple[int, ...]:
    if len(model_dims) != len(declared):
        if all(d is not None for d in model_dims):
            shape = tuple(d for d in model_dims if d is not None)
            check_shape_limits(shape, UnprocessableModel, "the model's input shape")
            return shape
        raise InvalidArgument(
            f"the model's input has {len(model_dims)} dimensions but the declared input shape {declared} has "
            f"{len(declared)}; declare a shape with {len(model_dims)} dimensions"
        )
    shape = tuple(d if d is not None else fallback for d, fallback in zip(model_dims, declared, strict=True))
    check_shape_limits(shape, UnprocessableModel, "the model's input shape")
    return shape


def _shortened(step: Any) -> Any:
    """Run an export step; the exporters' messages run to pages of graph dumps, keep the readable start."""
    try:
        return step()
    except UnprocessableModel as exc:
        raise UnprocessableModel(shorten(exc.message)) from exc
    except Exception as exc:  # torch raises many types when the model does not accept the input shape
        raise UnprocessableModel(f"the model does not run on the declared input: {shorten(str(exc))}") from exc


def _num_classes(model: onnx.ModelProto) -> int | None:
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value > 0:
        return int(dims[1].dim_value)
    return None


# ---------------------------------------------------------------------------------------------------- ONNX


def _intake_onnx(data: bytes, declared: tuple[int, ...]) -> IntakeResult:
    model = onnx_checks.load_onnx(data)
    graph_input = onnx_checks.single_float_input(model)
    dims = graph_input.type.tensor_type.shape.dim
    if graph_input.type.tensor_type.HasField("shape"):
        input_shape = _merge_dims([d.dim_value if d.dim_value > 0 else None for d in dims], declared)
    else:
        input_shape = declared
    onnx_checks.refuse_huge_constants(model)
    outputs = onnx_checks.run_on_zeros(model, graph_input, input_shape)
    num_classes = int(outputs[0].shape[1]) if outputs and outputs[0].ndim == 2 else None
    return IntakeResult(model, "onnx", None, input_shape, True, None, num_classes)


# ------------------------------------------------------------------------------------------------ torchvision


def intake_torchvision(
    arch: str, weights: bytes | None, weights_filename: str | None, input_shape: tuple[int, ...]
) -> IntakeResult:
    """Build a torchvision model by name (never downloading anything) and load an optional state_dict into it."""
    torchvision_models.family_of(arch)  # an unknown name is refused before the weights are read
    state_dict = torch_formats.load_state_dict(weights, weights_filename) if weights is not None else None
    built = torchvision_models.build(arch, state_dict)
    return _from_module(
        built.module,
        "torchvision",
        arch,
        input_shape,
        weights_trained=weights is not None,
        dynamic_batch=built.dynamic_batch,
        classifier=built.family == "classification",
    )
