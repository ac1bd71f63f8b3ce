"""Which graph inputs are fed at run time: old ONNX (IR < 4) also lists every initializer as an input."""

from __future__ import annotations

import onnx


def fed_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    constants = {init.name for init in graph.initializer} | {init.values.name for init in graph.sparse_initializer}
    return [value for value in graph.input if value.name not in constants]


def real_inputs(graph: onnx.GraphProto) -> list[str]:
    return [value.name for value in fed_inputs(graph)]


def node_inputs(node: onnx.NodeProto) -> list[str]:
    """What ``node`` reads: its inputs, and for a node with subgraphs (If, Loop, Scan) every outer tensor those
    subgraphs read by name (recursively), which the flat input list does not show. Such a node is then one node
    of the data flow like any other: cuts are found around it, and it goes whole into the head or the tail."""
    names = [name for name in node.input if name]
    for graph in _subgraphs(node):
        names += sorted(outer_reads(graph))
    return list(dict.fromkeys(names))


def outer_reads(graph: onnx.GraphProto) -> set[str]:
    """Tensors a (sub)graph reads that it neither takes as input, holds as initializer, nor computes."""
    defined = {value.name for value in graph.input} | {init.name for init in graph.initializer}
    defined |= {init.values.name for init in graph.sparse_initializer}
    read: set[str] = set()
    for node in graph.node:
        read.update(name for name in node_inputs(node) if name not in defined)
        defined.update(name for name in node.output if name)
    return read


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    graphs: list[onnx.GraphProto] = []
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            graphs.append(attribute.g)
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attribute.graphs)
    return graphs
