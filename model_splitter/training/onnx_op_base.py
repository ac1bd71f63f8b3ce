"""How ``onnx_ops`` calls an ONNX operator: the node's inputs (``None`` for an omitted optional input) and its
attributes in, its outputs out. Integer tensors (shapes, axes, indices) flow through as int64 tensors, so shape
arithmetic after ``Shape`` runs as ONNX Runtime runs it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import onnx
import torch
from onnx import numpy_helper

from common.errors import UnprocessableModel

Attributes = dict[str, Any]
Tensor = torch.Tensor
Args = Sequence[Tensor | None]
Operator = Callable[[Args, Attributes], list[Tensor]]


def attributes_of(node: onnx.NodeProto) -> Attributes:
    out: Attributes = {}
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.TENSOR:
            out[attribute.name] = torch.from_numpy(numpy_helper.to_array(attribute.t).copy())
        elif attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise UnprocessableModel(f"fine-tuning cannot train through control flow (node {node.name!r})")
        else:
            value = onnx.helper.get_attribute_value(attribute)
            out[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return out


def need(args: Args, index: int) -> Tensor:
    value = args[index] if index < len(args) else None
    if value is None:
        raise ValueError(f"input {index} is required")
    return value


def ints(value: Tensor | None) -> list[int]:
    return [] if value is None else [int(v) for v in value.reshape(-1).tolist()]
