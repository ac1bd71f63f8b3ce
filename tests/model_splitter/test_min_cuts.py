"""Cuts through k tensors (a minimum cut on bytes in a window of depths), registered and verified exact."""

from __future__ import annotations

from pathlib import Path

import torch

from model_splitter.graph.min_cuts import MAX_CUT_TENSORS, find_k_cuts
from model_splitter.intake.export import export_module
from model_splitter.records import ModelRecord, SplitRequest
from model_splitter.services.models import register_upload
from model_splitter.services.splits import create_split
from model_splitter.store.registry import Registry
from tests.support import tiny_classifier

SHAPE = (1, 3, 64, 64)


def stage(inputs: int, outputs: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(inputs, outputs, 3, stride=2, padding=1), torch.nn.ReLU())


class PyramidHead(torch.nn.Module):
    """A backbone of four stages whose every stage feeds the head (as an FPN reads C2..C5): no single tensor and no
    pair separates its middle from its end."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = torch.nn.ModuleList([stage(3, 8), stage(8, 16), stage(16, 32), stage(32, 64)])
        self.lateral = torch.nn.ModuleList([torch.nn.Conv2d(c, 8, 1) for c in (8, 16, 32, 64)])
        self.fc = torch.nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for body, lateral in zip(self.stages, self.lateral, strict=True):
            x = body(x)
            pooled.append(lateral(x).mean((2, 3)))
        return self.fc(torch.cat(pooled, 1))


def registered(module: torch.nn.Module, tmp_path: Path) -> tuple[Registry, ModelRecord]:
    """``module`` (seeded, at ``SHAPE``) exported and registered as an upload, in a registry of its own."""
    torch.manual_seed(0)
    model = export_module(module.eval(), SHAPE)
    registry = Registry(tmp_path / "registry")
    return registry, register_upload(registry, model.SerializeToString(), "model.onnx", SHAPE, "model", False)


def test_a_pyramid_offers_cuts_of_several_tensors_along_it_and_each_is_exact(tmp_path: Path) -> None:
    registry, record = registered(PyramidHead(), tmp_path)
    multi = [point for point in record.split_points if len(point.tensors) >= 3]
    singles = [point for point in record.split_points if len(point.tensors) == 1]
    assert len(multi) >= 4 and all(len(point.tensors) <= MAX_CUT_TENSORS for point in multi)
    # along the network, and cheaper as the pyramid narrows
    indices = [point.index for point in multi]
    assert indices == sorted(indices)
    assert multi[-1].wire_bytes[32] < multi[0].wire_bytes[32]
    # every offered cut is between the first stage and the last tensor: before, only those two were
    assert len(singles) <= 3 and len(multi) + len(singles) == len(record.split_points)
    for point in multi:
        manifest = create_split(registry, record.id, SplitRequest(split_point=point.label, bits=8))
        assert [spec.name for spec in manifest.cut] == point.tensors
        assert manifest.verification.head_tail_max_abs_diff <= manifest.verification.head_tail_tolerance


def test_a_chain_has_no_cut_of_several_tensors() -> None:
    """Where single tensors separate the network, the cheapest cut in every window is one of them."""
    assert find_k_cuts(tiny_classifier(), lambda _name: 100) == []
