"""Which graph inputs are fed at run time: old ONNX (IR < 4) also lists every initializer as an input."""

from __future__ import annotations

import onnx


def fed_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    constants = {init.name for init in graph.initializer} | {init.values.name for init in graph.sparse_initializer}
    return [value for value in graph.input if value.name not in constants]


def real_inputs(graph: onnx.GraphProto) -> list[str]:
    return [value.name for value in fed_inputs(graph)]
