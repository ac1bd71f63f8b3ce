"""Weights no single ONNX file can hold are refused before any export starts, with the reason."""

from __future__ import annotations

import pytest
import torch

from common.errors import UnprocessableModel
from model_splitter.intake.export import MAX_ONNX_BYTES, export_any


def test_weights_beyond_protobuf_s_limit_are_refused_before_exporting() -> None:
    # 2**30 float32 weights on the meta device: 4.29 GB described, nothing allocated. The exporter cannot run a
    # meta module at all, so the message below can only come from the check made before it.
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2**15, 2**15, bias=False, device="meta"))
    assert sum(p.numel() * p.element_size() for p in model.parameters()) > MAX_ONNX_BYTES
    with pytest.raises(UnprocessableModel, match=r"4\.29 GB of weights; one ONNX file holds at most 2\.15 GB"):
        export_any(model, (1, 2, 128, 128))
