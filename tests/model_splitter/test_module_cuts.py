"""Cuts at a module's boundary: a backbone that returns several feature maps is offered as one cut, named by the
module, and split exactly."""

from __future__ import annotations

from pathlib import Path

import torch

from model_splitter.graph.module_cuts import find_module_cuts
from model_splitter.intake.export import export_module
from model_splitter.records import SplitRequest
from model_splitter.services.splits import create_split
from tests.model_splitter.test_min_cuts import registered, stage
from tests.support import tiny_classifier

SHAPE = (1, 3, 64, 64)


class Body(torch.nn.Module):
    """Four stages; each stage's output is handed on (as torchvision's IntermediateLayerGetter gives C2..C5)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1, self.stage2, self.stage3, self.stage4 = stage(3, 8), stage(8, 16), stage(16, 32), stage(32, 64)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c2 = self.stage1(x)
        c3 = self.stage2(c2)
        c4 = self.stage3(c3)
        return c2, c3, c4, self.stage4(c4)


class FeaturePyramid(torch.nn.Module):
    """Lateral 1x1 convolutions narrower than the body's deep maps: the cheapest cut after the body is theirs, so
    the body's own outputs are found only as the body's boundary."""

    def __init__(self) -> None:
        super().__init__()
        self.body = Body()
        self.lateral = torch.nn.ModuleList([torch.nn.Conv2d(c, 4, 1) for c in (8, 16, 32, 64)])
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        pooled = [lateral(f).mean((2, 3)) for lateral, f in zip(self.lateral, features, strict=True)]
        return self.fc(torch.cat(pooled, 1))


def test_a_backbone_returning_four_maps_is_one_cut_named_by_it_and_exact(tmp_path: Path) -> None:
    registry, record = registered(FeaturePyramid(), tmp_path)
    (body,) = [point for point in record.split_points if point.label == "body (4 tensors)"]
    assert body.shapes == [[1, 8, 32, 32], [1, 16, 16, 16], [1, 32, 8, 8], [1, 64, 4, 4]]
    assert body.wire_bytes[32] == 4 * (8 * 32 * 32 + 16 * 16 * 16 + 32 * 8 * 8 + 64 * 4 * 4)
    laterals = [point for point in record.split_points if point.index > body.index and len(point.tensors) == 4]
    assert laterals and all(point.wire_bytes[32] < body.wire_bytes[32] for point in laterals)
    manifest = create_split(registry, record.id, SplitRequest(split_point=body.label, bits=8))
    assert [spec.name for spec in manifest.cut] == body.tensors
    assert manifest.verification.head_tail_max_abs_diff <= manifest.verification.head_tail_tolerance


def test_a_module_bypassed_by_a_skip_is_not_its_boundary() -> None:
    """A tensor from before the module read after it means the module's outputs do not separate the network."""

    class Skipped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = Body()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.body(x)
            return torch.cat([f.mean((2, 3)) for f in features] + [x.mean((2, 3))], 1)

    assert find_module_cuts(export_module(Body().eval(), SHAPE), lambda _name: 100) == []
    assert find_module_cuts(export_module(Skipped().eval(), SHAPE), lambda _name: 100) == []
    with_body = find_module_cuts(export_module(FeaturePyramid().eval(), SHAPE), lambda _name: 100)
    assert [scope for scope, _ in with_body] == ["body"]
    assert find_module_cuts(tiny_classifier(), lambda _name: 100) == []
