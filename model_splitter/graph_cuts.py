"""Where an ONNX graph can be cut into a head and a tail that exchange exactly one tensor.

A tensor is a single-tensor cut when every path from the graph inputs to the graph outputs passes through it,
i.e. when it dominates a virtual sink fed by all graph outputs in the tensor-level DAG rooted at a virtual source
that feeds all graph inputs. Working on the graph alone (no per-architecture name rules) is what lets skip
connections, multi-branch blocks and ``Shape(input)`` side paths invalidate exactly the cuts they bypass.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import onnx

from common.errors import UnprocessableModel

CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})


def real_inputs(graph: onnx.GraphProto) -> list[str]:
    """Graph inputs that are fed at run time: old ONNX (IR < 4) also lists every initializer as an input."""
    constants = {init.name for init in graph.initializer} | {init.values.name for init in graph.sparse_initializer}
    return [value.name for value in graph.input if value.name not in constants]


def ensure_cuttable(model: onnx.ModelProto) -> None:
    """Raise ``UnprocessableModel`` for graphs whose data flow the cut finder cannot see in full."""
    graph = model.graph
    for node in graph.node:
        # Subgraphs read outer tensors implicitly, so their edges are invisible to a flat data-flow analysis.
        has_subgraph = any(
            attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attr in node.attribute
        )
        if node.op_type in CONTROL_FLOW_OPS or has_subgraph:
            raise UnprocessableModel(
                f"node {node.name or node.op_type!r} ({node.op_type}) contains control flow; only graphs without "
                "control flow (If, Loop, Scan or other subgraph attributes) can be cut. Export the model with "
                "fixed shapes and without data-dependent branches or loops."
            )
    if not real_inputs(graph):
        raise UnprocessableModel("the graph has no input that is fed at run time (only initializers); nothing to cut")
    if not graph.output:
        raise UnprocessableModel("the graph has no output; nothing to cut")
    producers: set[str] = set()
    for node in graph.node:
        for name in node.output:
            if name and name in producers:
                raise UnprocessableModel(
                    f"tensor {name!r} is produced by more than one node; the graph is not valid ONNX"
                )
            producers.add(name)


def topological_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes in a topological order that keeps the file's order wherever the file already is topological."""
    nodes = list(graph.node)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output if name}
    consumers: list[list[int]] = [[] for _ in nodes]
    missing = [0] * len(nodes)
    for index, node in enumerate(nodes):
        for source in {producer[name] for name in node.input if name in producer}:
            consumers[source].append(index)
            missing[index] += 1
    ready = [index for index, count in enumerate(missing) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for consumer in consumers[index]:
            missing[consumer] -= 1
            if missing[consumer] == 0:
                heapq.heappush(ready, consumer)
    if len(order) != len(nodes):
        raise UnprocessableModel("the graph contains a cycle; ONNX graphs must be acyclic")
    return [nodes[index] for index in order]


@dataclass(frozen=True)
class DataFlow:
    """The tensor-level view of a graph that cut finding, cutting and cost analysis share."""

    nodes: list[onnx.NodeProto]  # topological
    tensors: list[str]  # real inputs, then node outputs in node order: a topological order of tensors
    live: frozenset[str]  # reachable from a real input and reaching a graph output
    cuts: list[str]  # single-tensor cuts in topological order


def data_flow(model: onnx.ModelProto) -> DataFlow:
    """Build the tensor DAG and find its single-tensor cuts as the dominators of the virtual sink."""
    ensure_cuttable(model)
    graph = model.graph
    nodes = topological_nodes(graph)
    inputs = real_inputs(graph)

    # Index 0 is the virtual source; tensors get increasing indices in topological order, so a smaller index
    # is never a descendant of a larger one, which is what the dominator intersection below relies on.
    index: dict[str, int] = {}
    tensors: list[str] = [""]
    preds: list[list[int]] = [[]]
    for name in inputs:
        index[name] = len(tensors)
        tensors.append(name)
        preds.append([0])
    for node in nodes:
        # Inputs with no index are initializers or constant-only outputs: they never lie on an input path.
        sources = sorted({index[name] for name in node.input if name in index})
        for name in node.output:
            if name and name not in index:
                index[name] = len(tensors)
                tensors.append(name)
                preds.append(sources)

    count = len(tensors)
    reach = [False] * count
    reach[0] = True
    for t in range(1, count):
        reach[t] = any(reach[p] for p in preds[t])
    outputs = sorted({index[value.name] for value in graph.output if value.name in index})
    coreach = [False] * count
    for t in outputs:
        coreach[t] = True
    for t in range(count - 1, 0, -1):  # successors have larger indices, so they are final when t is reached
        if coreach[t]:
            for p in preds[t]:
                coreach[p] = True
    live = [reach[t] and coreach[t] for t in range(count)]

    idom = list(range(count))

    def intersect(a: int, b: int) -> int:
        while a != b:
            while a > b:
                a = idom[a]
            while b > a:
                b = idom[b]
        return a

    def meet(candidates: list[int]) -> int:
        result = candidates[0]
        for other in candidates[1:]:
            result = intersect(result, other)
        return result

    # On a DAG visited in topological order every predecessor is final before its successor, so one
    # Cooper-Harvey-Kennedy pass gives the exact immediate dominators.
    for t in range(1, count):
        if live[t]:
            idom[t] = meet([p for p in preds[t] if live[p]])

    live_outputs = [t for t in outputs if live[t]]
    cuts: list[str] = []
    if live_outputs:
        excluded = {index[name] for name in inputs} | set(outputs)
        dominator = meet(live_outputs)
        while dominator != 0:
            if dominator not in excluded:
                cuts.append(tensors[dominator])
            dominator = idom[dominator]
        cuts.reverse()
    live_names = frozenset(tensors[t] for t in range(1, count) if live[t])
    return DataFlow(nodes=nodes, tensors=tensors[1:], live=live_names, cuts=cuts)


def find_single_tensor_cuts(model: onnx.ModelProto) -> list[str]:
    """Every tensor through which all input-to-output paths pass, in topological order (position in the network)."""
    return data_flow(model).cuts
