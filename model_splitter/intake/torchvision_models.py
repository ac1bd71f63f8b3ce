"""torchvision models by name: classifiers, segmenters and detectors, built offline, with an optional state_dict.

Nothing is downloaded: every builder gets ``weights=None`` (and ``weights_backbone=None``, whose default would
fetch ImageNet weights). Each family is wrapped into a module with one tensor input and tensor outputs, which is
what the exporter and the split need:

- classification: the model as it is (logits);
- segmentation: the ``"out"`` map of the dict the model answers (the auxiliary head is left out);
- detection: ``boxes``, ``scores`` and ``labels`` of the one image in the batch. The model's own transform
  (resize, normalisation) and NMS run inside the graph, so the batch is fixed at 1 in the export.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import torch

from common.errors import InvalidArgument, UnprocessableModel
from model_splitter.intake.torch_formats import shorten

Family = Literal["classification", "segmentation", "detection"]
FAMILIES: tuple[Family, ...] = ("classification", "segmentation", "detection")


@dataclass(frozen=True)
class Architecture:
    name: str
    family: Family


@dataclass(frozen=True)
class BuiltModel:
    module: torch.nn.Module
    family: Family
    dynamic_batch: bool


class _SegmentationOutput(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)["out"]
        return out


class _DetectionOutput(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        found = self.model(list(x))[0]
        return found["boxes"], found["scores"], found["labels"]


@functools.cache
def architectures() -> tuple[Architecture, ...]:
    """Every torchvision builder of the three families, by family then name (the list does not change)."""
    import torchvision

    modules = {
        "classification": torchvision.models,
        "segmentation": torchvision.models.segmentation,
        "detection": torchvision.models.detection,
    }
    return tuple(
        Architecture(name, family)
        for family in FAMILIES
        for name in sorted(torchvision.models.list_models(module=modules[family]))
    )


def family_of(arch: str) -> Family:
    for architecture in architectures():
        if architecture.name == arch:
            return architecture.family
    raise InvalidArgument(
        f"unknown architecture {arch[:60]!r}; GET /api/architectures lists the torchvision classification, "
        "segmentation and detection models by name (resnet18, deeplabv3_mobilenet_v3_large, "
        "ssdlite320_mobilenet_v3_large, ...)"
    )


def build(arch: str, state_dict: dict[str, torch.Tensor] | None) -> BuiltModel:
    """The named model, untrained or with ``state_dict`` loaded strictly, wrapped for export."""
    family = family_of(arch)
    if family == "classification":
        model = _classifier(arch, state_dict)
    else:
        model = _get_model(arch, weights_backbone=None, **_num_classes_kwargs(arch, state_dict, {}))
    if state_dict is not None:
        load_strict(model, state_dict)
    model.eval()
    if family == "segmentation":
        return BuiltModel(_SegmentationOutput(model).eval(), family, dynamic_batch=True)
    if family == "detection":
        return BuiltModel(_DetectionOutput(model).eval(), family, dynamic_batch=False)
    return BuiltModel(model, family, dynamic_batch=True)


def _get_model(arch: str, **kwargs: Any) -> torch.nn.Module:
    import torchvision

    try:
        module: torch.nn.Module = torchvision.models.get_model(arch, weights=None, **kwargs)
    except Exception as exc:  # builders raise ValueError/TypeError for options they do not take
        raise UnprocessableModel(f"torchvision could not build {arch}: {shorten(str(exc))}") from exc
    return module


def _classifier(arch: str, state_dict: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    kwargs: dict[str, Any] = {}
    if arch in ("googlenet", "inception_v3"):
        aux_prefix = "aux1." if arch == "googlenet" else "AuxLogits."
        kwargs["aux_logits"] = state_dict is not None and any(k.startswith(aux_prefix) for k in state_dict)
        kwargs["init_weights"] = state_dict is None  # random init only matters when nothing overwrites it
    return _get_model(arch, **_num_classes_kwargs(arch, state_dict, kwargs))


def _num_classes_kwargs(
    arch: str, state_dict: dict[str, torch.Tensor] | None, kwargs: dict[str, Any]
) -> dict[str, Any]:
    if state_dict is not None:
        num_classes = _num_classes_in(arch, state_dict, kwargs)
        if num_classes is not None and num_classes != _default_classes(arch):
            return {**kwargs, "num_classes": num_classes}
    return kwargs


def _default_classes(arch: str) -> int:
    return {"segmentation": 21, "detection": 91}.get(family_of(arch), 1000)


def _num_classes_in(arch: str, state_dict: dict[str, torch.Tensor], kwargs: dict[str, Any]) -> int | None:
    """Rows of the classifier weight in ``state_dict``: the last weight of the default model with as many rows as
    it has classes (1000 for ImageNet classifiers, 21 for the segmenters, 91 for the COCO detectors)."""
    import torchvision

    extra = {} if family_of(arch) == "classification" else {"weights_backbone": None}
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation time
            reference = torchvision.models.get_model(arch, weights=None, **kwargs, **extra)
    except Exception:  # a builder that computes with real tensors (regnet's widths) fails on meta in many ways
        reference = torchvision.models.get_model(arch, weights=None, **kwargs, **extra)
    classes = _default_classes(arch)
    keys = [k for k, v in reference.state_dict().items() if k.endswith(".weight") and v.ndim >= 2 and len(v) == classes]
    if not keys or keys[-1] not in state_dict or state_dict[keys[-1]].ndim < 2:
        return None
    return int(state_dict[keys[-1]].shape[0])


def load_strict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    found = {"missing keys": missing, "unexpected keys": unexpected, "shape mismatches": mismatched}
    problems = [
        f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}" for label, items in found.items() if items
    ]
    if problems:
        raise UnprocessableModel(
            "the state_dict does not fit the architecture (" + "; ".join(problems) + "); check the architecture "
            "name and that the file is model.state_dict() of that model"
        )
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # dtype problems the key/shape comparison does not see
        raise UnprocessableModel(f"the state_dict could not be loaded: {shorten(str(exc))}") from exc
